//! Shared helpers for the CLI integration tests: find the `cophr` binary, give each person
//! their own home, and drive the command with a deterministic clock.
//!
//! The binary belongs to another package (`cophr`), so Cargo does not build it for this
//! one: run `cargo build -p cophr` before `cargo test`.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

pub mod api;
pub mod node;
pub mod search;

/// A number from the environment variable `name` (a campaign's size or seed), or `default`;
/// a value that is not a number fails the test, naming it.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{name}={s:?}: {e}"))
        })
        .unwrap_or(default)
}

/// The `cophr` binary built next to this test's target directory.
pub fn cophr_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe
        .parent()
        .expect("the test binary's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("cophr{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "the cophr binary is not built at {}: run `cargo build -p cophr` first (`cargo test --workspace` builds it too)",
        bin.display()
    );
    bin
}

/// A clock shared by every test in the binary: each call gives a later time (one minute on),
/// starting 2026-03-01T00:00:00Z.
pub fn tick() -> String {
    static MINUTES: AtomicU64 = AtomicU64::new(0);
    let n = MINUTES.fetch_add(1, Ordering::SeqCst);
    let day = 1 + n / (24 * 60);
    assert!(day <= 31, "the test clock ran past March");
    format!("2026-03-{day:02}T{:02}:{:02}:00Z", (n / 60) % 24, n % 60)
}

/// A `cophr` command with no inherited cophr environment.
pub fn cophr() -> Command {
    let mut c = Command::new(cophr_bin());
    c.env_remove("COPHR_HOME")
        .env_remove("COPHR_DEVICE")
        .env_remove("RUST_LOG");
    c
}

/// The result of running a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// One person: an identity in their own home (their own node).
#[derive(Debug)]
pub struct Person {
    /// Display name.
    pub name: String,
    /// Their home directory.
    pub home: TempDir,
    /// Their actor id.
    pub actor: String,
}

impl Person {
    /// Creates a person with `cophr init`.
    pub fn new(name: &str, role: &str, organisation: Option<&str>) -> Person {
        let home = TempDir::new().expect("a temporary home");
        let mut args = vec!["init", "--name", name, "--role", role];
        if let Some(o) = organisation {
            args.extend(["--organisation", o]);
        }
        let device = format!("{}-device", role);
        args.extend(["--device", device.as_str()]);
        let mut p = Person {
            name: name.to_owned(),
            home,
            actor: String::new(),
        };
        p.ok(&args);
        p.actor = p.json(&["whoami"])["actor"]
            .as_str()
            .expect("whoami prints the actor id")
            .to_owned();
        assert!(p.actor.starts_with("a-"), "actor id {}", p.actor);
        p
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// Runs `cophr --home HOME --now <next tick> ARGS…`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_at(&tick(), args)
    }

    /// Runs at a given time.
    pub fn run_at(&self, now: &str, args: &[&str]) -> Run {
        self.exec(Some(now), args)
    }

    /// Runs `cophr --home HOME [--now NOW] ARGS…`.
    pub fn exec(&self, now: Option<&str>, args: &[&str]) -> Run {
        let mut c = cophr();
        c.arg("--home").arg(self.dir());
        if let Some(now) = now {
            c.arg("--now").arg(now);
        }
        let out = c.args(args).output().expect("cophr runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts that `r` (the run of `args`) succeeded; returns its stdout.
    pub fn succeeded(&self, args: &[&str], r: Run) -> String {
        assert_eq!(
            r.code,
            0,
            "{}: `cophr {}` failed (exit {}):\n{}{}",
            self.name,
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.succeeded(args, self.run(args))
    }

    /// Runs and asserts the exit code; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code,
            code,
            "{}: `cophr {}` should exit {code}, got {}:\nstdout: {}\nstderr: {}",
            self.name,
            args.join(" "),
            r.code,
            r.stdout,
            r.stderr
        );
        assert!(r.stderr.starts_with("error: "), "stderr: {}", r.stderr);
        r.stderr
    }

    /// Runs with `--json` and parses the output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Adds an entry, returning its id.
    pub fn add(&self, args: &[&str]) -> String {
        let mut all = vec!["add"];
        all.extend_from_slice(args);
        let id = self.ok(&all).trim().to_owned();
        assert!(id.starts_with("e-"), "add printed {id}");
        id
    }

    /// Exports the record held to `file`.
    pub fn export(&self, file: &Path) {
        self.ok(&["export", file.to_str().expect("utf-8 path")]);
    }

    /// Imports `file`.
    pub fn import(&self, file: &Path) {
        self.ok(&["import", file.to_str().expect("utf-8 path")]);
    }

    /// How many entries this person's store holds of the (only) record, 0 if none.
    pub fn entries_held(&self) -> u64 {
        let v = self.json(&["records"]);
        v["records"]
            .as_array()
            .expect("records list")
            .iter()
            .map(|r| r["entries"].as_u64().expect("entry count"))
            .sum()
    }

    /// The current items this person sees (`show --json`).
    pub fn items(&self) -> Vec<Value> {
        self.json(&["show"])["items"]
            .as_array()
            .expect("items")
            .clone()
    }

    /// The set of categories among the items this person sees.
    pub fn categories(&self) -> std::collections::BTreeSet<String> {
        self.items()
            .iter()
            .map(|i| i["category"].as_str().expect("category").to_owned())
            .collect()
    }

    /// Makes a file's permissions `mode`.
    pub fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// Whether the items include the entry `id` (as item id or current version).
pub fn has_item(items: &[Value], id: &str) -> bool {
    items
        .iter()
        .any(|i| i["id"].as_str() == Some(id) || i["version"].as_str() == Some(id))
}

/// Writes a professional's attestation by `ais` (valid from a day ago for a year, on the
/// real clock) to `dir/<name>.att` and adds it to `p`'s identity (`cophr identity add`).
pub fn attest_professional(
    dir: &Path,
    ais: &cophr_protocol::Keypair,
    p: &Person,
    profession: &str,
    organisation: &str,
) {
    use cophr_protocol::trust::attestation::{
        Attestation, Attributes, Method, OrganisationRef, ATTESTATION_VERSION,
    };
    use cophr_protocol::trust::AssuranceLevel;
    const DAY: u64 = 24 * 3600 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64;
    let subject: cophr_protocol::ActorId = p.actor.parse().expect("an actor id");
    let a = Attestation {
        v: ATTESTATION_VERSION,
        issuer: ais.actor(),
        subject,
        attributes: Attributes::Professional {
            name: p.name.clone(),
            profession: profession.into(),
            registration: None,
            organisation: Some(OrganisationRef {
                name: organisation.into(),
                ods: None,
            }),
        },
        level: AssuranceLevel::P9,
        method: Method::InPerson,
        not_before: now - DAY,
        not_after: now + 365 * DAY,
        serial: subject.as_bytes()[..16].to_vec(),
    }
    .sign(ais)
    .expect("a valid attestation");
    let file = dir.join(format!("{}.att", p.actor));
    std::fs::write(&file, a.to_text()).expect("write the attestation");
    p.live_ok(&["identity", "add", file.to_str().expect("a UTF-8 path")]);
}
