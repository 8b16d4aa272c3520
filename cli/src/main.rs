//! `cophr`: a co-produced personal health record, from the command line.
//!
//! This file only parses the command line, sets up logging and maps errors to exit codes;
//! each subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::Parser;

mod cmd;
mod context;
mod error;
mod fields;
mod home;
mod output;
mod store;
mod times;

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    init_logging(cli.global.verbose);
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code as u8)
        }
    }
}
