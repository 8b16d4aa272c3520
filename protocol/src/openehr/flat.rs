//! The FLAT format (simSDT) and the web template of each core template. Pure, no I/O.
//!
//! A core template's web template ([`web_template`]) is a tree made from the same table
//! as its compositions ([`super::Template`]): the composition, its entries, the events,
//! activities and clusters on the way to each element, and each element as its data type
//! with its inputs (`magnitude` and `unit`, `code` and `value` …). Structure nodes
//! (`HISTORY`, `ITEM_TREE`) are not in the tree, as web templates leave them out. Each node's
//! `id` is its name in snake case, and a FLAT key is the ids from the root down, with
//! `|suffix` for an input: `vital_signs/blood_pressure/any_event/systolic_blood_pressure|magnitude`.
//! Every node occurs at most once (`max` 1), so keys carry no index; an index `:0` is
//! accepted on input and any other refused.
//!
//! [`to_flat`] writes an item's body as FLAT; [`from_flat`] reads FLAT by building the
//! canonical composition and reading that ([`super::from_composition`]), so a FLAT
//! composition is checked exactly as a canonical one is. A key the template does not
//! define is refused (`UnknownPath`); `ctx/…` keys and the composition's own context keys
//! are accepted and not kept (the node sets composer, language, territory and times).

use serde_json::{json, Map, Value as Json};

use super::{
    child_type, dv_value, from_composition_in, insert, node_name, steps, text, to_composition_in,
    walk_mut, with_category, with_template_id, Dv, EntryDef, FieldMap, Meta, OpenEhrError,
    Template, ISM_STATES, MAX_NODES,
};
use crate::category::Category;
use crate::schema::{self, CategorySchema, ExtensionSchema};
use crate::value::Value;

/// Most keys in one FLAT composition.
pub const MAX_FLAT_KEYS: usize = 1024;

/// A name as a web template id: lower case, runs of other characters as one `_`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// The root id of a template's FLAT keys.
pub fn root_id(t: &Template<'_>) -> String {
    snake(t.name)
}

/// One node on the way to an element: (web template id, RM type, node id, AQL path).
type Step = (String, &'static str, String, String);

/// The nodes from an entry down to a field's element (structure nodes left out), the last
/// being the element.
fn field_steps(e: &EntryDef<'_>, f: &FieldMap<'_>, title: &str) -> Vec<Step> {
    let st = steps(f.path);
    let mut out = Vec::new();
    let mut ty = e.rm_type;
    let mut aql = String::new();
    for (i, (attr, node)) in st.iter().enumerate() {
        let last = i + 1 == st.len();
        let cty = child_type(ty, attr, last);
        aql.push_str(&format!("/{attr}[{node}]"));
        match cty {
            "HISTORY" | "ITEM_TREE" => {}
            "ELEMENT" => out.push((snake(title), cty, (*node).to_owned(), aql.clone())),
            _ => out.push((
                snake(node_name(cty, node)),
                cty,
                (*node).to_owned(),
                aql.clone(),
            )),
        }
        ty = cty;
    }
    out
}

/// A field's name in a template: its title for a core template, its field name for an
/// extension's (whose titles need not be distinct).
fn title_of<'a>(sch: &'a CategorySchema<'a>, f: &'a FieldMap<'a>) -> &'a str {
    if sch.category.is_extension() {
        return f.field;
    }
    sch.field(f.field).map_or(f.field, |s| s.title)
}

/// The inputs (FLAT suffixes) of a data type.
/// A web template input's `validation` for the range of a number (in `unit`), if any.
fn validation(ranges: &[&schema::Range<'_>], unit: Option<&str>) -> Option<Json> {
    let r = ranges.iter().find(|r| r.unit == unit)?;
    let mut range = Map::new();
    if r.min > f64::MIN {
        range.insert("minOp".into(), json!(">="));
        range.insert("min".into(), json!(r.min));
    }
    if r.max < f64::MAX {
        range.insert("maxOp".into(), json!("<="));
        range.insert("max".into(), json!(r.max));
    }
    (!range.is_empty()).then(|| json!({"range": range}))
}

fn inputs(
    dv: Dv,
    units: &[&str],
    codes: &[&str],
    local: &[(&str, &str)],
    ranges: &[&schema::Range<'_>],
) -> Json {
    match dv {
        Dv::Coded if !local.is_empty() => json!([
            {"suffix": "code", "type": "CODED_TEXT", "terminology": "local",
             "list": local.iter().map(|(c, at)| json!({"value": at, "label": c})).collect::<Vec<_>>()},
            {"suffix": "value", "type": "TEXT"}
        ]),
        Dv::Text => json!([{"type": "TEXT"}]),
        Dv::Coded => json!([
            {"suffix": "code", "type": "CODED_TEXT", "terminology": "cophr",
             "list": codes.iter().map(|c| json!({"value": c, "label": c})).collect::<Vec<_>>()},
            {"suffix": "value", "type": "TEXT"}
        ]),
        Dv::Quantity => json!([
            {"suffix": "magnitude", "type": "DECIMAL"},
            {"suffix": "unit", "type": "CODED_TEXT",
             "list": units.iter().map(|u| {
                 let mut o = json!({"value": u, "label": u});
                 if let Some(v) = validation(ranges, Some(u)) {
                     o["validation"] = v;
                 }
                 o
             }).collect::<Vec<_>>()}
        ]),
        Dv::Count => {
            let mut i = json!({"type": "INTEGER"});
            if let Some(v) = validation(ranges, None) {
                i["validation"] = v;
            }
            json!([i])
        }
        Dv::Percent => json!([
            {"suffix": "numerator", "type": "DECIMAL"},
            {"suffix": "denominator", "type": "DECIMAL", "defaultValue": 100}
        ]),
        Dv::Date => json!([{"type": "DATE"}]),
        Dv::DateTime => json!([{"type": "DATETIME"}]),
        Dv::Lines => json!([{"type": "TEXT", "multiline": true}]),
        Dv::Boolean => json!([{"type": "BOOLEAN"}]),
        Dv::Decimal => json!([{"type": "DECIMAL"}]),
    }
}

/// Adds `child` under the node at `ids` (made if missing) in a web template tree.
fn add_child(node: &mut Json, ids: &[Step], leaf: Json) {
    let mut cur = node;
    for (id, ty, node_id, aql) in ids {
        let kids = cur["children"].as_array_mut();
        let pos = match kids {
            Some(k) => k.iter().position(|c| c["id"] == id.as_str()),
            None => {
                cur["children"] = json!([]);
                None
            }
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                let arr = cur["children"].as_array_mut().expect("made above");
                arr.push(
                    json!({"id": id, "name": id, "rmType": ty, "nodeId": node_id,
                                "min": 0, "max": 1, "aqlPath": aql, "children": []}),
                );
                arr.len() - 1
            }
        };
        cur = &mut cur["children"][pos];
    }
    if let Some(arr) = cur["children"].as_array_mut() {
        arr.push(leaf);
    }
}

/// A core template's web template (`GET /definition/template/adl1.4/{id}`), or `None`
/// for an unknown id.
pub fn web_template(id: &str) -> Option<Json> {
    web_template_in(&[], id)
}

/// [`web_template`], extensions with a schema in `exts` included.
pub fn web_template_in(exts: &[ExtensionSchema], id: &str) -> Option<Json> {
    with_template_id(exts, id, web_template_of)
}

fn web_template_of(t: &Template<'_>, sch: &CategorySchema<'_>) -> Json {
    let root = root_id(t);
    let mut tree = json!({
        "id": root, "name": t.name, "rmType": "COMPOSITION", "nodeId": t.composition_archetype,
        "min": 1, "max": 1, "aqlPath": "",
        "children": [
            {"id": "context", "rmType": "EVENT_CONTEXT", "min": 1, "max": 1, "aqlPath": "/context",
             "children": [{"id": "start_time", "rmType": "DV_DATE_TIME", "min": 1, "max": 1,
                           "aqlPath": "/context/start_time", "inContext": true,
                           "inputs": [{"type": "DATETIME"}]}]}
        ]
    });
    for e in t.entries {
        let eid = snake(e.name);
        let mandatory = e.fields.iter().any(|f| f.mandatory);
        let entry_aql = format!("/content[{}]", e.archetype);
        let mut entry = json!({
            "id": eid, "name": e.name, "rmType": e.rm_type, "nodeId": e.archetype,
            "min": u8::from(mandatory), "max": 1, "aqlPath": entry_aql, "children": []
        });
        for f in e.fields {
            let title = title_of(sch, f);
            let mut path = field_steps(e, f, title);
            let Some((id, _, node_id, aql)) = path.pop() else {
                continue;
            };
            let (units, codes): (&[&str], &[&str]) = match sch.field(f.field).map(|s| &s.ty) {
                Some(schema::FieldType::Quantity { units }) => (units, &[]),
                Some(schema::FieldType::Code(codes)) => (&[], codes),
                _ => (&[], &[]),
            };
            let ranges: Vec<&schema::Range<'_>> =
                sch.ranges.iter().filter(|r| r.field == f.field).collect();
            let name = sch.field(f.field).map_or(title, |s| s.title);
            let leaf = json!({
                "id": id, "name": name, "rmType": f.dv.rm_type(), "nodeId": node_id,
                "min": u8::from(f.mandatory), "max": 1,
                "aqlPath": format!("{entry_aql}{aql}/value"),
                "inputs": inputs(f.dv, units, codes, f.codes, &ranges),
            });
            let path: Vec<Step> = path
                .into_iter()
                .map(|(i, ty, n, a)| (i, ty, n, format!("{entry_aql}{a}")))
                .collect();
            add_child(&mut entry, &path, leaf);
        }
        if let Some(ev) = e.event {
            let time = json!({"id": "time", "rmType": "DV_DATE_TIME", "min": 1, "max": 1,
                              "aqlPath": format!("{entry_aql}{ev}/time"),
                              "inputs": [{"type": "DATETIME"}]});
            let path = event_steps(e, ev, &entry_aql);
            add_child(&mut entry, &path, time);
        }
        if e.state.is_some() {
            let codes: Vec<Json> = ISM_STATES
                .iter()
                .map(|(_, code, rubric)| json!({"value": code, "label": rubric}))
                .collect();
            add_child(
                &mut entry,
                &[],
                json!({"id": "ism_transition", "rmType": "ISM_TRANSITION", "min": 1, "max": 1,
                       "aqlPath": format!("{entry_aql}/ism_transition"),
                       "children": [{"id": "current_state", "rmType": "DV_CODED_TEXT", "min": 1, "max": 1,
                                     "aqlPath": format!("{entry_aql}/ism_transition/current_state"),
                                     "inputs": [{"suffix": "code", "type": "CODED_TEXT",
                                                 "terminology": "openehr", "list": codes}]}]}),
            );
        }
        required_above(&mut entry);
        if let Some(arr) = tree["children"].as_array_mut() {
            arr.push(entry);
        }
    }
    json!({
        "templateId": t.id,
        "version": "2.3",
        "defaultLanguage": "en",
        "languages": ["en"],
        "tree": tree,
    })
}

/// Marks every node under `node` that holds a mandatory element (`min` 1) as occurring
/// at least once too, so that a reader of the web template finds the element mandatory.
/// Whether `node` holds one.
fn required_above(node: &mut Json) -> bool {
    let mut any = false;
    if let Some(kids) = node["children"].as_array_mut() {
        for k in kids {
            let inner = required_above(k);
            let own = k["min"].as_u64().unwrap_or(0) >= 1 && k.get("inputs").is_some();
            let context = k["inContext"].as_bool().unwrap_or(false) || k["id"] == "time";
            if inner && k["min"] == 0 {
                k["min"] = json!(1);
            }
            any |= (inner || own) && !context;
        }
    }
    any
}

/// The nodes from an entry to its event (none for an action's own time).
fn event_steps(e: &EntryDef<'_>, ev: &str, entry_aql: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut ty = e.rm_type;
    let mut aql = String::new();
    for (attr, node) in steps(ev) {
        let cty = child_type(ty, attr, false);
        aql.push_str(&format!("/{attr}[{node}]"));
        if !matches!(cty, "HISTORY" | "ITEM_TREE") {
            out.push((
                snake(node_name(cty, node)),
                cty,
                node.to_owned(),
                format!("{entry_aql}{aql}"),
            ));
        }
        ty = cty;
    }
    out
}

/// What a FLAT key (without its suffix) stands for.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A field of an entry.
    Field(usize, usize),
    /// An entry's event time (an action's time).
    Time(usize),
    /// An action's ISM state.
    State(usize),
}

/// Every FLAT key of a template (without suffixes) and what it stands for.
fn keys(t: &Template<'_>, sch: &CategorySchema<'_>) -> Vec<(String, Target)> {
    let root = root_id(t);
    let mut out = Vec::new();
    for (ei, e) in t.entries.iter().enumerate() {
        let eid = snake(e.name);
        for (fi, f) in e.fields.iter().enumerate() {
            let ids: Vec<String> = field_steps(e, f, title_of(sch, f))
                .into_iter()
                .map(|s| s.0)
                .collect();
            out.push((
                format!("{root}/{eid}/{}", ids.join("/")),
                Target::Field(ei, fi),
            ));
        }
        if let Some(ev) = e.event {
            let ids: Vec<String> = event_steps(e, ev, "")
                .into_iter()
                .map(|s| s.0)
                .chain(std::iter::once("time".to_owned()))
                .collect();
            out.push((format!("{root}/{eid}/{}", ids.join("/")), Target::Time(ei)));
        }
        if e.state.is_some() {
            out.push((
                format!("{root}/{eid}/ism_transition/current_state"),
                Target::State(ei),
            ));
        }
    }
    out
}

fn key(k: &str, suffix: Option<&str>) -> String {
    match suffix {
        Some(s) => format!("{k}|{s}"),
        None => k.to_owned(),
    }
}

/// An item's body as a FLAT composition of its category's template.
///
/// # Errors
/// As [`super::to_composition`].
pub fn to_flat(category: &Category, body: &Value, meta: &Meta) -> Result<Json, OpenEhrError> {
    to_flat_in(&[], category, body, meta)
}

/// [`to_flat`], extensions with a schema in `exts` included.
///
/// # Errors
/// As [`to_composition_in`].
pub fn to_flat_in(
    exts: &[ExtensionSchema],
    category: &Category,
    body: &Value,
    meta: &Meta,
) -> Result<Json, OpenEhrError> {
    // The canonical composition is the one truth: FLAT is read off it.
    let c = to_composition_in(exts, category, body, meta)?;
    with_category(exts, category, |t, sch| flat_of(t, sch, &c))
        .ok_or_else(|| OpenEhrError::Unmapped(category.name().into()))
}

fn flat_of(t: &Template<'_>, sch: &CategorySchema<'_>, c: &Json) -> Json {
    let root = root_id(t);
    let mut out = Map::new();
    out.insert("ctx/language".into(), json!("en"));
    out.insert("ctx/territory".into(), json!("GB"));
    out.insert("ctx/composer_name".into(), c["composer"]["name"].clone());
    out.insert(
        format!("{root}/context/start_time"),
        c["context"]["start_time"]["value"].clone(),
    );
    if let Some(uid) = c["uid"]["value"].as_str() {
        out.insert(format!("{root}/_uid"), json!(uid));
    }
    let content = c["content"].as_array().cloned().unwrap_or_default();
    for (k, target) in keys(t, sch) {
        let (e, rel) = match target {
            Target::Field(ei, fi) => (&t.entries[ei], Some(&t.entries[ei].fields[fi])),
            Target::Time(ei) | Target::State(ei) => (&t.entries[ei], None),
        };
        let Some(entry) = content
            .iter()
            .find(|x| x["archetype_node_id"] == e.archetype)
        else {
            continue;
        };
        match (target, rel) {
            (Target::Field(..), Some(f)) => {
                let Some(el) = super::walk(entry, f.path) else {
                    continue;
                };
                let v = &el["value"];
                match f.dv {
                    Dv::Text | Dv::Lines | Dv::Date | Dv::DateTime => {
                        out.insert(k, v["value"].clone());
                    }
                    Dv::Coded => {
                        out.insert(
                            key(&k, Some("code")),
                            v["defining_code"]["code_string"].clone(),
                        );
                        out.insert(key(&k, Some("value")), v["value"].clone());
                        out.insert(
                            key(&k, Some("terminology")),
                            v["defining_code"]["terminology_id"]["value"].clone(),
                        );
                    }
                    Dv::Quantity => {
                        out.insert(key(&k, Some("magnitude")), v["magnitude"].clone());
                        out.insert(key(&k, Some("unit")), v["units"].clone());
                    }
                    Dv::Percent => {
                        out.insert(key(&k, Some("numerator")), v["numerator"].clone());
                        out.insert(key(&k, Some("denominator")), v["denominator"].clone());
                    }
                    Dv::Count | Dv::Decimal => {
                        out.insert(k, v["magnitude"].clone());
                    }
                    Dv::Boolean => {
                        out.insert(k, v["value"].clone());
                    }
                }
            }
            (Target::Time(_), _) => {
                let ev = e.event.unwrap_or_default();
                if let Some(x) = super::walk(entry, ev) {
                    out.insert(k, x["time"]["value"].clone());
                }
            }
            (Target::State(_), _) => {
                let s = &entry["ism_transition"]["current_state"];
                out.insert(
                    key(&k, Some("code")),
                    s["defining_code"]["code_string"].clone(),
                );
                out.insert(key(&k, Some("value")), s["value"].clone());
                out.insert(key(&k, Some("terminology")), json!("openehr"));
            }
            _ => {}
        }
    }
    Json::Object(out)
}

/// Removes `:0` indexes from a FLAT key; `None` when another index is given.
fn without_index(k: &str) -> Option<String> {
    let mut out = Vec::new();
    for seg in k.split('/') {
        match seg.split_once(':') {
            Some((name, "0")) => out.push(name),
            Some(_) => return None,
            None => out.push(seg),
        }
    }
    Some(out.join("/"))
}

fn unknown(t: &Template<'_>, k: &str) -> OpenEhrError {
    OpenEhrError::UnknownPath {
        archetype: String::new(),
        path: super::clip(k),
        template: t.id.into(),
    }
}

/// Reads a FLAT composition of template `template_id` as a category and body, checked as
/// its canonical composition would be.
///
/// # Errors
/// [`OpenEhrError::UnknownTemplate`]; [`OpenEhrError::TooComplex`] over
/// [`MAX_FLAT_KEYS`] keys; [`OpenEhrError::UnknownPath`] for a key the template does not
/// define; [`OpenEhrError::WrongType`] for a value of the wrong JSON type; then every
/// refusal of [`super::from_composition`].
pub fn from_flat(template_id: &str, flat: &Json) -> Result<(Category, Value), OpenEhrError> {
    from_flat_in(&[], template_id, flat)
}

/// [`from_flat`], extensions with a schema in `exts` included.
///
/// # Errors
/// As [`from_flat`].
pub fn from_flat_in(
    exts: &[ExtensionSchema],
    template_id: &str,
    flat: &Json,
) -> Result<(Category, Value), OpenEhrError> {
    let canonical = with_template_id(exts, template_id, |t, sch| canonical_of_flat(t, sch, flat))
        .unwrap_or_else(|| {
        Err(OpenEhrError::UnknownTemplate {
            found: super::clip(template_id),
        })
    })?;
    from_composition_in(exts, &canonical)
}

fn canonical_of_flat(
    t: &Template<'_>,
    sch: &CategorySchema<'_>,
    flat: &Json,
) -> Result<Json, OpenEhrError> {
    let Some(obj) = flat.as_object() else {
        return Err(OpenEhrError::WrongType {
            path: "/".into(),
            expected: "a FLAT composition (a JSON object of paths)".into(),
            found: super::kind(flat),
        });
    };
    if obj.len() > MAX_FLAT_KEYS.min(MAX_NODES) {
        return Err(OpenEhrError::TooComplex {
            what: format!("{} FLAT keys (at most {MAX_FLAT_KEYS})", obj.len()),
        });
    }
    let root = root_id(t);
    let table = keys(t, sch);
    // key → suffix → value
    let mut got: Vec<(Target, Map<String, Json>)> = Vec::new();
    for (k, v) in obj {
        if k.starts_with("ctx/") {
            continue;
        }
        let plain = without_index(k).ok_or_else(|| unknown(t, k))?;
        let (path, suffix) = match plain.split_once('|') {
            Some((p, s)) => (p.to_owned(), s.to_owned()),
            None => (plain.clone(), String::new()),
        };
        let own = path
            .strip_prefix(&format!("{root}/"))
            .ok_or_else(|| unknown(t, k))?;
        if own.starts_with("context/")
            || matches!(
                own,
                "_uid" | "category" | "language" | "territory" | "composer"
            )
        {
            continue;
        }
        let target = table
            .iter()
            .find(|(tk, _)| *tk == path)
            .map(|(_, t)| *t)
            .ok_or_else(|| unknown(t, k))?;
        let slot = match got.iter().position(|(x, _)| same(*x, target)) {
            Some(p) => p,
            None => {
                got.push((target, Map::new()));
                got.len() - 1
            }
        };
        got[slot].1.insert(suffix, v.clone());
    }
    canonical_of(t, sch, &got)
}

fn same(a: Target, b: Target) -> bool {
    match (a, b) {
        (Target::Field(a1, a2), Target::Field(b1, b2)) => a1 == b1 && a2 == b2,
        (Target::Time(a), Target::Time(b)) | (Target::State(a), Target::State(b)) => a == b,
        _ => false,
    }
}

/// One FLAT value's input, by suffix (`""` for none).
fn input<'a>(m: &'a Map<String, Json>, suffix: &str) -> &'a Json {
    m.get(suffix).unwrap_or(&Json::Null)
}

/// The canonical composition FLAT values make.
fn canonical_of(
    t: &Template<'_>,
    sch: &CategorySchema<'_>,
    got: &[(Target, Map<String, Json>)],
) -> Result<Json, OpenEhrError> {
    let mut content: Vec<(usize, Json)> = Vec::new();
    let entry = |content: &mut Vec<(usize, Json)>, ei: usize| -> usize {
        if let Some(p) = content.iter().position(|(i, _)| *i == ei) {
            return p;
        }
        let e = &t.entries[ei];
        content.push((
            ei,
            json!({"_type": e.rm_type, "name": text(e.name), "archetype_node_id": e.archetype}),
        ));
        content.len() - 1
    };
    // Fields first (they make the nodes), then times and states.
    let mut ordered: Vec<&(Target, Map<String, Json>)> = got.iter().collect();
    ordered.sort_by_key(|(t, _)| match t {
        Target::Field(..) => 0,
        _ => 1,
    });
    for (target, m) in ordered {
        let unexpected = |allowed: &[&str]| -> Result<(), OpenEhrError> {
            match m.keys().find(|k| !allowed.contains(&k.as_str())) {
                Some(k) => Err(unknown(t, &format!("|{k}"))),
                None => Ok(()),
            }
        };
        match *target {
            Target::Field(ei, fi) => {
                let f = &t.entries[ei].fields[fi];
                let value = match f.dv {
                    Dv::Text | Dv::Lines | Dv::Date | Dv::DateTime => {
                        unexpected(&["", "value"])?;
                        let v = if m.contains_key("") {
                            input(m, "")
                        } else {
                            input(m, "value")
                        };
                        let mut x = dv_value(f.dv, &Json::Null);
                        x["value"] = v.clone();
                        x
                    }
                    Dv::Coded => {
                        unexpected(&["", "code", "value", "terminology"])?;
                        let code = [input(m, "code"), input(m, ""), input(m, "value")]
                            .into_iter()
                            .find(|v| !v.is_null())
                            .cloned()
                            .unwrap_or(Json::Null);
                        if !f.codes.is_empty() {
                            // A template's local code: `|code` is its at-code (or, given
                            // alone as `|value`, the code's text).
                            let at = code.as_str().and_then(|s| {
                                f.codes
                                    .iter()
                                    .find(|(c, a)| *a == s || *c == s)
                                    .map(|(_, a)| *a)
                            });
                            let label = f
                                .codes
                                .iter()
                                .find(|(_, a)| Some(*a) == at)
                                .map_or(Json::Null, |(c, _)| json!(c));
                            json!({"_type": "DV_CODED_TEXT", "value": label,
                                   "defining_code": {"_type": "CODE_PHRASE",
                                                     "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "local"},
                                                     "code_string": at.map_or(code, |a| json!(a))}})
                        } else {
                            json!({"_type": "DV_CODED_TEXT", "value": code,
                               "defining_code": {"_type": "CODE_PHRASE",
                                                 "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "cophr"},
                                                 "code_string": code}})
                        }
                    }
                    Dv::Quantity => {
                        unexpected(&["magnitude", "unit"])?;
                        json!({"_type": "DV_QUANTITY", "magnitude": input(m, "magnitude"),
                               "units": input(m, "unit")})
                    }
                    Dv::Percent => {
                        unexpected(&["numerator", "denominator", "type"])?;
                        let den = match input(m, "denominator") {
                            Json::Null => json!(100),
                            d => d.clone(),
                        };
                        json!({"_type": "DV_PROPORTION", "numerator": input(m, "numerator"),
                               "denominator": den, "type": 2})
                    }
                    Dv::Count => {
                        unexpected(&[""])?;
                        json!({"_type": "DV_COUNT", "magnitude": input(m, "")})
                    }
                    Dv::Boolean => {
                        unexpected(&[""])?;
                        json!({"_type": "DV_BOOLEAN", "value": input(m, "")})
                    }
                    Dv::Decimal => {
                        unexpected(&["", "magnitude"])?;
                        let v = if m.contains_key("") {
                            input(m, "")
                        } else {
                            input(m, "magnitude")
                        };
                        json!({"_type": "DV_QUANTITY", "magnitude": v, "units": "1"})
                    }
                };
                let leaf = json!({
                    "_type": "ELEMENT",
                    "name": text(title_of(sch, f)),
                    "archetype_node_id": steps(f.path).last().map_or("", |s| s.1),
                    "value": value,
                });
                let p = entry(&mut content, ei);
                insert(&mut content[p].1, t.entries[ei].rm_type, f.path, leaf);
            }
            Target::Time(ei) => {
                unexpected(&["", "value"])?;
                let v = if m.contains_key("") {
                    input(m, "")
                } else {
                    input(m, "value")
                };
                let at = json!({"_type": "DV_DATE_TIME", "value": v});
                let p = entry(&mut content, ei);
                let ev = t.entries[ei].event.unwrap_or_default();
                let e = &mut content[p].1;
                if let Some((data_step, _)) = ev.rsplit_once("/events") {
                    if let Some(h) = walk_mut(e, data_step) {
                        h["origin"] = at.clone();
                    }
                }
                match walk_mut(e, ev) {
                    Some(x) => x["time"] = at,
                    None => {
                        // An observation with a time and no values: the event alone.
                        let ty = t.entries[ei].rm_type;
                        let mut node = e.clone();
                        let path: Vec<(&str, &str)> = steps(ev);
                        let mut cur = &mut node;
                        let mut cty = ty;
                        for (attr, id) in path {
                            let nty = child_type(cty, attr, false);
                            let made = json!({"_type": nty, "name": text(node_name(nty, id)),
                                              "archetype_node_id": id});
                            let slot = if attr == "events" {
                                cur[attr] = json!([made]);
                                &mut cur[attr][0]
                            } else {
                                cur[attr] = made;
                                &mut cur[attr]
                            };
                            cur = slot;
                            cty = nty;
                        }
                        cur["time"] = at;
                        *e = node;
                    }
                }
            }
            Target::State(ei) => {
                unexpected(&["", "code", "value", "terminology"])?;
                let code = [input(m, "code"), input(m, "")]
                    .into_iter()
                    .find(|v| !v.is_null())
                    .cloned()
                    .unwrap_or(Json::Null);
                let p = entry(&mut content, ei);
                content[p].1["ism_transition"] = json!({"_type": "ISM_TRANSITION",
                    "current_state": {"_type": "DV_CODED_TEXT", "value": input(m, "value"),
                                      "defining_code": {"_type": "CODE_PHRASE",
                                                        "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"},
                                                        "code_string": code}}});
            }
        }
    }
    content.sort_by_key(|(i, _)| *i);
    Ok(json!({
        "_type": "COMPOSITION",
        "name": text(t.name),
        "archetype_node_id": t.composition_archetype,
        "archetype_details": {"_type": "ARCHETYPED",
                              "archetype_id": {"_type": "ARCHETYPE_ID", "value": t.composition_archetype},
                              "template_id": {"_type": "TEMPLATE_ID", "value": t.id},
                              "rm_version": super::RM_VERSION},
        "content": content.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests;
