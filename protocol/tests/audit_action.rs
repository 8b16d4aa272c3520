//! The one mapping from entry kind to audit action.

use cophr_protocol::audit::Action;
use cophr_protocol::testkit::{grant, key, profile, text_body};
use cophr_protocol::{Category, EntryId, Level, Payload};

#[test]
fn every_entry_kind_has_its_audit_action() {
    let target = EntryId([7; 32]);
    let cases = [
        (
            Payload::Genesis {
                profile: profile("George", "patient", None),
            },
            Action::Add,
        ),
        (
            Payload::Create {
                category: Category::Allergies,
                body: text_body(&[("agent", "nuts")]),
            },
            Action::Add,
        ),
        (
            Payload::Amend {
                target,
                body: text_body(&[("agent", "peanuts")]),
            },
            Action::Edit,
        ),
        (
            Payload::Delete {
                target,
                reason: "wrong".into(),
            },
            Action::Delete,
        ),
        (
            Payload::Annotate {
                target,
                text: "seen".into(),
            },
            Action::Annotate,
        ),
        (
            Payload::Grant(grant(&key(1, "Mary"), Level::View, &[], false, false)),
            Action::Grant,
        ),
        (
            Payload::Revoke {
                grant: target,
                category: None,
                reason: "moved".into(),
            },
            Action::Revoke,
        ),
        (
            Payload::Profile(profile("Mary", "carer", None)),
            Action::Profile,
        ),
        (
            Payload::MoveHome {
                host: vec![1, 2, 3],
                addrs: vec![],
            },
            Action::Move,
        ),
    ];
    for (payload, action) in &cases {
        assert_eq!(Action::for_payload(payload), *action, "{}", payload.kind());
    }
}
