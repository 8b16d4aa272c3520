//! Reading FHIR files one resource at a time, in bounded memory whatever the file's size:
//! NDJSON line by line, a Bundle entry by entry (its `entry` array streamed), a single
//! resource whole (it is at most one resource).

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use cophr_protocol::fhir::{self, FhirError};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

/// Longest NDJSON line read, in bytes: one `Binary` resource carrying a file of at most
/// [`fhir::MAX_BINARY_JSON`] (base64), or any other resource (at most
/// [`fhir::MAX_RESOURCE`], checked when it is mapped), with room for whitespace. A longer
/// line is refused as too large (and the rest read on).
pub const MAX_LINE: usize =
    max(fhir::MAX_RESOURCE, fhir::MAX_BINARY_JSON.div_ceil(3) * 4) + 64 * 1024;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// One resource read, or why an entry or line could not be read as one.
pub struct Item {
    /// Where it is in its file: `Bundle.entry[3]`, `line 7`, `resource`.
    pub at: String,
    /// Its `fullUrl` (Bundle entries).
    pub full_url: Option<String>,
    /// The resource, or what is wrong with the entry or line.
    pub resource: Result<Json, FhirError>,
}

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// NDJSON, one resource a line.
    Ndjson,
    /// A Bundle of this type.
    Bundle(String),
    /// One resource.
    Resource,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Ndjson => f.write_str("ndjson"),
            Kind::Bundle(t) => f.write_str(t),
            Kind::Resource => f.write_str("resource"),
        }
    }
}

/// Why a whole file was not read.
pub enum FileError {
    /// Not FHIR at all (no `resourceType`: a bulk export's `log.ndjson`, any other JSON):
    /// skipped with a note when found in a directory.
    NotFhir(String),
    /// FHIR that cannot be imported (not JSON, an unknown resource type, a Bundle type that
    /// cannot be imported).
    Invalid(FhirError),
    /// Reading stopped by the caller.
    Stopped(crate::error::CliError),
}

impl From<FhirError> for FileError {
    fn from(e: FhirError) -> Self {
        FileError::Invalid(e)
    }
}

/// Reads a file, giving each resource to `each` in order. Stops at the first error `each`
/// returns.
///
/// # Errors
/// The file is not FHIR, not importable, unreadable, or `each` stopped.
pub fn read(
    file: &Path,
    each: &mut dyn FnMut(Item) -> crate::error::Result<()>,
) -> Result<Kind, FileError> {
    let f = File::open(file).map_err(|e| {
        FileError::Invalid(FhirError::NotJson {
            reason: format!("cannot read: {e}"),
        })
    })?;
    let reader = BufReader::with_capacity(256 * 1024, f);
    if file.extension().is_some_and(|e| e == "ndjson") {
        ndjson(reader, each)?;
        return Ok(Kind::Ndjson);
    }
    json(reader, each)
}

fn ndjson(
    mut reader: impl BufRead,
    each: &mut dyn FnMut(Item) -> crate::error::Result<()>,
) -> Result<(), FileError> {
    let mut buf = Vec::new();
    let mut line = 0usize;
    let mut first = true;
    loop {
        buf.clear();
        line += 1;
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .map_err(|e| not_json(format!("cannot read: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        let at = format!("line {line}");
        if buf.last() != Some(&b'\n') && n == MAX_LINE {
            // Too long: skip to the end of the line.
            let mut skipped = n;
            loop {
                let mut rest = Vec::new();
                let m = (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)
                    .map_err(|e| not_json(format!("cannot read: {e}")))?;
                skipped += m;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            first = false;
            each(Item {
                at,
                full_url: None,
                resource: Err(FhirError::TooLarge {
                    what: "the line".into(),
                    len: skipped,
                    max: MAX_LINE,
                }),
            })
            .map_err(FileError::Stopped)?;
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: Result<Json, FhirError> =
            serde_json::from_slice(&buf).map_err(|e| FhirError::NotJson {
                reason: e.to_string(),
            });
        if first {
            first = false;
            // A file whose first line is no FHIR resource is not FHIR (a bulk export's
            // `log.ndjson`).
            let fhir_like = parsed
                .as_ref()
                .ok()
                .and_then(|j| j.get("resourceType"))
                .is_some_and(Json::is_string);
            if !fhir_like {
                return Err(FileError::NotFhir(match &parsed {
                    Ok(_) => "its first line has no resourceType".into(),
                    Err(e) => format!("its first line is {e}"),
                }));
            }
        }
        let resource = parsed.and_then(|j| {
            if j.is_object() {
                Ok(j)
            } else {
                Err(FhirError::WrongType {
                    path: "resource".into(),
                    expected: "an object",
                    got: "something else",
                })
            }
        });
        each(Item {
            at,
            full_url: None,
            resource,
        })
        .map_err(FileError::Stopped)?;
    }
}

fn not_json(reason: String) -> FileError {
    FileError::Invalid(FhirError::NotJson { reason })
}

/// A JSON file: a Bundle (its entries streamed) or one resource.
fn json(
    reader: impl Read,
    each: &mut dyn FnMut(Item) -> crate::error::Result<()>,
) -> Result<Kind, FileError> {
    let used = Rc::new(Cell::new(0));
    let mut de = serde_json::Deserializer::from_reader(Budgeted {
        inner: reader,
        used: used.clone(),
    });
    let mut state = Top {
        each,
        stopped: None,
        entries: 0,
        used,
    };
    let top = match (&mut state).deserialize(&mut de) {
        Ok(t) => t,
        Err(e) => {
            if let Some(s) = state.stopped.take() {
                return Err(s);
            }
            return Err(not_json(e.to_string()));
        }
    };
    de.end().map_err(|e| not_json(e.to_string()))?;
    let Some(top) = top else {
        return Err(FileError::NotFhir("it is not a JSON object".into()));
    };
    let Some(ty) = top.fields.get("resourceType") else {
        return Err(FileError::NotFhir("it has no resourceType".into()));
    };
    let ty = fhir::resource_type(&serde_json::json!({ "resourceType": ty }))?.to_owned();
    if ty != "Bundle" {
        let mut resource = top.fields;
        if let Some(buffered) = top.buffered {
            resource.insert("entry".into(), Json::Array(buffered));
        }
        (state.each)(Item {
            at: "resource".into(),
            full_url: None,
            resource: Ok(Json::Object(resource)),
        })
        .map_err(FileError::Stopped)?;
        return Ok(Kind::Resource);
    }
    let bundle_type = fhir::bundle_type(&json_obj(&top.fields))?.to_owned();
    // Entries that came before `resourceType` were buffered: give them now.
    if let Some(buffered) = top.buffered {
        for (i, e) in buffered.into_iter().enumerate() {
            (state.each)(entry_item(i, e)).map_err(FileError::Stopped)?;
        }
    }
    Ok(Kind::Bundle(bundle_type))
}

/// The fields of a Bundle other than its entries, as an object (for checking its type).
fn json_obj(fields: &Map<String, Json>) -> Json {
    Json::Object(fields.clone())
}

/// One Bundle entry as an item: its `fullUrl`, its `request` (a create or update), its
/// resource.
fn entry_item(i: usize, e: Json) -> Item {
    let at = format!("Bundle.entry[{i}]");
    let full_url = e.get("fullUrl").and_then(Json::as_str).map(str::to_owned);
    let resource = (|| {
        let Json::Object(mut e) = e else {
            return Err(FhirError::WrongType {
                path: at.clone(),
                expected: "an object",
                got: "something else",
            });
        };
        if let Some(req) = e.get("request") {
            let method = req.get("method").and_then(Json::as_str).unwrap_or_default();
            if !matches!(method, "POST" | "PUT") {
                return Err(FhirError::Unsupported {
                    path: format!("{at}.request.method"),
                    reason: format!(
                        "only POST and PUT entries can be imported (got {})",
                        method.chars().take(16).collect::<String>()
                    ),
                });
            }
        }
        match e.remove("resource") {
            Some(r @ Json::Object(_)) => Ok(r),
            Some(_) => Err(FhirError::WrongType {
                path: format!("{at}.resource"),
                expected: "an object",
                got: "something else",
            }),
            None => Err(FhirError::Missing {
                path: format!("{at}.resource"),
            }),
        }
    })();
    Item {
        at,
        full_url,
        resource,
    }
}

/// The top-level object: its fields other than a Bundle's `entry`, and the entries that
/// came before `resourceType` said it is a Bundle.
struct TopFields {
    fields: Map<String, Json>,
    buffered: Option<Vec<Json>>,
}

struct Top<'a> {
    each: &'a mut dyn FnMut(Item) -> crate::error::Result<()>,
    stopped: Option<FileError>,
    entries: usize,
    /// Bytes read since the last Bundle entry began (the whole file for one resource).
    used: Rc<Cell<u64>>,
}

/// A reader that gives at most [`MAX_LINE`] bytes between resets of `used`: one resource,
/// or one Bundle entry (reset as each begins), is never read into memory beyond that.
struct Budgeted<R> {
    inner: R,
    used: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = (MAX_LINE as u64).saturating_sub(self.used.get());
        if left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a resource or Bundle entry of more than {MAX_LINE} bytes"),
            ));
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..take])?;
        self.used.set(self.used.get() + n as u64);
        Ok(n)
    }
}

impl<'de> DeserializeSeed<'de> for &mut Top<'_> {
    type Value = Option<TopFields>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Top<'_> {
    type Value = Option<TopFields>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource or Bundle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        let mut buffered: Option<Vec<Json>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let is_bundle = fields.get("resourceType").and_then(Json::as_str) == Some("Bundle");
            if key == "entry" && is_bundle {
                map.next_value_seed(Entries { top: &mut *self })?;
            } else if key == "entry" && !fields.contains_key("resourceType") {
                buffered = Some(map.next_value::<Vec<Json>>()?);
            } else {
                let v: Json = map.next_value()?;
                fields.insert(key, v);
            }
        }
        Ok(Some(TopFields { fields, buffered }))
    }

    // Anything but an object: not FHIR.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A Bundle's `entry` array, each entry given on as it is read.
struct Entries<'a, 'b> {
    top: &'a mut Top<'b>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Bundle's entries (an array)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.top.used.set(0);
            let Some(e) = seq.next_element::<Json>()? else {
                break;
            };
            let i = self.top.entries;
            self.top.entries += 1;
            if let Err(err) = (self.top.each)(entry_item(i, e)) {
                self.top.stopped = Some(FileError::Stopped(err));
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reading a file gave: its kind (or why not), and each item's place and resource
    /// (or error).
    type Read = (Result<Kind, String>, Vec<(String, Result<Json, String>)>);

    fn items(name: &str, text: &str) -> Read {
        let dir = tempfile::TempDir::new().expect("tmp");
        let f = dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        let mut out = Vec::new();
        let kind = read(&f, &mut |i| {
            out.push((i.at, i.resource.map_err(|e| e.to_string())));
            Ok(())
        })
        .map_err(|e| match e {
            FileError::NotFhir(n) => format!("not fhir: {n}"),
            FileError::Invalid(e) => e.to_string(),
            FileError::Stopped(e) => e.message,
        });
        (kind, out)
    }

    #[test]
    fn a_bundle_entry_or_resource_larger_than_a_line_is_refused_not_read_whole() {
        let big = "a".repeat(MAX_LINE);
        // One entry over the bound: the file is refused, saying why.
        let text = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{{"resourceType":"Basic","id":"{big}"}}}}]}}"#
        );
        let (kind, got) = items("b.json", &text);
        assert!(
            kind.as_ref().is_err_and(|e| e.contains("more than")),
            "{kind:?}"
        );
        assert!(got.is_empty());
        // One resource over the bound.
        let text = format!(r#"{{"resourceType":"Basic","id":"{big}"}}"#);
        let (kind, _) = items("r.json", &text);
        assert!(kind.is_err_and(|e| e.contains("more than")));
        // Entries each within it, together well beyond it: all read.
        let part = "b".repeat(MAX_LINE / 3);
        let entry = format!(r#"{{"resource":{{"resourceType":"Basic","id":"{part}"}}}}"#);
        let text = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{entry},{entry},{entry},{entry}]}}"#
        );
        let (kind, got) = items("b.json", &text);
        assert_eq!(kind.ok(), Some(Kind::Bundle("collection".into())));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn bundles_stream_their_entries_in_any_key_order() {
        let obs = r#"{"resourceType":"Observation","id":"o"}"#;
        let text = format!(
            r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"fullUrl":"urn:uuid:1","resource":{obs}}},{{"resource":3}}]}}"#
        );
        let (kind, got) = items("b.json", &text);
        assert_eq!(kind.ok(), Some(Kind::Bundle("collection".into())));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "Bundle.entry[0]");
        assert!(got[0].1.is_ok());
        assert!(got[1]
            .1
            .as_ref()
            .is_err_and(|e| e.contains("resource must be an object")));
        // `entry` before `resourceType`.
        let text =
            format!(r#"{{"entry":[{{"resource":{obs}}}],"type":"batch","resourceType":"Bundle"}}"#);
        let (kind, got) = items("b.json", &text);
        assert_eq!(kind.ok(), Some(Kind::Bundle("batch".into())));
        assert_eq!(got.len(), 1);
        // A List has entries of its own: one resource.
        let (kind, got) = items("l.json", r#"{"resourceType":"List","entry":[{"item":{}}]}"#);
        assert_eq!(kind.ok(), Some(Kind::Resource));
        assert_eq!(
            got[0].1.as_ref().ok().map(|j| j["entry"].is_array()),
            Some(true)
        );
        let (kind, _) = items("x.json", r#"{"fileUrl": "x"}"#);
        assert!(kind.is_err_and(|e| e.starts_with("not fhir")));
        let (kind, _) = items(
            "x.json",
            r#"{"resourceType":"Bundle","type":"history","entry":[]}"#,
        );
        assert!(kind.is_err_and(|e| e.contains("history")));
    }

    #[test]
    fn ndjson_lines_are_read_one_by_one_and_a_log_is_not_fhir() {
        let (kind, got) = items(
            "o.ndjson",
            "{\"resourceType\":\"Observation\"}\n\nnot json\n[1]\n{\"resourceType\":\"Condition\"}",
        );
        assert_eq!(kind.ok(), Some(Kind::Ndjson));
        let at: Vec<&str> = got.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(at, ["line 1", "line 3", "line 4", "line 5"]);
        assert!(got[1].1.is_err() && got[2].1.is_err() && got[3].1.is_ok());
        let (kind, got) = items(
            "log.ndjson",
            "{\"fileUrl\":\"x\",\"eventId\":\"kickoff\"}\n",
        );
        assert!(kind.is_err_and(|e| e.starts_with("not fhir")));
        assert!(got.is_empty());
        let long = format!(
            "{{\"resourceType\":\"Basic\"}}\n{{\"x\":\"{}\"}}\n{{\"resourceType\":\"Basic\"}}\n",
            "a".repeat(MAX_LINE)
        );
        let (_, got) = items("l.ndjson", &long);
        assert_eq!(got.len(), 3);
        assert!(got[1].1.as_ref().is_err_and(|e| e.contains("too large")));
        assert!(got[2].1.is_ok());
    }
}
