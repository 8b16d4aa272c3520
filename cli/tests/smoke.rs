//! A quick check of the built binary. (Having an integration test here also makes
//! `cargo test --workspace` build `target/<profile>/cophr`, which the scenario tests in the
//! `cophr-tests` package drive.)

use std::process::Command;

const COPHR: &str = env!("CARGO_BIN_EXE_cophr");

#[test]
fn help_documents_the_exit_codes() {
    let out = Command::new(COPHR).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for code in ["0  success", "3  not authorised", "6  verification failed"] {
        assert!(text.contains(code), "{code} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_and_missing_identity_exits_1() {
    let out = Command::new(COPHR).arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let home = std::env::temp_dir().join(format!("cophr-smoke-{}", std::process::id()));
    let out = Command::new(COPHR)
        .arg("--home")
        .arg(&home)
        .arg("whoami")
        .env_remove("COPHR_HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: no identity"));
    assert!(!home.exists(), "a failed command created the home");
}
