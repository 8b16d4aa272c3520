//! The per-category tables: every built-in category's fields, units, ranges, openEHR
//! archetype and FHIR types.

use super::types::{CategorySchema, FieldSpec, FieldType, Range};
use super::{
    FHIR_FULL_URL, FHIR_NAMES, FHIR_RESOURCE, FHIR_SOURCE, FHIR_WARNINGS, MAX_DOCUMENT,
    MAX_FHIR_JSON,
};
use crate::category::Category;

const fn opt(
    name: &'static str,
    title: &'static str,
    ty: FieldType<'static>,
) -> FieldSpec<'static> {
    FieldSpec {
        name,
        title,
        ty,
        required: false,
    }
}

const fn req(
    name: &'static str,
    title: &'static str,
    ty: FieldType<'static>,
) -> FieldSpec<'static> {
    FieldSpec {
        name,
        title,
        ty,
        required: true,
    }
}

const fn range(field: &'static str, unit: &'static str, min: f64, max: f64) -> Range<'static> {
    Range {
        field,
        unit: Some(unit),
        min,
        max,
    }
}

/// The fields of an entry imported from FHIR, accepted in every built-in category that maps
/// to a FHIR resource type: the original resource as JSON text (so that an unchanged
/// resource exports as it came in), the system it came from, its Bundle `fullUrl`, and the
/// warnings its validation raised.
pub static FHIR_FIELDS: [FieldSpec<'static>; 5] = [
    opt(
        FHIR_RESOURCE,
        "Original FHIR resource (JSON)",
        FieldType::Json {
            max_bytes: MAX_FHIR_JSON,
        },
    ),
    opt(FHIR_SOURCE, "Source system", TEXT),
    opt(FHIR_FULL_URL, "Full URL in the source Bundle", TEXT),
    opt(FHIR_WARNINGS, "Warnings raised on import", LONG),
    opt(FHIR_NAMES, "Names of what its references pointed at", LONG),
];

const TEXT: FieldType<'static> = FieldType::Text;
const LONG: FieldType<'static> = FieldType::LongText;
const DATE: FieldType<'static> = FieldType::Date;
const DATETIME: FieldType<'static> = FieldType::DateTime;

const PER_MIN: FieldType<'static> = FieldType::Quantity { units: &["/min"] };
const PERCENT: FieldType<'static> = FieldType::Quantity { units: &["%"] };
const TEMPERATURE: FieldType<'static> = FieldType::Quantity {
    units: &["Cel", "[degF]"],
};
const PRESSURE: FieldType<'static> = FieldType::Quantity { units: &["mm[Hg]"] };
const GLUCOSE: FieldType<'static> = FieldType::Quantity {
    units: &["mmol/L", "mg/dL"],
};
const CM: FieldType<'static> = FieldType::Quantity { units: &["cm"] };
const KG: FieldType<'static> = FieldType::Quantity { units: &["kg"] };
const BMI: FieldType<'static> = FieldType::Quantity { units: &["kg/m2"] };
const M2: FieldType<'static> = FieldType::Quantity { units: &["m2"] };

/// Media types accepted for attached documents.
pub const DOCUMENT_MEDIA_TYPES: &[&str] = &[
    "application/pdf",
    "image/jpeg",
    "image/png",
    "application/dicom",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/vnd.oasis.opendocument.graphics",
    "text/plain",
];

const VITAL_RANGES: &[Range<'static>] = &[
    range("respiration-rate", "/min", 0.0, 100.0),
    range("spo2", "%", 0.0, 100.0),
    range("heart-rate", "/min", 0.0, 400.0),
    range("temperature", "Cel", 25.0, 45.0),
    range("temperature", "[degF]", 77.0, 113.0),
    range("systolic", "mm[Hg]", 0.0, 400.0),
    range("diastolic", "mm[Hg]", 0.0, 300.0),
    range("blood-glucose", "mmol/L", 0.0, 100.0),
    range("blood-glucose", "mg/dL", 0.0, 1800.0),
];

const WEARABLE_RANGES: &[Range<'static>] = &[
    range("spo2", "%", 0.0, 100.0),
    range("heart-rate", "/min", 0.0, 400.0),
    range("systolic", "mm[Hg]", 0.0, 400.0),
    range("diastolic", "mm[Hg]", 0.0, 300.0),
    range("blood-glucose", "mmol/L", 0.0, 100.0),
    range("blood-glucose", "mg/dL", 0.0, 1800.0),
    Range {
        field: "steps",
        unit: None,
        min: 0.0,
        max: 1_000_000.0,
    },
];

const EXAM_RANGES: &[Range<'static>] = &[
    range("height", "cm", 10.0, 300.0),
    range("weight", "kg", 0.2, 700.0),
    range("bmi", "kg/m2", 5.0, 200.0),
    range("waist", "cm", 10.0, 400.0),
    range("head-circumference", "cm", 10.0, 100.0),
    range("hip-circumference", "cm", 10.0, 400.0),
    range("body-surface-area", "m2", 0.05, 6.0),
];

const fn schema_of(
    category: Category,
    title: &'static str,
    description: &'static str,
    archetype: &'static str,
    fhir: &'static [&'static str],
    fields: &'static [FieldSpec<'static>],
    summary_field: &'static str,
) -> CategorySchema<'static> {
    CategorySchema {
        category,
        title,
        description,
        archetype,
        fhir,
        fields,
        fhir_fields: if fhir.is_empty() { &[] } else { &FHIR_FIELDS },
        summary_field,
        at_least_one: &[],
        together: &[],
        ranges: &[],
    }
}

impl CategorySchema<'static> {
    const fn with_at_least_one(mut self, fields: &'static [&'static str]) -> Self {
        self.at_least_one = fields;
        self
    }
    const fn with_together(mut self, pairs: &'static [(&'static str, &'static str)]) -> Self {
        self.together = pairs;
        self
    }
    const fn with_ranges(mut self, ranges: &'static [Range<'static>]) -> Self {
        self.ranges = ranges;
        self
    }
}

static ALL: [CategorySchema<'static>; 22] = [
    schema_of(
        Category::AboutMe,
        "About me",
        "The top three things to know about me, in my own words, and a short summary.",
        "openEHR-EHR-EVALUATION.about_me.v0",
        &["Basic"],
        &[
            req("thing-1", "First thing to know about me", TEXT),
            opt("thing-2", "Second thing to know about me", TEXT),
            opt("thing-3", "Third thing to know about me", TEXT),
            opt("summary", "About me", LONG),
        ],
        "thing-1",
    ),
    schema_of(
        Category::Alerts,
        "Alerts",
        "Significant information that merits a highly visible warning (e.g. metallic implant, \
         emergency keyholder, potentially dangerous pet).",
        "openEHR-EHR-EVALUATION.alert.v0",
        &["Flag"],
        &[
            req("alert", "Alert", TEXT),
            opt("detail", "Detail", LONG),
            opt("severity", "Severity", FieldType::Code(&["low", "high"])),
        ],
        "alert",
    ),
    schema_of(
        Category::Demographics,
        "Demographics",
        "Name, date of birth, gender, address and contact details.",
        "openEHR-DEMOGRAPHIC-PERSON.person.v1",
        &["Patient"],
        &[
            req("surname", "Surname", TEXT),
            opt("forename", "Forename", TEXT),
            opt("preferred-name", "Preferred name", TEXT),
            opt("date-of-birth", "Date of birth", DATE),
            opt(
                "gender",
                "Gender",
                FieldType::Code(&["male", "female", "other", "unknown"]),
            ),
            opt("address", "Address", LONG),
            opt("telephone", "Telephone", TEXT),
            opt("email", "Email", TEXT),
        ],
        "surname",
    ),
    schema_of(
        Category::KeyContacts,
        "Key contacts",
        "Formal, informal and main carers and next of kin, with their contact details.",
        "openEHR-EHR-ADMIN_ENTRY.relevant_contact_rcp.v1",
        &["RelatedPerson"],
        &[
            req("name", "Name", TEXT),
            opt(
                "relationship",
                "Relationship",
                FieldType::Code(&[
                    "formal-carer",
                    "informal-carer",
                    "main-carer",
                    "next-of-kin",
                    "other",
                ]),
            ),
            opt("telephone", "Telephone", TEXT),
            opt("email", "Email", TEXT),
            opt("address", "Address", LONG),
        ],
        "name",
    ),
    schema_of(
        Category::Preferences,
        "Preferences",
        "Organ donation, language and communication needs, reasonable adjustments, \
         religious and cultural preferences.",
        "openEHR-EHR-EVALUATION.communication_capability.v1",
        &["Consent", "Basic"],
        &[
            opt(
                "organ-donation",
                "Organ donation",
                FieldType::Code(&["yes", "no", "undecided"]),
            ),
            opt("language", "Language", TEXT),
            opt("communication-needs", "Communication needs", LONG),
            opt("reasonable-adjustments", "Reasonable adjustments", LONG),
            opt(
                "religion-culture",
                "Religious or cultural preferences",
                LONG,
            ),
            opt("consent", "Consent and advance decisions", LONG),
        ],
        "language",
    )
    .with_at_least_one(&[
        "organ-donation",
        "language",
        "communication-needs",
        "reasonable-adjustments",
        "religion-culture",
        "consent",
    ]),
    schema_of(
        Category::Allergies,
        "Allergies",
        "Allergies and adverse reactions: the causative agent and the reaction.",
        "openEHR-EHR-EVALUATION.adverse_reaction_risk.v1",
        &["AllergyIntolerance"],
        &[
            req("agent", "Causative agent", TEXT),
            opt("reaction", "Reaction (manifestation)", TEXT),
            opt(
                "severity",
                "Severity",
                FieldType::Code(&["mild", "moderate", "severe"]),
            ),
            opt("onset", "Onset", DATE),
            opt(
                "criticality",
                "Criticality",
                FieldType::Code(&["low", "high", "unable-to-assess"]),
            ),
            opt("comment", "Comment", LONG),
        ],
        "agent",
    ),
    schema_of(
        Category::Problems,
        "Problems",
        "Problems and diagnoses, with onset and resolution dates.",
        "openEHR-EHR-EVALUATION.problem_diagnosis.v1",
        &["Condition"],
        &[
            req("problem", "Problem or diagnosis", TEXT),
            opt("description", "Description", LONG),
            opt("onset", "Onset", DATE),
            opt("resolved", "Resolved", DATE),
            opt(
                "status",
                "Status",
                FieldType::Code(&["active", "inactive", "resolved"]),
            ),
        ],
        "problem",
    ),
    schema_of(
        Category::Procedures,
        "Procedures",
        "Procedures: name, description, body site, outcome, difficulty, complication, type.",
        "openEHR-EHR-ACTION.procedure.v1",
        &["Procedure"],
        &[
            req("procedure", "Procedure", TEXT),
            opt("description", "Description", LONG),
            opt("body-site", "Body site", TEXT),
            opt("outcome", "Outcome", TEXT),
            opt("difficulty", "Difficulty", TEXT),
            opt("complication", "Complication", TEXT),
            opt("procedure-type", "Procedure type", TEXT),
            opt("date", "Date", DATE),
        ],
        "procedure",
    ),
    schema_of(
        Category::Medications,
        "Medications",
        "Medication statements: name, form, route, dosage, patient information, monitoring, \
         indication, start and stop dates.",
        "openEHR-EHR-INSTRUCTION.medication_order.v3",
        &["MedicationStatement", "MedicationRequest"],
        &[
            req("medication", "Medication", TEXT),
            opt("form", "Form", TEXT),
            opt("route", "Route", TEXT),
            opt("dose", "Dose and directions", TEXT),
            opt("patient-information", "Patient information", LONG),
            opt("monitoring", "Monitoring instructions", LONG),
            opt("indication", "Clinical indication", TEXT),
            opt("start", "Start date", DATE),
            opt("stop", "Stop date", DATE),
            opt(
                "status",
                "Status",
                FieldType::Code(&["active", "stopped", "not-taking", "completed"]),
            ),
        ],
        "medication",
    ),
    schema_of(
        Category::Immunisations,
        "Immunisations",
        "Immunisations: name, status and date.",
        "openEHR-EHR-ACTION.medication.v1",
        &["Immunization"],
        &[
            req("immunisation", "Immunisation", TEXT),
            opt(
                "status",
                "Status",
                FieldType::Code(&["completed", "not-done", "entered-in-error"]),
            ),
            opt("date", "Date", DATE),
        ],
        "immunisation",
    ),
    schema_of(
        Category::VitalSigns,
        "Vital signs",
        "Respiration rate, oxygen saturation, heart rate, temperature, blood pressure, \
         blood glucose.",
        "openEHR-EHR-SECTION.vital_signs.v1",
        &["Observation"],
        &[
            opt("respiration-rate", "Respiration rate", PER_MIN),
            opt("spo2", "Oxygen saturation (SpO2)", PERCENT),
            opt("heart-rate", "Heart rate", PER_MIN),
            opt("temperature", "Body temperature", TEMPERATURE),
            opt("systolic", "Systolic blood pressure", PRESSURE),
            opt("diastolic", "Diastolic blood pressure", PRESSURE),
            opt("blood-glucose", "Blood glucose", GLUCOSE),
            opt("measured-at", "Measured at", DATETIME),
            opt("position", "Position", TEXT),
            opt("comment", "Comment", LONG),
        ],
        "heart-rate",
    )
    .with_at_least_one(&[
        "respiration-rate",
        "spo2",
        "heart-rate",
        "temperature",
        "systolic",
        "diastolic",
        "blood-glucose",
    ])
    .with_together(&[("systolic", "diastolic")])
    .with_ranges(VITAL_RANGES),
    schema_of(
        Category::Wearables,
        "Wearable results",
        "Readings from wearable and home devices: pulse, oxygen saturation, blood \
         pressure, steps, blood glucose.",
        "openEHR-EHR-OBSERVATION.pulse.v2",
        &["Observation"],
        &[
            opt("heart-rate", "Heart rate", PER_MIN),
            opt("spo2", "Oxygen saturation (SpO2)", PERCENT),
            opt("systolic", "Systolic blood pressure", PRESSURE),
            opt("diastolic", "Diastolic blood pressure", PRESSURE),
            opt("steps", "Steps", FieldType::Integer),
            opt("blood-glucose", "Blood glucose", GLUCOSE),
            opt("device", "Device", TEXT),
            opt("measured-at", "Measured at", DATETIME),
        ],
        "heart-rate",
    )
    .with_at_least_one(&[
        "heart-rate",
        "spo2",
        "systolic",
        "diastolic",
        "steps",
        "blood-glucose",
    ])
    .with_together(&[("systolic", "diastolic")])
    .with_ranges(WEARABLE_RANGES),
    schema_of(
        Category::LabResults,
        "Lab results",
        "Laboratory test results with interpretation and reference ranges.",
        "openEHR-EHR-OBSERVATION.laboratory_test_result.v1",
        &["Observation", "DiagnosticReport"],
        &[
            req("test", "Test", TEXT),
            req("result", "Result", TEXT),
            opt("unit", "Unit", TEXT),
            opt(
                "interpretation",
                "Interpretation",
                FieldType::Code(&["normal", "abnormal", "high", "low", "critical"]),
            ),
            opt("reference-range", "Reference range", TEXT),
            opt("collected", "Collected", DATETIME),
            opt("reported", "Reported", DATETIME),
            opt(
                "status",
                "Status",
                FieldType::Code(&["preliminary", "final", "amended"]),
            ),
            opt("comment", "Comment", LONG),
        ],
        "test",
    ),
    schema_of(
        Category::Investigations,
        "Other investigations",
        "Imaging, ECG, pulmonary function, visual acuity, urinalysis and other results.",
        "openEHR-EHR-OBSERVATION.imaging_exam_result.v0",
        &["DiagnosticReport", "Observation"],
        &[
            req("investigation", "Investigation", TEXT),
            opt(
                "kind",
                "Kind",
                FieldType::Code(&[
                    "imaging",
                    "ecg",
                    "pulmonary-function",
                    "visual-acuity",
                    "urinalysis",
                    "other",
                ]),
            ),
            req("result", "Result", LONG),
            opt("date", "Date", DATE),
        ],
        "investigation",
    ),
    schema_of(
        Category::Examinations,
        "Core examinations",
        "Height, weight, BMI, waist, head and hip circumference, body surface area.",
        "openEHR-EHR-OBSERVATION.body_weight.v2",
        &["Observation"],
        &[
            opt("height", "Height", CM),
            opt("weight", "Weight", KG),
            opt("bmi", "Body mass index", BMI),
            opt("waist", "Waist circumference", CM),
            opt("head-circumference", "Head circumference", CM),
            opt("hip-circumference", "Hip circumference", CM),
            opt("body-surface-area", "Body surface area", M2),
            opt("measured-at", "Measured at", DATETIME),
        ],
        "weight",
    )
    .with_at_least_one(&[
        "height",
        "weight",
        "bmi",
        "waist",
        "head-circumference",
        "hip-circumference",
        "body-surface-area",
    ])
    .with_ranges(EXAM_RANGES),
    schema_of(
        Category::Lifestyle,
        "Lifestyle and social",
        "Smoking status, alcohol consumption, housing, occupation, education and training.",
        "openEHR-EHR-EVALUATION.tobacco_smoking_summary.v1",
        &["Observation"],
        &[
            opt(
                "smoking",
                "Smoking",
                FieldType::Code(&["never", "former", "current", "unknown"]),
            ),
            opt("alcohol", "Alcohol", TEXT),
            opt("housing", "Housing", TEXT),
            opt("occupation", "Occupation", TEXT),
            opt("education", "Education and training", TEXT),
        ],
        "smoking",
    )
    .with_at_least_one(&["smoking", "alcohol", "housing", "occupation", "education"]),
    schema_of(
        Category::FamilyHistory,
        "Family history",
        "Conditions in the family: index condition, affected relative, genomic markers.",
        "openEHR-EHR-EVALUATION.family_history.v2",
        &["FamilyMemberHistory"],
        &[
            req("condition", "Condition", TEXT),
            req("relative", "Affected relative", TEXT),
            opt("genomic-markers", "Genomic markers", FieldType::TextList),
            opt("comment", "Comment", LONG),
        ],
        "condition",
    ),
    schema_of(
        Category::Documents,
        "Documents",
        "Attached documents: letters, reports, scans and images (PDF, JPEG, PNG, DICOM, \
         OpenDocument, plain text).",
        "openEHR-EHR-CLUSTER.media_file.v1",
        &["DocumentReference"],
        &[
            req("title", "Title", TEXT),
            opt(
                "media-type",
                "Media type",
                FieldType::Code(DOCUMENT_MEDIA_TYPES),
            ),
            opt(
                "data",
                "File",
                FieldType::Binary {
                    media_types: DOCUMENT_MEDIA_TYPES,
                    max_bytes: MAX_DOCUMENT,
                },
            ),
            opt("file", "File (stored apart)", FieldType::Document),
            opt("dicom-patient", "Patient named in the DICOM file", TEXT),
            opt("dicom-study", "DICOM study", TEXT),
            opt("dicom-modality", "DICOM modality", TEXT),
            opt("url", "Where the document is (URL)", TEXT),
            opt("date", "Date", DATE),
            opt("description", "Description", LONG),
        ],
        "title",
    )
    // A document is its file, a link to it, or (imported from FHIR) the original
    // DocumentReference, whose attachment may be neither.
    // Its file's media type goes with the file, inline (`data`) or stored apart (`file`,
    // one of the two): checked in `validate`'s cross-field rules.
    .with_at_least_one(&["data", "file", "url", FHIR_RESOURCE]),
    schema_of(
        Category::Questionnaires,
        "Questionnaires",
        "Questionnaire responses, e.g. patient-reported outcome measures (PROMs).",
        "openEHR-EHR-OBSERVATION.questionnaire_entry.v0",
        &["QuestionnaireResponse", "Questionnaire"],
        &[
            req("questionnaire", "Questionnaire", TEXT),
            opt("answers", "Answers", FieldType::Answers),
            opt("score", "Score", FieldType::Decimal),
            opt("completed", "Completed", DATETIME),
            opt("band", "Severity band of the score", TEXT),
            opt(
                crate::care::questionnaire::DEFINITION_ENTRY,
                "Questionnaire answered (the published version's entry id)",
                TEXT,
            ),
            opt(
                crate::care::questionnaire::TASK,
                "Task that assigned it (entry id)",
                TEXT,
            ),
            opt(
                crate::care::questionnaire::DEFINITION,
                "Published questionnaire (FHIR Questionnaire, JSON)",
                FieldType::Json {
                    max_bytes: crate::care::questionnaire::MAX_DEFINITION_BYTES,
                },
            ),
        ],
        "questionnaire",
    ),
    schema_of(
        Category::Messages,
        "Messages",
        "Messages between the patient and the care team.",
        "openEHR-EHR-EVALUATION.clinical_synopsis.v1",
        &["Communication"],
        &[
            req("text", "Message", LONG),
            opt("subject", "Subject", TEXT),
            opt("in-reply-to", "In reply to (entry id)", TEXT),
            opt("to", "To", TEXT),
            // Conversations (`care::thread`): a thread's start names its participants;
            // a message in it names the start.
            opt(
                "participants",
                "Participants (actor ids; starts a private thread)",
                FieldType::TextList,
            ),
            opt("thread", "Thread (the entry id of its start)", TEXT),
            opt(
                "attachment",
                "Attachment (stored apart)",
                FieldType::Document,
            ),
        ],
        "text",
    ),
    schema_of(
        Category::Appointments,
        "Appointments",
        "Appointments: when and where, with whom, their status, and reminders at chosen \
         times before the start. A change or a cancellation is a new version.",
        "openEHR-EHR-ACTION.service.v1",
        &["Appointment"],
        &[
            req(
                "status",
                "Status",
                FieldType::Code(crate::care::APPOINTMENT_STATUSES),
            ),
            opt("start", "Start", DATETIME),
            opt("end", "End", DATETIME),
            opt("description", "What the appointment is for", TEXT),
            opt("place", "Place", TEXT),
            opt(
                "with",
                "With whom (names or actor ids)",
                FieldType::TextList,
            ),
            opt(
                "reminders",
                "Reminders before the start (e.g. 30m, 2h, 1d)",
                FieldType::TextList,
            ),
            opt("comment", "Comment", LONG),
        ],
        "description",
    ),
    schema_of(
        Category::Tasks,
        "Referrals and tasks",
        "Referrals, care-team tasks and blood-test requests: who asked, who must act, and \
         where each stands (sent, received, accepted, in progress, completed, rejected, \
         cancelled), each step written by the party that took it.",
        "openEHR-EHR-INSTRUCTION.service_request.v1",
        &["Task", "ServiceRequest"],
        &[
            req("kind", "Kind", FieldType::Code(crate::care::TASK_KINDS)),
            req("description", "What is asked", LONG),
            req(
                "requester",
                "Requester (actor id; a name when imported)",
                TEXT,
            ),
            req(
                "owner",
                "Owner: who must act (actor id; a name when imported)",
                TEXT,
            ),
            req(
                "status",
                "Status",
                FieldType::Code(crate::care::TASK_STATUSES),
            ),
            opt("due", "Due", DATE),
            opt("note", "Note (e.g. why it was rejected)", LONG),
            opt(
                "questionnaire",
                "Questionnaire to answer (a published version's entry id)",
                TEXT,
            ),
        ],
        "description",
    ),
];

/// The schema of a built-in category; `None` for extensions.
pub fn schema(c: &Category) -> Option<&'static CategorySchema<'static>> {
    if c.is_extension() {
        return None;
    }
    ALL.iter().find(|s| &s.category == c)
}

/// The schemas of all 22 built-in categories, in [`Category::BUILT_IN`] order.
pub fn all() -> &'static [CategorySchema<'static>] {
    &ALL
}
