//! The network tour's browser step: George, with only a browser, opens his sealed record
//! on the community host's page (`/patient.html`). The tour does in this process exactly
//! what the page does (the same `cophr-wasm` code the page runs as WebAssembly, over the
//! same `POST /sync` requests), then checks George's node receives what was written and
//! the host's files hold none of it.

use std::time::Duration;

use cophr_wasm::Patient;
use data_encoding::BASE64;
use rand_core::{OsRng, RngCore};

use super::{node_http, occurrences, Expect, Tour};
use crate::error::{CliError, Result};

/// The demo's passphrase for George's key backup (a real one is the person's own).
const PASSPHRASE: &str = "demo passphrase for George's key";
/// The most bytes read from one answer (a sync message's bound).
const MAX_ANSWER: u64 = cophr_protocol::sync::MAX_MESSAGE_BYTES as u64;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn read(
    what: &str,
    response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Vec<u8>> {
    let fail = |e: String| CliError::other(format!("{what}: {e}"));
    let response = response.map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    Ok(bytes)
}

fn post(agent: &ureq::Agent, web: &str, body: Vec<u8>) -> Result<Vec<u8>> {
    read(
        "POST /sync",
        agent
            .post(format!("{web}/sync"))
            .header("content-type", "application/cbor")
            .send(&body[..]),
    )
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One sync of the page with the host.
fn sync(
    agent: &ureq::Agent,
    web: &str,
    page: &mut Patient,
    push: bool,
) -> Result<serde_json::Value> {
    page.start_sync(push);
    loop {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let Some(request) = page.next_request(now_ms(), nonce) else {
            break;
        };
        match post(agent, web, request) {
            Ok(answer) => page.handle_response(&answer),
            Err(e) => page.handle_failure(&e.to_string()),
        }
    }
    let report = page.sync_report();
    match report["error"].as_str() {
        Some(e) => Err(CliError::other(format!("the page's sync failed: {e}"))),
        None => Ok(report),
    }
}

/// George, with only a browser, opens and writes his record through the host's page.
pub(super) fn george_in_a_browser(t: &mut Tour, record: &str) -> Result<()> {
    t.say("George keeps an encrypted backup of his (new) key on the community host, sealed under a passphrase only he knows.");
    let file = t.dir.join("george-passphrase");
    std::fs::write(&file, format!("{PASSPHRASE}\n"))
        .map_err(|e| CliError::other(format!("cannot write the passphrase file: {e}")))?;
    set_private(&file)?;
    let file = file.display().to_string();
    t.run(
        "george",
        &[
            "--record",
            record,
            "key",
            "backup",
            "--to-host",
            "--passphrase-file",
            &file,
        ],
        Expect::Ok,
    )?;
    let web =
        node_http(&t.dir.join("host")).ok_or_else(|| CliError::other("the host serves no HTTP"))?;
    let web = web.trim_end_matches('/').to_owned();
    let key = t.actor("george")?;
    t.say(&format!(
        "At a friend's, George has only a browser. The host serves a page, {web}/patient.html, that does everything with his key in the browser: it fetches the sealed backup, opens it with his passphrase there, fetches his sealed record and opens it there, and seals and signs what he writes there. The tour now does exactly what that page does (the same code, over the same requests):"
    ));
    let agent = agent();
    let info: serde_json::Value =
        serde_json::from_slice(&read("GET /sync", agent.get(format!("{web}/sync")).call())?)
            .map_err(|e| CliError::other(format!("GET /sync: {e}")))?;
    let server = info["server"]
        .as_str()
        .and_then(|s| BASE64.decode(s.as_bytes()).ok())
        .ok_or_else(|| CliError::other("GET /sync named no server"))?;
    let ask = cophr_wasm::backup_request(&key).map_err(|e| CliError::other(e.to_string()))?;
    let backup = cophr_wasm::backup_from_response(&post(&agent, &web, ask)?)
        .map_err(|e| CliError::other(e.to_string()))?;
    println!("  fetched the sealed key backup ({} bytes)", backup.len());
    let mut page = Patient::open(&backup, PASSPHRASE, Some(record), &server)
        .map_err(|e| CliError::other(format!("opening the backup: {e}")))?;
    println!(
        "  opened it with the passphrase, in the page: key {}",
        page.actor()
    );
    let report = sync(&agent, &web, &mut page, false)?;
    let state = page.items(now_ms());
    println!(
        "  fetched {} sealed entries and opened them in the page: {} items, {} sealed under keys this key was not given",
        report["pulled"], state["items"].as_array().map_or(0, Vec::len), state["locked"]
    );
    for item in state["items"].as_array().into_iter().flatten().take(4) {
        println!(
            "    {}: {}",
            item["category"].as_str().unwrap_or(""),
            item["summary"].as_str().unwrap_or("")
        );
    }
    let id = page
        .add(
            "allergies",
            r#"{"agent": "Elastoplast", "reaction": "Blisters, noted from a browser"}"#,
            now_ms(),
            &mut OsRng,
        )
        .map_err(|e| CliError::other(format!("writing in the page: {e}")))?;
    let report = sync(&agent, &web, &mut page, true)?;
    println!(
        "  wrote an allergy, sealed and signed in the page ({id}), and sent {} entries to the host",
        report["pushed"]
    );
    let id = id.to_string();
    t.wait_for("the browser's entry reaching George's node", |t| {
        t.sees("george", &id)
    })?;
    t.say("George's node received it, signed by his key. The host passed it on without reading it: searching its files for what the page wrote, and for the passphrase:");
    for words in ["noted from a browser", PASSPHRASE] {
        let found = occurrences(&t.dir.join("host"), words.as_bytes());
        println!("  \"{words}\": found {found} times in the host's files");
        if found > 0 {
            return Err(CliError::other(format!(
                "the host's files hold \"{words}\" in clear"
            )));
        }
    }
    t.run("george", &["show", "--category", "allergies"], Expect::Ok)?;
    Ok(())
}

#[cfg(unix)]
fn set_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::other(format!("cannot make the passphrase file private: {e}")))
}

#[cfg(not(unix))]
fn set_private(_path: &std::path::Path) -> Result<()> {
    Ok(())
}
