//! The sync benchmark at tiny sizes, so it cannot rot: two real node processes sync over
//! TCP, and the report says every entry arrived. Timing is not asserted.

use std::process::Command;

#[test]
fn sync_benchmark_runs_at_tiny_sizes_and_every_entry_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.json");
    let run = Command::new(env!("CARGO_BIN_EXE_syncbench"))
        .args([
            "--entries",
            "200",
            "--catchup-base",
            "2000",
            "--live",
            "5",
            "--host-records",
            "20",
        ])
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run syncbench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "syncbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("bulk sync of 200 entries"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON report is written"))
            .expect("the report is JSON");
    // Bulk: the replica holds the genesis, the grant and every entry.
    assert_eq!(report["bulk"]["held_after"], 202);
    assert!(report["bulk"]["entries_per_s"].as_f64().unwrap() > 0.0);
    assert!(report["verify"]["batch_per_s"].as_f64().unwrap() > 0.0);
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
