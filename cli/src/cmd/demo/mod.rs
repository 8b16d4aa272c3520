//! `cophr demo`: a guided tour on a local demo: George's record, the people who care for
//! him, grants, writes that are allowed and refused, history and the audit trail.
//!
//! Every step is a real `cophr` command (this same binary, with a `--home` per person),
//! printed before it runs, so the tour shows exactly what to type. The homes are left in
//! place to try more commands.
//!
//! `--network` tours a small local network instead: a community host and nodes for George,
//! Mary and the pharmacist, each a `cophr node run` process on 127.0.0.1; an entry
//! replicates live and a write is refused; the host and George's node (serving his web
//! app) are left running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;

use crate::context::Ctx;
use crate::error::{CliError, Result};

mod browser;

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
    /// Tour a local network instead: a host and three nodes (separate processes on
    /// 127.0.0.1); the host and George's node, serving his web app, are left running
    #[arg(long)]
    network: bool,
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
    /// The simulated clock (seconds); `None`: the real clock (the network tour, whose
    /// nodes sign with it).
    now: Option<u64>,
}

impl Tour {
    fn say(&self, text: &str) {
        if !self.quiet {
            println!("\n# {text}");
        }
    }

    /// Runs `cophr --home DIR/<who> <args>`, printing the command and its output.
    fn run(&mut self, who: &str, args: &[&str], expect: Expect) -> Result<String> {
        let home = self.dir.join(who);
        println!("$ cophr --home {} {}", home.display(), args.join(" "));
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--home").arg(&home);
        if let Some(now) = self.now.as_mut() {
            // Each step one minute later, so histories and state-at-time read naturally.
            *now += 60;
            let when = time::OffsetDateTime::from_unix_timestamp(*now as i64)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            cmd.arg("--now").arg(&when);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
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

    /// George grants `to` access: `level` on `categories`, with any extra flags.
    fn grant(&mut self, to: &str, level: &str, categories: &str, extra: &[&str]) -> Result<String> {
        let mut args = vec!["grant", to, "--level", level, "--categories", categories];
        args.extend_from_slice(extra);
        self.run("george", &args, Expect::Ok)
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
    let mut t = tour_for(&args)?;
    if args.network {
        return network_tour(&mut t);
    }
    let (mary, homecare, pharmacist) = family_and_carers(&mut t)?;
    record_and_grants(&mut t, &mary, &homecare, &pharmacist)?;
    share_by_file(&mut t)?;
    carers_write(&mut t)?;
    writes_come_back(&mut t)?;
    print_next_steps(&t);
    Ok(())
}

/// Checks the demo directory is new, creates it and sets up the tour in it.
fn tour_for(args: &Args) -> Result<Tour> {
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
    Ok(Tour {
        exe,
        dir,
        quiet: args.quiet,
        now: (!args.network).then_some(1_795_000_000),
    })
}

/// The people set up their homes: George (with his record), Mary, home care and the
/// pharmacist; the actor ids of the last three.
fn family_and_carers(t: &mut Tour) -> Result<(String, String, String)> {
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
    Ok((mary, homecare, pharmacist))
}

/// George adds what matters to him and grants each of the others access.
fn record_and_grants(t: &mut Tour, mary: &str, homecare: &str, pharmacist: &str) -> Result<()> {
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
    t.grant(
        mary,
        "delete",
        "all",
        &[
            "--audit",
            "--delegate",
            "--label",
            "Mary (wife, main carer)",
        ],
    )?;
    t.grant(
        homecare,
        "write",
        "vital-signs,procedures",
        &["--label", "Leeds Home Care"],
    )?;
    t.grant(
        pharmacist,
        "view",
        "problems,medications,allergies",
        &["--label", "Oakwood Pharmacy"],
    )?;
    Ok(())
}

/// George's record travels to the others as a signed export file.
fn share_by_file(t: &mut Tour) -> Result<()> {
    t.say("Until the nodes network, records travel as signed export files that anyone can verify offline.");
    let george_file = t.file("george.cophr");
    t.run("george", &["export", &george_file], Expect::Ok)?;
    t.run("george", &["verify", &george_file], Expect::Ok)?;
    for who in ["mary", "homecare", "pharmacist"] {
        t.run(who, &["import", &george_file], Expect::Ok)?;
    }
    Ok(())
}

/// Mary and home care write; the refused writes show what each may do.
fn carers_write(t: &mut Tour) -> Result<()> {
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
    Ok(())
}

/// The carers' writes come back to George in their export files.
fn writes_come_back(t: &mut Tour) -> Result<()> {
    t.say("Their writes come back to George in their export files, signed by them.");
    for who in ["mary", "homecare"] {
        let f = t.file(&format!("{who}.cophr"));
        t.run(who, &["export", &f], Expect::Ok)?;
        t.run("george", &["import", &f], Expect::Ok)?;
    }
    t.run("george", &["show"], Expect::Ok)?;
    t.run("george", &["grants"], Expect::Ok)?;
    t.run("george", &["audit"], Expect::Ok)?;
    Ok(())
}

/// Prints where the demo's homes are and what to try next.
fn print_next_steps(t: &Tour) {
    let home = t.dir.join("george");
    println!(
        "\nThe demo's homes are in {}. Try, for example:\n  cophr --home {} show --json\n  cophr --home {} history <ENTRY>\n  cophr --home {} show --at 2026-11-18T11:25:00Z\n  cophr --help",
        t.dir.display(),
        home.display(),
        home.display(),
        home.display()
    );
}

/// How long a demo node may take to start, or an entry to arrive.
const NODE_WAIT: Duration = Duration::from_secs(20);

/// The nodes the network tour started. Dropping it stops every node still held (so a
/// failed tour leaves nothing running); the host is released on success.
#[derive(Default)]
struct Nodes {
    running: Vec<(String, Child)>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, mut child) in self.running.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The base URL of the HTTP API a node wrote to its `node.json`, if it serves one.
fn node_http(home: &Path) -> Option<String> {
    let bytes = std::fs::read(home.join(crate::control::NODE_JSON)).ok()?;
    let info: crate::control::NodeInfo = serde_json::from_slice(&bytes).ok()?;
    info.http
}

/// What a node wrote to its `node.json`: its TCP address and pid.
fn node_info(home: &Path) -> Option<(String, u32)> {
    let bytes = std::fs::read(home.join(crate::control::NODE_JSON)).ok()?;
    let info: crate::control::NodeInfo = serde_json::from_slice(&bytes).ok()?;
    let tcp = info.listen.into_iter().find(|a| a.contains("/tcp/"))?;
    Some((tcp, info.pid))
}

impl Tour {
    /// Starts `cophr node run` in `who`'s home (its log in HOME/node.log) and waits until
    /// it listens. Returns its TCP address. Only George's node serves the HTTP API and web
    /// app (on a free port); the others run without. Mary's node fetches documents' files
    /// on demand.
    fn start_node(&self, nodes: &mut Nodes, who: &str) -> Result<String> {
        let home = self.dir.join(who);
        let http: &[&str] = match who {
            "george" => &["--http", "127.0.0.1:0"],
            // The community host takes records by invitation only, and serves the page
            // of patients with only a browser.
            "host" => &["--http", "127.0.0.1:0", "--admission", "invitation"],
            "mary" => &["--no-http", "--documents", "on-demand"],
            _ => &["--no-http"],
        };
        println!(
            "$ cophr --home {} node run --sync-interval 2 {} 2> {}/node.log &",
            home.display(),
            http.join(" "),
            home.display()
        );
        let log = std::fs::File::create(home.join("node.log"))
            .map_err(|e| CliError::other(format!("cannot create the node's log: {e}")))?;
        let mut child = Command::new(&self.exe)
            .arg("--home")
            .arg(&home)
            .args(["node", "run", "--sync-interval", "2"])
            .args(http)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| CliError::other(format!("cannot start {who}'s node: {e}")))?;
        let start = Instant::now();
        let addr = loop {
            if let Some((addr, pid)) = node_info(&home) {
                if pid == child.id() {
                    break addr;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(CliError::other(format!(
                    "{who}'s node stopped ({status}); see {}/node.log",
                    home.display()
                )));
            }
            if start.elapsed() > NODE_WAIT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CliError::other(format!(
                    "{who}'s node did not start in time; see {}/node.log",
                    home.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        println!("  {who}'s node listens on {addr}");
        nodes.running.push((who.to_owned(), child));
        Ok(addr)
    }

    /// Stops a node with SIGTERM (as Ctrl-C would), waiting for it to exit.
    fn stop_node(&self, nodes: &mut Nodes, who: &str) -> Result<()> {
        let Some(i) = nodes.running.iter().position(|(w, _)| w == who) else {
            return Ok(());
        };
        let (_, mut child) = nodes.running.remove(i);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < NODE_WAIT {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// The items `who` currently sees (`cophr show`, polled silently; none on failure).
    fn items(&self, who: &str) -> Vec<serde_json::Value> {
        Command::new(&self.exe)
            .arg("--home")
            .arg(self.dir.join(who))
            .args(["--json", "show"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Whether `who` currently sees entry `id`.
    fn sees(&self, who: &str, id: &str) -> bool {
        self.items(who)
            .iter()
            .any(|i| i["id"].as_str() == Some(id) || i["version"].as_str() == Some(id))
    }

    /// Whether `who` has a notification of `event` (`cophr notifications list`, polled
    /// silently).
    fn notified(&self, who: &str, event: &str) -> bool {
        Command::new(&self.exe)
            .arg("--home")
            .arg(self.dir.join(who))
            .args(["--json", "notifications", "list"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|n| n["event"].as_str() == Some(event))
    }

    /// Whether `who` currently reads at least one item of `category`.
    fn reads_any(&self, who: &str, category: &str) -> bool {
        self.items(who)
            .iter()
            .any(|i| i["category"].as_str() == Some(category))
    }
}

/// The network tour.
fn network_tour(t: &mut Tour) -> Result<()> {
    let mut nodes = Nodes::default();
    let (george, mary, pharmacist) = network_people(t)?;
    george_record(t, &mary, &pharmacist)?;
    let host = start_nodes(t, &mut nodes)?;
    host_by_invitation(t, &host)?;
    host_cannot_read(t)?;
    pharmacy_by_invitation(t)?;
    others_follow(t, &george, &host)?;
    reading_replicates(t)?;
    a_letter_travels(t)?;
    an_appointment_is_booked(t)?;
    the_care_team(t, &mut nodes, &george, &host)?;
    home_care_as_an_organisation(t, &mut nodes, &george, &host)?;
    refusal_and_audit(t)?;
    george_on_his_phone(t, &mut nodes, &george, &host)?;
    lost_key_recovered(t, &mut nodes, &george, &host)?;
    browser::george_in_a_browser(t, &george)?;
    stop_and_release(t, &mut nodes, &host, &george)
}

/// The people of the network tour set up their homes: the host, George, Mary and the
/// pharmacist; the actor ids of George, Mary and the pharmacist.
fn network_people(t: &mut Tour) -> Result<(String, String, String)> {
    t.say("A small local network: a community host, and nodes for George, Mary (his wife and carer) and his pharmacist. Each is its own process with its own keys, on 127.0.0.1.");
    t.run(
        "host",
        &[
            "init",
            "--name",
            "Community Host",
            "--role",
            "host",
            "--organisation",
            "Leeds Community Host",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &["init", "--name", "George Jones", "--role", "patient"],
        Expect::Ok,
    )?;
    t.run(
        "mary",
        &["init", "--name", "Mary Jones", "--role", "carer"],
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
    let george = t.actor("george")?;
    let mary = t.actor("mary")?;
    let pharmacist = t.actor("pharmacist")?;
    Ok((george, mary, pharmacist))
}

/// George creates his record, adds to it and grants Mary access (the pharmacist is
/// invited by link later).
fn george_record(t: &mut Tour, mary: &str, pharmacist: &str) -> Result<()> {
    t.run("george", &["record", "create"], Expect::Ok)?;
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
        &["add", "medications", "--medication", "Metformin"],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &["add", "about-me", "--thing-1", "I am deaf in my left ear"],
        Expect::Ok,
    )?;
    t.grant(
        mary,
        "delete",
        "all",
        &[
            "--audit",
            "--delegate",
            "--label",
            "Mary (wife, main carer)",
        ],
    )?;
    // The pharmacist is invited later, by link, once the record has a home host.
    let _ = pharmacist;
    Ok(())
}

/// The pharmacist is verified in person by an identity assurance service George trusts,
/// and invited by a link (no actor id): George sees who accepted, verified, and confirms.
fn pharmacy_by_invitation(t: &mut Tour) -> Result<()> {
    t.say("The Leeds identity assurance service checks the pharmacist's registration in person and signs an attestation of who she is.");
    t.run(
        "ais",
        &["init", "--name", "Leeds Care Record AIS", "--role", "ais"],
        Expect::Ok,
    )?;
    let ais = t.actor("ais")?;
    let pharmacist = t.actor("pharmacist")?;
    let att = t.file("ana-silva.attestation");
    t.run(
        "ais",
        &[
            "ais",
            "attest",
            "--subject",
            &pharmacist,
            "--level",
            "P9",
            "--professional",
            "--name",
            "Ana Silva",
            "--profession",
            "pharmacist",
            "--registration",
            "GPhC:2071234",
            "--organisation",
            "Oakwood Pharmacy",
            "--ods",
            "FA123",
            "-o",
            &att,
        ],
        Expect::Ok,
    )?;
    t.run("pharmacist", &["identity", "add", &att], Expect::Ok)?;
    t.say("George trusts that service. He invites the pharmacy with a one-time link and QR code, for exactly the access he chooses, and only for someone it verified at P9.");
    t.run(
        "george",
        &[
            "trust",
            "add",
            &ais,
            "--name",
            "Leeds AIS",
            "--max-level",
            "P9",
        ],
        Expect::Ok,
    )?;
    let out = t.run(
        "george",
        &[
            "invite",
            "--level",
            "view",
            "--categories",
            "problems,medications,allergies",
            "--label",
            "Oakwood Pharmacy",
            "--require",
            "P9",
            "--expires",
            "2d",
        ],
        Expect::Ok,
    )?;
    let link = out
        .lines()
        .find(|l| l.starts_with("cophr://invite/"))
        .map(str::to_owned)
        .ok_or_else(|| CliError::other("the invitation printed no link"))?;
    t.say("The pharmacist accepts it on her node; the link works once.");
    t.run("pharmacist", &["accept", &link], Expect::Ok)?;
    t.say("George sees who accepted — verified by the service he trusts — and confirms.");
    let listed = t.run("george", &["invitations", "list", "--json"], Expect::Ok)?;
    let id = serde_json::from_str::<serde_json::Value>(&listed)
        .ok()
        .and_then(|v| {
            v["invitations"][0]["invitation"]
                .as_str()
                .map(str::to_owned)
        })
        .ok_or_else(|| CliError::other("no invitation was listed"))?;
    t.run("george", &["invitations", "list"], Expect::Ok)?;
    t.run("george", &["invitations", "confirm", &id], Expect::Ok)?;
    t.run("mary", &["accept", &link], Expect::Refused(3))?;
    Ok(())
}

/// Everyone starts their node; the host's address.
fn start_nodes(t: &mut Tour, nodes: &mut Nodes) -> Result<String> {
    t.say("Everyone starts their node. While a node runs, the person's commands run inside it.");
    let host = t.start_node(nodes, "host")?;
    t.start_node(nodes, "george")?;
    t.start_node(nodes, "mary")?;
    t.start_node(nodes, "pharmacist")?;
    Ok(host)
}

/// The host refuses George without an invitation, then takes his record with one.
fn host_by_invitation(t: &mut Tour, host: &str) -> Result<()> {
    t.say("The community host takes records by invitation only: without one it refuses George's record.");
    t.run("george", &["host", host], Expect::Refused(3))?;
    t.say("Its operator invites George (a one-time code; the host keeps only its hash).");
    let invited = t.run("host", &["node", "invite", "--json"], Expect::Ok)?;
    let code = serde_json::from_str::<serde_json::Value>(&invited)
        .ok()
        .and_then(|v| v["invitation"].as_str().map(str::to_owned))
        .ok_or_else(|| CliError::other("the host printed no invitation"))?;
    t.say("With it, George makes the community host his record's home: it takes the whole record, checks it, and publishes (signed by George) where the record lives.");
    t.run("george", &["host", host, "--invitation", &code], Expect::Ok)?;
    Ok(())
}

/// Times `needle` occurs in the files under `dir` (recursively).
fn occurrences(dir: &Path, needle: &[u8]) -> usize {
    let Ok(list) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in list.flatten() {
        let path = e.path();
        if path.is_dir() {
            n += occurrences(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            n += bytes.windows(needle.len()).filter(|w| *w == needle).count();
        }
    }
    n
}

/// The host holds George's record and cannot read it: every file it keeps is searched for
/// what George wrote (a demo that fails if any is found).
fn host_cannot_read(t: &mut Tour) -> Result<()> {
    t.say("The host keeps George's record, verifies it and serves it, but cannot read it: every category's content is sealed for the people George granted (the host is a relay). Searching every file the host keeps for what George wrote:");
    for words in ["I am deaf in my left ear", "Metformin", "Type 2 diabetes"] {
        let found = occurrences(&t.dir.join("host"), words.as_bytes());
        println!("  \"{words}\": found {found} times in the host's files");
        if found > 0 {
            return Err(CliError::other(format!(
                "the host's files hold \"{words}\" in clear"
            )));
        }
    }
    Ok(())
}

/// Mary and the pharmacist follow George's record, each receiving what was granted.
fn others_follow(t: &mut Tour, george: &str, host: &str) -> Result<()> {
    t.say("Mary and the pharmacist follow George's record. Each receives only what George granted them.");
    t.run("mary", &["follow", george, "--host", host], Expect::Ok)?;
    t.run(
        "pharmacist",
        &["follow", george, "--host", host],
        Expect::Ok,
    )?;
    t.run("pharmacist", &["show"], Expect::Ok)?;
    Ok(())
}

/// Mary's reading reaches George's node through the host by itself.
fn reading_replicates(t: &mut Tour) -> Result<()> {
    t.say("Mary adds a reading on her node. It goes to the host, which passes it on to George's node by itself.");
    let out = t.run(
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
    let id = out.trim().to_owned();
    let start = Instant::now();
    while !t.sees("george", &id) {
        if start.elapsed() > NODE_WAIT {
            return Err(CliError::other(
                "Mary's reading did not reach George's node in time (see the node.log files)",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "(Mary's reading reached George's node {} ms after she wrote it)",
        start.elapsed().as_millis()
    );
    t.run("george", &["show"], Expect::Ok)?;
    Ok(())
}

/// The renal clinic's letter George attaches (what the host must not be able to read).
const LETTER: &str = "Leeds Renal Clinic, 20 November 2026\n\nDear Dr Rao,\n\nI saw Mr George \
Jones today. His eGFR is stable at 48. Please continue ramipril 5 mg once daily and recheck \
his potassium in four weeks.\n\nDr A. Okafor, consultant nephrologist\n";

/// George attaches a clinic letter: sealed under its own key, stored apart from the entry,
/// fetched by Mary's node through the host, which cannot read it.
fn a_letter_travels(t: &mut Tour) -> Result<()> {
    t.say("George attaches a letter from the renal clinic. The file is sealed under a key of its own, kept apart from its entry, and replicates to the nodes allowed to see documents, checked against its hash as it streams.");
    let letter = t.file("renal-letter.txt");
    std::fs::write(&letter, LETTER)
        .map_err(|e| CliError::other(format!("cannot write {letter}: {e}")))?;
    let out = t.run(
        "george",
        &[
            "attach",
            &letter,
            "--title",
            "Renal clinic letter",
            "--date",
            "2026-11-20",
        ],
        Expect::Ok,
    )?;
    let id = out.trim().to_owned();
    let blobs = |t: &Tour, who: &str| {
        std::fs::read_dir(t.dir.join(who).join("store").join("blobs"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".blob"))
            })
            .unwrap_or(false)
    };
    t.wait_for("the letter's entry to reach Mary's node", |t| {
        t.sees("mary", &id)
    })?;
    t.say("Mary's node fetches files on demand (`node run --documents on-demand`): it holds the entry, and fetches the file from the record's peers, home host first, when she opens it.");
    println!(
        "  the file on Mary's node before she opens it: {}",
        if blobs(t, "mary") { "held" } else { "not held" }
    );
    let saved = t.file("letter-mary-saved.txt");
    t.run("mary", &["download", &id, "-o", &saved], Expect::Ok)?;
    let same = std::fs::read_to_string(&saved).ok().as_deref() == Some(LETTER);
    println!(
        "  Mary's copy is {} the letter George attached",
        if same { "byte for byte" } else { "NOT" }
    );
    if !same {
        return Err(CliError::other("Mary's copy of the letter differs"));
    }
    t.say("The host holds the letter too, sealed: searching its files for the letter's words:");
    let words = "continue ramipril 5 mg";
    let found = occurrences(&t.dir.join("host"), words.as_bytes());
    println!("  \"{words}\": found {found} times in the host's files");
    if found > 0 || !blobs(t, "host") {
        return Err(CliError::other(
            "the host's files hold the letter in clear, or do not hold it",
        ));
    }
    Ok(())
}

/// Mary books George's next clinic appointment with reminders: it reaches George's node,
/// which lists the reminders coming up, and the host holds it sealed.
fn an_appointment_is_booked(t: &mut Tour) -> Result<()> {
    t.say("Mary books George's next renal clinic appointment, with reminders a day and two hours before. It reaches George's node, which lists the reminders coming up; the host holds it sealed like the rest.");
    let start = crate::times::format(crate::times::system_now() + 3 * 24 * 3600 * 1000);
    let out = t.run(
        "mary",
        &[
            "appointment",
            "book",
            "--start",
            &start,
            "--description",
            "Renal clinic review",
            "--place",
            "St James's University Hospital",
            "--with",
            "Dr A. Okafor",
            "--reminder",
            "1d",
            "--reminder",
            "2h",
        ],
        Expect::Ok,
    )?;
    let id = out.trim().to_owned();
    t.wait_for("the appointment to reach George's node", |t| {
        t.sees("george", &id)
    })?;
    let listed = t.run("george", &["reminders", "--within", "7d"], Expect::Ok)?;
    if listed.matches("Renal clinic review").count() != 2 {
        return Err(CliError::other(
            "George's node does not list the appointment's two reminders",
        ));
    }
    let words = "Renal clinic review";
    let found = occurrences(&t.dir.join("host"), words.as_bytes());
    println!("  \"{words}\": found {found} times in the host's files");
    if found > 0 {
        return Err(CliError::other(
            "the host's files hold the appointment in clear",
        ));
    }
    Ok(())
}

/// The diabetes nurse joins George's care team: a lab result she releases after review
/// reaches George as a notification; they talk in a thread of their own; she assigns a
/// PHQ-9, George answers it and both see its score (docs/care-team.md).
fn the_care_team(t: &mut Tour, nodes: &mut Nodes, george: &str, host: &str) -> Result<()> {
    t.say("The diabetes specialist nurse joins George's care team. George grants her his lab results, messages, questionnaires and tasks, and asks his node to tell him when a result is released, a message comes or a questionnaire is assigned to him.");
    t.run(
        "dnurse",
        &["init", "--name", "Priya Shah", "--role", "diabetes nurse"],
        Expect::Ok,
    )?;
    let dnurse = t.actor("dnurse")?;
    t.start_node(nodes, "dnurse")?;
    t.run(
        "george",
        &[
            "grant",
            &dnurse,
            "--level",
            "write",
            "--categories",
            "lab-results,messages,questionnaires,tasks",
            "--label",
            "Priya Shah (diabetes nurse)",
        ],
        Expect::Ok,
    )?;
    t.run(
        "george",
        &[
            "notifications",
            "subscribe",
            "--events",
            "result-released,new-message,questionnaire-assigned",
        ],
        Expect::Ok,
    )?;
    t.run("george", &["sync"], Expect::Ok)?;
    t.run("dnurse", &["follow", george, "--host", host], Expect::Ok)?;

    t.say("She enters George's HbA1c from the lab, reviews it and releases it. The release is what tells George: his node derives a notification (the event and the entry, no clinical content) for his web app's notification centre, its event stream and `cophr watch`.");
    let out = t.run(
        "dnurse",
        &[
            "add",
            "lab-results",
            "--test",
            "HbA1c",
            "--result",
            "58",
            "--unit",
            "mmol/mol",
            "--reference-range",
            "< 48",
            "--interpretation",
            "high",
        ],
        Expect::Ok,
    )?;
    let result = out.trim().to_owned();
    t.run("dnurse", &["result", "release", &result], Expect::Ok)?;
    t.wait_for(
        "the release to reach George's node as a notification",
        |t| t.notified("george", "result-released"),
    )?;
    t.run("george", &["notifications", "list"], Expect::Ok)?;

    t.say("She starts a conversation with George about it. A thread is private to its participants by the record's rules: Mary, who reads George's other messages, is not in it.");
    let thread = t.json_field(
        "dnurse",
        &[
            "--json",
            "thread",
            "start",
            "--with",
            george,
            "--subject",
            "Your HbA1c",
            "Your HbA1c is 58, a little above your target. Shall we talk it through at your review?",
        ],
        "thread",
    )?;
    t.wait_for("the thread to reach George's node", |t| {
        t.sees("george", &thread)
    })?;
    t.run("george", &["thread", "list"], Expect::Ok)?;
    let reply = t.json_field(
        "george",
        &[
            "--json",
            "thread",
            "send",
            &thread,
            "Yes please. I have been snacking more since the winter.",
        ],
        "entry",
    )?;
    t.wait_for("George's reply to reach the nurse's node", |t| {
        t.sees("dnurse", &reply)
    })?;
    t.run("dnurse", &["thread", "show", &thread], Expect::Ok)?;

    t.say("Before the review she asks George to fill in a PHQ-9 (a depression questionnaire, free to use) within a week. George's node tells him it was assigned; he answers it, and the score and its band are computed by the questionnaire's own rule, checked by every node.");
    let def = t
        .run("dnurse", &["questionnaire", "publish", "phq-9"], Expect::Ok)?
        .trim()
        .to_owned();
    let due = crate::times::format(crate::times::system_now() + 7 * 24 * 3600 * 1000);
    let task = t
        .run(
            "dnurse",
            &["questionnaire", "assign", &def, "--due", &due[..10]],
            Expect::Ok,
        )?
        .trim()
        .to_owned();
    t.wait_for(
        "the assignment to reach George's node as a notification",
        |t| t.sees("george", &task) && t.notified("george", "questionnaire-assigned"),
    )?;
    t.run("george", &["notifications", "list"], Expect::Ok)?;
    let mut answer = vec!["questionnaire", "answer", task.as_str()];
    // Several days (1) for the first six questions, Not at all (0) for the rest: 6, mild.
    let answers: Vec<String> = (1..=9)
        .map(|i| format!("phq9-{i}={}", u8::from(i <= 6)))
        .collect();
    for a in &answers {
        answer.extend(["--answer", a.as_str()]);
    }
    let out = t.run("george", &answer, Expect::Ok)?;
    let response = out.split_whitespace().next().unwrap_or_default().to_owned();
    t.wait_for("George's answers to reach the nurse's node", |t| {
        t.sees("dnurse", &response)
    })?;
    t.run("dnurse", &["questionnaire", "list"], Expect::Ok)?;
    t.stop_node(nodes, "dnurse")?;
    Ok(())
}

/// George grants Leeds Home Care as an organisation, once; a nurse who joins the service
/// writes his vital signs without George being asked; when she leaves, the host refuses
/// her.
fn home_care_as_an_organisation(
    t: &mut Tour,
    nodes: &mut Nodes,
    george: &str,
    host: &str,
) -> Result<()> {
    t.say("George grants Leeds Home Care access as an organisation, once. Its staff come and go; George is not asked each time (docs/organisations.md).");
    t.run(
        "homecare",
        &[
            "init",
            "--name",
            "Leeds Home Care Ltd",
            "--role",
            "organisation",
        ],
        Expect::Ok,
    )?;
    t.run(
        "nurse",
        &["init", "--name", "Jo Bloggs", "--role", "nurse"],
        Expect::Ok,
    )?;
    let homecare = t.actor("homecare")?;
    let nurse = t.actor("nurse")?;
    t.start_node(nodes, "homecare")?;
    t.start_node(nodes, "nurse")?;
    t.run("homecare", &["record", "create"], Expect::Ok)?;
    t.run(
        "george",
        &[
            "grant",
            &homecare,
            "--level",
            "write",
            "--categories",
            "vital-signs,appointments",
            "--label",
            "Leeds Home Care (home-care service)",
        ],
        Expect::Ok,
    )?;
    // The grant goes to the host now (the node would push it by itself within seconds).
    t.run("george", &["sync"], Expect::Ok)?;
    t.run("homecare", &["follow", george, "--host", host], Expect::Ok)?;
    t.say("The service's administrator adds a nurse, with her role, and gives her a proof of membership; her node keeps it and follows George's record.");
    t.run(
        "homecare",
        &[
            "org",
            "add-member",
            &nurse,
            "--role",
            "nurse",
            "--label",
            "Jo Bloggs",
        ],
        Expect::Ok,
    )?;
    let proof = t.run("homecare", &["org", "proof", &nurse], Expect::Ok)?;
    t.run("nurse", &["org", "use", proof.trim()], Expect::Ok)?;
    t.run("nurse", &["follow", george, "--host", host], Expect::Ok)?;
    t.wait_for("the service's node to give the nurse its keys", |t| {
        t.reads_any("nurse", "vital-signs")
    })?;
    t.run("nurse", &["show"], Expect::Ok)?;
    let out = t.run(
        "nurse",
        &["add", "vital-signs", "--heart-rate", "76"],
        Expect::Ok,
    )?;
    let id = out.trim().to_owned();
    t.wait_for("the nurse's reading to reach George's node", |t| {
        t.sees("george", &id)
    })?;
    t.say("Her worklist lists the patients shared with the service: George was never asked about her.");
    t.run("nurse", &["worklist"], Expect::Ok)?;
    t.say("George sees the service's staff under its one grant, each named with it.");
    t.run("george", &["grants"], Expect::Ok)?;
    t.say("The nurse leaves: the administrator removes her, in every record she joined. From then on she pulls only her own removal and writes nothing; what she wrote stays.");
    t.run(
        "homecare",
        &[
            "org",
            "remove-member",
            &nurse,
            "--reason",
            "left the service",
        ],
        Expect::Ok,
    )?;
    t.wait_for("the removal to reach George's node", |t| {
        t.grants_show_removed("george", &nurse)
    })?;
    t.run("nurse", &["sync"], Expect::Ok)?;
    t.run(
        "nurse",
        &["add", "vital-signs", "--heart-rate", "88"],
        Expect::Refused(3),
    )?;
    t.stop_node(nodes, "nurse")?;
    t.stop_node(nodes, "homecare")?;
    Ok(())
}

/// The pharmacist's write is refused; George sees who was served what.
fn refusal_and_audit(t: &mut Tour) -> Result<()> {
    t.say("The pharmacist may only look: the write is refused.");
    t.run(
        "pharmacist",
        &["add", "allergies", "--agent", "Latex"],
        Expect::Refused(3),
    )?;
    t.say("George sees who was served what, wherever it was served.");
    t.run("george", &["sync"], Expect::Ok)?;
    t.run("george", &["audit"], Expect::Ok)?;
    t.run("host", &["status"], Expect::Ok)?;
    Ok(())
}

impl Tour {
    /// Whether `who`'s grants list shows `member` removed from an organisation.
    fn grants_show_removed(&self, who: &str, member: &str) -> bool {
        let out = Command::new(&self.exe)
            .arg("--home")
            .arg(self.dir.join(who))
            .args(["--json", "grants"])
            .stdin(Stdio::null())
            .output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["grants"].as_array().cloned())
            .is_some_and(|grants| {
                grants.iter().any(|g| {
                    g["members"].as_array().is_some_and(|ms| {
                        ms.iter().any(|m| {
                            m["member"]["id"].as_str() == Some(member) && !m["removed"].is_null()
                        })
                    })
                })
            })
    }

    /// Waits until `cond` holds, polling; an error naming `what` after [`NODE_WAIT`].
    fn wait_for(&self, what: &str, mut cond: impl FnMut(&Tour) -> bool) -> Result<()> {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > NODE_WAIT {
                return Err(CliError::other(format!(
                    "{what} did not happen in time (see the node.log files)"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A value from the JSON a command printed.
    fn json_field(&mut self, who: &str, args: &[&str], field: &str) -> Result<String> {
        let out = self.run(who, args, Expect::Ok)?;
        serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v[field].as_str().map(str::to_owned))
            .ok_or_else(|| {
                CliError::other(format!("`cophr {}` printed no {field}", args.join(" ")))
            })
    }

    /// Whether `who`'s replica knows George's guardians (polled silently).
    fn knows_guardians(&self, who: &str) -> bool {
        Command::new(&self.exe)
            .arg("--home")
            .arg(self.dir.join(who))
            .args(["--json", "guardians", "show"])
            .stdin(Stdio::null())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|v| v["threshold"].is_number())
    }
}

/// George's phone: a second key that acts for him, replicating his whole record.
fn george_on_his_phone(t: &mut Tour, nodes: &mut Nodes, george: &str, host: &str) -> Result<()> {
    t.say("George also uses his phone. The phone makes its own key; George adds it as his device, and it replicates his whole record and writes as him.");
    t.run(
        "phone",
        &[
            "init",
            "--name",
            "George Jones",
            "--role",
            "patient",
            "--device",
            "george-phone",
        ],
        Expect::Ok,
    )?;
    let phone = t.actor("phone")?;
    t.start_node(nodes, "phone")?;
    t.run(
        "george",
        &["device", "add", &phone, "--label", "George's phone"],
        Expect::Ok,
    )?;
    // The host holds the addition before the phone asks it for the record.
    t.run("george", &["sync"], Expect::Ok)?;
    t.run("phone", &["follow", george, "--host", host], Expect::Ok)?;
    let out = t.run(
        "phone",
        &[
            "add",
            "vital-signs",
            "--systolic",
            "138",
            "--diastolic",
            "86",
        ],
        Expect::Ok,
    )?;
    let id = out.trim().to_owned();
    t.wait_for("the phone's reading reaching Mary", |t| t.sees("mary", &id))?;
    t.say("Mary's node received the reading George took on his phone, as George's.");
    t.run("george", &["device", "list"], Expect::Ok)?;
    Ok(())
}

/// George names guardians, loses his laptop, and two guardians give his record a new key.
fn lost_key_recovered(t: &mut Tour, nodes: &mut Nodes, george: &str, host: &str) -> Result<()> {
    t.say("George names guardians — Mary, the pharmacist and the identity assurance service — any two of whom can give his record a new key if he loses his.");
    let mary = t.actor("mary")?;
    let pharmacist = t.actor("pharmacist")?;
    let ais = t.actor("ais")?;
    t.run(
        "george",
        &[
            "guardians",
            "set",
            &mary,
            &pharmacist,
            &ais,
            "--threshold",
            "2",
        ],
        Expect::Ok,
    )?;
    t.wait_for("the guardians reaching Mary and the pharmacist", |t| {
        t.knows_guardians("mary") && t.knows_guardians("pharmacist")
    })?;
    t.say("George's laptop is lost, key and all (its home is moved aside to george-lost; in real life it is gone). On a new laptop he makes a new key and asks his guardians.");
    t.stop_node(nodes, "george")?;
    let lost = t.dir.join("george-lost");
    std::fs::rename(t.dir.join("george"), &lost)
        .map_err(|e| CliError::other(format!("cannot move George's home aside: {e}")))?;
    t.run(
        "george",
        &[
            "init",
            "--name",
            "George Jones",
            "--role",
            "patient",
            "--device",
            "george-laptop",
        ],
        Expect::Ok,
    )?;
    t.start_node(nodes, "george")?;
    let request = t.json_field(
        "george",
        &["--json", "recover", "request", george],
        "request",
    )?;
    t.say("Mary and the pharmacist each check it is really George (a phone call), and approve from their replicas.");
    let from_mary = t.json_field(
        "mary",
        &["--json", "guardians", "approve", &request],
        "approval",
    )?;
    let from_pharmacist = t.json_field(
        "pharmacist",
        &["--json", "guardians", "approve", &request],
        "approval",
    )?;
    t.say("With two approvals George's new node fetches his record from the host and writes the key rotation. Same record id, every grant kept; the old key can write nothing new.");
    t.run(
        "george",
        &[
            "recover",
            "finish",
            "--host",
            host,
            &from_mary,
            &from_pharmacist,
        ],
        Expect::Ok,
    )?;
    let out = t.run(
        "george",
        &[
            "add",
            "vital-signs",
            "--systolic",
            "132",
            "--diastolic",
            "84",
        ],
        Expect::Ok,
    )?;
    let id = out.trim().to_owned();
    t.wait_for("the new key's reading reaching Mary", |t| {
        t.sees("mary", &id)
    })?;
    t.say("Mary's node received what George wrote with his new key.");
    t.run("george", &["records"], Expect::Ok)?;
    t.run("george", &["grants", "--active"], Expect::Ok)?;
    Ok(())
}

/// Stops Mary's and the pharmacist's nodes, leaves the host and George's node running and
/// prints how to use and stop them.
fn stop_and_release(
    t: &mut Tour,
    nodes: &mut Nodes,
    host: &str,
    george_record: &str,
) -> Result<()> {
    let george_key = t.actor("george")?;
    t.say("Stopping Mary's, the pharmacist's and the phone's nodes (as Ctrl-C would). The host and George's node stay up.");
    for who in ["mary", "pharmacist", "phone"] {
        t.stop_node(nodes, who)?;
    }
    // The host and George's node keep running after the tour: release them.
    let pid_of = |nodes: &Nodes, who: &str| {
        nodes
            .running
            .iter()
            .find(|(w, _)| w == who)
            .map(|(_, c)| c.id().to_string())
            .unwrap_or_default()
    };
    let host_pid = pid_of(nodes, "host");
    let george_pid = pid_of(nodes, "george");
    let web = node_http(&t.dir.join("george")).unwrap_or_else(|| "(not served)".to_owned());
    let host_web = node_http(&t.dir.join("host")).unwrap_or_else(|| "(not served)".to_owned());
    nodes.running.clear();
    let dir = t.dir.display();
    println!(
        "\nThe host is still running (pid {host_pid}), at {host}.\n\
         Its page for patients with only a browser: {host_web}/patient.html\n\
         Open it with George's id {george_key},\n\
         the passphrase in {dir}/george-passphrase, and (under \"Another record\")\n\
         his record id {}.\n\
         George's node is still running (pid {george_pid}), with his web app at {web}/\n\
         Open it in a browser and sign in with the token this prints:\n  \
         cophr --home {dir}/george token\n\
         The demo's homes are in {dir}. Try, for example:\n  \
         cophr --home {dir}/george add vital-signs --systolic 135 --diastolic 85\n  \
         cophr --home {dir}/george status\n  \
         cophr --home {dir}/host status\n\
         Stop both with:\n  kill {host_pid} {george_pid}",
        george_record,
    );
    Ok(())
}
