//! `permgate demo` (being written).
use std::process::ExitCode;
/// Arguments of `permgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}
/// Runs the demo.
pub fn run(_args: &DemoArgs) -> ExitCode {
    ExitCode::from(2)
}
