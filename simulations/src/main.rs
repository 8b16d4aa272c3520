//! `cophr-simulations`: run one seeded scenario, print its report, write its plot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cophr_simulations::{run_with, sweep, Options, Scenario, Size};

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
    /// Sweep seeds FROM..TO (TO excluded) instead of one run: prints the figures and every
    /// failing seed with the command that replays it; no plots.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_range, conflicts_with = "seed")]
    seeds: Option<std::ops::Range<u64>>,
    /// Threads for a sweep (default: the machine's cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Where to write the SVG plot (default: target/sim/<scenario>-<seed>.svg).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Patients in the `scale` scenario, or records in the `city` scenario.
    #[arg(long)]
    patients: Option<usize>,
    /// Host processes the `city` operator starts with (one more is added mid-run).
    #[arg(long)]
    hosts: Option<usize>,
    /// Run the reduced sizes the test sweep uses.
    #[arg(long)]
    small: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not FROM..TO"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("FROM: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("TO: {e}"))?;
    if b <= a {
        return Err(format!("`{s}` is empty"));
    }
    Ok(a..b)
}

/// The process's peak resident memory in KiB (Linux: `VmHWM` in `/proc/self/status`).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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
    let options = Options {
        patients: args.patients,
        hosts: args.hosts,
    };
    if let Some(seeds) = args.seeds {
        let jobs = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let total = seeds.end - seeds.start;
        let start = std::time::Instant::now();
        let step = (total / 20).max(1);
        let s = sweep::sweep(scenario, seeds, size, options, jobs, &|done| {
            if done % step == 0 || done == total {
                eprintln!("  {done}/{total} seeds ({} s)", start.elapsed().as_secs());
            }
        });
        print!("{s}");
        println!(
            "  wall time    {} s on {jobs} threads",
            start.elapsed().as_secs()
        );
        return if s.failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let start = std::time::Instant::now();
    let outcome = run_with(scenario, args.seed, size, options);
    println!("{}", outcome.report);
    println!(
        "  process      wall time {:.1} s; peak resident memory {}",
        start.elapsed().as_secs_f64(),
        peak_memory().map_or_else(|| "unknown".into(), |k| format!("{} MiB", k / 1024))
    );
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
