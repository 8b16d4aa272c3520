//! Record categories: the 16 core categories of blueprint 7.1, the patient-facing extras
//! (about me, documents, questionnaires, messages, appointments, referrals and tasks), and
//! namespaced extensions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest extension name accepted.
pub const MAX_EXTENSION_NAME: usize = 64;

/// A category of record data. Access grants are scoped by category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Name, date of birth, gender, address, contact details.
    Demographics,
    /// Carers, next of kin.
    KeyContacts,
    /// Significant warnings (implants, keyholder, dangerous pet).
    Alerts,
    /// Organ donation, language, reasonable adjustments, religious or cultural preferences.
    Preferences,
    /// Allergies and adverse reactions.
    Allergies,
    /// Problems and diagnoses.
    Problems,
    /// Procedures.
    Procedures,
    /// Medication statements.
    Medications,
    /// Immunisations.
    Immunisations,
    /// Vital signs.
    VitalSigns,
    /// Results from wearable devices.
    Wearables,
    /// Laboratory results.
    LabResults,
    /// Imaging, ECG, pulmonary function, visual acuity, urinalysis.
    Investigations,
    /// Height, weight, BMI, circumferences, body surface area.
    Examinations,
    /// Smoking, alcohol, housing, occupation, education.
    Lifestyle,
    /// Family history.
    FamilyHistory,
    /// "Top three things to know about me" (Leeds PHR).
    AboutMe,
    /// Attached documents (PDF, JPEG, PNG).
    Documents,
    /// Questionnaire responses (PROMs).
    Questionnaires,
    /// Messages with the care team.
    Messages,
    /// Appointments (FHIR Appointment): booked, changed and cancelled as versions.
    Appointments,
    /// Referrals and care-team tasks (FHIR Task, a referral also ServiceRequest), whose
    /// status steps are written by the party that took them ([`crate::care`]).
    Tasks,
    /// A namespaced extension, written `ext:<namespace>/<name>` (e.g. `ext:uk.respect/respect`).
    Extension(String),
}

/// A category name that is not known and not a well-formed extension.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown category `{0}` (run `cophr schema` to list categories; extensions are written ext:<namespace>/<name>)")]
pub struct UnknownCategory(pub String);

impl Category {
    /// Every built-in (non-extension) category, in display order.
    pub const BUILT_IN: [Category; 22] = [
        Category::AboutMe,
        Category::Alerts,
        Category::Demographics,
        Category::KeyContacts,
        Category::Preferences,
        Category::Allergies,
        Category::Problems,
        Category::Procedures,
        Category::Medications,
        Category::Immunisations,
        Category::VitalSigns,
        Category::Wearables,
        Category::LabResults,
        Category::Investigations,
        Category::Examinations,
        Category::Lifestyle,
        Category::FamilyHistory,
        Category::Documents,
        Category::Questionnaires,
        Category::Messages,
        Category::Appointments,
        Category::Tasks,
    ];

    /// The stable name used on the wire, in flags and in URLs.
    pub fn name(&self) -> &str {
        match self {
            Category::Demographics => "demographics",
            Category::KeyContacts => "key-contacts",
            Category::Alerts => "alerts",
            Category::Preferences => "preferences",
            Category::Allergies => "allergies",
            Category::Problems => "problems",
            Category::Procedures => "procedures",
            Category::Medications => "medications",
            Category::Immunisations => "immunisations",
            Category::VitalSigns => "vital-signs",
            Category::Wearables => "wearables",
            Category::LabResults => "lab-results",
            Category::Investigations => "investigations",
            Category::Examinations => "examinations",
            Category::Lifestyle => "lifestyle",
            Category::FamilyHistory => "family-history",
            Category::AboutMe => "about-me",
            Category::Documents => "documents",
            Category::Questionnaires => "questionnaires",
            Category::Messages => "messages",
            Category::Appointments => "appointments",
            Category::Tasks => "tasks",
            Category::Extension(n) => n,
        }
    }

    /// A human title.
    pub fn title(&self) -> &str {
        match self {
            Category::Demographics => "Demographics",
            Category::KeyContacts => "Key contacts",
            Category::Alerts => "Alerts",
            Category::Preferences => "Preferences",
            Category::Allergies => "Allergies",
            Category::Problems => "Problems",
            Category::Procedures => "Procedures",
            Category::Medications => "Medications",
            Category::Immunisations => "Immunisations",
            Category::VitalSigns => "Vital signs",
            Category::Wearables => "Wearable results",
            Category::LabResults => "Lab results",
            Category::Investigations => "Other investigations",
            Category::Examinations => "Core examinations",
            Category::Lifestyle => "Lifestyle and social",
            Category::FamilyHistory => "Family history",
            Category::AboutMe => "About me",
            Category::Documents => "Documents",
            Category::Questionnaires => "Questionnaires",
            Category::Messages => "Messages",
            Category::Appointments => "Appointments",
            Category::Tasks => "Referrals and tasks",
            Category::Extension(n) => n,
        }
    }

    /// Whether this is a namespaced extension.
    pub fn is_extension(&self) -> bool {
        matches!(self, Category::Extension(_))
    }
}

fn valid_extension(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("ext:") else {
        return false;
    };
    let Some((ns, local)) = rest.split_once('/') else {
        return false;
    };
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || extra.contains(&c)
            })
    };
    name.len() <= MAX_EXTENSION_NAME && ok(ns, &['.']) && ok(local, &['_'])
}

impl FromStr for Category {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(c) = Category::BUILT_IN.iter().find(|c| c.name() == s) {
            return Ok(c.clone());
        }
        if valid_extension(s) {
            return Ok(Category::Extension(s.to_owned()));
        }
        Err(UnknownCategory(s.to_owned()))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_refused() {
        for c in Category::BUILT_IN.iter() {
            assert_eq!(&c.name().parse::<Category>().unwrap(), c);
        }
        assert_eq!(
            "ext:uk.respect/respect".parse::<Category>().unwrap(),
            Category::Extension("ext:uk.respect/respect".into())
        );
        assert!("allergy".parse::<Category>().is_err());
        assert!("ext:/x".parse::<Category>().is_err());
        assert!("ext:Upper/x".parse::<Category>().is_err());
    }
}
