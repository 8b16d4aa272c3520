//! The identity assurance service against a real OpenID Connect provider: panva's
//! `oidc-provider` (npm, installed into `tests/oidc/node_modules` by `bash .ci/deps`),
//! started by the test with `tests/oidc/provider.mjs` on an ephemeral port.
//!
//! George asks the AIS (`cophr ais serve`) to verify him (`cophr ais request`); the test plays
//! his browser with plain HTTP (redirects followed by hand, cookies kept, the provider's
//! login and consent forms submitted); the provider redirects to the AIS's callback; the AIS
//! exchanges the code, verifies the ID token and signs an attestation, which `cophr ais
//! request` collects and writes. Its attributes are the provider's claims. A replayed
//! callback (same state and nonce), a callback with an unknown state and a replayed or
//! forged start request are refused with a reason, and nothing more is issued.
//!
//! The in-person side: `cophr ais attest`, `cophr ais list`, `cophr ais revoke`; the
//! revocation is served at `/ais/v1/revocations` and verifies; a trust list refuses the
//! revoked, a tampered and an expired attestation.
//!
//! Without `node` or the provider package the test fails (it is never skipped).

mod cli_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Duration;

use cli_support::{cophr_bin, Person};
use cophr_protocol::trust::attestation::NationalNumber;
use cophr_protocol::trust::{
    AssuranceLevel, Attributes, Method, SignedAttestation, SignedRevocation, TrustList,
    TrustedIssuer, Why,
};
use cophr_protocol::ActorId;
use data_encoding::BASE64URL_NOPAD;
use serde_json::Value;

/// How long a process may take to print a line the test waits for.
const LINE_DEADLINE: Duration = Duration::from_secs(60);

/// The test client of `provider.mjs`.
const CLIENT_ID: &str = "cophr-ais-test";
const CLIENT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256-0123456789";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A child process whose stdout lines arrive on a channel; killed (by its own pid) on drop.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}): run bash .ci/deps"));
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name,
            child,
            lines: rx,
            stdin,
        }
    }

    /// The next line starting with `prefix` (earlier lines skipped), without it.
    fn line(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(LINE_DEADLINE)
                .unwrap_or_else(|e| panic!("{} printed no `{prefix}` line ({e})", self.name));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider, ready for the AIS whose callback is `redirect`.
fn start_provider() -> (Proc, String) {
    let dir = oidc_dir();
    assert!(
        dir.join("node_modules/oidc-provider/package.json")
            .is_file(),
        "oidc-provider is not installed in {}: run bash .ci/deps",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("provider.mjs")).current_dir(&dir);
    let p = Proc::spawn("oidc-provider", cmd);
    let port = p.line("listening ");
    (p, format!("http://127.0.0.1:{port}"))
}

fn provider_ready(p: &mut Proc, redirect: &str) {
    let stdin = p.stdin.as_mut().expect("the provider's stdin");
    writeln!(stdin, "{redirect}").expect("the provider reads its redirect");
    stdin.flush().unwrap();
    p.line("ready");
}

/// `cophr ais serve` in `home` with `config`; returns it, its base URL, its id and callback.
fn start_ais(home: &Path, config: &Path) -> (Proc, String, String, String) {
    let mut cmd = Command::new(cophr_bin());
    cmd.env_remove("COPHR_HOME")
        .env_remove("RUST_LOG")
        .arg("--home")
        .arg(home)
        .args(["ais", "serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config);
    let p = Proc::spawn("cophr ais serve", cmd);
    let id = p.line("ais ");
    let callback = p.line("callback ");
    let callback = callback
        .split_once(' ')
        .expect("callback NAME URL")
        .1
        .to_string();
    let base = p.line("listening ");
    (p, base, id, callback)
}

fn write_config(dir: &Path, issuer: &str) -> PathBuf {
    let path = dir.join("ais.toml");
    std::fs::write(
        &path,
        format!(
            "[[provider]]\nname = \"test-login\"\nissuer = \"{issuer}\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             scopes = [\"openid\", \"profile\", \"nhs_number\"]\n\
             level_claim = \"identity_proofing_level\"\nmax_level = \"P9\"\n\
             nhs_number_claim = \"nhs_number\"\nvalid_days = 30\n"
        ),
    )
    .unwrap();
    path
}

/// A browser, as far as the login needs one: no redirects followed by the agent, a cookie
/// jar (by name; every cookie goes back to the provider), forms posted URL-encoded.
struct Browser {
    agent: ureq::Agent,
    cookies: BTreeMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

fn form_encode(fields: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `attr="…"` inside one tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&"))
}

/// The first form of a page: its action and its named inputs' values.
fn first_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let form = &html[start..end];
    let action = attr(&form[..form.find('>')?], "action")?;
    let mut inputs = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').map(|e| i + e).unwrap_or(rest.len());
        let tag = &rest[i..tag_end];
        if let Some(name) = attr(tag, "name") {
            inputs.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[tag_end..];
    }
    Some((action, inputs))
}

impl Browser {
    fn new() -> Browser {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Browser {
            agent,
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn read(
        &mut self,
        url: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Page {
        let r = r.unwrap_or_else(|e| panic!("{url}: {e}"));
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap_or("");
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        let location = r.headers().get("location").map(|l| {
            let l = l.to_str().unwrap_or("").to_string();
            if l.starts_with('/') {
                format!("{}{l}", origin(url))
            } else {
                l
            }
        });
        let status = r.status().as_u16();
        let body = r.into_body().read_to_string().unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    fn get(&mut self, url: &str) -> Page {
        let r = self
            .agent
            .get(url)
            .header("cookie", &self.cookie_header())
            .call();
        self.read(url, r)
    }

    fn post_form(&mut self, url: &str, fields: &[(String, String)]) -> Page {
        let r = self
            .agent
            .post(url)
            .header("cookie", &self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .send(form_encode(fields));
        self.read(url, r)
    }

    /// Follows redirects from `url`, signing in as `login` and consenting on the way, until
    /// the provider redirects to `callback`; returns that URL (not followed).
    fn sign_in(&mut self, url: &str, login: &str, callback: &str) -> String {
        let mut page = self.get(url);
        let mut here = url.to_string();
        for _ in 0..20 {
            if let Some(next) = page.location.clone() {
                assert!((300..400).contains(&page.status), "{}", page.status);
                if next.starts_with(callback) {
                    return next;
                }
                here = next;
                page = self.get(&here);
                continue;
            }
            assert_eq!(page.status, 200, "{here}: {}", page.body);
            let (action, mut fields) = first_form(&page.body)
                .unwrap_or_else(|| panic!("no form at {here}: {}", page.body));
            for (name, value) in &mut fields {
                match name.as_str() {
                    "login" => *value = login.to_string(),
                    "password" => *value = "any password".to_string(),
                    _ => {}
                }
            }
            let action = if action.starts_with('/') {
                format!("{}{action}", origin(&here))
            } else {
                action
            };
            page = self.post_form(&action, &fields);
        }
        panic!("the sign-in did not reach the callback");
    }
}

fn ais_list(home: &Path) -> Vec<Value> {
    let out = cli_support::cophr()
        .arg("--home")
        .arg(home)
        .args(["--json", "ais", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["issued"].as_array().unwrap().clone()
}

/// Runs `cophr ais request` for `person` and signs in at the provider as `login` in a fresh
/// browser; returns the attestation file, the browser and the callback URL it visited.
fn verify_by_login(
    person: &Person,
    base: &str,
    ais_id: Option<&str>,
    login: &str,
    issuer: &str,
    callback: &str,
) -> (PathBuf, Browser, String) {
    let out = person.dir().join(format!("{login}.att"));
    let mut cmd = Command::new(cophr_bin());
    cmd.env_remove("COPHR_HOME")
        .arg("--home")
        .arg(person.dir())
        .args(["ais", "request", "--ais", base, "--timeout", "60", "-o"])
        .arg(&out);
    if let Some(id) = ais_id {
        cmd.args(["--ais-id", id]);
    }
    let mut request = Proc::spawn("cophr ais request", cmd);
    let url = format!("http{}", request.line("http"));
    assert!(url.starts_with(&format!("{issuer}/auth?")), "{url}");
    for part in [
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
    ] {
        assert!(
            url.contains(part),
            "the authorization URL has {part}: {url}"
        );
    }
    let mut browser = Browser::new();
    let back = browser.sign_in(&url, login, callback);
    let page = browser.get(&back);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Identity verified"), "{}", page.body);
    assert!(page.body.contains(&person.actor), "{}", page.body);
    let status = request.child.wait().unwrap();
    assert!(status.success(), "cophr ais request failed");
    (out, browser, back)
}

#[test]
fn a_person_verified_by_a_real_openid_connect_provider_collects_an_attestation_of_its_claims() {
    let ais = Person::new("Leeds AIS", "ais", Some("Leeds Care Record"));
    let george = Person::new("George Jones", "patient", None);

    let (mut provider, issuer) = start_provider();
    let config = write_config(ais.dir(), &issuer);
    let (_serve, base, ais_id, callback) = start_ais(ais.dir(), &config);
    provider_ready(&mut provider, &callback);

    // George asks; the command prints the provider's URL, then waits for the attestation.
    let (out, mut browser, back) =
        verify_by_login(&george, &base, None, "george", &issuer, &callback);
    let bytes = std::fs::read(&out).unwrap();
    let a = SignedAttestation::decode(&bytes).expect("a verified attestation");
    let t = &a.attestation;
    assert_eq!(t.issuer.to_string(), ais_id);
    assert_eq!(t.subject.to_string(), george.actor);
    assert_eq!(t.level, AssuranceLevel::P9);
    assert_eq!(
        t.method,
        Method::Oidc {
            issuer: issuer.clone()
        }
    );
    assert_eq!(
        t.attributes,
        Attributes::Person {
            name: "George Jones".into(),
            birth_date: Some("1948-02-03".into()),
            national_number: Some(NationalNumber {
                system: "nhs".into(),
                value: "9434765919".into(),
            }),
        },
        "the attributes are the provider's claims"
    );
    assert!(t.not_after - t.not_before == 30 * 24 * 3600 * 1000);
    assert_eq!(ais_list(ais.dir()).len(), 1);

    // The same callback again (same state, same code, same nonce): refused, nothing issued.
    let replay = browser.get(&back);
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    assert!(
        replay.body.contains("Nothing was issued"),
        "{}",
        replay.body
    );
    // A state this AIS never issued.
    let unknown = browser.get(&format!("{base}/ais/v1/callback?code=abc&state=made-up"));
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("unknown"), "{}", unknown.body);
    // No state at all, and the provider reporting a refusal for an unknown state.
    assert_eq!(
        browser
            .get(&format!("{base}/ais/v1/callback?code=abc"))
            .status,
        400
    );
    assert_eq!(
        browser
            .get(&format!(
                "{base}/ais/v1/callback?error=access_denied&state=x"
            ))
            .status,
        400
    );
    assert_eq!(ais_list(ais.dir()).len(), 1, "nothing more was issued");

    // Mary: given and family names, P5 from the claim, no NHS number; the AIS's key pinned.
    let mary = Person::new("Mary Jones", "carer", None);
    let (out, _, _) = verify_by_login(&mary, &base, Some(&ais_id), "mary", &issuer, &callback);
    let m = SignedAttestation::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(m.attestation.subject.to_string(), mary.actor);
    assert_eq!(m.attestation.level, AssuranceLevel::P5);
    assert_eq!(
        m.attestation.attributes,
        Attributes::Person {
            name: "Mary Jones".into(),
            birth_date: Some("1950-07-14".into()),
            national_number: None,
        }
    );
    assert_eq!(ais_list(ais.dir()).len(), 2);

    // Start requests: garbage, and a replay of a signed one, are refused with a reason.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |body: &str| {
        let r = agent
            .post(format!("{base}/ais/v1/start"))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        (status, r.into_body().read_to_string().unwrap_or_default())
    };
    let (status, body) = post(r#"{"request":"AAAA"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("bad-request-proof"), "{body}");
    let (status, _) = post(&format!(r#"{{"request":"{}"}}"#, "A".repeat(10_000)));
    assert_eq!(status, 413, "bodies are bounded");
    let (status, body) = post("not json");
    assert_eq!(status, 400, "{body}");
}

#[test]
fn in_person_attestations_are_listed_revoked_and_the_revocation_is_published() {
    let ais = Person::new("Leeds registration desk", "ais", Some("Leeds Care Record"));
    let patel = Person::new("Rena Patel", "consultant", Some("Leeds Teaching Hospitals"));
    let att = patel.dir().join("patel.att");
    let att_s = att.to_str().unwrap();
    let r = ais.exec(
        None,
        &[
            "--json",
            "ais",
            "attest",
            "--subject",
            &patel.actor,
            "--level",
            "P9",
            "--professional",
            "--name",
            "Rena Patel",
            "--profession",
            "doctor",
            "--registration",
            "GMC:7123456",
            "--organisation",
            "Leeds Teaching Hospitals",
            "--ods",
            "RR8",
            "-o",
            att_s,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = serde_json::from_str::<Value>(&r.stdout).unwrap()["attestation"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(&att).unwrap();
    let a = SignedAttestation::decode(&bytes).unwrap();
    assert_eq!(a.id().to_string(), id);
    assert_eq!(a.attestation.method, Method::InPerson);
    assert_eq!(a.attestation.issuer.to_string(), ais.actor);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&att).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "not world-readable");

    // Refused: a bad NHS number, a kind without its attributes, an unknown subject id.
    let bad = ais.exec(
        None,
        &[
            "ais",
            "attest",
            "--subject",
            &patel.actor,
            "--level",
            "P9",
            "--person",
            "--name",
            "X",
            "--nhs-number",
            "9434765918",
            "-o",
            att_s,
        ],
    );
    assert_eq!(bad.code, 5, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("not a valid NHS number"),
        "{}",
        bad.stderr
    );
    let bad = ais.exec(
        None,
        &[
            "ais",
            "attest",
            "--subject",
            &patel.actor,
            "--level",
            "P9",
            "--label",
            "meter",
            "-o",
            att_s,
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert_eq!(ais_list(ais.dir()).len(), 1, "refusals store nothing");

    // A short-lived one, to expire.
    let short = patel.dir().join("short.att");
    let r = ais.exec(
        None,
        &[
            "ais",
            "attest",
            "--subject",
            &patel.actor,
            "--level",
            "P5",
            "--person",
            "--name",
            "Rena Patel",
            "--valid-days",
            "1",
            "-o",
            short.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let short = SignedAttestation::decode(&std::fs::read(&short).unwrap()).unwrap();

    let r = ais.exec(
        None,
        &["ais", "revoke", &id, "--reason", "registration lapsed"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again = ais.exec(None, &["ais", "revoke", &id, "--reason", "again"]);
    assert_eq!(again.code, 7, "{}", again.stderr);
    let r = ais.exec(
        None,
        &[
            "ais",
            "revoke",
            &short.id().to_string(),
            "--reason",
            "superseded",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let never = format!("t-{}", "a".repeat(52));
    let unknown = ais.exec(None, &["ais", "revoke", &never, "--reason", "x"]);
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    let listed = ais_list(ais.dir());
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|i| i["status"] == "revoked"),
        "{listed:?}"
    );

    // Served: the revocations, each verifying and naming what it withdraws.
    let config = write_config(ais.dir(), "http://127.0.0.1:9");
    let (_serve, base, ais_id, _) = start_ais(ais.dir(), &config);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let body = agent
        .get(format!("{base}/ais/v1/revocations"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let revocations: Vec<SignedRevocation> = v["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            SignedRevocation::decode(
                &BASE64URL_NOPAD
                    .decode(s.as_str().unwrap().as_bytes())
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(revocations.len(), 2);
    let ours = revocations
        .iter()
        .find(|r| r.revocation.attestation == a.id())
        .expect("the revocation is published");
    assert_eq!(ours.revocation.reason, "registration lapsed");
    assert_eq!(ours.revocation.issuer.to_string(), ais_id);

    // A home that trusts this AIS learns its revocations with `cophr trust refresh`: Dr
    // Patel's attestation, verified before, counts for nothing after.
    patel.live_ok(&[
        "trust",
        "add",
        &ais_id,
        "--name",
        "Leeds registration desk",
        "--url",
        &base,
    ]);
    patel.live_ok(&["identity", "add", att_s]);
    let shown = |p: &Person| p.live_json(&["identity", "show"])["shown_as"].clone();
    assert_eq!(shown(&patel), "verified P9 by Leeds registration desk");
    let out = patel.live_ok(&["trust", "refresh"]);
    assert!(out.contains("2 new revocation(s)"), "{out}");
    assert_eq!(shown(&patel), "self-asserted");
    let here = patel.live_json(&["identity", "show"])["attestations"][0]["here"].clone();
    assert_eq!(here, "revoked by its issuer");
    // Refreshing again learns nothing new; the list is kept.
    let out = patel.live_ok(&["trust", "refresh"]);
    assert!(
        out.contains("0 new revocation(s)") && out.contains("2 revocation(s) known"),
        "{out}"
    );

    // A node trusting this AIS refuses the revoked one, a tampered one and an expired one.
    let subject: ActorId = patel.actor.parse().unwrap();
    let mut trust = TrustList::new();
    trust
        .trust(TrustedIssuer {
            id: ais_id.parse().unwrap(),
            name: "Leeds registration desk".into(),
            max_level: AssuranceLevel::P9,
        })
        .unwrap();
    let now = a.attestation.not_before + 1000;
    assert_eq!(
        trust.why_not(&subject, &a, now),
        None,
        "valid before revocation"
    );
    trust.add_revocation(ours).unwrap();
    assert_eq!(trust.why_not(&subject, &a, now), Some(Why::Revoked));
    let mut tampered = a.clone();
    tampered.attestation.level = AssuranceLevel::P9;
    tampered.attestation.attributes = Attributes::Person {
        name: "Mallory".into(),
        birth_date: None,
        national_number: None,
    };
    assert_eq!(trust.why_not(&subject, &tampered, now), Some(Why::Forged));
    let mut flipped = bytes.clone();
    let n = flipped.len() - 10;
    flipped[n] ^= 1;
    assert!(
        SignedAttestation::decode(&flipped).is_err(),
        "a flipped bit does not verify"
    );
    let later = short.attestation.not_after + 1;
    let mut trust_short = TrustList::new();
    trust_short
        .trust(TrustedIssuer {
            id: ais_id.parse().unwrap(),
            name: "desk".into(),
            max_level: AssuranceLevel::P9,
        })
        .unwrap();
    assert_eq!(
        trust_short.why_not(&subject, &short, later),
        Some(Why::Expired)
    );
}
