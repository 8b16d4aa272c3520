//! The care team's acceptance scenario (issue 15, `docs/care-team.md`) across real
//! `cophr node run` processes on 127.0.0.1, with George's web app open in a real browser
//! (headless Chromium through ChromeDriver). George's record is hosted by a blind community
//! host; Mary (his wife), the renal consultant, the diabetes nurse and the pharmacist each
//! run their own node and follow it. Each step is taken where its person works — the
//! clinicians on their own nodes, George in his web app — and reaches the others only
//! through the host:
//!
//! - the consultant releases a reviewed result: George's open page counts the notification
//!   (the time from the release to the page is printed, not asserted);
//! - the renal clinic books an appointment: George's page lists it with the clinic's name and
//!   the reminder, and the reminder comes as a notification when it is due;
//! - the nurse refers George to the renal clinic; the clinic marks it received; George's
//!   page shows it received, by name; George sends the nurse a task from the page and her
//!   node sees it;
//! - George starts a conversation with Mary and the nurse, choosing them by name; they
//!   answer from their nodes; George replies with a file attached; the pharmacist, who
//!   reads messages, cannot read the thread;
//! - the nurse assigns a PHQ-9; George completes it in the page and his scores chart (with
//!   one he gave before); the nurse's node sees the score.
//!
//! Run `cargo build -p cophr` first. Needs `chromium` and `chromedriver` (`bash .ci/deps`);
//! without them the test fails, it is never skipped.

mod browser_support;
mod cli_support;

use std::time::{Duration, Instant};

use browser_support::*;
use cli_support::node::{eventually, Node};
use cli_support::Person;
use fantoccini::{Client, Locator};
use serde_json::Value;

/// An RFC 3339 time `ahead` from now, in whole seconds.
fn from_now(ahead: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + ahead)
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// The threads `who` takes part in, as `thread list --json` gives them.
fn threads(who: &Person) -> Vec<Value> {
    who.live_json(&["thread", "list"])["threads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Opens tab `tab` again until `css` shows `needle` (what the page shows comes from the
/// node as the tab is drawn), for at most `wait`.
async fn reopen_until(c: &Client, tab: &str, css: &str, needle: &str, wait: Duration) -> String {
    let start = Instant::now();
    loop {
        click(c, &format!("#tab-{tab}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = text_of(c, css).await;
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < wait,
            "`{css}` did not show {needle:?} within {wait:?}; it shows {text:?}; error box: {:?}",
            text_of(c, "#error").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ticks the check box of `name` in the list `css` (labels read as names, never ids).
async fn tick_person(c: &Client, css: &str, name: &str) {
    for li in c
        .find_all(Locator::Css(&format!("{css} li")))
        .await
        .unwrap_or_default()
    {
        if li.text().await.unwrap_or_default().contains(name) {
            li.find(Locator::Css("input[type=checkbox]"))
                .await
                .expect("a check box")
                .click()
                .await
                .expect("tick it");
            return;
        }
    }
    panic!(
        "no one named {name:?} to choose in `{css}`: {:?}",
        text_of(c, css).await
    );
}

#[test]
fn the_care_team_works_with_george_across_real_nodes_and_his_web_app_shows_each_step() {
    require_browser();
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let consultant = Person::new("Dr Okafor", "consultant", Some("Leeds Renal Unit"));
    let nurse = Person::new("Jo Smith", "diabetes nurse", Some("Diabetes Service"));
    let pharmacist = Person::new("Ana Silva", "pharmacist", Some("Oakwood Pharmacy"));
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let george_node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    george.live_ok(&["record", "create"]);
    for (p, level, cats) in [
        (&mary, "write", "all"),
        (&consultant, "write", "all"),
        (&nurse, "write", "all"),
        (
            &pharmacist,
            "view",
            "problems,medications,allergies,messages",
        ),
    ] {
        george.live_ok(&["grant", &p.actor, "--level", level, "--categories", cats]);
    }
    george.live_ok(&["host", &host_node.addr()]);
    let others = [&mary, &consultant, &nurse, &pharmacist];
    let _nodes: Vec<Node> = others.iter().map(|p| Node::start(p, &[])).collect();
    for p in others {
        p.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    }
    let base = george_node.http().expect("George's node serves HTTP");
    let token = george.live_ok(&["token"]).trim().to_owned();
    let files = tempfile::tempdir().expect("a directory");
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("a browser profile");
    runtime().block_on(async {
        let c = browser(&driver, profile.path()).await;
        sign_in(&c, &base, &token).await;
        wait_text(&c, "#app-title", "My record").await;

        // George subscribes to released results, reminders, task steps and messages.
        click(&c, "#tab-notifications").await;
        wait_for(&c, "#subscribe-form").await;
        for ev in [
            "result-released",
            "reminder-due",
            "task-status",
            "new-message",
        ] {
            click(&c, &format!("#sub-{ev}")).await;
        }
        click(&c, "#subscribe-form button[type=submit]").await;
        wait_text(&c, "#subscriptions", "A result was released").await;

        // 1. The consultant releases a reviewed result; George's open page counts it.
        let result = consultant.live_add(&[
            "lab-results",
            "--test",
            "Potassium",
            "--result",
            "5.9",
            "--unit",
            "mmol/L",
        ]);
        eventually("George's node to hold the result", || george.sees(&result));
        let released = Instant::now();
        consultant.live_ok(&[
            "result",
            "release",
            &result,
            "--note",
            "Seen by the renal team",
        ]);
        wait_text(&c, "#notif-unread", "1").await;
        println!(
            "released on the consultant's node → George's page counts it: {:?}",
            released.elapsed()
        );
        let listed = wait_text(&c, "#notification-list", "A result was released").await;
        assert!(
            !listed.contains("5.9"),
            "no content in a notification: {listed}"
        );

        // 2. The renal clinic books an appointment, its reminder due a few seconds from
        // now: George's page lists it by the clinic's name with the reminder, and the
        // reminder arrives as a notification when it is due.
        let start = from_now(time::Duration::days(1) + time::Duration::seconds(15));
        let appt = consultant
            .live_ok(&[
                "appointment",
                "book",
                "--start",
                &start,
                "--description",
                "Nephrology outpatients",
                "--place",
                "St James's, outpatients 4",
                "--with",
                &consultant.actor,
                "--reminder",
                "1d",
            ])
            .trim()
            .to_owned();
        eventually("George's node to hold the appointment", || {
            george.sees(&appt)
        });
        let row = reopen_until(
            &c,
            "appointments",
            "#appointments-upcoming",
            "Nephrology outpatients",
            Duration::from_secs(30),
        )
        .await;
        assert!(row.contains("Dr Okafor"), "the clinic by name: {row}");
        assert!(row.contains("1d before"), "{row}");
        reopen_until(
            &c,
            "notifications",
            "#notification-list",
            "An appointment reminder is due",
            Duration::from_secs(90),
        )
        .await;

        // 3. The nurse refers George to the renal clinic; the clinic marks it received;
        // George sees where it stands, and who, by name.
        let referral = nurse
            .live_ok(&[
                "task",
                "send",
                "--kind",
                "referral",
                "--to",
                &consultant.actor,
                "--description",
                "eGFR falling: please review",
            ])
            .trim()
            .to_owned();
        eventually("the clinic's node to see the referral", || {
            consultant.task_status(&referral).as_deref() == Some("sent")
        });
        consultant.live_ok(&["task", "update", &referral, "--status", "received"]);
        eventually("George's node to see the referral received", || {
            george.task_status(&referral).as_deref() == Some("received")
        });
        let css = format!("#tasks-table tr[data-entry='{referral}'][data-status='received']");
        let row = reopen_until(
            &c,
            "tasks",
            "#tasks-table",
            "eGFR falling",
            Duration::from_secs(30),
        )
        .await;
        assert!(
            row.contains("Jo Smith") && row.contains("Dr Okafor"),
            "{row}"
        );
        let received = wait_text(&c, &css, "eGFR falling").await;
        assert!(received.contains("Received"), "{received}");
        // George asks the nurse for something from the page: her node sees it.
        click(&c, "#tab-tasks").await;
        wait_for(&c, "#send-task-form").await;
        let owners = options(&c, "#task-owner").await;
        assert!(owners.contains(&nurse.actor), "{owners:?}");
        assert!(
            !owners.contains(&pharmacist.actor),
            "the pharmacist cannot act on tasks: {owners:?}"
        );
        c.find(Locator::Css(&format!(
            "#task-owner option[value='{}']",
            nurse.actor
        )))
        .await
        .expect("the nurse among the owners")
        .click()
        .await
        .expect("choose the nurse");
        let option = text_of(&c, &format!("#task-owner option[value='{}']", nurse.actor)).await;
        assert!(option.contains("Jo Smith"), "by name: {option}");
        type_into(
            &c,
            "#task-description",
            "Please check my sugar diary before the review",
        )
        .await;
        click(&c, "#send-task-form button[type=submit]").await;
        wait_text(&c, "#status", "Sent to Jo Smith").await;
        eventually("the nurse's node to see George's task", || {
            nurse.live_ok(&["task", "list"]).contains("sugar diary")
        });

        // 4. George starts a conversation with Mary and the nurse, choosing them by name.
        click(&c, "#tab-conversations").await;
        wait_for(&c, "#start-thread-form").await;
        let people = text_of(&c, "#thread-people").await;
        assert!(people.contains("Ana Silva"), "she reads messages: {people}");
        tick_person(&c, "#thread-people", "Mary Jones").await;
        tick_person(&c, "#thread-people", "Jo Smith").await;
        type_into(&c, "#thread-subject", "My sugars").await;
        type_into(&c, "#thread-text", "My sugars have been high this week").await;
        click(&c, "#start-thread-form button[type=submit]").await;
        wait_text(&c, "#thread-view", "My sugars have been high").await;
        let with = text_of(&c, "#thread-view .meta").await;
        assert!(
            with.contains("Mary Jones") && with.contains("Jo Smith"),
            "{with}"
        );
        eventually("the nurse's node to see the thread", || {
            !threads(&nurse).is_empty()
        });
        eventually("Mary's node to see the thread", || {
            !threads(&mary).is_empty()
        });
        let thread = threads(&nurse)[0]["thread"]["id"]
            .as_str()
            .expect("the thread's id")
            .to_owned();
        nurse.live_ok(&["thread", "send", &thread, "Can you send me your readings?"]);
        mary.live_ok(&["thread", "send", &thread, "He has been eating well"]);
        let start = Instant::now();
        loop {
            click(
                &c,
                &format!("#thread-list li[data-thread='{thread}'] button"),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let shown = text_of(&c, "#thread-view").await;
            if shown.contains("send me your readings") && shown.contains("eating well") {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "the answers did not reach the page: {shown}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // George replies with his readings attached (a text file).
        let readings = files.path().join("readings.txt");
        std::fs::write(&readings, "Mon 9.1\nTue 8.7\nWed 10.2\n").expect("the readings");
        type_into(&c, "#reply-text", "Here are my readings").await;
        wait_for(&c, "#reply-file")
            .await
            .send_keys(readings.to_str().expect("a path"))
            .await
            .expect("choose the file");
        click(&c, "#reply-form button[type=submit]").await;
        wait_text(&c, "#thread-view", "Here are my readings").await;
        wait_text(&c, "#thread-view", "Open the attachment").await;
        eventually(
            "the nurse's node to see the reply with its attachment",
            || {
                nurse.live_json(&["thread", "show", &thread])["thread"]["messages"]
                    .as_array()
                    .is_some_and(|m| {
                        m.iter().any(|m| {
                            m["text"] == "Here are my readings" && m["attachment"].is_object()
                        })
                    })
            },
        );
        // The pharmacist reads messages, but not this thread: her node holds none of it.
        pharmacist.live_ok(&["sync"]);
        assert!(
            threads(&pharmacist).is_empty(),
            "the pharmacist sees no thread"
        );
        let hers = pharmacist.live_ok(&["show", "--category", "messages"]);
        for words in ["sugars", "readings", "eating well"] {
            assert!(
                !hers.contains(words),
                "{words:?} in the pharmacist's view: {hers}"
            );
        }

        // 5. The nurse assigns a PHQ-9; George completes it in the page; the score charts,
        // and the nurse's node sees it.
        let def = nurse
            .live_ok(&["questionnaire", "publish", "phq-9"])
            .trim()
            .to_owned();
        let due = (time::OffsetDateTime::now_utc() + time::Duration::days(7))
            .date()
            .to_string();
        let task = nurse
            .live_ok(&["questionnaire", "assign", &def, "--due", &due])
            .trim()
            .to_owned();
        // George answered the published PHQ-9 once before, on his own (3 in all, minimal).
        eventually("George's node to hold the assignment", || {
            george.live_ok(&["questionnaire", "list"]).contains("PHQ-9")
        });
        let mut earlier = vec!["questionnaire", "answer", def.as_str()];
        let answers: Vec<String> = (1..=9)
            .map(|i| format!("phq9-{i}={}", u8::from(i <= 3)))
            .collect();
        for a in &answers {
            earlier.extend(["--answer", a.as_str()]);
        }
        george.live_ok(&earlier);
        reopen_until(
            &c,
            "questionnaires",
            "#assigned-list",
            "PHQ-9",
            Duration::from_secs(30),
        )
        .await;
        click(&c, &format!("#assigned-list li[data-task='{task}'] button")).await;
        wait_text(&c, "#answer-heading", "PHQ-9").await;
        // 1,1,1,1,1,0,0,1,0: 6, mild.
        for (i, k) in [1, 1, 1, 1, 1, 0, 0, 1, 0].iter().enumerate() {
            click(&c, &format!("#q-phq9-{}-{k}", i + 1)).await;
        }
        click(&c, "#q-phq9-10-0").await;
        click(&c, "#answer-form button[type=submit]").await;
        wait_text(&c, "#questionnaire-score", "6").await;
        wait_text(&c, "#questionnaire-band", "mild").await;
        click(&c, "#tab-trends").await;
        let measure = "questionnaire|patient health questionnaire (phq-9)";
        wait_chart(&c, measure).await;
        assert_eq!(chart_points(&c, measure, 0).await, 2);
        let label = chart_label(&c, measure).await;
        assert!(
            label.contains("Latest 6") && label.contains("(mild)"),
            "{label}"
        );
        let rows = chart_table(&c, measure).await;
        assert!(
            rows[0].contains('6') && rows[0].contains("mild"),
            "{rows:?}"
        );
        assert!(rows[1].contains("minimal"), "{rows:?}");
        eventually("the nurse's node to see George's score", || {
            nurse.live_json(&["questionnaire", "list"])["responses"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["score"] == 6 && r["band"] == "mild"))
        });
        let png = c.screenshot().await.expect("a screenshot");
        screenshot(&png, "web-app-care-team.png");
        c.close().await.expect("close the browser");
        driver.session.lock().expect("the session slot").take();
    });

    // The host was blind: nothing anyone wrote is in its files.
    let written = [
        "Nephrology outpatients",
        "My sugars have been high",
        "send me your readings",
        "Here are my readings",
        "Wed 10.2",
    ];
    assert_eq!(
        cli_support::search::in_files(host.dir(), &written),
        vec![0; written.len()],
        "{written:?} in the host's files"
    );
}
