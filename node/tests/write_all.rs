//! `Store::write_all`: many entries in one durable write, all or nothing.

use cophr_node::store::{BatchError, BatchInfo, Store};
use cophr_protocol::audit::Action;
use cophr_protocol::testkit::{bp, key, profile};
use cophr_protocol::{Category, Payload, Value};

#[test]
fn a_refused_entry_stores_none_of_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(&dir.path().join("s"), key(0, "node")).expect("open");
    let g = key(1, "George");
    store
        .create_record(&g, profile("George", "patient", None), 1, None)
        .expect("create");
    let good = || Payload::Create {
        category: Category::VitalSigns,
        body: bp(120, 80),
    };
    let bad = Payload::Create {
        category: Category::Allergies,
        body: Value::map(),
    };
    let info = || BatchInfo {
        action: Action::Import,
        detail: Some("test".into()),
    };
    let e = store
        .write_all(&g.actor(), &g, vec![good(), bad, good()], info(), 2, None)
        .expect_err("refused");
    assert!(matches!(e, BatchError::Refused { index: 1, .. }), "{e}");
    assert_eq!(store.with_record(&g.actor(), |r| r.len()).expect("r"), 1);
    assert!(store.audit_events(&g.actor()).expect("audit").is_empty());

    let ids = store
        .write_all(
            &g.actor(),
            &g,
            vec![good(), good(), good()],
            info(),
            3,
            None,
        )
        .expect("written");
    assert_eq!(ids.len(), 3);
    // The genesis, the stream's first epoch (opened by the batch's first write), and the
    // three entries; the audit event names all four written.
    assert_eq!(store.with_record(&g.actor(), |r| r.len()).expect("r"), 5);
    let audit = store.audit_events(&g.actor()).expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.entries.len(), 4);
    assert_eq!(audit[0].event.entries[1..], ids[..]);

    // Durable: a reopened store holds them.
    drop(store);
    let (store, _) = Store::open(&dir.path().join("s"), key(0, "node")).expect("reopen");
    assert_eq!(store.with_record(&g.actor(), |r| r.len()).expect("r"), 5);

    // A stranger's batch is refused as a whole.
    let m = key(2, "Mallory");
    let e = store
        .write_all(&g.actor(), &m, vec![good()], info(), 4, None)
        .expect_err("no grant");
    assert!(matches!(e, BatchError::Refused { index: 0, .. }), "{e}");
}
