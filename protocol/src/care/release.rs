//! Results released after review (`docs/care-team.md`, "Results released after review").
//!
//! A clinician who has reviewed a result (a version of an item in `lab-results` or
//! `investigations`) releases it to the patient with a *release*: an annotation of that
//! version whose text is [`RELEASE_MARK`], optionally followed by a newline and a short
//! note. The release is signed like any entry, sits in the result's own stream (sealed
//! with it when the stream is sealed), and is what notifies the patient: until it is
//! written, a patient subscribed to released results hears nothing of the result (it is in
//! the record all the same: the record is the patient's, and hiding content from its
//! patient is not a rule the record has).
//!
//! [`crate::record::Record::apply`] checks every plain release (and the writer checks a
//! release before it seals it, as for appointments):
//! - it is written by someone other than the patient (a patient's key or device may
//!   annotate, never release): [`ReleaseError::ByPatient`];
//! - by someone whose grant gives at least the annotate level on the result's category
//!   (the ordinary annotation rule: an access refusal otherwise);
//! - of a create or amend in a result category: [`ReleaseError::NotAResult`];
//! - not twice: a release of a version whose release is already in the writer's causal
//!   past is refused ([`ReleaseError::AlreadyReleased`]). Two clinicians releasing the same
//!   version concurrently are both kept (neither had seen the other); notifications are
//!   keyed by the result, so the patient hears of it once. A corrected result (an amend) is
//!   a new version and is released on its own.

use crate::category::Category;
use crate::ids::EntryId;

/// The text that makes an annotation a release (a note may follow on the next line).
pub const RELEASE_MARK: &str = "cophr:result-released";

/// The categories whose items are results that can be released.
pub const RESULT_CATEGORIES: [Category; 2] = [Category::LabResults, Category::Investigations];

/// Whether a category holds results.
pub fn is_result_category(c: &Category) -> bool {
    RESULT_CATEGORIES.contains(c)
}

/// Whether an annotation's text claims to be a release (well-formed or not).
pub fn is_release(text: &str) -> bool {
    text.starts_with(RELEASE_MARK)
}

/// The text of a release, with an optional note.
pub fn release_text(note: Option<&str>) -> String {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{RELEASE_MARK}\n{n}"),
        None => RELEASE_MARK.to_owned(),
    }
}

/// The note of a release, if it has one (`None` for a text that is not a release).
pub fn release_note(text: &str) -> Option<&str> {
    text.strip_prefix(RELEASE_MARK)?.strip_prefix('\n')
}

/// Why a release is refused. Nothing is stored when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The patient (or a patient's device) wrote it: a release is a clinician's.
    #[error("a result is released by a clinician who reviewed it, not by the patient")]
    ByPatient,
    /// The text starts with the mark but is not a release (a note must follow a newline).
    #[error("an annotation starting `{RELEASE_MARK}` must be a release: the mark, then optionally a newline and a note")]
    Malformed,
    /// The target is not a result (a create or amend in `lab-results` or `investigations`).
    #[error("{0} is not a result: only a version of a lab result or investigation is released")]
    NotAResult(EntryId),
    /// The version is already released (that release is in the writer's causal past).
    #[error("result {target} is already released (by {earlier})")]
    AlreadyReleased {
        /// The version released.
        target: EntryId,
        /// The earlier release.
        earlier: EntryId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Level;
    use crate::entry::Payload;
    use crate::record::{AccessError, Rejection};
    use crate::testkit::{bp, grant, key, text_body, Fixture};

    struct Setup {
        f: Fixture,
        consultant: crate::keys::Keypair,
        result: EntryId,
    }

    /// George's record with a potassium result written by the lab; the consultant may
    /// annotate lab results.
    fn setup() -> Setup {
        let mut f = Fixture::new(1, "george");
        let lab = key(2, "lab");
        let consultant = key(3, "consultant");
        f.grant(grant(
            &lab,
            Level::Write,
            &[Category::LabResults],
            false,
            false,
        ));
        f.grant(grant(
            &consultant,
            Level::Annotate,
            &[Category::LabResults, Category::VitalSigns],
            false,
            false,
        ));
        let result = f
            .create(
                &lab,
                Category::LabResults,
                text_body(&[("test", "Potassium"), ("result", "5.9"), ("unit", "mmol/L")]),
            )
            .unwrap();
        Setup {
            f,
            consultant,
            result,
        }
    }

    fn release(target: EntryId, note: Option<&str>) -> Payload {
        Payload::Annotate {
            target,
            text: release_text(note),
        }
    }

    #[test]
    fn a_clinician_with_annotate_on_the_category_releases_a_result_once() {
        let Setup {
            mut f,
            consultant,
            result,
        } = setup();
        let r = f
            .write(
                &consultant,
                release(result, Some("Reviewed: repeat in a week")),
            )
            .unwrap();
        assert_eq!(f.record.releases_of(&result), vec![r.id()]);
        match &r.entry().payload {
            Payload::Annotate { text, .. } => {
                assert_eq!(release_note(text), Some("Reviewed: repeat in a week"))
            }
            other => panic!("{other:?}"),
        }
        let len = f.record.len();
        let again = f.write(&consultant, release(result, None)).unwrap_err();
        assert_eq!(
            again,
            Rejection::Release(ReleaseError::AlreadyReleased {
                target: result,
                earlier: r.id()
            })
        );
        assert_eq!(f.record.len(), len, "nothing stored");
    }

    #[test]
    fn the_patient_may_not_release_even_a_result_he_may_annotate() {
        let Setup { mut f, result, .. } = setup();
        let patient = f.patient.clone();
        let len = f.record.len();
        assert_eq!(
            f.write(&patient, release(result, None)).unwrap_err(),
            Rejection::Release(ReleaseError::ByPatient)
        );
        assert!(f.record.releases_of(&result).is_empty());
        assert_eq!(f.record.len(), len);
        // An ordinary note by the patient is still fine.
        f.write(
            &patient,
            Payload::Annotate {
                target: result,
                text: "I had fasted".into(),
            },
        )
        .unwrap();
    }

    #[test]
    fn someone_without_annotate_on_the_results_category_may_not_release() {
        let Setup { mut f, result, .. } = setup();
        let viewer = key(4, "pharmacist");
        let outsider = key(5, "physio");
        f.grant(grant(
            &viewer,
            Level::View,
            &[Category::LabResults],
            false,
            false,
        ));
        f.grant(grant(
            &outsider,
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        ));
        let len = f.record.len();
        for k in [&viewer, &outsider] {
            let err = f.write(k, release(result, None)).unwrap_err();
            assert!(matches!(err, Rejection::Access(_)), "{err:?}");
        }
        let stranger = key(6, "stranger");
        assert!(matches!(
            f.write(&stranger, release(result, None)).unwrap_err(),
            Rejection::Access(AccessError::NoGrant | _)
        ));
        assert_eq!(f.record.len(), len, "nothing stored");
    }

    #[test]
    fn only_a_result_is_released_and_a_malformed_mark_is_refused() {
        let Setup {
            mut f,
            consultant,
            result,
        } = setup();
        let patient = f.patient.clone();
        let bp_id = f
            .create(&patient, Category::VitalSigns, bp(140, 90))
            .unwrap();
        let len = f.record.len();
        assert_eq!(
            f.write(&consultant, release(bp_id, None)).unwrap_err(),
            Rejection::Release(ReleaseError::NotAResult(bp_id))
        );
        // An annotation is not a result either (releasing a release).
        let note = f
            .write(
                &consultant,
                Payload::Annotate {
                    target: result,
                    text: "Looks haemolysed".into(),
                },
            )
            .unwrap()
            .id();
        assert_eq!(
            f.write(&consultant, release(note, None)).unwrap_err(),
            Rejection::Release(ReleaseError::NotAResult(note))
        );
        assert_eq!(
            f.write(
                &consultant,
                Payload::Annotate {
                    target: result,
                    text: format!("{RELEASE_MARK}-ish"),
                }
            )
            .unwrap_err(),
            Rejection::Release(ReleaseError::Malformed)
        );
        assert_eq!(f.record.len(), len + 1, "only the plain note was stored");
        assert!(f.record.releases_of(&result).is_empty());
    }

    #[test]
    fn an_amended_result_is_a_new_version_released_on_its_own_and_investigations_are_results() {
        let mut f = Fixture::new(1, "george");
        let consultant = key(3, "consultant");
        f.grant(grant(
            &consultant,
            Level::Write,
            &[Category::Investigations],
            false,
            false,
        ));
        let ecg = f
            .create(
                &consultant,
                Category::Investigations,
                text_body(&[("investigation", "ECG"), ("result", "Sinus rhythm")]),
            )
            .unwrap();
        f.write(&consultant, release(ecg, None)).unwrap();
        let amended = f
            .write(
                &consultant,
                Payload::Amend {
                    target: ecg,
                    body: text_body(&[("investigation", "ECG"), ("result", "Sinus rhythm, LVH")]),
                },
            )
            .unwrap()
            .id();
        f.write(&consultant, release(amended, None)).unwrap();
        assert_eq!(f.record.releases_of(&amended).len(), 1);
        assert_eq!(f.record.releases_of(&ecg).len(), 1);
    }

    #[test]
    fn concurrent_releases_on_two_replicas_are_both_kept_a_later_one_is_refused() {
        let Setup {
            mut f,
            consultant,
            result,
        } = setup();
        let nurse = key(7, "renal-nurse");
        f.grant(grant(
            &nurse,
            Level::Annotate,
            &[Category::LabResults],
            false,
            false,
        ));
        let mut replica = f.clone();
        let a = f.write(&consultant, release(result, None)).unwrap();
        let b = replica.write(&nurse, release(result, None)).unwrap();
        // Neither writer had seen the other's release: the gate keeps both.
        f.record.apply(b.clone()).unwrap();
        replica.record.apply(a.clone()).unwrap();
        let mut both = vec![a.id(), b.id()];
        both.sort();
        let mut held = f.record.releases_of(&result);
        held.sort();
        assert_eq!(held, both);
        // Now both are in the past of anything either writes: a third is refused.
        assert!(matches!(
            f.write(&consultant, release(result, None)).unwrap_err(),
            Rejection::Release(ReleaseError::AlreadyReleased { .. })
        ));
    }

    #[test]
    fn in_a_sealed_stream_the_writer_checks_the_release_before_sealing_it() {
        let mut f = Fixture::new(1, "george");
        let lab = key(2, "lab");
        let consultant = key(3, "consultant");
        f.grant(grant(
            &lab,
            Level::Write,
            &[Category::LabResults],
            false,
            false,
        ));
        f.grant(grant(
            &consultant,
            Level::Annotate,
            &[Category::LabResults],
            false,
            false,
        ));
        let policy = crate::record::SealPolicy {
            seal_new_streams: true,
            history: true,
        };
        let mut rng = crate::testkit::SeededRng::new(7);
        let mut at_lab = f.record.clone();
        at_lab.unlock(&lab);
        let out = at_lab
            .prepare_sealed(
                &lab,
                Payload::Create {
                    category: Category::LabResults,
                    body: text_body(&[("test", "HbA1c"), ("result", "48")]),
                },
                f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
        let result = out.last().unwrap().id();
        for v in &out {
            at_lab.apply(v.clone()).unwrap();
        }
        let mut at_consultant = f.record.clone();
        at_consultant.unlock(&consultant);
        for v in &out {
            at_consultant.apply(v.clone()).unwrap();
        }
        let released = at_consultant
            .prepare_sealed(
                &consultant,
                release(result, None),
                f.now + 1000,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
        let last = released.last().unwrap();
        assert!(
            matches!(last.entry().payload, Payload::SealedAnnotate { .. }),
            "sealed like any annotation"
        );
        for v in &released {
            at_consultant.apply(v.clone()).unwrap();
        }
        assert_eq!(at_consultant.releases_of(&result), vec![last.id()]);
        // The gate cannot read a sealed release: its writer refuses a second one.
        assert!(matches!(
            at_consultant
                .prepare_sealed(
                    &consultant,
                    release(result, None),
                    f.now + 2000,
                    None,
                    policy,
                    &mut rng
                )
                .unwrap_err(),
            Rejection::Release(ReleaseError::AlreadyReleased { .. })
        ));
        // And the patient's node refuses his own before sealing it.
        let mut at_patient = f.record.clone();
        at_patient.unlock(&f.patient);
        for v in out.iter().chain(&released) {
            at_patient.apply(v.clone()).unwrap();
        }
        let other = at_lab
            .prepare_sealed(
                &lab,
                Payload::Create {
                    category: Category::LabResults,
                    body: text_body(&[("test", "eGFR"), ("result", "38")]),
                },
                f.now + 3000,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
        for v in &other {
            at_patient.apply(v.clone()).unwrap();
        }
        let patient = f.patient.clone();
        assert_eq!(
            at_patient
                .prepare_sealed(
                    &patient,
                    release(other.last().unwrap().id(), None),
                    f.now + 4000,
                    None,
                    policy,
                    &mut rng
                )
                .unwrap_err(),
            Rejection::Release(ReleaseError::ByPatient)
        );
    }
}
