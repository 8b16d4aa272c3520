//! openEHR in and out: cophr's core categories as openEHR COMPOSITIONs in canonical JSON
//! (ITS-REST 1.0.3, RM 1.0.4), both ways. Pure, no I/O.
//!
//! # Compositions
//! One composition per item: the category's template ([`Template`], ids
//! `cophr.<category>.v1`) names the composition's archetype and the entry archetypes it
//! holds; each body field sits at an archetype path with an RM data type ([`FieldMap`]).
//! [`to_composition`] writes an item's body as a composition (with `uid`, `composer`, and
//! `context.start_time` from [`Meta`]); [`from_composition`] reads a composition back to a
//! category and body, checked by the category's schema. A composition read and written
//! again reads back to the same body (tested per template). Vital signs hold one
//! OBSERVATION per measurement present (blood pressure, pulse, body temperature,
//! respiration, pulse oximetry, blood glucose as a laboratory analyte); their event time
//! is the body's `measured-at` (the item's creation time when it has none, so a
//! composition always carries one, and reading it gives `measured-at`).
//!
//! Input is refused, with nothing stored, when larger than [`MAX_COMPOSITION_BYTES`],
//! deeper than [`MAX_DEPTH`], with more than [`MAX_NODES`] JSON values or more than
//! [`MAX_CONTENT`] content entries, not a cophr template, holding an archetype its template
//! does not, an element at a path the template does not define, a mandatory element
//! missing, a value of the wrong RM type, or a body the category's schema refuses
//! ([`OpenEhrError`]).
//!
//! # Identifiers
//! - `ehr_id` ([`ehr_id`]): the UUID made of the first 16 bytes of
//!   `BLAKE3::derive_key("cophr 2026 openEHR ehr_id", record id bytes)` with the version
//!   nibble set to 8 and the RFC 9562 variant: stable, the same on every replica, and
//!   derived from nothing but the record id.
//! - A composition's versioned object id ([`item_uuid`]): the same over the item's root
//!   entry id (context `"cophr 2026 openEHR composition"`); a version's uid
//!   ([`version_uid`]) is `{item uuid}::{SYSTEM_ID}::{n}`, n the version count as the fold
//!   and the item's history give it (1 for the create, one more for each amend).

pub mod aql;
mod error;
pub mod ext;
pub mod flat;
pub mod structured;
mod tables;
pub mod versions;

use serde_json::{json, Map, Value as Json};

pub use error::OpenEhrError;
pub use tables::{
    template, template_for, templates, Dv, EntryDef, FieldMap, Template, ABOUT_ME,
    ADVERSE_REACTION_RISK, ALCOHOL_CONSUMPTION_SUMMARY, ALERT, BLOOD_PRESSURE, BODY_MASS_INDEX,
    BODY_SURFACE_AREA, BODY_TEMPERATURE, BODY_WEIGHT, COMMUNICATION_CAPABILITY, EDUCATION_SUMMARY,
    FAMILY_HISTORY, HEAD_CIRCUMFERENCE, HEIGHT, HIP_CIRCUMFERENCE, HOUSING_SUMMARY,
    INVESTIGATION_RESULT, ISM_STATES, LAB_RESULT, MEDICATION_ACTION, MEDICATION_ORDER,
    MEDICATION_SUMMARY, OCCUPATION_SUMMARY, PROBLEM_DIAGNOSIS, PROCEDURE, PULSE, PULSE_OXIMETRY,
    RELEVANT_CONTACT, RESPIRATION, TOBACCO_SMOKING_SUMMARY, WAIST_CIRCUMFERENCE,
};

use crate::category::Category;
use crate::ids::{EntryId, RecordId};
use crate::schema::{self, CategorySchema, ExtensionSchema};
use crate::value::Value;

/// Largest composition accepted, in bytes of JSON.
pub const MAX_COMPOSITION_BYTES: usize = 256 * 1024;
/// Deepest JSON nesting accepted in a composition.
pub const MAX_DEPTH: usize = 32;
/// Most JSON values (objects, arrays, scalars) accepted in a composition.
pub const MAX_NODES: usize = 20_000;
/// Most content entries in one composition.
pub const MAX_CONTENT: usize = 16;
/// The `system_id` of every version uid: the same on every replica, so that a version's
/// uid names the same version wherever it is read.
pub const SYSTEM_ID: &str = "cophr";
/// The namespace of a record's id as an EHR subject (`GET /ehr?subject_namespace=`).
pub const SUBJECT_NAMESPACE: &str = "cophr";
/// The RM release written.
pub const RM_VERSION: &str = "1.0.4";

const EHR_ID_CONTEXT: &str = "cophr 2026 openEHR ehr_id";
const ITEM_CONTEXT: &str = "cophr 2026 openEHR composition";
const STATUS_CONTEXT: &str = "cophr 2026 openEHR ehr_status";

fn uuid_of(context: &str, bytes: &[u8]) -> String {
    let h = blake3::derive_key(context, bytes);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The record's `ehr_id` (see the module docs).
pub fn ehr_id(record: &RecordId) -> String {
    uuid_of(EHR_ID_CONTEXT, record.as_bytes())
}

/// The versioned object id of the composition an item is (its root entry id).
pub fn item_uuid(item: &EntryId) -> String {
    uuid_of(ITEM_CONTEXT, item.as_bytes())
}

/// The uid of version `n` (from 1) of an item's composition.
pub fn version_uid(item: &EntryId, n: usize) -> String {
    format!("{}::{SYSTEM_ID}::{n}", item_uuid(item))
}

/// A composition id as a client gives it: an object id alone (the latest version) or a
/// version's uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uid {
    /// The versioned object's UUID (lower case).
    pub object: String,
    /// The version, when a version uid was given.
    pub version: Option<usize>,
}

/// Whether `s` is a UUID written `8-4-4-4-12` in hex.
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses an object id (`{uuid}`, or `{uuid}::{system}`) or a version uid
/// `{uuid}::{system}::{n}`. `None` when it is neither, or names another system than
/// [`SYSTEM_ID`].
pub fn parse_uid(s: &str) -> Option<Uid> {
    let parts: Vec<&str> = s.split("::").collect();
    let object = parts.first()?.to_ascii_lowercase();
    if !is_uuid(&object) {
        return None;
    }
    match parts.as_slice() {
        [_] => Some(Uid {
            object,
            version: None,
        }),
        // `{uuid}::{system}`, the versioned object id as some clients write it.
        [_, system] if *system == SYSTEM_ID => Some(Uid {
            object,
            version: None,
        }),
        [_, system, n] if *system == SYSTEM_ID => {
            let n: usize = n.parse().ok().filter(|n| *n >= 1)?;
            Some(Uid {
                object,
                version: Some(n),
            })
        }
        _ => None,
    }
}

/// The EHR of a record (`GET /ehr/{ehr_id}`); `created` is the record's genesis time,
/// RFC 3339.
pub fn ehr_json(record: &RecordId, created: &str) -> Json {
    json!({
        "system_id": {"value": SYSTEM_ID},
        "ehr_id": {"value": ehr_id(record)},
        "ehr_status": {
            "id": {"_type": "OBJECT_VERSION_ID", "value": ehr_status_uid(record)},
            "namespace": "local",
            "type": "EHR_STATUS"
        },
        "ehr_access": {
            "id": {"_type": "OBJECT_VERSION_ID",
                   "value": format!("{}::{SYSTEM_ID}::1", uuid_of("cophr 2026 openEHR ehr_access", record.as_bytes()))},
            "namespace": "local",
            "type": "EHR_ACCESS"
        },
        "time_created": {"_type": "DV_DATE_TIME", "value": created},
    })
}

fn ehr_status_uid(record: &RecordId) -> String {
    format!(
        "{}::{SYSTEM_ID}::1",
        uuid_of(STATUS_CONTEXT, record.as_bytes())
    )
}

/// The EHR_STATUS of a record: its subject is the record's patient (the record id in
/// [`SUBJECT_NAMESPACE`]), queryable and modifiable.
pub fn ehr_status_json(record: &RecordId) -> Json {
    json!({
        "_type": "EHR_STATUS",
        "archetype_node_id": "openEHR-EHR-EHR_STATUS.generic.v1",
        "name": {"_type": "DV_TEXT", "value": "EHR Status"},
        "uid": {"_type": "OBJECT_VERSION_ID", "value": ehr_status_uid(record)},
        "subject": {
            "_type": "PARTY_SELF",
            "external_ref": {
                "_type": "PARTY_REF",
                "id": {"_type": "GENERIC_ID", "value": record.to_string(), "scheme": "cophr-record"},
                "namespace": SUBJECT_NAMESPACE,
                "type": "PERSON"
            }
        },
        "is_queryable": true,
        "is_modifiable": true,
    })
}

/// Who wrote a version: shown as the composition's `composer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composer {
    /// The author's name (their published profile), if any.
    pub name: Option<String>,
    /// The author's actor id.
    pub actor: String,
}

/// What a composition carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The version's uid ([`version_uid`]), if it has one yet.
    pub uid: Option<String>,
    /// The item's creation time, RFC 3339 (`context.start_time`, and the event time of
    /// observations with no time field).
    pub start_time: String,
    /// The version's author.
    pub composer: Composer,
}

fn text(s: &str) -> Json {
    json!({"_type": "DV_TEXT", "value": s})
}

fn code_phrase(terminology: &str, code: &str) -> Json {
    json!({"_type": "CODE_PHRASE",
           "terminology_id": {"_type": "TERMINOLOGY_ID", "value": terminology},
           "code_string": code})
}

fn archetyped(archetype: &str, template: Option<&str>) -> Json {
    let mut a = json!({"_type": "ARCHETYPED",
                       "archetype_id": {"_type": "ARCHETYPE_ID", "value": archetype},
                       "rm_version": RM_VERSION});
    if let Some(t) = template {
        a["template_id"] = json!({"_type": "TEMPLATE_ID", "value": t});
    }
    a
}

/// The RM type a node under `attr` of a `parent` node has (`last`: the path's end).
fn child_type(parent: &str, attr: &str, last: bool) -> &'static str {
    match (parent, attr) {
        ("OBSERVATION", "data") => "HISTORY",
        ("HISTORY", "events") => "POINT_EVENT",
        ("INSTRUCTION", "activities") => "ACTIVITY",
        (_, "items") if last => "ELEMENT",
        (_, "items") => "CLUSTER",
        _ => "ITEM_TREE",
    }
}

fn is_list(attr: &str) -> bool {
    matches!(attr, "events" | "items" | "activities" | "content")
}

fn node_name(ty: &str, node: &str) -> &'static str {
    match (ty, node) {
        ("HISTORY", _) => "History",
        ("POINT_EVENT", _) => "Any event",
        ("ACTIVITY", _) => "Order",
        ("CLUSTER", "openEHR-EHR-CLUSTER.laboratory_test_analyte.v1") => {
            "Laboratory analyte result"
        }
        ("CLUSTER", "openEHR-EHR-CLUSTER.problem_qualifier.v1") => "Problem/Diagnosis qualifier",
        ("CLUSTER", "at0009") => "Reaction event",
        ("CLUSTER", "at0113") => "Order details",
        ("CLUSTER", _) => "Cluster",
        ("ITEM_TREE", _) => "Tree",
        _ => "Item",
    }
}

/// The steps of an archetype path: `(attribute, node id)`.
fn steps(path: &str) -> Vec<(&str, &str)> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let (attr, rest) = s.split_once('[')?;
            Some((attr, rest.strip_suffix(']')?))
        })
        .collect()
}

fn new_node(ty: &str, node: &str, name: &str) -> Json {
    let mut n = json!({"_type": ty, "name": text(name), "archetype_node_id": node});
    if node.starts_with("openEHR-") {
        n["archetype_details"] = archetyped(node, None);
    }
    match ty {
        "ACTIVITY" => {
            n["timing"] = json!({"_type": "DV_PARSABLE", "value": "R1", "formalism": "timing"});
            n["action_archetype_id"] = json!("openEHR-EHR-ACTION\\.medication\\.v1");
        }
        "ITEM_TREE" | "CLUSTER" => n["items"] = json!([]),
        "HISTORY" => n["events"] = json!([]),
        _ => {}
    }
    n
}

/// Puts `leaf` (an ELEMENT) at `path` under `root` (of RM type `root_type`), making the
/// nodes between.
fn insert(root: &mut Json, root_type: &str, path: &str, leaf: Json) {
    let st = steps(path);
    let mut cur = root;
    let mut ty = root_type.to_owned();
    for (i, (attr, node)) in st.iter().enumerate() {
        let last = i + 1 == st.len();
        let cty = child_type(&ty, attr, last);
        let made = if last {
            leaf.clone()
        } else {
            new_node(cty, node, node_name(cty, node))
        };
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        let slot = if is_list(attr) {
            let list = obj.entry(*attr).or_insert_with(|| json!([]));
            let Some(arr) = list.as_array_mut() else {
                return;
            };
            let pos = match arr
                .iter()
                .position(|c| c["archetype_node_id"].as_str() == Some(node))
            {
                Some(p) => p,
                None => {
                    arr.push(made);
                    arr.len() - 1
                }
            };
            &mut arr[pos]
        } else {
            obj.entry(*attr).or_insert(made)
        };
        cur = slot;
        ty = cty.to_owned();
    }
}

fn walk<'a>(root: &'a Json, path: &str) -> Option<&'a Json> {
    let mut cur = root;
    for (attr, node) in steps(path) {
        let child = cur.get(attr)?;
        cur = match child {
            Json::Array(a) => a
                .iter()
                .find(|c| c["archetype_node_id"].as_str() == Some(node))?,
            Json::Object(_) if child["archetype_node_id"].as_str() == Some(node) => child,
            _ => return None,
        };
    }
    Some(cur)
}

fn dv_value(dv: Dv, v: &Json) -> Json {
    match dv {
        Dv::Text => text(v.as_str().unwrap_or_default()),
        Dv::Coded => {
            let s = v.as_str().unwrap_or_default();
            json!({"_type": "DV_CODED_TEXT", "value": s, "defining_code": code_phrase("cophr", s)})
        }
        Dv::Quantity => {
            json!({"_type": "DV_QUANTITY", "magnitude": v["value"], "units": v["unit"]})
        }
        Dv::Percent => {
            json!({"_type": "DV_PROPORTION", "numerator": v["value"], "denominator": 100, "type": 2})
        }
        Dv::Date => json!({"_type": "DV_DATE", "value": v}),
        Dv::DateTime => json!({"_type": "DV_DATE_TIME", "value": v}),
        Dv::Count => json!({"_type": "DV_COUNT", "magnitude": v}),
        Dv::Boolean => json!({"_type": "DV_BOOLEAN", "value": v}),
        Dv::Decimal => json!({"_type": "DV_QUANTITY", "magnitude": v, "units": "1"}),
        Dv::Lines => {
            let lines: Vec<&str> = v
                .as_array()
                .map(|a| a.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default();
            text(&lines.join("\n"))
        }
    }
}

/// A field's value as its element's: [`dv_value`], a template's local code as
/// `local::atNNNN` with the body's code as its text.
fn field_value(f: &FieldMap<'_>, v: &Json) -> Json {
    if f.dv == Dv::Coded && !f.codes.is_empty() {
        let s = v.as_str().unwrap_or_default();
        if let Some((_, at)) = f.codes.iter().find(|(c, _)| *c == s) {
            return json!({"_type": "DV_CODED_TEXT", "value": s,
                          "defining_code": code_phrase("local", at)});
        }
    }
    dv_value(f.dv, v)
}

/// A template's local coded text read back as the body's code: by its at-code (its text
/// is not relied on), else by its text.
fn local_code(f: &FieldMap<'_>, path: &str, element: &Json) -> Result<Option<Json>, OpenEhrError> {
    let v = &element["value"];
    let code = &v["defining_code"]["code_string"];
    if let Some(at) = code.as_str() {
        if let Some((c, _)) = f.codes.iter().find(|(_, a)| *a == at) {
            return Ok(Some(Json::String((*c).to_owned())));
        }
        return Err(wrong(
            &format!("{path}/value/defining_code/code_string"),
            &format!(
                "one of the template's codes ({})",
                f.codes
                    .iter()
                    .map(|(_, a)| *a)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            code,
        ));
    }
    read_value(f.dv, path, element)
}

/// Runs `f` on the template of `category` and the schema its bodies follow: a core
/// template, or the generic template of an extension whose schema is among `exts` (the
/// definitions in effect in the record, [`ext`]). `None` when it has none.
pub fn with_category<R>(
    exts: &[ExtensionSchema],
    category: &Category,
    f: impl FnOnce(&Template<'_>, &CategorySchema<'_>) -> R,
) -> Option<R> {
    if category.is_extension() {
        let def = ext::find(exts, |d| &d.category == category)?;
        return Some(ext::with_template(def, f));
    }
    let t = template_for(category)?;
    let sch = schema::schema(category)?;
    Some(f(t, sch))
}

/// Runs `f` on the template whose id is `id` (as [`with_category`]). An extension's
/// template of an earlier version maps with the version in effect, which accepts every
/// body the earlier one did.
pub fn with_template_id<R>(
    exts: &[ExtensionSchema],
    id: &str,
    f: impl FnOnce(&Template<'_>, &CategorySchema<'_>) -> R,
) -> Option<R> {
    if let Some(t) = template(id) {
        let sch = schema::schema(&t.category)?;
        return Some(f(t, sch));
    }
    let def = ext::find(exts, |d| ext::names_template(d, id))?;
    Some(ext::with_template(def, f))
}

/// Whether a category has a template (core, or an extension with a schema in `exts`).
pub fn is_mapped(exts: &[ExtensionSchema], category: &Category) -> bool {
    with_category(exts, category, |_, _| ()).is_some()
}

/// An item's body as a composition of its category's template.
///
/// # Errors
/// [`OpenEhrError::Unmapped`] for a category with no template; a body its schema refuses.
pub fn to_composition(
    category: &Category,
    body: &Value,
    meta: &Meta,
) -> Result<Json, OpenEhrError> {
    to_composition_in(&[], category, body, meta)
}

/// [`to_composition`], extensions with a schema in `exts` included.
///
/// # Errors
/// As [`to_composition`].
pub fn to_composition_in(
    exts: &[ExtensionSchema],
    category: &Category,
    body: &Value,
    meta: &Meta,
) -> Result<Json, OpenEhrError> {
    with_category(exts, category, |t, sch| compose(t, sch, body, meta))
        .unwrap_or_else(|| Err(OpenEhrError::Unmapped(category.name().into())))
}

fn compose(
    t: &Template<'_>,
    sch: &CategorySchema<'_>,
    body: &Value,
    meta: &Meta,
) -> Result<Json, OpenEhrError> {
    schema::validate_with(sch, body)?;
    let b = body.to_json();
    let time = t
        .time_field
        .and_then(|f| b[f].as_str())
        .unwrap_or(&meta.start_time)
        .to_owned();
    let mut content = Vec::new();
    for e in t.entries {
        let present: Vec<&FieldMap<'_>> =
            e.fields.iter().filter(|f| !b[f.field].is_null()).collect();
        if present.is_empty() {
            continue;
        }
        let mut entry = json!({
            "_type": e.rm_type,
            "name": text(e.name),
            "archetype_node_id": e.archetype,
            "archetype_details": archetyped(e.archetype, None),
            "language": code_phrase("ISO_639-1", "en"),
            "encoding": code_phrase("IANA_character-sets", "UTF-8"),
            "subject": {"_type": "PARTY_SELF"},
        });
        if e.rm_type == "INSTRUCTION" {
            entry["narrative"] = text(b[present[0].field].as_str().unwrap_or_default());
        }
        if e.rm_type == "ACTION" {
            let given = e.state.and_then(|f| b[f].as_str()).unwrap_or("completed");
            let (_, code, rubric) = ISM_STATES
                .iter()
                .find(|s| s.0 == given)
                .copied()
                .unwrap_or(ISM_STATES[0]);
            entry["ism_transition"] = json!({"_type": "ISM_TRANSITION",
                "current_state": {"_type": "DV_CODED_TEXT", "value": rubric,
                                  "defining_code": code_phrase("openehr", code)}});
        }
        for f in present {
            let title = sch.field(f.field).map_or(f.field, |s| s.title);
            let leaf = json!({
                "_type": "ELEMENT",
                "name": text(title),
                "archetype_node_id": steps(f.path).last().map_or("", |s| s.1),
                "value": field_value(f, &b[f.field]),
            });
            insert(&mut entry, e.rm_type, f.path, leaf);
        }
        if let Some(ev) = e.event {
            let at = json!({"_type": "DV_DATE_TIME", "value": time});
            if let Some((data_step, _)) = ev.rsplit_once("/events") {
                if let Some(h) = walk_mut(&mut entry, data_step) {
                    h["origin"] = at.clone();
                }
            }
            if let Some(event) = walk_mut(&mut entry, ev) {
                event["time"] = at;
            }
        }
        content.push(entry);
    }
    let mut c = json!({
        "_type": "COMPOSITION",
        "name": text(t.name),
        "archetype_node_id": t.composition_archetype,
        "archetype_details": archetyped(t.composition_archetype, Some(t.id)),
        "language": code_phrase("ISO_639-1", "en"),
        "territory": code_phrase("ISO_3166-1", "GB"),
        "category": {"_type": "DV_CODED_TEXT", "value": t.composition_category.1,
                     "defining_code": code_phrase("openehr", t.composition_category.0)},
        "composer": {
            "_type": "PARTY_IDENTIFIED",
            "name": meta.composer.name.clone().unwrap_or_else(|| meta.composer.actor.clone()),
            "external_ref": {"_type": "PARTY_REF",
                             "id": {"_type": "GENERIC_ID", "value": meta.composer.actor, "scheme": "cophr-actor"},
                             "namespace": "cophr", "type": "PERSON"}
        },
        "context": {
            "_type": "EVENT_CONTEXT",
            "start_time": {"_type": "DV_DATE_TIME", "value": meta.start_time},
            "setting": {"_type": "DV_CODED_TEXT", "value": "other care",
                        "defining_code": code_phrase("openehr", "238")}
        },
        "content": content,
    });
    if let Some(uid) = &meta.uid {
        c["uid"] = json!({"_type": "OBJECT_VERSION_ID", "value": uid});
    }
    Ok(c)
}

fn walk_mut<'a>(root: &'a mut Json, path: &str) -> Option<&'a mut Json> {
    let mut cur = root;
    for (attr, node) in steps(path) {
        let child = cur.get_mut(attr)?;
        cur = if child.is_array() {
            child
                .as_array_mut()?
                .iter_mut()
                .find(|c| c["archetype_node_id"].as_str() == Some(node))?
        } else if child["archetype_node_id"].as_str() == Some(node) {
            child
        } else {
            return None;
        };
    }
    Some(cur)
}

/// Parses a composition's JSON bytes, bounded by [`MAX_COMPOSITION_BYTES`].
///
/// # Errors
/// [`OpenEhrError::TooLarge`], [`OpenEhrError::Json`].
pub fn parse(bytes: &[u8]) -> Result<Json, OpenEhrError> {
    if bytes.len() > MAX_COMPOSITION_BYTES {
        return Err(OpenEhrError::TooLarge { got: bytes.len() });
    }
    serde_json::from_slice(bytes).map_err(|e| OpenEhrError::Json(e.to_string()))
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

fn kind(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(_) => "a boolean".into(),
        Json::Number(_) => "a number".into(),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(o) => match o.get("_type").and_then(Json::as_str) {
            Some(t) => clip(t),
            None => "an object without _type".into(),
        },
    }
}

/// Checks depth and size of a parsed composition.
fn check_shape(v: &Json) -> Result<(), OpenEhrError> {
    let mut count = 0usize;
    let mut stack = vec![(v, 1usize)];
    while let Some((x, d)) = stack.pop() {
        count += 1;
        if count > MAX_NODES {
            return Err(OpenEhrError::TooComplex {
                what: format!("more than {MAX_NODES} JSON values"),
            });
        }
        if d > MAX_DEPTH {
            return Err(OpenEhrError::TooComplex {
                what: format!("nested deeper than {MAX_DEPTH}"),
            });
        }
        match x {
            Json::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Json::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    Ok(())
}

fn wrong(path: &str, expected: &str, found: &Json) -> OpenEhrError {
    OpenEhrError::WrongType {
        path: clip(path),
        expected: expected.to_owned(),
        found: kind(found),
    }
}

/// Reads one element's value by its data type, into the body's JSON.
fn read_value(dv: Dv, path: &str, element: &Json) -> Result<Option<Json>, OpenEhrError> {
    if element["_type"].as_str().is_some_and(|t| t != "ELEMENT") {
        return Err(wrong(path, "ELEMENT", element));
    }
    let v = &element["value"];
    if v.is_null() {
        if element.get("null_flavour").is_some() {
            return Ok(None);
        }
        return Err(OpenEhrError::MissingMandatory {
            path: format!("{path}/value"),
        });
    }
    let vpath = format!("{path}/value");
    let ty = v["_type"].as_str().unwrap_or_default();
    if !dv.accepts().contains(&ty) {
        return Err(wrong(&vpath, &dv.accepts().join(" or "), v));
    }
    let string = |k: &str| -> Result<String, OpenEhrError> {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| wrong(&format!("{vpath}/{k}"), "a string", &v[k]))
    };
    let number = |k: &str| -> Result<Json, OpenEhrError> {
        if v[k].is_number() {
            Ok(v[k].clone())
        } else {
            Err(wrong(&format!("{vpath}/{k}"), "a number", &v[k]))
        }
    };
    Ok(Some(match dv {
        Dv::Text | Dv::Coded | Dv::DateTime => Json::String(string("value")?),
        Dv::Count => {
            let n = number("magnitude")?;
            if !(n.is_i64() || n.is_u64()) {
                return Err(wrong(&format!("{vpath}/magnitude"), "an integer", &n));
            }
            n
        }
        Dv::Boolean => match &v["value"] {
            b @ Json::Bool(_) => b.clone(),
            other => return Err(wrong(&format!("{vpath}/value"), "a boolean", other)),
        },
        Dv::Decimal => {
            let u = string("units")?;
            if u != "1" {
                return Err(wrong(
                    &format!("{vpath}/units"),
                    "1 (a number without unit)",
                    &v["units"],
                ));
            }
            number("magnitude")?
        }
        Dv::Lines => Json::Array(
            string("value")?
                .split('\n')
                .map(|l| Json::String(l.to_owned()))
                .collect(),
        ),
        Dv::Date => {
            let s = string("value")?;
            let date = match s.split_once('T') {
                Some((d, _)) if ty == "DV_DATE_TIME" => d.to_owned(),
                _ => s,
            };
            Json::String(date)
        }
        Dv::Quantity => json!({"value": number("magnitude")?, "unit": string("units")?}),
        Dv::Percent => {
            let den = number("denominator")?;
            if den.as_f64() != Some(100.0) {
                return Err(wrong(
                    &format!("{vpath}/denominator"),
                    "100 (a percentage)",
                    &den,
                ));
            }
            json!({"value": number("numerator")?, "unit": "%"})
        }
    }))
}

/// Every ELEMENT's archetype path under an entry.
fn element_paths(node: &Json, prefix: &str, out: &mut Vec<String>) {
    for attr in [
        "data",
        "events",
        "state",
        "protocol",
        "items",
        "activities",
        "description",
    ] {
        let children: Vec<&Json> = match node.get(attr) {
            Some(Json::Array(a)) => a.iter().collect(),
            Some(o @ Json::Object(_)) => vec![o],
            _ => continue,
        };
        for c in children {
            let id = c["archetype_node_id"].as_str().unwrap_or("?");
            let p = format!("{prefix}/{attr}[{id}]");
            if c["_type"].as_str() == Some("ELEMENT") {
                out.push(p);
            } else {
                element_paths(c, &p, out);
            }
        }
    }
}

/// A composition read as a cophr category and body (checked by the category's schema).
///
/// # Errors
/// Every [`OpenEhrError`] but `TooLarge` and `Json` (see [`parse`]).
pub fn from_composition(c: &Json) -> Result<(Category, Value), OpenEhrError> {
    from_composition_in(&[], c)
}

/// [`from_composition`], extensions with a schema in `exts` included.
///
/// # Errors
/// As [`from_composition`].
pub fn from_composition_in(
    exts: &[ExtensionSchema],
    c: &Json,
) -> Result<(Category, Value), OpenEhrError> {
    check_shape(c)?;
    if c["_type"].as_str() != Some("COMPOSITION") {
        return Err(wrong("/_type", "COMPOSITION", &c["_type"]));
    }
    let tid = &c["archetype_details"]["template_id"]["value"];
    let tid = match tid {
        Json::String(s) => s,
        Json::Null => {
            return Err(OpenEhrError::MissingMandatory {
                path: "/archetype_details/template_id".into(),
            })
        }
        other => {
            return Err(wrong(
                "/archetype_details/template_id/value",
                "a string",
                other,
            ))
        }
    };
    with_template_id(exts, tid, |t, sch| read(t, sch, c))
        .unwrap_or_else(|| Err(OpenEhrError::UnknownTemplate { found: clip(tid) }))
}

fn read(
    t: &Template<'_>,
    sch: &CategorySchema<'_>,
    c: &Json,
) -> Result<(Category, Value), OpenEhrError> {
    let content = match &c["content"] {
        Json::Array(a) => a,
        Json::Null => {
            return Err(OpenEhrError::MissingMandatory {
                path: "/content".into(),
            })
        }
        other => return Err(wrong("/content", "an array", other)),
    };
    if content.len() > MAX_CONTENT {
        return Err(OpenEhrError::TooComplex {
            what: format!("{} content entries", content.len()),
        });
    }
    let mut body = Map::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut time: Option<String> = None;
    for (i, e) in content.iter().enumerate() {
        let found = e["archetype_node_id"].as_str().unwrap_or_default();
        let Some(def) = t.entries.iter().find(|d| d.archetype == found) else {
            return Err(OpenEhrError::WrongArchetype {
                index: i,
                found: if found.is_empty() {
                    kind(e)
                } else {
                    clip(found)
                },
                template: t.id.into(),
                expected: t
                    .entries
                    .iter()
                    .map(|d| d.archetype.to_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if seen.contains(&def.archetype) {
            return Err(OpenEhrError::DuplicateArchetype {
                index: i,
                archetype: def.archetype.into(),
            });
        }
        seen.push(def.archetype);
        if e["_type"].as_str() != Some(def.rm_type) {
            return Err(wrong(
                &format!("/content[{}]/_type", def.archetype),
                def.rm_type,
                &e["_type"],
            ));
        }
        let mut paths = Vec::new();
        element_paths(e, "", &mut paths);
        if paths.len() > MAX_NODES {
            return Err(OpenEhrError::TooComplex {
                what: "too many elements".into(),
            });
        }
        if let Some(p) = paths
            .iter()
            .find(|p| !def.fields.iter().any(|f| f.path == p.as_str()))
        {
            return Err(OpenEhrError::UnknownPath {
                archetype: def.archetype.into(),
                path: clip(p),
                template: t.id.into(),
            });
        }
        for f in def.fields {
            let full = format!("{}{}", def.archetype, f.path);
            let got = match walk(e, f.path) {
                Some(el) if f.dv == Dv::Coded && !f.codes.is_empty() && !el["value"].is_null() => {
                    local_code(f, &full, el)?
                }
                Some(el) => read_value(f.dv, &full, el)?,
                None => None,
            };
            match got {
                Some(v) => {
                    body.insert(f.field.to_owned(), v);
                }
                None if f.mandatory => return Err(OpenEhrError::MissingMandatory { path: full }),
                None => {}
            }
        }
        if let Some(field) = def.state {
            let path = format!("{}/ism_transition/current_state", def.archetype);
            let state = &e["ism_transition"]["current_state"];
            if state.is_null() {
                return Err(OpenEhrError::MissingMandatory { path });
            }
            let code = state["defining_code"]["code_string"]
                .as_str()
                .unwrap_or_default();
            let Some((cophr, ..)) = ISM_STATES.iter().find(|s| s.1 == code) else {
                return Err(wrong(
                    &format!("{path}/defining_code"),
                    "openehr 532 (completed), 528 (cancelled) or 531 (aborted)",
                    &state["defining_code"]["code_string"],
                ));
            };
            body.insert(field.to_owned(), Json::String((*cophr).to_owned()));
        }
        if let (Some(ev), None) = (def.event, &time) {
            let full = format!("{}{ev}/time", def.archetype);
            let at = walk(e, ev).map(|x| &x["time"]).unwrap_or(&Json::Null);
            if at.is_null() {
                return Err(OpenEhrError::MissingMandatory { path: full });
            }
            if at["_type"].as_str() != Some("DV_DATE_TIME") {
                return Err(wrong(&full, "DV_DATE_TIME", at));
            }
            match at["value"].as_str() {
                Some(s) => time = Some(s.to_owned()),
                None => return Err(wrong(&format!("{full}/value"), "a string", &at["value"])),
            }
        }
    }
    for d in t.entries {
        if d.fields.iter().any(|f| f.mandatory) && !seen.contains(&d.archetype) {
            return Err(OpenEhrError::MissingMandatory {
                path: format!("/content[{}]", d.archetype),
            });
        }
    }
    if let (Some(f), Some(at)) = (t.time_field, time) {
        let at = match at.split_once('T') {
            Some((date, _)) if t.time_is_date => date.to_owned(),
            _ => at,
        };
        body.insert(f.to_owned(), Json::String(at));
    }
    let body = schema::body_from_json_in(&t.category, Some(sch), &Json::Object(body))?;
    Ok((t.category.clone(), body))
}

/// The core templates as `GET /definition/template/adl1.4` lists them.
pub fn template_list(created: &str) -> Json {
    template_list_in(&[], created)
}

/// The core templates, then the generic template of each extension schema in `exts`
/// (created when its definition was: `ext_created`, RFC 3339, in the same order).
pub fn template_list_in(exts: &[(ExtensionSchema, String)], created: &str) -> Json {
    let item = |t: &Template<'_>, created: &str| {
        json!({
            "template_id": t.id,
            "concept": t.name,
            "archetype_id": t.composition_archetype,
            "created_timestamp": created,
        })
    };
    let mut out: Vec<Json> = templates().iter().map(|t| item(t, created)).collect();
    for (def, at) in exts {
        out.push(ext::with_template(def, |t, _| item(t, at)));
    }
    Json::Array(out)
}

#[cfg(test)]
mod tests;
