//! The README's main command, `cophr demo`, runs to the end and leaves working homes.

mod cli_support;

use cli_support::cophr;

#[test]
fn the_demo_runs_and_leaves_homes_to_try() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = cophr().args(["demo", "--dir"]).arg(&demo).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The refusals are part of the tour.
    assert_eq!(stdout.matches("refused as expected: exit 3").count(), 2);
    // George's home holds the writes of Mary and home care, signed by them.
    let show = cophr()
        .arg("--home")
        .arg(demo.join("george"))
        .args(["show", "--json"])
        .output()
        .unwrap();
    assert!(show.status.success());
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let text = v.to_string();
    assert!(
        text.contains("Mary Jones") && text.contains("Sam Patel"),
        "{text}"
    );
    // A second run into the same directory refuses rather than mixing homes.
    let again = cophr().args(["demo", "--dir"]).arg(&demo).output().unwrap();
    assert_eq!(again.status.code(), Some(5));
}
