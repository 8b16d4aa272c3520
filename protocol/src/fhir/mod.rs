//! FHIR R4 in and out: mapping resources to cophr entries and back. Pure, no I/O.
//!
//! # What is mapped
//! Patient → demographics; RelatedPerson → key-contacts; Flag → alerts; Consent →
//! preferences (its scope, categories, status and provision); AllergyIntolerance →
//! allergies; Condition → problems; Procedure → procedures; MedicationStatement and
//! MedicationRequest → medications; Immunization → immunisations; Observation by its
//! `category` and LOINC `code` (vital-signs, core examinations, social-history → lifestyle,
//! laboratory → lab-results, anything else → investigations); DiagnosticReport →
//! lab-results (category LAB) or investigations; FamilyMemberHistory → family-history;
//! DocumentReference and Media → documents; QuestionnaireResponse → questionnaires;
//! Appointment → appointments; Task and ServiceRequest → tasks (a ServiceRequest is a
//! referral; every task exports as a Task, a referral's carrying its ServiceRequest
//! `contained` and named by `basedOn`).
//!
//! # What is kept whole
//! Every other R4 resource type (Encounter, Practitioner, PractitionerRole, Organization,
//! Location, Medication, Device, Provenance, Claim, …) is kept with its original JSON in
//! its own extension category `ext:fhir/<type in kebab case>` (the `kept` module: one
//! category per type, so access is granted per type like any category), and exports as it
//! came in: a round trip loses no resource. Only Bundle, Binary (a document's file, stored
//! apart), OperationOutcome and Parameters are refused as [`FhirError::Unmapped`] (an
//! importer reports them as skipped).
//!
//! # Importing many resources
//! The `ingest` module holds what an importer needs to bring whole exports in: a
//! resource's [`identity`] (type and id: a changed resource amends its entry, an unchanged
//! one, `meta` aside, stores nothing: [`same_content`]), the references naming its patient
//! ([`patient_refs`]) and a [`PatientIndex`] telling the record's patient from the others.
//!
//! # Validation and codes
//! Every import is checked by [`check`] (the `validate` module: R4 elements and
//! cardinalities of the mapped types, choice types, required value sets, UCUM units
//! against LOINC codes, physiological limits; implausible values are [`Warning`]s kept in
//! the entry's `fhir-warnings`). Entries not imported from FHIR export with standard codes
//! (the [`codes`] tables: LOINC, SNOMED CT, UCUM, HL7) so that they import back into the
//! same category and fields.
//!
//! # Documents
//! A documents entry is one resource: the type it was imported as, else `Media` for an
//! image (JPEG, PNG, DICOM; with its DICOM modality) and `DocumentReference` for anything
//! else. A file kept in the entry is the attachment's `data`; a file stored apart (the
//! `file` field) is the attachment `url` `Binary/<id>`, with its type, size, title and
//! date, never its hash or key. An attachment `url` naming a Binary of the server (or a
//! Bundle's `urn:uuid:`) is left for the node to link. See [`link_file`], [`local_binary`],
//! [`binary`] and [`binary_of`] (the `attach` module).
//!
//! # What an imported entry holds
//! The body has the category's own fields, filled with what a person wants to read (names,
//! code texts, values with units, dates), checked by [`crate::schema::validate`] like any
//! other body, plus three fields every category with a FHIR mapping accepts
//! ([`crate::schema::FHIR_FIELDS`]):
//! - `fhir-resource`: the original resource, as JSON text (so the body stays a flat map
//!   within the [`Value`] depth limit, whatever the resource's nesting);
//! - `fhir-source`: the system it came from (the importer's `--source`, else the
//!   resource's `meta.source`);
//! - `fhir-full-url`: its `fullUrl` in the Bundle it came in (what other resources'
//!   references point at).
//!
//! [`export`] returns the original resource when the body holds it, so an unchanged
//! resource exports equal to what came in, compared as JSON values. What does change: the
//! JSON text is re-serialised, so whitespace and key order are not kept, and numbers are
//! compared by value (`1.50` comes back as `1.5`, which FHIR would read as a different
//! precision). Fields mapped out of the resource are a reading of it; when an entry is
//! amended in cophr its mapped fields change but `fhir-resource` is what was imported, so
//! the exporter prefers the fields for such entries (see [`export`]).
//!
//! # Why no FHIR model crate
//! A typed model would have to round-trip every element of every resource, including the
//! ones cophr does not read, extensions and primitive extensions (`_birthDate`), to keep
//! "exports as it came in". fhirbolt 0.4 does so for the R4 examples but has been
//! unmaintained since 2023; helios-fhir 0.2.7 writes invalid JSON for some choice elements
//! (which would break the round trip exactly where it matters); fhir-r4 4.2 needs a newer
//! Rust than this workspace supports. Keeping the original JSON and reading only the
//! elements mapped, with `serde_json`, round-trips exactly by construction, validates the
//! JSON type of every element it reads (an untrusted resource with a string where an
//! object belongs is refused, with the element's path), checks the elements FHIR R4
//! requires of each mapped type, and costs one dependency the workspace already has.

mod attach;
pub mod codes;
mod error;
mod ingest;
mod kept;
mod map;
mod observation;
mod read;
mod synth;
mod validate;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

pub use attach::{
    attachment_of, binary, binary_of, link_file, local_binary, set_attachment_url, BinaryLink,
    DICOM_SYSTEM, IMAGE_TYPES, MAX_BINARY_JSON, MEDIA_TYPE_SYSTEM,
};
pub use error::FhirError;
pub use ingest::{
    content_hash, identity, localise_references, patient_refs, rewrite_references, same_content,
    strip_meta, Owner, PatientIndex, PatientKey, TooManyPatients, MAX_PATIENTS,
    MAX_REFERENCE_DEPTH,
};
pub use kept::{display, is_kept, kept_category, kept_type, KEPT_PREFIX, NOT_KEPT};
pub use validate::{check, elements, Warning, BASE, ELEMENTS, VALUE_SETS};

use crate::category::Category;
use crate::ids::{EntryId, RecordId};
use crate::schema::{
    self, SchemaError, FHIR_FULL_URL, FHIR_RESOURCE, FHIR_SOURCE, FHIR_WARNINGS, MAX_FHIR_JSON,
};
use crate::value::Value;
use read::El;

/// The FHIR R4 resource types mapped to cophr categories.
pub const MAPPED_TYPES: &[&str] = &[
    "Patient",
    "RelatedPerson",
    "Flag",
    "Consent",
    "AllergyIntolerance",
    "Condition",
    "Procedure",
    "MedicationStatement",
    "MedicationRequest",
    "Immunization",
    "Observation",
    "DiagnosticReport",
    "FamilyMemberHistory",
    "DocumentReference",
    "Media",
    "QuestionnaireResponse",
    "Appointment",
    "Task",
    "ServiceRequest",
];

/// Whether a Questionnaire imports as a published questionnaire (`questionnaires`, one
/// cophr can answer and score: [`crate::care::questionnaire::Definition`]) rather than kept
/// whole like other unmapped types: when it is valid as one, or when it carries cophr's
/// scoring rule ([`crate::care::questionnaire::SCORING`]), in which case it is refused with
/// what is wrong rather than kept.
fn published_questionnaire(ty: &str, resource: &Json) -> Result<bool, FhirError> {
    use crate::care::questionnaire::{Definition, SCORING};
    if ty != "Questionnaire" {
        return Ok(false);
    }
    match Definition::from_json(resource) {
        Ok(_) => Ok(true),
        Err(e) => {
            let scored = resource
                .get("extension")
                .and_then(Json::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|x| x.get("url").and_then(Json::as_str) == Some(SCORING))
                });
            if scored {
                Err(e.into())
            } else {
                Ok(false)
            }
        }
    }
}

/// Every concrete FHIR R4 (4.0.1) resource type.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Largest FHIR input read at once (a Bundle or an NDJSON file), in bytes.
pub const MAX_INPUT: usize = 64 * 1024 * 1024;
/// Largest single resource imported, in bytes of JSON text.
pub const MAX_RESOURCE: usize = MAX_FHIR_JSON;
/// Most resources in one Bundle or NDJSON file.
pub const MAX_ITEMS: usize = 10_000;
/// Longest `--source` / `meta.source` kept, in bytes.
pub const MAX_SOURCE: usize = 1024;

/// A resource mapped to a cophr entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The category it goes to.
    pub category: Category,
    /// The entry body: mapped fields, the original resource and its source, valid for the
    /// category's schema.
    pub body: Value,
    /// The resource's type.
    pub resource_type: String,
    /// The resource's `id`, if it has one.
    pub id: Option<String>,
}

/// Where an imported resource came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportMeta<'a> {
    /// The source system (provenance), e.g. the importer's `--source`. When `None`, the
    /// resource's `meta.source` is used if it has one.
    pub source: Option<&'a str>,
    /// The resource's `fullUrl` in its Bundle.
    pub full_url: Option<&'a str>,
    /// Names of resources met in the same input (or held in the record), by how
    /// references name them (`Medication/<id>`, a `fullUrl`): a MedicationRequest or
    /// MedicationStatement naming its drug only by reference takes the referenced
    /// Medication's name, and every resolved reference to a [`NAMED_TYPES`] resource is kept
    /// with the entry ([`schema::FHIR_NAMES`]) for its summary ([`reference_names`]).
    pub names: Option<&'a Names>,
}

/// What a reference resolves to: the referenced resource's type and the name it is known
/// by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Its resource type (`Medication`, `Practitioner`, `Encounter`, …).
    pub ty: String,
    /// Its name: one line of at most [`schema::MAX_TEXT`] bytes.
    pub name: String,
}

/// Names of resources by how references name them (`Type/<id>`, a `fullUrl`).
pub type Names = HashMap<String, Named>;

/// The types whose names references are resolved to: what a clinician reading an entry
/// wants named beside it (the drug, who, where, which visit).
pub const NAMED_TYPES: &[&str] = &[
    "Medication",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Encounter",
    "Location",
];

/// Most resolved references one entry keeps ([`schema::FHIR_NAMES`]).
pub const MAX_NAMED_REFERENCES: usize = 16;

/// Longest reference resolved to a name, in bytes.
pub const MAX_NAMED_REFERENCE: usize = 256;

/// Most names an import keeps for resolving references ([`ImportMeta::names`]).
pub const MAX_NAMES: usize = 100_000;

/// The name a [`NAMED_TYPES`] resource is known by, with how references name it
/// (`Type/<id>`, its `fullUrl`): what [`ImportMeta::names`] takes. A Medication is named
/// by its `code.text`, else its first coding's display; the others as
/// [`display`] names them, an Encounter with the date it began. Nothing for any other
/// resource, or one with no name.
pub fn reference_names(resource: &Json, full_url: Option<&str>) -> Vec<(String, Named)> {
    let Some(ty) = resource["resourceType"]
        .as_str()
        .and_then(|t| NAMED_TYPES.iter().find(|n| **n == t))
    else {
        return Vec::new();
    };
    let name = if *ty == "Medication" {
        let code = &resource["code"];
        code["text"]
            .as_str()
            .or_else(|| {
                code["coding"]
                    .as_array()
                    .and_then(|c| c.iter().find_map(|c| c["display"].as_str()))
            })
            .map(str::to_owned)
    } else {
        let date = resource["period"]["start"]
            .as_str()
            .filter(|_| *ty == "Encounter")
            .and_then(|d| d.get(..10));
        match (display(resource), date) {
            (Some(n), Some(d)) => Some(format!("{n} ({d})")),
            (Some(n), None) => Some(n),
            (None, Some(d)) => Some(d.to_owned()),
            (None, None) => None,
        }
    };
    // One line: the names are kept as tab-separated lines.
    let Some(name) = name
        .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|n| !n.is_empty() && n.len() <= schema::MAX_TEXT)
    else {
        return Vec::new();
    };
    let named = Named {
        ty: (*ty).to_owned(),
        name,
    };
    let mut out = Vec::new();
    if let Some(id) = resource["id"].as_str() {
        out.push((format!("{ty}/{id}"), named.clone()));
    }
    if let Some(u) = full_url {
        out.push((u.to_owned(), named));
    }
    out.retain(|(r, _)| r.len() <= MAX_NAMED_REFERENCE && !r.contains(char::is_whitespace));
    out
}

/// The resolved references of `resource`, as an entry keeps them
/// ([`schema::FHIR_NAMES`]): a line per reference in the order met, each once, at most
/// [`MAX_NAMED_REFERENCES`]: `reference<TAB>name` for a Medication (as entries first kept
/// them), `reference<TAB>name<TAB>type` for the others. `None` when none resolves.
fn named_references(resource: &Json, names: &Names) -> Option<String> {
    fn walk<'a>(v: &'a Json, names: &Names, depth: usize, out: &mut Vec<&'a str>) {
        if depth > MAX_REFERENCE_DEPTH || out.len() >= MAX_NAMED_REFERENCES {
            return;
        }
        match v {
            Json::Object(m) => {
                for (k, x) in m {
                    match x.as_str() {
                        Some(r) if k == "reference" => {
                            if names.contains_key(r) && !out.contains(&r) {
                                out.push(r);
                            }
                        }
                        _ => walk(x, names, depth + 1, out),
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|x| walk(x, names, depth + 1, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(resource, names, 0, &mut found);
    let lines: Vec<String> = found
        .into_iter()
        .filter_map(|r| {
            let n = names.get(r)?;
            Some(if n.ty == "Medication" {
                format!("{r}\t{}", n.name)
            } else {
                format!("{r}\t{}\t{}", n.name, n.ty)
            })
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Reads the names an entry keeps ([`schema::FHIR_NAMES`]): the inverse of
/// what an import writes there. Lines that are not such a name are passed over.
pub fn kept_names(text: &str) -> Names {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let (r, name) = (parts.next()?, parts.next()?);
            let ty = parts.next().unwrap_or("Medication");
            Some((
                r.to_owned(),
                Named {
                    ty: ty.to_owned(),
                    name: name.to_owned(),
                },
            ))
        })
        .collect()
}

/// The type of a resource: a string `resourceType` naming a FHIR R4 resource type.
///
/// # Errors
/// Not an object, no string `resourceType`, or not an R4 type.
pub fn resource_type(resource: &Json) -> Result<&str, FhirError> {
    let Some(obj) = resource.as_object() else {
        return Err(FhirError::WrongType {
            path: "resource".into(),
            expected: "an object",
            got: error::kind(resource),
        });
    };
    let Some(ty) = obj.get("resourceType").and_then(Json::as_str) else {
        return Err(FhirError::NoResourceType {
            path: "resource".into(),
        });
    };
    if !R4_RESOURCE_TYPES.contains(&ty) {
        return Err(FhirError::UnknownResourceType {
            resource_type: error::clip(ty),
        });
    }
    Ok(ty)
}

/// The category a resource of this type goes to, or `None` if the type is not mapped or the
/// resource is not valid (Observations and DiagnosticReports go by their content).
pub fn category_for(resource_type: &str, resource: &Json) -> Option<Category> {
    if resource.get("resourceType").and_then(Json::as_str) != Some(resource_type) {
        return None;
    }
    import(resource, None).ok().map(|i| i.category)
}

/// The FHIR resource types entries of a category export as.
pub fn types_for(category: &Category) -> &'static [&'static str] {
    match category {
        Category::Demographics => &["Patient"],
        Category::KeyContacts => &["RelatedPerson"],
        Category::Alerts => &["Flag"],
        Category::Preferences => &["Consent"],
        Category::Allergies => &["AllergyIntolerance"],
        Category::Problems => &["Condition"],
        Category::Procedures => &["Procedure"],
        Category::Medications => &["MedicationStatement", "MedicationRequest"],
        Category::Immunisations => &["Immunization"],
        Category::VitalSigns
        | Category::Wearables
        | Category::Examinations
        | Category::Lifestyle => &["Observation"],
        Category::LabResults | Category::Investigations => &["Observation", "DiagnosticReport"],
        Category::FamilyHistory => &["FamilyMemberHistory"],
        Category::Documents => &["DocumentReference", "Media"],
        Category::Questionnaires => &["QuestionnaireResponse", "Questionnaire"],
        Category::Messages => &["Communication"],
        Category::Appointments => &["Appointment"],
        Category::Tasks => &["Task", "ServiceRequest"],
        Category::Extension(_) => {
            match kept_type(category).and_then(|t| R4_RESOURCE_TYPES.iter().position(|x| *x == t)) {
                Some(i) => &R4_RESOURCE_TYPES[i..=i],
                None => &["Basic"],
            }
        }
        Category::AboutMe => &["Basic"],
    }
}

/// Maps one resource to a cophr entry (see the module docs), with `source` as its source
/// system.
///
/// # Errors
/// See [`import_with`].
pub fn import(resource: &Json, source: Option<&str>) -> Result<Imported, FhirError> {
    import_with(
        resource,
        &ImportMeta {
            source,
            ..ImportMeta::default()
        },
    )
}

/// Maps one resource to a cophr entry: checks it (an object with a known, mapped
/// `resourceType`; a well-formed `id`; the elements FHIR R4 requires of its type; the JSON
/// types of every element read; dates well formed; at most [`MAX_RESOURCE`] bytes), maps
/// it to its category's fields and keeps the original JSON, source and full URL.
///
/// # Errors
/// The first problem found, naming the element's path; [`FhirError::Unmapped`] for a valid
/// R4 type that cophr does not map.
pub fn import_with(resource: &Json, meta: &ImportMeta<'_>) -> Result<Imported, FhirError> {
    import_as(resource, meta, true)
}

/// [`import_with`], with or without [`check`] (a resource read back from an entry was
/// checked when it was imported: its warnings are in the entry).
fn import_as(
    resource: &Json,
    meta: &ImportMeta<'_>,
    validate: bool,
) -> Result<Imported, FhirError> {
    let ty = resource_type(resource)?;
    if !MAPPED_TYPES.contains(&ty) && !is_kept(ty) {
        return Err(FhirError::Unmapped {
            resource_type: ty.to_owned(),
            mapped: MAPPED_TYPES.join(", "),
        });
    }
    let text = serde_json::to_string(resource).map_err(|e| FhirError::NotJson {
        reason: e.to_string(),
    })?;
    if text.len() > MAX_RESOURCE {
        return Err(FhirError::TooLarge {
            what: format!("the {ty} resource"),
            len: text.len(),
            max: MAX_RESOURCE,
        });
    }
    let warnings = if validate {
        validate::check(resource)?
    } else {
        Vec::new()
    };
    let root = El::new(ty, resource);
    read::check_id(&root)?;
    let meta_source = match root.get("meta")? {
        Some(m) => m.object()?.str_of("source")?,
        None => None,
    };
    let id = root.str_of("id")?.map(str::to_owned);
    let mut extra = BTreeMap::new();
    extra.insert(FHIR_RESOURCE.to_owned(), Value::Text(text));
    for (field, v) in [
        (FHIR_SOURCE, meta.source.or(meta_source)),
        (FHIR_FULL_URL, meta.full_url),
    ] {
        if let Some(v) = v {
            let Some(t) =
                map::line(v).filter(|t| t.as_text().is_some_and(|t| t.len() <= MAX_SOURCE))
            else {
                return Err(FhirError::BadValue {
                    path: field.to_owned(),
                    value: error::clip(v),
                    reason: "must be one line of at most 1024 bytes",
                });
            };
            extra.insert(field.to_owned(), t);
        }
    }
    if !warnings.is_empty() {
        let text: Vec<String> = warnings.iter().map(Warning::to_string).collect();
        if let Some(t) = map::long(&text.join("\n")) {
            extra.insert(FHIR_WARNINGS.to_owned(), t);
        }
    }
    if let Some(t) = meta
        .names
        .and_then(|n| named_references(resource, n))
        .and_then(|t| map::long(&t))
    {
        extra.insert(schema::FHIR_NAMES.to_owned(), t);
    }
    // cophr's own exports of about-me, extension categories and messages (a Basic with
    // cophr's category code, a Communication with text) import back into their category;
    // any other Basic or Communication is kept whole.
    if let Some((category, fields)) = cophr_native(ty, resource) {
        if let Ok(body) = fit(&category, fields, &extra) {
            return Ok(Imported {
                category,
                body,
                resource_type: ty.to_owned(),
                id,
            });
        }
    }
    if is_kept(ty) && !published_questionnaire(ty, resource)? {
        let mut fields = kept::fields(resource);
        fields.extend(extra);
        let category = kept_category(ty);
        let body = Value::Map(fields);
        schema::validate(&category, &body)?;
        return Ok(Imported {
            category,
            body,
            resource_type: ty.to_owned(),
            id,
        });
    }
    let (category, mut fields) = map::map(ty, &root)?;
    if category == Category::Medications {
        name_medication(resource, meta.names, &mut fields);
    }
    let body = match fit(&category, fields, &extra) {
        Ok(body) => (category, body),
        Err(e) if ty == "Observation" => {
            let (c, f) = observation::fallback(&root)?;
            match fit(&c, f, &extra) {
                Ok(body) => (c, body),
                Err(_) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Imported {
        category: body.0,
        body: body.1,
        resource_type: ty.to_owned(),
        id,
    })
}

/// A medication named only by reference (`medicationReference` without a display) takes
/// the referenced Medication's name from `names`, which the entry keeps
/// ([`schema::FHIR_NAMES`]) so that re-reading its original resource gives the same
/// fields ([`original`]).
fn name_medication(resource: &Json, names: Option<&Names>, fields: &mut BTreeMap<String, Value>) {
    let r = &resource["medicationReference"];
    let (Some(reference), true, true) = (
        r["reference"].as_str(),
        r["display"].is_null(),
        resource["medicationCodeableConcept"].is_null(),
    ) else {
        return;
    };
    let Some(named) = names
        .and_then(|n| n.get(reference))
        .filter(|n| n.ty == "Medication")
    else {
        return;
    };
    if let Some(line) = map::line(&named.name) {
        fields.insert("medication".to_owned(), line);
    }
}

/// Most fields read back from cophr's extensions on one `Basic`.
const MAX_NATIVE_FIELDS: usize = 64;

/// The category and fields of a resource cophr writes for categories FHIR has no resource
/// for: a `Basic` coded with cophr's category (about-me, an extension category), its fields
/// in cophr's extensions; a `Communication` with text (messages). `None` for anything else.
fn cophr_native(ty: &str, resource: &Json) -> Option<(Category, BTreeMap<String, Value>)> {
    let mut fields = BTreeMap::new();
    match ty {
        "Basic" => {
            let code = resource["code"]["coding"]
                .as_array()?
                .iter()
                .find_map(|c| {
                    (c["system"] == codes::COPHR_CATEGORY)
                        .then(|| c["code"].as_str())
                        .flatten()
                })?;
            let category: Category = code.parse().ok()?;
            if category != Category::AboutMe && !matches!(category, Category::Extension(_)) {
                return None;
            }
            let prefix = format!("{}/", codes::COPHR_FIELD);
            for x in resource["extension"].as_array().into_iter().flatten() {
                let Some(name) = x["url"].as_str().and_then(|u| u.strip_prefix(&prefix)) else {
                    continue;
                };
                let value = match (&x["valueString"], &x["valueDecimal"]) {
                    (Json::String(t), _) => map::long(t)?,
                    (_, Json::Number(n)) => match n.as_i64() {
                        Some(i) => Value::Int(i),
                        None => Value::Float(n.as_f64()?),
                    },
                    _ => continue,
                };
                if fields.len() < MAX_NATIVE_FIELDS {
                    fields.insert(name.to_owned(), value);
                }
            }
            Some((category, fields))
        }
        "Communication" => {
            let text: Vec<&str> = resource["payload"]
                .as_array()?
                .iter()
                .filter_map(|p| p["contentString"].as_str())
                .collect();
            if text.is_empty() {
                return None;
            }
            fields.insert("text".to_owned(), map::long(&text.join("\n"))?);
            if let Some(t) = resource["topic"]["text"].as_str() {
                fields.insert("subject".to_owned(), map::line(t)?);
            }
            Some((Category::Messages, fields))
        }
        _ => None,
    }
}

/// Fits mapped fields to the category's schema: a field whose value the schema refuses
/// (a unit cophr cannot convert, an implausible value, a date out of order) is dropped, since
/// the original resource keeps it. Fails if what remains is still invalid (e.g. an
/// Observation whose only measurement was dropped).
fn fit(
    category: &Category,
    mut fields: BTreeMap<String, Value>,
    extra: &BTreeMap<String, Value>,
) -> Result<Value, SchemaError> {
    fields.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let required = |f: &str| {
        schema::schema(category)
            .and_then(|s| s.field(f))
            .is_some_and(|s| s.required)
    };
    for _ in 0..32 {
        let body = Value::Map(fields);
        let err = match schema::validate(category, &body) {
            Ok(()) => return Ok(body),
            Err(e) => e,
        };
        let Value::Map(m) = body else {
            return Err(err);
        };
        fields = m;
        let drop: Vec<&str> = match &err {
            SchemaError::WrongType { field, .. }
            | SchemaError::EmptyField { field, .. }
            | SchemaError::TooLong { field, .. }
            | SchemaError::ControlCharacters { field, .. }
            | SchemaError::BadCode { field, .. }
            | SchemaError::BadUnit { field, .. }
            | SchemaError::OutOfRange { field, .. }
            | SchemaError::BadDate { field, .. }
                if !required(field) && !extra.contains_key(field) =>
            {
                vec![field.as_str()]
            }
            SchemaError::Together { present, .. } => vec![present.as_str()],
            SchemaError::Rule(_) => match category {
                Category::Problems => vec!["resolved"],
                Category::Medications => vec!["stop"],
                Category::VitalSigns | Category::Wearables => vec!["systolic", "diastolic"],
                Category::Documents => vec!["data", "media-type"],
                _ => return Err(err),
            },
            _ => return Err(err),
        };
        let drop: Vec<String> = drop.into_iter().map(str::to_owned).collect();
        if !drop.iter().any(|d| fields.contains_key(d)) {
            return Err(err);
        }
        for d in drop {
            fields.remove(&d);
        }
    }
    Err(SchemaError::Rule(format!(
        "{category}: the mapped fields do not fit the schema"
    )))
}

/// Which `id` an exported resource carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdPolicy {
    /// The original resource's `id` (absent if it had none); synthesised resources get the
    /// entry id. Keeps references between exported resources working.
    #[default]
    Original,
    /// The entry id (`e-…`), for a FHIR server where the entry is the resource.
    Entry,
}

/// How to export an entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportMeta {
    /// Which `id` the resource carries.
    pub ids: IdPolicy,
    /// Point the resource's patient reference (`subject` or `patient`) at
    /// `Patient/<record>`, keeping its `display`. Off by default, so an unchanged resource
    /// exports equal.
    pub link_patient: bool,
}

/// The element naming the patient, by resource type.
fn patient_element(ty: &str) -> Option<&'static str> {
    match ty {
        "AllergyIntolerance"
        | "Immunization"
        | "FamilyMemberHistory"
        | "RelatedPerson"
        | "Consent" => Some("patient"),
        "Task" => Some("for"),
        // An Appointment names its patient among its participants.
        "Patient" | "Basic" | "Appointment" => None,
        _ => Some("subject"),
    }
}

/// The original resource an entry was imported from, if the body holds it and its mapped
/// fields are still the ones mapped from it (an amended entry's are not).
pub fn original(category: &Category, body: &Value) -> Option<Json> {
    let text = body.get(FHIR_RESOURCE)?.as_text()?;
    let json: Json = serde_json::from_str(text).ok()?;
    // The names its references were given on import, so it reads back the same.
    let names: Option<Names> = body
        .get(schema::FHIR_NAMES)
        .and_then(Value::as_text)
        .map(kept_names);
    // Not validated again (it was on import; a rule added since does not change what an
    // entry exports as): its warnings are the entry's own.
    let mut again = import_as(
        &json,
        &ImportMeta {
            source: body.get(FHIR_SOURCE).and_then(Value::as_text),
            full_url: body.get(FHIR_FULL_URL).and_then(Value::as_text),
            names: names.as_ref(),
        },
        false,
    )
    .ok()?;
    if let (Value::Map(m), Some(w)) = (&mut again.body, body.get(FHIR_WARNINGS)) {
        m.insert(FHIR_WARNINGS.to_owned(), w.clone());
    }
    // A file stored apart is linked by the node that held the Binary the resource named
    // (its `file`, media type and DICOM header): the rest is compared.
    let same = if attach::has_file(body) {
        attach::without_file(&again.body) == attach::without_file(body)
    } else {
        again.body == *body
    };
    (&again.category == category && same).then_some(json)
}

/// Exports an entry as a FHIR R4 resource: the original JSON when the body holds it and is
/// unchanged since import ([`original`]), else a resource built from the fields (for every
/// category). `patient` is the record; `entry` the entry's id.
///
/// # Errors
/// A body that is not a map.
pub fn export(
    patient: &RecordId,
    entry: &EntryId,
    category: &Category,
    body: &Value,
    meta: &ExportMeta,
) -> Result<Json, FhirError> {
    if !matches!(body, Value::Map(_)) {
        return Err(FhirError::WrongType {
            path: "body".into(),
            expected: "a map of fields",
            got: "something else",
        });
    }
    let mut resource = match original(category, body) {
        Some(r) => {
            let mut r = r;
            if meta.ids == IdPolicy::Entry {
                r["id"] = Json::String(entry.to_string());
            }
            r
        }
        None => synth::resource(patient, entry, category, body),
    };
    link_file(&mut resource, &entry.to_string(), category, body);
    if meta.link_patient {
        let ty = resource["resourceType"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(el) = patient_element(&ty) {
            let display = resource.get(el).and_then(|r| r.get("display")).cloned();
            let mut r = serde_json::json!({"reference": format!("Patient/{patient}")});
            if let Some(d) = display {
                r["display"] = d;
            }
            resource[el] = r;
        }
    }
    Ok(resource)
}

/// The `fullUrl` to give an exported entry: the one it came with, else a `urn:uuid:`
/// derived from the entry id.
pub fn full_url(entry: &EntryId, body: &Value) -> String {
    if let Some(u) = body.get(FHIR_FULL_URL).and_then(Value::as_text) {
        return u.to_owned();
    }
    urn_uuid(entry.as_bytes())
}

/// A `urn:uuid:` made of the first 16 of `bytes` (an id or hash of at least 16 bytes).
pub fn urn_uuid(bytes: &[u8; 32]) -> String {
    let hex: String = bytes[..16].iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A Bundle of type `collection` holding `entries` (`fullUrl`, resource).
pub fn collection(entries: Vec<(String, Json)>) -> Json {
    let entries: Vec<Json> = entries
        .into_iter()
        .map(|(u, r)| serde_json::json!({"fullUrl": u, "resource": r}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// One resource of a Bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleItem {
    /// Its position, e.g. `Bundle.entry[3]`.
    pub path: String,
    /// `entry.fullUrl`.
    pub full_url: Option<String>,
    /// `entry.request.method` (transaction and batch Bundles).
    pub method: Option<String>,
    /// The resource.
    pub resource: Json,
}

/// Bundle types [`bundle_items`] accepts.
pub const BUNDLE_TYPES: &[&str] = &[
    "transaction",
    "batch",
    "collection",
    "document",
    "searchset",
];

/// The Bundle's `type`, checked against [`BUNDLE_TYPES`].
///
/// # Errors
/// Not a Bundle, no `type`, or a type that cannot be imported.
pub fn bundle_type(bundle: &Json) -> Result<&str, FhirError> {
    if resource_type(bundle)? != "Bundle" {
        return Err(FhirError::BadValue {
            path: "resourceType".into(),
            value: error::clip(bundle["resourceType"].as_str().unwrap_or_default()),
            reason: "expected a Bundle",
        });
    }
    let ty = El::new("Bundle", bundle).req_code("type")?;
    if !BUNDLE_TYPES.contains(&ty) {
        return Err(FhirError::UnsupportedBundle {
            bundle_type: error::clip(ty),
            accepted: "transaction, batch, collection, document, searchset",
        });
    }
    Ok(ty)
}

/// The resources of a transaction, batch, collection, document or searchset Bundle, in
/// order. In a transaction or batch every entry must be a create (`POST`) or update
/// (`PUT`) with a resource; in the others every entry must have a resource.
///
/// # Errors
/// A Bundle that is not one of those types, has more than [`MAX_ITEMS`] entries, or an
/// entry that is malformed or asks for something else (`GET`, `DELETE`, `PATCH`).
pub fn bundle_items(bundle: &Json) -> Result<Vec<BundleItem>, FhirError> {
    let ty = bundle_type(bundle)?;
    let b = El::new("Bundle", bundle);
    let entries = b.list("entry")?;
    if entries.len() > MAX_ITEMS {
        return Err(FhirError::TooMany {
            what: "the Bundle".into(),
            count: entries.len(),
            max: MAX_ITEMS,
        });
    }
    let request = matches!(ty, "transaction" | "batch");
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let e = e.object()?;
        let full_url = e.str_of("fullUrl")?.map(str::to_owned);
        let method = if request {
            let r = e.req("request")?.object()?;
            let m = r.req_code("method")?;
            r.req_str("url")?;
            if !matches!(m, "POST" | "PUT") {
                return Err(FhirError::Unsupported {
                    path: format!("{}.request.method", e.path),
                    reason: format!(
                        "only POST and PUT entries can be imported (got {})",
                        error::clip(m)
                    ),
                });
            }
            Some(m.to_owned())
        } else {
            None
        };
        let resource = e.req("resource")?;
        resource.clone().object()?;
        out.push(BundleItem {
            path: e.path.clone(),
            full_url,
            method,
            resource: resource.v.clone(),
        });
    }
    Ok(out)
}

/// Parses FHIR JSON input (a resource or Bundle), at most [`MAX_INPUT`] bytes.
///
/// # Errors
/// Too large, not UTF-8, or not JSON.
pub fn parse(bytes: &[u8]) -> Result<Json, FhirError> {
    if bytes.len() > MAX_INPUT {
        return Err(FhirError::TooLarge {
            what: "the input".into(),
            len: bytes.len(),
            max: MAX_INPUT,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| FhirError::NotJson {
        reason: e.to_string(),
    })
}

/// Parses NDJSON: one resource (a JSON object) per line; blank lines are skipped.
///
/// # Errors
/// Too large, more than [`MAX_ITEMS`] lines, or a line that is not a JSON object
/// ([`FhirError::Line`] with its number).
pub fn parse_ndjson(bytes: &[u8]) -> Result<Vec<Json>, FhirError> {
    if bytes.len() > MAX_INPUT {
        return Err(FhirError::TooLarge {
            what: "the input".into(),
            len: bytes.len(),
            max: MAX_INPUT,
        });
    }
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = |error| FhirError::Line {
            line: i + 1,
            error: Box::new(error),
        };
        if out.len() >= MAX_ITEMS {
            return Err(FhirError::TooMany {
                what: "the NDJSON input".into(),
                count: out.len() + 1,
                max: MAX_ITEMS,
            });
        }
        let j: Json = serde_json::from_slice(line).map_err(|e| {
            at(FhirError::NotJson {
                reason: e.to_string(),
            })
        })?;
        if !j.is_object() {
            return Err(at(FhirError::WrongType {
                path: "resource".into(),
                expected: "an object",
                got: error::kind(&j),
            }));
        }
        out.push(j);
    }
    Ok(out)
}

/// What a FHIR search matches an entry by.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchKeys {
    /// `(system, code)` of the resource's main code (`code`, `vaccineCode`, medication).
    pub codes: Vec<(Option<String>, String)>,
    /// The clinically relevant date or date-time (effective, onset, performed, …).
    pub date: Option<String>,
    /// Codes of the resource's `category` (e.g. `vital-signs`, `laboratory`).
    pub category_codes: Vec<String>,
}

/// The search keys of an entry: from the original resource when the body holds one, else
/// from its fields.
pub fn search_keys(category: &Category, body: &Value) -> SearchKeys {
    if let Some(j) = body
        .get(FHIR_RESOURCE)
        .and_then(Value::as_text)
        .and_then(|t| serde_json::from_str::<Json>(t).ok())
    {
        return keys_of(&j);
    }
    let mut keys = SearchKeys::default();
    for f in [
        "measured-at",
        "collected",
        "completed",
        "date",
        "onset",
        "start",
        "reported",
        "date-of-birth",
    ] {
        if let Some(d) = body.get(f).and_then(Value::as_text) {
            keys.date = Some(d.to_owned());
            break;
        }
    }
    keys.category_codes = synth::observation_category(category)
        .map(|c| vec![c.to_owned()])
        .unwrap_or_default();
    keys
}

fn keys_of(r: &Json) -> SearchKeys {
    let mut keys = SearchKeys::default();
    let codings = |cc: &Json| -> Vec<(Option<String>, String)> {
        cc.get("coding")
            .and_then(Json::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| {
                        let code = c.get("code")?.as_str()?.to_owned();
                        let system = c.get("system").and_then(Json::as_str).map(str::to_owned);
                        Some((system, code))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for k in [
        "code",
        "vaccineCode",
        "medicationCodeableConcept",
        "relationship",
    ] {
        if let Some(cc) = r.get(k) {
            keys.codes.extend(codings(cc));
        }
    }
    if let Some(c) = r.get("category") {
        let all: Vec<&Json> = match c {
            Json::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for cc in all {
            keys.category_codes
                .extend(codings(cc).into_iter().map(|(_, c)| c));
        }
    }
    for k in [
        "effectiveDateTime",
        "effectiveInstant",
        "effectivePeriod",
        "onsetDateTime",
        "onsetPeriod",
        "performedDateTime",
        "performedPeriod",
        "occurrenceDateTime",
        "createdDateTime",
        "authoredOn",
        "authored",
        "recordedDate",
        "dateTime",
        "date",
        "issued",
        "birthDate",
    ] {
        let d = match r.get(k) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Object(p)) => p.get("start").and_then(Json::as_str).map(str::to_owned),
            _ => None,
        };
        if d.is_some() {
            keys.date = d;
            break;
        }
    }
    keys
}
