//! `cophr demo --network`: a host and three nodes as real processes; an entry replicates
//! live, a write is refused, and the host and George's node (with his web app) are left
//! running (until stopped here).

mod cli_support;

use std::process::Command;

use cli_support::cophr;
use cli_support::node::eventually;

/// Stops the host the demo left running, however the test ends.
struct HostGuard(std::path::PathBuf);

impl HostGuard {
    fn pid(&self) -> Option<u32> {
        let bytes = std::fs::read(self.0.join("node.json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[test]
fn the_network_demo_replicates_live_refuses_a_write_and_leaves_the_host_running() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let host = HostGuard(demo.join("host"));
    let george = HostGuard(demo.join("george"));
    let out = cophr()
        .args(["demo", "--network", "--dir"])
        .arg(&demo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The host refuses George's record without an invitation; Mary reusing the pharmacy's
    // invitation link; the home-care nurse's write after she left the service (her node
    // learnt of her removal when it synced); the pharmacist's write.
    assert_eq!(stdout.matches("refused as expected: exit 3").count(), 4);
    // The home-care service is granted once as an organisation: its nurse, named with it,
    // writes; once removed she is refused (above).
    assert!(
        stdout.contains("Jo Bloggs (nurse, for Leeds Home Care Ltd)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Members of Leeds Home Care Ltd"),
        "{stdout}"
    );
    // The nurse's worklist lists George: shared with her service, never with her by name.
    assert!(
        stdout.contains("1 patient shared with you; page 1 of 1"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not accept the record"), "{stderr}");
    assert!(stderr.contains("already used"), "{stderr}");
    // The pharmacy was invited by link and shown verified by the AIS George trusts.
    assert!(stdout.contains("cophr://invite/"), "{stdout}");
    assert!(
        stdout.contains(
            "accepted by Ana Silva (pharmacist, Oakwood Pharmacy) [verified P9 by Leeds AIS]"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("--invitation inv-"), "{stdout}");
    assert!(stdout.contains("reached George's node"), "{stdout}");
    // Mary books an appointment: George's node lists its two reminders, and the host
    // holds it sealed.
    assert!(
        stdout.contains("\"Renal clinic review\": found 0 times in the host's files"),
        "{stdout}"
    );
    // The care team (issue 15): the diabetes nurse's release reaches George as a
    // notification; they talk in a thread; she assigns a PHQ-9 that George's node tells
    // him of, he answers it and both see its score and band.
    assert!(
        stdout.contains("The release is what tells George"),
        "{stdout}"
    );
    assert!(stdout.contains("result-released"), "{stdout}");
    assert!(stdout.contains("Your HbA1c"), "{stdout}");
    assert!(
        stdout.contains("I have been snacking more since the winter"),
        "{stdout}"
    );
    assert!(stdout.contains("questionnaire-assigned"), "{stdout}");
    assert!(stdout.contains("score 6 (mild)"), "{stdout}");
    // Mary's node fetches the letter's file on demand: not held until she opens it.
    assert!(
        stdout.contains("the file on Mary's node before she opens it: not held"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Mary's copy is byte for byte the letter George attached"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"continue ramipril 5 mg\": found 0 times in the host's files"),
        "{stdout}"
    );
    // The host holds the record sealed: the demo searched its files for George's words.
    for words in ["I am deaf in my left ear", "Metformin", "Type 2 diabetes"] {
        assert!(
            stdout.contains(&format!("\"{words}\": found 0 times in the host's files")),
            "{stdout}"
        );
    }
    // George's phone acts for him; after his laptop is lost, two guardians give his
    // record a new key and his new node writes on, replicated to Mary.
    assert!(stdout.contains("Devices of George Jones"), "{stdout}");
    assert!(stdout.contains("George's phone"), "{stdout}");
    assert!(stdout.contains("2 of these 3 guardians"), "{stdout}");
    assert!(stdout.contains("Recovered record"), "{stdout}");
    assert!(
        stdout.contains("Mary's node received what George wrote with his new key"),
        "{stdout}"
    );
    assert!(demo.join("george-lost").join("identity.key").exists());
    // With only a browser (the host's page, driven by the same code), George opens his
    // sealed record and writes to it; his node receives it; the host's files hold neither
    // what he wrote nor his passphrase.
    assert!(stdout.contains("opened them in the page"), "{stdout}");
    assert!(
        stdout.contains("0 sealed under keys this key was not given"),
        "{stdout}"
    );
    for words in ["noted from a browser", "demo passphrase for George's key"] {
        assert!(
            stdout.contains(&format!("\"{words}\": found 0 times in the host's files")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("Blisters, noted from a browser"),
        "{stdout}"
    );
    let host_web = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(demo.join("host").join("node.json")).unwrap(),
    )
    .unwrap()["http"]
        .as_str()
        .expect("the host serves HTTP")
        .trim_end_matches('/')
        .to_owned();
    assert!(
        stdout.contains(&format!("{host_web}/patient.html")),
        "{stdout}"
    );
    // Mary's, the pharmacist's and the nurse's nodes were stopped cleanly; the host runs
    // and answers.
    for who in ["mary", "pharmacist", "dnurse"] {
        assert!(!demo.join(who).join("control.sock").exists(), "{who}");
    }
    let pid = host.pid().expect("the host's node.json");
    let george_pid = george.pid().expect("George's node.json");
    assert!(
        stdout.contains(&format!("kill {pid} {george_pid}")),
        "{stdout}"
    );

    // George's node serves his web app where the demo says, and the API answers with the
    // token `cophr token` prints.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(demo.join("george").join("node.json")).unwrap())
            .unwrap();
    let web = info["http"].as_str().expect("George's node serves HTTP");
    assert!(stdout.contains(&format!("web app at {web}/")), "{stdout}");
    let token = cophr()
        .arg("--home")
        .arg(demo.join("george"))
        .arg("token")
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut page = agent.get(format!("{web}/")).call().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.body_mut().read_to_string().unwrap().contains("<html"));
    let mut me = agent
        .get(format!("{web}/api/v1/whoami"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);
    let me: serde_json::Value =
        serde_json::from_str(&me.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(me["name"], "George Jones", "{me}");
    let refused = agent.get(format!("{web}/api/v1/whoami")).call().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(Command::new("kill")
        .arg(george_pid.to_string())
        .status()
        .unwrap()
        .success());
    eventually("George's node to stop", || {
        !demo.join("george").join("node.json").exists()
    });
    let status = cophr()
        .arg("--home")
        .arg(demo.join("host"))
        .args(["--json", "status"])
        .output()
        .unwrap();
    assert!(status.status.success());
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["pid"].as_u64(), Some(u64::from(pid)));
    assert_eq!(
        v["records"][0]["hosted_here"],
        serde_json::Value::Bool(true)
    );
    // Stopping it as the demo says leaves nothing behind.
    assert!(Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    eventually("the host to stop", || {
        !demo.join("host").join("node.json").exists()
    });
    assert!(!demo.join("host").join("control.sock").exists());
}
