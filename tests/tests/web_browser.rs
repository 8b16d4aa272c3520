//! The patient's web app in a real browser: a real `cophr node run --http 127.0.0.1:0` for
//! George (with a record), ChromeDriver on an ephemeral port, headless Chromium driven through
//! WebDriver (fantoccini). George signs in with his API token (after a wrong one is refused),
//! adds an entry through the generated form and finds it in the record and the timeline,
//! annotates it and sees its versions, grants Mary access and revokes it, downloads the
//! export, and reads the audit trail listing those reads and writes. A screenshot is written
//! to `target/test-artifacts/web-app.png`.
//!
//! Needs `chromium` and `chromedriver` (`bash .ci/deps` installs them): without them the test
//! fails, it is never skipped.

mod browser_support;
mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use browser_support::*;
use cli_support::node::{eventually, Node};
use cli_support::Person;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

/// The entry card (in the open list) whose text contains `needle`.
async fn entry_containing(c: &Client, needle: &str) -> fantoccini::elements::Element {
    for e in c
        .find_all(Locator::Css("article.entry"))
        .await
        .unwrap_or_default()
    {
        if e.text().await.unwrap_or_default().contains(needle) {
            return e;
        }
    }
    panic!("no entry showing {needle:?}");
}

/// The row of the grants table naming `actor` (by the shown prefix of its id), with its
/// `data-status`.
async fn grant_row(c: &Client, actor: &str) -> Option<(fantoccini::elements::Element, String)> {
    let prefix = &actor[..12];
    for row in c
        .find_all(Locator::Css("#grants tbody tr"))
        .await
        .unwrap_or_default()
    {
        if row.text().await.unwrap_or_default().contains(prefix) {
            let status = row
                .attr("data-status")
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            return Some((row, status));
        }
    }
    None
}

async fn wait_grant_status(c: &Client, actor: &str, status: &str) -> fantoccini::elements::Element {
    let start = Instant::now();
    loop {
        if let Some((row, s)) = grant_row(c, actor).await {
            if s == status {
                return row;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the grant to {actor} did not show as {status} within {DEADLINE:?}; grants: {:?}; error: {:?}",
            text_of(c, "#grants").await,
            text_of(c, "#error").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the browser session found, checked again from the CLI afterwards.
struct Outcome {
    export_file: Option<PathBuf>,
}

async fn drive(
    c: &Client,
    base: &str,
    token: &str,
    mary: &str,
    accept: &(dyn Fn(&str) + Sync),
    downloads: &Path,
    upload: &Path,
) -> Outcome {
    c.set_window_size(1280, 1200).await.expect("window size");
    c.goto(&format!("{base}/")).await.expect("open the app");

    // A wrong token is refused with a clear error, and the app stays on the sign-in form.
    type_into(c, "#token", "not-the-token").await;
    click(c, "#sign-in-form button[type=submit]").await;
    let err = wait_text(c, "#error", "did not accept").await;
    assert!(err.contains("401"), "the error names the status: {err}");
    assert!(
        err.contains("cophr token"),
        "the error says where the token is: {err}"
    );
    assert_eq!(
        wait_for(c, "#token")
            .await
            .attr("aria-invalid")
            .await
            .expect("attr"),
        Some("true".into())
    );
    assert!(text_of(c, "#app").await.is_empty(), "the app stays hidden");

    // The right token opens George's record: about me at the top, alerts highlighted.
    type_into(c, "#token", token).await;
    click(c, "#sign-in-form button[type=submit]").await;
    wait_text(c, "#app-title", "My record").await;
    wait_text(c, "#who", "George Jones").await;
    assert!(
        text_of(c, "#error").await.is_empty(),
        "the error box is cleared after signing in"
    );
    wait_text(c, ".about", "I look after my own dialysis").await;
    let alerts = wait_text(c, ".alerts", "Penicillin").await;
    assert!(
        alerts.contains("Allergies"),
        "alerts name their category: {alerts}"
    );
    assert!(
        alerts.contains("Keysafe"),
        "alerts list the alert entry: {alerts}"
    );

    // Add an entry through the form generated from the category's fields.
    click(c, "#tab-add").await;
    wait_for(c, "#add-category")
        .await
        .select_by_value("problems")
        .await
        .expect("choose the problems category");
    wait_text(c, "#add-fields", "Problem or diagnosis").await;
    // A required field left empty is caught before anything is sent.
    click(c, "#add-form button[type=submit]").await;
    wait_text(c, "#error", "is required").await;
    type_into(c, "#f-problem", "Type 2 diabetes").await;
    click(c, "#add-form button[type=submit]").await;
    wait_text(c, "#status", "Added to Problems").await;
    let entries = wait_text(c, ".entries", "Type 2 diabetes").await;
    assert!(
        entries.contains("George Jones"),
        "the entry names its author: {entries}"
    );

    // A quantity field (number and unit) from another category's form.
    click(c, "#tab-add").await;
    wait_for(c, "#add-category")
        .await
        .select_by_value("vital-signs")
        .await
        .expect("choose vital signs");
    type_into(c, "#f-systolic", "142").await;
    type_into(c, "#f-diastolic", "88").await;
    type_into(c, "#f-heart-rate", "71").await;
    click(c, "#add-form button[type=submit]").await;
    wait_text(c, "#status", "Added to Vital signs").await;
    wait_text(c, ".entries", "142").await;

    // The timeline lists it, newest first.
    click(c, "#tab-timeline").await;
    let timeline = wait_text(c, ".timeline", "Type 2 diabetes").await;
    let (vitals, problem) = (
        timeline
            .find("Vital signs")
            .expect("vital signs in the timeline"),
        timeline.find("Type 2 diabetes").expect("the problem"),
    );
    assert!(vitals < problem, "newest first: {timeline}");

    // The record by category, then the entry's versions, and a note on it.
    click(c, "#tab-record").await;
    click(c, "button.category[data-category=problems]").await;
    wait_text(c, ".entries", "Type 2 diabetes").await;
    entry_containing(c, "Type 2 diabetes")
        .await
        .find(Locator::Css(".actions button"))
        .await
        .expect("a details button")
        .click()
        .await
        .expect("open the entry");
    let versions = wait_text(c, "table.versions", "created").await;
    for want in ["George Jones", "patient", "patient-device"] {
        assert!(
            versions.contains(want),
            "the versions show {want}: {versions}"
        );
    }
    type_into(c, "#note-text", "Diagnosed in 2015 at the renal clinic").await;
    click(c, "#annotate-form button[type=submit]").await;
    wait_text(c, "#status", "note was added").await;
    wait_text(c, "#panel", "Diagnosed in 2015 at the renal clinic").await;

    // A document's file is shown in the page: fetched with the token, checked against its
    // hash by the node as it streams, shown from a blob: URL the page's policy allows.
    click(c, "#tab-record").await;
    click(c, "button.category[data-category=documents]").await;
    wait_text(c, ".entries", "Wound photo").await;
    entry_containing(c, "Wound photo")
        .await
        .find(Locator::Css(".actions button"))
        .await
        .expect("a details button")
        .click()
        .await
        .expect("open the document");
    let about = wait_text(c, "#panel", "image/png").await;
    assert!(
        !about.contains("\"key\""),
        "the document's key is not shown: {about}"
    );
    click(c, "#document-show").await;
    wait_for(c, "#document-preview img").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = c
            .execute(
                "const i = document.querySelector('#document-preview img'); \
                 return i && i.complete ? i.naturalWidth : 0;",
                vec![],
            )
            .await
            .expect("read the image's width");
        if w == json!(2) {
            break;
        }
        assert!(Instant::now() < deadline, "the photo did not render: {w}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_text(c, "#status", "Showing Wound photo").await;

    // A file attached from the page: sent as it is, with its progress; the node recognises
    // it, seals it into its blob store and writes the entry.
    click(c, "#tab-add").await;
    wait_for(c, "#attach-file")
        .await
        .send_keys(upload.to_str().expect("utf-8 path"))
        .await
        .expect("choose the file");
    type_into(c, "#attach-title", "Discharge summary").await;
    click(c, "#attach-form button[type=submit]").await;
    wait_text(c, "#status", "Attached to Documents: Discharge summary").await;
    wait_text(c, ".entries", "Discharge summary").await;

    // Invite Mary to vital signs (no actor id asked): a one-time link and QR code; she
    // accepts it on her own node; George sees who accepted and confirms; the grant is
    // listed; he revokes it and sees it revoked.
    click(c, "#tab-access").await;
    type_into(c, "#g-label", "Mary (wife)").await;
    click(c, "#g-cat-vital-signs").await;
    wait_for(c, "#g-level")
        .await
        .select_by_value("write")
        .await
        .expect("choose a level");
    click(c, "#grant-form button[type=submit]").await;
    wait_text(c, "#status", "Invitation created").await;
    wait_for(c, "#invite-qr").await;
    let link = wait_for(c, "#invite-link")
        .await
        .prop("value")
        .await
        .expect("the link's value")
        .expect("a link");
    assert!(link.starts_with("cophr://invite/"), "{link}");
    wait_text(c, "#invitations-table", "open").await;
    accept(&link);
    click(c, "#tab-access").await;
    wait_text(
        c,
        "#invitations-table",
        "Accepted by Mary Jones (carer) [self-asserted]",
    )
    .await;
    click(c, "#invitations-table button[data-confirm]").await;
    wait_text(c, "#status", "Access given to Mary Jones").await;
    let row = wait_grant_status(c, mary, "active").await;
    let text = row.text().await.expect("row text");
    assert!(
        text.contains("Vital signs") && text.contains("write") && text.contains("active"),
        "the grant row: {text}"
    );
    row.find(Locator::Css("button.danger"))
        .await
        .expect("a revoke button")
        .click()
        .await
        .expect("revoke");
    wait_text(c, "#status", "Access revoked").await;
    let row = wait_grant_status(c, mary, "revoked").await;
    let text = row.text().await.expect("row text");
    assert!(text.contains("revoked"), "the state is written out: {text}");
    assert!(
        row.find(Locator::Css("button")).await.is_err(),
        "a revoked grant has no revoke button"
    );

    // Export: the signed file is downloaded.
    click(c, "#tab-export").await;
    click(c, "#export-button").await;
    wait_text(c, "#status", "Export downloaded").await;
    let start = Instant::now();
    let mut export_file = None;
    while start.elapsed() < DEADLINE {
        export_file = std::fs::read_dir(downloads)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "cophr"));
        if export_file.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Who viewed what: the reads and writes made through the app (the patient's own views
    // shown on asking).
    click(c, "#tab-audit").await;
    let others = wait_text(c, "#audit", "revoked access").await;
    assert!(
        !others.contains("viewed"),
        "the patient's own views are hidden by default:\n{others}"
    );
    click(c, "#audit-own").await;
    click(c, "#audit-filters button[type=submit]").await;
    let audit = wait_text(c, "#audit", "viewed").await;
    for want in [
        "viewed",
        "added",
        "annotated",
        "granted access",
        "revoked access",
        "exported",
        "George Jones",
    ] {
        assert!(
            audit.contains(want),
            "the audit trail lists {want:?}:\n{audit}"
        );
    }

    // Filtered by what was done: only grants.
    c.find(Locator::Css("#audit-action"))
        .await
        .expect("the action filter")
        .select_by_value("grant")
        .await
        .expect("choose grants");
    click(c, "#audit-filters button[type=submit]").await;
    let start = Instant::now();
    loop {
        let rows: Vec<String> = {
            let mut out = Vec::new();
            for r in c
                .find_all(Locator::Css("#audit tbody tr"))
                .await
                .unwrap_or_default()
            {
                out.push(
                    r.attr("data-action")
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                );
            }
            out
        };
        if !rows.is_empty() && rows.iter().all(|a| a == "grant") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the audit view shows only grants: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back to everything.
    wait_for(c, "#audit-action")
        .await
        .select_by_value("")
        .await
        .expect("choose anything");
    click(c, "#audit-filters button[type=submit]").await;
    wait_text(c, "#audit", "revoked access").await;

    // The screenshot: the record's front page.
    click(c, "#tab-record").await;
    click(c, "button.category[data-category=problems]").await;
    wait_text(c, ".entries", "Diagnosed in 2015").await;
    let png = c.screenshot().await.expect("a screenshot");
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    let shot = dir.join("web-app.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    println!("screenshot of the web app: {}", shot.display());
    click(c, "#tab-audit").await;
    wait_text(c, "#audit", "revoked access").await;
    let png = c.screenshot().await.expect("a screenshot");
    let audit_shot = dir.join("web-app-audit.png");
    std::fs::write(&audit_shot, &png).expect("write the screenshot");
    println!("screenshot of the audit trail: {}", audit_shot.display());

    // Signing out forgets the token.
    click(c, "#sign-out").await;
    wait_for(c, "#sign-in:not([hidden])").await;
    let kept = c
        .execute("return sessionStorage.getItem('cophr-token');", vec![])
        .await
        .expect("read sessionStorage");
    assert_eq!(kept, Value::Null, "the token is forgotten on sign-out");
    Outcome { export_file }
}

/// A valid PNG (the 2×2 red one) of about `extra` bytes more: a private ancillary chunk of
/// pseudo-random bytes from `seed` (which decoders skip), so the file spans several sealed
/// segments and holds byte runs found nowhere else.
fn big_png(extra: usize, seed: u64) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut chunk = b"cpHr".to_vec();
    chunk.extend((0..extra).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    }));
    // Signature and IHDR (33 bytes), the chunk, then IDAT and IEND.
    let mut png = RED_PNG[..33].to_vec();
    png.extend((extra as u32).to_be_bytes());
    png.extend(&chunk);
    png.extend(crc32(&chunk).to_be_bytes());
    png.extend(&RED_PNG[33..]);
    png
}

/// A discharge summary, attached from the page.
const DISCHARGE: &str = "Discharge summary\nHome on ramipril 5 mg; district nurse for dressings.\n";

/// A 2×2 red PNG.
const RED_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x44, 0x0c, 0x10, 0x0a, 0x00, 0x1f, 0xee, 0x03, 0xfd, 0x8b, 0x5f, 0x14, 0xd4, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[test]
fn the_patient_uses_the_web_app_in_a_real_browser() {
    require_browser();

    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["about-me", "--thing-1", "I look after my own dialysis"]);
    george.add(&["allergies", "--agent", "Penicillin", "--reaction", "rash"]);
    george.add(&["alerts", "--alert", "Keysafe by the back door"]);
    // A photo attached as a document stored apart (a 2×2 red PNG).
    let photos = tempfile::TempDir::new().expect("a directory for the photo");
    let photo = photos.path().join("wound.png");
    std::fs::write(&photo, RED_PNG).expect("write the photo");
    george.ok(&[
        "attach",
        photo.to_str().expect("utf-8 path"),
        "--title",
        "Wound photo",
    ]);
    let upload = photos.path().join("discharge.txt");
    std::fs::write(&upload, DISCHARGE).expect("write the summary");
    let mary = Person::new("Mary Jones", "carer", None);
    let host = Person::new("Community Host", "host", None);

    // Invitations are kept by the record's home host: George hosts his record first.
    let host_node = Node::start(&host, &[]);
    let _mary_node = Node::start(&mary, &[]);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    george.live_ok(&["host", &host_node.addr()]);
    let base = node
        .http()
        .unwrap_or_else(|| panic!("node.json has no http address: {}", node.info))
        .trim_end_matches('/')
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let token = api_token(&george);

    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let downloads = tempfile::TempDir::new().expect("a downloads directory");
    let driver = Driver::start();
    let rt = runtime();
    let outcome = rt.block_on(async {
        let client = browser_with(&driver, profile.path(), Some(downloads.path())).await;
        let accept = |link: &str| {
            let out = mary.live_ok(&["accept", link]);
            assert!(out.contains("Accepted George Jones's invitation"), "{out}");
        };
        let outcome = drive(
            &client,
            &base,
            &token,
            &mary.actor,
            &accept,
            downloads.path(),
            &upload,
        )
        .await;
        client.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
        outcome
    });
    drop(driver);

    // What the browser did is in the record, as signed entries the CLI reads too.
    let shown = george.live_ok(&["show"]);
    assert!(shown.contains("Type 2 diabetes"), "{shown}");
    let grants = george.live_ok(&["--json", "grants"]);
    assert!(grants.contains(&mary.actor), "{grants}");
    // The file attached in the page is George's, byte for byte.
    let items = george.live_json(&["show"]);
    let summary = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| {
            i["summary"]
                .as_str()
                .unwrap_or("")
                .contains("Discharge summary")
        })
        .expect("the attached summary")
        .clone();
    let saved = photos.path().join("saved.txt");
    george.live_ok(&[
        "download",
        summary["id"].as_str().expect("its id"),
        "-o",
        saved.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(
        std::fs::read_to_string(&saved).expect("the saved file"),
        DISCHARGE
    );
    // The downloaded export verifies offline.
    let file = outcome
        .export_file
        .expect("the export was downloaded into the browser's download directory");
    george.live_ok(&["verify", file.to_str().expect("utf-8 path")]);
    drop(node);
}

#[test]
fn a_clinician_sees_the_shared_records_and_works_within_their_access() {
    require_browser();
    // George shares vital signs (write) and problems (view) with a renal nurse, whose
    // provider node holds a replica (imported from his export).
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["problems", "--problem", "Chronic kidney disease"]);
    george.add(&["vital-signs", "--heart-rate", "66"]);
    george.add(&["medications", "--medication", "Metformin"]);
    // Not shared with the nurse: never charted for her.
    george.add(&[
        "lab-results",
        "--test",
        "Potassium",
        "--result",
        "4.1",
        "--unit",
        "mmol/L",
    ]);
    let nurse = Person::new("Nia Patel", "nurse", Some("Leeds Renal Unit"));
    george.ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs",
    ]);
    george.ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "view",
        "--categories",
        "problems",
    ]);
    let dir = tempfile::TempDir::new().expect("a directory");
    let file = dir.path().join("george.cophr");
    george.export(&file);
    nurse.import(&file);

    let node = Node::start(&nurse, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&nurse);
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        c.goto(&format!("{}/", base.trim_end_matches('/')))
            .await
            .expect("open the app");
        type_into(&c, "#token", &token).await;
        click(&c, "#sign-in-form button[type=submit]").await;

        // The records shared with this node, and the level per category.
        wait_text(&c, "#app-title", "Records").await;
        let shared = wait_text(&c, "#view", "George Jones").await;
        assert!(
            shared.contains("Patients who shared their record with you"),
            "{shared}"
        );
        assert!(
            shared.contains("Vital signs: write") && shared.contains("Problems: view"),
            "the levels per category: {shared}"
        );
        assert!(!shared.contains("Medications"), "not shared: {shared}");
        click(&c, "#view table button").await;
        wait_text(&c, "#app-title", "George Jones's record").await;
        // What is not shared is said to be not shared, not said to be empty.
        wait_text(&c, ".about", "not shared this part of the record with you").await;
        wait_text(&c, ".alerts", "not shared alerts or allergies with you").await;
        for absent in ["#tab-access", "#tab-audit", "#tab-export"] {
            assert!(
                c.find(Locator::Css(absent)).await.is_err(),
                "a clinician has no {absent}"
            );
        }
        click(&c, "#tab-mine").await;
        let mine = wait_text(&c, "#my-access", "Vital signs").await;
        assert!(mine.contains("Problems"), "{mine}");

        // Reading within the access: problems; medications are not even listed.
        click(&c, "#tab-record").await;
        let cats = wait_text(&c, ".category-list", "Problems").await;
        assert!(!cats.contains("Medications"), "{cats}");
        click(&c, "button.category[data-category=problems]").await;
        wait_text(&c, ".entries", "Chronic kidney disease").await;

        // Adding within the access: only vital signs may be written.
        click(&c, "#tab-add").await;
        wait_for(&c, "#add-category").await;
        assert_eq!(options(&c, "#add-category").await, vec!["vital-signs"]);
        type_into(&c, "#f-heart-rate", "84").await;
        click(&c, "#add-form button[type=submit]").await;
        wait_text(&c, "#status", "Added to Vital signs").await;
        let entries = wait_text(&c, ".entries", "84").await;
        assert!(
            entries.contains("Nia Patel"),
            "signed by the nurse: {entries}"
        );
        assert!(entries.contains("Leeds Renal Unit"), "{entries}");

        // Her trends: the two heart rates she may see, nothing of the lab results.
        click(&c, "#tab-trends").await;
        let heart = "vital|heart-rate|/min";
        wait_chart(&c, heart).await;
        assert_eq!(chart_points(&c, heart, 0).await, 2);
        let trends = text_of(&c, "#panel").await;
        assert!(!trends.contains("Lab results"), "{trends}");
        assert!(!trends.contains("Potassium"), "{trends}");

        let png = c.screenshot().await.expect("a screenshot");
        let dir = target_dir().join("test-artifacts");
        std::fs::create_dir_all(&dir).expect("the artifacts directory");
        let shot = dir.join("web-app-clinician.png");
        std::fs::write(&shot, &png).expect("write the screenshot");
        println!("screenshot of the clinician's view: {}", shot.display());
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    drop(node);
}

/// WebDriver key codes.
const KEY_DOWN: &str = "\u{E015}";
const KEY_UP: &str = "\u{E013}";
const KEY_ENTER: &str = "\u{E007}";

/// The `data-record` of the focused element ("" if none).
async fn focused_record(c: &Client) -> String {
    js_text(
        c,
        "const a = document.activeElement; return (a && a.getAttribute('data-record')) || '';",
        vec![],
    )
    .await
}

#[test]
fn a_clinician_searches_the_worklist_moves_with_the_keyboard_and_opens_a_record() {
    require_browser();
    // Two patients share their records with a GP, whose provider node holds replicas.
    let gp = Person::new("Dr Asha Rao", "gp", Some("Leeds GP Practice"));
    let george = Person::new("George Jones", "patient", None);
    let ann = Person::new("Ann Smith", "patient", None);
    let dir = tempfile::TempDir::new().expect("a directory");
    for p in [&george, &ann] {
        p.ok(&["record", "create"]);
        p.ok(&[
            "grant",
            &gp.actor,
            "--level",
            "write",
            "--categories",
            "all",
        ]);
    }
    george.add(&["lab-results", "--test", "Potassium", "--result", "5.9"]);
    ann.add(&["vital-signs", "--heart-rate", "70"]);
    for p in [&george, &ann] {
        let file = dir.path().join(format!("{}.cophr", p.actor));
        p.export(&file);
        gp.import(&file);
    }
    let node = Node::start(&gp, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&gp);
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        // The Worklist tab is there because records are shared with this identity.
        wait_text(&c, "#home-worklist", "Worklist (2)").await;
        click(&c, "#home-worklist").await;
        wait_text(&c, "#app-title", "Worklist").await;
        let rows = wait_text(&c, "#worklist-rows", "Ann Smith").await;
        assert!(rows.contains("George Jones"), "{rows}");
        // Both changed since never opened: by name; the search has the focus.
        let first = text_of(&c, "#worklist-rows tbody tr").await;
        assert!(first.contains("Ann Smith") && first.contains("never opened"), "{first}");
        assert_eq!(
            js_text(&c, "return document.activeElement.id;", vec![]).await,
            "worklist-search"
        );

        // Search by name: only Ann.
        type_into(&c, "#worklist-search", "smi").await;
        let start = Instant::now();
        while c
            .find_all(Locator::Css("#worklist-rows tbody tr"))
            .await
            .map(|r| r.len())
            .unwrap_or(0)
            != 1
        {
            assert!(start.elapsed() < DEADLINE, "the search did not narrow the rows");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_text(&c, "#worklist-rows", "Ann Smith").await;

        // Cleared: both again. Arrow keys move between rows; `/` goes back to the search.
        let search = wait_for(&c, "#worklist-search").await;
        search.clear().await.expect("clear the search");
        search.send_keys("x\u{E003}").await.expect("type and erase");
        wait_text(&c, "#worklist-rows", "George Jones").await;
        wait_text(&c, "#worklist-rows", "Ann Smith").await;
        search.send_keys(KEY_DOWN).await.expect("arrow down");
        let start = Instant::now();
        while focused_record(&c).await != ann.actor {
            assert!(start.elapsed() < DEADLINE, "the first row did not take the focus");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.active_element()
            .await
            .expect("the focused row")
            .send_keys(KEY_DOWN)
            .await
            .expect("arrow down");
        assert_eq!(focused_record(&c).await, george.actor);
        c.active_element()
            .await
            .expect("the focused row")
            .send_keys(KEY_UP)
            .await
            .expect("arrow up");
        assert_eq!(focused_record(&c).await, ann.actor);
        c.active_element()
            .await
            .expect("the focused row")
            .send_keys("/")
            .await
            .expect("slash");
        assert_eq!(
            js_text(&c, "return document.activeElement.id;", vec![]).await,
            "worklist-search"
        );

        // Enter on a row opens that patient's record.
        search.send_keys(KEY_DOWN).await.expect("arrow down");
        assert_eq!(focused_record(&c).await, ann.actor);
        c.active_element()
            .await
            .expect("the focused row")
            .send_keys(KEY_ENTER)
            .await
            .expect("enter");
        wait_text(&c, "#app-title", "Ann Smith's record").await;

        // Back on the worklist, Ann's record shows nothing changed since it was opened.
        click(&c, ".record-line button").await;
        click(&c, "#home-worklist").await;
        let start = Instant::now();
        loop {
            let ann_row = js_text(
                &c,
                "const r = document.querySelector(`#worklist-rows tr[data-record='${arguments[0]}']`); \
                 return r ? r.children[2].textContent : '';",
                vec![json!(ann.actor)],
            )
            .await;
            if ann_row == "—" {
                break;
            }
            assert!(start.elapsed() < DEADLINE, "Ann's changes: {ann_row:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    drop(node);
}

#[test]
fn an_invitee_accepts_an_invitation_in_the_web_app_and_sees_the_record_once_confirmed() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    let priya = Person::new("Priya Shah", "pharmacist", Some("Leeds Pharmacy"));
    let host = Person::new("Community Host", "host", None);
    george.live_ok(&["record", "create"]);
    george.live_add(&["medications", "--medication", "Metformin 500mg"]);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["host", &host_node.addr()]);
    let inv = george.live_json(&[
        "invite",
        "--level",
        "view",
        "--categories",
        "medications",
        "--label",
        "Pharmacy",
    ]);
    let link = inv["link"].as_str().expect("a link").to_owned();
    let id = inv["invitation"].as_str().expect("an id").to_owned();

    let node = Node::start(&priya, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&priya);
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        c.goto(&format!("{}/", base.trim_end_matches('/')))
            .await
            .expect("open the app");
        type_into(&c, "#token", &token).await;
        click(&c, "#sign-in-form button[type=submit]").await;
        wait_text(&c, "#app-title", "Records").await;
        // A mangled link is refused in the page, before anything is sent.
        type_into(&c, "#accept-link", "https://example.org/not-an-invitation").await;
        click(&c, "#accept-form button[type=submit]").await;
        wait_text(&c, "#error", "starts with cophr://invite/").await;
        // The real one is accepted.
        type_into(&c, "#accept-link", &link).await;
        click(&c, "#accept-form button[type=submit]").await;
        wait_text(&c, "#status", "Invitation from George Jones accepted").await;

        // George confirms who accepted; Priya's node replicates; the record appears.
        let list = george.live_json(&["invitations", "list"]);
        let row = list["invitations"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|i| i["invitation"] == id.as_str())
            .expect("the invitation")
            .clone();
        assert_eq!(row["accepted_by"]["name"], "Priya Shah");
        george.live_ok(&["invitations", "confirm", &id]);
        eventually("Priya's node replicates George's record", || {
            let _ = priya.live(&["sync", "--record", &george.actor]);
            priya
                .live(&["--json", "records"])
                .stdout
                .contains(&george.actor)
        });
        c.refresh().await.expect("reload");
        wait_text(&c, "#view", "George Jones").await;
        // Accepting the same link again opens nothing.
        type_into(&c, "#accept-link", &link).await;
        click(&c, "#accept-form button[type=submit]").await;
        wait_text(&c, "#error", "already used").await;
        c.close().await.expect("close the browser");
    });
}

/// The emergency summary (`docs/emergency-summary.md`): George makes a link in the web app;
/// a clinician opens it in a fresh browser (no cophr, no token) and reads his allergies and
/// medications, and downloads the IPS Bundle; George ends the link and the page says so. The
/// opening is in his audit trail.
#[test]
fn an_emergency_summary_link_opens_in_a_fresh_browser_until_the_patient_ends_it() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin", "--reaction", "rash"]);
    george.add(&["medications", "--medication", "Metformin 500 mg"]);
    george.add(&["lab-results", "--test", "HbA1c", "--result", "SECRET-48"]);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node
        .http()
        .expect("the node's HTTP address")
        .trim_end_matches('/')
        .to_owned();
    let token = api_token(&george);
    let patient_profile = tempfile::TempDir::new().expect("a browser profile directory");
    let clinician_profile = tempfile::TempDir::new().expect("a browser profile directory");
    let patient_driver = Driver::start();
    let clinician_driver = Driver::start();
    let rt = runtime();
    let link = rt.block_on(async {
        // George makes the link.
        let p = browser(&patient_driver, patient_profile.path()).await;
        p.goto(&format!("{base}/")).await.expect("open the app");
        type_into(&p, "#token", &token).await;
        click(&p, "#sign-in-form button[type=submit]").await;
        wait_text(&p, "#app-title", "My record").await;
        click(&p, "#tab-share").await;
        type_into(&p, "#share-label", "A&E").await;
        click(&p, "#share-create").await;
        wait_for(&p, "#share-qr").await;
        let link = wait_for(&p, "#share-link")
            .await
            .prop("value")
            .await
            .expect("the link's value")
            .expect("a link");
        assert!(link.starts_with(&format!("{base}/s/")), "{link}");
        let key = link.split_once('#').expect("a key in the fragment").1;
        assert_eq!(key.len(), 43, "{link}");
        wait_text(&p, "#shares", "A&E").await;

        // A clinician with only the link, in a browser of their own.
        let c = browser(&clinician_driver, clinician_profile.path()).await;
        c.goto(&link).await.expect("open the link");
        wait_text(&c, "#status", "Shown below").await;
        let shown = wait_text(&c, "#summary", "Penicillin").await;
        assert!(shown.contains("Metformin 500 mg"), "{shown}");
        assert!(shown.contains("Allergies"), "{shown}");
        assert!(
            !shown.contains("SECRET-48"),
            "lab results are not shared: {shown}"
        );
        assert!(text_of(&c, "#title").await.contains("George Jones"));
        // The IPS download is the Bundle: valid JSON, a Composition first.
        let got = c
            .execute(
                "const a = document.getElementById('download');
                 return [a.getAttribute('download'),
                   decodeURIComponent(a.href.slice(a.href.indexOf(',') + 1))];",
                vec![],
            )
            .await
            .expect("read the download link");
        assert_eq!(got[0], "emergency-summary-ips.json");
        let text = got[1].as_str().expect("text");
        let bundle: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the download is not JSON ({e}): {text:.200}"));
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "document");
        assert_eq!(
            bundle["entry"][0]["resource"]["resourceType"],
            "Composition"
        );
        let png = c.screenshot().await.expect("a screenshot");
        let dir = target_dir().join("test-artifacts");
        std::fs::create_dir_all(&dir).expect("the artifacts directory");
        std::fs::write(dir.join("emergency-summary.png"), &png).expect("write the screenshot");

        // George sees the opening and ends the link.
        click(&p, "#tab-share").await;
        wait_text(&p, "#shares", "1 time").await;
        click(&p, "#shares .share-end").await;
        wait_text(&p, "#shares", "ended by you").await;

        // The clinician's page now says it has ended.
        // (Via another page: the same URL again would only move to its fragment.)
        c.goto("about:blank").await.expect("leave the page");
        c.goto(&link).await.expect("open the link again");
        wait_text(&c, "#status", "no longer available").await;
        assert!(!text_of(&c, "#summary").await.contains("Penicillin"));

        c.close().await.expect("close the clinician's browser");
        clinician_driver.session.lock().expect("the slot").take();
        p.close().await.expect("close the patient's browser");
        patient_driver.session.lock().expect("the slot").take();
        link
    });
    drop(clinician_driver);
    drop(patient_driver);
    // Every opening is in the audit trail, with its address; never the key.
    let audit = george.live_ok(&["audit"]);
    assert!(
        audit.contains("emergency summary opened via share"),
        "{audit}"
    );
    assert!(audit.contains("127.0.0.1"), "{audit}");
    let key = link.split_once('#').expect("a key").1;
    assert!(!audit.contains(key));
    drop(node);
}

/// Several devices and social key recovery in the web app (`docs/trust.md` "Devices and key
/// recovery"): George adds his phone as a device and names Mary (who holds a grant) his
/// guardian; on a new machine with a new key his node shows the recovery request for his
/// record; Mary's node, holding a replica, approves it in her web app and the approval text
/// and its QR code appear. (Recovering the record with it across processes is
/// `tests/tests/net_recovery.rs`.)
#[test]
fn the_patient_adds_a_device_and_names_a_guardian_who_approves_a_recovery_in_the_web_app() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    let phone = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let host = Person::new("Community Host", "host", None);
    let new_george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin", "--reaction", "rash"]);
    george.ok(&[
        "grant",
        &mary.actor,
        "--level",
        "view",
        "--categories",
        "all",
    ]);
    let host_node = Node::start(&host, &[]);
    let george_node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    george.live_ok(&["host", &host_node.addr()]);
    let mary_node = Node::start(&mary, &["--http", "127.0.0.1:0"]);
    let new_node = Node::start(&new_george, &["--http", "127.0.0.1:0"]);
    let token_of = api_token;
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        // George: his phone, and Mary as his guardian.
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &george_node.http().expect("HTTP"), &token_of(&george)).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-devices").await;
        wait_text(&c, "#devices-box", "No devices yet").await;
        // A mistyped key is refused in the page.
        type_into(&c, "#device-key", "my phone").await;
        type_into(&c, "#device-label", "My phone").await;
        click(&c, "#device-form button[type=submit]").await;
        wait_text(&c, "#error", "A device key starts with a-").await;
        type_into(&c, "#device-key", &phone.actor).await;
        click(&c, "#device-form button[type=submit]").await;
        wait_text(&c, "#status", "My phone added").await;
        let devices = wait_text(&c, "#devices", "My phone").await;
        assert!(devices.contains(&phone.actor), "{devices}");
        assert!(devices.contains("active"), "{devices}");
        wait_text(&c, "#guardians-now", "No guardians yet").await;
        click(
            &c,
            &format!(
                "#guardians-form input[name=guardian][value=\"{}\"]",
                mary.actor
            ),
        )
        .await;
        type_into(&c, "#guardian-threshold", "1").await;
        click(&c, "#guardians-form button[type=submit]").await;
        wait_text(&c, "#status", "Guardians saved").await;
        wait_text(&c, "#guardian-list", &mary.actor[..12]).await;
        wait_text(&c, "#guardians-now", "Any 1 of these 1").await;
        // A backup of his key, sealed under a passphrase and kept by his home host too.
        type_into(&c, "#key-backup-pass", "correct horse battery staple").await;
        type_into(&c, "#key-backup-pass2", "correct horse battery stable").await;
        click(&c, "#key-backup-form button[type=submit]").await;
        wait_text(&c, "#error", "The two passphrases differ").await;
        type_into(&c, "#key-backup-pass2", "correct horse battery staple").await;
        click(&c, "#key-backup-host").await;
        click(&c, "#key-backup-form button[type=submit]").await;
        let made = wait_text(&c, "#key-backup-made", "also kept by your home host").await;
        assert!(made.contains(&host_node.peer_id()), "{made}");
        let link = wait_for(&c, "#key-backup-link").await;
        assert_eq!(
            link.attr("download")
                .await
                .expect("the link's download name"),
            Some(format!("cophr-key-{}.backup", george.actor))
        );
        // The passphrase fields are emptied.
        assert_eq!(wait_value_or_empty(&c, "#key-backup-pass").await, "");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-devices.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    // Mary's node follows George's record from its home host, with the guardians.
    let mary_base = mary_node.http().expect("HTTP");
    let mary_token = token_of(&mary);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    eventually("Mary's replica names her George's guardian", || {
        let _ = mary.live(&["follow", &george.actor, "--host", &host_node.addr()]);
        let _ = mary.live(&["sync", "--record", &george.actor]);
        agent
            .get(&format!(
                "{}/api/v1/records/{}/guardians",
                mary_base.trim_end_matches('/'),
                george.actor
            ))
            .header("Authorization", &format!("Bearer {mary_token}"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .is_some_and(|b| b.contains("\"i_am_guardian\":true"))
    });

    rt.block_on(async {
        // George on a new machine: his recovery request for the record.
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &new_node.http().expect("HTTP"), &token_of(&new_george)).await;
        wait_text(&c, "#app-title", "Records").await;
        wait_text(&c, "#recover", "Recover a record").await;
        type_into(&c, "#recover-record", &george.actor).await;
        click(&c, "#recovery-request-form button[type=submit]").await;
        let request = wait_value(&c, "#recovery-request-text").await;
        assert!(request.starts_with("cophr://recover/"), "{request}");
        wait_for(&c, "#recovery-request-qr").await;
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();

        // Mary, in her web app, approves it from George's record.
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &mary_base, &mary_token).await;
        wait_text(&c, "#app-title", "Records").await;
        wait_text(&c, "#view", "George Jones").await;
        click(&c, "#view table button").await;
        wait_text(&c, "#app-title", "George Jones's record").await;
        click(&c, "#tab-approve").await;
        wait_text(&c, "#guardian-role", "You are the patient’s guardian").await;
        type_into(&c, "#approve-request", "hello George").await;
        click(&c, "#approve-form button[type=submit]").await;
        wait_text(&c, "#error", "starts with cophr://recover/").await;
        type_into(&c, "#approve-request", &request).await;
        click(&c, "#approve-form button[type=submit]").await;
        wait_text(&c, "#status", "Approval made").await;
        let approval = wait_value(&c, "#approval-text").await;
        assert!(approval.starts_with("cophr://approval/"), "{approval}");
        let a = cophr_protocol::recovery::GuardianApproval::from_text(&approval)
            .expect("the approval verifies");
        assert_eq!(a.approval.by.to_string(), mary.actor);
        assert_eq!(a.claim.record.to_string(), george.actor);
        assert_eq!(a.claim.new.to_string(), new_george.actor);
        wait_for(&c, "#approval-qr").await;
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-recovery-approval.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    // The backup the web app made opens, from the host, in a new home with the passphrase.
    let restored = tempfile::TempDir::new().expect("a new home");
    let pass = restored.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").expect("the passphrase file");
    let home = restored.path().join("home");
    let out = Command::new(cli_support::cophr_bin())
        .arg("--home")
        .arg(&home)
        .args([
            "key",
            "restore",
            "--from-host",
            &host_node.addr(),
            "--actor",
            &george.actor,
        ])
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .expect("cophr runs");
    assert!(
        out.status.success(),
        "restore from the host: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who = Command::new(cli_support::cophr_bin())
        .arg("--home")
        .arg(&home)
        .args(["--json", "whoami"])
        .output()
        .expect("cophr runs");
    assert!(String::from_utf8_lossy(&who.stdout).contains(&george.actor));
    drop((george_node, mary_node, new_node, host_node));
}

/// An input's current value (empty if none).
async fn wait_value_or_empty(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .expect("the input")
        .prop("value")
        .await
        .expect("its value")
        .unwrap_or_default()
}

/// A patient with no node of their own (`docs/blind-hosting.md`, step 4): George's record
/// lives on a community host that is only a blind relay. With his node gone, he opens the
/// host's `/patient.html` in a fresh browser: a wrong passphrase opens nothing; the right
/// one opens his key backup **in the page** (WebAssembly), which fetches his sealed record
/// over `POST /sync`, opens it there, and writes a new allergy sealed and signed there.
/// He attaches a photo (a PNG of several segments) and a PDF from the page: each sealed
/// there, listed with its type and size; the photo previews (rendered) and downloads byte
/// for byte, opened in the page from the sealed bytes the host serves.
/// Afterwards the host's files and memory hold neither the passphrase nor anything George
/// wrote in the browser (nor do its files hold a byte run of the photo or the PDF, or their
/// titles), and George's own node, back again, pulls the browser's entry, signed by his
/// key, and reads it.
#[test]
fn a_patient_with_only_a_browser_reads_and_writes_through_a_blind_host() {
    use cli_support::search;
    require_browser();
    // Words that are in no binary: only what George writes can put them anywhere.
    let old_words = ["Quokka", "hearing", "in", "the", "left"].join("-");
    let new_words = ["Wombat", "rash", "after", "the", "plasters"].join("-");
    let passphrase = ["tangerine", "harbour", "lantern", "77"].join(" ");

    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Community Host", "host", Some("Leeds Community Host"));
    let secrets = tempfile::TempDir::new().expect("a directory for the passphrase file");
    let pass_file = secrets.path().join("passphrase");
    std::fs::write(&pass_file, format!("{passphrase}\n")).expect("passphrase file");
    Person::chmod(&pass_file, 0o600);

    let host_node = Node::start(&host, &["--http", "127.0.0.1:0"]);
    let mut george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_add(&[
        "allergies",
        "--agent",
        "Penicillin",
        "--reaction",
        &old_words,
    ]);
    // Two heart rates, charted in the page.
    for (rate, at) in [
        ("66", "2026-11-01T08:00:00Z"),
        ("74", "2026-11-02T08:00:00Z"),
    ] {
        george.live_add(&["vital-signs", "--heart-rate", rate, "--measured-at", at]);
    }
    george.live_ok(&["host", &host_node.addr()]);
    george.live_json(&[
        "key",
        "backup",
        "--to-host",
        "--passphrase-file",
        pass_file.to_str().expect("utf-8"),
    ]);
    let held = |p: &Person| -> u64 {
        p.live_json(&["records"])["records"]
            .as_array()
            .expect("records")
            .iter()
            .find(|r| r["record"].as_str() == Some(george.actor.as_str()))
            .and_then(|r| r["entries"].as_u64())
            .unwrap_or(0)
    };
    let before = held(&george);
    eventually("the host to hold George's record", || held(&host) == before);
    // George has no node now.
    george_node.terminate();
    let base = host_node
        .http()
        .expect("the host's HTTP address")
        .trim_end_matches('/')
        .to_owned();

    // The documents George attaches from the page, and what of them must never reach the
    // host in clear: their titles and a run of each file's bytes.
    let photo_title = ["Blister", "on", "the", "heel"].join(" ");
    let letter_title = ["Podiatry", "referral", "letter"].join(" ");
    let letter_words = ["Numbat", "orthotic", "insoles"].join("-");
    let files = tempfile::TempDir::new().expect("a directory for the files");
    let photo = big_png(150_000, 14);
    let photo_file = files.path().join("heel.png");
    std::fs::write(&photo_file, &photo).expect("write the photo");
    let letter = format!(
        "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages \
         /Kids [] /Count 0 >> endobj\n% {letter_words}\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    );
    let letter_file = files.path().join("referral.pdf");
    std::fs::write(&letter_file, &letter).expect("write the letter");
    let downloads = tempfile::TempDir::new().expect("a downloads directory");

    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    let added = rt.block_on(async {
        let c = browser_with(&driver, profile.path(), Some(downloads.path())).await;
        c.goto(&format!("{base}/patient.html"))
            .await
            .expect("open the page");
        wait_for(&c, "body[data-ready=true]").await;

        // A wrong passphrase opens nothing, and says why.
        type_into(&c, "#actor", &george.actor).await;
        type_into(&c, "#passphrase", "not George's passphrase at all").await;
        click(&c, "#unlock-button").await;
        wait_text(&c, "#error", "passphrase").await;
        assert!(text_of(&c, "#app").await.is_empty(), "nothing opens");

        // The right one opens the record in the page.
        type_into(&c, "#passphrase", &passphrase).await;
        click(&c, "#unlock-button").await;
        wait_text(&c, "#items", &old_words).await;
        wait_text(&c, "#who", &george.actor).await;
        let counts = text_of(&c, "#counts").await;
        assert!(counts.contains("0 sealed under keys"), "{counts}");

        // George writes a new allergy in the page.
        click(&c, "#category option[value=allergies]").await;
        type_into(&c, "#f-agent", "Elastoplast").await;
        type_into(&c, "#f-reaction", &new_words).await;
        click(&c, "#add-form button[type=submit]").await;
        let status = wait_text(&c, "#status", "Added").await;
        wait_text(&c, "#items", &new_words).await;

        // His heart rates as a trend chart, drawn in the page, with the table behind it.
        click(&c, "#trends-toggle").await;
        let heart = "vital|heart-rate|/min";
        wait_chart(&c, heart).await;
        assert_eq!(chart_points(&c, heart, 0).await, 2);
        let label = chart_label(&c, heart).await;
        assert!(label.contains("Latest 74/min"), "{label}");
        let rows = chart_table(&c, heart).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[0].contains("74/min") && rows[1].contains("66/min"),
            "{rows:?}"
        );

        // He attaches a photo and a PDF from the page: sealed there, segment by segment,
        // the sealed bytes sent to the host, the entry written sealed and pushed.
        for (file, title) in [(&photo_file, &photo_title), (&letter_file, &letter_title)] {
            wait_for(&c, "#attach-file")
                .await
                .send_keys(file.to_str().expect("utf-8 path"))
                .await
                .expect("choose the file");
            type_into(&c, "#attach-doc-title", title).await;
            click(&c, "#attach-form button[type=submit]").await;
            wait_text(&c, "#status", &format!("Attached {title}")).await;
        }
        // Listed with their types and sizes.
        let listed = wait_text(&c, "#items", &letter_title).await;
        assert!(
            listed.contains(&format!("{photo_title} (image/png, 146 KiB")),
            "{listed}"
        );
        assert!(listed.contains("application/pdf"), "{listed}");

        // The photo previews: fetched sealed, opened in the page, rendered.
        let press = |class: &'static str, title: String| {
            let c = c.clone();
            async move {
                c.execute(
                    "const li = [...document.querySelectorAll('#items li')]
                       .find((l) => l.textContent.includes(arguments[0]));
                     li.querySelector(arguments[1]).click();",
                    vec![json!(title), json!(class)],
                )
                .await
                .expect("press the document's button");
            }
        };
        press(".doc-show", photo_title.clone()).await;
        wait_for(&c, "#document-preview img").await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let w = c
                .execute(
                    "const i = document.querySelector('#document-preview img'); \
                     return i && i.complete ? i.naturalWidth : 0;",
                    vec![],
                )
                .await
                .expect("read the image's width");
            if w.as_u64().unwrap_or(0) > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the photo did not render: {w}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_text(&c, "#status", &format!("Showing {photo_title}")).await;
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "patient-browser-document.png");

        // Downloaded: the file, byte for byte.
        press(".doc-download", photo_title.clone()).await;
        wait_text(&c, "#status", &format!("Downloaded {photo_title}")).await;
        let saved = downloads.path().join(format!("{photo_title}.png"));
        let deadline = Instant::now() + DEADLINE;
        while std::fs::read(&saved).ok().as_deref() != Some(&photo[..]) {
            assert!(
                Instant::now() < deadline,
                "the download is not the photo: {:?}",
                std::fs::read_dir(downloads.path())
                    .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        click(&c, "#document-close").await;
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "patient-browser.png");

        // Locking forgets the record in the page.
        click(&c, "#lock").await;
        wait_text(&c, "#status", "Locked").await;
        assert!(!text_of(&c, "body").await.contains(&new_words));
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the slot").take();
        status
    });
    drop(driver);
    let id = added
        .split_whitespace()
        .find(|w| w.starts_with("e-"))
        .unwrap_or_else(|| panic!("the status names the new entry: {added}"))
        .to_owned();

    // The host holds the new entry, and nowhere in its files or memory is the passphrase
    // or a word George wrote, in the browser or before.
    eventually("the host to hold the browser's entries", || {
        held(&host) > before
    });
    let needles = [
        old_words.as_str(),
        new_words.as_str(),
        passphrase.as_str(),
        photo_title.as_str(),
        letter_title.as_str(),
        letter_words.as_str(),
    ];
    let in_files = search::in_files(host.dir(), &needles);
    assert_eq!(in_files, vec![0; 6], "the host's files hold {needles:?}");
    let in_memory = search::in_memory(host_node.pid(), &needles);
    assert_eq!(in_memory, vec![0; 6], "the host's memory holds {needles:?}");
    // Nor a run of the photo's bytes (from its middle, and past its first segment), while
    // its blob store holds the sealed bytes.
    let runs: [&[u8]; 2] = [&photo[70_000..70_064], &photo[140_000..140_064]];
    assert_eq!(
        search::bytes_in_files(host.dir(), &runs),
        vec![0, 0],
        "the host's files hold the photo's bytes"
    );
    let blobs = std::fs::read_dir(host.dir().join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".blob"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(blobs, 2, "the host keeps the two documents, sealed");

    // George's own node, back, pulls it: his key signed it, and opens it.
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["sync"]);
    let shown = george.live_ok(&["show"]);
    assert!(shown.contains(&new_words), "{shown}");
    let history = george.live_json(&["history", &id]);
    assert!(
        history.to_string().contains(&george.actor),
        "written by George's key: {history}"
    );
    drop(host_node);
}

const BP: &str = "vital|blood-pressure|mm[Hg]";
const POTASSIUM: &str = "lab|potassium|mmol/L";

/// Trend charts (docs/care-team.md "Charts"): George's 30 blood pressure readings, his
/// potassium results (one of them not a number) with their reference range, a single eGFR,
/// a troponin below the assay's limit (`<5`, nothing to chart) and two PHQ-9 scores are charted in the web app's Trends tab, reached from the vital
/// signs in the record tab; each chart's marks, the table behind it and its aria-label carry
/// the same readings; the malformed result is left out and said to be. Then 700 more
/// readings, written through the REST API, chart without the page stalling. The reads
/// behind the charts are in the audit trail.
#[test]
fn the_patient_sees_vital_signs_lab_results_and_scores_as_accessible_trend_charts() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    for i in 0..30u32 {
        let systolic = (120 + (i * 7) % 30).to_string();
        let diastolic = (70 + (i * 3) % 20).to_string();
        let at = format!("2026-10-{:02}T08:00:00Z", i + 1);
        george.add(&[
            "vital-signs",
            "--systolic",
            &systolic,
            "--diastolic",
            &diastolic,
            "--measured-at",
            &at,
        ]);
    }
    for (result, range, collected) in [
        ("4.1", "3.5-5.3", "2026-06-01T09:00:00Z"),
        ("haemolysed", "3.5-5.3", "2026-07-01T09:00:00Z"),
        ("4.8", "3.5-5.3", "2026-08-01T09:00:00Z"),
        ("5.9", "3.5 - 5.3 mmol/L", "2026-09-01T09:00:00Z"),
    ] {
        george.add(&[
            "lab-results",
            "--test",
            "Potassium",
            "--result",
            result,
            "--unit",
            "mmol/L",
            "--reference-range",
            range,
            "--collected",
            collected,
        ]);
    }
    george.add(&[
        "lab-results",
        "--test",
        "eGFR",
        "--result",
        "38",
        "--unit",
        "mL/min/1.73m2",
        "--collected",
        "2026-09-01T09:00:00Z",
    ]);
    // A result below the assay's limit: no number to chart.
    george.add(&[
        "lab-results",
        "--test",
        "Troponin T",
        "--result",
        "<5",
        "--unit",
        "ng/L",
        "--collected",
        "2026-09-01T09:00:00Z",
    ]);
    for (score, done) in [
        ("12", "2026-09-01T10:00:00Z"),
        ("7", "2026-10-01T10:00:00Z"),
    ] {
        george.add(&[
            "questionnaires",
            "--questionnaire",
            "PHQ-9",
            "--answers",
            "Little interest or pleasure in doing things=1",
            "--score",
            score,
            "--completed",
            done,
        ]);
    }

    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node
        .http()
        .expect("the node's HTTP address")
        .trim_end_matches('/')
        .to_owned();
    let token = api_token(&george);
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        c.set_window_size(1280, 1200).await.expect("window size");
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;

        // From the vital signs in the record tab to their trends.
        click(&c, "button.category[data-category=vital-signs]").await;
        click(&c, "#see-trends").await;
        wait_chart(&c, BP).await;
        let current = js_text(
            &c,
            "const b = document.querySelector('.tabs [aria-current=page]'); \
             return b ? b.id : '';",
            vec![],
        )
        .await;
        assert_eq!(current, "tab-trends");
        let focused = js_text(&c, "return document.activeElement.textContent;", vec![]).await;
        assert_eq!(
            focused, "Vital signs",
            "the vital signs charts have the focus"
        );

        // Blood pressure: two series of 30 marks, both shaded with their adult ranges.
        assert_eq!(chart_points(&c, BP, 0).await, 30, "systolic marks");
        assert_eq!(chart_points(&c, BP, 1).await, 30, "diastolic marks");
        let bands = js_number(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             return f.querySelectorAll('svg rect.band').length;",
            vec![json!(BP)],
        )
        .await;
        assert_eq!(bands, 2, "systolic and diastolic ranges shaded");
        let label = chart_label(&c, BP).await;
        assert!(label.contains("30 readings"), "{label}");
        assert!(label.contains("Latest 143/77 mmHg"), "{label}");
        assert!(
            label.contains("above the typical adult range for systolic"),
            "{label}"
        );
        assert!(label.contains("Systolic ranged 120 to 149 mmHg"), "{label}");
        let title = js_text(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             const t = f.querySelectorAll('svg .series-0 .point title'); \
             return t[t.length - 1].textContent;",
            vec![json!(BP)],
        )
        .await;
        assert!(title.contains("systolic 143 mmHg"), "{title}");
        let rows = chart_table(&c, BP).await;
        assert_eq!(rows.len(), 30, "{rows:?}");
        assert!(
            rows[0].contains("143 mmHg") && rows[0].contains("77 mmHg"),
            "newest first: {:?}",
            rows[0]
        );
        assert!(
            rows[29].contains("120 mmHg") && rows[29].contains("70 mmHg"),
            "{:?}",
            rows[29]
        );
        let caption = text_of(&c, "figure.trend .trend-table caption").await;
        assert!(
            caption.contains("Blood pressure in mmHg: 30 values"),
            "{caption}"
        );

        // Potassium: the three numeric results, the one that is not a number left out.
        wait_chart(&c, POTASSIUM).await;
        assert_eq!(chart_points(&c, POTASSIUM, 0).await, 3);
        let outside = js_number(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             return f.querySelectorAll('svg .point.out').length;",
            vec![json!(POTASSIUM)],
        )
        .await;
        assert_eq!(outside, 1, "the 5.9 is marked outside its reference range");
        let label = chart_label(&c, POTASSIUM).await;
        assert!(label.contains("Latest 5.9 mmol/L"), "{label}");
        assert!(label.contains("above the reference range"), "{label}");
        assert!(
            label.contains("reference range 3.5 to 5.3 mmol/L"),
            "{label}"
        );
        let rows = chart_table(&c, POTASSIUM).await;
        assert_eq!(rows.len(), 3, "{rows:?}");
        for (row, value) in rows.iter().zip(["5.9 mmol/L", "4.8 mmol/L", "4.1 mmol/L"]) {
            assert!(row.contains(value), "{row:?} shows {value}");
        }
        assert!(!rows.iter().any(|r| r.contains("haemolysed")), "{rows:?}");
        let note = js_text(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             const d = f.querySelector('svg[role=img]').getAttribute('aria-describedby'); \
             return document.getElementById(d).textContent;",
            vec![json!(POTASSIUM)],
        )
        .await;
        assert!(note.contains("1 entry was left out"), "{note}");

        // One eGFR: no chart, a message, and its one row.
        let egfr = "lab|egfr|mL/min/1.73m2";
        wait_chart(&c, egfr).await;
        assert_eq!(chart_label(&c, egfr).await, "", "one value is not drawn");
        let panel = text_of(&c, "#panel").await;
        assert!(panel.contains("Only one value so far"), "{panel}");
        assert_eq!(chart_table(&c, egfr).await.len(), 1);

        // Troponin: no value that reads as a number, said so; no chart, no table.
        let troponin = "lab|troponin t|ng/L";
        wait_chart(&c, troponin).await;
        assert_eq!(chart_label(&c, troponin).await, "");
        let figure = js_text(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             return f.textContent + (f.querySelector('table, button') ? ' [has a table]' : '');",
            vec![json!(troponin)],
        )
        .await;
        assert!(
            figure.contains("Nothing to chart yet: no troponin t value that reads as a number"),
            "{figure}"
        );
        assert!(figure.contains("1 entry was left out"), "{figure}");
        assert!(!figure.contains("[has a table]"), "{figure}");

        // PHQ-9 scores.
        let phq = "questionnaire|phq-9";
        wait_chart(&c, phq).await;
        assert_eq!(chart_points(&c, phq, 0).await, 2);
        let label = chart_label(&c, phq).await;
        assert!(label.contains("Latest 7 on"), "{label}");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-trends.png",
        );
        c.execute(
            "[...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]).scrollIntoView();",
            vec![json!(POTASSIUM)],
        )
        .await
        .expect("scroll to the potassium chart");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-trends-lab.png",
        );

        // Two years of daily readings more, through the REST API: they chart, and the page
        // stays responsive.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let url = format!("{base}/api/v1/records/{}/entries", george.actor);
        let day0: u64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z, in milliseconds
        for i in 0..700u64 {
            let at = cophr_node::http::api::format_time(day0 + i * 86_400_000 + 7 * 3_600_000);
            let body = json!({
                "category": "vital-signs",
                "body": {
                    "systolic": {"value": 110 + i % 40, "unit": "mm[Hg]"},
                    "diastolic": {"value": 65 + i % 25, "unit": "mm[Hg]"},
                    "measured-at": at,
                },
            });
            agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("Content-Type", "application/json")
                .send(body.to_string())
                .unwrap_or_else(|e| panic!("reading {i} through the API: {e}"));
        }
        let start = Instant::now();
        click(&c, "#tab-timeline").await;
        click(&c, "#tab-trends").await;
        let deadline = Instant::now() + DEADLINE;
        while chart_points(&c, BP, 0).await != 730 {
            assert!(Instant::now() < deadline, "730 readings did not chart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = start.elapsed();
        assert_eq!(chart_points(&c, BP, 1).await, 730);
        // The line breaks across the ten months with no readings, and only there.
        let moves = js_number(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             return f.querySelector('svg .series-0 path.line').getAttribute('d')\
               .split('M').length - 1;",
            vec![json!(BP)],
        )
        .await;
        assert_eq!(moves, 2, "two runs of readings, two lines");
        // The page answers a script at once after drawing them (nothing still running).
        let echo = js_number(&c, "return 1 + 1;", vec![]).await;
        assert_eq!(echo, 2);
        assert!(
            took < Duration::from_secs(15),
            "730 readings took {took:?} to chart"
        );
        assert_eq!(chart_table(&c, BP).await.len(), 730);
        println!("730 readings charted in {took:?}");
        c.execute(
            "[...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]).scrollIntoView();",
            vec![json!(BP)],
        )
        .await
        .expect("scroll to the blood pressure chart");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-trends-730.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    // Every chart came through the audited entries read.
    let audit = george.live_ok(&["audit", "--all", "--action", "view"]);
    for n in [38, 738] {
        let read = format!("entries (API): {n} items in vital-signs,lab-results,questionnaires");
        assert!(audit.contains(&read), "no {read:?} in {audit}");
    }
    drop(node);
}

/// The notification centre (`docs/care-team.md`, "Notifications"): George subscribes to
/// released results in the web app; a lab result his consultant wrote reaches his node
/// unreleased and changes nothing; the consultant's release (made on their own replica and
/// brought to George's running node) raises the unread count on the Notifications tab live
/// (through the node's event stream), the centre lists it, and marking all read clears it.
#[test]
fn the_notification_centre_counts_a_released_result_as_unread_until_read() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let consultant = Person::new("Dr Rao", "consultant", Some("Leeds Renal Unit"));
    george.ok(&[
        "grant",
        &consultant.actor,
        "--level",
        "write",
        "--categories",
        "lab-results",
    ]);
    let dir = tempfile::TempDir::new().expect("a directory");
    let first = dir.path().join("george.cophr");
    george.export(&first);
    consultant.import(&first);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let driver = Driver::start();
    let profile = tempfile::TempDir::new().expect("a browser profile");
    runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-notifications").await;
        wait_for(&c, "#subscribe-form").await;
        assert!(
            !wait_for(&c, "#notif-unread")
                .await
                .is_displayed()
                .await
                .unwrap(),
            "no unread count yet"
        );
        click(&c, "#sub-result-released").await;
        click(&c, "#subscribe-form button[type=submit]").await;
        wait_text(&c, "#subscriptions", "A result was released").await;
        wait_text(&c, "#notification-list", "No notifications yet").await;

        // The result, unreleased, reaches George's node: nothing to tell.
        let result = consultant.add(&[
            "lab-results",
            "--test",
            "Potassium",
            "--result",
            "5.9",
            "--unit",
            "mmol/L",
        ]);
        let second = dir.path().join("result.cophr");
        consultant.export(&second);
        george.live_ok(&["import", second.to_str().unwrap()]);
        eventually("George's node to hold the result", || george.sees(&result));
        let list = george.live_json(&["notifications", "list"]);
        assert_eq!(list["total"], 0, "{list}");

        // Released on the consultant's replica, brought to George's node: the count rises
        // while the page is open, without a reload.
        consultant.ok(&["result", "release", &result]);
        let third = dir.path().join("released.cophr");
        consultant.export(&third);
        george.live_ok(&["import", third.to_str().unwrap()]);
        wait_text(&c, "#notif-unread", "1").await;
        assert_eq!(
            wait_for(&c, "#notif-unread")
                .await
                .attr("aria-label")
                .await
                .unwrap()
                .as_deref(),
            Some("1 unread")
        );
        let listed = wait_text(&c, "#notification-list", "A result was released").await;
        assert!(listed.contains("Lab results"), "{listed}");
        assert!(
            !listed.contains("5.9"),
            "no content in a notification: {listed}"
        );
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-notifications.png");

        click(&c, "#mark-all-read").await;
        let start = Instant::now();
        while wait_for(&c, "#notif-unread")
            .await
            .is_displayed()
            .await
            .unwrap()
        {
            assert!(
                start.elapsed() < DEADLINE,
                "the count stays after marking read"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The record tab shows the result as released, by the consultant.
        click(&c, "#tab-timeline").await;
        wait_text(&c, ".timeline", "released to the patient by").await;
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
}

/// Questionnaires (`docs/care-team.md`): a GP publishes PHQ-9 into George's record and
/// assigns it with a due date already past; George's web app shows it overdue, he fills it in
/// (a missing answer is refused in the page first), sees his score and severity band, and the
/// Trends chart draws his two PHQ-9 scores over the five severity bands. Screenshots
/// `web-app-questionnaire.png` and `web-app-questionnaire-trend.png`.
#[test]
fn george_completes_an_assigned_phq9_in_the_web_app_and_sees_his_score_and_band() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    george.ok(&[
        "grant",
        &gp.actor,
        "--level",
        "write",
        "--categories",
        "questionnaires,tasks",
    ]);
    let dir = tempfile::TempDir::new().expect("a directory");
    let first = dir.path().join("george.cophr");
    george.export(&first);
    gp.import(&first);
    let def = gp
        .ok(&["questionnaire", "publish", "phq-9"])
        .trim()
        .to_owned();
    let task = gp
        .ok(&["questionnaire", "assign", &def, "--due", "2020-01-01"])
        .trim()
        .to_owned();
    let second = dir.path().join("assigned.cophr");
    gp.export(&second);
    george.import(&second);
    // An earlier PHQ-9 George answered on the command line: 3 in all, minimal.
    let mut earlier = vec!["questionnaire", "answer", def.as_str()];
    let answers: Vec<String> = (1..=9)
        .map(|i| format!("phq9-{i}={}", u8::from(i <= 3)))
        .collect();
    for a in &answers {
        earlier.extend(["--answer", a.as_str()]);
    }
    george.ok(&earlier);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let driver = Driver::start();
    let profile = tempfile::TempDir::new().expect("a browser profile");
    runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-questionnaires").await;
        let listed = wait_text(&c, "#assigned-list", "Patient Health Questionnaire (PHQ-9)").await;
        assert!(listed.contains("due 2020-01-01"), "{listed}");
        assert!(listed.contains("overdue"), "{listed}");
        click(&c, &format!("#assigned-list li[data-task='{task}'] button")).await;
        wait_text(&c, "#answer-heading", "PHQ-9").await;
        // Every question but the ninth: refused in the page, nothing sent.
        // Answers 2,2,1,2,1,1,2,0 (then 1): 12, moderate.
        for (i, k) in [2, 2, 1, 2, 1, 1, 2, 0].iter().enumerate() {
            click(&c, &format!("#q-phq9-{}-{k}", i + 1)).await;
        }
        click(&c, "#answer-form button[type=submit]").await;
        let err = wait_text(&c, "#error", "Please answer every question").await;
        assert!(err.contains("better off dead"), "{err}");
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-questionnaire.png");
        // Question 9 "Several days": 12, moderate, and a clinical flag.
        click(&c, "#q-phq9-9-1").await;
        click(&c, "#q-phq9-10-1").await;
        click(&c, "#answer-form button[type=submit]").await;
        wait_text(&c, "#questionnaire-score", "12").await;
        wait_text(&c, "#questionnaire-band", "moderate").await;
        let flag = wait_text(&c, "#questionnaire-flag", "Flagged for your care team").await;
        assert!(flag.contains("Several days"), "{flag}");
        // The assignment is done; both scores are listed, the new one flagged.
        wait_text(&c, "#panel", "Nothing to fill in.").await;
        let scores = wait_text(&c, "#responses-table", "moderate").await;
        assert!(scores.contains("minimal"), "{scores}");
        let flagged = text_of(&c, "#responses-table tr.flagged").await;
        assert!(flagged.contains("12") && flagged.contains("Flag: Thoughts"), "{flagged}");
        assert_eq!(
            js_number(&c, "return document.querySelectorAll('#responses-table tr.flagged').length;", vec![]).await,
            1,
            "only the response with question 9 above Not at all"
        );
        let tasks = george.live_json(&["task", "list"]);
        assert_eq!(tasks["tasks"][0]["status"], "completed", "{tasks}");

        // Trends: the two scores over PHQ-9's five severity bands.
        click(&c, "#tab-trends").await;
        let measure = "questionnaire|patient health questionnaire (phq-9)";
        wait_chart(&c, measure).await;
        assert_eq!(chart_points(&c, measure, 0).await, 2);
        let bands = js_text(
            &c,
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             return [...f.querySelectorAll('svg g.severity')].map((g) => g.dataset.band).join('|');",
            vec![json!(measure)],
        )
        .await;
        assert_eq!(bands, "minimal|mild|moderate|moderately severe|severe");
        let label = chart_label(&c, measure).await;
        assert!(label.contains("Latest 12"), "{label}");
        assert!(label.contains("(moderate)"), "{label}");
        assert!(label.contains("Severity bands: 0 to 4 minimal"), "{label}");
        let rows = chart_table(&c, measure).await;
        assert!(rows[0].contains("12") && rows[0].contains("moderate"), "{rows:?}");
        assert!(rows[1].contains("minimal"), "{rows:?}");
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-questionnaire-trend.png");
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
}

/// An extension category's form generated from its schema defined as data
/// (`docs/extensions.md`): George defines the shipped wound-care schema; the web app offers
/// it in the add form with its value sets, units and required fields, writes an entry
/// through it, shows the server's refusal naming the field, and offers the extension in the
/// grant form.
#[test]
fn an_extension_category_gets_a_form_generated_from_its_schema_and_is_offered_in_grants() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let dir = tempfile::TempDir::new().expect("a directory");
    let file = dir.path().join("wound-care.json");
    std::fs::write(&file, cophr_protocol::schema::EXAMPLES[1].1).expect("write the definition");
    george.ok(&["schema", "define", file.to_str().expect("utf-8 path")]);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let cat = "ext:uk.nhs.tissue-viability/wound-care";
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;
        add_form_for(&c, cat).await;
        let form = wait_text(
            &c,
            "#add-fields",
            "Wound assessment (tissue viability) details",
        )
        .await;
        assert!(form.contains("Body site"), "{form}");
        assert!(form.contains("e.g. left heel"), "the field's help: {form}");
        // Its value set, its units, its required fields.
        let codes = options(&c, "#f-wound-type").await;
        assert!(codes.contains(&"pressure-ulcer".to_owned()), "{codes:?}");
        assert!(
            codes.contains(&"diabetic-foot-ulcer".to_owned()),
            "{codes:?}"
        );
        assert_eq!(options(&c, "#f-length-unit").await, vec!["cm", "mm"]);
        assert_eq!(
            wait_for(&c, "#f-location")
                .await
                .attr("aria-required")
                .await
                .expect("attr"),
            Some("true".into())
        );
        // A required field left empty is caught before anything is sent.
        click(&c, "#add-form button[type=submit]").await;
        wait_text(&c, "#error", "is required").await;
        wait_for(&c, "#f-wound-type")
            .await
            .select_by_value("pressure-ulcer")
            .await
            .expect("a wound type");
        type_into(&c, "#f-location", "left heel").await;
        type_into(&c, "#f-length", "3.5").await;
        type_into(&c, "#f-pain-score", "11").await;
        // A datetime-local control's keystrokes depend on the locale: set its value.
        c.execute(
            "document.getElementById('f-assessed').value = '2026-12-01T10:15'",
            vec![],
        )
        .await
        .expect("set the date and time");
        click(&c, "#add-form button[type=submit]").await;
        // The schema's range, checked by the node's gate, named in the refusal.
        let err = wait_text(&c, "#error", "pain-score").await;
        assert!(err.contains("outside the plausible range 0 to 10"), "{err}");
        type_into(&c, "#f-pain-score", "4").await;
        click(&c, "#add-form button[type=submit]").await;
        wait_text(
            &c,
            "#status",
            "Added to Wound assessment (tissue viability)",
        )
        .await;
        wait_text(&c, ".entries", "left heel").await;

        // The grant form offers the extension.
        click(&c, "#tab-access").await;
        let boxes = wait_for(
            &c,
            &format!("#grant-form input[name=category][value=\"{cat}\"]"),
        )
        .await;
        boxes.click().await.expect("tick the extension");
        let form = text_of(&c, "#grant-form").await;
        assert!(
            form.contains("Wound assessment (tissue viability)"),
            "{form}"
        );
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-extension.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    drop(node);
    // The entry written through the form is in the record, valid under the schema.
    let shown = george.ok(&["show", "--json"]);
    assert!(shown.contains("left heel"), "{shown}");
}

/// Issue 17 in the browser: an extension defined by an openEHR template (the shipped OPT,
/// `protocol/src/schema/examples/wound-assessment.opt`, read by `cophr schema define`) gets
/// its form in the web app as one defined in JSON does: the template's value set, units,
/// required fields and ranges. An entry written through the form is, to an openEHR client,
/// a composition of that template: AQL `CONTAINS` on the template's archetype finds it, with
/// the body site at its archetype path.
#[test]
fn an_extension_defined_by_an_openehr_template_gets_a_form_and_its_entries_are_its_compositions() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let opt = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/src/schema/examples/wound-assessment.opt");
    let defined = george.ok(&["schema", "define", opt.to_str().expect("utf-8 path")]);
    assert!(defined.contains("openEHR template"), "{defined}");
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let cat = "ext:openehr/wound-assessment";
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;
        add_form_for(&c, cat).await;
        let form = wait_text(&c, "#add-fields", "Wound assessment details").await;
        assert!(form.contains("Body site"), "{form}");
        assert!(form.contains("Signs of infection"), "{form}");
        // The template's value set (its at-codes' texts), its units, its required fields.
        let codes = options(&c, "#f-wound-type").await;
        for code in [
            "Pressure ulcer",
            "Venous leg ulcer",
            "Surgical wound",
            "Other",
        ] {
            assert!(codes.contains(&code.to_owned()), "{code}: {codes:?}");
        }
        assert_eq!(options(&c, "#f-length-unit").await, vec!["cm", "mm"]);
        assert_eq!(
            wait_for(&c, "#f-body-site")
                .await
                .attr("aria-required")
                .await
                .expect("attr"),
            Some("true".into())
        );
        click(&c, "#add-form button[type=submit]").await;
        wait_text(&c, "#error", "is required").await;
        wait_for(&c, "#f-wound-type")
            .await
            .select_by_value("Surgical wound")
            .await
            .expect("a wound type");
        type_into(&c, "#f-body-site", "left heel").await;
        type_into(&c, "#f-length", "2.5").await;
        type_into(&c, "#f-pressure-ulcer-category", "7").await;
        click(&c, "#add-form button[type=submit]").await;
        // The template's range (category 1 to 4), checked by the node's gate.
        let err = wait_text(&c, "#error", "pressure-ulcer-category").await;
        assert!(err.contains("1 to 4"), "{err}");
        type_into(&c, "#f-pressure-ulcer-category", "2").await;
        click(&c, "#add-form button[type=submit]").await;
        wait_text(&c, "#status", "Added to Wound assessment").await;
        wait_text(&c, ".entries", "left heel").await;
        // The record's categories name it by its title, not its id.
        let chip = wait_text(&c, ".category-list", "Wound assessment (1)").await;
        assert!(!chip.contains("ext:openehr"), "{chip}");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-openehr-template.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    drop(driver);
    // An openEHR client finds the entry as a composition of the template.
    let (status, rows) = cli_support::api::call(
        &format!("{base}/openehr/v1/query/aql"),
        &token,
        Some(&json!({
            "q": "SELECT o/data[at0001]/events[at0002]/data[at0003]/items[at0004]/value/value \
                  FROM EHR e CONTAINS COMPOSITION c \
                  CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.exam.v1]"
        })),
    );
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows["rows"], json!([["left heel"]]), "{rows}");
    drop(node);
}

/// Issue 19 in the browser: the home-care service's administrator adds a nurse in the web
/// app's Staff tab and hands over her proof of membership (shown in the page); the nurse's
/// node uses it (in her own web app), joins George's record under the service's one grant
/// and writes; George's "Who has access" lists her under the service; the administrator
/// removes her in the web app, and George's page shows her removed.
#[test]
fn an_organisation_administers_its_staff_in_the_web_app_and_the_patient_sees_them() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    let org = Person::new("Leeds Home Care Ltd", "organisation", None);
    let jo = Person::new("Jo Bloggs", "nurse", None);
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let george_node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &org.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs",
    ]);
    george.live_ok(&["host", &host_node.addr()]);
    let before = george.live_add(&["vital-signs", "--heart-rate", "64"]);
    let org_node = Node::start(&org, &["--http", "127.0.0.1:0"]);
    org.live_ok(&["record", "create"]);
    org.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let jo_node = Node::start(&jo, &["--http", "127.0.0.1:0"]);
    let token_of = api_token;
    let profile = tempfile::TempDir::new().expect("a browser profile directory");
    let driver = Driver::start();
    let rt = runtime();
    let proof = rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &org_node.http().expect("HTTP"), &token_of(&org)).await;
        // The service's node holds its own record and George's: it opens its own.
        click(&c, "#open-mine").await;
        wait_text(&c, "#app-title", "Leeds Home Care Ltd").await;
        click(&c, "#tab-staff").await;
        wait_text(&c, "#staff-empty", "No members yet").await;
        // A mistyped key is refused in the page; then Jo is added as a nurse.
        type_into(&c, "#staff-key", "jo's laptop").await;
        type_into(&c, "#staff-label", "Nurse Jo Bloggs").await;
        click(&c, "#staff-form button[type=submit]").await;
        wait_text(&c, "#error", "A key starts with a-").await;
        type_into(&c, "#staff-key", &jo.actor).await;
        c.execute(
            "document.getElementById('staff-role').value = 'nurse';",
            vec![],
        )
        .await
        .expect("choose the role");
        click(&c, "#staff-form button[type=submit]").await;
        wait_text(&c, "#status", "Nurse Jo Bloggs is a member as nurse").await;
        let row = wait_text(
            &c,
            &format!("#staff tr[data-member=\"{}\"]", jo.actor),
            "nurse",
        )
        .await;
        assert!(row.contains("member"), "{row}");
        // Her proof of membership, to hand over.
        click(&c, &format!("button[data-proof-of=\"{}\"]", jo.actor)).await;
        let proof = wait_value(&c, "#staff-proof-text").await;
        assert!(proof.starts_with("cophr-membership:"), "{proof}");
        screenshot(
            &c.screenshot().await.expect("a screenshot"),
            "web-app-staff.png",
        );
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
        proof
    });

    // Jo keeps it in her own web app, then follows George's record and writes.
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &jo_node.http().expect("HTTP"), &token_of(&jo)).await;
        wait_text(&c, "#memberships-empty", "None").await;
        type_into(&c, "#membership-proof", &proof).await;
        click(&c, "#membership-form button[type=submit]").await;
        wait_text(&c, "#status", "as nurse").await;
        wait_text(&c, "#memberships-list", "Nurse Jo Bloggs").await;
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    jo.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually("Jo to read George's vital signs", || jo.sees(&before));
    let by_jo = jo.live_add(&["vital-signs", "--heart-rate", "75"]);
    eventually("George to see Jo's reading", || george.sees(&by_jo));

    // George sees her under the service's grant; the administrator removes her in the web
    // app; George's page then shows her removed.
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &george_node.http().expect("HTTP"), &token_of(&george)).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-access").await;
        let li = format!("li[data-member=\"{}\"]", jo.actor);
        let staff = wait_text(&c, &li, "Jo Bloggs").await;
        assert!(staff.contains("nurse"), "{staff}");
        assert!(!staff.contains("removed"), "{staff}");

        sign_in(&c, &org_node.http().expect("HTTP"), &token_of(&org)).await;
        click(&c, "#open-mine").await;
        wait_text(&c, "#app-title", "Leeds Home Care Ltd").await;
        click(&c, "#tab-staff").await;
        c.execute("window.prompt = () => 'left the service';", vec![])
            .await
            .expect("answer the reason prompt");
        click(&c, &format!("button[data-remove-member=\"{}\"]", jo.actor)).await;
        wait_text(&c, "#status", "Nurse Jo Bloggs removed, in 1 record").await;
        wait_text(
            &c,
            &format!(
                "#staff tr[data-member=\"{}\"][data-status=removed]",
                jo.actor
            ),
            "removed",
        )
        .await;
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
    eventually("George's node to hold Jo's removal", || {
        let g: Value = george.live_json(&["grants"]);
        g["grants"].as_array().into_iter().flatten().any(|x| {
            x["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["member"]["id"] == jo.actor.as_str() && !m["removed"].is_null())
        })
    });
    rt.block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &george_node.http().expect("HTTP"), &token_of(&george)).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-access").await;
        wait_text(
            &c,
            &format!("li[data-member=\"{}\"][data-removed=yes]", jo.actor),
            "removed",
        )
        .await;
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
}

/// Conversations in the web app: the renal nurse starts a thread with George; George's
/// Conversations tab lists it as new, opens it (focus moves to its heading; opening marks
/// it read, which the nurse's message then shows), and replies from the keyboard.
#[test]
fn the_patient_reads_and_answers_a_conversation_in_the_chat_view() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let nurse = Person::new("Sam Patel", "renal nurse", Some("Leeds Renal Unit"));
    george.ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "write",
        "--categories",
        "messages",
    ]);
    let dir = tempfile::TempDir::new().expect("a directory");
    let first = dir.path().join("george.cophr");
    george.export(&first);
    nurse.import(&first);
    let started = nurse.json(&[
        "thread",
        "start",
        "--with",
        &george.actor,
        "--subject",
        "Your eGFR",
        "Your eGFR has fallen a little: can I call you on Monday?",
    ]);
    let thread = started["thread"].as_str().expect("a thread id").to_owned();
    let second = dir.path().join("thread.cophr");
    nurse.export(&second);
    george.import(&second);
    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let driver = Driver::start();
    let profile = tempfile::TempDir::new().expect("a browser profile");
    runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;
        click(&c, "#tab-conversations").await;
        let listed = wait_text(&c, "#thread-list", "Your eGFR").await;
        assert!(listed.contains("1 new"), "{listed}");
        assert!(listed.contains("Sam Patel"), "{listed}");
        click(&c, &format!("[data-thread='{thread}'] button")).await;
        let shown = wait_text(&c, "#thread-view", "can I call you on Monday?").await;
        assert!(
            shown.contains("Read by George Jones"),
            "opening marks it read: {shown}"
        );
        let focused = c
            .execute("return document.activeElement.id", vec![])
            .await
            .expect("the focused element");
        assert_eq!(focused, json!("thread-title"), "focus moves to the thread");
        wait_text(&c, "#thread-list", "1 message").await;
        type_into(&c, "#reply-text", "Monday at 10 is fine, thank you.").await;
        // Sent from the keyboard: Tab to the button, Enter.
        c.find(Locator::Css("#reply-form button[type=submit]"))
            .await
            .expect("the send button")
            .send_keys("\u{E007}")
            .await
            .expect("Enter");
        let shown = wait_text(&c, "#thread-view", "Monday at 10 is fine").await;
        assert!(shown.contains("You"), "{shown}");
        assert!(
            shown.contains("Not read yet"),
            "the reply is not read yet: {shown}"
        );
        wait_text(&c, "#thread-list", "2 messages").await;
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-conversations.png");
        c.close().await.expect("close the browser");
    });
    // The nurse, importing George's record back, sees that George read her message.
    let third = dir.path().join("reply.cophr");
    george.live_ok(&["export", third.to_str().unwrap()]);
    nurse.import(&third);
    let view = nurse.json(&["thread", "show", &thread]);
    let msgs = view["thread"]["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2, "{view}");
    assert_eq!(msgs[0]["read_by"], json!([george.actor]));
    assert_eq!(msgs[1]["text"], "Monday at 10 is fine, thank you.");
}

/// Issue 15, the Appointments and Referrals & tasks views: the renal clinic's appointment
/// (booked a day ago with a reminder a day before) shows first with its reminder due; George
/// books one of his own through the form, reschedules it (a second version) and cancels
/// it; the GP's referral, marked received by the clinic, shows where it stands with no
/// buttons for George; the home blood test George owns he steps with buttons up to
/// completed, each step a version the gate checked.
#[test]
fn george_sees_and_changes_his_appointments_and_steps_the_task_he_owns_in_the_web_app() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    let clinic = Person::new("Renal clinic", "clinic", Some("Leeds Renal Unit"));
    for p in [&gp, &clinic] {
        george.ok(&[
            "grant",
            p.actor.as_str(),
            "--level",
            "write",
            "--categories",
            "tasks,appointments",
        ]);
    }
    let dir = tempfile::TempDir::new().expect("a directory");
    let mut n = 0;
    let mut share = |from: &Person, to: &[&Person]| {
        n += 1;
        let f = dir.path().join(format!("{n}.cophr"));
        from.export(&f);
        for p in to {
            p.import(&f);
        }
    };
    share(&george, &[&gp, &clinic]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let at = |ms: u64| cophr_node::http::api::format_time(ms);
    let hour = 3_600_000;
    // Booked earlier for three hours from now, reminded a day before: due now.
    let start = at(now_ms + 3 * hour);
    // (The command-line test clock writes in March 2026, long before the reminder.)
    clinic.ok(&[
        "appointment",
        "book",
        "--start",
        &start,
        "--description",
        "Renal clinic review",
        "--place",
        "Leeds Renal Unit, St James's",
        "--reminder",
        "1d",
    ]);
    let referral = gp
        .ok(&[
            "task",
            "send",
            "--kind",
            "referral",
            "--to",
            clinic.actor.as_str(),
            "--description",
            "eGFR falling: please review",
        ])
        .trim()
        .to_owned();
    let blood = gp
        .ok(&[
            "task",
            "send",
            "--kind",
            "blood-test-request",
            "--to",
            george.actor.as_str(),
            "--description",
            "U&E at home before clinic",
        ])
        .trim()
        .to_owned();
    share(&gp, &[&clinic, &george]);
    clinic.ok(&["task", "update", referral.as_str(), "--status", "received"]);
    share(&clinic, &[&george]);

    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let token = api_token(&george);
    let driver = Driver::start();
    let profile = tempfile::TempDir::new().expect("a browser profile");
    runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;

        // Appointments: the clinic's, its reminder due; no buttons for George on it.
        click(&c, "#tab-appointments").await;
        let up = wait_text(&c, "#appointments-upcoming", "Renal clinic review").await;
        assert!(up.contains("Leeds Renal Unit"), "{up}");
        assert!(up.contains("1d before"), "{up}");
        assert!(up.contains("Reminder due now"), "{up}");
        let clinic_row = "#appointments-upcoming tbody tr:first-child";
        assert!(!text_of(&c, clinic_row).await.contains("Reschedule"));
        // George books his own, in 2030, with a reminder a day before.
        let set = |id: &str, v: String| {
            let c = c.clone();
            let id = id.to_owned();
            async move {
                c.execute(
                    "document.getElementById(arguments[0]).value = arguments[1];",
                    vec![json!(id), json!(v)],
                )
                .await
                .expect("set a value");
            }
        };
        set("book-start", "2030-06-20T10:30".into()).await;
        type_into(&c, "#book-description", "Eye screening").await;
        type_into(&c, "#book-place", "Optician, Headingley").await;
        click(&c, "input[name=book-reminder][value='1d']").await;
        click(&c, "#book-form button[type=submit]").await;
        let up = wait_text(&c, "#appointments-upcoming", "Eye screening").await;
        // Upcoming, soonest first: the clinic's (today) before George's (2030).
        assert!(
            up.find("Renal clinic review") < up.find("Eye screening"),
            "{up}"
        );
        let mine = "#appointments-upcoming tbody tr:nth-child(2)";
        assert!(text_of(&c, mine).await.contains("1d before"));
        // Reschedule: a second version.
        click(&c, &format!("{mine} button:first-of-type")).await;
        wait_text(&c, "#reschedule-heading", "Eye screening").await;
        set("reschedule-start", "2030-06-27T10:30".into()).await;
        click(&c, "#reschedule-form button[type=submit]").await;
        let row = wait_text(&c, mine, "changed 1×").await;
        assert!(row.contains("2030"), "{row}");
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-appointments.png");
        // Cancel: a third version, moved to past and cancelled.
        click(&c, &format!("{mine} button.secondary")).await;
        let past = wait_text(&c, "#appointments-past", "Eye screening").await;
        assert!(past.contains("cancelled"), "{past}");
        assert!(past.contains("changed 2×"), "{past}");
        let list = george.live_json(&["appointment", "list", "--all"]);
        assert!(list.to_string().contains("cancelled"), "{list}");

        // Referrals & tasks: the referral received (George sees it, no buttons); his own
        // blood test stepped with buttons.
        click(&c, "#tab-tasks").await;
        let referral_row = format!("#tasks-table tr[data-entry='{referral}']");
        let r = wait_text(&c, &referral_row, "eGFR falling").await;
        assert!(r.contains("Referral"), "{r}");
        assert_eq!(
            js_text(
                &c,
                "return document.querySelector(arguments[0] + \" li[aria-current='step']\").textContent;",
                vec![json!(referral_row)],
            )
            .await,
            "Received"
        );
        assert_eq!(
            js_number(
                &c,
                "return document.querySelectorAll(arguments[0] + ' button').length;",
                vec![json!(referral_row)],
            )
            .await,
            0,
            "George neither owns nor sent the referral"
        );
        let blood_row = format!("#tasks-table tr[data-entry='{blood}']");
        for st in ["received", "accepted", "in-progress", "completed"] {
            click(&c, &format!("{blood_row} button[data-step='{st}']")).await;
            let row = wait_text(
                &c,
                &format!("{blood_row}[data-status='{st}']"),
                "U&E at home",
            )
            .await;
            assert!(row.contains("George Jones"), "{row}");
        }
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-tasks.png");
        let tasks = george.live_json(&["task", "list"]);
        let t = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == blood.as_str())
            .expect("the blood test listed");
        assert_eq!(t["status"], "completed", "{t}");
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });
}
