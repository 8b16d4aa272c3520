//! The sync benchmark at tiny sizes, so it cannot rot: two real node processes sync over
//! TCP, and the report says every entry arrived. Timing is not asserted. The Hypercore
//! rounds (which need Node.js and `npm ci --prefix simulations/hypercore`) are skipped with
//! `--no-hypercore`; without their packages the benchmark stops at once and says how to
//! install them.

use std::process::Command;

/// Runs syncbench with `args` in a fresh work directory: its output, and its JSON report.
fn run_syncbench(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let run = Command::new(env!("CARGO_BIN_EXE_syncbench"))
        .args(args)
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run syncbench");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "syncbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report = serde_json::from_slice(&std::fs::read(&out).expect("the JSON report is written"))
        .expect("the report is JSON");
    (stdout, report)
}

#[test]
fn sync_benchmark_runs_at_tiny_sizes_and_every_entry_arrives() {
    let (stdout, report) = run_syncbench(&[
        "--entries",
        "200",
        "--catchup-base",
        "2000",
        "--live",
        "5",
        "--host-records",
        "20",
        "--bulk-runs",
        "2",
        "--no-hypercore",
    ]);
    assert!(stdout.contains("bulk sync of 200 entries"), "{stdout}");
    // Bulk: the replica holds the genesis, the grant and every entry, in every round.
    assert_eq!(report["bulk"]["held_after"], 202);
    assert!(report["bulk"]["entries_per_s"].as_f64().unwrap() > 0.0);
    let rounds = report["bulk"]["runs"].as_array().expect("bulk rounds");
    assert_eq!(rounds.len(), 2);
    assert!(rounds.iter().all(|r| r["held_after"] == 202));
    assert!(
        report["bulk"]["all_cores_ratio_to_target"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(report["hypercore"].is_null());
    assert!(stdout.contains("Hypercore: not run"), "{stdout}");
    assert!(report["verify"]["batch_per_s"].as_f64().unwrap() > 0.0);
    // The CPU an entry costs beside verification, and the ceiling that sets.
    let beside = &report["verify"]["beside"];
    for cost in ["verify_us", "aead_us", "hash_us", "store_us", "ceiling"] {
        assert!(beside[cost].as_f64().unwrap() > 0.0, "{cost}: {beside}");
    }
    assert!(stdout.contains("the most a sync can reach is"), "{stdout}");
    // Sealed bulk: every entry arrived and the replica opened each one.
    assert_eq!(report["sealed"]["opened"], 200);
    assert!(report["sealed"]["ratio_to_plain"].as_f64().unwrap() > 0.0);
    // Catch-up: each run pulled exactly the new entries, and the replica holds them all.
    let runs = report["catchup"]["runs"].as_array().expect("catch-up runs");
    let pulled: Vec<u64> = runs.iter().map(|r| r["pulled"].as_u64().unwrap()).collect();
    assert_eq!(pulled, vec![0, 1, 10, 1000]);
    assert_eq!(report["catchup"]["held_after"], 2002 + 1011);
    assert_eq!(
        report["catchup"]["held_after"],
        report["catchup"]["expected_after"]
    );
    // The up-to-date check is one round trip; a catch-up counts its requests.
    assert_eq!(runs[0]["round_trips"], 1);
    assert!(runs[1]["round_trips"].as_u64().unwrap() >= 2);
    // Live: every write reached the replica.
    assert_eq!(report["live"]["samples"], 5);
    assert_eq!(report["live"]["held_after"], 207);
    // Host: a fresh process lists every record and reports its memory.
    assert_eq!(report["host"]["records_listed"], 20);
    assert!(report["host"]["memory"]["resident_kib"].as_u64().unwrap() > 0);
    assert!(
        report["bulk"]["server_memory"]["peak_kib"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn without_the_hypercore_harness_installed_the_benchmark_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A harness folder with no node_modules.
    let harness = dir.path().join("hypercore");
    std::fs::create_dir_all(&harness).expect("harness folder");
    std::fs::write(harness.join("bench.js"), "").expect("bench.js");
    let run = Command::new(env!("CARGO_BIN_EXE_syncbench"))
        .args(["--entries", "200"])
        .arg("--hypercore-dir")
        .arg(&harness)
        .arg("--work")
        .arg(dir.path().join("work"))
        .output()
        .expect("run syncbench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    // With or without Node.js on this machine, the message names the install command and
    // the flag that skips the rounds, and nothing was measured.
    assert!(stderr.contains("npm ci --prefix"), "{stderr}");
    assert!(stderr.contains("--no-hypercore"), "{stderr}");
    assert!(!dir.path().join("work").exists());
}

#[test]
fn the_growth_measurements_run_at_tiny_sizes_and_plot_each_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, plot) = (
        dir.path().join("growth.json"),
        dir.path().join("growth.svg"),
    );
    let run = Command::new(env!("CARGO_BIN_EXE_syncbench"))
        .args(["--growth", "100,1000"])
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg("--out")
        .arg(&out)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run syncbench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "syncbench --growth failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON report is written"))
            .expect("the report is JSON");
    let points = report["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for (p, n) in points.iter().zip([100u64, 1000]) {
        assert_eq!(p["entries"], n);
        assert!(p["load_ms"].as_f64().unwrap() > 0.0);
        assert!(p["first_write_ms"].as_f64().unwrap() > 0.0);
        // The record at its middle entry's time: about half its items.
        let items = p["state_at_items"].as_u64().unwrap();
        assert!((n / 2..=n / 2 + 2).contains(&items), "{items} of {n}");
        // Then every shown body read (the count above is of the bodies read, when both
        // passes agree).
        assert!(p["state_at_read_ms"].as_f64().unwrap() > 0.0);
        assert!(p["catch_up_round_trips"].as_u64().unwrap() >= 2);
        assert!(p["catch_up_entry_bytes"].as_u64().unwrap() > 10 * 900);
    }
    let svg = std::fs::read_to_string(&plot).expect("the plot is written");
    assert_eq!(svg.matches("<polyline").count(), 6);
}

#[test]
fn the_host_alone_is_measured_with_small_records_and_needs_no_hypercore() {
    // A harness folder that does not exist: the host alone does not need it.
    let (stdout, report) = run_syncbench(&[
        "--host-only",
        "--host-records",
        "30",
        "--host-entries",
        "2",
        "--hypercore-dir",
        "/nonexistent/hypercore",
    ]);
    assert!(
        stdout.contains("fresh host process with 30 records of 2 entries, restarted"),
        "{stdout}"
    );
    assert_eq!(report["host"]["records_listed"], 30);
    assert_eq!(report["host"]["entries_per_record"], 2);
    assert!(report["host"]["memory"]["resident_kib"].as_u64().unwrap() > 0);
    assert!(report["bulk"].is_null(), "nothing else is measured");
}

#[test]
fn a_provider_pulls_every_record_of_a_host_and_reports_its_memory() {
    let (stdout, report) = run_syncbench(&[
        "--provider",
        "--host-records",
        "25",
        "--host-entries",
        "6",
        "--provider-parallel",
        "3",
        "--hypercore-dir",
        "/nonexistent/hypercore",
    ]);
    assert!(
        stdout.contains("provider pulling 25 records of 6 entries (150 entries), 3 at a time"),
        "{stdout}"
    );
    let p = &report["provider"];
    // Every record pulled, none failed, and every entry counted again from the provider's
    // store afterwards.
    assert_eq!(p["records_synced"], 25);
    assert_eq!(p["records_failed"], 0);
    assert_eq!(p["pulled"], 150);
    assert_eq!(p["records_held"], 25);
    assert_eq!(p["held"], 150);
    assert!(p["memory"]["peak_kib"].as_u64().unwrap() > 0);
    assert!(report["host"].is_null(), "nothing else is measured");
}
