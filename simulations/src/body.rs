//! Plausible, schema-valid bodies for the categories the scenarios write.

use cophr_protocol::category::Category;
use cophr_protocol::schema;
use cophr_protocol::testkit::{bp, text_body};
use cophr_protocol::Value;

const PROBLEMS: [&str; 6] = [
    "Type 2 diabetes",
    "Hypertension",
    "Chronic kidney disease stage 3",
    "Renal anaemia",
    "Diabetic foot ulcer",
    "Peripheral neuropathy",
];
const MEDICATIONS: [&str; 6] = [
    "Metformin 500 mg",
    "Ramipril 5 mg",
    "Atorvastatin 20 mg",
    "Insulin glargine",
    "Furosemide 40 mg",
    "Epoetin alfa",
];
const ALLERGIES: [&str; 4] = ["Penicillin", "Latex", "Peanuts", "Codeine"];
const PROCEDURES: [(&str, &str); 4] = [
    ("Wound dressing, left shin", "healing"),
    ("Catheter change", "no problems"),
    ("Blood sample taken", "sent to lab"),
    ("Foot check", "no new ulcers"),
];
const TESTS: [(&str, &str); 4] = [
    ("U&E (blood test request)", "requested"),
    ("eGFR", "38 mL/min"),
    ("HbA1c", "58 mmol/mol"),
    ("Haemoglobin", "104 g/L"),
];
const ABOUT: [&str; 3] = [
    "I am deaf in my left ear",
    "Mary, my wife, knows my medicines",
    "I like to be called George",
];

/// A body for `category`, varied by `seed`.
pub(crate) fn body(category: &Category, seed: u64) -> Value {
    let i = (seed % 997) as usize;
    match category {
        Category::VitalSigns => bp(110 + (seed % 50) as i64, 65 + ((seed / 50) % 30) as i64),
        Category::Problems => text_body(&[("problem", PROBLEMS[i % PROBLEMS.len()])]),
        Category::Medications => text_body(&[("medication", MEDICATIONS[i % MEDICATIONS.len()])]),
        Category::Allergies => text_body(&[("agent", ALLERGIES[i % ALLERGIES.len()])]),
        Category::Procedures => {
            let (p, o) = PROCEDURES[i % PROCEDURES.len()];
            text_body(&[("procedure", p), ("outcome", o)])
        }
        Category::LabResults => {
            let (t, r) = TESTS[i % TESTS.len()];
            text_body(&[("test", t), ("result", r)])
        }
        Category::AboutMe => text_body(&[("thing-1", ABOUT[i % ABOUT.len()])]),
        Category::Appointments => {
            let what = [
                "District nurse visit",
                "Dressing change",
                "Blood test at home",
            ];
            text_body(&[
                (
                    "status",
                    if seed.is_multiple_of(5) {
                        "cancelled"
                    } else {
                        "booked"
                    },
                ),
                ("start", "2026-12-10T09:30:00Z"),
                ("description", what[i % what.len()]),
            ])
        }
        other => {
            // Any other category: its first required text field, if the schema has one.
            let field = schema::schema(other)
                .and_then(|s| s.fields.iter().find(|f| f.required))
                .map(|f| f.name)
                .unwrap_or("text");
            text_body(&[(field, "noted")])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid() {
        for c in [
            Category::VitalSigns,
            Category::Problems,
            Category::Medications,
            Category::Allergies,
            Category::Procedures,
            Category::LabResults,
            Category::AboutMe,
            Category::Appointments,
        ] {
            for seed in 0..40 {
                let b = body(&c, seed * 7919);
                schema::validate(&c, &b).unwrap_or_else(|e| panic!("{c}: {e}"));
            }
        }
    }
}
