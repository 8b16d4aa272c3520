//! The STRUCTURED format (`application/openehr.wt.structured+json`): FLAT's keys as a tree.
//! Pure, no I/O.
//!
//! A FLAT key `vital_signs/blood_pressure/any_event/systolic_blood_pressure|magnitude` is,
//! in STRUCTURED, the object `{"vital_signs": {"blood_pressure": [{"any_event":
//! [{"systolic_blood_pressure": [{"|magnitude": 132, "|unit": "mm[Hg]"}]}]}]}}`: the root
//! node an object, every node below it a list of occurrences (index `n` is FLAT's `:n`), an
//! element's inputs its `|suffix` keys, and a value with no suffix the occurrence itself
//! (`"time": ["2026-12-01T08:55:00Z"]`). `ctx` is an object of its values. Reading one is
//! turning it into FLAT and reading that ([`super::flat::from_flat_in`]), so STRUCTURED
//! input is checked exactly as FLAT and canonical input are; writing one is FLAT's keys
//! put in a tree ([`super::flat::to_flat_in`]).
//!
//! Bounds: [`MAX_DEPTH`] levels, and at most [`MAX_FLAT_KEYS`] values and [`MAX_NODES`]
//! nodes in all.

use serde_json::{Map, Value as Json};

use super::flat::{from_flat_in, to_flat_in, MAX_FLAT_KEYS};
use super::{Meta, OpenEhrError, MAX_DEPTH, MAX_NODES};
use crate::category::Category;
use crate::schema::ExtensionSchema;
use crate::value::Value;

/// A FLAT composition's keys as a STRUCTURED tree.
pub fn flat_to_structured(flat: &Json) -> Json {
    let mut root = Map::new();
    let Some(obj) = flat.as_object() else {
        return Json::Object(root);
    };
    for (k, v) in obj {
        let (path, suffix) = match k.split_once('|') {
            Some((p, s)) => (p, Some(s)),
            None => (k.as_str(), None),
        };
        let segs: Vec<&str> = path.split('/').collect();
        if segs[0] == "ctx" && segs.len() == 2 && suffix.is_none() {
            let ctx = root
                .entry("ctx")
                .or_insert_with(|| Json::Object(Map::new()));
            if let Some(c) = ctx.as_object_mut() {
                c.insert(segs[1].to_owned(), v.clone());
            }
            continue;
        }
        let mut node = root
            .entry(segs[0].to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        for (i, seg) in segs.iter().enumerate().skip(1) {
            let (name, index) = match seg.split_once(':') {
                Some((n, x)) => (n, x.parse::<usize>().unwrap_or(0)),
                None => (*seg, 0),
            };
            let leaf = i == segs.len() - 1;
            let Some(map) = node.as_object_mut() else {
                break;
            };
            let list = map
                .entry(name.to_owned())
                .or_insert_with(|| Json::Array(Vec::new()));
            let Some(items) = list.as_array_mut() else {
                break;
            };
            while items.len() <= index {
                items.push(if leaf && suffix.is_none() {
                    Json::Null
                } else {
                    Json::Object(Map::new())
                });
            }
            if leaf {
                match suffix {
                    None => items[index] = v.clone(),
                    Some(s) => {
                        if let Some(m) = items[index].as_object_mut() {
                            m.insert(format!("|{s}"), v.clone());
                        }
                    }
                }
                break;
            }
            node = &mut items[index];
        }
    }
    Json::Object(root)
}

fn wrong(path: &str, expected: &str, found: &Json) -> OpenEhrError {
    OpenEhrError::WrongType {
        path: super::clip(path),
        expected: expected.into(),
        found: super::kind(found),
    }
}

struct Walk {
    out: Map<String, Json>,
    nodes: usize,
}

impl Walk {
    fn put(&mut self, k: String, v: &Json) -> Result<(), OpenEhrError> {
        if self.out.len() >= MAX_FLAT_KEYS {
            return Err(OpenEhrError::TooComplex {
                what: format!("more than {MAX_FLAT_KEYS} STRUCTURED values"),
            });
        }
        self.out.insert(k, v.clone());
        Ok(())
    }

    fn count(&mut self) -> Result<(), OpenEhrError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(OpenEhrError::TooComplex {
                what: format!("more than {MAX_NODES} STRUCTURED nodes"),
            });
        }
        Ok(())
    }

    /// The children of the node at FLAT path `prefix`.
    fn node(
        &mut self,
        prefix: &str,
        m: &Map<String, Json>,
        depth: usize,
    ) -> Result<(), OpenEhrError> {
        if depth > MAX_DEPTH {
            return Err(OpenEhrError::TooComplex {
                what: format!("STRUCTURED nested deeper than {MAX_DEPTH}"),
            });
        }
        for (k, v) in m {
            self.count()?;
            if let Some(s) = k.strip_prefix('|') {
                self.put(format!("{prefix}|{s}"), v)?;
                continue;
            }
            if k.is_empty() || k.contains(['/', '|', ':']) {
                return Err(OpenEhrError::UnknownPath {
                    archetype: String::new(),
                    path: super::clip(&format!("{prefix}/{k}")),
                    template: String::new(),
                });
            }
            let Some(items) = v.as_array() else {
                return Err(wrong(&format!("{prefix}/{k}"), "a list of occurrences", v));
            };
            for (i, item) in items.iter().enumerate() {
                self.count()?;
                let path = if i == 0 {
                    format!("{prefix}/{k}")
                } else {
                    format!("{prefix}/{k}:{i}")
                };
                match item {
                    Json::Object(c) => self.node(&path, c, depth + 1)?,
                    Json::Array(_) => {
                        return Err(wrong(&path, "an occurrence (an object or a value)", item))
                    }
                    scalar => self.put(path, scalar)?,
                }
            }
        }
        Ok(())
    }
}

/// A STRUCTURED composition as FLAT keys.
///
/// # Errors
/// [`OpenEhrError::WrongType`] for something other than an object at the root, a node
/// that is not a list of occurrences, or a list in a list; [`OpenEhrError::UnknownPath`]
/// for a node name that cannot be a FLAT id; [`OpenEhrError::TooComplex`] past the bounds.
pub fn structured_to_flat(s: &Json) -> Result<Json, OpenEhrError> {
    let Some(root) = s.as_object() else {
        return Err(wrong("/", "a STRUCTURED composition (a JSON object)", s));
    };
    let mut w = Walk {
        out: Map::new(),
        nodes: 0,
    };
    for (k, v) in root {
        w.count()?;
        match (k.as_str(), v) {
            ("ctx", Json::Object(c)) => {
                for (ck, cv) in c {
                    w.count()?;
                    w.put(format!("ctx/{ck}"), cv)?;
                }
            }
            (_, Json::Object(c)) if !k.is_empty() && !k.contains(['/', '|', ':']) => {
                w.node(k, c, 1)?;
            }
            _ => {
                return Err(wrong(
                    &format!("/{k}"),
                    "the template's root node (an object)",
                    v,
                ))
            }
        }
    }
    Ok(Json::Object(w.out))
}

/// An item as a STRUCTURED composition.
///
/// # Errors
/// As [`to_flat_in`].
pub fn to_structured_in(
    exts: &[ExtensionSchema],
    category: &Category,
    body: &Value,
    meta: &Meta,
) -> Result<Json, OpenEhrError> {
    to_flat_in(exts, category, body, meta).map(|f| flat_to_structured(&f))
}

/// Reads a STRUCTURED composition of template `template_id` as a category and body,
/// checked as its FLAT (and canonical) form would be.
///
/// # Errors
/// As [`structured_to_flat`], then as [`from_flat_in`].
pub fn from_structured_in(
    exts: &[ExtensionSchema],
    template_id: &str,
    s: &Json,
) -> Result<(Category, Value), OpenEhrError> {
    from_flat_in(exts, template_id, &structured_to_flat(s)?)
}

#[cfg(test)]
mod tests;
