//! A small, bounded subset of AQL (the Archetype Query Language), parsed with precise
//! errors and evaluated over compositions. Pure, no I/O.
//!
//! ```text
//! SELECT <path> [AS <alias>] {, <path> [AS <alias>]}
//! FROM EHR <e> [ '[' ehr_id/value = ('<id>' | $<parameter>) ']' ]
//!      [CONTAINS COMPOSITION <c> ['[' <archetype id> ']']
//!       [CONTAINS (OBSERVATION | EVALUATION | INSTRUCTION | ACTION) <o> ['[' <archetype id> ']']]]
//! [WHERE <condition>]          -- comparisons = != < <= > >=, AND, OR, NOT, parentheses,
//!                              -- <operand> LIKE '<pattern>', EXISTS <path>,
//!                              -- <operand> matches {<value>, …}
//! [ORDER BY <path or alias> [ASC | DESC] {, …}]
//! [LIMIT <n> [OFFSET <m>]]
//! ```
//!
//! A path is a variable followed by `/attribute` or `/attribute[node id]` steps (e.g.
//! `o/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value/magnitude`); a step with
//! a node id picks the first child with that `archetype_node_id`. Operands are paths,
//! strings (`'…'` or `"…"`), numbers, `true`/`false` and `$parameters` (given with the
//! query). A comparison with a missing value is false. `LIKE` compares text with a pattern
//! in which `*` stands for any run of characters and `?` for one (AQL's wildcards; `\`
//! escapes either), the whole text matching. `EXISTS` holds when the path has a value.
//! `matches {…}` holds when the value equals one of the listed values (no terminology
//! or interval constraints). One row is made per
//! (EHR, composition, content entry) matching the FROM clause.
//!
//! Limits: [`MAX_QUERY_BYTES`], [`MAX_TOKENS`], [`MAX_NESTING`], [`MAX_COLUMNS`],
//! [`MAX_STEPS`], [`MAX_PATTERN`], [`MAX_MATCHES`], and [`MAX_ROWS`] rows a query returns.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value as Json;

/// Longest query, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// Most tokens in a query.
pub const MAX_TOKENS: usize = 1024;
/// Deepest nesting of parentheses and NOT in a WHERE clause.
pub const MAX_NESTING: usize = 16;
/// Most columns selected.
pub const MAX_COLUMNS: usize = 32;
/// Most steps in one path.
pub const MAX_STEPS: usize = 32;
/// Most rows one query returns (also the default LIMIT).
pub const MAX_ROWS: usize = 1000;
/// Longest `LIKE` pattern, in bytes.
pub const MAX_PATTERN: usize = 256;
/// Most values in one `matches {…}`.
pub const MAX_MATCHES: usize = 64;
/// Longest node id predicate, in bytes.
const MAX_PREDICATE: usize = 256;

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AqlError {
    /// Longer than [`MAX_QUERY_BYTES`].
    #[error("the query is {0} bytes; at most {MAX_QUERY_BYTES} are accepted")]
    TooLong(usize),
    /// Past one of the limits.
    #[error("the query is too complex: {0}")]
    TooComplex(String),
    /// Something other than what the grammar allows here.
    #[error("at {at}: expected {expected}, found {found}")]
    Unexpected {
        /// Byte offset in the query.
        at: usize,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A string or predicate with no end.
    #[error("at {0}: unterminated string or predicate")]
    Unterminated(usize),
    /// A path on a variable the FROM clause does not define.
    #[error("at {at}: unknown variable `{name}` (the FROM clause defines {defined})")]
    UnknownVariable {
        /// Byte offset.
        at: usize,
        /// The name.
        name: String,
        /// The variables defined.
        defined: String,
    },
    /// A `$parameter` not given.
    #[error("parameter `${0}` has no value (give it in query_parameters)")]
    MissingParameter(String),
    /// Valid AQL outside the subset served.
    #[error("at {at}: {what} is not supported here")]
    Unsupported {
        /// Byte offset.
        at: usize,
        /// What.
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64, String),
    Param(String),
    Pred(String),
    Sym(&'static str),
}

fn describe(t: Option<&(usize, Tok)>) -> String {
    match t {
        None => "the end of the query".into(),
        Some((_, Tok::Word(w))) => format!("`{}`", clip(w)),
        Some((_, Tok::Str(s))) => format!("the string '{}'", clip(s)),
        Some((_, Tok::Num(_, s))) => format!("the number {s}"),
        Some((_, Tok::Param(p))) => format!("${p}"),
        Some((_, Tok::Pred(p))) => format!("[{}]", clip(p)),
        Some((_, Tok::Sym(s))) => format!("`{s}`"),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

fn lex(q: &str) -> Result<Vec<(usize, Tok)>, AqlError> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if out.len() > MAX_TOKENS {
            return Err(AqlError::TooComplex(format!(
                "more than {MAX_TOKENS} tokens"
            )));
        }
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            b'\'' | b'"' => {
                let end = q[i + 1..]
                    .find(c as char)
                    .ok_or(AqlError::Unterminated(start))?;
                let s = q[i + 1..i + 1 + end].to_owned();
                i += end + 2;
                Tok::Str(s)
            }
            b'[' => {
                let end = q[i + 1..].find(']').ok_or(AqlError::Unterminated(start))?;
                if end > MAX_PREDICATE {
                    return Err(AqlError::TooComplex(format!(
                        "a predicate longer than {MAX_PREDICATE} bytes"
                    )));
                }
                let s = q[i + 1..i + 1 + end].trim().to_owned();
                i += end + 2;
                Tok::Pred(s)
            }
            b'$' => {
                i += 1;
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                Tok::Param(q[s..i].to_owned())
            }
            b'0'..=b'9' | b'-' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                let s = &q[start..i];
                let n: f64 = s.parse().map_err(|_| AqlError::Unexpected {
                    at: start,
                    expected: "a number".into(),
                    found: format!("`{}`", clip(s)),
                })?;
                Tok::Num(n, s.to_owned())
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Sym("!=")
            }
            b'<' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Sym("<=")
            }
            b'>' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Sym(">=")
            }
            b'<' if b.get(i + 1) == Some(&b'>') => {
                i += 2;
                Tok::Sym("!=")
            }
            _ => {
                let sym = match c {
                    b'(' => Some("("),
                    b'{' => Some("{"),
                    b'}' => Some("}"),
                    b')' => Some(")"),
                    b',' => Some(","),
                    b'/' => Some("/"),
                    b'=' => Some("="),
                    b'<' => Some("<"),
                    b'>' => Some(">"),
                    _ => None,
                };
                if let Some(s) = sym {
                    i += 1;
                    Tok::Sym(s)
                } else if c.is_ascii_alphabetic() || c == b'_' {
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    Tok::Word(q[start..i].to_owned())
                } else {
                    let ch = q[i..].chars().next().unwrap_or('?');
                    return Err(AqlError::Unexpected {
                        at: start,
                        expected: "a keyword, path, value or operator".into(),
                        found: format!("`{ch}`"),
                    });
                }
            }
        };
        out.push((start, tok));
    }
    Ok(out)
}

/// A path: a variable and its steps (attribute, optional node id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The variable.
    pub var: String,
    /// The steps.
    pub steps: Vec<(String, Option<String>)>,
    /// As written.
    pub text: String,
}

/// An operand of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A path's value.
    Path(Path),
    /// A literal.
    Value(Json),
    /// A `$parameter`.
    Param(String),
}

/// A WHERE condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// A comparison.
    Cmp(Operand, &'static str, Operand),
    /// Both.
    And(Box<Cond>, Box<Cond>),
    /// Either.
    Or(Box<Cond>, Box<Cond>),
    /// Not.
    Not(Box<Cond>),
    /// The operand's text matches the pattern (`*` any run, `?` one character).
    Like(Operand, Operand),
    /// The path has a value.
    Exists(Path),
    /// The operand equals one of the values.
    Matches(Operand, Vec<Operand>),
}

/// The FROM clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The EHR variable.
    pub ehr: String,
    /// An `ehr_id/value` the rows must have.
    pub ehr_id: Option<String>,
    /// A parameter (`ehr_id/value=$name`) holding the `ehr_id` the rows must have.
    pub ehr_param: Option<String>,
    /// The composition variable and its archetype, if any.
    pub composition: Option<(String, Option<String>)>,
    /// The entry variable, its RM type and archetype, if any.
    pub entry: Option<(String, String, Option<String>)>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The columns: path and name.
    pub select: Vec<(Path, String)>,
    /// The FROM clause.
    pub from: From,
    /// The WHERE clause.
    pub filter: Option<Cond>,
    /// ORDER BY: path, descending.
    pub order: Vec<(Path, bool)>,
    /// LIMIT.
    pub limit: usize,
    /// OFFSET.
    pub offset: usize,
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&(usize, Tok)> {
        self.toks.get(self.pos)
    }

    fn at(&self) -> usize {
        self.peek().map_or(self.end, |t| t.0)
    }

    fn unexpected(&self, expected: &str) -> AqlError {
        AqlError::Unexpected {
            at: self.at(),
            expected: expected.into(),
            found: describe(self.peek()),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some((_, Tok::Word(w))) if w.eq_ignore_ascii_case(kw))
    }

    fn kw(&mut self, kw: &str) -> Result<(), AqlError> {
        if self.is_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some((_, Tok::Sym(x))) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, what: &str) -> Result<String, AqlError> {
        match self.peek() {
            Some((_, Tok::Word(w))) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn pred(&mut self) -> Option<String> {
        if let Some((_, Tok::Pred(p))) = self.peek() {
            let p = p.clone();
            self.pos += 1;
            Some(p)
        } else {
            None
        }
    }

    fn path(&mut self) -> Result<Path, AqlError> {
        let var = self.word("a path (a variable, then /steps)")?;
        let mut text = var.clone();
        let mut steps = Vec::new();
        while self.sym("/") {
            let attr = self.word("an attribute name")?;
            let node = self.pred();
            if let Some(n) = &node {
                if n.contains(',') || n.contains('=') {
                    return Err(AqlError::Unsupported {
                        at: self.at(),
                        what: "a predicate other than a node id".into(),
                    });
                }
            }
            text.push('/');
            text.push_str(&attr);
            if let Some(n) = &node {
                text.push_str(&format!("[{n}]"));
            }
            steps.push((attr, node));
            if steps.len() > MAX_STEPS {
                return Err(AqlError::TooComplex(format!(
                    "a path of more than {MAX_STEPS} steps"
                )));
            }
        }
        Ok(Path { var, steps, text })
    }

    fn operand(&mut self) -> Result<Operand, AqlError> {
        let t = self.peek().cloned();
        match t {
            Some((_, Tok::Str(s))) => {
                self.pos += 1;
                Ok(Operand::Value(Json::String(s)))
            }
            Some((_, Tok::Num(n, s))) => {
                self.pos += 1;
                let v = s.parse::<i64>().map(Json::from).unwrap_or_else(|_| {
                    serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
                });
                Ok(Operand::Value(v))
            }
            Some((_, Tok::Param(p))) => {
                self.pos += 1;
                Ok(Operand::Param(p))
            }
            Some((_, Tok::Word(w)))
                if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") =>
            {
                self.pos += 1;
                Ok(Operand::Value(Json::Bool(w.eq_ignore_ascii_case("true"))))
            }
            Some((_, Tok::Word(_))) => self.path().map(Operand::Path),
            _ => Err(self.unexpected("a path, string, number or $parameter")),
        }
    }

    fn cond(&mut self, depth: usize) -> Result<Cond, AqlError> {
        let mut left = self.and(depth)?;
        while self.is_kw("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Cond, AqlError> {
        let mut left = self.primary(depth)?;
        while self.is_kw("and") {
            self.pos += 1;
            let right = self.primary(depth)?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn primary(&mut self, depth: usize) -> Result<Cond, AqlError> {
        if depth > MAX_NESTING {
            return Err(AqlError::TooComplex(format!(
                "a WHERE clause nested deeper than {MAX_NESTING}"
            )));
        }
        if self.is_kw("not") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.primary(depth + 1)?)));
        }
        if self.is_kw("exists") {
            self.pos += 1;
            return Ok(Cond::Exists(self.path()?));
        }
        if self.sym("(") {
            let c = self.cond(depth + 1)?;
            if !self.sym(")") {
                return Err(self.unexpected("`)`"));
            }
            return Ok(c);
        }
        let left = self.operand()?;
        if self.is_kw("like") {
            self.pos += 1;
            let at = self.at();
            let pattern = self.operand()?;
            match &pattern {
                Operand::Value(Json::String(p)) if p.len() > MAX_PATTERN => {
                    return Err(AqlError::TooComplex(format!(
                        "a LIKE pattern longer than {MAX_PATTERN} bytes"
                    )))
                }
                Operand::Value(Json::String(_)) | Operand::Param(_) => {}
                _ => {
                    return Err(AqlError::Unexpected {
                        at,
                        expected: "a LIKE pattern (a string or $parameter)".into(),
                        found: "another operand".into(),
                    })
                }
            }
            return Ok(Cond::Like(left, pattern));
        }
        if self.is_kw("matches") {
            self.pos += 1;
            if !self.sym("{") {
                return Err(self.unexpected("`{` and the values to match"));
            }
            let mut values = Vec::new();
            loop {
                let at = self.at();
                let v = self.operand()?;
                if matches!(v, Operand::Path(_)) {
                    return Err(AqlError::Unsupported {
                        at,
                        what: "a path or terminology constraint in matches {…}".into(),
                    });
                }
                values.push(v);
                if values.len() > MAX_MATCHES {
                    return Err(AqlError::TooComplex(format!(
                        "more than {MAX_MATCHES} values in matches {{…}}"
                    )));
                }
                if !self.sym(",") {
                    break;
                }
            }
            if !self.sym("}") {
                return Err(self.unexpected("`,` or `}`"));
            }
            return Ok(Cond::Matches(left, values));
        }
        let op = match self.peek() {
            Some((_, Tok::Sym(s))) if matches!(*s, "=" | "!=" | "<" | "<=" | ">" | ">=") => *s,
            Some((at, Tok::Word(w)))
                if ["exists", "in"].iter().any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                return Err(AqlError::Unsupported {
                    at: *at,
                    what: format!("`{}`", w.to_ascii_uppercase()),
                })
            }
            _ => {
                return Err(self.unexpected("a comparison operator (= != < <= > >=, LIKE, matches)"))
            }
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(Cond::Cmp(left, op, right))
    }

    fn count(&mut self, what: &str) -> Result<usize, AqlError> {
        match self.peek() {
            Some((_, Tok::Num(n, s))) if *n >= 0.0 && n.fract() == 0.0 => {
                let v = s.parse::<usize>().map_err(|_| self.unexpected(what))?;
                self.pos += 1;
                Ok(v)
            }
            _ => Err(self.unexpected(what)),
        }
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "select",
        "from",
        "where",
        "order",
        "by",
        "limit",
        "offset",
        "contains",
        "and",
        "or",
        "not",
        "as",
        "asc",
        "desc",
        "ascending",
        "descending",
        "like",
        "matches",
        "exists",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

const ENTRY_TYPES: &[&str] = &["OBSERVATION", "EVALUATION", "INSTRUCTION", "ACTION"];

/// Parses a query.
///
/// # Errors
/// [`AqlError`], with the byte offset where the query went wrong.
pub fn parse(q: &str) -> Result<Query, AqlError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(AqlError::TooLong(q.len()));
    }
    let mut p = Parser {
        toks: lex(q)?,
        pos: 0,
        end: q.len(),
    };
    p.kw("select")?;
    if p.is_kw("distinct") || p.is_kw("top") {
        return Err(AqlError::Unsupported {
            at: p.at(),
            what: describe(p.peek()),
        });
    }
    let mut select = Vec::new();
    loop {
        let path = p.path()?;
        let name = if p.is_kw("as") {
            p.pos += 1;
            p.word("a column alias")?
        } else {
            path.text.clone()
        };
        select.push((path, name));
        if select.len() > MAX_COLUMNS {
            return Err(AqlError::TooComplex(format!(
                "more than {MAX_COLUMNS} columns"
            )));
        }
        if !p.sym(",") {
            break;
        }
    }
    p.kw("from")?;
    p.kw("ehr")?;
    let ehr = p.word("the EHR's variable")?;
    let mut ehr_id = None;
    let mut ehr_param = None;
    if let Some((at, Tok::Pred(pred))) = p.peek().cloned() {
        p.pos += 1;
        let (k, v) = pred.split_once('=').ok_or(AqlError::Unsupported {
            at,
            what: "an EHR predicate other than ehr_id/value='…'".into(),
        })?;
        let v = v.trim();
        let param = v
            .strip_prefix('$')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let quoted = v.len() >= 2
            && ((v.starts_with('\'') && v.ends_with('\''))
                || (v.starts_with('"') && v.ends_with('"')));
        if k.trim() != "ehr_id/value" || !(quoted || param.is_some()) {
            return Err(AqlError::Unsupported {
                at,
                what: "an EHR predicate other than ehr_id/value='…' or =$parameter".into(),
            });
        }
        match param {
            Some(n) => ehr_param = Some(n.to_owned()),
            None => ehr_id = Some(v[1..v.len() - 1].to_owned()),
        }
    }
    let mut composition = None;
    let mut entry = None;
    if p.is_kw("contains") {
        p.pos += 1;
        p.kw("composition")?;
        let var = p.word("the composition's variable")?;
        composition = Some((var, p.pred()));
        if p.is_kw("contains") {
            p.pos += 1;
            let at = p.at();
            let ty = match p.peek() {
                Some((_, Tok::Word(w)))
                    if ENTRY_TYPES.iter().any(|t| w.eq_ignore_ascii_case(t)) =>
                {
                    w.to_ascii_uppercase()
                }
                _ => return Err(p.unexpected("OBSERVATION, EVALUATION, INSTRUCTION or ACTION")),
            };
            p.pos += 1;
            let var = p.word("the entry's variable")?;
            let arch = p.pred();
            if p.is_kw("contains") || p.is_kw("and") || p.is_kw("or") {
                return Err(AqlError::Unsupported {
                    at,
                    what: "more than one entry in CONTAINS".into(),
                });
            }
            entry = Some((var, ty, arch));
        }
    }
    let from = From {
        ehr,
        ehr_id,
        ehr_param,
        composition,
        entry,
    };
    let mut defined = vec![from.ehr.clone()];
    defined.extend(from.composition.iter().map(|c| c.0.clone()));
    defined.extend(from.entry.iter().map(|e| e.0.clone()));
    let filter = if p.is_kw("where") {
        p.pos += 1;
        Some(p.cond(0)?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.is_kw("order") {
        p.pos += 1;
        p.kw("by")?;
        loop {
            let path = p.path()?;
            // An alias names its column's path.
            let path = select
                .iter()
                .find(|(_, n)| path.steps.is_empty() && *n == path.var)
                .map_or(path, |(sp, _)| sp.clone());
            let desc = if p.is_kw("desc") || p.is_kw("descending") {
                p.pos += 1;
                true
            } else {
                if p.is_kw("asc") || p.is_kw("ascending") {
                    p.pos += 1;
                }
                false
            };
            order.push((path, desc));
            if order.len() > MAX_COLUMNS {
                return Err(AqlError::TooComplex(format!(
                    "more than {MAX_COLUMNS} ORDER BY terms"
                )));
            }
            if !p.sym(",") {
                break;
            }
        }
    }
    let mut limit = MAX_ROWS;
    let mut offset = 0;
    if p.is_kw("limit") {
        p.pos += 1;
        limit = p.count("a row count")?;
        if limit > MAX_ROWS {
            return Err(AqlError::TooComplex(format!("LIMIT over {MAX_ROWS}")));
        }
        if p.is_kw("offset") {
            p.pos += 1;
            offset = p.count("a row offset")?;
        }
    }
    if p.peek().is_some() {
        return Err(p.unexpected("WHERE, ORDER BY, LIMIT or the end of the query"));
    }
    let q = Query {
        select,
        from,
        filter,
        order,
        limit,
        offset,
    };
    check_vars(&q, &defined, &p)?;
    Ok(q)
}

fn check_vars(q: &Query, defined: &[String], p: &Parser) -> Result<(), AqlError> {
    let mut paths: Vec<&Path> = q.select.iter().map(|(x, _)| x).collect();
    paths.extend(q.order.iter().map(|(x, _)| x));
    fn in_cond<'a>(c: &'a Cond, out: &mut Vec<&'a Path>) {
        match c {
            Cond::Cmp(a, _, b) | Cond::Like(a, b) => {
                for o in [a, b] {
                    if let Operand::Path(x) = o {
                        out.push(x);
                    }
                }
            }
            Cond::Exists(x) => out.push(x),
            Cond::Matches(a, _) => {
                if let Operand::Path(x) = a {
                    out.push(x);
                }
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                in_cond(a, out);
                in_cond(b, out);
            }
            Cond::Not(a) => in_cond(a, out),
        }
    }
    if let Some(c) = &q.filter {
        in_cond(c, &mut paths);
    }
    for x in paths {
        if !defined.contains(&x.var) {
            let at = p
                .toks
                .iter()
                .find(|(_, t)| matches!(t, Tok::Word(w) if *w == x.var))
                .map_or(0, |t| t.0);
            return Err(AqlError::UnknownVariable {
                at,
                name: clip(&x.var),
                defined: defined.join(", "),
            });
        }
    }
    Ok(())
}

/// One composition a query runs over, with the EHR it is in.
#[derive(Debug, Clone)]
pub struct Source {
    /// The EHR (as `GET /ehr/{ehr_id}` gives it).
    pub ehr: Json,
    /// The composition.
    pub composition: Json,
}

/// A query's result: column names and paths, and rows (each with the source it came from).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    /// Column names and the paths they select.
    pub columns: Vec<(String, String)>,
    /// The rows, in order, with the index of the source each came from.
    pub rows: Vec<(usize, Vec<Json>)>,
}

fn resolve<'a>(root: &'a Json, steps: &[(String, Option<String>)]) -> Option<&'a Json> {
    let mut cur = root;
    for (attr, node) in steps {
        let child = cur.get(attr)?;
        cur = match (child, node) {
            (Json::Array(a), Some(n)) => a
                .iter()
                .find(|c| c["archetype_node_id"].as_str() == Some(n))?,
            (c, Some(n)) if c["archetype_node_id"].as_str() == Some(n) => c,
            (_, Some(_)) => return None,
            (c, None) => c,
        };
    }
    Some(cur)
}

fn compare(a: &Json, b: &Json) -> Option<Ordering> {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Json::String(x), Json::String(y)) => Some(x.cmp(y)),
        (Json::Bool(x), Json::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

struct Row<'a> {
    vars: BTreeMap<&'a str, &'a Json>,
}

impl Row<'_> {
    fn get(&self, p: &Path) -> Option<Json> {
        let root = self.vars.get(p.var.as_str())?;
        resolve(root, &p.steps).cloned()
    }
}

fn value(
    o: &Operand,
    row: &Row<'_>,
    params: &serde_json::Map<String, Json>,
) -> Result<Option<Json>, AqlError> {
    Ok(match o {
        Operand::Path(p) => row.get(p),
        Operand::Value(v) => Some(v.clone()),
        Operand::Param(n) => Some(
            params
                .get(n)
                .cloned()
                .ok_or_else(|| AqlError::MissingParameter(clip(n)))?,
        ),
    })
}

fn holds(
    c: &Cond,
    row: &Row<'_>,
    params: &serde_json::Map<String, Json>,
) -> Result<bool, AqlError> {
    Ok(match c {
        Cond::And(a, b) => holds(a, row, params)? && holds(b, row, params)?,
        Cond::Or(a, b) => holds(a, row, params)? || holds(b, row, params)?,
        Cond::Not(a) => !holds(a, row, params)?,
        Cond::Exists(p) => row.get(p).is_some_and(|v| !v.is_null()),
        Cond::Like(a, pattern) => {
            let (Some(Json::String(x)), Some(Json::String(p))) =
                (value(a, row, params)?, value(pattern, row, params)?)
            else {
                return Ok(false);
            };
            if p.len() > MAX_PATTERN {
                return Err(AqlError::TooComplex(format!(
                    "a LIKE pattern longer than {MAX_PATTERN} bytes"
                )));
            }
            like(&x, &p)
        }
        Cond::Matches(a, values) => {
            let Some(x) = value(a, row, params)? else {
                return Ok(false);
            };
            let mut any = false;
            for v in values {
                if value(v, row, params)?.is_some_and(|v| compare(&x, &v) == Some(Ordering::Equal))
                {
                    any = true;
                    break;
                }
            }
            any
        }
        Cond::Cmp(a, op, b) => {
            let (Some(x), Some(y)) = (value(a, row, params)?, value(b, row, params)?) else {
                return Ok(false);
            };
            let Some(ord) = compare(&x, &y) else {
                return Ok(false);
            };
            match *op {
                "=" => ord == Ordering::Equal,
                "!=" => ord != Ordering::Equal,
                "<" => ord == Ordering::Less,
                "<=" => ord != Ordering::Greater,
                ">" => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }
        }
    })
}

/// One element of a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    /// Any run of characters (`*`).
    Any,
    /// Any one character (`?`).
    One,
    /// This character.
    Char(char),
}

fn glob(pattern: &str) -> Vec<Glob> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Glob::Any,
            '?' => Glob::One,
            '\\' => Glob::Char(chars.next().unwrap_or('\\')),
            c => Glob::Char(c),
        });
    }
    out
}

/// Whether the whole of `text` matches `pattern` (AQL `LIKE`: `*` any run, `?` one
/// character, `\` escapes). Linear in the text for each `*` backtrack: at most
/// `text × pattern` steps, the pattern being at most [`MAX_PATTERN`] bytes.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p = glob(pattern);
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < t.len() {
        match p.get(j) {
            Some(Glob::Any) => {
                star = Some((j, i));
                j += 1;
            }
            Some(Glob::One) => {
                i += 1;
                j += 1;
            }
            Some(Glob::Char(c)) if *c == t[i] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    p[j..].iter().all(|g| *g == Glob::Any)
}

impl Query {
    /// The `ehr_id` the rows must have, if any: the literal, or the parameter's value.
    ///
    /// # Errors
    /// [`AqlError::MissingParameter`] for a parameter not given (or not a string).
    pub fn ehr_id(
        &self,
        params: &serde_json::Map<String, Json>,
    ) -> Result<Option<String>, AqlError> {
        if let Some(n) = &self.from.ehr_param {
            return match params.get(n).and_then(Json::as_str) {
                Some(v) => Ok(Some(v.to_owned())),
                None => Err(AqlError::MissingParameter(clip(n))),
            };
        }
        Ok(self.from.ehr_id.clone())
    }
}

/// Runs a query over `sources`, with `params` for its `$parameters`.
///
/// # Errors
/// [`AqlError::MissingParameter`].
pub fn run(
    q: &Query,
    sources: &[Source],
    params: &serde_json::Map<String, Json>,
) -> Result<ResultSet, AqlError> {
    let mut matched: Vec<(usize, Vec<Json>, Vec<Option<Json>>)> = Vec::new();
    let wanted = q.ehr_id(params)?;
    for (i, s) in sources.iter().enumerate() {
        if let Some(id) = &wanted {
            if s.ehr["ehr_id"]["value"].as_str() != Some(id.as_str()) {
                continue;
            }
        }
        if let Some((_, Some(arch))) = &q.from.composition {
            if s.composition["archetype_node_id"].as_str() != Some(arch.as_str()) {
                continue;
            }
        }
        let entries: Vec<Option<&Json>> = match &q.from.entry {
            None => vec![None],
            Some((_, ty, arch)) => s.composition["content"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["_type"].as_str() == Some(ty.as_str()))
                        .filter(|e| {
                            arch.as_ref()
                                .is_none_or(|x| e["archetype_node_id"].as_str() == Some(x))
                        })
                        .map(Some)
                        .collect()
                })
                .unwrap_or_default(),
        };
        for e in entries {
            let mut vars = BTreeMap::new();
            vars.insert(q.from.ehr.as_str(), &s.ehr);
            if let Some((c, _)) = &q.from.composition {
                vars.insert(c.as_str(), &s.composition);
            }
            if let (Some((o, _, _)), Some(e)) = (&q.from.entry, e) {
                vars.insert(o.as_str(), e);
            }
            let row = Row { vars };
            if let Some(c) = &q.filter {
                if !holds(c, &row, params)? {
                    continue;
                }
            }
            let cells = q
                .select
                .iter()
                .map(|(p, _)| row.get(p).unwrap_or(Json::Null))
                .collect();
            let keys = q.order.iter().map(|(p, _)| row.get(p)).collect();
            matched.push((i, cells, keys));
        }
    }
    if !q.order.is_empty() {
        matched.sort_by(|a, b| {
            for (k, (_, desc)) in q.order.iter().enumerate() {
                let ord = match (&a.2[k], &b.2[k]) {
                    (Some(x), Some(y)) => compare(x, y).unwrap_or(Ordering::Equal),
                    // Missing values last, whichever the direction.
                    (None, Some(_)) => return Ordering::Greater,
                    (Some(_), None) => return Ordering::Less,
                    (None, None) => Ordering::Equal,
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    Ok(ResultSet {
        columns: q
            .select
            .iter()
            .map(|(p, n)| (n.clone(), p.text.clone()))
            .collect(),
        rows: matched
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|(i, cells, _)| (i, cells))
            .collect(),
    })
}

#[cfg(test)]
mod tests;
