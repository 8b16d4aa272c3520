//! Validation of a mapped resource against FHIR R4 before it is stored: the elements of its
//! type (unknown ones refused), their cardinalities, choice-type exclusivity, status codes
//! and the other required value sets, and for Observations the UCUM unit against the LOINC
//! code and the value against physiological limits (impossible: refused; implausible:
//! a [`Warning`], kept with the entry).
//!
//! The element tables below are the R4 (4.0.1) definitions of each mapped type's own
//! elements, in a compact notation: `name` 0..1, `name!` 1..1, `name*` 0..*, `name+`
//! 1..*, `name[x]:T|U` a choice of types (`!` after `[x]` when required). Every resource
//! also has the DomainResource elements ([`BASE`]); `_name` (a primitive's extensions) is
//! accepted for every element.

use serde_json::{Map, Value as Json};

use super::codes::{self, LOINC};
use super::error::{clip, FhirError};

/// A finding that does not refuse the resource (e.g. an implausible value), shown in the
/// OperationOutcome and kept with the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The element, e.g. `Observation.valueQuantity.value`.
    pub path: String,
    /// What is odd about it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Elements every resource has (Resource and DomainResource).
pub const BASE: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];

/// The R4 elements of each mapped type (see the module docs for the notation).
pub const ELEMENTS: &[(&str, &[&str])] = &[
    (
        "Patient",
        &[
            "identifier*",
            "active",
            "name*",
            "telecom*",
            "gender",
            "birthDate",
            "deceased[x]:Boolean|DateTime",
            "address*",
            "maritalStatus",
            "multipleBirth[x]:Boolean|Integer",
            "photo*",
            "contact*",
            "communication*",
            "generalPractitioner*",
            "managingOrganization",
            "link*",
        ],
    ),
    (
        "RelatedPerson",
        &[
            "identifier*",
            "active",
            "patient!",
            "relationship*",
            "name*",
            "telecom*",
            "gender",
            "birthDate",
            "address*",
            "photo*",
            "period",
            "communication*",
        ],
    ),
    (
        "Flag",
        &[
            "identifier*",
            "status!",
            "category*",
            "code!",
            "subject!",
            "period",
            "encounter",
            "author",
        ],
    ),
    (
        "Consent",
        &[
            "identifier*",
            "status!",
            "scope!",
            "category+",
            "patient",
            "dateTime",
            "performer*",
            "organization*",
            "source[x]:Attachment|Reference",
            "policy*",
            "policyRule",
            "verification*",
            "provision",
        ],
    ),
    (
        "AllergyIntolerance",
        &[
            "identifier*",
            "clinicalStatus",
            "verificationStatus",
            "type",
            "category*",
            "criticality",
            "code",
            "patient!",
            "encounter",
            ONSET_X,
            "recordedDate",
            "recorder",
            "asserter",
            "lastOccurrence",
            "note*",
            "reaction*",
        ],
    ),
    (
        "Condition",
        &[
            "identifier*",
            "clinicalStatus",
            "verificationStatus",
            "category*",
            "severity",
            "code",
            "bodySite*",
            "subject!",
            "encounter",
            ONSET_X,
            ABATEMENT_X,
            "recordedDate",
            "recorder",
            "asserter",
            "stage*",
            "evidence*",
            "note*",
        ],
    ),
    (
        "Procedure",
        &[
            "identifier*",
            "instantiatesCanonical*",
            "instantiatesUri*",
            "basedOn*",
            "partOf*",
            "status!",
            "statusReason",
            "category",
            "code",
            "subject!",
            "encounter",
            "performed[x]:DateTime|Period|String|Age|Range",
            "recorder",
            "asserter",
            "performer*",
            "location",
            "reasonCode*",
            "reasonReference*",
            "bodySite*",
            "outcome",
            "report*",
            "complication*",
            "complicationDetail*",
            "followUp*",
            "note*",
            "focalDevice*",
            "usedReference*",
            "usedCode*",
        ],
    ),
    (
        "MedicationStatement",
        &[
            "identifier*",
            "basedOn*",
            "partOf*",
            "status!",
            "statusReason*",
            "category",
            "medication[x]!:CodeableConcept|Reference",
            "subject!",
            "context",
            "effective[x]:DateTime|Period",
            "dateAsserted",
            "informationSource",
            "derivedFrom*",
            "reasonCode*",
            "reasonReference*",
            "note*",
            "dosage*",
        ],
    ),
    (
        "MedicationRequest",
        &[
            "identifier*",
            "status!",
            "statusReason",
            "intent!",
            "category*",
            "priority",
            "doNotPerform",
            "reported[x]:Boolean|Reference",
            "medication[x]!:CodeableConcept|Reference",
            "subject!",
            "encounter",
            "supportingInformation*",
            "authoredOn",
            "requester",
            "performer",
            "performerType",
            "recorder",
            "reasonCode*",
            "reasonReference*",
            "instantiatesCanonical*",
            "instantiatesUri*",
            "basedOn*",
            "groupIdentifier",
            "courseOfTherapyType",
            "insurance*",
            "note*",
            "dosageInstruction*",
            "dispenseRequest",
            "substitution",
            "priorPrescription",
            "detectedIssue*",
            "eventHistory*",
        ],
    ),
    (
        "Immunization",
        &[
            "identifier*",
            "status!",
            "statusReason",
            "vaccineCode!",
            "patient!",
            "encounter",
            "occurrence[x]!:DateTime|String",
            "recorded",
            "primarySource",
            "reportOrigin",
            "location",
            "manufacturer",
            "lotNumber",
            "expirationDate",
            "site",
            "route",
            "doseQuantity",
            "performer*",
            "note*",
            "reasonCode*",
            "reasonReference*",
            "isSubpotent",
            "subpotentReason*",
            "education*",
            "programEligibility*",
            "fundingSource",
            "reaction*",
            "protocolApplied*",
        ],
    ),
    (
        "Observation",
        &[
            "identifier*",
            "basedOn*",
            "partOf*",
            "status!",
            "category*",
            "code!",
            "subject",
            "focus*",
            "encounter",
            "effective[x]:DateTime|Period|Timing|Instant",
            "issued",
            "performer*",
            OBSERVATION_VALUE,
            "dataAbsentReason",
            "interpretation*",
            "note*",
            "bodySite",
            "method",
            "specimen",
            "device",
            "referenceRange*",
            "hasMember*",
            "derivedFrom*",
            "component*",
        ],
    ),
    (
        "DiagnosticReport",
        &[
            "identifier*",
            "basedOn*",
            "status!",
            "category*",
            "code!",
            "subject",
            "encounter",
            "effective[x]:DateTime|Period",
            "issued",
            "performer*",
            "resultsInterpreter*",
            "specimen*",
            "result*",
            "imagingStudy*",
            "media*",
            "conclusion",
            "conclusionCode*",
            "presentedForm*",
        ],
    ),
    (
        "FamilyMemberHistory",
        &[
            "identifier*",
            "instantiatesCanonical*",
            "instantiatesUri*",
            "status!",
            "dataAbsentReason",
            "patient!",
            "date",
            "name",
            "relationship!",
            "sex",
            "born[x]:Period|Date|String",
            "age[x]:Age|Range|String",
            "estimatedAge",
            "deceased[x]:Boolean|Age|Range|Date|String",
            "reasonCode*",
            "reasonReference*",
            "note*",
            "condition*",
        ],
    ),
    (
        "DocumentReference",
        &[
            "masterIdentifier",
            "identifier*",
            "status!",
            "docStatus",
            "type",
            "category*",
            "subject",
            "date",
            "author*",
            "authenticator",
            "custodian",
            "relatesTo*",
            "description",
            "securityLabel*",
            "content+",
            "context",
        ],
    ),
    (
        "Media",
        &[
            "identifier*",
            "basedOn*",
            "partOf*",
            "status!",
            "type",
            "modality",
            "view",
            "subject",
            "encounter",
            "created[x]:DateTime|Period",
            "issued",
            "operator",
            "reasonCode*",
            "bodySite",
            "deviceName",
            "device",
            "height",
            "width",
            "frames",
            "duration",
            "content!",
            "note*",
        ],
    ),
    (
        "Appointment",
        &[
            "identifier*",
            "status!",
            "cancelationReason",
            "serviceCategory*",
            "serviceType*",
            "specialty*",
            "appointmentType",
            "reasonCode*",
            "reasonReference*",
            "priority",
            "description",
            "supportingInformation*",
            "start",
            "end",
            "minutesDuration",
            "slot*",
            "created",
            "comment",
            "patientInstruction",
            "basedOn*",
            "participant+",
            "requestedPeriod*",
        ],
    ),
    (
        "Task",
        &[
            "identifier*",
            "instantiatesCanonical",
            "instantiatesUri",
            "basedOn*",
            "groupIdentifier",
            "partOf*",
            "status!",
            "statusReason",
            "businessStatus",
            "intent!",
            "priority",
            "code",
            "description",
            "focus",
            "for",
            "encounter",
            "executionPeriod",
            "authoredOn",
            "lastModified",
            "requester",
            "performerType*",
            "owner",
            "location",
            "reasonCode",
            "reasonReference",
            "insurance*",
            "note*",
            "relevantHistory*",
            "restriction",
            "input*",
            "output*",
        ],
    ),
    (
        "ServiceRequest",
        &[
            "identifier*",
            "instantiatesCanonical*",
            "instantiatesUri*",
            "basedOn*",
            "replaces*",
            "requisition",
            "status!",
            "intent!",
            "category*",
            "priority",
            "doNotPerform",
            "code",
            "orderDetail*",
            "quantity[x]:Quantity|Ratio|Range",
            "subject!",
            "encounter",
            "occurrence[x]:DateTime|Period|Timing",
            "asNeeded[x]:Boolean|CodeableConcept",
            "authoredOn",
            "requester",
            "performerType",
            "performer*",
            "locationCode*",
            "locationReference*",
            "reasonCode*",
            "reasonReference*",
            "insurance*",
            "supportingInfo*",
            "specimen*",
            "bodySite*",
            "note*",
            "patientInstruction",
            "relevantHistory*",
        ],
    ),
    (
        "QuestionnaireResponse",
        &[
            "identifier",
            "basedOn*",
            "partOf*",
            "questionnaire",
            "status!",
            "subject",
            "encounter",
            "authored",
            "author",
            "source",
            "item*",
        ],
    ),
];

const ONSET_X: &str = "onset[x]:DateTime|Age|Period|Range|String";
const ABATEMENT_X: &str = "abatement[x]:DateTime|Age|Period|Range|String";
const OBSERVATION_VALUE: &str =
    "value[x]:Quantity|CodeableConcept|String|Boolean|Integer|Range|Ratio|SampledData|Time|DateTime|Period";

/// The elements of Observation.component (a BackboneElement: `id`, `extension`,
/// `modifierExtension` besides).
const COMPONENT: &[&str] = &[
    "code!",
    OBSERVATION_VALUE,
    "dataAbsentReason",
    "interpretation*",
    "referenceRange*",
];
const BACKBONE: &[&str] = &["id", "extension", "modifierExtension"];

/// Required codes (a `code` element bound to a required value set), by type and element.
pub const VALUE_SETS: &[(&str, &str, &[&str])] = &[
    ("Patient", "gender", GENDER),
    ("RelatedPerson", "gender", GENDER),
    (
        "Flag",
        "status",
        &["active", "inactive", "entered-in-error"],
    ),
    (
        "Consent",
        "status",
        &[
            "draft",
            "proposed",
            "active",
            "rejected",
            "inactive",
            "entered-in-error",
        ],
    ),
    ("AllergyIntolerance", "type", &["allergy", "intolerance"]),
    (
        "AllergyIntolerance",
        "criticality",
        &["low", "high", "unable-to-assess"],
    ),
    ("Procedure", "status", EVENT_STATUS),
    (
        "MedicationStatement",
        "status",
        &[
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        ],
    ),
    (
        "MedicationRequest",
        "status",
        &[
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        ],
    ),
    (
        "MedicationRequest",
        "intent",
        &[
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    (
        "Immunization",
        "status",
        &["completed", "entered-in-error", "not-done"],
    ),
    (
        "Observation",
        "status",
        &[
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    (
        "DiagnosticReport",
        "status",
        &[
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    ),
    (
        "FamilyMemberHistory",
        "status",
        &["partial", "completed", "entered-in-error", "health-unknown"],
    ),
    (
        "DocumentReference",
        "status",
        &["current", "superseded", "entered-in-error"],
    ),
    (
        "DocumentReference",
        "docStatus",
        &["preliminary", "final", "amended", "entered-in-error"],
    ),
    ("Media", "status", EVENT_STATUS),
    (
        "Appointment",
        "status",
        &[
            "proposed",
            "pending",
            "booked",
            "arrived",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "checked-in",
            "waitlist",
        ],
    ),
    (
        "Task",
        "status",
        &[
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ],
    ),
    (
        "Task",
        "intent",
        &[
            "unknown",
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    (
        "ServiceRequest",
        "status",
        &[
            "draft",
            "active",
            "on-hold",
            "revoked",
            "completed",
            "entered-in-error",
            "unknown",
        ],
    ),
    (
        "ServiceRequest",
        "intent",
        &[
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    ),
    (
        "QuestionnaireResponse",
        "status",
        &[
            "in-progress",
            "completed",
            "amended",
            "entered-in-error",
            "stopped",
        ],
    ),
];

const GENDER: &[&str] = &["male", "female", "other", "unknown"];
const EVENT_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
];

/// Required codings (a CodeableConcept bound to a required value set, checked when its
/// coding names the value set's code system), by type and element.
const CODED: &[(&str, &str, &str, &[&str])] = &[
    (
        "Condition",
        "clinicalStatus",
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        &[
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        ],
    ),
    (
        "Condition",
        "verificationStatus",
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        &[
            "unconfirmed",
            "provisional",
            "differential",
            "confirmed",
            "refuted",
            "entered-in-error",
        ],
    ),
    (
        "AllergyIntolerance",
        "clinicalStatus",
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        &["active", "inactive", "resolved"],
    ),
    (
        "AllergyIntolerance",
        "verificationStatus",
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
        &["unconfirmed", "confirmed", "refuted", "entered-in-error"],
    ),
];

/// One element definition, parsed from the notation.
struct Def<'t> {
    name: &'t str,
    required: bool,
    many: bool,
    choices: Option<Vec<&'t str>>,
}

fn def(s: &str) -> Def<'_> {
    if let Some((head, types)) = s.split_once(':') {
        let required = head.ends_with('!');
        let name = head.trim_end_matches('!').trim_end_matches("[x]");
        return Def {
            name,
            required,
            many: false,
            choices: Some(types.split('|').collect()),
        };
    }
    let (name, required, many) = match s.as_bytes().last() {
        Some(b'!') => (&s[..s.len() - 1], true, false),
        Some(b'+') => (&s[..s.len() - 1], true, true),
        Some(b'*') => (&s[..s.len() - 1], false, true),
        _ => (s, false, false),
    };
    Def {
        name,
        required,
        many,
        choices: None,
    }
}

/// The element table of a mapped type.
pub fn elements(resource_type: &str) -> Option<&'static [&'static str]> {
    ELEMENTS
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, e)| *e)
}

/// Checks an object's elements against a table: no unknown element, arrays exactly where
/// the element repeats, one type of each choice, required ones present.
fn check_elements(
    obj: &Map<String, Json>,
    path: &str,
    table: &[&str],
    base: &[&str],
) -> Result<(), FhirError> {
    let defs: Vec<Def<'_>> = table.iter().map(|s| def(s)).collect();
    let mut chosen: Vec<Vec<&str>> = vec![Vec::new(); defs.len()];
    for (key, v) in obj {
        if base.contains(&key.as_str()) {
            continue;
        }
        let (name, primitive_ext) = match key.strip_prefix('_') {
            Some(n) => (n, true),
            None => (key.as_str(), false),
        };
        let found = defs.iter().enumerate().find(|(_, d)| match &d.choices {
            None => d.name == name,
            Some(types) => name
                .strip_prefix(d.name)
                .is_some_and(|t| types.contains(&t)),
        });
        let Some((i, d)) = found else {
            return Err(FhirError::UnknownElement {
                path: format!("{path}.{key}"),
            });
        };
        if primitive_ext || v.is_null() {
            continue;
        }
        if d.choices.is_some() {
            chosen[i].push(key.as_str());
        }
        match (d.many, v.is_array()) {
            (true, false) => {
                return Err(FhirError::WrongType {
                    path: format!("{path}.{key}"),
                    expected: "an array (the element repeats)",
                    got: super::error::kind(v),
                })
            }
            (false, true) => {
                return Err(FhirError::Cardinality {
                    path: format!("{path}.{key}"),
                    reason: "at most one value (not an array)",
                })
            }
            _ => {}
        }
        if d.many && d.required && v.as_array().is_some_and(Vec::is_empty) {
            return Err(FhirError::Missing {
                path: format!("{path}.{key}[0]"),
            });
        }
    }
    for (d, keys) in defs.iter().zip(&chosen) {
        if keys.len() > 1 {
            return Err(FhirError::ChoiceConflict {
                path: format!("{path}.{}[x]", d.name),
                given: keys.join(", "),
            });
        }
        let present = match &d.choices {
            Some(_) => !keys.is_empty(),
            None => obj.get(d.name).is_some_and(|v| !v.is_null()),
        };
        if d.required && !present {
            let suffix = if d.choices.is_some() { "[x]" } else { "" };
            return Err(FhirError::Missing {
                path: format!("{path}.{}{suffix}", d.name),
            });
        }
    }
    Ok(())
}

fn not_in(path: String, value: &str, allowed: &'static [&'static str]) -> FhirError {
    FhirError::NotInValueSet {
        path,
        value: clip(value),
        allowed: allowed.join(", "),
    }
}

/// Checks a mapped resource (see the module docs), giving its warnings.
///
/// # Errors
/// The first problem found, naming the element's path: [`FhirError::UnknownElement`],
/// [`FhirError::Cardinality`], [`FhirError::ChoiceConflict`], [`FhirError::Missing`],
/// [`FhirError::NotInValueSet`], [`FhirError::WrongUnit`], [`FhirError::Impossible`], or
/// [`FhirError::WrongType`]. A type without an element table (not mapped) is not checked.
pub fn check(resource: &Json) -> Result<Vec<Warning>, FhirError> {
    let Some(obj) = resource.as_object() else {
        return Err(FhirError::WrongType {
            path: "resource".into(),
            expected: "an object",
            got: super::error::kind(resource),
        });
    };
    let Some(ty) = obj.get("resourceType").and_then(Json::as_str) else {
        return Err(FhirError::NoResourceType {
            path: "resource".into(),
        });
    };
    let Some(table) = elements(ty) else {
        return Ok(Vec::new());
    };
    check_elements(obj, ty, table, BASE)?;
    for (t, el, allowed) in VALUE_SETS {
        if *t != ty {
            continue;
        }
        if let Some(v) = obj.get(*el).and_then(Json::as_str) {
            if !allowed.contains(&v) {
                return Err(not_in(format!("{ty}.{el}"), v, allowed));
            }
        }
    }
    for (t, el, system, allowed) in CODED {
        if *t != ty {
            continue;
        }
        for (i, c) in codings_of(obj.get(*el)).into_iter().enumerate() {
            if c.get("system").and_then(Json::as_str) != Some(system) {
                continue;
            }
            if let Some(code) = c.get("code").and_then(Json::as_str) {
                if !allowed.contains(&code) {
                    return Err(not_in(format!("{ty}.{el}.coding[{i}].code"), code, allowed));
                }
            }
        }
    }
    if ty == "AllergyIntolerance" {
        for (i, r) in array(obj.get("reaction")).iter().enumerate() {
            if let Some(s) = r.get("severity").and_then(Json::as_str) {
                const SEVERITY: &[&str] = &["mild", "moderate", "severe"];
                if !SEVERITY.contains(&s) {
                    return Err(not_in(format!("{ty}.reaction[{i}].severity"), s, SEVERITY));
                }
            }
        }
    }
    let mut warnings = Vec::new();
    if ty == "Observation" {
        let category_lab = codings_of_all(obj.get("category"))
            .iter()
            .any(|c| c.get("code").and_then(Json::as_str) == Some("laboratory"));
        measurement(obj, ty, category_lab, &mut warnings)?;
        for (i, c) in array(obj.get("component")).iter().enumerate() {
            let path = format!("{ty}.component[{i}]");
            let Some(c) = c.as_object() else {
                return Err(FhirError::WrongType {
                    path,
                    expected: "an object",
                    got: super::error::kind(c),
                });
            };
            check_elements(c, &path, COMPONENT, BACKBONE)?;
            measurement(c, &path, category_lab, &mut warnings)?;
        }
    }
    Ok(warnings)
}

fn array(v: Option<&Json>) -> &[Json] {
    v.and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

/// The codings of a CodeableConcept.
fn codings_of(cc: Option<&Json>) -> Vec<&Json> {
    array(cc.and_then(|c| c.get("coding"))).iter().collect()
}

/// The codings of a CodeableConcept or an array of them.
fn codings_of_all(cc: Option<&Json>) -> Vec<&Json> {
    match cc {
        Some(Json::Array(a)) => a.iter().flat_map(|c| codings_of(Some(c))).collect(),
        other => codings_of(other),
    }
}

/// Checks the `valueQuantity` of an Observation (or component) whose `code` has a LOINC
/// coding cophr knows: the unit against the code, the value against physiological limits.
fn measurement(
    obj: &Map<String, Json>,
    path: &str,
    lab: bool,
    warnings: &mut Vec<Warning>,
) -> Result<(), FhirError> {
    let Some(q) = obj.get("valueQuantity").and_then(Json::as_object) else {
        return Ok(());
    };
    let loinc: Vec<&str> = codings_of(obj.get("code"))
        .into_iter()
        .filter(|c| c.get("system").and_then(Json::as_str) == Some(LOINC))
        .filter_map(|c| c.get("code").and_then(Json::as_str))
        .collect();
    let qpath = format!("{path}.valueQuantity");
    // The UCUM code when given, else the human unit.
    let unit = match (q.get("code"), q.get("unit")) {
        (Some(Json::String(c)), _) => Some((c.as_str(), format!("{qpath}.code"))),
        (_, Some(Json::String(u))) => Some((u.as_str(), format!("{qpath}.unit"))),
        _ => None,
    };
    let value = q.get("value").and_then(Json::as_f64);
    let measure = if lab {
        None
    } else {
        loinc
            .iter()
            .find_map(|c| codes::measure(c).map(|m| (*c, m)))
    };
    if let Some((code, m)) = measure {
        let Some((unit, upath)) = unit else {
            return Ok(());
        };
        let Some(v) = value else {
            return Ok(());
        };
        let Some(canonical) = codes::canonical(m, v, unit) else {
            return Err(FhirError::WrongUnit {
                path: upath,
                unit: clip(unit),
                code: code.to_owned(),
                expected: m
                    .units
                    .iter()
                    .map(|(u, _)| *u)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let base = m.units[0].0;
        let (lo, hi) = m.possible;
        if !(lo..=hi).contains(&canonical) {
            return Err(FhirError::Impossible {
                path: format!("{qpath}.value"),
                value: format!("{v} {unit}"),
                reason: format!(
                    "physiologically impossible for {} (LOINC {code}): possible {lo} to {hi} {base}",
                    m.display
                ),
            });
        }
        let (lo, hi) = m.plausible;
        if !(lo..=hi).contains(&canonical) {
            warnings.push(Warning {
                path: format!("{qpath}.value"),
                message: format!(
                    "{v} {unit} is implausible for {} (LOINC {code}; usual limits {lo} to {hi} {base}): check it",
                    m.display
                ),
            });
        }
        return Ok(());
    }
    if let Some((code, l)) = loinc.iter().find_map(|c| codes::lab_of(c).map(|l| (*c, l))) {
        if let Some((unit, upath)) = unit {
            if !l.units.contains(&unit) {
                return Err(FhirError::WrongUnit {
                    path: upath,
                    unit: clip(unit),
                    code: code.to_owned(),
                    expected: l.units.join(", "),
                });
            }
        }
        if let Some(v) = value.filter(|v| *v < 0.0) {
            return Err(FhirError::Impossible {
                path: format!("{qpath}.value"),
                value: v.to_string(),
                reason: format!("{} (LOINC {code}) cannot be negative", l.display),
            });
        }
    }
    Ok(())
}
