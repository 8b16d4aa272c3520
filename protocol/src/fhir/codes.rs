//! The standard codes cophr reads and writes: LOINC codes of vital signs, examinations and
//! common laboratory tests with their UCUM units and physiological limits, SNOMED CT
//! smoking status, and the HL7 code systems of categories and relationships.

/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// The Observation category code system.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// cophr's own category codes (a second `category` coding, so that an Observation cophr
/// wrote imports back into the category it came from, e.g. wearables rather than vital
/// signs).
pub const COPHR_CATEGORY: &str = "https://cophr.invalid/category";
/// cophr's field names, for values FHIR has no element for (a coding's code is the field).
pub const COPHR_FIELD: &str = "https://cophr.invalid/field";
/// cophr's own value codes (a coding beside the standard one where that is coarser, e.g.
/// `formal-carer` for a RelatedPerson's relationship).
pub const COPHR_CODE: &str = "https://cophr.invalid/code";
/// cophr's actor ids (`a-…`) as identifiers: a task's requester and owner, an
/// appointment's participants.
pub const COPHR_ACTOR: &str = "https://cophr.invalid/actor";
/// cophr's task kinds (`referral`, `task`, `blood-test-request`), a Task's `code`.
pub const COPHR_TASK_KIND: &str = "https://cophr.invalid/task-kind";
/// HL7 v3 RoleCode (relationships).
pub const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
/// HL7 v2 table 0074 (diagnostic service sections).
pub const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
/// HL7 v3 ObservationInterpretation.
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// One measurement: the cophr field, its LOINC codes (the first is the one exported), the
/// units cophr stores it in (the first is canonical), the UCUM units accepted on import with
/// their factor to the canonical unit, the values that are physiologically impossible
/// (outside `possible`, refused) and implausible (outside `plausible`, flagged), in the
/// canonical unit.
#[derive(Debug)]
pub(crate) struct Measure {
    pub field: &'static str,
    pub codes: &'static [&'static str],
    pub display: &'static str,
    pub units: &'static [(&'static str, f64)],
    pub possible: (f64, f64),
    pub plausible: (f64, f64),
}

const fn m(
    field: &'static str,
    codes: &'static [&'static str],
    display: &'static str,
    units: &'static [(&'static str, f64)],
    possible: (f64, f64),
    plausible: (f64, f64),
) -> Measure {
    Measure {
        field,
        codes,
        display,
        units,
        possible,
        plausible,
    }
}

const PER_MIN: &[(&str, f64)] = &[("/min", 1.0)];
const CM: &[(&str, f64)] = &[("cm", 1.0), ("m", 100.0), ("mm", 0.1), ("[in_i]", 2.54)];

/// Vital signs (the `vital-signs` and `wearables` categories).
pub(crate) const VITALS: &[Measure] = &[
    m(
        "heart-rate",
        &["8867-4"],
        "Heart rate",
        PER_MIN,
        (0.0, 400.0),
        (20.0, 250.0),
    ),
    m(
        "respiration-rate",
        &["9279-1"],
        "Respiratory rate",
        PER_MIN,
        (0.0, 100.0),
        (4.0, 60.0),
    ),
    m(
        "spo2",
        &["59408-5", "2708-6", "59417-6"],
        "Oxygen saturation in Arterial blood by Pulse oximetry",
        &[("%", 1.0)],
        (0.0, 100.0),
        (50.0, 100.0),
    ),
    // [degF] is converted with its offset (see `canonical`).
    m(
        "temperature",
        &["8310-5", "8331-1", "8332-9", "8333-7", "8328-7"],
        "Body temperature",
        &[("Cel", 1.0), ("[degF]", 1.0)],
        (25.0, 45.0),
        (33.0, 42.5),
    ),
    m(
        "systolic",
        &["8480-6"],
        "Systolic blood pressure",
        &[("mm[Hg]", 1.0)],
        (0.0, 400.0),
        (50.0, 260.0),
    ),
    m(
        "diastolic",
        &["8462-4"],
        "Diastolic blood pressure",
        &[("mm[Hg]", 1.0)],
        (0.0, 300.0),
        (25.0, 160.0),
    ),
    m(
        "blood-glucose",
        &["15074-8", "2339-0", "2345-7", "41653-7"],
        "Glucose [Moles/volume] in Blood",
        &[("mmol/L", 1.0), ("mg/dL", 1.0 / 18.016)],
        (0.0, 100.0),
        (1.0, 45.0),
    ),
    m(
        "steps",
        &["41950-7", "55423-8"],
        "Number of steps in 24 hour Measured",
        &[
            ("/d", 1.0),
            ("{steps}", 1.0),
            ("{steps}/d", 1.0),
            ("1", 1.0),
        ],
        (0.0, 1_000_000.0),
        (0.0, 100_000.0),
    ),
];

/// Core examinations (the `examinations` category).
pub(crate) const EXAMS: &[Measure] = &[
    m(
        "height",
        &["8302-2", "8306-3", "8308-9"],
        "Body height",
        CM,
        (10.0, 300.0),
        (30.0, 250.0),
    ),
    m(
        "weight",
        &["29463-7", "3141-9", "8350-1"],
        "Body weight",
        &[("kg", 1.0), ("g", 0.001), ("[lb_av]", 0.453_592_37)],
        (0.2, 700.0),
        (0.4, 350.0),
    ),
    m(
        "bmi",
        &["39156-5"],
        "Body mass index (BMI) [Ratio]",
        &[("kg/m2", 1.0)],
        (5.0, 200.0),
        (10.0, 90.0),
    ),
    m(
        "waist",
        &["8280-0", "56086-2"],
        "Waist Circumference at umbilicus by Tape measure",
        CM,
        (10.0, 400.0),
        (30.0, 250.0),
    ),
    m(
        "head-circumference",
        &["9843-4", "8287-5"],
        "Head Occipital-frontal circumference",
        CM,
        (10.0, 100.0),
        (20.0, 70.0),
    ),
    m(
        "hip-circumference",
        &["62409-8"],
        "Hip circumference",
        CM,
        (10.0, 400.0),
        (40.0, 250.0),
    ),
    m(
        "body-surface-area",
        &["8277-6", "3140-1"],
        "Body surface area",
        &[("m2", 1.0)],
        (0.05, 6.0),
        (0.1, 3.5),
    ),
];

/// LOINC panels of vital signs, whose `component`s are the measurements.
pub(crate) const BP_PANEL: &[&str] = &["85354-9", "55284-4", "35094-2"];
/// The vital signs panel cophr exports an entry of several vital signs as.
pub(crate) const VITALS_PANEL: (&str, &str) = ("85353-1", "Vital signs panel");
/// Body position (a component of a blood pressure).
pub(crate) const POSITION: (&str, &str) = ("8361-8", "Body position with respect to gravity");

/// A common laboratory test: LOINC code, display, names it is written as (lower case), and
/// the UCUM units of its property (the first is the one the code is for).
#[derive(Debug)]
pub(crate) struct Lab {
    pub code: &'static str,
    pub display: &'static str,
    pub names: &'static [&'static str],
    pub units: &'static [&'static str],
}

const fn lab(
    code: &'static str,
    display: &'static str,
    names: &'static [&'static str],
    units: &'static [&'static str],
) -> Lab {
    Lab {
        code,
        display,
        names,
        units,
    }
}

/// Common laboratory tests. The same analyte has one code per property (mass or substance
/// concentration): the unit picks the code on export and is checked against it on import.
pub(crate) const LABS: &[Lab] = &[
    lab(
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        &["hba1c", "haemoglobin a1c", "hemoglobin a1c"],
        &["%"],
    ),
    lab(
        "59261-8",
        "Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol",
        &["hba1c", "haemoglobin a1c", "hemoglobin a1c"],
        &["mmol/mol"],
    ),
    lab(
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        &["cholesterol", "total cholesterol", "serum cholesterol"],
        &["mg/dL", "g/L"],
    ),
    lab(
        "14647-2",
        "Cholesterol [Moles/volume] in Serum or Plasma",
        &["cholesterol", "total cholesterol", "serum cholesterol"],
        &["mmol/L"],
    ),
    lab(
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
        &["hdl", "hdl cholesterol"],
        &["mg/dL"],
    ),
    lab(
        "14646-4",
        "Cholesterol in HDL [Moles/volume] in Serum or Plasma",
        &["hdl", "hdl cholesterol"],
        &["mmol/L"],
    ),
    lab(
        "13457-7",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        &["ldl", "ldl cholesterol"],
        &["mg/dL"],
    ),
    lab(
        "22748-8",
        "Cholesterol in LDL [Moles/volume] in Serum or Plasma",
        &["ldl", "ldl cholesterol"],
        &["mmol/L"],
    ),
    lab(
        "2571-8",
        "Triglyceride [Mass/volume] in Serum or Plasma",
        &["triglycerides", "triglyceride"],
        &["mg/dL"],
    ),
    lab(
        "14927-8",
        "Triglyceride [Moles/volume] in Serum or Plasma",
        &["triglycerides", "triglyceride"],
        &["mmol/L"],
    ),
    lab(
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        &["creatinine", "serum creatinine"],
        &["mg/dL"],
    ),
    lab(
        "14682-9",
        "Creatinine [Moles/volume] in Serum or Plasma",
        &["creatinine", "serum creatinine"],
        &["umol/L", "mmol/L"],
    ),
    lab(
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)",
        &["egfr"],
        &["mL/min/{1.73_m2}", "mL/min/1.73m2"],
    ),
    lab(
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        &["sodium", "serum sodium"],
        &["mmol/L", "meq/L", "m[eq]/L"],
    ),
    lab(
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        &["potassium", "serum potassium"],
        &["mmol/L", "meq/L", "m[eq]/L"],
    ),
    lab(
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        &["haemoglobin", "hemoglobin", "hb"],
        &["g/dL", "g/L"],
    ),
    lab(
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        &["white cell count", "wbc", "white blood cells"],
        &["10*3/uL", "10*9/L", "/nL"],
    ),
    lab(
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        &["platelets", "platelet count"],
        &["10*3/uL", "10*9/L", "/nL"],
    ),
    lab(
        "3016-3",
        "Thyrotropin [Units/volume] in Serum or Plasma",
        &["tsh"],
        &["m[IU]/L", "u[IU]/mL", "mIU/L"],
    ),
    lab(
        "1742-6",
        "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
        &["alt"],
        &["U/L"],
    ),
    lab(
        "1988-5",
        "C reactive protein [Mass/volume] in Serum or Plasma",
        &["crp", "c-reactive protein"],
        &["mg/L", "mg/dL"],
    ),
    lab(
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        &["glucose", "blood glucose"],
        &["mg/dL"],
    ),
    lab(
        "15074-8",
        "Glucose [Moles/volume] in Blood",
        &["glucose", "blood glucose"],
        &["mmol/L"],
    ),
];

/// The measurement a LOINC code is for, in either table.
pub(crate) fn measure(code: &str) -> Option<&'static Measure> {
    VITALS.iter().chain(EXAMS).find(|m| m.codes.contains(&code))
}

/// The common lab test a LOINC code is for.
pub(crate) fn lab_of(code: &str) -> Option<&'static Lab> {
    LABS.iter().find(|l| l.code == code)
}

/// The LOINC code of a test written as `name` with results in `unit`.
pub(crate) fn lab_named(name: &str, unit: Option<&str>) -> Option<&'static Lab> {
    let n = name.trim().to_lowercase();
    LABS.iter()
        .find(|l| l.names.contains(&n.as_str()) && unit.is_none_or(|u| l.units.contains(&u)))
}

/// A UCUM unit as written in practice, normalised (`mmHg` → `mm[Hg]`, `bpm` → `/min`, …).
pub(crate) fn ucum_alias(unit: &str) -> &str {
    match unit {
        "mmHg" | "mm Hg" => "mm[Hg]",
        "bpm" | "beats/minute" | "beats/min" | "{beats}/min" | "{breaths}/min"
        | "breaths/minute" | "{beat}/min" | "{breath}/min" | "/min" => "/min",
        "C" | "°C" | "degC" | "Cel" => "Cel",
        "F" | "°F" | "degF" | "[degF]" => "[degF]",
        "kg/m^2" | "kg/m2" => "kg/m2",
        "%" | "%{HemoglobinSaturation}" | "%{Oxygen}" => "%",
        "lb" | "lbs" | "[lb_av]" => "[lb_av]",
        "in" | "[in_i]" => "[in_i]",
        "steps" | "{steps}" | "{Steps}" => "{steps}",
        other => other,
    }
}

/// A value in `unit` (normalised) converted to the measurement's canonical unit, if the
/// unit is one of its units.
pub(crate) fn canonical(m: &Measure, value: f64, unit: &str) -> Option<f64> {
    let unit = ucum_alias(unit);
    let (_, factor) = m.units.iter().find(|(u, _)| *u == unit)?;
    Some(if unit == "[degF]" {
        (value - 32.0) * 5.0 / 9.0
    } else {
        value * factor
    })
}

/// SNOMED CT smoking status codes of cophr's smoking values (exported), with displays.
pub(crate) const SMOKING: &[(&str, &str, &str)] = &[
    ("never", "266919005", "Never smoked tobacco"),
    ("former", "8517006", "Ex-smoker"),
    ("current", "77176002", "Smoker"),
    (
        "unknown",
        "266927001",
        "Tobacco smoking consumption unknown",
    ),
];

/// HL7 v3 RoleCode codes of family relationships, by the words people write.
pub(crate) const FAMILY: &[(&str, &str)] = &[
    ("mother", "MTH"),
    ("father", "FTH"),
    ("parent", "PRN"),
    ("sister", "SIS"),
    ("brother", "BRO"),
    ("sibling", "SIB"),
    ("daughter", "DAU"),
    ("son", "SON"),
    ("child", "CHILD"),
    ("grandmother", "GRMTH"),
    ("grandfather", "GRFTH"),
    ("aunt", "AUNT"),
    ("uncle", "UNCLE"),
    ("cousin", "COUSN"),
    ("wife", "WIFE"),
    ("husband", "HUSB"),
];

/// The HL7 v2-0074 section of each kind of investigation cophr records (visual acuity has
/// none: `OTH` with the kind as the concept's text).
pub(crate) const INVESTIGATION_KINDS: &[(&str, &str)] = &[
    ("imaging", "RAD"),
    ("ecg", "EC"),
    ("pulmonary-function", "PF"),
    ("urinalysis", "URN"),
    ("visual-acuity", "OTH"),
    ("other", "OTH"),
];
