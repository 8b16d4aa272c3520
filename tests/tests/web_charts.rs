//! The web app's trend charts' data functions (`node/web/charts.js`) under Node.js
//! (`tests/js-charts/charts_test.mjs`): reference ranges read from their text, malformed
//! entries and values skipped and counted (never thrown on), the limits `MAX_POINTS`,
//! `MAX_MEASURES` and `MAX_NAME`, and two years of daily readings grouped in well under a
//! second. Drawing, the tables and the aria-labels are checked in a real browser
//! (`web_browser.rs`). Needs `node` (`bash .ci/deps` installs it): without it the test fails.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn chart_data_is_grouped_bounded_and_malformed_values_are_skipped() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("js-charts/charts_test.mjs");
    let charts = root.join("../node/web/charts.js");
    let out = Command::new("node")
        .arg(&script)
        .arg(&charts)
        .output()
        .unwrap_or_else(|e| panic!("node (Node.js) does not run ({e}): run bash .ci/deps"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the chart checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: u32 = stdout
        .trim()
        .strip_prefix("ok ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the checks did not report: {stdout}"));
    assert!(n >= 50, "only {n} checks ran");
}
