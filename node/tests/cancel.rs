//! A read that was never delivered is not audited, and its work stops: an HTTP request
//! that timed out, or whose future was dropped (the client went away), writes no audit
//! event and its blocking work leaves at the next cancellation checkpoint.
//!
//! Deterministic: a checkpoint hook holds the request's work at its first checkpoint until
//! the test has seen the request end (the 408, or the aborted task), then lets it go; the
//! hook counts the checkpoints the work passes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::session::Checkpoint;
use cophr_node::store::{BatchInfo, Store};
use cophr_protocol::audit::Action;
use cophr_protocol::testkit::bp;
use cophr_protocol::{Category, Keypair, Payload, Profile, RecordId};
use tower::ServiceExt;

const TOKEN: &str = "canceltesttoken";
const T0: u64 = 1_700_000_000_000;
/// Items in the record: enough that an uncancelled `$everything` passes many checkpoints.
const ITEMS: usize = 60;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    patient: Keypair,
}

fn profile() -> Profile {
    Profile {
        name: "George".into(),
        role: "patient".into(),
        organisation: None,
        attestations: Vec::new(),
    }
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Keypair::from_secret(&[3; 32])).unwrap();
        let patient = Keypair::from_secret(&[4; 32]);
        store.create_record(&patient, profile(), T0, None).unwrap();
        let payloads = (0..ITEMS)
            .map(|i| Payload::Create {
                category: Category::VitalSigns,
                body: bp(120 + i as i64, 80),
            })
            .collect();
        store
            .write_all(
                &patient.actor(),
                &patient,
                payloads,
                BatchInfo {
                    action: Action::Add,
                    detail: None,
                },
                T0 + 1000,
                None,
            )
            .unwrap();
        Env {
            _dir: dir,
            store,
            patient,
        }
    }

    fn rid(&self) -> RecordId {
        self.patient.actor()
    }

    fn state(&self) -> AppState {
        AppState::new(
            self.store.clone(),
            self.patient.clone(),
            profile(),
            None,
            TOKEN.into(),
        )
        .with_clock(|| T0 + 5000)
    }

    /// The audit events held (a read adds a view, or an audit-read where the audit
    /// trail was shown).
    fn views(&self) -> usize {
        self.store.audit_events(&self.rid()).unwrap().len()
    }
}

/// A hook that holds the work at its first checkpoint until released (and says when it is
/// held there), and counts every checkpoint.
struct Gate {
    calls: Arc<AtomicUsize>,
    held: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: std::sync::mpsc::Sender<()>,
    hook: Checkpoint,
}

fn gate() -> Gate {
    let calls = Arc::new(AtomicUsize::new(0));
    let (held_tx, held) = tokio::sync::mpsc::unbounded_channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let c = calls.clone();
    let hook: Checkpoint = Arc::new(move || {
        if c.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = held_tx.send(());
            let _ = release_rx.lock().unwrap().recv();
        }
    });
    Gate {
        calls,
        held,
        release,
        hook,
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

async fn status(app: &Router, uri: &str) -> StatusCode {
    app.clone().oneshot(get(uri)).await.unwrap().status()
}

#[tokio::test]
async fn an_everything_that_completes_is_audited_and_passes_many_checkpoints() {
    let env = Env::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let st = env.state().with_checkpoint(Arc::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
    }));
    let app = router(st);
    let before = env.views();
    let uri = format!("/fhir/r4/Patient/{}/$everything", env.rid());
    assert_eq!(status(&app, &uri).await, StatusCode::OK);
    assert_eq!(env.views(), before + 1, "a delivered read is audited once");
    assert!(
        calls.load(Ordering::SeqCst) > ITEMS,
        "the work checks for cancellation as it goes ({} checkpoints)",
        calls.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn an_everything_that_timed_out_audits_nothing_and_its_work_stops() {
    let env = Env::new();
    let mut g = gate();
    let st = env
        .state()
        .with_request_timeout(std::time::Duration::from_millis(50))
        .with_checkpoint(g.hook.clone());
    let app = router(st.clone());
    let before = env.views();
    let uri = format!("/fhir/r4/Patient/{}/$everything", env.rid());
    // The work is held at its first checkpoint, so the request times out: a FHIR client
    // gets an OperationOutcome.
    let resp = app.clone().oneshot(get(&uri)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let outcome: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "timeout", "{outcome}");
    g.held.recv().await.expect("the work reached a checkpoint");
    g.release.send(()).unwrap();
    st.quiesce().await;
    assert_eq!(env.views(), before, "a read that timed out was audited");
    assert_eq!(
        g.calls.load(Ordering::SeqCst),
        1,
        "the work went on after its request timed out"
    );
}

#[tokio::test]
async fn a_request_whose_client_went_away_audits_nothing_and_its_work_stops() {
    let env = Env::new();
    let mut g = gate();
    let st = env.state().with_checkpoint(g.hook.clone());
    let app = router(st.clone());
    let before = env.views();
    for uri in [
        format!("/fhir/r4/Patient/{}/$everything", env.rid()),
        format!("/fhir/r4/Observation?patient={}", env.rid()),
        format!("/api/v1/records/{}/entries", env.rid()),
        format!("/api/v1/records/{}/timeline", env.rid()),
    ] {
        let request = tokio::spawn(app.clone().oneshot(get(&uri)));
        g.held.recv().await.expect("the work reached a checkpoint");
        // The client goes away: the request's future is dropped.
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        g.release.send(()).unwrap();
        st.quiesce().await;
        assert_eq!(
            env.views(),
            before,
            "{uri}: a read never delivered was audited"
        );
        assert_eq!(
            g.calls.swap(0, Ordering::SeqCst),
            1,
            "{uri}: the work went on after its client went away"
        );
    }
}

#[tokio::test]
async fn a_rest_read_that_timed_out_audits_nothing() {
    let env = Env::new();
    let mut g = gate();
    let st = env
        .state()
        .with_request_timeout(std::time::Duration::from_millis(50))
        .with_checkpoint(g.hook.clone());
    let app = router(st.clone());
    let before = env.views();
    let uri = format!("/api/v1/records/{}/entries", env.rid());
    assert_eq!(status(&app, &uri).await, StatusCode::REQUEST_TIMEOUT);
    g.held.recv().await.expect("the work reached a checkpoint");
    g.release.send(()).unwrap();
    st.quiesce().await;
    assert_eq!(env.views(), before, "a read that timed out was audited");
}
