//! A short seed sweep of every scenario at reduced size: the invariants hold, and the same
//! seed gives the same outcome. A failure prints the report, with the command that replays
//! the run.

use cophr_simulations::{run, Outcome, Scenario, Size};

const SEEDS: [u64; 3] = [1, 2, 3];

fn check(o: &Outcome) {
    assert!(
        o.ok(),
        "invariants violated, scenario {} seed {} (small):\n{}",
        o.report.scenario,
        o.report.seed,
        o.report
    );
}

fn sweep(scenario: Scenario) {
    let mut first = None;
    for seed in SEEDS {
        let o = run(scenario, seed, Size::Small);
        check(&o);
        assert!(
            o.report.entries > 0 && o.report.messages > 0,
            "{}",
            o.report
        );
        assert!(!o.series.is_empty());
        first.get_or_insert(o);
    }
    // Determinism: the same seed, run again, gives the same report, series and plot.
    let again = run(scenario, SEEDS[0], Size::Small);
    let first = first.expect("at least one seed");
    assert_eq!(
        first.report, again.report,
        "{scenario} seed {} is not reproducible",
        SEEDS[0]
    );
    assert_eq!(first.series, again.series);
    assert_eq!(first.svg(), again.svg());
}

#[test]
fn acceptance() {
    sweep(Scenario::Acceptance);
}

#[test]
fn scale() {
    sweep(Scenario::Scale);
}

#[test]
fn churn() {
    sweep(Scenario::Churn);
}

#[test]
fn partition() {
    sweep(Scenario::Partition);
}

#[test]
fn loss() {
    sweep(Scenario::Loss);
}

#[test]
fn revocation() {
    sweep(Scenario::Revocation);
}

/// The organisation scenario (issue 19) over two seeds: the invariants hold (among them the
/// membership rules), the run is reproducible, and it did what it is for: the membership
/// log forked (members added and removed twice), members joined, the organisation's node
/// wrote their removals, entries written concurrently with a removal are void, and removed
/// members pulled (their removal, nothing written after it).
#[test]
fn organisation() {
    let mut first = None;
    for seed in [1, 2] {
        let o = run(Scenario::Organisation, seed, Size::Small);
        check(&o);
        let r = &o.report;
        let f = r.organisation.as_ref().expect("organisation figures");
        assert!(f.forks.0 > 0 && f.forks.1 > 0, "{r}");
        assert!(f.proofs_joins.1 >= 5, "{r}");
        assert!(f.removals_written >= 4, "{r}");
        assert!(f.keys_given > 0, "{r}");
        assert!(f.member_entries.0 > 0 && f.member_entries.1 > 0, "{r}");
        assert!(f.removed_pulls.0 > 0 && f.removed_pulls.1 == 0, "{r}");
        let names: Vec<&String> = r.invariants.iter().map(|(n, _)| n).collect();
        assert!(
            names.iter().any(|n| n.contains("removed member's pull")),
            "{names:?}"
        );
        first.get_or_insert(o);
    }
    let again = run(Scenario::Organisation, 1, Size::Small);
    let first = first.expect("a run");
    assert_eq!(
        first.report, again.report,
        "organisation seed 1 is not reproducible"
    );
    assert_eq!(first.series, again.series);
}

#[test]
fn different_seeds_give_different_runs() {
    let a = run(Scenario::Loss, 11, Size::Small);
    let b = run(Scenario::Loss, 12, Size::Small);
    assert_ne!(a.report.bytes, b.report.bytes);
}

#[test]
fn the_acceptance_scenario_does_what_the_brief_says() {
    let o = run(Scenario::Acceptance, 5, Size::Small);
    check(&o);
    let r = &o.report;
    // George moved his record; the replicas followed; home care was revoked.
    assert!(r.moves_followed > 0, "{r}");
    assert_eq!(r.revocations, 1, "{r}");
    // The children, the pharmacist and Mallory tried to write and were refused.
    assert!(r.writes_refused >= 5, "{r}");
    // George is told of lab results.
    assert!(r.lab_results_to_patient.is_some(), "{r}");
    // Every hostile attempt that was answered was refused.
    assert!(
        r.hostile.0 > 0 && r.hostile.1 + r.hostile.2 == r.hostile.0,
        "{r}"
    );
    assert!(r.forged > 0);
}

#[test]
fn the_command_line_lists_runs_and_plots() {
    let exe = env!("CARGO_BIN_EXE_cophr-simulations");
    let list = std::process::Command::new(exe)
        .arg("--list")
        .output()
        .expect("runs");
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    for s in Scenario::ALL {
        assert!(text.contains(s.name()), "{text}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(exe)
        .args([
            "--scenario",
            "acceptance",
            "--seed",
            "2",
            "--small",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("all invariants hold"), "{stdout}");
    let svg = std::fs::read_to_string(dir.path().join("acceptance-2.svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<polyline"));
    // An unknown scenario is a usage error.
    let bad = std::process::Command::new(exe)
        .args(["--scenario", "nope"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_sweep_runs_every_seed_on_several_threads_and_names_how_to_replay_failures() {
    use cophr_simulations::sweep::sweep as run_sweep;
    use cophr_simulations::Options;
    let done = std::sync::atomic::AtomicU64::new(0);
    let s = run_sweep(
        Scenario::Partition,
        20..26,
        Size::Small,
        Options::default(),
        2,
        &|_| {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    );
    assert_eq!(s.runs, 6);
    assert_eq!(done.into_inner(), 6);
    assert_eq!(s.passed, 6, "{s}");
    assert!(s.failures.is_empty() && s.not_converged == 0, "{s}");
    assert!(s.entries > 0 && s.messages > 0);
    assert!(s.converge.0 <= s.converge.1);
    // The same seeds on one thread give the same figures.
    let one = run_sweep(
        Scenario::Partition,
        20..26,
        Size::Small,
        Options::default(),
        1,
        &|_| {},
    );
    assert_eq!(one, s);
    assert_eq!(
        s.replay(23),
        "cargo run -p cophr-simulations --release -- --scenario partition --seed 23 --small"
    );
}

/// The city at its test size (2,000 records on 4 host processes, a fifth added): every
/// invariant holds, the rebalancing moved records onto the new host only and every move
/// was made; and a smaller city is reproducible from its seed.
#[test]
fn city() {
    use cophr_simulations::{run_with, Options};
    let o = run(Scenario::City, 1, Size::Small);
    check(&o);
    let r = &o.report;
    assert_eq!(r.records, 2_000, "{r}");
    let c = r.city.as_ref().expect("city figures");
    assert_eq!(c.hosts, (4, 5));
    assert!(c.moves.0 > 0 && c.moves.0 == c.moves.1, "{r}");
    assert_eq!(c.load_after.len(), 5);
    assert!(c.spread.0 <= c.spread.1, "{r}");
    assert_eq!(c.reached.0, c.reached.1, "{r}");
    // The new host took about a fifth of the records, from the rebalancing and from
    // patients who joined after it was added.
    assert!(c.load_after[4] > 300 && c.load_after[4] < 500, "{r}");
    assert!(c.admitted.1 > 0, "{r}");
    let small = Options {
        patients: Some(150),
        hosts: Some(2),
    };
    let a = run_with(Scenario::City, 2, Size::Small, small);
    let b = run_with(Scenario::City, 2, Size::Small, small);
    check(&a);
    assert_eq!(a.report, b.report);
    assert_eq!(a.series, b.series);
}
