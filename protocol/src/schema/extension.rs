//! Extension categories' schemas defined as data (issue 17, "Extensions as data";
//! `docs/extensions.md`).
//!
//! An [`ExtensionSchema`] is a JSON description of one `ext:<namespace>/<name>` category:
//! its fields (name, label, type, whether required, units, value sets, plausible ranges),
//! a version, a title and the field shown as summary. It is written into the record's
//! administrative stream as a [`crate::entry::Payload::DefineSchema`] entry, signed by its
//! author, and checked at the gate ([`crate::record::Record::apply`]): its structure here
//! ([`ExtensionSchema::check`]), its version against the versions in its causal past
//! ([`ExtensionSchema::compatible_with`]) and its author's right in the record.
//!
//! Validating a body against it reuses the core schemas' model and code path: the schema
//! is seen as a [`CategorySchema`] ([`ExtensionSchema::with_view`]) and checked by
//! [`super::validate_with`], exactly as a built-in category's body is.
//!
//! A definition says nothing about access: grants alone decide who sees and writes a
//! category, and a definition naming access (or anything but what is listed here) is
//! refused.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::template::TemplateMap;
use super::types::{CategorySchema, FieldSpec, FieldType, Range};
use crate::category::Category;

/// Most fields one extension schema defines.
pub const MAX_SCHEMA_FIELDS: usize = 64;
/// Longest field name, in bytes (lower-case letters, digits and `-`, starting with a
/// letter).
pub const MAX_FIELD_NAME: usize = 48;
/// Longest title or field label, in bytes.
pub const MAX_LABEL: usize = 200;
/// Longest description or field help text, in bytes.
pub const MAX_SCHEMA_DESCRIPTION: usize = 2000;
/// Most codes in one field's value set.
pub const MAX_CODES: usize = 100;
/// Longest code, in bytes.
pub const MAX_CODE: usize = 64;
/// Most units one quantity field accepts.
pub const MAX_UNITS: usize = 16;
/// Longest unit, in bytes.
pub const MAX_UNIT: usize = 32;
/// Deepest nesting of a definition's JSON: the definition, its field list, a field, a
/// field's codes or units. Fields do not nest.
pub const MAX_DEFINITION_DEPTH: usize = 4;
/// Largest definition file accepted, in bytes of JSON.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;

/// The highest node number a field of the generic template may have.
pub const MAX_NODE: u32 = 9999;
use crate::openehr::ext::FIRST_NODE;

/// Keys that would give a definition a say on access, refused by name.
const ACCESS_KEYS: &[&str] = &[
    "access", "grant", "grants", "level", "readers", "writers", "scope", "acl",
];

/// The type of one extension field: the core schemas' types that carry data of their own
/// (files and documents are written in the `documents` category).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtensionType {
    /// [`FieldType::Text`].
    Text,
    /// [`FieldType::LongText`].
    LongText,
    /// [`FieldType::Integer`].
    Integer,
    /// [`FieldType::Decimal`].
    Decimal,
    /// [`FieldType::Bool`].
    Bool,
    /// [`FieldType::Date`].
    Date,
    /// [`FieldType::DateTime`].
    DateTime,
    /// [`FieldType::Code`]: one of the field's `codes`.
    Code,
    /// [`FieldType::Quantity`]: a number in one of the field's `units`.
    Quantity,
    /// [`FieldType::TextList`].
    TextList,
}

impl ExtensionType {
    /// The core type's name ([`FieldType::kind`]).
    pub fn kind(self) -> &'static str {
        match self {
            ExtensionType::Text => "text",
            ExtensionType::LongText => "long-text",
            ExtensionType::Integer => "integer",
            ExtensionType::Decimal => "decimal",
            ExtensionType::Bool => "bool",
            ExtensionType::Date => "date",
            ExtensionType::DateTime => "date-time",
            ExtensionType::Code => "code",
            ExtensionType::Quantity => "quantity",
            ExtensionType::TextList => "text-list",
        }
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            ExtensionType::Integer | ExtensionType::Decimal | ExtensionType::Quantity
        )
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One field of an extension schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExtensionField {
    /// The field's key in the body: lower-case letters, digits and `-`, at most
    /// [`MAX_FIELD_NAME`] bytes.
    pub name: String,
    /// The label shown in forms and tables.
    pub title: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ExtensionType,
    /// Whether every body must have it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// A code field's value set (1 to [`MAX_CODES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// A quantity's accepted UCUM units, the first the default (1 to [`MAX_UNITS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// Smallest plausible value of a number (in every unit of a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest plausible value of a number (in every unit of a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Help text shown with the field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub help: String,
    /// The number of the field's archetype node in the generic template
    /// (`at{node}`, from [`crate::openehr::ext::FIRST_NODE`]); kept by every later version
    /// so that an AQL path written against one version finds the data of the next.
    /// Absent in definitions written before it existed: the field's position then gives it
    /// ([`ExtensionSchema::node_of`]). [`ExtensionSchema::assign_nodes`] fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
}

/// The schema of one extension category, defined as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExtensionSchema {
    /// The extension category (`ext:<namespace>/<name>`).
    pub category: Category,
    /// The version, from 1; each new version is the one before plus one.
    pub version: u32,
    /// A human title.
    pub title: String,
    /// What the category holds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The field shown as an entry's one-line summary (default: the first field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The fields, in display order (1 to [`MAX_SCHEMA_FIELDS`]).
    pub fields: Vec<ExtensionField>,
    /// For a definition read from an openEHR web template or OPT: the template's id,
    /// archetypes and each field's archetype path, so its entries are compositions of that
    /// template ([`super::template`]). Absent for a JSON description (the generic template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateMap>,
}

/// Why a definition is refused: malformed, out of bounds, not for an extension, not a
/// compatible next version. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    /// Not JSON, or not of the definition's shape.
    #[error("the definition is not valid: {0}")]
    Malformed(String),
    /// Larger than [`MAX_DEFINITION_BYTES`].
    #[error("the definition is {0} bytes; at most {MAX_DEFINITION_BYTES}")]
    TooLarge(usize),
    /// Nested deeper than [`MAX_DEFINITION_DEPTH`] (fields do not nest).
    #[error("the definition nests deeper than {MAX_DEFINITION_DEPTH} levels (fields do not nest)")]
    TooDeep,
    /// A key that would give the schema a say on access.
    #[error(
        "`{0}`: a schema has no say on access (grants alone decide who sees and writes a category)"
    )]
    Access(String),
    /// A core category: its schema is fixed in cophr.
    #[error("{0} is a core category with a fixed schema; only extensions (ext:<namespace>/<name>) are defined by data")]
    NotExtension(String),
    /// Version 0.
    #[error("versions start at 1")]
    VersionZero,
    /// No fields, or more than [`MAX_SCHEMA_FIELDS`].
    #[error("a schema has 1 to {MAX_SCHEMA_FIELDS} fields (this one has {0})")]
    FieldCount(usize),
    /// A field name that is empty, too long or not kebab-case.
    #[error("field name `{0}` must be 1 to {MAX_FIELD_NAME} lower-case letters, digits and `-`, starting with a letter")]
    FieldName(String),
    /// Two fields with one name.
    #[error("field `{0}` is defined twice")]
    DuplicateField(String),
    /// A text of the definition empty where it must not be, or too long.
    #[error("{what} is empty or longer than {max} bytes")]
    Text {
        /// Which text.
        what: String,
        /// Its limit.
        max: usize,
    },
    /// A value-set or unit problem on a field.
    #[error("field `{field}`: {why}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// The summary field is not one of the fields.
    #[error("the summary field `{0}` is not one of the fields")]
    Summary(String),
    /// The version is not the next one after the versions in the definition's causal past.
    #[error("{category}: version {given} is not the next version (expected {expected})")]
    VersionNotNext {
        /// The category.
        category: String,
        /// The version given.
        given: u32,
        /// The version expected.
        expected: u32,
    },
    /// An openEHR template that is not well formed (XML or JSON), or not of a template's
    /// shape.
    #[error("the template is not valid: {0}")]
    Template(String),
    /// An openEHR template node cophr cannot hold, naming the node and why.
    #[error("{what} at {path} is not supported{why}")]
    Unsupported {
        /// The RM type or construct.
        what: String,
        /// The node's path in the template.
        path: String,
        /// More on why (empty, or starting with `: `).
        why: String,
    },
    /// An openEHR template over a bound ([`super::template`]'s limits).
    #[error("the template is too large: {0}")]
    TemplateTooLarge(String),
    /// A new version that would refuse data the version before accepts.
    #[error("{category} version {version} is incompatible with version {previous}: {why} (a new version may only add optional fields, widen value sets, units and ranges, and relabel)")]
    Incompatible {
        /// The category.
        category: String,
        /// The new version.
        version: u32,
        /// The version it would follow.
        previous: u32,
        /// What it breaks, naming the field.
        why: String,
    },
}

fn text_ok(
    what: impl Into<String>,
    t: &str,
    max: usize,
    may_be_empty: bool,
) -> Result<(), DefinitionError> {
    let bad_chars = t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if (!may_be_empty && t.trim().is_empty()) || t.len() > max || bad_chars {
        return Err(DefinitionError::Text {
            what: what.into(),
            max,
        });
    }
    Ok(())
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_FIELD_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn access_key(v: &serde_json::Value) -> Option<String> {
    let o = v.as_object()?;
    if let Some(k) = o.keys().find(|k| ACCESS_KEYS.contains(&k.as_str())) {
        return Some(k.clone());
    }
    o.get("fields")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|f| f.keys())
        .find(|k| ACCESS_KEYS.contains(&k.as_str()))
        .map(|k| format!("fields[].{k}"))
}

impl ExtensionSchema {
    /// Reads a definition from JSON text, bounded in bytes and nesting, and checks it
    /// ([`ExtensionSchema::check`]).
    ///
    /// # Errors
    /// [`DefinitionError`]: too large, too deep, not JSON of the definition's shape, a key
    /// about access, or a rule of [`ExtensionSchema::check`] broken.
    pub fn from_json(text: &str) -> Result<ExtensionSchema, DefinitionError> {
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(DefinitionError::TooLarge(text.len()));
        }
        // serde_json's own recursion limit (128) bounds this parse; depth is checked next.
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DefinitionError::Malformed(e.to_string()))?;
        if json_depth(&v) > MAX_DEFINITION_DEPTH {
            return Err(DefinitionError::TooDeep);
        }
        if let Some(k) = access_key(&v) {
            return Err(DefinitionError::Access(k));
        }
        let category_is_core = v
            .get("category")
            .and_then(serde_json::Value::as_str)
            .and_then(|c| c.parse::<Category>().ok())
            .is_some_and(|c| !c.is_extension());
        if category_is_core {
            let name = v["category"].as_str().unwrap_or_default().to_owned();
            return Err(DefinitionError::NotExtension(name));
        }
        let s: ExtensionSchema =
            serde_json::from_value(v).map_err(|e| DefinitionError::Malformed(e.to_string()))?;
        s.check()?;
        Ok(s)
    }

    /// The definition as pretty JSON (what `cophr schema show` prints and a file holds).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the definition on its own: an extension category, version from 1, 1 to
    /// [`MAX_SCHEMA_FIELDS`] uniquely named fields, texts bounded, each code field with a
    /// value set and each quantity with units (and nothing of the kind elsewhere), ranges
    /// only on numbers, finite and ordered, the summary one of the fields.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check(&self) -> Result<(), DefinitionError> {
        if !self.category.is_extension() {
            return Err(DefinitionError::NotExtension(
                self.category.name().to_owned(),
            ));
        }
        if self.version == 0 {
            return Err(DefinitionError::VersionZero);
        }
        text_ok("the title", &self.title, MAX_LABEL, false)?;
        text_ok(
            "the description",
            &self.description,
            MAX_SCHEMA_DESCRIPTION,
            true,
        )?;
        if self.fields.is_empty() || self.fields.len() > MAX_SCHEMA_FIELDS {
            return Err(DefinitionError::FieldCount(self.fields.len()));
        }
        let mut names = BTreeSet::new();
        for f in &self.fields {
            if !name_ok(&f.name) {
                return Err(DefinitionError::FieldName(super::clip_quote(&f.name)));
            }
            if !names.insert(f.name.as_str()) {
                return Err(DefinitionError::DuplicateField(f.name.clone()));
            }
            check_field(f)?;
        }
        if let Some(s) = &self.summary {
            if !names.contains(s.as_str()) {
                return Err(DefinitionError::Summary(super::clip_quote(s)));
            }
        }
        let mut nodes = BTreeSet::new();
        for (i, f) in self.fields.iter().enumerate() {
            let n = self.node_of(i);
            if !(FIRST_NODE..=MAX_NODE).contains(&n) {
                return Err(DefinitionError::Field {
                    field: f.name.clone(),
                    why: format!("its node must be {FIRST_NODE} to {MAX_NODE}"),
                });
            }
            if !nodes.insert(n) {
                return Err(DefinitionError::Field {
                    field: f.name.clone(),
                    why: format!("node {n} is another field's"),
                });
            }
        }
        if let Some(t) = &self.template {
            t.check(self)?;
        }
        Ok(())
    }

    /// The archetype node number of field `i` (from 0) in the generic template: its
    /// `node`, else `FIRST_NODE + i` (definitions written before fields kept their node).
    pub fn node_of(&self, i: usize) -> u32 {
        self.fields
            .get(i)
            .and_then(|f| f.node)
            .unwrap_or_else(|| FIRST_NODE.saturating_add(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    /// Gives every field its node (see [`ExtensionField::node`]): a field of `previous`
    /// (the version in effect) keeps the node it had there, a new field takes the next
    /// free one. What `cophr schema define` and the API do before writing a definition,
    /// so that reordering fields in a later version keeps each field's AQL path.
    pub fn assign_nodes(&mut self, previous: Option<&ExtensionSchema>) {
        let old = |name: &str| -> Option<u32> {
            let p = previous?;
            let i = p.fields.iter().position(|f| f.name == name)?;
            Some(p.node_of(i))
        };
        let mut next = previous
            .map(|p| (0..p.fields.len()).map(|i| p.node_of(i)).max().unwrap_or(0))
            .unwrap_or(0)
            .max(FIRST_NODE - 1);
        for f in &mut self.fields {
            if let Some(n) = old(&f.name) {
                f.node = Some(n);
            }
        }
        let taken: BTreeSet<u32> = self.fields.iter().filter_map(|f| f.node).collect();
        next = next.max(taken.iter().copied().max().unwrap_or(0));
        for f in &mut self.fields {
            if f.node.is_none() {
                next += 1;
                f.node = Some(next);
            }
        }
    }

    /// The field named, if defined.
    pub fn field(&self, name: &str) -> Option<&ExtensionField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field shown as summary: the one named, else the first.
    pub fn summary_field(&self) -> &str {
        self.summary
            .as_deref()
            .or_else(|| self.fields.first().map(|f| f.name.as_str()))
            .unwrap_or_default()
    }

    /// Whether this definition may follow `old` as its next version: the next version
    /// number, and nothing a body valid under `old` would fail here. Every old field is
    /// kept with its type; no field becomes required and no new field is required; value
    /// sets and units only grow; ranges only widen. Titles, labels, help and the summary
    /// field may change.
    ///
    /// # Errors
    /// [`DefinitionError::VersionNotNext`] or [`DefinitionError::Incompatible`] naming the
    /// field and what would break.
    pub fn compatible_with(&self, old: &ExtensionSchema) -> Result<(), DefinitionError> {
        let category = self.category.name().to_owned();
        if self.version != old.version.saturating_add(1) {
            return Err(DefinitionError::VersionNotNext {
                category,
                given: self.version,
                expected: old.version.saturating_add(1),
            });
        }
        let broken = |why: String| DefinitionError::Incompatible {
            category: category.clone(),
            version: self.version,
            previous: old.version,
            why,
        };
        for o in &old.fields {
            let Some(n) = self.field(&o.name) else {
                return Err(broken(format!("field `{}` is removed", o.name)));
            };
            if n.ty != o.ty {
                return Err(broken(format!(
                    "field `{}` changes type from {} to {}",
                    o.name,
                    o.ty.kind(),
                    n.ty.kind()
                )));
            }
            if n.required && !o.required {
                return Err(broken(format!("field `{}` becomes required", o.name)));
            }
            if let Some(c) = o.codes.iter().find(|c| !n.codes.contains(c)) {
                return Err(broken(format!("field `{}` drops code `{c}`", o.name)));
            }
            if let Some(u) = o.units.iter().find(|u| !n.units.contains(u)) {
                return Err(broken(format!("field `{}` drops unit `{u}`", o.name)));
            }
            let narrower_min = match (o.min, n.min) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b > a,
            };
            let narrower_max = match (o.max, n.max) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b < a,
            };
            if narrower_min || narrower_max {
                return Err(broken(format!("field `{}` narrows its range", o.name)));
            }
            let (oi, ni) = (
                old.fields
                    .iter()
                    .position(|f| f.name == o.name)
                    .unwrap_or(0),
                self.fields
                    .iter()
                    .position(|f| f.name == o.name)
                    .unwrap_or(0),
            );
            if old.template.is_none() && old.node_of(oi) != self.node_of(ni) {
                return Err(broken(format!(
                    "field `{}` changes its archetype node from at{} to at{} (an AQL path written against version {} would no longer find it)",
                    o.name,
                    old.node_of(oi),
                    self.node_of(ni),
                    old.version
                )));
            }
        }
        match (&old.template, &self.template) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(broken(
                    "a template-based definition and a JSON description do not follow each other"
                        .into(),
                ))
            }
            (Some(a), Some(b)) => {
                if let Err(why) = b.compatible_with(self, a, old) {
                    return Err(broken(why));
                }
            }
        }
        if let Some(n) = self
            .fields
            .iter()
            .find(|n| n.required && old.field(&n.name).is_none())
        {
            return Err(broken(format!("new field `{}` is required", n.name)));
        }
        Ok(())
    }

    /// Runs `f` on this schema seen as a [`CategorySchema`], the model the core schemas
    /// use, so that [`super::validate_with`] checks an extension's body exactly as a
    /// built-in category's.
    pub fn with_view<R>(&self, f: impl FnOnce(&CategorySchema<'_>) -> R) -> R {
        let codes: Vec<Vec<&str>> = self
            .fields
            .iter()
            .map(|x| x.codes.iter().map(String::as_str).collect())
            .collect();
        let units: Vec<Vec<&str>> = self
            .fields
            .iter()
            .map(|x| x.units.iter().map(String::as_str).collect())
            .collect();
        let fields: Vec<FieldSpec<'_>> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, x)| FieldSpec {
                name: &x.name,
                title: &x.title,
                ty: match x.ty {
                    ExtensionType::Text => FieldType::Text,
                    ExtensionType::LongText => FieldType::LongText,
                    ExtensionType::Integer => FieldType::Integer,
                    ExtensionType::Decimal => FieldType::Decimal,
                    ExtensionType::Bool => FieldType::Bool,
                    ExtensionType::Date => FieldType::Date,
                    ExtensionType::DateTime => FieldType::DateTime,
                    ExtensionType::Code => FieldType::Code(&codes[i]),
                    ExtensionType::Quantity => FieldType::Quantity { units: &units[i] },
                    ExtensionType::TextList => FieldType::TextList,
                },
                required: x.required,
            })
            .collect();
        let mut ranges: Vec<Range<'_>> = Vec::new();
        for x in self
            .fields
            .iter()
            .filter(|x| x.min.is_some() || x.max.is_some())
        {
            let (min, max) = (x.min.unwrap_or(f64::MIN), x.max.unwrap_or(f64::MAX));
            if x.ty == ExtensionType::Quantity {
                for u in &x.units {
                    ranges.push(Range {
                        field: &x.name,
                        unit: Some(u),
                        min,
                        max,
                    });
                }
            } else {
                ranges.push(Range {
                    field: &x.name,
                    unit: None,
                    min,
                    max,
                });
            }
        }
        let view = CategorySchema {
            category: self.category.clone(),
            title: &self.title,
            description: &self.description,
            archetype: "",
            fhir: &[],
            fields: &fields,
            fhir_fields: &[],
            summary_field: self.summary_field(),
            at_least_one: &[],
            together: &[],
            ranges: &ranges,
        };
        f(&view)
    }

    /// Checks a body against this schema ([`super::validate_with`]).
    ///
    /// # Errors
    /// The first problem, as a [`super::SchemaError`] naming the field.
    pub fn validate(&self, body: &crate::value::Value) -> Result<(), super::SchemaError> {
        self.with_view(|s| super::validate_with(s, body))
    }

    /// The schema as the category catalogue's JSON (what `GET /api/v1/categories` and
    /// the web app's forms read), with its version and the fields' help, codes, units
    /// and ranges.
    pub fn catalogue_json(&self) -> serde_json::Value {
        use serde_json::json;
        let fields: Vec<serde_json::Value> = self.with_view(|s| {
            s.fields
                .iter()
                .zip(&self.fields)
                .map(|(spec, x)| {
                    let mut o = super::field_json(spec);
                    if !x.help.is_empty() {
                        o["help"] = json!(x.help);
                    }
                    if let Some(m) = x.min {
                        o["min"] = json!(m);
                    }
                    if let Some(m) = x.max {
                        o["max"] = json!(m);
                    }
                    o
                })
                .collect()
        });
        json!({
            "name": self.category.name(),
            "title": self.title,
            "description": self.description,
            "fields": fields,
            "fhir": [],
            "extension": true,
            "version": self.version,
            "summary": self.summary_field(),
        })
    }
}

fn check_field(f: &ExtensionField) -> Result<(), DefinitionError> {
    let bad = |why: String| DefinitionError::Field {
        field: f.name.clone(),
        why,
    };
    text_ok(
        format!("field `{}`'s title", f.name),
        &f.title,
        MAX_LABEL,
        false,
    )?;
    text_ok(
        format!("field `{}`'s help", f.name),
        &f.help,
        MAX_SCHEMA_DESCRIPTION,
        true,
    )?;
    let code = f.ty == ExtensionType::Code;
    let quantity = f.ty == ExtensionType::Quantity;
    if code && (f.codes.is_empty() || f.codes.len() > MAX_CODES) {
        return Err(bad(format!("a code field lists 1 to {MAX_CODES} codes")));
    }
    if !code && !f.codes.is_empty() {
        return Err(bad("only a code field has codes".into()));
    }
    if quantity && (f.units.is_empty() || f.units.len() > MAX_UNITS) {
        return Err(bad(format!("a quantity lists 1 to {MAX_UNITS} units")));
    }
    if !quantity && !f.units.is_empty() {
        return Err(bad("only a quantity has units".into()));
    }
    for (list, max, what) in [(&f.codes, MAX_CODE, "code"), (&f.units, MAX_UNIT, "unit")] {
        let mut seen = BTreeSet::new();
        for c in list {
            if c.trim().is_empty() || c.len() > max || c.chars().any(char::is_control) {
                return Err(bad(format!("a {what} is empty or longer than {max} bytes")));
            }
            if !seen.insert(c.as_str()) {
                return Err(bad(format!(
                    "{what} `{}` is listed twice",
                    super::clip_quote(c)
                )));
            }
        }
    }
    if (f.min.is_some() || f.max.is_some()) && !f.ty.numeric() {
        return Err(bad("only a number or quantity has a range".into()));
    }
    if f.min.is_some_and(|x| !x.is_finite()) || f.max.is_some_and(|x| !x.is_finite()) {
        return Err(bad("its range must be finite".into()));
    }
    if let (Some(a), Some(b)) = (f.min, f.max) {
        if a > b {
            return Err(bad(format!("its minimum {a} is above its maximum {b}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
