//! FHIR search parameters: parsing a query string into the parameters this server supports,
//! and the matching rules for token and date parameters (FHIR R4 3.1.1.4, "Search").

use cophr_protocol::Timestamp;

/// A date search prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `eq` (the default): the resource's range lies within the parameter's.
    Eq,
    /// `ne`: not `eq`.
    Ne,
    /// `gt`: the resource's range extends after the parameter's.
    Gt,
    /// `lt`: the resource's range starts before the parameter's.
    Lt,
    /// `ge`: `gt` or `eq`.
    Ge,
    /// `le`: `lt` or `eq`.
    Le,
    /// `sa`: the resource starts after the parameter ends.
    Sa,
    /// `eb`: the resource ends before the parameter starts.
    Eb,
}

/// A half-open time range in milliseconds since the epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// Inclusive start.
    pub lo: i64,
    /// Exclusive end.
    pub hi: i64,
}

/// One `date` parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateParam {
    /// The comparison.
    pub prefix: Prefix,
    /// The range the value denotes at its precision.
    pub range: Range,
}

/// One `code`/`category` alternative: `[system]|[code]`, `[code]`, `[system]|`, `|[code]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// `None`: any system; `Some("")`: no system.
    pub system: Option<String>,
    /// `None`: any code.
    pub code: Option<String>,
}

impl Token {
    /// Parses one token alternative.
    pub fn parse(s: &str) -> Token {
        match s.split_once('|') {
            None => Token {
                system: None,
                code: Some(s.to_owned()),
            },
            Some((sys, code)) => Token {
                system: Some(sys.to_owned()),
                code: (!code.is_empty()).then(|| code.to_owned()),
            },
        }
    }

    /// Whether a `(system, code)` pair matches.
    pub fn matches(&self, system: Option<&str>, code: &str) -> bool {
        let sys_ok = match &self.system {
            None => true,
            Some(s) if s.is_empty() => system.is_none_or(str::is_empty),
            Some(s) => system == Some(s.as_str()),
        };
        sys_ok && self.code.as_deref().is_none_or(|c| c == code)
    }
}

/// The search parameters understood by this server, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// `_id`: resource ids (any of).
    pub ids: Vec<String>,
    /// `patient` or `subject`: record ids (any of).
    pub patients: Vec<String>,
    /// `category`: any of these tokens, per occurrence (all occurrences must match).
    pub categories: Vec<Vec<Token>>,
    /// `code`: as `category`.
    pub codes: Vec<Vec<Token>>,
    /// `date`: every one must match.
    pub dates: Vec<DateParam>,
    /// `_count`: page size (default [`DEFAULT_COUNT`], at most [`MAX_COUNT`]).
    pub count: Option<usize>,
    /// `_offset`: how many matches to skip (the `next`/`previous` links carry it).
    pub offset: usize,
}

/// Why a search cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A parameter this server does not support for the type.
    #[error("search parameter `{0}` is not supported for this type (see /fhir/r4/metadata)")]
    Unsupported(String),
    /// A malformed value.
    #[error("search parameter `{name}`: {why}")]
    Invalid {
        /// The parameter.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// Page size when `_count` is not given.
pub const DEFAULT_COUNT: usize = 100;
/// Largest `_count` honoured.
pub const MAX_COUNT: usize = 1000;

/// The search parameters supported for a resource type (besides `_id`, `_count`, `_offset`,
/// `_format`). Every type is searched by `patient`; a derived or clinical type also by
/// `date`; types that carry codes by `code` and `category`.
pub fn params_for(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Patient" => &[],
        "Provenance" | "AuditEvent" | "Consent" => &["patient", "date"],
        "Practitioner" | "Organization" | "PractitionerRole" | "CareTeam" => &["patient"],
        t if SUBJECT_TYPES.contains(&t) => &["patient", "subject", "category", "code", "date"],
        _ => &["patient", "category", "code", "date"],
    }
}

/// The served types with a `subject` search parameter in FHIR R4 (their subject is the
/// record's patient: `subject=Patient/<record id>` is `patient=<record id>`).
pub const SUBJECT_TYPES: &[&str] = &[
    "Observation",
    "Condition",
    "Procedure",
    "MedicationStatement",
    "MedicationRequest",
    "DiagnosticReport",
    "DocumentReference",
    "Media",
    "QuestionnaireResponse",
    "Flag",
    "Communication",
    "ServiceRequest",
];

/// Parses the query pairs for a search on `resource_type`.
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Search, SearchError> {
    let allowed = params_for(resource_type);
    let mut s = Search::default();
    for (name, value) in pairs {
        let base = name.split(':').next().unwrap_or(name);
        if base != name.as_str() {
            // Modifiers (`:exact`, `:missing`, ...) are not supported.
            return Err(SearchError::Unsupported(name.clone()));
        }
        let invalid = |why: &str| SearchError::Invalid {
            name: name.clone(),
            why: why.to_owned(),
        };
        match base {
            "_format" => {
                if !matches!(
                    value.as_str(),
                    "json" | "application/fhir+json" | "application/json"
                ) {
                    return Err(invalid("only JSON is served"));
                }
            }
            "_count" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| invalid("expected a non-negative integer"))?;
                s.count = Some(n.min(MAX_COUNT));
            }
            "_offset" => {
                s.offset = value
                    .parse()
                    .map_err(|_| invalid("expected a non-negative integer"))?;
            }
            "_id" => s.ids.extend(split(value)),
            "patient" | "subject" if allowed.contains(&base) => {
                for v in split(value) {
                    let id = v.strip_prefix("Patient/").unwrap_or(&v);
                    if id.is_empty() {
                        return Err(invalid("empty reference"));
                    }
                    if id.contains('/') {
                        return Err(invalid("only a Patient (the record) can be a subject here"));
                    }
                    s.patients.push(id.to_owned());
                }
            }
            "category" if allowed.contains(&"category") => s
                .categories
                .push(split(value).iter().map(|t| Token::parse(t)).collect()),
            "code" if allowed.contains(&"code") => s
                .codes
                .push(split(value).iter().map(|t| Token::parse(t)).collect()),
            "date" if allowed.contains(&"date") => s
                .dates
                .push(parse_date_param(value).map_err(|why| invalid(&why))?),
            _ => return Err(SearchError::Unsupported(name.clone())),
        }
    }
    Ok(s)
}

fn split(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses `[prefix]date`.
pub fn parse_date_param(v: &str) -> Result<DateParam, String> {
    let (prefix, rest) = match v.get(..2) {
        Some("eq") => (Prefix::Eq, &v[2..]),
        Some("ne") => (Prefix::Ne, &v[2..]),
        Some("gt") => (Prefix::Gt, &v[2..]),
        Some("lt") => (Prefix::Lt, &v[2..]),
        Some("ge") => (Prefix::Ge, &v[2..]),
        Some("le") => (Prefix::Le, &v[2..]),
        Some("sa") => (Prefix::Sa, &v[2..]),
        Some("eb") => (Prefix::Eb, &v[2..]),
        _ => (Prefix::Eq, v),
    };
    let range = date_range(rest).ok_or_else(|| {
        format!("`{rest}` is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or an RFC 3339 time)")
    })?;
    Ok(DateParam { prefix, range })
}

impl DateParam {
    /// Whether a resource whose date covers `r` matches.
    pub fn matches(&self, r: Range) -> bool {
        let p = self.range;
        let within = p.lo <= r.lo && r.hi <= p.hi;
        match self.prefix {
            Prefix::Eq => within,
            Prefix::Ne => !within,
            Prefix::Gt => r.hi > p.hi,
            Prefix::Lt => r.lo < p.lo,
            Prefix::Ge => r.hi > p.hi || within,
            Prefix::Le => r.lo < p.lo || within,
            Prefix::Sa => r.lo >= p.hi,
            Prefix::Eb => r.hi <= p.lo,
        }
    }
}

fn ms(d: time::OffsetDateTime) -> i64 {
    (d.unix_timestamp_nanos() / 1_000_000) as i64
}

fn date_ms(y: i32, m: u8, d: u8) -> Option<i64> {
    let month = time::Month::try_from(m).ok()?;
    let date = time::Date::from_calendar_date(y, month, d).ok()?;
    Some(ms(date.midnight().assume_utc()))
}

/// The range a FHIR `date`, `dateTime` or `instant` denotes at its precision (a date
/// without a zone is taken as UTC). `None` if malformed.
pub fn date_range(s: &str) -> Option<Range> {
    let s = s.trim();
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = s.splitn(3, '-').collect();
    if s.len() <= 10 && parts.iter().all(|p| digits(p)) {
        let y: i32 = parts.first()?.parse().ok()?;
        if parts[0].len() != 4 || parts[1..].iter().any(|p| p.len() != 2) {
            return None;
        }
        return match parts.len() {
            1 => Some(Range {
                lo: date_ms(y, 1, 1)?,
                hi: date_ms(y + 1, 1, 1)?,
            }),
            2 => {
                let m: u8 = parts[1].parse().ok()?;
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(Range {
                    lo: date_ms(y, m, 1)?,
                    hi: date_ms(ny, nm, 1)?,
                })
            }
            _ => {
                let m: u8 = parts[1].parse().ok()?;
                let d: u8 = parts[2].parse().ok()?;
                let lo = date_ms(y, m, d)?;
                Some(Range {
                    lo,
                    hi: lo + 86_400_000,
                })
            }
        };
    }
    let fmt = &time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, fmt) {
        let lo = ms(t);
        let width = if s.contains('.') { 1 } else { 1000 };
        return Some(Range { lo, hi: lo + width });
    }
    // Minute precision (allowed in search values): add the seconds.
    let (head, zone) = split_zone(s)?;
    if head.len() == 16 {
        let t = time::OffsetDateTime::parse(&format!("{head}:00{zone}"), fmt).ok()?;
        let lo = ms(t);
        return Some(Range {
            lo,
            hi: lo + 60_000,
        });
    }
    None
}

fn split_zone(s: &str) -> Option<(&str, &str)> {
    if let Some(h) = s.strip_suffix('Z') {
        return Some((h, "Z"));
    }
    let i = s.len().checked_sub(6)?;
    let z = s.get(i..)?;
    (z.starts_with('+') || z.starts_with('-')).then(|| (&s[..i], z))
}

/// A node timestamp as a one-millisecond range.
pub fn instant_range(t: Timestamp) -> Range {
    let lo = i64::try_from(t).unwrap_or(i64::MAX - 1);
    Range { lo, hi: lo + 1 }
}

/// Query pairs in order, decoded (`+` as space, percent-escapes), bounded in number.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, SearchError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > 64 {
        return Err(SearchError::Invalid {
            name: "query".into(),
            why: "more than 64 parameters".into(),
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        date_range(s).unwrap()
    }

    #[test]
    fn date_precisions() {
        assert_eq!(r("2020").hi - r("2020").lo, 366 * 86_400_000);
        assert_eq!(r("2021-02").hi - r("2021-02").lo, 28 * 86_400_000);
        assert_eq!(r("2021-12").hi, r("2022").lo);
        assert_eq!(r("2021-03-04").lo, r("2021-03-04T00:00:00Z").lo);
        assert_eq!(r("2021-03-04T01:00:00+01:00").lo, r("2021-03-04").lo);
        assert_eq!(
            r("2021-03-04T10:30Z").hi - r("2021-03-04T10:30Z").lo,
            60_000
        );
        for bad in [
            "20",
            "2021-13",
            "2021-02-30",
            "x",
            "2021-03-04T25:00:00Z",
            "",
        ] {
            assert!(date_range(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn prefixes() {
        let day = r("2021-03-04");
        let p = |s: &str| parse_date_param(s).unwrap();
        assert!(p("2021-03").matches(day));
        assert!(p("eq2021-03-04").matches(day));
        assert!(!p("eq2021-03-05").matches(day));
        assert!(p("ne2021-03-05").matches(day));
        assert!(p("ge2021-03-04").matches(day));
        assert!(p("ge2021-01").matches(day));
        assert!(!p("ge2021-03-05").matches(day));
        assert!(p("le2021-03-04").matches(day));
        assert!(!p("le2021-03-03").matches(day));
        assert!(p("gt2021-03-03").matches(day));
        assert!(!p("gt2021-03-04").matches(day));
        assert!(p("lt2021-03-05").matches(day));
        assert!(!p("lt2021-03-04").matches(day));
        assert!(p("sa2021-03-03").matches(day));
        assert!(p("eb2021-03-05").matches(day));
        assert!(parse_date_param("ge2021-3").is_err());
    }

    #[test]
    fn tokens() {
        let t = Token::parse("http://loinc.org|8867-4");
        assert!(t.matches(Some("http://loinc.org"), "8867-4"));
        assert!(!t.matches(Some("http://snomed.info/sct"), "8867-4"));
        assert!(Token::parse("8867-4").matches(Some("x"), "8867-4"));
        assert!(Token::parse("http://loinc.org|").matches(Some("http://loinc.org"), "1"));
        assert!(Token::parse("|abc").matches(None, "abc"));
        assert!(!Token::parse("|abc").matches(Some("s"), "abc"));
    }

    #[test]
    fn parameters() {
        let q = |s: &str| parse("Observation", &query_pairs(Some(s)).unwrap());
        let s = q("patient=Patient/a-x&code=a,b&date=ge2020&date=lt2021&_count=5").unwrap();
        assert_eq!(s.patients, vec!["a-x"]);
        assert_eq!(s.codes[0].len(), 2);
        assert_eq!(s.dates.len(), 2);
        assert_eq!(s.count, Some(5));
        assert_eq!(q("_offset=7").unwrap().offset, 7);
        assert!(matches!(q("_offset=-1"), Err(SearchError::Invalid { .. })));
        assert!(matches!(q("foo=1"), Err(SearchError::Unsupported(_))));
        assert!(matches!(q("code:text=1"), Err(SearchError::Unsupported(_))));
        assert!(matches!(
            q("date=tomorrow"),
            Err(SearchError::Invalid { .. })
        ));
        assert!(matches!(
            parse("Patient", &query_pairs(Some("code=1")).unwrap()),
            Err(SearchError::Unsupported(_))
        ));
    }
}
