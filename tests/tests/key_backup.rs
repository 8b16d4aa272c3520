//! Encrypted key backups across real processes: George gives his home host an encrypted
//! backup of his key, loses his home, restores the key from the host with his passphrase,
//! gets his record back and writes into it again; a wrong passphrase restores nothing.
//! Files and hosts alike: a backup file restores into a fresh home, never over another
//! identity. Conditions are polled with a deadline, never waited for with a fixed sleep.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::node::{eventually, Node};
use cli_support::{cophr, Person};
use serde_json::Value;

const PASSPHRASE: &str = "marmalade kettle lighthouse";

/// A passphrase file (mode 0600) in `dir`.
fn passphrase_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, format!("{text}\n")).expect("passphrase file");
    Person::chmod(&f, 0o600);
    f
}

fn entries_of(p: &Person, record: &str) -> u64 {
    p.live_json(&["records"])["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["record"].as_str() == Some(record))
        .and_then(|r| r["entries"].as_u64())
        .unwrap_or(0)
}

#[test]
fn george_restores_his_key_from_the_host_and_writes_again() {
    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Community Host", "host", Some("Leeds Community Host"));
    let secrets = tempfile::TempDir::new().expect("a directory for passphrase files");
    let good = passphrase_file(secrets.path(), "good", PASSPHRASE);
    let bad = passphrase_file(secrets.path(), "bad", "marmalade kettle lighthouses");
    let good = good.to_str().unwrap();
    let bad = bad.to_str().unwrap();

    let host_node = Node::start(&host, &[]);
    let mut george_node = Node::start(&george, &[]);
    let addr = host_node.addr();
    george.live_ok(&["record", "create"]);
    let problem = george.live_add(&["problems", "--problem", "Type 2 diabetes"]);
    george.live_ok(&["host", &addr]);

    // The backup goes to the home host through George's node; no file is written.
    let out = george.live_json(&["key", "backup", "--to-host", "--passphrase-file", good]);
    assert_eq!(out["host"].as_str(), Some(addr.as_str()), "{out}");
    assert_eq!(out["file"], Value::Null, "{out}");
    assert_eq!(out["kdf"]["algorithm"].as_str(), Some("argon2id"));
    let before = entries_of(&host, &george.actor);
    assert!(before >= 2, "the host holds George's record: {before}");

    // George loses his home: node, key, store, everything.
    george_node.terminate();
    std::fs::remove_dir_all(george.dir()).expect("George's home is deleted");

    // A wrong passphrase restores nothing, and says so.
    let from_host = [
        "key",
        "restore",
        "--from-host",
        &addr,
        "--actor",
        &george.actor,
    ];
    let mut args = from_host.to_vec();
    args.extend(["--passphrase-file", bad]);
    let err = george.fails(3, &args);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(err.contains("nothing was restored"), "{err}");
    assert!(
        !george.dir().exists(),
        "nothing written after a wrong passphrase"
    );

    // The right passphrase brings his identity back.
    let mut args = from_host.to_vec();
    args.extend(["--passphrase-file", good]);
    let out = george.live_ok(&args);
    assert!(out.contains("Restored identity"), "{out}");
    let me = george.json(&["whoami"]);
    assert_eq!(me["actor"].as_str(), Some(george.actor.as_str()));
    assert_eq!(me["name"].as_str(), Some("George Jones"));
    let key = george.dir().join("identity.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // His record comes back from the host, and he writes into it again: the host takes it.
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["follow", &george.actor, "--host", &addr]);
    assert_eq!(entries_of(&george, &george.actor), before);
    let id = george.live_add(&["medications", "--medication", "Metformin"]);
    // The entry and, before it, the medications stream's first epoch.
    eventually("the host to accept George's new entry", || {
        entries_of(&host, &george.actor) == before + 2
    });
    assert!(george.sees(&id));
    // The restored key opens what was sealed before the loss.
    assert!(george.sees(&problem));
}

#[test]
fn a_backup_file_restores_into_a_fresh_home_only() {
    let george = Person::new("George Jones", "patient", None);
    let secrets = tempfile::TempDir::new().expect("a directory for files");
    let good = passphrase_file(secrets.path(), "good", PASSPHRASE);
    let file = secrets.path().join("george.cophr-key");
    let file_s = file.to_str().unwrap();
    george.ok(&[
        "key",
        "backup",
        "-o",
        file_s,
        "--passphrase-file",
        good.to_str().unwrap(),
    ]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the backup file is 0600");
    let secret = std::fs::read_to_string(george.dir().join("identity.key")).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains(secret.trim()),
        "the key is not in the file in clear"
    );

    // A fresh home, passphrase from the environment.
    let fresh = tempfile::TempDir::new().unwrap();
    let home = fresh.path().join("home");
    let restore = |pass: &str| {
        cophr()
            .arg("--home")
            .arg(&home)
            .args(["--json", "key", "restore", file_s])
            .env("COPHR_PASSPHRASE", pass)
            .output()
            .expect("cophr runs")
    };
    let wrong = restore("not the passphrase at all");
    assert_eq!(wrong.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));
    assert!(!home.exists(), "nothing written");
    let ok = restore(PASSPHRASE);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["actor"].as_str(), Some(george.actor.as_str()));
    assert_eq!(
        std::fs::read_to_string(home.join("identity.key")).unwrap(),
        secret
    );

    // Never over another identity.
    let mary = Person::new("Mary Jones", "carer", None);
    let mary_key = std::fs::read(mary.dir().join("identity.key")).unwrap();
    let err = mary.fails(
        7,
        &[
            "key",
            "restore",
            file_s,
            "--passphrase-file",
            good.to_str().unwrap(),
        ],
    );
    assert!(err.contains("already holds another identity"), "{err}");
    assert_eq!(
        std::fs::read(mary.dir().join("identity.key")).unwrap(),
        mary_key
    );

    // Too short a passphrase seals nothing; no passphrase at all is a usage error.
    let short = passphrase_file(secrets.path(), "short", "too short");
    let err = george.fails(
        5,
        &[
            "key",
            "backup",
            "-o",
            file_s,
            "--passphrase-file",
            short.to_str().unwrap(),
        ],
    );
    assert!(err.contains("at least 12 characters"), "{err}");
    let err = george.fails(2, &["key", "backup", "-o", file_s]);
    assert!(err.contains("no passphrase"), "{err}");
}
