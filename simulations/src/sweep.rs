//! Seed sweeps: one scenario over a range of seeds, on several threads, with the figures
//! `docs/reliability.md` reports and the seeds that failed (each replays with one command).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{run_with, Options, Scenario, Size, Time};

/// One failing seed: its invariants that broke, with their first findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// Each broken invariant and its first finding.
    pub broken: Vec<(String, String)>,
}

/// What a sweep found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Scenario.
    pub scenario: Scenario,
    /// Size.
    pub size: Size,
    /// Seeds run.
    pub runs: u64,
    /// Seeds whose every invariant held.
    pub passed: u64,
    /// Seeds that did not converge (no sample stayed at 100 % after the last disturbance).
    pub not_converged: u64,
    /// The failures, by seed.
    pub failures: Vec<Failure>,
    /// Virtual time to converge after the last disturbance: median and maximum.
    pub converge: (Time, Time),
    /// Entries and messages over all runs.
    pub entries: u64,
    /// Messages over all runs.
    pub messages: u64,
}

impl Sweep {
    /// The command that replays `seed`.
    pub fn replay(&self, seed: u64) -> String {
        format!(
            "cargo run -p cophr-simulations --release -- --scenario {} --seed {seed}{}",
            self.scenario,
            if self.size == Size::Small {
                " --small"
            } else {
                ""
            }
        )
    }
}

impl std::fmt::Display for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sweep {} ({}): {} seeds, {} passed, {} failed, {} did not converge",
            self.scenario,
            if self.size == Size::Small {
                "small"
            } else {
                "full"
            },
            self.runs,
            self.passed,
            self.failures.len(),
            self.not_converged
        )?;
        writeln!(
            f,
            "  converged after the last disturbance: median {} ms, max {} ms (virtual)",
            self.converge.0, self.converge.1
        )?;
        writeln!(f, "  entries {}, messages {}", self.entries, self.messages)?;
        for fail in &self.failures {
            writeln!(f, "  FAILED seed {}: {}", fail.seed, self.replay(fail.seed))?;
            for (name, first) in &fail.broken {
                writeln!(f, "    {name}: {first}")?;
            }
        }
        Ok(())
    }
}

/// One seed's run, as the sweep keeps it.
struct Run {
    seed: u64,
    ok: bool,
    converged: Option<Time>,
    broken: Vec<(String, String)>,
    entries: u64,
    messages: u64,
}

/// Runs `scenario` for every seed in `seeds` on `jobs` threads; `progress` is called with
/// the number of seeds done after each.
pub fn sweep(
    scenario: Scenario,
    seeds: Range<u64>,
    size: Size,
    options: Options,
    jobs: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Sweep {
    let next = AtomicU64::new(seeds.start);
    let done = AtomicU64::new(0);
    let results: Mutex<Vec<Run>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let o = run_with(scenario, seed, size, options);
                let r = &o.report;
                let broken: Vec<(String, String)> = r
                    .invariants
                    .iter()
                    .filter(|(_, f)| !f.is_empty())
                    .map(|(n, f)| (n.clone(), f[0].clone()))
                    .collect();
                let converged = r.converged.map(|_| r.time_to_converge());
                results.lock().unwrap_or_else(|p| p.into_inner()).push(Run {
                    seed,
                    ok: o.ok(),
                    converged,
                    broken,
                    entries: r.entries as u64,
                    messages: r.messages,
                });
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| r.seed);
    let mut times: Vec<Time> = results.iter().filter_map(|r| r.converged).collect();
    times.sort_unstable();
    Sweep {
        scenario,
        size,
        runs: results.len() as u64,
        passed: results.iter().filter(|r| r.ok).count() as u64,
        not_converged: results.iter().filter(|r| r.converged.is_none()).count() as u64,
        failures: results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| Failure {
                seed: r.seed,
                broken: r.broken.clone(),
            })
            .collect(),
        converge: (
            times.get(times.len() / 2).copied().unwrap_or(0),
            times.last().copied().unwrap_or(0),
        ),
        entries: results.iter().map(|r| r.entries).sum(),
        messages: results.iter().map(|r| r.messages).sum(),
    }
}
