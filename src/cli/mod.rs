//! The subcommands of the `permgate` binary; `main.rs` only parses arguments and dispatches here.

pub mod access;
pub mod check;
pub mod demo;
pub mod integrate;
pub mod routes;
pub mod serve;
pub mod token;
pub mod validate;

/// The time an `--at RFC3339` option names, in Unix seconds; now without one.
pub fn time_arg(at: Option<&str>) -> Result<i64, String> {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    match at {
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(OffsetDateTime::unix_timestamp)
            .map_err(|_| {
                format!("--at {text:?} is not an RFC 3339 time like 2025-11-14T00:00:00Z")
            }),
        None => Ok(crate::config::load::unix_now()),
    }
}

/// Writes to standard output, ignoring a closed pipe (`permgate check … | head` must not panic the way
/// `println!` does when the reader has gone away).
pub fn print_out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
