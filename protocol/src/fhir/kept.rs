//! Resource types cophr does not map to a built-in category, kept whole: each type has its
//! own extension category `ext:fhir/<type in kebab case>` (e.g. `ext:fhir/encounter`,
//! `ext:fhir/practitioner-role`), so access can be granted per type like any category. The
//! entry's body is the original resource (`fhir-resource`), its source and `fullUrl` (the
//! [`crate::schema::FHIR_FIELDS`]) and, when the resource has one, a `display` text (its
//! code's text, name or title) for summaries.

use serde_json::Value as Json;

use crate::category::Category;
use crate::value::Value;

/// The namespace of the kept types' categories.
pub const KEPT_PREFIX: &str = "ext:fhir/";

/// Types never kept as entries: containers and messages about the exchange itself, and
/// `Binary` (a document's file, stored apart).
pub const NOT_KEPT: &[&str] = &["Bundle", "Binary", "OperationOutcome", "Parameters"];

/// Whether a resource type is kept whole (an R4 type not mapped and not in [`NOT_KEPT`]).
pub fn is_kept(ty: &str) -> bool {
    super::R4_RESOURCE_TYPES.contains(&ty)
        && !super::MAPPED_TYPES.contains(&ty)
        && !NOT_KEPT.contains(&ty)
}

fn kebab(ty: &str) -> String {
    let mut out = String::with_capacity(ty.len() + 4);
    for (i, c) in ty.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The category a kept type's resources go to.
pub fn kept_category(ty: &str) -> Category {
    Category::Extension(format!("{KEPT_PREFIX}{}", kebab(ty)))
}

/// The kept resource type a category holds, if it is one of the kept types' categories.
pub fn kept_type(category: &Category) -> Option<&'static str> {
    let Category::Extension(name) = category else {
        return None;
    };
    let local = name.strip_prefix(KEPT_PREFIX)?;
    super::R4_RESOURCE_TYPES
        .iter()
        .find(|t| is_kept(t) && kebab(t) == local)
        .copied()
}

/// A short text naming a kept resource, for summaries: its code's text or first display,
/// its name, or its title.
pub fn display(resource: &Json) -> Option<String> {
    let concept = |cc: &Json| -> Option<String> {
        cc.get("text")
            .and_then(Json::as_str)
            .or_else(|| {
                cc.get("coding")?
                    .as_array()?
                    .iter()
                    .find_map(|c| c.get("display")?.as_str())
            })
            .map(str::to_owned)
    };
    let name = |n: &Json| -> Option<String> {
        match n {
            Json::String(s) => Some(s.clone()),
            Json::Array(a) => a.iter().find_map(|n| {
                if let Some(t) = n.get("text").and_then(Json::as_str) {
                    return Some(t.to_owned());
                }
                let given: Vec<&str> = n
                    .get("given")
                    .and_then(Json::as_array)
                    .map(|g| g.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                let family = n.get("family").and_then(Json::as_str);
                let parts: Vec<&str> = given.into_iter().chain(family).collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }),
            _ => None,
        }
    };
    let found = resource
        .get("code")
        .and_then(concept)
        .or_else(|| resource.get("name").and_then(name))
        .or_else(|| {
            resource
                .get("title")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            resource
                .get("type")
                .and_then(|t| match t {
                    Json::Array(a) => a.first(),
                    other => Some(other),
                })
                .and_then(concept)
        })?;
    let one_line: String = found
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let t = one_line.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// The body fields of a kept resource (besides the FHIR fields).
pub(super) fn fields(resource: &Json) -> std::collections::BTreeMap<String, Value> {
    let mut m = std::collections::BTreeMap::new();
    if let Some(d) = display(resource) {
        m.insert("display".to_owned(), Value::Text(d));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_types_have_their_own_valid_category_and_back() {
        let mut n = 0;
        for ty in super::super::R4_RESOURCE_TYPES {
            if !is_kept(ty) {
                continue;
            }
            n += 1;
            let c = kept_category(ty);
            let parsed: Category = c.name().parse().expect("a valid extension name");
            assert_eq!(parsed, c);
            assert_eq!(kept_type(&c), Some(*ty));
        }
        assert!(n > 100, "{n}");
        assert_eq!(
            kept_category("PractitionerRole").name(),
            "ext:fhir/practitioner-role"
        );
        assert!(!is_kept("Bundle") && !is_kept("Observation") && !is_kept("Spaceship"));
        assert_eq!(
            kept_type(&Category::Extension("ext:fhir/nothing".into())),
            None
        );
    }

    #[test]
    fn display_reads_code_name_or_title() {
        let med = serde_json::json!({"resourceType": "Medication",
            "code": {"coding": [{"display": "Metformin 500 MG"}]}});
        assert_eq!(display(&med).as_deref(), Some("Metformin 500 MG"));
        let prac = serde_json::json!({"resourceType": "Practitioner",
            "name": [{"family": "Smith", "given": ["Anna", "B"]}]});
        assert_eq!(display(&prac).as_deref(), Some("Anna B Smith"));
        let org = serde_json::json!({"resourceType": "Organization", "name": "St Elsewhere"});
        assert_eq!(display(&org).as_deref(), Some("St Elsewhere"));
        assert_eq!(display(&serde_json::json!({"resourceType": "Basic"})), None);
    }

    #[test]
    fn a_kept_resource_summarises_as_its_display() {
        let med = serde_json::json!({"resourceType": "Medication", "id": "m",
            "code": {"text": "Metformin 500 MG"}});
        let i = super::super::import(&med, Some("GP")).expect("kept");
        assert_eq!(i.category.name(), "ext:fhir/medication");
        assert_eq!(
            crate::schema::summary(&i.category, &i.body),
            "display: Metformin 500 MG"
        );
    }
}
