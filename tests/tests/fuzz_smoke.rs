//! A short run of every fuzz target (`tests/fuzz`) over its committed corpus, so the
//! targets build and the corpus stays crash-free. The long campaigns are documented in
//! `docs/reliability.md` (on nightly, with AddressSanitizer). This smoke run uses the
//! toolchain the tests run on (stable) without a sanitizer (the workspace forbids `unsafe`
//! code; libFuzzer's coverage guidance and every assertion still run), so it needs only
//! cargo-fuzz, which `.ci/deps` installs; a missing tool fails the test, loudly.

use std::path::PathBuf;
use std::process::Command;

/// Every fuzz target.
const TARGETS: &[&str] = &[
    "decode_entry",
    "sync_message",
    "export_file",
    "fhir_input",
    "signed_objects",
    "sync_server",
    "sync_client",
    "log_open",
    "sealed_read",
    "http_body",
    "control_message",
    "snapshot_restore",
    "dicom_header",
    "openehr_input",
];

/// Seconds of fresh fuzzing per target after the corpus is replayed.
const SECONDS: u32 = 5;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `cargo fuzz <sub> -O --sanitizer none <args>`, with the toolchain the tests run on.
fn cargo_fuzz(sub: &str, args: &[&str]) -> std::process::Output {
    Command::new("cargo")
        .current_dir(fuzz_dir())
        .args(["fuzz", sub, "-O", "--sanitizer", "none"])
        .args(args)
        // The workspace's own settings must not leak into the fuzz build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo fuzz (run .ci/deps): {e}"))
}

#[test]
fn every_fuzz_target_runs_its_corpus_without_a_crash() {
    let build = cargo_fuzz("build", &[]);
    assert!(
        build.status.success(),
        "cargo fuzz build failed (is cargo-fuzz installed? .ci/deps installs it):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    for target in TARGETS {
        let corpus = fuzz_dir().join("corpus").join(target);
        assert!(
            corpus.read_dir().is_ok_and(|mut d| d.next().is_some()),
            "no committed corpus for {target}"
        );
        // New inputs go to a scratch directory (libFuzzer writes to the first one), never
        // into the committed corpus.
        let scratch = tempfile::tempdir().unwrap();
        let out = cargo_fuzz(
            "run",
            &[
                target,
                scratch.path().to_str().unwrap(),
                corpus.to_str().unwrap(),
                "--",
                &format!("-max_total_time={SECONDS}"),
                "-rss_limit_mb=2048",
            ],
        );
        assert!(
            out.status.success(),
            "fuzz target {target} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
