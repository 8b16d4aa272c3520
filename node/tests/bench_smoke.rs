//! The host benchmark at tiny sizes, so it cannot rot.

#[allow(dead_code)]
#[path = "../benches/host.rs"]
mod host;

#[test]
fn host_benchmark_runs_at_tiny_sizes() {
    host::run(true);
}

#[allow(dead_code)]
#[path = "../benches/fhir.rs"]
mod fhir;

#[test]
fn fhir_import_benchmark_runs_at_tiny_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = cophr_node::store::Store::open(
        &dir.path().join("store"),
        cophr_protocol::testkit::key(0, "node"),
    )
    .expect("open");
    let bundle = fhir::bundle(12, 1);
    let p = fhir::fresh_record(&store, 0);
    assert_eq!(fhir::import(&store, &p, &bundle, 2), 12);
    // Every resource became a sealed entry (after the genesis; each stream's first epoch
    // opened before its first entry), with one audit event.
    let (data, openings) = store
        .with_record(&p.actor(), |r| {
            let openings = r
                .entries()
                .filter(|e| matches!(e.entry().payload, cophr_protocol::Payload::KeyWrap { .. }))
                .count();
            (r.len() - openings, openings)
        })
        .expect("record");
    assert_eq!(data, 13);
    assert!(openings > 0);
    let audit = store.audit_events(&p.actor()).expect("audit");
    assert!(audit.iter().any(|a| a.event.entries.len() == 12 + openings
        && a.event.detail.as_deref() == Some("FHIR import: 12 resources")));
}

#[allow(dead_code)]
#[path = "../benches/documents.rs"]
mod documents;

#[test]
fn document_replication_benchmark_runs_at_tiny_size() {
    let figures = documents::run(true);
    assert_eq!(figures.len(), 1);
    assert!(figures[0].bytes > 3 << 20);
}

#[allow(dead_code)]
#[path = "../benches/fhir_read.rs"]
mod fhir_read;

#[test]
fn fhir_read_benchmark_runs_at_tiny_size() {
    let figures = fhir_read::run(&[120], 1, 120);
    // The build at start and the first read, then ten reads as the patient and three as
    // a clinician through the index, and the same without.
    assert_eq!(figures.len(), 28);
    for indexed in [true, false] {
        let f: Vec<_> = figures
            .iter()
            .skip(2)
            .filter(|f| f.indexed == indexed)
            .collect();
        // The clinician sees every vital sign: the same 30 heart rates by code, those of
        // May by date, the first page of the Observations by patient.
        assert_eq!(f[10].entries, 30);
        assert_eq!(f[10].what, "search by code (a clinician's)");
        assert_eq!(f[11].entries, f[2].entries);
        assert_eq!(f[12].entries, 100);
        // Pages of 100 of a 120-entry record: everything, the 30 heart rates by code, the
        // record's Observations by patient and by subject, one by its original id, one
        // item's history, Provenances, the Observations' history, and the heart rates by
        // code from the 900th (none).
        assert_eq!(f[0].entries, 100);
        assert_eq!(f[1].entries, 30);
        assert_eq!(f[3].entries, 100);
        assert_eq!(f[4].entries, 100);
        assert_eq!(f[5].entries, 1);
        assert_eq!(f[6].entries, 1);
        assert_eq!(f[7].entries, 100);
        assert_eq!(f[8].entries, 100);
        assert_eq!(f[9].entries, 0);
    }
}

#[allow(dead_code)]
#[path = "../benches/worklist.rs"]
mod worklist;

#[test]
fn worklist_benchmark_runs_at_tiny_size() {
    worklist::run(true);
}
