//! The control endpoint: a Unix socket (`control.sock`, mode 0600) in the home of a running
//! node, through which every other `cophr` command runs inside the node.
//!
//! The node holds the store open (and locked), so a command cannot open it itself. Instead
//! the command sends its argument vector, with what it resolved from its own environment
//! (the device, the time, its working directory and, when an argument is `-`, its standard
//! input), as one length-prefixed JSON message. The node runs the very same command code
//! on a blocking thread against its open store, with its output captured
//! ([`crate::output::Capture`]), and answers with standard output, standard error and the
//! exit code, which the caller reproduces. A command that changed a record makes the node
//! push the change to the record's home host and subscribers.
//!
//! Messages are a 4-byte big-endian length and that many bytes of JSON, at most
//! [`MAX_MESSAGE`] bytes; bigger ones are refused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::{Ctx, NodeCtx};
use crate::error::{CliError, Code, Result};
use crate::home::Home;
use crate::output::{self, Capture};

/// The socket's file name in the home.
pub const SOCKET: &str = "control.sock";
/// The file a running node writes in its home: peer id, addresses, pid.
pub const NODE_JSON: &str = "node.json";
/// Largest message either way.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Largest standard input passed to the node (base64 makes it a third bigger).
pub const MAX_STDIN: usize = 46 * 1024 * 1024;

/// A command to run inside the node.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The command line, program name first.
    pub argv: Vec<String>,
    /// The caller's working directory (relative paths are taken from it).
    pub cwd: Option<PathBuf>,
    /// The caller's resolved `--now`.
    pub now: Option<String>,
    /// The caller's resolved device (`--device` or `COPHR_DEVICE`).
    pub device: Option<String>,
    /// The caller's `COPHR_DEVICE`.
    pub env_device: Option<String>,
    /// Whether `--json` was given before the subcommand.
    pub json: bool,
    /// The caller's standard input (base64), when an argument reads it (`-`).
    pub stdin: Option<String>,
}

/// What the command printed, and how it ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    /// The exit code.
    pub code: u8,
    /// Standard output (base64).
    pub stdout: String,
    /// Standard error (base64).
    pub stderr: String,
}

impl Reply {
    /// A reply that only reports an error.
    pub fn error(code: Code, message: &str) -> Reply {
        Reply {
            code: code as u8,
            stdout: String::new(),
            stderr: BASE64.encode(format!("error: {message}\n").as_bytes()),
        }
    }
}

/// Information a running node publishes in `node.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's libp2p peer id.
    pub peer_id: String,
    /// The addresses it listens on, each ending in `/p2p/<peer id>`.
    pub listen: Vec<String>,
    /// Its process id.
    pub pid: u32,
    /// The actor it acts as.
    pub actor: String,
    /// The control socket.
    pub control: PathBuf,
    /// The HTTP API's base URL (`http://127.0.0.1:PORT`), if it is served.
    #[serde(default)]
    pub http: Option<String>,
}

fn too_big(n: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a control message of {n} bytes is more than the {MAX_MESSAGE}-byte limit"),
    )
}

/// Encodes a message (length prefix and JSON).
pub fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_MESSAGE {
        return Err(too_big(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a message body.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad control message: {e}"),
        )
    })
}

/// Checks a message's length prefix.
pub fn length(prefix: [u8; 4]) -> std::io::Result<usize> {
    let n = u32::from_be_bytes(prefix) as usize;
    if n > MAX_MESSAGE {
        return Err(too_big(n));
    }
    Ok(n)
}

/// Reads one message (blocking).
pub fn read_message<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<T> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix)?;
    let n = length(prefix)?;
    let mut body = Vec::new();
    r.take(n as u64).read_to_end(&mut body)?;
    if body.len() != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    decode(&body)
}

/// The control socket of a home.
pub fn socket(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// Connects to the node running in `home`, if one is: `None` when there is no socket, or
/// a stale one that no node listens on.
pub fn connect(home: &Path) -> Result<Option<std::os::unix::net::UnixStream>> {
    let path = socket(home);
    if !path.exists() {
        return Ok(None);
    }
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::InvalidInput
            ) =>
        {
            tracing::debug!(path = %path.display(), "stale control socket; running locally");
            Ok(None)
        }
        Err(e) => Err(CliError::io(
            "cannot reach the node's control socket",
            &path,
            &e,
        )),
    }
}

/// Runs the command inside the node running in `home`, if one is, and reproduces its
/// output here (`stdin`: the command reads standard input, which is sent along). Returns
/// its exit code, or `None` when no node runs (run locally then).
pub fn forward(home: &Path, ctx: &Ctx, stdin: bool) -> Result<Option<u8>> {
    let Some((code, stdout, stderr)) = exchange(home, ctx, stdin)? else {
        return Ok(None);
    };
    output::write_out(&stdout)?;
    output::write_err(&String::from_utf8_lossy(&stderr));
    Ok(Some(code))
}

/// Runs `ctx.argv` inside the node running in `home`, if one runs, and returns what it
/// printed on standard output; a failure comes back as the error the node printed, with
/// its exit code.
pub fn forward_captured(home: &Path, ctx: &Ctx) -> Result<Option<Vec<u8>>> {
    let Some((code, stdout, stderr)) = exchange(home, ctx, false)? else {
        return Ok(None);
    };
    if code != 0 {
        let text = String::from_utf8_lossy(&stderr);
        let text = text.trim().trim_start_matches("error: ");
        let code = [
            Code::Usage,
            Code::Access,
            Code::NotFound,
            Code::Invalid,
            Code::Verify,
            Code::Conflict,
        ]
        .into_iter()
        .find(|c| *c as u8 == code)
        .unwrap_or(Code::Other);
        return Err(CliError::new(code, text));
    }
    Ok(Some(stdout))
}

/// A forwarded command's exit code, standard output and standard error.
type Outcome = (u8, Vec<u8>, Vec<u8>);

/// Sends a command to the node and returns what it printed and how it ended.
fn exchange(home: &Path, ctx: &Ctx, stdin: bool) -> Result<Option<Outcome>> {
    let Some(mut stream) = connect(home)? else {
        return Ok(None);
    };
    let stdin = if stdin {
        let bytes = output::read_stdin(MAX_STDIN as u64 + 1)
            .map_err(|e| CliError::other(format!("cannot read standard input: {e}")))?;
        if bytes.len() > MAX_STDIN {
            return Err(CliError::invalid(format!(
                "standard input is more than {} MiB, too much to pass to the running node; \
                 give a file instead of `-`",
                MAX_STDIN >> 20
            )));
        }
        Some(BASE64.encode(&bytes))
    } else {
        None
    };
    let request = Request {
        argv: ctx.argv.clone(),
        cwd: std::env::current_dir().ok(),
        now: ctx.global.now.clone(),
        device: ctx.global.device.clone(),
        env_device: ctx.env_device.clone(),
        json: ctx.json,
        stdin,
    };
    let lost = |e: std::io::Error| {
        CliError::other(format!(
            "lost the connection to the node running in {}: {e}",
            home.display()
        ))
    };
    let bytes = encode(&request).map_err(lost)?;
    stream.write_all(&bytes).map_err(lost)?;
    stream.flush().map_err(lost)?;
    let reply: Reply = read_message(&mut stream).map_err(lost)?;
    let stdout = BASE64
        .decode(reply.stdout.as_bytes())
        .map_err(|e| CliError::other(format!("bad reply from the node: {e}")))?;
    let stderr = BASE64
        .decode(reply.stderr.as_bytes())
        .map_err(|e| CliError::other(format!("bad reply from the node: {e}")))?;
    Ok(Some((reply.code, stdout, stderr)))
}

/// Runs a forwarded command inside the node (on a blocking thread): the same code as a
/// local run, against the node's open store, with output captured. Then tells the network
/// about every record the command changed.
pub fn execute(request: Request, home: &Home, node: &NodeCtx) -> Reply {
    let stdin = match request
        .stdin
        .as_deref()
        .map(|s| BASE64.decode(s.as_bytes()))
    {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Reply::error(Code::Usage, &format!("bad standard input: {e}")),
    };
    let capture = Capture::start(stdin, request.cwd.clone());
    let code = run_inside(request, home, node);
    let (stdout, stderr) = capture.finish();
    Reply {
        code,
        stdout: BASE64.encode(&stdout),
        stderr: BASE64.encode(&stderr),
    }
}

/// Parses a forwarded command's argument vector (as the node does before running it).
pub fn parse(request: &Request) -> std::result::Result<crate::cmd::Cli, clap::Error> {
    use clap::Parser;
    crate::cmd::Cli::try_parse_from(&request.argv)
}

fn run_inside(request: Request, home: &Home, node: &NodeCtx) -> u8 {
    let cli = match parse(&request) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            if e.use_stderr() {
                output::write_err(&text);
            } else {
                let _ = output::print(&text);
            }
            return e.exit_code().clamp(0, 255) as u8;
        }
    };
    if !cli.command.forwards() {
        output::write_err("error: this command does not run through a node\n");
        return Code::Usage as u8;
    }
    let mut global = cli.global;
    global.home = Some(home.dir.clone());
    global.now = request.now;
    global.device = request.device;
    let mut ctx = Ctx {
        global,
        json: request.json || cli.json,
        home: home.clone(),
        argv: request.argv,
        env_device: request.env_device,
        node: Some(node.clone()),
        touched: Default::default(),
    };
    let result = crate::cmd::dispatch(&mut ctx, cli.command);
    let (handle, rt) = node;
    for record in ctx.changed_records(handle.store()) {
        if let Err(e) = rt.block_on(handle.changed(record)) {
            tracing::warn!(%record, error = %e, "could not announce a change");
        }
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            output::write_err(&format!("error: {e}\n"));
            e.code as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_oversized_ones_are_refused() {
        let reply = Reply::error(Code::Access, "no");
        let bytes = encode(&reply).unwrap();
        let back: Reply = read_message(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.code, 3);
        assert_eq!(
            BASE64.decode(back.stderr.as_bytes()).unwrap(),
            b"error: no\n"
        );
        // A length beyond the limit is refused before anything is read or allocated.
        let mut big = ((MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        let err = read_message::<Reply>(&mut big.as_slice()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        // A message cut short is an error, not a hang or a panic.
        let mut short = 100u32.to_be_bytes().to_vec();
        short.extend_from_slice(b"{\"code\":");
        assert!(read_message::<Reply>(&mut short.as_slice()).is_err());
        // Malformed JSON too.
        let mut bad = 2u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{]");
        assert!(read_message::<Reply>(&mut bad.as_slice()).is_err());
    }
}
