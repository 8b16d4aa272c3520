//! `cophr watch`: one line per new entry this person may see, as the running node gets it
//! (written here or received from a peer), until interrupted.
//!
//! The command connects to the node's control socket and sends its arguments, as every
//! forwarded command does; the node answers with a stream of replies, one per line, instead
//! of one reply ([`stream`]). A line says when, which record, the category, what was done,
//! by whom, and the entry's one-line summary: nothing of an entry this person may not see.
//! Notifications of the person's subscriptions (`cophr notifications`) come as lines too
//! (`… notification: result-released in lab-results (e-…)`), each once, audited as a view.

use std::collections::BTreeSet;
use std::io::Write;

use clap::Args as ClapArgs;
use data_encoding::BASE64;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::broadcast::error::RecvError;

use cophr_node::net::Changes;
use cophr_node::notify::{Notification, Notifier};
use cophr_node::store::{AuditInput, Store};
use cophr_protocol::audit::Action;
use cophr_protocol::schema;
use cophr_protocol::{ActorId, Category, Payload};

use crate::context::{Ctx, NodeCtx, Out};
use crate::control::{self, Reply, Request};
use crate::error::{CliError, Code, Result};
use crate::output::{self, Person};
use crate::times;

const AFTER_HELP: &str = "Examples:
  cophr watch
  cophr watch --categories lab-results,messages
  cophr --json watch --count 1";

/// Watch for new entries: print one line for each entry the running node newly holds that
/// you may see (e.g. a lab result ready), with its time, record, category, author and
/// summary. Runs until interrupted (or `--count` lines). Needs the node (`cophr node run`).
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Only these categories (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "CATEGORIES")]
    categories: Vec<String>,

    /// Stop after this many lines
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    #[command(flatten)]
    out: Out,
}

impl Args {
    fn filter(&self) -> Result<Option<BTreeSet<Category>>> {
        if self.categories.is_empty() {
            return Ok(None);
        }
        let mut set = BTreeSet::new();
        for c in &self.categories {
            let cat: Category = c
                .trim()
                .parse()
                .map_err(|e| CliError::new(Code::Usage, format!("--categories: {e}")))?;
            set.insert(cat);
        }
        Ok(Some(set))
    }
}

/// Runs `watch` (from a shell): streams the node's lines to standard output.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    args.filter()?;
    let home = &ctx.home.dir;
    let Some(mut stream) = control::connect(home)? else {
        return Err(CliError::other("start the node first: cophr node run"));
    };
    let request = Request {
        argv: ctx.argv.clone(),
        cwd: None,
        now: None,
        device: None,
        env_device: None,
        json: ctx.json(args.out),
        stdin: None,
    };
    let lost = |e: std::io::Error| {
        CliError::other(format!(
            "lost the connection to the node running in {}: {e}",
            home.display()
        ))
    };
    let bytes = control::encode(&request).map_err(lost)?;
    stream.write_all(&bytes).map_err(lost)?;
    stream.flush().map_err(lost)?;
    let mut printed = 0u64;
    loop {
        let reply: Reply = match control::read_message(&mut stream) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
                return Err(CliError::other("the node stopped"));
            }
            Err(e) => return Err(lost(e)),
        };
        let decode = |s: &str| {
            BASE64
                .decode(s.as_bytes())
                .map_err(|e| CliError::other(format!("bad reply from the node: {e}")))
        };
        if reply.code != 0 {
            let why = String::from_utf8_lossy(&decode(&reply.stderr)?).into_owned();
            let why = why.trim().trim_start_matches("error: ").to_owned();
            let code = match reply.code {
                2 => Code::Usage,
                3 => Code::Access,
                _ => Code::Other,
            };
            return Err(CliError::new(code, why));
        }
        output::write_err(&String::from_utf8_lossy(&decode(&reply.stderr)?));
        let out = decode(&reply.stdout)?;
        if !out.is_empty() {
            output::write_out(&out)?;
            printed += 1;
        }
    }
}

/// Whether a control request is a `watch` (streamed, not run as one command).
pub fn parse(request: &Request) -> Option<Args> {
    use clap::Parser;
    match crate::cmd::Cli::try_parse_from(&request.argv) {
        Ok(cli) => match cli.command {
            crate::cmd::Command::Watch(a) => Some(a),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Most watchers a node serves at once.
pub const MAX_WATCHERS: usize = 16;

/// Serves a `watch` on a control connection: one reply per line, until the client goes,
/// `--count` lines were sent, or the node stops.
pub async fn stream(mut conn: UnixStream, request: Request, args: Args, node: NodeCtx) {
    let (handle, _) = node;
    let send = |reply: Reply| async move { control::encode(&reply) };
    let filter = match args.filter() {
        Ok(f) => f,
        Err(e) => {
            if let Ok(b) = send(Reply::error(e.code, &e.to_string())).await {
                let _ = conn.write_all(&b).await;
            }
            return;
        }
    };
    let json = request.json || args.out.json;
    let me = handle.identity().actor();
    let mut rx = match handle.watch().await {
        Ok(rx) => rx,
        Err(e) => {
            if let Ok(b) = send(Reply::error(Code::Other, &e.to_string())).await {
                let _ = conn.write_all(&b).await;
            }
            return;
        }
    };
    // Subscribed: from here on nothing is missed.
    let ready = Reply {
        code: 0,
        stdout: String::new(),
        stderr: BASE64.encode(b"watching for new entries (Ctrl-C to stop)\n"),
    };
    match send(ready).await {
        Ok(b) if conn.write_all(&b).await.is_ok() => {}
        _ => return,
    }
    let mut sent = 0u64;
    // Notifications (`cophr notifications subscribe`) come on the process's live channel,
    // derived here too from every batch of changes (whoever derives one first stores and
    // sends it, once).
    let notifier = std::sync::Arc::new(Notifier::new(handle.store().clone()));
    let node_id = notifier.node();
    let mut live = notifier.live();
    loop {
        let got = tokio::select! {
            got = rx.recv() => got,
            n = live.recv() => {
                let Ok((at, who, n)) = n else { continue };
                if at != node_id || who != me || filter.as_ref().is_some_and(|f| !f.contains(&n.category)) {
                    continue;
                }
                let store = handle.store().clone();
                let line = tokio::task::spawn_blocking(move || notification_line(&store, &me, &n, json))
                    .await
                    .ok()
                    .flatten();
                let Some(line) = line else { continue };
                let reply = Reply {
                    code: 0,
                    stdout: BASE64.encode(format!("{line}\n").as_bytes()),
                    stderr: String::new(),
                };
                let Ok(b) = send(reply).await else { return };
                if conn.write_all(&b).await.is_err() || conn.flush().await.is_err() {
                    return;
                }
                sent += 1;
                if args.count.is_some_and(|n| sent >= n) {
                    return;
                }
                continue;
            }
        };
        let changes = match got {
            Ok(c) => c,
            Err(RecvError::Lagged(n)) => {
                let note = Reply {
                    code: 0,
                    stdout: String::new(),
                    stderr: BASE64
                        .encode(format!("({n} changes missed: too many at once)\n").as_bytes()),
                };
                match send(note).await {
                    Ok(b) if conn.write_all(&b).await.is_ok() => continue,
                    _ => return,
                }
            }
            Err(RecvError::Closed) => return,
        };
        let store = handle.store().clone();
        let filter = filter.clone();
        // Authors are shown as verified or self-asserted by the node's trust list.
        let trust = handle.trust();
        let n = notifier.clone();
        let lines = tokio::task::spawn_blocking(move || {
            crate::output::assess_with(trust, times::system_now());
            let out = lines(&store, &me, &changes, filter.as_ref(), json);
            if let Err(e) = n.process(&me, &changes.record, times::system_now()) {
                tracing::warn!(error = %e, "could not derive notifications");
            }
            out
        })
        .await
        .unwrap_or_default();
        for line in lines {
            let reply = Reply {
                code: 0,
                stdout: BASE64.encode(format!("{line}\n").as_bytes()),
                stderr: String::new(),
            };
            let Ok(b) = send(reply).await else { return };
            if conn.write_all(&b).await.is_err() || conn.flush().await.is_err() {
                return;
            }
            sent += 1;
            if args.count.is_some_and(|n| sent >= n) {
                return;
            }
        }
    }
}

/// The line for a notification `me` may still see (audited as a view of the entries it
/// names, like the API's delivery), or `None`.
fn notification_line(store: &Store, me: &ActorId, n: &Notification, json: bool) -> Option<String> {
    let now = times::system_now();
    let visible = store
        .with_record(&n.record, |r| {
            let v = r.viewer(me, now);
            r.can_see(&v, &n.entry) && n.by.is_none_or(|b| r.can_see(&v, &b))
        })
        .ok()?;
    if !visible {
        return None;
    }
    store
        .audit(
            &n.record,
            AuditInput {
                action: Action::View,
                actor: *me,
                device: None,
                entries: std::iter::once(n.entry).chain(n.by).collect(),
                detail: Some("notifications (watch): 1".into()),
            },
            now,
        )
        .ok()?;
    Some(if json {
        json!({
            "notification": n.id,
            "event": n.event.name(),
            "record": n.record,
            "entry": n.entry,
            "by": n.by,
            "category": n.category.name(),
            "time": times::format(n.time),
        })
        .to_string()
    } else {
        format!(
            "{} {} notification: {} in {} ({})",
            times::format(n.time),
            n.record.short(),
            n.event.name(),
            n.category.name(),
            n.entry.short()
        )
    })
}

/// The lines for new entries `me` may see: data entries only (creates, amends, deletes,
/// annotations), in the categories of `filter` if given.
fn lines(
    store: &Store,
    me: &ActorId,
    changes: &Changes,
    filter: Option<&BTreeSet<Category>>,
    json: bool,
) -> Vec<String> {
    let now = times::system_now();
    store
        .with_record(&changes.record, |r| {
            let viewer = r.viewer(me, now);
            let mut out = Vec::new();
            for id in &changes.entries {
                let (Some(e), Some(category)) = (r.get(id), r.category_of(id)) else {
                    continue;
                };
                if !r.can_see(&viewer, id) || filter.is_some_and(|f| !f.contains(category)) {
                    continue;
                }
                let entry = e.entry();
                let (kind, summary) = match r.payload(id).as_deref() {
                    Some(Payload::Create { body, .. }) => {
                        ("added", schema::summary(category, body))
                    }
                    Some(Payload::Amend { body, .. }) => {
                        ("amended", schema::summary(category, body))
                    }
                    Some(p) if p.is_create() => ("added", "(sealed)".to_owned()),
                    Some(p) if p.is_amend() => ("amended", "(sealed)".to_owned()),
                    Some(p) if p.is_delete() => ("deleted", String::new()),
                    Some(p) if p.is_annotate() => ("annotated", String::new()),
                    _ => continue,
                };
                let author = Person::of(r, &entry.author, None);
                let time = times::format(entry.time);
                out.push(if json {
                    json!({
                        "time": time,
                        "record": changes.record,
                        "entry": id,
                        "category": category.name(),
                        "kind": kind,
                        "author": entry.author,
                        "author_name": author.name,
                        "author_assurance": author.assurance.to_string(),
                        "summary": summary,
                    })
                    .to_string()
                } else {
                    let summary = if summary.is_empty() {
                        String::new()
                    } else {
                        format!(": {summary}")
                    };
                    format!(
                        "{time} {} {} {kind} by {}{summary}",
                        changes.record.short(),
                        category.name(),
                        author.short()
                    )
                });
            }
            out
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cmd::{Cli, Command};

    fn watch_args(argv: &[&str]) -> std::result::Result<Args, String> {
        let cli = Cli::try_parse_from(std::iter::once("cophr").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Watch(a) => Ok(a),
            other => Err(format!("not a watch: {other:?}")),
        }
    }

    /// Every example in `cophr watch --help` parses, categories included.
    #[test]
    fn the_help_examples_parse() {
        let examples: Vec<Vec<&str>> = AFTER_HELP
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cophr "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(examples.len(), 3, "{AFTER_HELP}");
        for argv in examples {
            let args = watch_args(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let filter = args.filter().unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            if argv.contains(&"--categories") {
                assert_eq!(
                    filter,
                    Some(BTreeSet::from([Category::LabResults, Category::Messages])),
                    "{argv:?}"
                );
            }
        }
    }

    /// `--categories a,b` is a comma list (or the flag repeated); an unknown one is a usage
    /// error naming it.
    #[test]
    fn categories_are_a_comma_list() {
        let both = Some(BTreeSet::from([Category::VitalSigns, Category::Allergies]));
        for argv in [
            &["watch", "--categories", "vital-signs,allergies"][..],
            &["watch", "--categories=vital-signs, allergies"][..],
            &[
                "watch",
                "--categories",
                "vital-signs",
                "--categories",
                "allergies",
            ][..],
        ] {
            assert_eq!(
                watch_args(argv).unwrap().filter().unwrap(),
                both,
                "{argv:?}"
            );
        }
        let err = watch_args(&["watch", "--categories", "lab-results,referrals"])
            .unwrap()
            .filter()
            .unwrap_err();
        assert_eq!(err.code, Code::Usage);
        assert!(err.to_string().contains("referrals"), "{err}");
    }
}
