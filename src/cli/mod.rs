//! The subcommands of the `permgate` binary; `main.rs` only parses arguments and dispatches here.

pub mod access;
pub mod check;
pub mod demo;
pub mod routes;
pub mod serve;
pub mod token;
pub mod validate;

/// Writes to standard output, ignoring a closed pipe (`permgate check … | head` must not panic the way
/// `println!` does when the reader has gone away).
pub fn print_out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
