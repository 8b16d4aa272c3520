//! cophr's core templates: which archetypes each mapped category's composition holds, and
//! where each field of its body sits (an archetype path and the RM data type there).
//!
//! Node ids follow the published archetypes (openEHR CKM) where cophr's fields have an
//! element there; the template is cophr's own (`cophr.<category>.v1`), so the paths here
//! are the definition a client writes against.

use crate::category::Category;

/// The RM data type an element's value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dv {
    /// `DV_TEXT` (a `DV_CODED_TEXT` is accepted on input: its `value` is read).
    Text,
    /// `DV_CODED_TEXT` with the code in terminology `local` (`DV_TEXT` accepted on input).
    Coded,
    /// `DV_QUANTITY`: `magnitude` and UCUM `units`, the body's `{value, unit}`.
    Quantity,
    /// `DV_PROPORTION` of type percent (2, denominator 100): the body's `{value, unit: "%"}`.
    Percent,
    /// `DV_DATE` (a `DV_DATE_TIME` is accepted on input: its date is read).
    Date,
    /// `DV_DATE_TIME`.
    DateTime,
    /// A list of one-line texts as one `DV_TEXT`, one item per line (cophr's text lists
    /// hold one-line items only, so the lines read back as the same list).
    Lines,
    /// `DV_COUNT`: an integer.
    Count,
    /// `DV_BOOLEAN`.
    Boolean,
    /// A decimal without a unit: `DV_QUANTITY` in UCUM unit `1`.
    Decimal,
}

impl Dv {
    /// The RM type written.
    pub fn rm_type(self) -> &'static str {
        match self {
            Dv::Text | Dv::Lines => "DV_TEXT",
            Dv::Coded => "DV_CODED_TEXT",
            Dv::Quantity | Dv::Decimal => "DV_QUANTITY",
            Dv::Count => "DV_COUNT",
            Dv::Boolean => "DV_BOOLEAN",
            Dv::Percent => "DV_PROPORTION",
            Dv::Date => "DV_DATE",
            Dv::DateTime => "DV_DATE_TIME",
        }
    }

    /// The RM types accepted on input.
    pub fn accepts(self) -> &'static [&'static str] {
        match self {
            Dv::Text | Dv::Coded | Dv::Lines => &["DV_TEXT", "DV_CODED_TEXT"],
            Dv::Quantity | Dv::Decimal => &["DV_QUANTITY"],
            Dv::Count => &["DV_COUNT"],
            Dv::Boolean => &["DV_BOOLEAN"],
            Dv::Percent => &["DV_PROPORTION"],
            Dv::Date => &["DV_DATE", "DV_DATE_TIME"],
            Dv::DateTime => &["DV_DATE_TIME"],
        }
    }
}

/// One field of a body at its place in an archetype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMap<'a> {
    /// The body's field.
    pub field: &'a str,
    /// The element's path within its entry's archetype.
    pub path: &'a str,
    /// Its data type.
    pub dv: Dv,
    /// Whether the archetype (and cophr) require it.
    pub mandatory: bool,
    /// For a `DV_CODED_TEXT` of a template's local codes: each body code with its at-code
    /// (written as `local::atNNNN`, the body code as the text). Empty: the body code is the
    /// code, in terminology `cophr`.
    pub codes: &'a [(&'a str, &'a str)],
}

/// One archetype a template's composition may hold (one content entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryDef<'a> {
    /// The archetype id.
    pub archetype: &'a str,
    /// Its RM type (`OBSERVATION`, `EVALUATION`, `INSTRUCTION`).
    pub rm_type: &'static str,
    /// The entry's name.
    pub name: &'a str,
    /// For an observation, the path of its one event (whose `time` is the template's time
    /// field); for an action, `""` (the action's own `time`).
    pub event: Option<&'a str>,
    /// For an action, the body's code field held as the action's ISM state
    /// (`ism_transition/current_state`, see [`ISM_STATES`]).
    pub state: Option<&'static str>,
    /// The body's fields held in this archetype.
    pub fields: &'a [FieldMap<'a>],
}

/// A cophr code and the openEHR ISM state (code, rubric) an action holds it as. An action
/// written without the code is `completed`, and reads back so.
pub const ISM_STATES: &[(&str, &str, &str)] = &[
    ("completed", "532", "completed"),
    ("not-done", "528", "cancelled"),
    ("entered-in-error", "531", "aborted"),
];

/// A core template: one category's composition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    /// The template id, `cophr.<category>.v1`.
    pub id: &'a str,
    /// The category.
    pub category: Category,
    /// The composition's name.
    pub name: &'a str,
    /// The composition's archetype.
    pub composition_archetype: &'a str,
    /// The composition category: openEHR code and its text (`433` event, `431` persistent).
    pub composition_category: (&'static str, &'static str),
    /// The body field that is the observations' event time (or an action's `time`), if
    /// any.
    pub time_field: Option<&'static str>,
    /// Whether that field is a date (an action's `time` is read back as its date).
    pub time_is_date: bool,
    /// The archetypes held, in the order written.
    pub entries: &'a [EntryDef<'a>],
}

const fn f(field: &'static str, path: &'static str, dv: Dv) -> FieldMap<'static> {
    FieldMap {
        field,
        path,
        dv,
        mandatory: false,
        codes: &[],
    }
}

const fn m(field: &'static str, path: &'static str, dv: Dv) -> FieldMap<'static> {
    FieldMap {
        field,
        path,
        dv,
        mandatory: true,
        codes: &[],
    }
}

/// Blood pressure: systolic, diastolic, position (state) and the vital signs' comment.
pub const BLOOD_PRESSURE: &str = "openEHR-EHR-OBSERVATION.blood_pressure.v2";
/// Pulse (heart rate).
pub const PULSE: &str = "openEHR-EHR-OBSERVATION.pulse.v2";
/// Body temperature.
pub const BODY_TEMPERATURE: &str = "openEHR-EHR-OBSERVATION.body_temperature.v2";
/// Respiration rate.
pub const RESPIRATION: &str = "openEHR-EHR-OBSERVATION.respiration.v2";
/// Pulse oximetry (SpO2).
pub const PULSE_OXIMETRY: &str = "openEHR-EHR-OBSERVATION.pulse_oximetry.v1";
/// Blood glucose, as a laboratory analyte result.
pub const LAB_RESULT: &str = "openEHR-EHR-OBSERVATION.laboratory_test_result.v1";
/// Problems and diagnoses.
pub const PROBLEM_DIAGNOSIS: &str = "openEHR-EHR-EVALUATION.problem_diagnosis.v1";
/// Allergies and adverse reactions.
pub const ADVERSE_REACTION_RISK: &str = "openEHR-EHR-EVALUATION.adverse_reaction_risk.v1";
/// A medication order.
pub const MEDICATION_ORDER: &str = "openEHR-EHR-INSTRUCTION.medication_order.v3";
/// A procedure carried out.
pub const PROCEDURE: &str = "openEHR-EHR-ACTION.procedure.v1";
/// A medication given: an immunisation.
pub const MEDICATION_ACTION: &str = "openEHR-EHR-ACTION.medication.v1";
/// A medication's overall status (the medications template's second entry).
pub const MEDICATION_SUMMARY: &str = "openEHR-EHR-EVALUATION.medication_summary.v1";
/// An alert.
pub const ALERT: &str = "openEHR-EHR-EVALUATION.alert.v0";
/// A relative's condition.
pub const FAMILY_HISTORY: &str = "openEHR-EHR-EVALUATION.family_history.v2";
/// Smoking status.
pub const TOBACCO_SMOKING_SUMMARY: &str = "openEHR-EHR-EVALUATION.tobacco_smoking_summary.v1";
/// Alcohol consumption.
pub const ALCOHOL_CONSUMPTION_SUMMARY: &str =
    "openEHR-EHR-EVALUATION.alcohol_consumption_summary.v1";
/// Housing.
pub const HOUSING_SUMMARY: &str = "openEHR-EHR-EVALUATION.housing_summary.v1";
/// Occupation.
pub const OCCUPATION_SUMMARY: &str = "openEHR-EHR-EVALUATION.occupation_summary.v1";
/// Education and training.
pub const EDUCATION_SUMMARY: &str = "openEHR-EHR-EVALUATION.education_summary.v1";
/// Height.
pub const HEIGHT: &str = "openEHR-EHR-OBSERVATION.height.v2";
/// Body weight.
pub const BODY_WEIGHT: &str = "openEHR-EHR-OBSERVATION.body_weight.v2";
/// Body mass index.
pub const BODY_MASS_INDEX: &str = "openEHR-EHR-OBSERVATION.body_mass_index.v2";
/// Waist circumference.
pub const WAIST_CIRCUMFERENCE: &str = "openEHR-EHR-OBSERVATION.waist_circumference.v1";
/// Head circumference.
pub const HEAD_CIRCUMFERENCE: &str = "openEHR-EHR-OBSERVATION.head_circumference.v1";
/// Hip circumference.
pub const HIP_CIRCUMFERENCE: &str = "openEHR-EHR-OBSERVATION.hip_circumference.v0";
/// Body surface area.
pub const BODY_SURFACE_AREA: &str = "openEHR-EHR-OBSERVATION.body_surface_area.v0";
/// An investigation's result (imaging, ECG, lung function, …): the closest generic one.
pub const INVESTIGATION_RESULT: &str = "openEHR-EHR-OBSERVATION.imaging_exam_result.v0";
/// About me: the top things to know, in the patient's words.
pub const ABOUT_ME: &str = "openEHR-EHR-EVALUATION.about_me.v0";
/// A key contact.
pub const RELEVANT_CONTACT: &str = "openEHR-EHR-ADMIN_ENTRY.relevant_contact_rcp.v1";
/// Preferences: language and communication, adjustments, donation, beliefs, consent.
pub const COMMUNICATION_CAPABILITY: &str = "openEHR-EHR-EVALUATION.communication_capability.v1";

/// The persistent summary composition the list templates use.
const HEALTH_SUMMARY: &str = "openEHR-EHR-COMPOSITION.health_summary.v1";
/// The lab analyte cluster on the laboratory test result's one event.
macro_rules! analyte {
    ($node:literal) => {
        concat!(
            "/data[at0001]/events[at0002]/data[at0003]/items[openEHR-EHR-CLUSTER.laboratory_test_analyte.v1]/items[",
            $node,
            "]"
        )
    };
}
/// An element on an observation's one event, in the `data[at0001]/events[at0002]` layout.
macro_rules! r_event {
    ($node:literal) => {
        concat!(
            "/data[at0001]/events[at0002]/data[at0003]/items[",
            $node,
            "]"
        )
    };
}
/// An element of an evaluation's (or admin entry's) data.
macro_rules! eval {
    ($node:literal) => {
        concat!("/data[at0001]/items[", $node, "]")
    };
}

/// An entry with one event, in the `data[at0001]/events[at0002]` layout, holding one
/// quantity.
const fn measure(
    archetype: &'static str,
    name: &'static str,
    field: &'static FieldMap<'static>,
) -> EntryDef<'static> {
    EntryDef {
        archetype,
        rm_type: "OBSERVATION",
        name,
        event: Some(R_EVENT),
        state: None,
        fields: std::slice::from_ref(field),
    }
}

/// An evaluation holding some fields.
const fn evaluation(
    archetype: &'static str,
    name: &'static str,
    fields: &'static [FieldMap<'static>],
) -> EntryDef<'static> {
    EntryDef {
        archetype,
        rm_type: "EVALUATION",
        name,
        event: None,
        state: None,
        fields,
    }
}

/// A persistent list template of one category.
const fn summary(
    id: &'static str,
    category: Category,
    name: &'static str,
    entries: &'static [EntryDef<'static>],
) -> Template<'static> {
    Template {
        id,
        category,
        name,
        composition_archetype: HEALTH_SUMMARY,
        composition_category: ("431", "persistent"),
        time_field: None,
        time_is_date: false,
        entries,
    }
}

const BP_EVENT: &str = "/data[at0001]/events[at0006]";
const P2_EVENT: &str = "/data[at0002]/events[at0003]";
const R_EVENT: &str = "/data[at0001]/events[at0002]";

static TEMPLATES: [Template<'static>; 15] = [
    Template {
        id: "cophr.vital_signs.v1",
        category: Category::VitalSigns,
        name: "Vital signs",
        composition_archetype: "openEHR-EHR-COMPOSITION.encounter.v1",
        composition_category: ("433", "event"),
        time_field: Some("measured-at"),
        time_is_date: false,
        entries: &[
            EntryDef {
                archetype: BLOOD_PRESSURE,
                rm_type: "OBSERVATION",
                name: "Blood pressure",
                event: Some(BP_EVENT),
                state: None,
                fields: &[
                    f(
                        "systolic",
                        "/data[at0001]/events[at0006]/data[at0003]/items[at0004]",
                        Dv::Quantity,
                    ),
                    f(
                        "diastolic",
                        "/data[at0001]/events[at0006]/data[at0003]/items[at0005]",
                        Dv::Quantity,
                    ),
                    f(
                        "comment",
                        "/data[at0001]/events[at0006]/data[at0003]/items[at0033]",
                        Dv::Text,
                    ),
                    f(
                        "position",
                        "/data[at0001]/events[at0006]/state[at0007]/items[at0008]",
                        Dv::Text,
                    ),
                ],
            },
            EntryDef {
                archetype: PULSE,
                rm_type: "OBSERVATION",
                name: "Pulse/Heart beat",
                event: Some(P2_EVENT),
                state: None,
                fields: &[f(
                    "heart-rate",
                    "/data[at0002]/events[at0003]/data[at0001]/items[at0004]",
                    Dv::Quantity,
                )],
            },
            EntryDef {
                archetype: BODY_TEMPERATURE,
                rm_type: "OBSERVATION",
                name: "Body temperature",
                event: Some(P2_EVENT),
                state: None,
                fields: &[f(
                    "temperature",
                    "/data[at0002]/events[at0003]/data[at0001]/items[at0004]",
                    Dv::Quantity,
                )],
            },
            EntryDef {
                archetype: RESPIRATION,
                rm_type: "OBSERVATION",
                name: "Respiration",
                event: Some(R_EVENT),
                state: None,
                fields: &[f(
                    "respiration-rate",
                    "/data[at0001]/events[at0002]/data[at0003]/items[at0004]",
                    Dv::Quantity,
                )],
            },
            EntryDef {
                archetype: PULSE_OXIMETRY,
                rm_type: "OBSERVATION",
                name: "Pulse oximetry",
                event: Some(R_EVENT),
                state: None,
                fields: &[f(
                    "spo2",
                    "/data[at0001]/events[at0002]/data[at0003]/items[at0006]",
                    Dv::Percent,
                )],
            },
            EntryDef {
                archetype: LAB_RESULT,
                rm_type: "OBSERVATION",
                name: "Blood glucose",
                event: Some(R_EVENT),
                state: None,
                fields: &[f(
                    "blood-glucose",
                    "/data[at0001]/events[at0002]/data[at0003]/items[openEHR-EHR-CLUSTER.laboratory_test_analyte.v1]/items[at0001]",
                    Dv::Quantity,
                )],
            },
        ],
    },
    Template {
        id: "cophr.problems.v1",
        category: Category::Problems,
        name: "Problem list",
        composition_archetype: "openEHR-EHR-COMPOSITION.problem_list.v2",
        composition_category: ("431", "persistent"),
        time_field: None,
        time_is_date: false,
        entries: &[EntryDef {
            archetype: PROBLEM_DIAGNOSIS,
            rm_type: "EVALUATION",
            name: "Problem/Diagnosis",
            event: None,
            state: None,
            fields: &[
                m("problem", "/data[at0001]/items[at0002]", Dv::Text),
                f("description", "/data[at0001]/items[at0009]", Dv::Text),
                f("onset", "/data[at0001]/items[at0077]", Dv::Date),
                f("resolved", "/data[at0001]/items[at0030]", Dv::Date),
                f(
                    "status",
                    "/data[at0001]/items[openEHR-EHR-CLUSTER.problem_qualifier.v1]/items[at0004]",
                    Dv::Coded,
                ),
            ],
        }],
    },
    Template {
        id: "cophr.allergies.v1",
        category: Category::Allergies,
        name: "Adverse reaction list",
        composition_archetype: "openEHR-EHR-COMPOSITION.adverse_reaction_list.v1",
        composition_category: ("431", "persistent"),
        time_field: None,
        time_is_date: false,
        entries: &[EntryDef {
            archetype: ADVERSE_REACTION_RISK,
            rm_type: "EVALUATION",
            name: "Adverse reaction risk",
            event: None,
            state: None,
            fields: &[
                m("agent", "/data[at0001]/items[at0002]", Dv::Text),
                f("criticality", "/data[at0001]/items[at0063]", Dv::Coded),
                f("comment", "/data[at0001]/items[at0006]", Dv::Text),
                f("reaction", "/data[at0001]/items[at0009]/items[at0011]", Dv::Text),
                f("severity", "/data[at0001]/items[at0009]/items[at0089]", Dv::Coded),
                f("onset", "/data[at0001]/items[at0009]/items[at0027]", Dv::Date),
            ],
        }],
    },
    Template {
        id: "cophr.medications.v1",
        category: Category::Medications,
        name: "Medication list",
        composition_archetype: "openEHR-EHR-COMPOSITION.medication_list.v1",
        composition_category: ("431", "persistent"),
        time_field: None,
        time_is_date: false,
        entries: &[
        EntryDef {
            archetype: MEDICATION_ORDER,
            rm_type: "INSTRUCTION",
            name: "Medication order",
            event: None,
            state: None,
            fields: &[
                m(
                    "medication",
                    "/activities[at0001]/description[at0002]/items[at0070]",
                    Dv::Text,
                ),
                f(
                    "form",
                    "/activities[at0001]/description[at0002]/items[at0071]",
                    Dv::Text,
                ),
                f(
                    "route",
                    "/activities[at0001]/description[at0002]/items[at0091]",
                    Dv::Text,
                ),
                f(
                    "dose",
                    "/activities[at0001]/description[at0002]/items[at0009]",
                    Dv::Text,
                ),
                f(
                    "indication",
                    "/activities[at0001]/description[at0002]/items[at0018]",
                    Dv::Text,
                ),
                f(
                    "patient-information",
                    "/activities[at0001]/description[at0002]/items[at0173]",
                    Dv::Text,
                ),
                f(
                    "monitoring",
                    "/activities[at0001]/description[at0002]/items[at0167]",
                    Dv::Text,
                ),
                f(
                    "start",
                    "/activities[at0001]/description[at0002]/items[at0113]/items[at0012]",
                    Dv::Date,
                ),
                f(
                    "stop",
                    "/activities[at0001]/description[at0002]/items[at0113]/items[at0013]",
                    Dv::Date,
                ),
            ],
        },
        EntryDef {
            archetype: MEDICATION_SUMMARY,
            rm_type: "EVALUATION",
            name: "Medication summary",
            event: None,
            state: None,
            fields: &[f("status", eval!("at9000"), Dv::Coded)],
        }],
    },
    Template {
        id: "cophr.procedures.v1",
        category: Category::Procedures,
        name: "Procedures list",
        composition_archetype: "openEHR-EHR-COMPOSITION.health_summary.v1",
        composition_category: ("431", "persistent"),
        time_field: Some("date"),
        time_is_date: true,
        entries: &[EntryDef {
            archetype: PROCEDURE,
            rm_type: "ACTION",
            name: "Procedure",
            event: Some(""),
            state: None,
            fields: &[
                m("procedure", "/description[at0001]/items[at0002]", Dv::Text),
                f("description", "/description[at0001]/items[at0049]", Dv::Text),
                f("body-site", "/description[at0001]/items[at0063]", Dv::Text),
                f("outcome", "/description[at0001]/items[at0048]", Dv::Text),
                f("complication", "/description[at0001]/items[at0069]", Dv::Text),
                f("procedure-type", "/description[at0001]/items[at0067]", Dv::Text),
                f("difficulty", "/description[at0001]/items[at0066]", Dv::Text),
            ],
        }],
    },
    Template {
        id: "cophr.immunisations.v1",
        category: Category::Immunisations,
        name: "Immunisation list",
        composition_archetype: "openEHR-EHR-COMPOSITION.health_summary.v1",
        composition_category: ("431", "persistent"),
        time_field: Some("date"),
        time_is_date: true,
        entries: &[EntryDef {
            archetype: MEDICATION_ACTION,
            rm_type: "ACTION",
            name: "Immunisation",
            event: Some(""),
            state: Some("status"),
            fields: &[m(
                "immunisation",
                "/description[at0017]/items[at0020]",
                Dv::Text,
            )],
        }],
    },
    Template {
        id: "cophr.lab_results.v1",
        category: Category::LabResults,
        name: "Laboratory result report",
        composition_archetype: "openEHR-EHR-COMPOSITION.report-result.v1",
        composition_category: ("433", "event"),
        time_field: Some("collected"),
        time_is_date: false,
        entries: &[EntryDef {
            archetype: LAB_RESULT,
            rm_type: "OBSERVATION",
            name: "Laboratory test result",
            event: Some(R_EVENT),
            state: None,
            fields: &[
                m("test", r_event!("at0005"), Dv::Text),
                m("result", analyte!("at0001"), Dv::Text),
                f("unit", analyte!("at9000"), Dv::Text),
                f("interpretation", analyte!("at9001"), Dv::Coded),
                f("reference-range", analyte!("at0004"), Dv::Text),
                f("status", analyte!("at0005"), Dv::Coded),
                f("reported", analyte!("at0006"), Dv::DateTime),
                f("comment", analyte!("at0003"), Dv::Text),
            ],
        }],
    },
    summary(
        "cophr.alerts.v1",
        Category::Alerts,
        "Alerts",
        &[evaluation(
            ALERT,
            "Alert",
            &[
                m("alert", eval!("at0002"), Dv::Text),
                f("detail", eval!("at9000"), Dv::Text),
                f("severity", eval!("at9001"), Dv::Coded),
            ],
        )],
    ),
    summary(
        "cophr.family_history.v1",
        Category::FamilyHistory,
        "Family history",
        &[evaluation(
            FAMILY_HISTORY,
            "Family history",
            &[
                m("condition", eval!("at9000"), Dv::Text),
                m("relative", eval!("at9001"), Dv::Text),
                f("genomic-markers", eval!("at9002"), Dv::Lines),
                f("comment", eval!("at9003"), Dv::Text),
            ],
        )],
    ),
    summary(
        "cophr.lifestyle.v1",
        Category::Lifestyle,
        "Lifestyle and social",
        &[
            evaluation(
                TOBACCO_SMOKING_SUMMARY,
                "Tobacco smoking summary",
                &[f("smoking", eval!("at0089"), Dv::Coded)],
            ),
            evaluation(
                ALCOHOL_CONSUMPTION_SUMMARY,
                "Alcohol consumption summary",
                &[f("alcohol", eval!("at9000"), Dv::Text)],
            ),
            evaluation(
                HOUSING_SUMMARY,
                "Housing summary",
                &[f("housing", eval!("at9000"), Dv::Text)],
            ),
            evaluation(
                OCCUPATION_SUMMARY,
                "Occupation summary",
                &[f("occupation", eval!("at9000"), Dv::Text)],
            ),
            evaluation(
                EDUCATION_SUMMARY,
                "Education summary",
                &[f("education", eval!("at9000"), Dv::Text)],
            ),
        ],
    ),
    Template {
        id: "cophr.examinations.v1",
        category: Category::Examinations,
        name: "Core examinations",
        composition_archetype: "openEHR-EHR-COMPOSITION.encounter.v1",
        composition_category: ("433", "event"),
        time_field: Some("measured-at"),
        time_is_date: false,
        entries: &[
            measure(HEIGHT, "Height/Length", &f("height", r_event!("at0004"), Dv::Quantity)),
            EntryDef {
                archetype: BODY_WEIGHT,
                rm_type: "OBSERVATION",
                name: "Body weight",
                event: Some(P2_EVENT),
                state: None,
                fields: &[f(
                    "weight",
                    "/data[at0002]/events[at0003]/data[at0001]/items[at0004]",
                    Dv::Quantity,
                )],
            },
            measure(
                BODY_MASS_INDEX,
                "Body mass index",
                &f("bmi", r_event!("at0004"), Dv::Quantity),
            ),
            measure(
                WAIST_CIRCUMFERENCE,
                "Waist circumference",
                &f("waist", r_event!("at0004"), Dv::Quantity),
            ),
            measure(
                HEAD_CIRCUMFERENCE,
                "Head circumference",
                &f("head-circumference", r_event!("at0004"), Dv::Quantity),
            ),
            measure(
                HIP_CIRCUMFERENCE,
                "Hip circumference",
                &f("hip-circumference", r_event!("at0004"), Dv::Quantity),
            ),
            measure(
                BODY_SURFACE_AREA,
                "Body surface area",
                &f("body-surface-area", r_event!("at0004"), Dv::Quantity),
            ),
        ],
    },
    Template {
        id: "cophr.investigations.v1",
        category: Category::Investigations,
        name: "Investigation result report",
        composition_archetype: "openEHR-EHR-COMPOSITION.report-result.v1",
        composition_category: ("433", "event"),
        time_field: Some("date"),
        time_is_date: true,
        entries: &[EntryDef {
            archetype: INVESTIGATION_RESULT,
            rm_type: "OBSERVATION",
            name: "Investigation result",
            event: Some(R_EVENT),
            state: None,
            fields: &[
                m("investigation", r_event!("at9000"), Dv::Text),
                f("kind", r_event!("at9001"), Dv::Coded),
                m("result", r_event!("at9002"), Dv::Text),
            ],
        }],
    },
    summary(
        "cophr.about_me.v1",
        Category::AboutMe,
        "About me",
        &[evaluation(
            ABOUT_ME,
            "About me",
            &[
                m("thing-1", eval!("at9000"), Dv::Text),
                f("thing-2", eval!("at9001"), Dv::Text),
                f("thing-3", eval!("at9002"), Dv::Text),
                f("summary", eval!("at9003"), Dv::Text),
            ],
        )],
    ),
    summary(
        "cophr.key_contacts.v1",
        Category::KeyContacts,
        "Key contacts",
        &[EntryDef {
            archetype: RELEVANT_CONTACT,
            rm_type: "ADMIN_ENTRY",
            name: "Relevant contact",
            event: None,
            state: None,
            fields: &[
                m("name", eval!("at9000"), Dv::Text),
                f("relationship", eval!("at9001"), Dv::Coded),
                f("telephone", eval!("at9002"), Dv::Text),
                f("email", eval!("at9003"), Dv::Text),
                f("address", eval!("at9004"), Dv::Text),
            ],
        }],
    ),
    summary(
        "cophr.preferences.v1",
        Category::Preferences,
        "Preferences",
        &[evaluation(
            COMMUNICATION_CAPABILITY,
            "Preferences",
            &[
                f("organ-donation", eval!("at9000"), Dv::Coded),
                f("language", eval!("at9001"), Dv::Text),
                f("communication-needs", eval!("at9002"), Dv::Text),
                f("reasonable-adjustments", eval!("at9003"), Dv::Text),
                f("religion-culture", eval!("at9004"), Dv::Text),
                f("consent", eval!("at9005"), Dv::Text),
            ],
        )],
    ),
];

/// Every core template.
pub fn templates() -> &'static [Template<'static>] {
    &TEMPLATES
}

/// The template of a category, if it has one.
pub fn template_for(c: &Category) -> Option<&'static Template<'static>> {
    TEMPLATES.iter().find(|t| &t.category == c)
}

/// A template by id.
pub fn template(id: &str) -> Option<&'static Template<'static>> {
    TEMPLATES.iter().find(|t| t.id == id)
}
