//! Extension schemas defined by an openEHR template (issue 17): a web template (JSON, the
//! `application/openehr.wt+json` form EHRbase and Better serve) or an operational
//! template (OPT 1.4, XML) read into an [`ExtensionSchema`] whose [`TemplateMap`] keeps
//! the template's shape: its id, its composition archetype, its entries (archetype id,
//! OBSERVATION/EVALUATION/INSTRUCTION/ACTION/ADMIN_ENTRY, an observation's event) and each
//! field's archetype path. Its entries are then compositions of *that* template
//! ([`crate::openehr::ext`]). Pure, no I/O.
//!
//! Both inputs are read into one tree of nodes (id, name, RM type, node id, occurrences,
//! AQL path, local codes, units, ranges), then one function makes the definition:
//! each data element is a field named after its web template id (`wound_type` →
//! `wound-type`), mandatory when it and every node above it up to its entry has `min` ≥ 1.
//! Supported leaves: `DV_TEXT`, `DV_CODED_TEXT` with local codes (a field's codes are the
//! codes' labels, each kept with its at-code), `DV_QUANTITY` (units, ranges), `DV_COUNT`,
//! `DV_BOOLEAN`, `DV_DATE`, `DV_DATE_TIME`. Anything else — another data type, a repeating
//! element, a SECTION, coded text from an external terminology — is refused naming the
//! node ([`DefinitionError::Unsupported`]). Repeating containers (an observation's
//! `any_event`, a cluster) hold one occurrence.
//!
//! Input is bounded before anything is built: [`MAX_TEMPLATE_BYTES`],
//! [`MAX_TEMPLATE_DEPTH`], [`MAX_TEMPLATE_NODES`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::extension::{
    DefinitionError, ExtensionField, ExtensionSchema, ExtensionType, MAX_CODE, MAX_CODES,
    MAX_FIELD_NAME, MAX_LABEL, MAX_SCHEMA_FIELDS, MAX_UNIT, MAX_UNITS,
};
use crate::category::Category;

/// Largest template accepted (a web template or an OPT), in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 2 * 1024 * 1024;
/// Deepest nesting accepted: JSON values in a web template, XML elements in an OPT.
pub const MAX_TEMPLATE_DEPTH: usize = 96;
/// Most JSON values (web template) or XML nodes (OPT) accepted.
pub const MAX_TEMPLATE_NODES: usize = 200_000;
/// Most content entries (archetypes) one template-based definition holds.
pub const MAX_TEMPLATE_ENTRIES: usize = crate::openehr::MAX_CONTENT;
/// Longest template id, archetype id or node id, in bytes.
pub const MAX_TEMPLATE_ID: usize = 200;
/// Longest archetype path of a field within its entry, in bytes.
pub const MAX_TEMPLATE_PATH: usize = 400;

/// The entry RM types a template-based extension may hold.
pub const ENTRY_TYPES: &[&str] = &[
    "OBSERVATION",
    "EVALUATION",
    "INSTRUCTION",
    "ACTION",
    "ADMIN_ENTRY",
];

/// The RM attributes a field's path may go through (those the composition reader walks).
const PATH_ATTRS: &[&str] = &[
    "data",
    "events",
    "state",
    "protocol",
    "items",
    "activities",
    "description",
];

/// The template a definition was read from: what its compositions are made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TemplateMap {
    /// The template id (`template_id` of its compositions).
    pub id: String,
    /// The composition's archetype id (`openEHR-EHR-COMPOSITION.…`).
    pub composition: String,
    /// The content entries, in the template's order.
    pub entries: Vec<TemplateEntry>,
    /// Where each field of the definition sits, one per field.
    pub fields: Vec<TemplateField>,
}

/// One content entry of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TemplateEntry {
    /// Its archetype id.
    pub archetype: String,
    /// Its RM type (one of [`ENTRY_TYPES`]).
    pub rm_type: String,
    /// Its name in the template.
    pub name: String,
    /// For an observation, the archetype path of the event its fields sit in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// Where one field sits in the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TemplateField {
    /// The definition's field.
    pub field: String,
    /// The entry (index into [`TemplateMap::entries`]).
    pub entry: u32,
    /// The element's archetype path within its entry (`/data[at0001]/items[at0002]`).
    pub path: String,
    /// For a coded field, the at-code of each of the field's codes, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
}

fn bad(why: impl Into<String>) -> DefinitionError {
    DefinitionError::Template(why.into())
}

fn id_ok(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_TEMPLATE_ID && !s.chars().any(char::is_control)
}

/// Whether `p` is an archetype path of `/attr[node]` steps, the attributes those a field
/// may go through.
fn path_ok(p: &str) -> bool {
    if p.is_empty() || p.len() > MAX_TEMPLATE_PATH || !p.starts_with('/') {
        return false;
    }
    p[1..].split('/').all(|step| {
        let Some((attr, rest)) = step.split_once('[') else {
            return false;
        };
        let Some(node) = rest.strip_suffix(']') else {
            return false;
        };
        PATH_ATTRS.contains(&attr)
            && !node.is_empty()
            && node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    })
}

impl TemplateMap {
    /// Checks the map against its definition: ids bounded, known entry types, one place
    /// per field at a valid path, an at-code per code.
    ///
    /// # Errors
    /// [`DefinitionError::Template`] naming what is wrong.
    pub fn check(&self, def: &ExtensionSchema) -> Result<(), DefinitionError> {
        if !id_ok(&self.id) {
            return Err(bad(format!(
                "the template id is empty or longer than {MAX_TEMPLATE_ID} bytes"
            )));
        }
        if !id_ok(&self.composition) || !self.composition.starts_with("openEHR-EHR-COMPOSITION.") {
            return Err(bad(
                "the composition archetype is not an openEHR-EHR-COMPOSITION",
            ));
        }
        if self.entries.is_empty() || self.entries.len() > MAX_TEMPLATE_ENTRIES {
            return Err(bad(format!(
                "a template holds 1 to {MAX_TEMPLATE_ENTRIES} entries (this one {})",
                self.entries.len()
            )));
        }
        let mut archetypes = BTreeSet::new();
        for e in &self.entries {
            if !ENTRY_TYPES.contains(&e.rm_type.as_str()) {
                return Err(bad(format!(
                    "entry type `{}` is not one cophr holds",
                    clip(&e.rm_type)
                )));
            }
            if !id_ok(&e.archetype)
                || !e
                    .archetype
                    .starts_with(&format!("openEHR-EHR-{}.", e.rm_type))
            {
                return Err(bad(format!(
                    "entry archetype `{}` is not an openEHR-EHR-{} id",
                    clip(&e.archetype),
                    e.rm_type
                )));
            }
            if !archetypes.insert(e.archetype.as_str()) {
                return Err(bad(format!("archetype {} is held twice", e.archetype)));
            }
            if e.name.trim().is_empty() || e.name.len() > MAX_LABEL {
                return Err(bad(format!(
                    "entry {}'s name is empty or too long",
                    e.archetype
                )));
            }
            if let Some(ev) = &e.event {
                if e.rm_type != "OBSERVATION" || !path_ok(ev) {
                    return Err(bad(format!(
                        "entry {}'s event path is not valid",
                        e.archetype
                    )));
                }
            }
        }
        if self.fields.len() != def.fields.len() {
            return Err(bad("the template places every field once"));
        }
        let mut places = BTreeSet::new();
        for (tf, f) in self.fields.iter().zip(&def.fields) {
            if tf.field != f.name {
                return Err(bad(format!(
                    "field `{}` is placed as `{}` (in the fields' order)",
                    f.name,
                    clip(&tf.field)
                )));
            }
            let ei = usize::try_from(tf.entry).unwrap_or(usize::MAX);
            if ei >= self.entries.len() {
                return Err(bad(format!("field `{}` names no entry", f.name)));
            }
            if !path_ok(&tf.path) {
                return Err(bad(format!(
                    "field `{}`'s path is not an archetype path",
                    f.name
                )));
            }
            if !places.insert((tf.entry, tf.path.as_str())) {
                return Err(bad(format!(
                    "field `{}` shares its element with another",
                    f.name
                )));
            }
            let codes_ok = if f.ty == ExtensionType::Code {
                tf.codes.len() == f.codes.len()
            } else {
                tf.codes.is_empty()
            };
            if !codes_ok || tf.codes.iter().any(|c| !id_ok(c) || c.len() > MAX_CODE) {
                return Err(bad(format!(
                    "field `{}` needs one at-code per code",
                    f.name
                )));
            }
        }
        Ok(())
    }

    /// Whether this template may follow `old` (of definition `old_def`): the same
    /// composition archetype, every old entry kept with its type, every old field at the
    /// same entry archetype and path, every old code with the same at-code.
    ///
    /// # Errors
    /// What breaks, naming the field or entry.
    pub fn compatible_with(
        &self,
        def: &ExtensionSchema,
        old: &TemplateMap,
        old_def: &ExtensionSchema,
    ) -> Result<(), String> {
        if self.composition != old.composition {
            return Err(format!(
                "the composition archetype changes from {} to {}",
                old.composition, self.composition
            ));
        }
        for e in &old.entries {
            if !self
                .entries
                .iter()
                .any(|n| n.archetype == e.archetype && n.rm_type == e.rm_type)
            {
                return Err(format!("entry {} is removed", e.archetype));
            }
        }
        for of in &old.fields {
            let Some(nf) = self.fields.iter().find(|n| n.field == of.field) else {
                continue; // a removed field is refused by the definition's own check
            };
            let oa = old.entry_of(of).map(|e| e.archetype.as_str());
            let na = self.entry_of(nf).map(|e| e.archetype.as_str());
            if oa != na || of.path != nf.path {
                return Err(format!(
                    "field `{}` moves from {}{} to {}{}",
                    of.field,
                    oa.unwrap_or_default(),
                    of.path,
                    na.unwrap_or_default(),
                    nf.path
                ));
            }
            let old_field = old_def.field(&of.field);
            for (code, at) in old_field
                .map(|f| f.codes.as_slice())
                .unwrap_or_default()
                .iter()
                .zip(&of.codes)
            {
                let now = self.code_id(def, &of.field, code);
                if now != Some(at.as_str()) {
                    return Err(format!(
                        "field `{}` changes the at-code of `{code}`",
                        of.field
                    ));
                }
            }
        }
        Ok(())
    }

    fn entry_of(&self, f: &TemplateField) -> Option<&TemplateEntry> {
        self.entries.get(usize::try_from(f.entry).ok()?)
    }

    /// The at-code of code `code` of field `field` (a coded field of `def`, the definition
    /// this map belongs to).
    pub fn code_id(&self, def: &ExtensionSchema, field: &str, code: &str) -> Option<&str> {
        let i = def.field(field)?.codes.iter().position(|c| c == code)?;
        let tf = self.fields.iter().find(|f| f.field == field)?;
        tf.codes.get(i).map(String::as_str)
    }
}

fn clip(s: &str) -> String {
    super::clip_quote(s)
}

/// A node's path quoted in a message: whole up to a bound.
fn clip_path(s: &str) -> String {
    cut(s, MAX_TEMPLATE_PATH + MAX_TEMPLATE_ID)
}

/// One node of a template, as both inputs are read.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Its web template id (snake case).
    id: String,
    /// Its name.
    name: String,
    /// Its RM type.
    rm_type: String,
    /// Its archetype node id (an archetype id for an archetype's root).
    node_id: String,
    /// Occurrences: lower, and upper (`None` unbounded).
    min: u64,
    max: Option<u64>,
    /// Its AQL path from the composition.
    aql: String,
    /// Set by the template itself (language, subject, times …), not data.
    in_context: bool,
    /// Local codes: (at-code, label).
    codes: Vec<(String, String)>,
    /// The terminology of a coded text's codes (`local` for at-codes).
    terminology: Option<String>,
    /// Units of a quantity, with each unit's magnitude range.
    units: Vec<(String, Option<f64>, Option<f64>)>,
    /// A count's range.
    range: (Option<f64>, Option<f64>),
    children: Vec<Node>,
}

/// Which template a text is, by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A web template (JSON with `templateId` and `tree`).
    WebTemplate,
    /// An operational template (OPT 1.4, XML).
    Opt,
    /// A JSON definition (cophr's own description).
    Description,
}

/// What a definition file is, by its content: XML is an OPT, JSON with `templateId` and
/// `tree` a web template, any other JSON a description.
pub fn sniff_template(text: &str) -> TemplateKind {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        return TemplateKind::Opt;
    }
    let head: String = t.chars().take(4096).collect();
    if head.contains("\"templateId\"") && text.contains("\"tree\"") {
        TemplateKind::WebTemplate
    } else {
        TemplateKind::Description
    }
}

/// The category a template defines when none is given: `ext:openehr/<name>`, its name
/// the template id in lower case with other characters as `-` and a trailing version
/// (`.v1`) left out (`Wound assessment.v1` → `ext:openehr/wound-assessment`).
pub fn default_category(template_id: &str) -> Option<Category> {
    let mut base = template_id.trim();
    if let Some((head, v)) = base.rsplit_once(".v") {
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            base = head;
        }
    }
    let name = kebab(base);
    format!("ext:openehr/{name}").parse().ok()
}

fn kebab(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

impl ExtensionSchema {
    /// Reads an openEHR web template (JSON) into the definition of `category` (default
    /// [`default_category`]) at `version`.
    ///
    /// # Errors
    /// [`DefinitionError`]: over a bound, not JSON, not a web template, a node cophr
    /// cannot hold (naming it), or the definition's own rules.
    pub fn from_web_template(
        text: &str,
        category: Option<Category>,
        version: u32,
    ) -> Result<ExtensionSchema, DefinitionError> {
        size_ok(text)?;
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| DefinitionError::Malformed(format!("not JSON: {e}")))?;
        let (mut count, deepest) = (0usize, json_shape(&v, 1, &mut 0usize));
        json_count(&v, &mut count);
        if deepest > MAX_TEMPLATE_DEPTH {
            return Err(DefinitionError::TemplateTooLarge(format!(
                "nested deeper than {MAX_TEMPLATE_DEPTH}"
            )));
        }
        if count > MAX_TEMPLATE_NODES {
            return Err(DefinitionError::TemplateTooLarge(format!(
                "more than {MAX_TEMPLATE_NODES} JSON values"
            )));
        }
        let id = v["templateId"]
            .as_str()
            .ok_or_else(|| bad("a web template has a `templateId`"))?
            .to_owned();
        let tree = v
            .get("tree")
            .ok_or_else(|| bad("a web template has a `tree`"))?;
        let root = wt_node(tree)?;
        build(&id, &root, category, version)
    }

    /// Reads an openEHR operational template (OPT 1.4, XML) into the definition of
    /// `category` (default [`default_category`]) at `version`.
    ///
    /// # Errors
    /// As [`ExtensionSchema::from_web_template`], for XML.
    pub fn from_opt(
        text: &str,
        category: Option<Category>,
        version: u32,
    ) -> Result<ExtensionSchema, DefinitionError> {
        size_ok(text)?;
        let opts = roxmltree::ParsingOptions {
            allow_dtd: false,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(text, opts)
            .map_err(|e| DefinitionError::Malformed(format!("not XML: {e}")))?;
        let mut count = 0usize;
        for n in doc.descendants() {
            count += 1;
            if count > MAX_TEMPLATE_NODES {
                return Err(DefinitionError::TemplateTooLarge(format!(
                    "more than {MAX_TEMPLATE_NODES} XML nodes"
                )));
            }
            if n.is_element() && n.ancestors().count() - 1 > MAX_TEMPLATE_DEPTH {
                return Err(DefinitionError::TemplateTooLarge(format!(
                    "nested deeper than {MAX_TEMPLATE_DEPTH}"
                )));
            }
        }
        let root = doc.root_element();
        if root.tag_name().name() != "template" {
            return Err(bad(format!(
                "an OPT's root element is <template>, not <{}>",
                clip(root.tag_name().name())
            )));
        }
        let id = child(root, "template_id")
            .and_then(|t| child_text(t, "value"))
            .ok_or_else(|| bad("an OPT has a <template_id>"))?;
        let def = child(root, "definition").ok_or_else(|| bad("an OPT has a <definition>"))?;
        let concept = child_text(root, "concept").unwrap_or_else(|| id.clone());
        let mut tree = opt_node(def, "", &[], None)?;
        tree.name = concept;
        build(&id, &tree, category, version)
    }

    /// Reads a definition file of any kind cophr takes ([`sniff_template`]): a JSON
    /// description as [`ExtensionSchema::from_json`], a web template or an OPT for
    /// `category` (or [`default_category`]) at `version`.
    ///
    /// # Errors
    /// As the reader of its kind.
    pub fn from_any(
        text: &str,
        category: Option<Category>,
        version: u32,
    ) -> Result<ExtensionSchema, DefinitionError> {
        match sniff_template(text) {
            TemplateKind::Opt => Self::from_opt(text, category, version),
            TemplateKind::WebTemplate => Self::from_web_template(text, category, version),
            TemplateKind::Description => Self::from_json(text),
        }
    }
}

impl ExtensionSchema {
    /// A definition file of any kind ([`ExtensionSchema::from_any`]) made ready to write
    /// into a record where `current` gives the definition in effect for a category: a
    /// template becomes that category's next version (version 1 when none), and every
    /// field gets its node ([`ExtensionSchema::assign_nodes`]). What `cophr schema define`
    /// and the APIs write; the gate still decides.
    ///
    /// # Errors
    /// As [`ExtensionSchema::from_any`].
    pub fn for_record(
        text: &str,
        category: Option<Category>,
        current: impl FnOnce(&Category) -> Option<ExtensionSchema>,
    ) -> Result<ExtensionSchema, DefinitionError> {
        let mut def = Self::from_any(text, category, 1)?;
        let now = current(&def.category);
        if def.template.is_some() {
            def.version = now.as_ref().map_or(1, |c| c.version.saturating_add(1));
        }
        let previous = now.filter(|c| c.version.saturating_add(1) == def.version);
        def.assign_nodes(previous.as_ref());
        def.check()?;
        Ok(def)
    }
}

fn size_ok(text: &str) -> Result<(), DefinitionError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(DefinitionError::TemplateTooLarge(format!(
            "{} bytes; at most {MAX_TEMPLATE_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

fn json_shape(v: &serde_json::Value, d: usize, deepest: &mut usize) -> usize {
    *deepest = (*deepest).max(d);
    match v {
        serde_json::Value::Array(a) => {
            for x in a {
                json_shape(x, d + 1, deepest);
            }
        }
        serde_json::Value::Object(o) => {
            for x in o.values() {
                json_shape(x, d + 1, deepest);
            }
        }
        _ => {}
    }
    *deepest
}

fn json_count(v: &serde_json::Value, n: &mut usize) {
    *n += 1;
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_count(x, n)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_count(x, n)),
        _ => {}
    }
}

/// A web template node (the JSON's depth is bounded before this runs).
fn wt_node(v: &serde_json::Value) -> Result<Node, DefinitionError> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let rm_type = s("rmType");
    if rm_type.is_empty() {
        return Err(bad(format!(
            "node `{}` has no rmType",
            clip(v["id"].as_str().unwrap_or("?"))
        )));
    }
    let max = match v["max"].as_i64() {
        Some(m) if m < 0 => None,
        Some(m) => Some(u64::try_from(m).unwrap_or(1)),
        None => Some(1),
    };
    let mut n = Node {
        id: s("id"),
        name: match v["localizedName"].as_str().or(v["name"].as_str()) {
            Some(x) => x.to_owned(),
            None => s("id"),
        },
        rm_type,
        node_id: s("nodeId"),
        min: v["min"].as_u64().unwrap_or(0),
        max,
        aql: s("aqlPath"),
        in_context: v["inContext"].as_bool().unwrap_or(false),
        ..Node::default()
    };
    for input in v["inputs"].as_array().into_iter().flatten() {
        let suffix = input["suffix"].as_str().unwrap_or_default();
        let list = input["list"].as_array();
        match (suffix, n.rm_type.as_str()) {
            ("code" | "", "DV_CODED_TEXT") => {
                n.terminology = input["terminology"].as_str().map(str::to_owned);
                for item in list.into_iter().flatten() {
                    let code = item["value"].as_str().unwrap_or_default().to_owned();
                    let label = item["label"].as_str().unwrap_or(&code).to_owned();
                    n.codes.push((code, label));
                }
            }
            ("unit", "DV_QUANTITY") => {
                for item in list.into_iter().flatten() {
                    let unit = item["value"].as_str().unwrap_or_default().to_owned();
                    let r = &item["validation"]["range"];
                    n.units.push((unit, r["min"].as_f64(), r["max"].as_f64()));
                }
            }
            ("magnitude", "DV_QUANTITY") => {
                // A range on the magnitude input alone applies to every unit.
                let r = &input["validation"]["range"];
                n.range = (r["min"].as_f64(), r["max"].as_f64());
            }
            (_, "DV_COUNT") => {
                let r = &input["validation"]["range"];
                n.range = (r["min"].as_f64(), r["max"].as_f64());
            }
            _ => {}
        }
    }
    if n.rm_type == "DV_QUANTITY" && (n.range.0.is_some() || n.range.1.is_some()) {
        for u in &mut n.units {
            u.1 = u.1.or(n.range.0);
            u.2 = u.2.or(n.range.1);
        }
    }
    for c in v["children"].as_array().into_iter().flatten() {
        n.children.push(wt_node(c)?);
    }
    Ok(n)
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i: 'a>(
    n: roxmltree::Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn child_text(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or_default().trim().to_owned())
}

fn xsi_type(n: roxmltree::Node<'_, '_>) -> String {
    n.attributes()
        .find(|a| a.name() == "type")
        .map(|a| a.value().to_owned())
        .unwrap_or_default()
}

/// The term definitions of an archetype root: (code, text).
fn terms(root: roxmltree::Node<'_, '_>) -> Vec<(String, String)> {
    children(root, "term_definitions")
        .filter_map(|t| {
            let code = t.attribute("code")?.to_owned();
            let text = children(t, "items")
                .find(|i| i.attribute("id") == Some("text"))
                .and_then(|i| i.text())
                .unwrap_or_default()
                .trim()
                .to_owned();
            Some((code, text))
        })
        .collect()
}

fn occurrences(n: roxmltree::Node<'_, '_>) -> (u64, Option<u64>) {
    let Some(o) = child(n, "occurrences") else {
        return (1, Some(1));
    };
    let lower = child_text(o, "lower")
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let upper = if child_text(o, "upper_unbounded").as_deref() == Some("true") {
        None
    } else {
        Some(
            child_text(o, "upper")
                .and_then(|x| x.parse().ok())
                .unwrap_or(1),
        )
    };
    (lower, upper)
}

fn interval(n: Option<roxmltree::Node<'_, '_>>) -> (Option<f64>, Option<f64>) {
    let Some(n) = n else { return (None, None) };
    let num = |k: &str, unb: &str| {
        if child_text(n, unb).as_deref() == Some("true") {
            return None;
        }
        child_text(n, k).and_then(|x| x.parse::<f64>().ok())
    };
    (
        num("lower", "lower_unbounded"),
        num("upper", "upper_unbounded"),
    )
}

/// An OPT's C_OBJECT as a node. `path`: the AQL path of its parent; `attr`: the
/// attribute it is under; `terms`: the term definitions of the archetype it is in.
fn opt_node(
    n: roxmltree::Node<'_, '_>,
    parent_path: &str,
    parent_terms: &[(String, String)],
    attr: Option<&str>,
) -> Result<Node, DefinitionError> {
    let rm_type = child_text(n, "rm_type_name").unwrap_or_default();
    let archetype = child(n, "archetype_id").and_then(|a| child_text(a, "value"));
    let own_terms;
    let terms_here: &[(String, String)] = if archetype.is_some() {
        own_terms = terms(n);
        &own_terms
    } else {
        parent_terms
    };
    let node_id = archetype
        .clone()
        .or_else(|| child_text(n, "node_id"))
        .unwrap_or_default();
    let name_code = if archetype.is_some() {
        "at0000".to_owned()
    } else {
        node_id.clone()
    };
    let name = terms_here
        .iter()
        .find(|(c, _)| *c == name_code)
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| rm_type.clone());
    let aql = match attr {
        None => String::new(),
        Some(a) if node_id.is_empty() => format!("{parent_path}/{a}"),
        Some(a) => format!("{parent_path}/{a}[{node_id}]"),
    };
    let (min, max) = occurrences(n);
    let snake = crate::openehr::flat::snake(&name);
    let mut out = Node {
        id: snake,
        name,
        rm_type: rm_type.clone(),
        node_id,
        min,
        max,
        aql: aql.clone(),
        ..Node::default()
    };
    for a in children(n, "attributes") {
        let attr_name = child_text(a, "rm_attribute_name").unwrap_or_default();
        for c in children(a, "children") {
            let ty = xsi_type(c);
            let crm = child_text(c, "rm_type_name").unwrap_or_default();
            if rm_type == "ELEMENT" && attr_name == "value" {
                // The element's value: its data type and constraints.
                let mut leaf = Node {
                    id: out.id.clone(),
                    name: out.name.clone(),
                    rm_type: crm.clone(),
                    node_id: String::new(),
                    min: 1,
                    max: Some(1),
                    aql: format!("{aql}/value"),
                    ..Node::default()
                };
                opt_value(c, &ty, terms_here, &mut leaf);
                out.children.push(leaf);
                continue;
            }
            if rm_type == "ELEMENT" || ty.ends_with("ARCHETYPE_SLOT") {
                continue; // null_flavour, name constraints, open slots
            }
            if !matches!(
                attr_name.as_str(),
                "content"
                    | "data"
                    | "events"
                    | "state"
                    | "protocol"
                    | "items"
                    | "activities"
                    | "description"
                    | "context"
                    | "other_context"
            ) {
                continue; // name, category, ism_transition, subject … set by cophr
            }
            out.children
                .push(opt_node(c, &aql, terms_here, Some(&attr_name))?);
        }
    }
    Ok(out)
}

/// An element value's constraints from an OPT.
fn opt_value(c: roxmltree::Node<'_, '_>, ty: &str, terms: &[(String, String)], leaf: &mut Node) {
    let label = |code: &str| {
        terms
            .iter()
            .find(|(c, _)| c == code)
            .map_or_else(|| code.to_owned(), |(_, t)| t.clone())
    };
    match leaf.rm_type.as_str() {
        "DV_CODED_TEXT" => {
            for a in children(c, "attributes") {
                for cp in children(a, "children") {
                    let term = child(cp, "terminology_id")
                        .and_then(|t| child_text(t, "value"))
                        .unwrap_or_else(|| "local".into());
                    leaf.terminology = Some(term);
                    for code in children(cp, "code_list") {
                        let code = code.text().unwrap_or_default().trim().to_owned();
                        let l = label(&code);
                        leaf.codes.push((code, l));
                    }
                }
            }
        }
        "DV_QUANTITY" if ty == "C_DV_QUANTITY" => {
            for item in children(c, "list") {
                let unit = child_text(item, "units").unwrap_or_default();
                let (lo, hi) = interval(child(item, "magnitude"));
                leaf.units.push((unit, lo, hi));
            }
        }
        "DV_COUNT" => {
            for a in children(c, "attributes") {
                if child_text(a, "rm_attribute_name").as_deref() == Some("magnitude") {
                    let range = children(a, "children")
                        .filter_map(|p| child(p, "item"))
                        .find_map(|i| child(i, "range"));
                    leaf.range = interval(range);
                }
            }
        }
        _ => {}
    }
}

/// The definition a template's tree makes.
fn build(
    template_id: &str,
    root: &Node,
    category: Option<Category>,
    version: u32,
) -> Result<ExtensionSchema, DefinitionError> {
    if root.rm_type != "COMPOSITION" {
        return Err(bad(format!(
            "a template's root is a COMPOSITION, not {}",
            clip(&root.rm_type)
        )));
    }
    let category = match category {
        Some(c) => c,
        None => default_category(template_id).ok_or_else(|| {
            bad(format!(
                "no category can be named after template id `{}`; give one",
                clip(template_id)
            ))
        })?,
    };
    let mut entries: Vec<TemplateEntry> = Vec::new();
    let mut fields: Vec<ExtensionField> = Vec::new();
    let mut places: Vec<TemplateField> = Vec::new();
    for e in &root.children {
        if e.in_context || e.rm_type == "EVENT_CONTEXT" {
            continue;
        }
        if !ENTRY_TYPES.contains(&e.rm_type.as_str()) {
            return Err(DefinitionError::Unsupported {
                what: clip(&e.rm_type),
                path: clip_path(&e.aql),
                why: ": a template-based extension holds OBSERVATION, EVALUATION, INSTRUCTION, ACTION and ADMIN_ENTRY entries".into(),
            });
        }
        if entries.len() == MAX_TEMPLATE_ENTRIES {
            return Err(DefinitionError::TemplateTooLarge(format!(
                "more than {MAX_TEMPLATE_ENTRIES} entries"
            )));
        }
        let prefix = format!("/content[{}]", e.node_id);
        let ei = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        let mut event: Option<String> = None;
        let mut leaves = Vec::new();
        collect(e, e.min >= 1, &mut leaves)?;
        for (leaf, required) in leaves {
            let path = element_path(&leaf.aql, &prefix)?;
            if let Some(i) = path.find("/events[") {
                let end = path[i..].find(']').map_or(path.len(), |j| i + j + 1);
                let ev = path[..end].to_owned();
                match &event {
                    Some(x) if *x != ev => {
                        return Err(DefinitionError::Unsupported {
                            what: "a second event".into(),
                            path: format!("{prefix}{ev}"),
                            why: ": an observation's fields sit in one event".into(),
                        })
                    }
                    _ => event = Some(ev),
                }
            }
            let (field, codes) = field_of(&leaf, required, &prefix, &path)?;
            let mut name = field.name.clone();
            let mut k = 2;
            while fields.iter().any(|f| f.name == name) {
                let tail = format!("-{k}");
                let mut base = field.name.clone();
                base.truncate(MAX_FIELD_NAME - tail.len());
                name = format!("{base}{tail}");
                k += 1;
            }
            places.push(TemplateField {
                field: name.clone(),
                entry: ei,
                path,
                codes,
            });
            fields.push(ExtensionField { name, ..field });
            if fields.len() > MAX_SCHEMA_FIELDS {
                return Err(DefinitionError::FieldCount(fields.len()));
            }
        }
        entries.push(TemplateEntry {
            archetype: e.node_id.clone(),
            rm_type: e.rm_type.clone(),
            name: cut(&e.name, MAX_LABEL),
            event: event.filter(|_| e.rm_type == "OBSERVATION"),
        });
    }
    let def = ExtensionSchema {
        category,
        version,
        title: cut(&root.name, MAX_LABEL),
        description: format!(
            "From openEHR template {}",
            cut(template_id, MAX_TEMPLATE_ID)
        ),
        summary: None,
        fields,
        template: Some(TemplateMap {
            id: template_id.to_owned(),
            composition: root.node_id.clone(),
            entries,
            fields: places,
        }),
    };
    def.check()?;
    Ok(def)
}

fn cut(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

const STRUCTURE: &[&str] = &[
    "HISTORY",
    "EVENT",
    "POINT_EVENT",
    "INTERVAL_EVENT",
    "ITEM_TREE",
    "ITEM_LIST",
    "ITEM_SINGLE",
    "ITEM_TABLE",
    "CLUSTER",
    "ACTIVITY",
];

const SUPPORTED: &[&str] = &[
    "DV_TEXT",
    "DV_CODED_TEXT",
    "DV_QUANTITY",
    "DV_COUNT",
    "DV_BOOLEAN",
    "DV_DATE",
    "DV_DATE_TIME",
];

/// The data elements under an entry's node, each with whether it is mandatory (it and
/// every node above it up to the entry has `min` ≥ 1).
fn collect(n: &Node, required: bool, out: &mut Vec<(Node, bool)>) -> Result<(), DefinitionError> {
    for c in &n.children {
        if c.in_context {
            continue;
        }
        let req = required && c.min >= 1;
        let ty = c.rm_type.as_str();
        if ty == "ELEMENT" {
            // An element with its value's type as a child (a choice, or an OPT's form).
            let values: Vec<&Node> = c
                .children
                .iter()
                .filter(|v| !v.in_context && v.rm_type.starts_with("DV_"))
                .collect();
            let Some(v) = values.first() else {
                return Err(DefinitionError::Unsupported {
                    what: "an ELEMENT without a value type".into(),
                    path: clip_path(&c.aql),
                    why: String::new(),
                });
            };
            if values.len() > 1 {
                return Err(DefinitionError::Unsupported {
                    what: "a choice of data types".into(),
                    path: clip_path(&c.aql),
                    why: String::new(),
                });
            }
            let mut leaf = (*v).clone();
            leaf.id.clone_from(&c.id);
            leaf.name.clone_from(&c.name);
            leaf.aql.clone_from(&c.aql);
            leaf.min = c.min;
            leaf.max = c.max;
            out.push((leaf, req));
        } else if ty.starts_with("DV_") {
            // An RM attribute (an event's `time`, an activity's `timing` …) is set by
            // cophr, not a field: its path ends without a node id.
            let p = c.aql.strip_suffix("/value").unwrap_or(&c.aql);
            if p.rsplit('/').next().is_some_and(|last| last.contains('[')) {
                out.push((c.clone(), req));
            }
        } else if STRUCTURE.contains(&ty) {
            collect(c, req, out)?;
        } else if matches!(ty, "ISM_TRANSITION" | "PARTY_PROXY" | "CODE_PHRASE") {
            // Set by cophr as for core templates.
        } else {
            return Err(DefinitionError::Unsupported {
                what: clip(ty),
                path: clip_path(&c.aql),
                why: ": not an RM type cophr knows here".into(),
            });
        }
    }
    Ok(())
}

/// A leaf's element path within its entry: the AQL path less the entry's prefix, a
/// trailing `/value` and name predicates (`[at0004,'Size']` → `[at0004]`).
fn element_path(aql: &str, prefix: &str) -> Result<String, DefinitionError> {
    let mut p = String::new();
    let mut in_pred = false;
    for c in aql.chars() {
        match c {
            ',' if !in_pred => in_pred = true,
            ']' if in_pred => {
                in_pred = false;
                p.push(']');
            }
            _ if in_pred => {}
            _ => p.push(c),
        }
    }
    let p = p.strip_suffix("/value").unwrap_or(&p);
    let rest = p.strip_prefix(prefix).unwrap_or_default();
    if !path_ok(rest) {
        return Err(DefinitionError::Unsupported {
            what: "an element at this path".into(),
            path: clip_path(aql),
            why: ": fields sit under the entry's data, state, protocol, activities or description"
                .into(),
        });
    }
    Ok(rest.to_owned())
}

/// A leaf as a field (its name not yet made unique) and its codes' at-codes.
fn field_of(
    leaf: &Node,
    required: bool,
    prefix: &str,
    path: &str,
) -> Result<(ExtensionField, Vec<String>), DefinitionError> {
    let at = format!("{prefix}{path}");
    let unsupported = |what: &str, why: &str| DefinitionError::Unsupported {
        what: what.to_owned(),
        path: clip_path(&at),
        why: why.to_owned(),
    };
    if !SUPPORTED.contains(&leaf.rm_type.as_str()) {
        return Err(unsupported(
            &clip(&leaf.rm_type),
            ": the data types supported are DV_TEXT, DV_CODED_TEXT (local codes), DV_QUANTITY, DV_COUNT, DV_BOOLEAN, DV_DATE and DV_DATE_TIME",
        ));
    }
    if leaf.max != Some(1) {
        return Err(unsupported(
            &format!("a repeating {}", leaf.rm_type),
            ": an element occurs at most once (max 1)",
        ));
    }
    let mut name = kebab(if leaf.id.is_empty() {
        &leaf.name
    } else {
        &leaf.id
    });
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("f-{name}");
    }
    name.truncate(MAX_FIELD_NAME);
    let name = name.trim_end_matches('-').to_owned();
    let mut f = ExtensionField {
        name,
        title: {
            let t = cut(&leaf.name, MAX_LABEL);
            if t.trim().is_empty() {
                leaf.id.clone()
            } else {
                t
            }
        },
        ty: ExtensionType::Text,
        required,
        codes: Vec::new(),
        units: Vec::new(),
        min: None,
        max: None,
        help: String::new(),
        node: None,
    };
    let mut at_codes = Vec::new();
    match leaf.rm_type.as_str() {
        "DV_CODED_TEXT" => {
            let term = leaf.terminology.as_deref().unwrap_or("local");
            if term != "local" || leaf.codes.is_empty() {
                return Err(unsupported(
                    "DV_CODED_TEXT",
                    &format!(
                        ": only local codes listed in the template are (this one's terminology: {})",
                        clip(term)
                    ),
                ));
            }
            if leaf.codes.len() > MAX_CODES {
                return Err(unsupported(
                    "DV_CODED_TEXT",
                    &format!(": at most {MAX_CODES} codes"),
                ));
            }
            f.ty = ExtensionType::Code;
            for (code, label) in &leaf.codes {
                // The label is the field's code, unless it is too long or taken.
                let l = label.trim();
                let code_text = if !l.is_empty()
                    && l.len() <= MAX_CODE
                    && !l.chars().any(char::is_control)
                    && !f.codes.iter().any(|c| c == l)
                {
                    l.to_owned()
                } else {
                    code.clone()
                };
                f.codes.push(code_text);
                at_codes.push(code.clone());
            }
        }
        "DV_QUANTITY" => {
            f.ty = ExtensionType::Quantity;
            if leaf.units.is_empty() || leaf.units.len() > MAX_UNITS {
                return Err(unsupported(
                    "DV_QUANTITY",
                    &format!(": a quantity lists 1 to {MAX_UNITS} units"),
                ));
            }
            for (u, _, _) in &leaf.units {
                if u.trim().is_empty() || u.len() > MAX_UNIT {
                    return Err(unsupported("DV_QUANTITY", ": a unit is empty or too long"));
                }
                if !f.units.contains(u) {
                    f.units.push(u.clone());
                }
            }
            // One range for every unit: set only when every unit has it, the widest.
            let lows: Option<Vec<f64>> = leaf.units.iter().map(|u| u.1).collect();
            let highs: Option<Vec<f64>> = leaf.units.iter().map(|u| u.2).collect();
            f.min = lows.map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
            f.max = highs.map(|v| v.into_iter().fold(f64::NEG_INFINITY, f64::max));
        }
        "DV_COUNT" => {
            f.ty = ExtensionType::Integer;
            (f.min, f.max) = leaf.range;
        }
        "DV_BOOLEAN" => f.ty = ExtensionType::Bool,
        "DV_DATE" => f.ty = ExtensionType::Date,
        "DV_DATE_TIME" => f.ty = ExtensionType::DateTime,
        _ => f.ty = ExtensionType::Text,
    }
    Ok((f, at_codes))
}

#[cfg(test)]
mod tests;
