//! Output: aligned tables for people, one JSON document for scripts.
//!
//! Every byte a command prints goes through [`write_out`] (stdout) or [`write_err`]
//! (stderr), and every read of standard input through [`read_stdin`]. When a command runs
//! inside a node on behalf of a `cophr` process (see `control`), a thread-local sink
//! captures the output, supplies the caller's standard input, and resolves relative paths
//! against the caller's working directory, so the command behaves exactly as it would have
//! in the caller's own process.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cophr_protocol::record::Record;
use cophr_protocol::trust::{Assurance, SignedAttestation, TrustList};
use cophr_protocol::{ActorId, Timestamp};
use serde::Serialize;

use crate::error::{CliError, Result};

/// The most output a captured command may produce (it travels back in one message).
/// Base64 makes it a third bigger, so this leaves room within the 64 MiB message limit.
pub const MAX_CAPTURED: usize = 46 * 1024 * 1024;

/// What a command run on behalf of another process prints and reads.
#[derive(Debug, Default)]
struct Sink {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
}

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

/// Captures this thread's output until [`Capture::finish`] (or drop).
#[derive(Debug)]
pub struct Capture {
    _private: (),
}

impl Capture {
    /// Starts capturing: output is kept, `stdin` is what the command reads, and relative
    /// paths are taken from `cwd`.
    pub fn start(stdin: Option<Vec<u8>>, cwd: Option<PathBuf>) -> Capture {
        SINK.with(|s| {
            *s.borrow_mut() = Some(Sink {
                stdin,
                cwd,
                ..Sink::default()
            })
        });
        Capture { _private: () }
    }

    /// Stops capturing; returns (stdout, stderr).
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        SINK.with(|s| s.borrow_mut().take())
            .map(|s| (s.stdout, s.stderr))
            .unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

/// Appends to the captured stream, if capturing. `None` when not capturing.
fn captured(bytes: &[u8], err: bool) -> Option<Result<()>> {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let sink = s.as_mut()?;
        let total = sink.stdout.len() + sink.stderr.len() + bytes.len();
        if total > MAX_CAPTURED {
            return Some(Err(CliError::other(format!(
                "the output is more than {} MiB, too much to return through the running node; \
                 write it to a file instead",
                MAX_CAPTURED >> 20
            ))));
        }
        let buf = if err {
            &mut sink.stderr
        } else {
            &mut sink.stdout
        };
        buf.extend_from_slice(bytes);
        Some(Ok(()))
    })
}

/// Writes bytes to stdout. A closed pipe (`cophr show | head`) is not an error.
pub fn write_out(bytes: &[u8]) -> Result<()> {
    if let Some(r) = captured(bytes, false) {
        return r;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::other(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Writes text to stderr (best effort).
pub fn write_err(text: &str) {
    if captured(text.as_bytes(), true).is_none() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
    }
}

/// Reads standard input, at most `limit` bytes (one more tells the caller it was longer).
pub fn read_stdin(limit: u64) -> std::io::Result<Vec<u8>> {
    let given = SINK.with(|s| {
        s.borrow_mut().as_mut().map(|sink| {
            let mut b = sink.stdin.take().unwrap_or_default();
            b.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            b
        })
    });
    if let Some(b) = given {
        return Ok(b);
    }
    let mut buf = Vec::new();
    std::io::stdin().lock().take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A path the user gave, relative to their working directory.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    SINK.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|sink| sink.cwd.as_ref())
            .map(|cwd| cwd.join(path))
    })
    .unwrap_or_else(|| path.to_path_buf())
}

/// Writes text to stdout. A closed pipe (`cophr show | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    write_out(text.as_bytes())
}

/// Prints a line.
pub fn line(text: impl AsRef<str>) -> Result<()> {
    print(&format!("{}\n", text.as_ref()))
}

/// Prints a value as one pretty JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::other(format!("cannot encode JSON output: {e}")))?;
    print(&format!("{text}\n"))
}

/// A table with a header row and left-aligned columns.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table: columns separated by two spaces, no trailing blanks.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        let n = self.headers.len();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                (0..n)
                    .map(|i| clean(r.get(i).map_or("", String::as_str)))
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(width(c));
            }
        }
        let mut out = String::new();
        let mut put = |cells: &[String]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                l.push_str(c);
                if i + 1 < n {
                    let pad = widths[i] - width(c) + 2;
                    l.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        put(&header);
        for r in &rows {
            put(r);
        }
        out
    }
}

thread_local! {
    /// The trust list (and the time) people are assessed against on this thread: set by
    /// [`assess_with`] when a command starts (each command runs on one thread).
    static TRUST: std::cell::RefCell<(TrustList, Timestamp)> =
        std::cell::RefCell::new((TrustList::new(), 0));
}

/// Assess the people shown by the commands that run next on this thread against `trust`,
/// at `now`.
pub fn assess_with(trust: TrustList, now: Timestamp) {
    TRUST.with(|t| *t.borrow_mut() = (trust, now));
}

/// How the home's trust list assesses `actor`'s attestations: `verified P9 by …` or
/// `self-asserted`.
pub fn assurance(actor: &ActorId, attestations: &[SignedAttestation]) -> Assurance {
    TRUST.with(|t| {
        let (list, now) = &*t.borrow();
        list.assess(actor, attestations, *now)
    })
}

/// Who an actor is, as the record knows them.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// Actor id.
    pub id: ActorId,
    /// Name from their latest profile in the record.
    pub name: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Organisation: for a member of an organisation acting in the record, that
    /// organisation (never just what their own profile claims).
    pub organisation: Option<String>,
    /// Whether they act here as a member of `organisation` (joined under its grant).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub member: bool,
    /// Whether who they say they are is verified here (by a trusted identity assurance
    /// service, at which level) or self-asserted.
    pub assurance: Assurance,
}

impl Person {
    /// The person as `record` knows them (latest profile at or before `at`), assessed
    /// against this home's trust list with the attestations of their latest profile.
    pub fn of(record: &Record, actor: &ActorId, at: Option<Timestamp>) -> Self {
        let p = record
            .profile(actor, at)
            .or_else(|| record.profile(actor, None));
        let attestations = record
            .latest_profile(actor)
            .map_or(&[][..], |p| p.attestations.as_slice());
        // A member of an organisation is named with it: the organisation's name as the
        // record knows it (its profile), else its key — whatever their own profile says.
        let member_of = record.joined_member(actor).map(|m| {
            record
                .latest_profile(&m.org)
                .map_or_else(|| m.org.short(), |p| p.name.clone())
        });
        Person {
            id: *actor,
            name: p.map(|p| p.name.clone()),
            role: p.map(|p| p.role.clone()),
            member: member_of.is_some(),
            organisation: member_of.or_else(|| p.and_then(|p| p.organisation.clone())),
            assurance: assurance(actor, attestations),
        }
    }

    /// `Mary Smith (carer) [self-asserted]` or the short actor id; a member of an
    /// organisation as `Jo Bloggs (nurse, for Leeds Home Care) [...]`.
    pub fn short(&self) -> String {
        let who = match (&self.name, &self.role) {
            (Some(n), Some(r)) if self.member => {
                let org = self.organisation.as_deref().unwrap_or("an organisation");
                format!("{n} ({r}, for {org})")
            }
            (Some(n), Some(r)) => format!("{n} ({r})"),
            (Some(n), None) => n.clone(),
            _ => self.id.short(),
        };
        format!("{who} [{}]", self.assurance)
    }

    /// `Dr Rena Patel (consultant, Leeds Teaching Hospitals) [verified P9 by Leeds AIS]`
    /// or the short form.
    pub fn long(&self) -> String {
        match (&self.name, &self.role, &self.organisation) {
            (Some(n), Some(r), Some(o)) if self.member => {
                format!("{n} ({r}, for {o}) [{}]", self.assurance)
            }
            (Some(n), Some(r), Some(o)) => format!("{n} ({r}, {o}) [{}]", self.assurance),
            _ => self.short(),
        }
    }
}

/// `yes` / `no`.
pub fn yes_no(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["x—y".into(), "1".into()]);
        t.row(vec!["long cell".into(), "2".into()]);
        assert_eq!(
            t.render(),
            "A          LONGER\nx—y        1\nlong cell  2\n"
        );
    }
}
