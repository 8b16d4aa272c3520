//! Versions and contributions: an item's entry versions as openEHR ORIGINAL_VERSIONs of one
//! VERSIONED_COMPOSITION, and CONTRIBUTIONs in and out. Pure, no I/O.
//!
//! A composition version is an entry version: version `n` of an item is its `n`th create or
//! amend in effect, and a logical delete is one more version (lifecycle `deleted`, no
//! data). Nothing is overwritten: every version stays readable by its uid.
//!
//! A CONTRIBUTION is the versions one author committed at one time: cophr writes the
//! versions of one contribution as entries of the same author and time, so a
//! contribution is found again (on every replica) as the group of versions sharing
//! author and time. Its uid is derived from the smallest entry id in the group
//! ([`contribution_uid`]).
//!
//! [`parse_contribution`] reads a CONTRIBUTION request (`POST /ehr/{ehr_id}/contribution`)
//! into [`Change`]s, bounded by [`MAX_CONTRIBUTION_BYTES`] and [`MAX_CONTRIBUTION_VERSIONS`];
//! every composition in it is checked as [`super::from_composition`] checks one, so a
//! contribution with any bad version is refused whole.

use serde_json::{json, Value as Json};

use super::{
    clip, code_phrase, from_composition_in, kind, parse_uid, uuid_of, Composer, OpenEhrError, Uid,
    SYSTEM_ID,
};
use crate::category::Category;
use crate::ids::EntryId;
use crate::schema::ExtensionSchema;
use crate::value::Value;

/// Largest CONTRIBUTION request accepted, in bytes of JSON.
pub const MAX_CONTRIBUTION_BYTES: usize = 1024 * 1024;
/// Most versions in one CONTRIBUTION.
pub const MAX_CONTRIBUTION_VERSIONS: usize = 16;

const CONTRIBUTION_CONTEXT: &str = "cophr 2026 openEHR contribution";

/// The uid of the contribution whose smallest entry id is `first`.
pub fn contribution_uid(first: &EntryId) -> String {
    uuid_of(CONTRIBUTION_CONTEXT, first.as_bytes())
}

/// What a version did (openEHR terminology, audit change type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// 249 creation: the item's create.
    Creation,
    /// 251 modification: an amend.
    Modification,
    /// 523 deleted: the logical delete.
    Deleted,
}

impl ChangeType {
    /// The openEHR code.
    pub fn code(self) -> &'static str {
        match self {
            ChangeType::Creation => "249",
            ChangeType::Modification => "251",
            ChangeType::Deleted => "523",
        }
    }

    /// Its rubric.
    pub fn text(self) -> &'static str {
        match self {
            ChangeType::Creation => "creation",
            ChangeType::Modification => "modification",
            ChangeType::Deleted => "deleted",
        }
    }
}

/// Who committed a version, when, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The author.
    pub committer: Composer,
    /// When (RFC 3339): the entry's time.
    pub time: String,
    /// What it did.
    pub change: ChangeType,
}

fn coded(value: &str, code: &str) -> Json {
    json!({"_type": "DV_CODED_TEXT", "value": value, "defining_code": code_phrase("openehr", code)})
}

/// An AUDIT_DETAILS.
pub fn audit_json(a: &Audit) -> Json {
    json!({
        "_type": "AUDIT_DETAILS",
        "system_id": SYSTEM_ID,
        "time_committed": {"_type": "DV_DATE_TIME", "value": a.time},
        "change_type": coded(a.change.text(), a.change.code()),
        "committer": {
            "_type": "PARTY_IDENTIFIED",
            "name": a.committer.name.clone().unwrap_or_else(|| a.committer.actor.clone()),
            "external_ref": {"_type": "PARTY_REF",
                             "id": {"_type": "GENERIC_ID", "value": a.committer.actor, "scheme": "cophr-actor"},
                             "namespace": "cophr", "type": "PERSON"}
        },
    })
}

/// One version of a composition (an ORIGINAL_VERSION): `data` is `None` for the delete.
pub fn version_json(
    uid: &str,
    preceding: Option<&str>,
    contribution: &str,
    audit: &Audit,
    data: Option<Json>,
) -> Json {
    let (state, code) = match data {
        Some(_) => ("complete", "532"),
        None => ("deleted", "523"),
    };
    let mut v = json!({
        "_type": "ORIGINAL_VERSION",
        "uid": {"_type": "OBJECT_VERSION_ID", "value": uid},
        "contribution": {"id": {"_type": "HIER_OBJECT_ID", "value": contribution},
                         "namespace": "local", "type": "CONTRIBUTION"},
        "commit_audit": audit_json(audit),
        "lifecycle_state": coded(state, code),
    });
    if let Some(p) = preceding {
        v["preceding_version_uid"] = json!({"_type": "OBJECT_VERSION_ID", "value": p});
    }
    if let Some(d) = data {
        v["data"] = d;
    }
    v
}

/// The VERSIONED_COMPOSITION of an item (`object`: its object id).
pub fn versioned_composition_json(object: &str, ehr_id: &str, created: &str) -> Json {
    json!({
        "_type": "VERSIONED_COMPOSITION",
        "uid": {"_type": "HIER_OBJECT_ID", "value": object},
        "owner_id": {"_type": "HIER_OBJECT_ID", "value": ehr_id},
        "time_created": {"_type": "DV_DATE_TIME", "value": created},
    })
}

/// A REVISION_HISTORY: one item per version, oldest first, each with its audit.
pub fn revision_history_json(items: &[(String, Audit)]) -> Json {
    Json::Array(
        items
            .iter()
            .map(|(uid, a)| {
                json!({
                    "version_id": {"_type": "OBJECT_VERSION_ID", "value": uid},
                    "audits": [audit_json(a)],
                })
            })
            .collect(),
    )
}

/// A CONTRIBUTION: its uid, the version uids it holds, and its audit (the first
/// version's committer and time; change type creation when every version is one,
/// else modification, or deleted when every version is a delete).
pub fn contribution_json(uid: &str, versions: &[String], audit: &Audit) -> Json {
    json!({
        "_type": "CONTRIBUTION",
        "uid": {"_type": "HIER_OBJECT_ID", "value": uid},
        "versions": versions.iter().map(|v| json!({
            "id": {"_type": "OBJECT_VERSION_ID", "value": v},
            "namespace": "local",
            "type": "COMPOSITION",
        })).collect::<Vec<_>>(),
        "audit": audit_json(audit),
    })
}

/// One version of a CONTRIBUTION request.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new composition (change type creation): a create.
    Create {
        /// Its category.
        category: Category,
        /// Its body.
        body: Value,
    },
    /// A new version of an existing composition (amendment or modification): an amend.
    Modify {
        /// The version it follows (must be the latest).
        preceding: Uid,
        /// Its category (must be the composition's).
        category: Category,
        /// The new body.
        body: Value,
    },
    /// The logical delete (change type deleted, or lifecycle state deleted).
    Delete {
        /// The version it follows (must be the latest).
        preceding: Uid,
    },
}

impl Change {
    /// The version it follows, if any.
    pub fn preceding(&self) -> Option<&Uid> {
        match self {
            Change::Create { .. } => None,
            Change::Modify { preceding, .. } | Change::Delete { preceding } => Some(preceding),
        }
    }
}

fn in_version(index: usize, error: OpenEhrError) -> OpenEhrError {
    OpenEhrError::InVersion {
        index,
        error: Box::new(error),
    }
}

/// A coded text's code (or, without one, its value), lower case.
fn code_or_value(v: &Json) -> Option<String> {
    v["defining_code"]["code_string"]
        .as_str()
        .or_else(|| v["value"].as_str())
        .map(str::to_ascii_lowercase)
}

/// Reads a CONTRIBUTION request's JSON bytes into its changes, in order.
///
/// # Errors
/// [`OpenEhrError::TooLarge`] over [`MAX_CONTRIBUTION_BYTES`], [`OpenEhrError::Json`],
/// [`OpenEhrError::TooComplex`] over [`MAX_CONTRIBUTION_VERSIONS`] versions; a missing
/// or unknown change type, a creation with a preceding version, a change without one
/// or without data, the same composition twice, a preceding version uid that is not
/// cophr's; every refusal of [`super::from_composition`] (inside [`OpenEhrError::InVersion`]).
pub fn parse_contribution(bytes: &[u8]) -> Result<Vec<Change>, OpenEhrError> {
    parse_contribution_in(&[], bytes)
}

/// [`parse_contribution`], compositions of extensions with a schema in `exts` included.
///
/// # Errors
/// As [`parse_contribution`].
pub fn parse_contribution_in(
    exts: &[ExtensionSchema],
    bytes: &[u8],
) -> Result<Vec<Change>, OpenEhrError> {
    if bytes.len() > MAX_CONTRIBUTION_BYTES {
        return Err(OpenEhrError::TooLarge { got: bytes.len() });
    }
    let c: Json = serde_json::from_slice(bytes).map_err(|e| OpenEhrError::Json(e.to_string()))?;
    if !c.is_object() {
        return Err(OpenEhrError::WrongType {
            path: "/".into(),
            expected: "CONTRIBUTION".into(),
            found: kind(&c),
        });
    }
    let versions = match &c["versions"] {
        Json::Array(a) if !a.is_empty() => a,
        Json::Array(_) | Json::Null => {
            return Err(OpenEhrError::MissingMandatory {
                path: "/versions".into(),
            })
        }
        other => {
            return Err(OpenEhrError::WrongType {
                path: "/versions".into(),
                expected: "an array of ORIGINAL_VERSION".into(),
                found: kind(other),
            })
        }
    };
    if versions.len() > MAX_CONTRIBUTION_VERSIONS {
        return Err(OpenEhrError::TooComplex {
            what: format!(
                "{} versions in one contribution (at most {MAX_CONTRIBUTION_VERSIONS})",
                versions.len()
            ),
        });
    }
    let mut out: Vec<Change> = Vec::with_capacity(versions.len());
    for (i, v) in versions.iter().enumerate() {
        let change = parse_version(exts, v).map_err(|e| in_version(i, e))?;
        if let Some(p) = change.preceding() {
            if out
                .iter()
                .any(|o| o.preceding().is_some_and(|q| q.object == p.object))
            {
                return Err(in_version(
                    i,
                    OpenEhrError::WrongType {
                        path: "/preceding_version_uid".into(),
                        expected: "a composition not already changed in this contribution".into(),
                        found: clip(&p.object),
                    },
                ));
            }
        }
        out.push(change);
    }
    Ok(out)
}

fn parse_version(exts: &[ExtensionSchema], v: &Json) -> Result<Change, OpenEhrError> {
    if !v.is_object() {
        return Err(OpenEhrError::WrongType {
            path: "/".into(),
            expected: "ORIGINAL_VERSION".into(),
            found: kind(v),
        });
    }
    let change = v["commit_audit"]["change_type"]
        .as_object()
        .and_then(|_| code_or_value(&v["commit_audit"]["change_type"]))
        .ok_or_else(|| OpenEhrError::MissingMandatory {
            path: "/commit_audit/change_type".into(),
        })?;
    let lifecycle_deleted = code_or_value(&v["lifecycle_state"])
        .is_some_and(|s| matches!(s.as_str(), "deleted" | "523" | "533"));
    let deleting = matches!(change.as_str(), "523" | "deleted") || lifecycle_deleted;
    let modifying = matches!(
        change.as_str(),
        "250" | "251" | "amendment" | "modification"
    );
    let creating = matches!(change.as_str(), "249" | "creation");
    if !(deleting || modifying || creating) {
        return Err(OpenEhrError::WrongType {
            path: "/commit_audit/change_type".into(),
            expected: "creation (249), amendment (250), modification (251) or deleted (523)".into(),
            found: clip(&change),
        });
    }
    let preceding = match &v["preceding_version_uid"] {
        Json::Null => None,
        p => {
            let s = p["value"].as_str().or_else(|| p.as_str()).ok_or_else(|| {
                OpenEhrError::WrongType {
                    path: "/preceding_version_uid".into(),
                    expected: "OBJECT_VERSION_ID".into(),
                    found: kind(p),
                }
            })?;
            let uid = parse_uid(s.trim())
                .filter(|u| u.version.is_some())
                .ok_or_else(|| OpenEhrError::WrongType {
                    path: "/preceding_version_uid".into(),
                    expected: format!("a version uid {{uuid}}::{SYSTEM_ID}::{{n}}"),
                    found: clip(s),
                })?;
            Some(uid)
        }
    };
    if deleting {
        let preceding = preceding.ok_or_else(|| OpenEhrError::MissingMandatory {
            path: "/preceding_version_uid".into(),
        })?;
        return Ok(Change::Delete { preceding });
    }
    let data = &v["data"];
    if data.is_null() {
        return Err(OpenEhrError::MissingMandatory {
            path: "/data".into(),
        });
    }
    let (category, body) = from_composition_in(exts, data)?;
    match (creating, preceding) {
        (true, None) => Ok(Change::Create { category, body }),
        (true, Some(_)) => Err(OpenEhrError::WrongType {
            path: "/preceding_version_uid".into(),
            expected: "none for a creation".into(),
            found: "a preceding version".into(),
        }),
        (false, Some(preceding)) => Ok(Change::Modify {
            preceding,
            category,
            body,
        }),
        (false, None) => Err(OpenEhrError::MissingMandatory {
            path: "/preceding_version_uid".into(),
        }),
    }
}

#[cfg(test)]
mod tests;
