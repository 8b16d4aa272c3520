//! Every official FHIR R4 example (hl7.fhir.r4.examples 4.0.1) of a mapped resource type,
//! and every resource of the IPS example Bundles (hl7.fhir.uv.ips 2.0.0), imports into a
//! valid cophr body and exports back equal (compared as JSON values). Test data that nobody
//! here wrote, fetched by `bash .ci/deps` into `target/test-data/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cophr_protocol::fhir::{self, ExportMeta, IdPolicy};
use cophr_protocol::{schema, EntryId, RecordId};
use serde_json::Value as Json;

fn package(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let dir = root.join("target/test-data").join(name).join("package");
    assert!(
        dir.is_dir(),
        "FHIR test data missing at {}: run `bash .ci/deps` first (it fetches {name} from npm)",
        dir.display()
    );
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read test data")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn ids() -> (RecordId, EntryId) {
    (cophr_protocol::ActorId([7; 32]), EntryId([9; 32]))
}

/// Imports and exports one resource; returns its category.
fn round_trip(name: &str, resource: &Json) -> String {
    let imported = fhir::import(resource, Some("test"))
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    schema::validate(&imported.category, &imported.body)
        .unwrap_or_else(|e| panic!("{name}: body invalid: {e}"));
    let (record, entry) = ids();
    let out = fhir::export(
        &record,
        &entry,
        &imported.category,
        &imported.body,
        &ExportMeta::default(),
    )
    .unwrap_or_else(|e| panic!("{name}: export failed: {e}"));
    assert_eq!(&out, resource, "{name}: exported differently");
    let summary = schema::summary(&imported.category, &imported.body);
    assert!(!summary.is_empty());
    // With entry ids, only `id` changes.
    let mut with_ids = fhir::export(
        &record,
        &entry,
        &imported.category,
        &imported.body,
        &ExportMeta {
            ids: IdPolicy::Entry,
            link_patient: false,
        },
    )
    .expect("export with entry ids");
    assert_eq!(with_ids["id"], entry.to_string());
    with_ids["id"] = resource["id"].clone();
    if resource.get("id").is_none() {
        with_ids.as_object_mut().expect("object").remove("id");
    }
    assert_eq!(&with_ids, resource, "{name}: more than the id changed");
    imported.category.to_string()
}

#[test]
fn every_r4_example_of_a_mapped_type_round_trips() {
    let dir = package("hl7.fhir.r4.examples");
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_category: BTreeMap<String, usize> = BTreeMap::new();
    let mut skipped = 0;
    for path in json_files(&dir) {
        let bytes = std::fs::read(&path).expect("read example");
        // Parsing all 5,300 files (most are large terminology resources) dominates the run
        // time of a debug build: look at the declared type first (the examples put
        // `resourceType` first), and parse only the mapped ones.
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        let declared = head
            .split("\"resourceType\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1));
        if declared.is_some_and(|d| !fhir::MAPPED_TYPES.contains(&d)) {
            skipped += 1;
            continue;
        }
        let Ok(resource) = fhir::parse(&bytes) else {
            skipped += 1;
            continue;
        };
        let Some(ty) = resource.get("resourceType").and_then(Json::as_str) else {
            skipped += 1;
            continue;
        };
        if !fhir::MAPPED_TYPES.contains(&ty) {
            skipped += 1;
            continue;
        }
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let cat = round_trip(&name, &resource);
        *by_type.entry(ty.to_owned()).or_default() += 1;
        *by_category.entry(cat).or_default() += 1;
    }
    let total: usize = by_type.values().sum();
    println!("R4 examples imported and exported equal: {total} (other files: {skipped})");
    println!("by type: {by_type:?}");
    println!("by category: {by_category:?}");
    for ty in fhir::MAPPED_TYPES {
        assert!(by_type.contains_key(*ty), "no R4 example of {ty} was found");
    }
    assert!(total >= 200, "only {total} examples of mapped types found");
}

#[test]
fn every_resource_of_the_ips_bundles_round_trips() {
    let dir = package("hl7.fhir.uv.ips").join("example");
    let mut imported = 0;
    let mut kept = 0;
    let mut bundles = 0;
    for path in json_files(&dir) {
        let resource = fhir::parse(&std::fs::read(&path).expect("read")).expect("json");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if resource["resourceType"] == "Bundle" {
            bundles += 1;
            for item in fhir::bundle_items(&resource).expect("bundle") {
                let ty = item.resource["resourceType"].as_str().unwrap_or_default();
                // Mapped types and the ones kept whole (Organization, Practitioner,
                // Medication, …): nothing of a Bundle is lost.
                assert!(
                    fhir::MAPPED_TYPES.contains(&ty) || fhir::is_kept(ty),
                    "{name}: {ty} would be lost"
                );
                let cat = round_trip(&format!("{name} {}", item.path), &item.resource);
                if fhir::is_kept(ty) {
                    kept += 1;
                    assert!(cat.starts_with(fhir::KEPT_PREFIX), "{cat}");
                }
                imported += 1;
            }
        } else if fhir::MAPPED_TYPES
            .contains(&resource["resourceType"].as_str().unwrap_or_default())
        {
            round_trip(&name, &resource);
            imported += 1;
        }
    }
    println!("IPS: {bundles} bundles, {imported} resources round-tripped ({kept} kept whole)");
    assert!(
        bundles >= 5 && imported >= 40 && kept >= 5,
        "{bundles} bundles, {imported} resources, {kept} kept whole"
    );
}

fn mapped(file: &str) -> (String, cophr_protocol::Value) {
    let path = package("hl7.fhir.r4.examples").join(file);
    let r = fhir::parse(&std::fs::read(&path).expect("read")).expect("json");
    let i = fhir::import(&r, None).expect("import");
    (i.category.to_string(), i.body)
}

fn text<'a>(b: &'a cophr_protocol::Value, k: &str) -> &'a str {
    b.get(k)
        .and_then(cophr_protocol::Value::as_text)
        .unwrap_or_default()
}

#[test]
fn mapped_fields_say_what_the_resource_says() {
    let (c, b) = mapped("Patient-example.json");
    assert_eq!(c, "demographics");
    assert_eq!(text(&b, "surname"), "Chalmers");
    assert_eq!(text(&b, "forename"), "Peter");
    assert_eq!(text(&b, "date-of-birth"), "1974-12-25");
    assert_eq!(text(&b, "gender"), "male");

    let (c, b) = mapped("Observation-blood-pressure.json");
    assert_eq!(c, "vital-signs");
    assert_eq!(
        b.get("systolic").map(cophr_protocol::Value::to_json),
        Some(serde_json::json!({"value": 107, "unit": "mm[Hg]"}))
    );
    assert_eq!(
        b.get("diastolic").map(cophr_protocol::Value::to_json),
        Some(serde_json::json!({"value": 60, "unit": "mm[Hg]"}))
    );
    assert_eq!(
        schema::summary(&"vital-signs".parse().expect("cat"), &b),
        "BP 107/60 mm[Hg]"
    );

    let (c, b) = mapped("Observation-body-height.json");
    assert_eq!(c, "examinations");
    assert_eq!(
        b.get("height").map(cophr_protocol::Value::to_json),
        Some(serde_json::json!({"value": 169.926, "unit": "cm"})),
        "66.9 [in_i] converted"
    );
    assert_eq!(text(&b, "fhir-source"), "", "no source given, none in meta");
}
