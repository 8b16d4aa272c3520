//! Documents stored apart, from the command line: `attach` recognises a file by its content
//! and refuses what it cannot accept; `download` saves it byte for byte; an export writes the
//! documents (sealed) beside the file, `verify` checks every byte of them offline with no
//! key, and a flipped byte fails it; `import` takes them, checked, into another home.

mod cli_support;

use cli_support::Person;

#[test]
fn documents_attach_download_export_verify_and_import() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_owned();

    // DICOM: the "DICM" marker after the 128-byte preamble.
    let mut dicom = vec![0u8; 128];
    dicom.extend_from_slice(b"DICM");
    dicom.extend((0..150_000u32).map(|i| (i % 241) as u8));
    std::fs::write(path("ct.dcm"), &dicom).unwrap();
    let scan = george.json(&["attach", &path("ct.dcm"), "--title", "CT head"]);
    assert_eq!(scan["media-type"], "application/dicom");
    let scan = scan["entry"].as_str().unwrap().to_owned();
    let shown = george.ok(&["show"]);
    assert!(
        shown.contains("CT head (application/dicom, 146 KiB"),
        "{shown}"
    );
    // A real DICOM file: what its header says is shown beside it (read by a DICOM crate).
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/data/ct-head.dcm");
    let study = george.json(&["attach", fixture, "--title", "CT head (Leeds)"]);
    let study = study["entry"].as_str().unwrap().to_owned();
    let items = george.json(&["show"]);
    let body = &items["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str() == Some(study.as_str()))
        .expect("the study")["body"];
    assert_eq!(body["dicom-patient"], "George Jones");
    assert_eq!(body["dicom-modality"], "CT");
    assert_eq!(body["dicom-study"], "CT head without contrast");
    assert_eq!(body["date"], "2026-11-20");
    let shown = george.ok(&["show"]);
    assert!(
        shown.contains("CT head (Leeds) (application/dicom, CT, 572 bytes"),
        "{shown}"
    );

    // Refused: an unknown kind of file, a type declared wrongly, a category with no place
    // for a document; nothing is written.
    std::fs::write(path("tool.exe"), b"MZ\x90\x00\x03\x00binary").unwrap();
    let before = george.entries_held();
    let err = george.fails(5, &["attach", &path("tool.exe")]);
    assert!(err.contains("not a file of an accepted type"), "{err}");
    let err = george.fails(
        5,
        &["attach", &path("ct.dcm"), "--media-type", "application/pdf"],
    );
    assert!(
        err.contains("is application/dicom, not application/pdf"),
        "{err}"
    );
    let err = george.fails(5, &["attach", &path("ct.dcm"), "--category", "allergies"]);
    assert!(err.contains("no field for a document"), "{err}");
    assert_eq!(george.entries_held(), before);

    // Saved byte for byte; never over an existing file.
    george.ok(&["download", &scan, "-o", &path("saved.dcm")]);
    assert_eq!(std::fs::read(path("saved.dcm")).unwrap(), dicom);
    let err = george.fails(5, &["download", &scan, "-o", &path("saved.dcm")]);
    assert!(err.contains("exists"), "{err}");
    // An entry that is not a document.
    let allergy = george.add(&["allergies", "--agent", "Penicillin"]);
    let err = george.fails(5, &["download", &allergy]);
    assert!(err.contains("no document stored apart"), "{err}");

    // Export: the documents beside the file, sealed (the plain bytes are not there).
    let out = george.ok(&["export", &path("george.cophr")]);
    assert!(out.contains("Wrote its 2 documents"), "{out}");
    let dir = files.path().join("george.cophr.documents");
    let mut stored: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(stored.len(), 2);
    // The larger is the first scan's.
    stored.sort_by_key(|e| std::cmp::Reverse(e.metadata().unwrap().len()));
    let sealed = std::fs::read(stored[0].path()).unwrap();
    assert!(!sealed.windows(64).any(|w| w == &dicom[1000..1064]));
    // Verified offline by anyone, with no key.
    let stranger = Person::new("Anyone", "auditor", None);
    let v = stranger.json(&["verify", &path("george.cophr")]);
    assert_eq!(v["documents"]["named"], 2);
    assert_eq!(v["documents"]["verified"], 2);
    // Imported into another home with its documents; the patient's new device reads it.
    let other = Person::new("George Jones", "patient", None);
    let out = other.ok(&["import", &path("george.cophr")]);
    assert!(out.contains("Documents: 2 taken"), "{out}");

    // One flipped byte beside the file: verify fails and says which.
    let mut bad = sealed.clone();
    bad[5000] ^= 1;
    std::fs::write(stored[0].path(), &bad).unwrap();
    let err = stranger.fails(6, &["verify", &path("george.cophr")]);
    assert!(err.contains("is not what its entry names"), "{err}");
    // And import refuses it.
    let third = Person::new("Third", "carer", None);
    let r = third.run(&["import", &path("george.cophr")]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("not that document"), "{}", r.stderr);
    // Without the directory, verify says the documents are not included (and passes).
    std::fs::remove_dir_all(&dir).unwrap();
    let out = stranger.ok(&["verify", &path("george.cophr")]);
    assert!(out.contains("2 named: 0 beside the file"), "{out}");
}

#[test]
fn cophr_repair_deletes_documents_no_record_names_and_keeps_the_rest() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let files = tempfile::tempdir().unwrap();
    let letter = files.path().join("letter.txt");
    std::fs::write(&letter, "Renal clinic letter\n".repeat(2_000)).unwrap();
    let entry = george.ok(&["attach", letter.to_str().unwrap(), "--title", "Letter"]);
    // A document no record here names: another home's, left in this store (as a removed
    // record's or a failed write's would be).
    let ann = Person::new("Ann Smith", "patient", None);
    ann.ok(&["record", "create"]);
    ann.ok(&["attach", letter.to_str().unwrap(), "--title", "Hers"]);
    let blobs = |p: &Person| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(p.dir().join("store").join("blobs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".blob"))
            .collect()
    };
    let hers = blobs(&ann).pop().unwrap();
    let stray = george
        .dir()
        .join("store")
        .join("blobs")
        .join(hers.file_name().unwrap());
    std::fs::copy(&hers, &stray).unwrap();
    assert_eq!(blobs(&george).len(), 2);

    let out = george.json(&["repair", "--json"]);
    assert_eq!(out["documents_checked"], 2, "{out}");
    assert_eq!(out["unreferenced_documents_removed"], 1, "{out}");
    assert!(!stray.exists());
    assert_eq!(blobs(&george).len(), 1);
    let saved = files.path().join("saved.txt");
    george.ok(&["download", entry.trim(), "-o", saved.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&letter).unwrap()
    );
}

#[test]
fn a_fhir_export_carries_each_documents_file_as_a_binary_it_links() {
    use data_encoding::BASE64;
    use serde_json::Value;
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name).to_str().unwrap().to_owned();
    // Larger than a resource other than a Binary may be (1 MiB of JSON).
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..1_200_000u32).map(|i| (i % 251) as u8));
    std::fs::write(path("letter.pdf"), &pdf).unwrap();
    let letter = george.json(&["attach", &path("letter.pdf"), "--title", "Clinic letter"]);
    let letter = letter["entry"].as_str().unwrap().to_owned();
    // The same file twice: one Binary in a Bundle.
    george.json(&[
        "attach",
        &path("letter.pdf"),
        "--title",
        "Copy of the letter",
    ]);

    // A Bundle: the attachment's url is the fullUrl of a Binary entry holding the bytes.
    george.ok(&["fhir", "export", "-o", &path("bundle.json")]);
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(path("bundle.json")).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let docs: Vec<&Value> = entries
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "DocumentReference")
        .collect();
    assert_eq!(docs.len(), 2);
    let binaries: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] == "Binary")
        .collect();
    assert_eq!(binaries.len(), 2);
    let mut linked = std::collections::BTreeSet::new();
    for d in &docs {
        let url = d["content"][0]["attachment"]["url"].as_str().unwrap();
        assert!(url.starts_with("urn:uuid:"), "{url}");
        let b = binaries
            .iter()
            .find(|b| b["fullUrl"] == url)
            .expect("the Binary the attachment names");
        assert_eq!(b["resource"]["contentType"], "application/pdf");
        let data = BASE64
            .decode(b["resource"]["data"].as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(data, pdf);
        linked.insert(url.to_owned());
    }
    assert_eq!(linked.len(), 2, "each document its own Binary");

    // NDJSON: Binary.ndjson beside DocumentReference.ndjson, each `Binary/<id>` resolving.
    let dir = path("ndjson");
    george.ok(&["fhir", "export", "--ndjson", &dir]);
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(files.path().join("ndjson").join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let binaries = read("Binary.ndjson");
    assert_eq!(binaries.len(), 2);
    for d in read("DocumentReference.ndjson") {
        let url = d["content"][0]["attachment"]["url"].as_str().unwrap();
        let id = url.strip_prefix("Binary/").expect("a Binary reference");
        let b = binaries.iter().find(|b| b["id"] == id).expect("its Binary");
        let data = BASE64
            .decode(b["data"].as_str().unwrap().as_bytes())
            .unwrap();
        assert_eq!(data, pdf);
    }
    assert!(binaries.iter().any(|b| b["id"] == letter.as_str()));

    // Imported on another node, from the Bundle and from the NDJSON folder: each
    // DocumentReference's entry names its file, which downloads byte for byte.
    for (input, what) in [(path("bundle.json"), "bundle"), (dir.clone(), "ndjson")] {
        let other = Person::new("Other Node", "patient", None);
        other.ok(&["record", "create"]);
        let report = other.json(&["fhir", "import", &input]);
        assert_eq!(report["binaries"], 2, "{what}: {report}");
        let docs: Vec<String> = report["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resourceType"] == "DocumentReference")
            .map(|e| e["entry"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(docs.len(), 2, "{what}: {report}");
        for (n, d) in docs.iter().enumerate() {
            let saved = path(&format!("{what}-{n}.pdf"));
            other.ok(&["download", d, "-o", &saved]);
            assert_eq!(std::fs::read(&saved).unwrap(), pdf, "{what}");
        }
    }

    // A Binary whose data is not what its contentType says is refused, naming it.
    let mut bundle = bundle.clone();
    for e in bundle["entry"].as_array_mut().unwrap() {
        if e["resource"]["resourceType"] == "Binary" {
            e["resource"]["contentType"] = "image/png".into();
        }
    }
    std::fs::write(path("lying.json"), serde_json::to_vec(&bundle).unwrap()).unwrap();
    let other = Person::new("Third Node", "patient", None);
    other.ok(&["record", "create"]);
    let err = other.fails(5, &["fhir", "import", &path("lying.json")]);
    assert!(err.contains("Binary.contentType"), "{err}");
}
