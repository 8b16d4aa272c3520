//! `cophr demo`: a guided tour on a local demo: George's record, the people who care for
//! him, grants, writes that are allowed and refused, history and the audit trail.
//!
//! Every step is a real `cophr` command (this same binary, with a `--home` per person),
//! printed before it runs, so the tour shows exactly what to type. The homes are left in
//! place to try more commands.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args as ClapArgs;

use crate::context::Ctx;
use crate::error::{CliError, Result};

/// Build a local demo (George, Mary, a home-care nurse, a pharmacist) and walk through it.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Where to put the demo's homes (one directory per person); must not exist yet, or be
    /// empty
    #[arg(long, default_value = "cophr-demo")]
    dir: PathBuf,
    /// Print only the commands' output, not the narration
    #[arg(long)]
    quiet: bool,
}

/// What a step is expected to do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    /// Refused with this exit code (the point of the step).
    Refused(i32),
}

struct Tour {
    exe: PathBuf,
    dir: PathBuf,
    quiet: bool,
    now: u64,
}

impl Tour {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("\n# {text}");
        }
    }

    /// Runs `cophr --home DIR/<who> <args>`, printing the command and its output.
    fn run(&mut self, who: &str, args: &[&str], expect: Expect) -> Result<String> {
        // Each step one minute later, so histories and state-at-time read naturally.
        self.now += 60;
        let when = time::OffsetDateTime::from_unix_timestamp(self.now as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let home = self.dir.join(who);
        println!("$ cophr --home {} {}", home.display(), args.join(" "));
        let out = Command::new(&self.exe)
            .arg("--home")
            .arg(&home)
            .arg("--now")
            .arg(&when)
            .args(args)
            .output()
            .map_err(|e| CliError::other(format!("cannot run {}: {e}", self.exe.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr);
        print!("{stdout}");
        eprint!("{stderr}");
        let code = out.status.code().unwrap_or(-1);
        match expect {
            Expect::Ok if code == 0 => Ok(stdout),
            Expect::Refused(c) if code == c => {
                if !self.quiet {
                    println!("(refused as expected: exit {code})");
                }
                Ok(stdout)
            }
            _ => Err(CliError::other(format!(
                "demo step `cophr {}` as {who} ended with exit {code}",
                args.join(" ")
            ))),
        }
    }

    fn actor(&mut self, who: &str) -> Result<String> {
        let out = self.run(who, &["--json", "whoami"], Expect::Ok)?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| CliError::other(format!("whoami printed no JSON: {e}")))?;
        v["actor"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::other("whoami printed no actor id"))
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

fn empty_or_missing(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => !dir.exists(),
    }
}

/// Runs `demo`.
pub fn run(_ctx: &Ctx, args: Args) -> Result<()> {
    if !empty_or_missing(&args.dir) {
        return Err(CliError::invalid(format!(
            "{} already exists and is not empty; choose another --dir",
            args.dir.display()
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::other(format!("cannot create {}: {e}", args.dir.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::other(format!("cannot find this program: {e}")))?;
    let dir = std::fs::canonicalize(&args.dir).unwrap_or(args.dir.clone());
    let mut t = Tour {
        exe,
        dir,
        quiet: args.quiet,
        now: 1_795_000_000,
    };

    t.say("George (75) keeps his record; each person has their own keys in their own home.");
    t.run(
        "george",
        &["init", "--name", "George Jones", "--role", "patient"],
        Expect::Ok,
    )?;
    t.run("george", &["record", "create"], Expect::Ok)?;
    t.run(
        "mary",
        &["init", "--name", "Mary Jones", "--role", "carer"],
        Expect::Ok,
    )?;
    t.run(
        "homecare",
        &[
            "init",
            "--name",
            "Sam Patel",
            "--role",
            "nurse",
            "--organisation",
            "Leeds Home Care",
        ],
        Expect::Ok,
    )?;
    t.run(
        "pharmacist",
        &[
            "init",
            "--name",
            "Ana Silva",
            "--role",
            "pharmacist",
            "--organisation",
            "Oakwood Pharmacy",
        ],
        Expect::Ok,
    )?;
    let mary = t.actor("mary")?;
    let homecare = t.actor("homecare")?;
    let pharmacist = t.actor("pharmacist")?;

    t.say("George adds what matters to him, then grants access: Mary everything, home care vital signs and procedures, the pharmacist a view of problems, medications and allergies.");
    t.run(
        "george",
        &[
            "add",
            "about-me",
            "--thing-1",
            "I am deaf in my left ear",
            "--thing-2",
            "Mary is my main carer",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "add",
            "allergies",
            "--agent",
            "Penicillin",
            "--reaction",
            "rash",
            "--severity",
            "moderate",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "add",
            "problems",
            "--problem",
            "Type 2 diabetes",
            "--onset",
            "2012",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "grant",
            &mary,
            "--level",
            "delete",
            "--categories",
            "all",
            "--audit",
            "--delegate",
            "--label",
            "Mary (wife, main carer)",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "grant",
            &homecare,
            "--level",
            "write",
            "--categories",
            "vital-signs,procedures",
            "--label",
            "Leeds Home Care",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "grant",
            &pharmacist,
            "--level",
            "view",
            "--categories",
            "problems,medications,allergies",
            "--label",
            "Oakwood Pharmacy",
        ],
        Expect::Ok,
    )?;

    t.say("Until the nodes network, records travel as signed export files that anyone can verify offline.");
    let george_file = t.file("george.cophr");
    t.run("george", &["export", &george_file], Expect::Ok)?;
    t.run("george", &["verify", &george_file], Expect::Ok)?;
    for who in ["mary", "homecare", "pharmacist"] {
        t.run(who, &["import", &george_file], Expect::Ok)?;
    }

    t.say("Mary and home care write; the pharmacist may only look.");
    t.run(
        "mary",
        &[
            "add",
            "vital-signs",
            "--systolic",
            "142",
            "--diastolic",
            "88",
            "--blood-glucose",
            "7.9",
        ],
        Expect::Ok,
    )?;
    t.run(
        "homecare",
        &[
            "add",
            "vital-signs",
            "--systolic",
            "138",
            "--diastolic",
            "85",
            "--heart-rate",
            "72",
            "--spo2",
            "97",
        ],
        Expect::Ok,
    )?;
    t.run(
        "homecare",
        &["add", "medications", "--medication", "Metformin"],
        Expect::Refused(3),
    )?;
    t.run(
        "pharmacist",
        &["add", "allergies", "--agent", "Latex"],
        Expect::Refused(3),
    )?;
    t.run("pharmacist", &["show"], Expect::Ok)?;

    t.say("Their writes come back to George in their export files, signed by them.");
    for who in ["mary", "homecare"] {
        let f = t.file(&format!("{who}.cophr"));
        t.run(who, &["export", &f], Expect::Ok)?;
        t.run("george", &["import", &f], Expect::Ok)?;
    }
    t.run("george", &["show"], Expect::Ok)?;
    t.run("george", &["grants"], Expect::Ok)?;
    t.run("george", &["audit"], Expect::Ok)?;

    let home = t.dir.join("george");
    println!(
        "\nThe demo's homes are in {}. Try, for example:\n  cophr --home {} show --json\n  cophr --home {} history <ENTRY>\n  cophr --home {} show --at 2026-11-18T11:25:00Z\n  cophr --help",
        t.dir.display(),
        home.display(),
        home.display(),
        home.display()
    );
    Ok(())
}
