//! Extension categories as compositions: the generic template made from an extension's
//! schema (defined as data, see `docs/extensions.md`). Pure, no I/O.
//!
//! An extension `ext:<namespace>/<name>` whose schema is in effect in the record maps to
//! one COMPOSITION (`openEHR-EHR-COMPOSITION.encounter.v1`, event) of template
//! `cophr.ext.<namespace>.<name>.v<version>` ([`template_id`]) holding one EVALUATION
//! whose archetype is [`archetype_id`] (`openEHR-EHR-EVALUATION.cophr_ext_…​.v1`: the same
//! for every version, since each version accepts every body the one before did). Each
//! field is one ELEMENT at `/data[at0001]/items[at{node}]` ([`node_id`]), its node kept
//! across versions ([`ExtensionSchema::node_of`]). There is no archetype behind these ids:
//! the definition is the template.
//!
//! An extension defined by an openEHR template ([`crate::schema::template`]) maps to that
//! template instead: its id, composition archetype, entries and each field's archetype
//! path, coded fields as the template's local at-codes.
//!
//! The mapping uses the definition in effect when it runs. A composition of an earlier
//! version's template is read with the version in effect, which accepts it.

use super::{Dv, EntryDef, FieldMap, Template};
use crate::schema::template::TemplateMap;
use crate::schema::{CategorySchema, ExtensionSchema, ExtensionType};

/// The composition archetype of every extension template.
pub const EXT_COMPOSITION: &str = "openEHR-EHR-COMPOSITION.encounter.v1";

/// The first field's node id number; field `i` (from 0) is `at{FIRST_NODE + i}`.
pub const FIRST_NODE: u32 = 1001;

fn parts(def: &ExtensionSchema) -> (&str, &str) {
    let name = def.category.name();
    let rest = name.strip_prefix("ext:").unwrap_or(name);
    rest.split_once('/').unwrap_or((rest, ""))
}

/// The template id of a definition: its template's own id for one read from an openEHR
/// template, else `cophr.ext.<namespace>.<name>.v<version>` (a name holds no `.`, so the
/// id names one category and version).
pub fn template_id(def: &ExtensionSchema) -> String {
    if let Some(t) = &def.template {
        return t.id.clone();
    }
    let (ns, local) = parts(def);
    format!("cophr.ext.{ns}.{local}.v{}", def.version)
}

/// Whether `id` is the template id of this definition's version or an earlier one.
pub fn names_template(def: &ExtensionSchema, id: &str) -> bool {
    if let Some(t) = &def.template {
        return t.id == id;
    }
    let (ns, local) = parts(def);
    id.strip_prefix(&format!("cophr.ext.{ns}.{local}.v"))
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n >= 1 && n <= def.version)
}

/// The entry archetype id of an extension: `openEHR-EHR-EVALUATION.cophr_ext_<namespace>__<name>.v1`,
/// `.` and `-` written `_`.
pub fn archetype_id(def: &ExtensionSchema) -> String {
    let (ns, local) = parts(def);
    let clean = |s: &str| s.replace(['.', '-'], "_");
    format!(
        "openEHR-EHR-EVALUATION.cophr_ext_{}__{}.v1",
        clean(ns),
        clean(local)
    )
}

/// The node id of field `i` (from 0) of a definition: `at{node}`, its node kept across
/// versions ([`ExtensionSchema::node_of`]).
pub fn node_id(def: &ExtensionSchema, i: usize) -> String {
    format!("at{}", def.node_of(i))
}

/// The RM data type of an extension field's type.
pub fn dv(ty: ExtensionType) -> Dv {
    match ty {
        ExtensionType::Text | ExtensionType::LongText => Dv::Text,
        ExtensionType::Integer => Dv::Count,
        ExtensionType::Decimal => Dv::Decimal,
        ExtensionType::Bool => Dv::Boolean,
        ExtensionType::Date => Dv::Date,
        ExtensionType::DateTime => Dv::DateTime,
        ExtensionType::Code => Dv::Coded,
        ExtensionType::Quantity => Dv::Quantity,
        ExtensionType::TextList => Dv::Lines,
    }
}

/// The one definition in `exts` that `p` picks; `None` when none or several do.
pub fn find(
    exts: &[ExtensionSchema],
    p: impl Fn(&ExtensionSchema) -> bool,
) -> Option<&ExtensionSchema> {
    let mut it = exts.iter().filter(|d| p(d));
    let first = it.next()?;
    match it.next() {
        Some(_) => None,
        None => Some(first),
    }
}

/// The static name of an entry RM type a template map holds.
fn entry_type(t: &str) -> &'static str {
    crate::schema::template::ENTRY_TYPES
        .iter()
        .find(|x| **x == t)
        .copied()
        .unwrap_or("EVALUATION")
}

/// Runs `f` on a definition's template (its own for one read from an openEHR template,
/// else the generic one) and its schema.
pub fn with_template<R>(
    def: &ExtensionSchema,
    f: impl FnOnce(&Template<'_>, &CategorySchema<'_>) -> R,
) -> R {
    match &def.template {
        Some(map) => with_own_template(def, map, f),
        None => with_generic_template(def, f),
    }
}

fn with_own_template<R>(
    def: &ExtensionSchema,
    map: &TemplateMap,
    f: impl FnOnce(&Template<'_>, &CategorySchema<'_>) -> R,
) -> R {
    let codes: Vec<Vec<(&str, &str)>> = map
        .fields
        .iter()
        .map(|tf| {
            let body = def
                .field(&tf.field)
                .map(|x| x.codes.as_slice())
                .unwrap_or_default();
            body.iter()
                .map(String::as_str)
                .zip(tf.codes.iter().map(String::as_str))
                .collect()
        })
        .collect();
    let per_entry: Vec<Vec<FieldMap<'_>>> = (0..map.entries.len())
        .map(|ei| {
            map.fields
                .iter()
                .zip(&codes)
                .filter(|(tf, _)| usize::try_from(tf.entry).ok() == Some(ei))
                .map(|(tf, codes)| {
                    let x = def.field(&tf.field);
                    FieldMap {
                        field: &tf.field,
                        path: &tf.path,
                        dv: x.map_or(Dv::Text, |x| dv(x.ty)),
                        mandatory: x.is_some_and(|x| x.required),
                        codes,
                    }
                })
                .collect()
        })
        .collect();
    let entries: Vec<EntryDef<'_>> = map
        .entries
        .iter()
        .zip(&per_entry)
        .map(|(e, fields)| EntryDef {
            archetype: &e.archetype,
            rm_type: entry_type(&e.rm_type),
            name: &e.name,
            event: e.event.as_deref(),
            state: None,
            fields,
        })
        .collect();
    let t = Template {
        id: &map.id,
        category: def.category.clone(),
        name: &def.title,
        composition_archetype: &map.composition,
        composition_category: ("433", "event"),
        time_field: None,
        time_is_date: false,
        entries: &entries,
    };
    def.with_view(|s| f(&t, s))
}

/// Runs `f` on a definition's generic template and its schema.
fn with_generic_template<R>(
    def: &ExtensionSchema,
    f: impl FnOnce(&Template<'_>, &CategorySchema<'_>) -> R,
) -> R {
    let id = template_id(def);
    let archetype = archetype_id(def);
    let paths: Vec<String> = (0..def.fields.len())
        .map(|i| format!("/data[at0001]/items[{}]", node_id(def, i)))
        .collect();
    let fields: Vec<FieldMap<'_>> = def
        .fields
        .iter()
        .zip(&paths)
        .map(|(x, path)| FieldMap {
            field: &x.name,
            path,
            dv: dv(x.ty),
            mandatory: x.required,
            codes: &[],
        })
        .collect();
    let entries = [EntryDef {
        archetype: &archetype,
        rm_type: "EVALUATION",
        name: &def.title,
        event: None,
        state: None,
        fields: &fields,
    }];
    let t = Template {
        id: &id,
        category: def.category.clone(),
        name: &def.title,
        composition_archetype: EXT_COMPOSITION,
        composition_category: ("433", "event"),
        time_field: None,
        time_is_date: false,
        entries: &entries,
    };
    def.with_view(|s| f(&t, s))
}
