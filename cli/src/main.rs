//! `cophr`: a co-produced personal health record, from the command line.
//!
//! This file only parses the command line, sets up logging and maps errors to exit codes;
//! each subcommand lives in its own module under `cmd/`.

use std::process::ExitCode;

use clap::Parser;

mod cmd;
mod context;
mod control;
mod error;
mod fields;
mod home;
mod logging;
mod network;
mod output;
mod store;
mod times;
mod trust;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    // `cophr node run` sets up its own logging (its format may come from its config file).
    if !matches!(cli.command, cmd::Command::Node(cmd::node::Command::Run(_))) {
        logging::init(cli.global.verbose, logging::LogFormat::Text, "warn");
    }
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code as u8)
        }
    }
}
