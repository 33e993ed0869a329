//! The `permgate` command line: thin glue over the library (parse arguments, run a command, exit).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a config load allocates and frees millions of small strings,
/// and glibc's malloc keeps the freed memory (a gateway with 100k tokens sat at ~1.5 GiB RSS with it and
/// at ~140 MiB with mimalloc, in the same 10-minute soak; see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// permgate: an API authorization gateway.
#[derive(Debug, Parser)]
#[command(name = "permgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The gateway config file.
        #[arg(long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Run the shipped config in front of a built-in sample upstream and print curl lines to try.
    Demo(permgate::cli::demo::DemoArgs),
    /// Decide one request offline, exactly as the proxy would.
    Check(permgate::cli::check::CheckArgs),
    /// What a config grants: explain a credential's access, or who can call a route.
    Access {
        #[command(subcommand)]
        command: permgate::cli::access::AccessCommand,
    },
    /// Load and compile the config; print every error and warning.
    Validate {
        /// The gateway config file.
        #[arg(long, default_value = "config/gateway.yaml")]
        config: PathBuf,
    },
    /// Manage tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Print the nginx, Caddy, Traefik or Envoy configuration that delegates the decision to permgate.
    Integrate(permgate::cli::integrate::IntegrateArgs),
    /// Work with route files.
    Routes {
        #[command(subcommand)]
        command: RoutesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Write a route file from OpenAPI specs (x-permgate-permissions, x-cfPermissionsRequired,
    /// x-api-token-group); report every skipped operation on stderr.
    ImportOpenapi(permgate::cli::routes::ImportOpenApiArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new token secret once, and the YAML entry that stores only its SHA-256.
    New(permgate::cli::token::NewTokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => permgate::cli::serve::run(&config),
        Command::Demo(args) => permgate::cli::demo::run(&args),
        Command::Check(args) => permgate::cli::check::run(&args),
        Command::Access { command } => permgate::cli::access::run(&command),
        Command::Integrate(args) => permgate::cli::integrate::run(&args),
        Command::Validate { config } => permgate::cli::validate::run(&config),
        Command::Token {
            command: TokenCommand::New(args),
        } => permgate::cli::token::run_new(&args),
        Command::Routes {
            command: RoutesCommand::ImportOpenapi(args),
        } => permgate::cli::routes::run_import_openapi(&args),
    }
}
