//! `cophr key backup|restore`: an encrypted backup of your key, in a file or kept by your
//! record's home host, and restoring it into a fresh home.
//!
//! The passphrase comes from `--passphrase-file`, else `COPHR_PASSPHRASE`, else a prompt
//! without echo when standard input is a terminal. It is never logged, never passed on
//! the command line and never sent to the running node: the backup is sealed and opened
//! in this process (`cophr_protocol::backup`), and only the sealed bytes go to the node.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use cophr_node::net::{self, client, NetConfig};
use cophr_protocol::backup::{
    BackupError, Holder, KdfParams, KeyBackup, MAX_BACKUP_BYTES, MAX_PASSPHRASE_BYTES,
};
use cophr_protocol::{ActorId, Keypair};
use data_encoding::BASE64;
use libp2p::Multiaddr;
use rand_core::{OsRng, RngCore};
use serde_json::json;
use zeroize::Zeroizing;

use crate::context::{Ctx, Out};
use crate::error::{parse_id, CliError, Code, Result};
use crate::home::{read_limited, write_atomic, IdentityInfo};
use crate::network;
use crate::output;

/// The environment variable a passphrase may come from.
pub const PASSPHRASE_ENV: &str = "COPHR_PASSPHRASE";

/// Key commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write an encrypted backup of your key (argon2id and XChaCha20-Poly1305, under a
    /// passphrase of at least 12 characters), to a file or to your record's home host
    Backup(BackupArgs),
    /// Restore your key (and identity) from a backup file or from a host, into a home
    /// that holds no other key
    Restore(RestoreArgs),
    /// Give a sealed backup to the home host (what `key backup --to-host` runs inside the
    /// node)
    #[command(hide = true)]
    Upload(UploadArgs),
}

/// `key backup`.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Passphrase: --passphrase-file PATH, else the COPHR_PASSPHRASE \
    environment variable, else asked for (twice, without echo) in a terminal.

Anyone holding the file, and with --to-host the host and anyone who asks it, can try \
passphrases offline: choose a long one (several unrelated words).

Examples:
  cophr key backup -o /media/usb/george.cophr-key
  cophr key backup --to-host          (needs the node; your record's home host keeps it)"
)]
pub struct BackupArgs {
    /// Where to write the backup (mode 0600) [default: cophr-key-ACTOR.backup in the
    /// current directory, unless --to-host is given]
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Also give the backup to the record's home host (or --host) to keep; needs the
    /// running node
    #[arg(long)]
    to_host: bool,

    /// The host to give it to, instead of the record's home host
    #[arg(long, value_name = "ADDR", requires = "to_host")]
    host: Option<String>,

    /// Read the passphrase from this file (its first line)
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,

    #[command(flatten)]
    out: Out,
}

/// `key restore`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  cophr --home ~/.cophr-new key restore /media/usb/george.cophr-key
  cophr --home ~/.cophr-new key restore --from-host /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW… --actor a-…

Then `cophr node run` and `cophr follow ACTOR --host ADDR` bring your record back.")]
pub struct RestoreArgs {
    /// The backup file
    #[arg(
        value_name = "FILE",
        required_unless_present = "from_host",
        conflicts_with = "from_host"
    )]
    file: Option<PathBuf>,

    /// Fetch the backup from this host (a multiaddr ending in /p2p/PEER_ID) instead
    #[arg(long, value_name = "ADDR", requires = "actor")]
    from_host: Option<String>,

    /// Whose backup to fetch (your actor id, `a-…`)
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,

    /// Read the passphrase from this file (its first line)
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,

    #[command(flatten)]
    out: Out,
}

/// `key upload` (hidden).
#[derive(ClapArgs, Debug)]
pub struct UploadArgs {
    /// The sealed backup, base64
    #[arg(long)]
    backup: String,

    /// The host, instead of the record's home host
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,

    #[command(flatten)]
    out: Out,
}

impl Command {
    /// Whether the command runs inside the running node: only the upload, which needs
    /// the network. Backup and restore read the passphrase here, and never send it on.
    pub fn forwards(&self) -> bool {
        matches!(self, Command::Upload(_))
    }
}

/// Runs a key subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Backup(a) => backup(ctx, a),
        Command::Restore(a) => restore(ctx, a),
        Command::Upload(a) => upload(ctx, a),
    }
}

/// A backup error, with its exit code.
fn backup_error(e: BackupError) -> CliError {
    match e {
        BackupError::WrongPassphrase => CliError::access(format!("{e}: nothing was restored")),
        BackupError::Passphrase => CliError::invalid(e.to_string()),
        _ => CliError::verify(format!("{e}: nothing was restored")),
    }
}

/// The passphrase: from the file, the environment, or a prompt (twice when `confirm`).
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    let trim = |mut s: String| {
        let first = s.lines().next().map_or(0, str::len);
        s.truncate(first);
        Zeroizing::new(s)
    };
    if let Some(path) = file {
        let bytes = Zeroizing::new(read_limited(path, MAX_PASSPHRASE_BYTES as u64 + 2)?);
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| CliError::invalid(format!("{} is not UTF-8 text", path.display())))?;
        return Ok(trim(text));
    }
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::new(
            Code::Usage,
            format!(
                "no passphrase: give --passphrase-file PATH or set {PASSPHRASE_ENV} (or run \
                 in a terminal to be asked)"
            ),
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| CliError::other(format!("cannot read the passphrase: {e}")))
    };
    let first = ask("Passphrase: ")?;
    if confirm {
        let again = ask("Passphrase again: ")?;
        if *again != *first {
            return Err(CliError::invalid(
                "the passphrases differ: nothing was written",
            ));
        }
    }
    Ok(first)
}

fn backup(ctx: &Ctx, args: BackupArgs) -> Result<()> {
    let me = ctx.identity()?;
    let pass = passphrase(args.passphrase_file.as_deref(), true)?;
    let holder = Holder {
        name: me.info.name.clone(),
        role: me.info.role.clone(),
        organisation: me.info.organisation.clone(),
    };
    let sealed = KeyBackup::seal(
        &me.key,
        Some(&holder),
        &pass,
        KdfParams::DEFAULT,
        &mut OsRng,
    )
    .map_err(backup_error)?;
    drop(pass);
    let file = match (&args.output, args.to_host) {
        (Some(f), _) => Some(f.clone()),
        (None, false) => Some(PathBuf::from(format!("cophr-key-{}.backup", me.actor()))),
        (None, true) => None,
    };
    if let Some(f) = &file {
        write_atomic(f, sealed.bytes(), 0o600)?;
    }
    let host = if args.to_host {
        Some(send_to_node(ctx, &sealed, args.host.as_deref())?)
    } else {
        None
    };
    if ctx.json(args.out) {
        return output::json(&json!({
            "actor": me.actor(),
            "file": file,
            "host": host,
            "kdf": {"algorithm": "argon2id", "m_kib": sealed.params().m_kib,
                    "t": sealed.params().t, "p": sealed.params().p},
            "aead": "xchacha20-poly1305",
        }));
    }
    if let Some(f) = &file {
        output::line(format!(
            "Wrote an encrypted backup of {}'s key to {} (mode 0600)",
            me.actor(),
            f.display()
        ))?;
    }
    if let Some(h) = &host {
        output::line(format!(
            "The host {h} keeps an encrypted backup of your key"
        ))?;
    }
    output::line(
        "It opens only with your passphrase: `cophr key restore` in a new home. Keep the \
         passphrase somewhere other than this machine.",
    )
}

/// Hands the sealed backup to the running node, which gives it to the host.
fn send_to_node(ctx: &Ctx, sealed: &KeyBackup, host: Option<&str>) -> Result<String> {
    let mut argv = vec![
        ctx.argv.first().cloned().unwrap_or_else(|| "cophr".into()),
        "key".into(),
        "upload".into(),
        "--json".into(),
        "--backup".into(),
        BASE64.encode(sealed.bytes()),
    ];
    if let Some(h) = host {
        argv.extend(["--host".into(), h.to_owned()]);
    }
    if let Some(r) = &ctx.global.record {
        argv.extend(["--record".into(), r.clone()]);
    }
    let mut inner = Ctx::new(ctx.global.clone(), false)?;
    inner.argv = argv;
    let reply = crate::control::forward_captured(&ctx.home.dir, &inner)?.ok_or_else(|| {
        CliError::other(
            "start the node first: cophr node run (the backup goes to the host through it)",
        )
    })?;
    let v: serde_json::Value = serde_json::from_slice(&reply)
        .map_err(|e| CliError::other(format!("bad reply from the node: {e}")))?;
    Ok(v["host"].as_str().unwrap_or_default().to_owned())
}

fn upload(ctx: &Ctx, args: UploadArgs) -> Result<()> {
    let handle = network::handle(ctx)?;
    let me = handle.identity().actor();
    let bytes = BASE64
        .decode(args.backup.as_bytes())
        .map_err(|e| CliError::invalid(format!("--backup is not base64: {e}")))?;
    let sealed = KeyBackup::decode(&bytes).map_err(|e| CliError::invalid(e.to_string()))?;
    if sealed.actor() != me {
        return Err(CliError::access(format!(
            "the backup is of {}'s key, but this node acts as {me}",
            sealed.actor()
        )));
    }
    let record = match &ctx.global.record {
        Some(r) => parse_id("record", r)?,
        None => me,
    };
    let addr: Multiaddr = match &args.host {
        Some(h) => network::parse_addr("the host address", h)?.0,
        None => handle
            .peer_book(&record)
            .map_err(network::error)?
            .home
            .ok_or_else(|| {
                CliError::not_found(format!(
                "record {record} has no home host here: `cophr host ADDR` first, or give --host"
            ))
            })?,
    };
    network::block_on(ctx, client::put_backup(handle, &addr, record, bytes))?
        .map_err(network::error)?;
    if ctx.json(args.out) {
        return output::json(&json!({ "actor": me, "host": addr.to_string() }));
    }
    output::line(format!(
        "The host {addr} keeps an encrypted backup of your key"
    ))
}

fn restore(ctx: &Ctx, args: RestoreArgs) -> Result<()> {
    let home = &ctx.home;
    let bytes = match (&args.file, &args.from_host) {
        (Some(f), _) => read_limited(f, MAX_BACKUP_BYTES as u64)?,
        (None, Some(addr)) => {
            let actor: ActorId = parse_id("actor", args.actor.as_deref().unwrap_or_default())?;
            let (addr, _) = network::parse_addr("the host address", addr)?;
            fetch(&addr, actor)?.ok_or_else(|| {
                CliError::not_found(format!("the host {addr} keeps no key backup of {actor}"))
            })?
        }
        (None, None) => return Err(CliError::new(Code::Usage, "give FILE or --from-host")),
    };
    let sealed = KeyBackup::decode(&bytes).map_err(backup_error)?;
    if let Some(a) = &args.actor {
        let want: ActorId = parse_id("actor", a)?;
        if want != sealed.actor() {
            return Err(CliError::verify(format!(
                "the backup is of {}, not {want}: nothing was restored",
                sealed.actor()
            )));
        }
    }
    let existing = if home.has_identity() {
        Some(home.identity()?)
    } else {
        None
    };
    if let Some(e) = &existing {
        if e.actor() != sealed.actor() {
            return Err(CliError::new(
                Code::Conflict,
                format!(
                    "{} already holds another identity ({}, {}); restore into a new home \
                     (--home DIR): nothing was restored",
                    home.dir.display(),
                    e.info.name,
                    e.actor()
                ),
            ));
        }
    }
    let pass = passphrase(args.passphrase_file.as_deref(), false)?;
    let restored = sealed.open(&pass).map_err(backup_error)?;
    drop(pass);
    let key: Keypair = restored.key;
    let info = match (existing, restored.holder) {
        (Some(e), _) => e.info,
        (None, Some(h)) => IdentityInfo {
            actor: key.actor(),
            name: h.name,
            role: h.role,
            organisation: h.organisation,
            device: ctx.global.device.clone().filter(|d| !d.trim().is_empty()),
            // Attestations are not in the backup: they are public, in the profile the
            // person published in records (`cophr identity add` keeps new ones).
            attestations: Vec::new(),
        },
        (None, None) => IdentityInfo {
            actor: key.actor(),
            name: key.actor().to_string(),
            role: "restored".into(),
            organisation: None,
            device: ctx.global.device.clone().filter(|d| !d.trim().is_empty()),
            // Attestations are not in the backup: they are public, in the profile the
            // person published in records (`cophr identity add` keeps new ones).
            attestations: Vec::new(),
        },
    };
    let already = home.has_identity();
    if !already {
        home.write_identity(&key, &info)?;
        home.node_key_or_create()?;
        let token_path = home.api_token();
        cophr_node::http::token::create(&token_path)
            .map_err(|e| CliError::io("cannot create the API token", &token_path, &e))?;
    }
    tracing::info!(actor = %info.actor, "identity restored from a key backup");
    if ctx.json(args.out) {
        return output::json(&json!({
            "actor": info.actor,
            "name": info.name,
            "role": info.role,
            "home": home.dir,
            "already_held": already,
        }));
    }
    if already {
        return output::line(format!(
            "{} already holds this key ({}): nothing to restore",
            home.dir.display(),
            info.actor
        ));
    }
    output::line(format!(
        "Restored identity {} ({}, {}) into {}",
        info.actor,
        info.name,
        info.role,
        home.dir.display()
    ))?;
    output::line(format!(
        "Next: `cophr node run`, then `cophr follow {} --host ADDR` to get your record back.",
        info.actor
    ))
}

/// Fetches a backup from a host with a short-lived node of its own: a throwaway network
/// identity and store in a temporary directory (this home may hold nothing yet), removed
/// afterwards.
fn fetch(addr: &Multiaddr, actor: ActorId) -> Result<Option<Vec<u8>>> {
    let mut tag = [0u8; 8];
    OsRng.fill_bytes(&mut tag);
    let dir = std::env::temp_dir().join(format!(
        "cophr-restore-{}",
        data_encoding::HEXLOWER.encode(&tag)
    ));
    let _cleanup = RemoveDir(dir.clone());
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CliError::io("cannot create", &dir, &e))?;
    }
    let node_key = Keypair::generate(&mut OsRng);
    let (store, _) = crate::store::Store::open(&dir, node_key.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(async {
        let (handle, task) = net::start(
            store,
            Keypair::generate(&mut OsRng),
            node_key.secret_bytes(),
            NetConfig::default(),
        )
        .await?;
        let got = client::get_backup(&handle, addr, actor).await;
        let _ = handle.shutdown().await;
        let _ = task.await;
        got
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result.map_err(network::error)
}

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
