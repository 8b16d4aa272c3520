//! Reading the elements cophr maps out of untrusted FHIR JSON, checking their JSON types as
//! they are read. Elements not read are not checked (they are kept verbatim).

use serde_json::{Map, Value as Json};

use super::error::{clip, kind, FhirError};
use crate::schema::{is_date_time, parse_date};

/// One element of a resource, with its path for error messages.
#[derive(Debug, Clone)]
pub(crate) struct El<'a> {
    pub path: String,
    pub v: &'a Json,
}

fn wrong(path: &str, expected: &'static str, v: &Json) -> FhirError {
    FhirError::WrongType {
        path: path.to_owned(),
        expected,
        got: kind(v),
    }
}

impl<'a> El<'a> {
    pub fn new(path: impl Into<String>, v: &'a Json) -> Self {
        El {
            path: path.into(),
            v,
        }
    }

    fn obj(&self) -> Result<&'a Map<String, Json>, FhirError> {
        self.v
            .as_object()
            .ok_or_else(|| wrong(&self.path, "an object", self.v))
    }

    /// A child element, if present (`null` counts as absent). `self` must be an object.
    pub fn get(&self, name: &str) -> Result<Option<El<'a>>, FhirError> {
        Ok(self
            .obj()?
            .get(name)
            .filter(|v| !v.is_null())
            .map(|v| El::new(format!("{}.{name}", self.path), v)))
    }

    /// A required child element.
    pub fn req(&self, name: &str) -> Result<El<'a>, FhirError> {
        self.get(name)?.ok_or_else(|| FhirError::Missing {
            path: format!("{}.{name}", self.path),
        })
    }

    /// This element as a string.
    pub fn str(&self) -> Result<&'a str, FhirError> {
        self.v
            .as_str()
            .ok_or_else(|| wrong(&self.path, "a string", self.v))
    }

    /// This element as an object (checked), returned as itself.
    pub fn object(self) -> Result<Self, FhirError> {
        self.obj()?;
        Ok(self)
    }

    /// This element's items; it must be an array.
    pub fn items(&self) -> Result<Vec<El<'a>>, FhirError> {
        let a = self
            .v
            .as_array()
            .ok_or_else(|| wrong(&self.path, "an array", self.v))?;
        Ok(a.iter()
            .enumerate()
            .map(|(i, v)| El::new(format!("{}[{i}]", self.path), v))
            .collect())
    }

    /// A child string, if present.
    pub fn str_of(&self, name: &str) -> Result<Option<&'a str>, FhirError> {
        self.get(name)?.map(|e| e.str()).transpose()
    }

    /// A required child string, not blank.
    pub fn req_str(&self, name: &str) -> Result<&'a str, FhirError> {
        let e = self.req(name)?;
        let s = e.str()?;
        if s.trim().is_empty() {
            return Err(FhirError::Missing { path: e.path });
        }
        Ok(s)
    }

    /// A child array's items (absent: none).
    pub fn list(&self, name: &str) -> Result<Vec<El<'a>>, FhirError> {
        match self.get(name)? {
            Some(e) => e.items(),
            None => Ok(Vec::new()),
        }
    }

    /// A child array that must have at least one item.
    pub fn req_list(&self, name: &str) -> Result<Vec<El<'a>>, FhirError> {
        let items = self.req(name)?.items()?;
        if items.is_empty() {
            return Err(FhirError::Missing {
                path: format!("{}.{name}[0]", self.path),
            });
        }
        Ok(items)
    }

    /// The first item of a child array, if any.
    pub fn first(&self, name: &str) -> Result<Option<El<'a>>, FhirError> {
        Ok(self.list(name)?.into_iter().next())
    }

    /// A child number, if present.
    pub fn num_of(&self, name: &str) -> Result<Option<&'a serde_json::Number>, FhirError> {
        match self.get(name)? {
            Some(e) => match e.v {
                Json::Number(n) => Ok(Some(n)),
                other => Err(wrong(&e.path, "a number", other)),
            },
            None => Ok(None),
        }
    }

    /// A child boolean, if present.
    pub fn bool_of(&self, name: &str) -> Result<Option<bool>, FhirError> {
        match self.get(name)? {
            Some(e) => {
                e.v.as_bool()
                    .map(Some)
                    .ok_or_else(|| wrong(&e.path, "a boolean", e.v))
            }
            None => Ok(None),
        }
    }

    /// A child FHIR `date` or `dateTime` (checked), if present.
    pub fn date_of(&self, name: &str) -> Result<Option<&'a str>, FhirError> {
        let Some(e) = self.get(name)? else {
            return Ok(None);
        };
        let s = e.str()?;
        if parse_date(s).is_some() || (s.as_bytes().get(10) == Some(&b'T') && is_date_time(s)) {
            Ok(Some(s))
        } else {
            Err(FhirError::BadValue {
                path: e.path,
                value: clip(s),
                reason: "not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or \
                         YYYY-MM-DDThh:mm:ss with a time zone)",
            })
        }
    }

    /// A child code (a string without surrounding or repeated whitespace), if present.
    pub fn code_of(&self, name: &str) -> Result<Option<&'a str>, FhirError> {
        let Some(e) = self.get(name)? else {
            return Ok(None);
        };
        let s = e.str()?;
        if s.is_empty() || s.trim() != s || s.contains("  ") || s.chars().any(char::is_control) {
            return Err(FhirError::BadValue {
                path: e.path,
                value: clip(s),
                reason: "not a FHIR code",
            });
        }
        Ok(Some(s))
    }

    /// A required child code.
    pub fn req_code(&self, name: &str) -> Result<&'a str, FhirError> {
        self.code_of(name)?.ok_or_else(|| FhirError::Missing {
            path: format!("{}.{name}", self.path),
        })
    }
}

/// One coding: `(system, code, display)`.
pub(crate) type Coding = (Option<String>, Option<String>, Option<String>);

/// The codings of a CodeableConcept.
pub(crate) fn codings(cc: &El<'_>) -> Result<Vec<Coding>, FhirError> {
    let cc = cc.clone().object()?;
    let mut out = Vec::new();
    for c in cc.list("coding")? {
        let c = c.object()?;
        out.push((
            c.str_of("system")?.map(str::to_owned),
            c.str_of("code")?.map(str::to_owned),
            c.str_of("display")?.map(str::to_owned),
        ));
    }
    Ok(out)
}

/// The best text for a CodeableConcept: its `text`, else a coding's `display`, else a
/// coding's `code`.
pub(crate) fn concept_text(cc: &El<'_>) -> Result<Option<String>, FhirError> {
    let cc = cc.clone().object()?;
    if let Some(t) = cc.str_of("text")?.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.to_owned()));
    }
    let cs = codings(&cc)?;
    Ok(cs
        .iter()
        .find_map(|(_, _, d)| d.clone().filter(|d| !d.trim().is_empty()))
        .or_else(|| cs.iter().find_map(|(_, c, _)| c.clone())))
}

/// The text of a child CodeableConcept, if present.
pub(crate) fn concept_of(e: &El<'_>, name: &str) -> Result<Option<String>, FhirError> {
    match e.get(name)? {
        Some(cc) => concept_text(&cc),
        None => Ok(None),
    }
}

/// The text of the first item of a child array of CodeableConcepts.
pub(crate) fn first_concept(e: &El<'_>, name: &str) -> Result<Option<String>, FhirError> {
    for cc in e.list(name)? {
        if let Some(t) = concept_text(&cc)? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Whether a child CodeableConcept (or array of them) has a coding with one of `codes`.
pub(crate) fn has_code(e: &El<'_>, name: &str, codes: &[&str]) -> Result<bool, FhirError> {
    let Some(c) = e.get(name)? else {
        return Ok(false);
    };
    let concepts = if c.v.is_array() { c.items()? } else { vec![c] };
    for cc in concepts {
        for (_, code, _) in codings(&cc)? {
            if code.is_some_and(|code| codes.contains(&code.as_str())) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The text of a Reference: its `display`, else its `reference`.
pub(crate) fn reference_text(r: &El<'_>) -> Result<Option<String>, FhirError> {
    let r = r.clone().object()?;
    let display = r.str_of("display")?;
    let reference = r.str_of("reference")?;
    Ok(display.or(reference).map(str::to_owned))
}

/// Checks a child Reference (an object; `reference` and `display` strings if present).
pub(crate) fn check_reference(e: &El<'_>, name: &str, required: bool) -> Result<(), FhirError> {
    match e.get(name)? {
        Some(r) => reference_text(&r).map(drop),
        None if required => Err(FhirError::Missing {
            path: format!("{}.{name}", e.path),
        }),
        None => Ok(()),
    }
}

/// The text of a HumanName: `text`, else given names and family.
pub(crate) fn human_name(n: &El<'_>) -> Result<Option<String>, FhirError> {
    let n = n.clone().object()?;
    if let Some(t) = n.str_of("text")?.filter(|t| !t.trim().is_empty()) {
        return Ok(Some(t.to_owned()));
    }
    let mut parts = Vec::new();
    for g in n.list("given")? {
        parts.push(g.str()?.to_owned());
    }
    if let Some(f) = n.str_of("family")? {
        parts.push(f.to_owned());
    }
    let s = parts.join(" ");
    Ok((!s.trim().is_empty()).then_some(s))
}

/// A Quantity's value and unit (the UCUM `code` when given, else `unit`).
pub(crate) fn quantity(q: &El<'_>) -> Result<Option<(f64, Option<String>)>, FhirError> {
    let q = q.clone().object()?;
    let unit = match q.str_of("code")? {
        Some(c) => Some(c.to_owned()),
        None => q.str_of("unit")?.map(str::to_owned),
    };
    Ok(q.num_of("value")?
        .and_then(serde_json::Number::as_f64)
        .map(|v| (v, unit)))
}

/// A Quantity for display: `value unit` (the human `unit` when given).
pub(crate) fn quantity_text(q: &El<'_>) -> Result<Option<String>, FhirError> {
    let q = q.clone().object()?;
    let value = q.num_of("value")?;
    let unit = match q.str_of("unit")? {
        Some(u) => Some(u),
        None => q.str_of("code")?,
    };
    let cmp = q.str_of("comparator")?.unwrap_or("");
    Ok(value.map(|v| match unit {
        Some(u) => format!("{cmp}{v} {u}"),
        None => format!("{cmp}{v}"),
    }))
}

/// Checks a FHIR `id` (1 to 64 of `A-Z a-z 0-9 - .`).
pub(crate) fn check_id(e: &El<'_>) -> Result<(), FhirError> {
    let Some(id) = e.get("id")? else {
        return Ok(());
    };
    let s = id.str()?;
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(FhirError::BadValue {
            path: id.path,
            value: clip(s),
            reason: "not a FHIR id (1 to 64 letters, digits, `-` or `.`)",
        })
    }
}
