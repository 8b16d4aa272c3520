//! `cophr`: a co-produced personal health record, from the command line.
//!
//! The binary (`main.rs`) only calls [`main`]: it parses the command line, sets up logging
//! and maps errors to exit codes; each subcommand lives in its own module under `cmd/`.
//! The library exists so the decoders of local untrusted input (the control socket) can be
//! fuzzed ([`fuzz`]); nothing else is public.

use std::process::ExitCode;

use clap::Parser;

mod care;
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

/// Runs `cophr` with the process's arguments; the exit code to return.
pub fn main() -> ExitCode {
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

/// Entry points for the fuzz targets (`tests/fuzz`): the node's handling of a control
/// message up to the point where a command would run.
#[doc(hidden)]
pub mod fuzz {
    /// Reads one control message from `bytes` as a node reads it from its socket (length
    /// prefix, bound, JSON) and, if it is a request, parses its argument vector as the node
    /// does before running it. Nothing runs. Whether it was a runnable request.
    pub fn control_message(bytes: &[u8]) -> bool {
        let mut r = bytes;
        let Ok(request) = crate::control::read_message::<crate::control::Request>(&mut r) else {
            // The same bytes as a reply, as `cophr` reads the node's answer.
            let mut r = bytes;
            let _ = crate::control::read_message::<crate::control::Reply>(&mut r);
            return false;
        };
        crate::control::parse(&request).is_ok()
    }
}
