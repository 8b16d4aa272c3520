//! The HTTP server's connections over real sockets: silent connections are closed after
//! the header timeout, and a flood of them does not lock the patient out.
//!
//! The guards around reads (`GUARD`) only turn a hang into a failure; nothing here asserts
//! how long anything took.

use std::net::SocketAddr;
use std::time::Duration;

use cophr_node::http::{self, AppState, ConnLimits};
use cophr_node::store::Store;
use cophr_protocol::{Keypair, Profile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "connstesttoken";
/// Long enough never to fire on a working server; turns a hang into a failure.
const GUARD: Duration = Duration::from_secs(120);

struct Server {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: Option<ConnLimits>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), Keypair::from_secret(&[5; 32])).unwrap();
        let state = AppState::new(
            store,
            Keypair::from_secret(&[6; 32]),
            Profile {
                name: "George".into(),
                role: "patient".into(),
                organisation: None,
                attestations: Vec::new(),
            },
            None,
            TOKEN.into(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = match limits {
            Some(l) => tokio::spawn(http::serve_with(listener, state, l, shutdown)),
            None => tokio::spawn(http::serve(listener, state, shutdown)),
        };
        Server {
            _dir: dir,
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(GUARD, self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// Sends one request on a new connection and returns the response's status line.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("the request was answered")
        .unwrap();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn authed(method: &str, path: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    )
}

/// Waits for the server to close `s` (end of stream or reset).
async fn closed_by_server(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf))
            .await
            .expect("the server closed the silent connection")
        {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let server = Server::start(Some(ConnLimits {
        header_timeout: Duration::from_millis(200),
        ..ConnLimits::default()
    }))
    .await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // One that half-sends a request head and stops.
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /api/v1/whoami HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // One that makes a request, keeps the connection alive, then says nothing more.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(
        format!("GET /api/v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 12];
    idle.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    for s in silent.iter_mut().chain([&mut half, &mut idle]) {
        closed_by_server(s).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_silent_connections_does_not_lock_the_patient_out() {
    // The default limits, as `cophr node run` serves: more silent connections than every
    // place there is.
    let server = Server::start(None).await;
    let mut flood = Vec::new();
    for _ in 0..http::MAX_CONNECTIONS + http::LOOPBACK_RESERVED + 8 {
        flood.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The patient's app still gets through, for writes and reads.
    assert_eq!(
        request(server.addr, &authed("POST", "/api/v1/records")).await,
        "HTTP/1.1 201 Created"
    );
    assert_eq!(
        request(server.addr, &authed("GET", "/api/v1/records")).await,
        "HTTP/1.1 200 OK"
    );
    // The oldest silent connections gave up their places.
    closed_by_server(&mut flood[0]).await;
    drop(flood);
    server.stop().await;
}

/// A client that sends a whole upload before it reads the answer (one that does not wait
/// for `100 Continue`, like ureq) gets the refusal, not a broken pipe: the node reads and
/// discards a refused body of up to `DRAIN_BYTES` before it answers. The client's send
/// buffer is small, so the body cannot sit in socket buffers: without the drain the node
/// answers and closes with most of it unread, and the client's write fails (reset).
#[tokio::test]
async fn a_refused_upload_sent_whole_before_reading_gets_its_answer() {
    use cophr_node::http::api::DRAIN_BYTES;
    let server = Server::start(None).await;
    // A record this node does not hold: refused (404) before any of the file is stored.
    let absent = Keypair::from_secret(&[9; 32]).actor();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/records/{absent}/documents?title=Scan HTTP/1.1\r\nhost: localhost\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-type: application/pdf\r\n\
         content-length: {DRAIN_BYTES}\r\nconnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b'%', DRAIN_BYTES as usize));
    tokio::time::timeout(GUARD, s.write_all(&request))
        .await
        .expect("the body was taken")
        .expect("the whole body is sent: the node reads a refused upload's body");
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .expect("the upload was answered")
        .expect("the answer is read, not reset");
    let status = String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    server.stop().await;
}
