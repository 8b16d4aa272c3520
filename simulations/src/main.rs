//! `cophr-simulations`: run one seeded scenario, print its report, write its plot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cophr_simulations::{run_with, Options, Scenario, Size};

/// Many cophr nodes in one process, in virtual time, seeded and reproducible.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The scenario to run.
    #[arg(long, value_enum, required_unless_present = "list")]
    scenario: Option<Scenario>,
    /// The seed (the same seed gives the same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the SVG plot (default: target/sim/<scenario>-<seed>.svg).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Patients in the `scale` scenario.
    #[arg(long)]
    patients: Option<usize>,
    /// Run the reduced sizes the test sweep uses.
    #[arg(long)]
    small: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in Scenario::ALL {
            println!("{:<11} {}", s.name(), s.describe());
        }
        return ExitCode::SUCCESS;
    }
    let Some(scenario) = args.scenario else {
        eprintln!("--scenario is required");
        return ExitCode::from(2);
    };
    let size = if args.small { Size::Small } else { Size::Full };
    let outcome = run_with(
        scenario,
        args.seed,
        size,
        Options {
            patients: args.patients,
        },
    );
    println!("{}", outcome.report);
    let path = match args.out {
        Some(p) if p.extension().is_some_and(|e| e == "svg") => p,
        Some(dir) => dir.join(format!("{scenario}-{}.svg", args.seed)),
        None => PathBuf::from("target/sim").join(format!("{scenario}-{}.svg", args.seed)),
    };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, outcome.svg()));
    match written {
        Ok(()) => println!("  plot         {}", path.display()),
        Err(e) => {
            eprintln!("could not write {}: {e}", path.display());
            return ExitCode::from(3);
        }
    }
    if outcome.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "invariants violated: scenario {scenario}, seed {}{}",
            args.seed,
            if args.small { " (--small)" } else { "" }
        );
        ExitCode::FAILURE
    }
}
