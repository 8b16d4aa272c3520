//! Output: aligned tables for people, one JSON document for scripts.

use std::io::Write;

use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, Timestamp};
use serde::Serialize;

use crate::error::{CliError, Result};

/// Writes text to stdout. A closed pipe (`cophr show | head`) is not an error.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::other(format!(
            "cannot write to standard output: {e}"
        ))),
    }
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

/// Who an actor is, as the record knows them.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// Actor id.
    pub id: ActorId,
    /// Name from their latest profile in the record.
    pub name: Option<String>,
    /// Role.
    pub role: Option<String>,
    /// Organisation.
    pub organisation: Option<String>,
}

impl Person {
    /// The person as `record` knows them (latest profile at or before `at`).
    pub fn of(record: &Record, actor: &ActorId, at: Option<Timestamp>) -> Self {
        let p = record
            .profile(actor, at)
            .or_else(|| record.profile(actor, None));
        Person {
            id: *actor,
            name: p.map(|p| p.name.clone()),
            role: p.map(|p| p.role.clone()),
            organisation: p.and_then(|p| p.organisation.clone()),
        }
    }

    /// `Mary Smith (carer)` or the short actor id.
    pub fn short(&self) -> String {
        match (&self.name, &self.role) {
            (Some(n), Some(r)) => format!("{n} ({r})"),
            (Some(n), None) => n.clone(),
            _ => self.id.short(),
        }
    }

    /// `Mary Smith (carer, Leeds Community Care)` or the short actor id.
    pub fn long(&self) -> String {
        match (&self.name, &self.role, &self.organisation) {
            (Some(n), Some(r), Some(o)) => format!("{n} ({r}, {o})"),
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
