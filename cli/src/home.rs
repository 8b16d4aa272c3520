//! The cophr home directory: the person's identity and keys, and the node's store.
//!
//! ```text
//! HOME/identity.key    the person's 32-byte ed25519 secret, hex (mode 0600)
//! HOME/identity.json   actor id, name, role, organisation, device
//! HOME/node.key        the node's own secret, which signs audit events (mode 0600)
//! HOME/api-token       the HTTP API's bearer token (mode 0600)
//! HOME/store/          the store (append-only log and indexes)
//! ```
//!
//! Key files are created with mode 0600 before any secret is written, and a key file that
//! group or others may read is refused.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cophr_protocol::{ActorId, Keypair, Profile};
use data_encoding::HEXLOWER_PERMISSIVE;
use serde::{Deserialize, Serialize};

use cophr_protocol::trust::SignedAttestation;

use crate::error::{CliError, Result};

/// Largest identity.json read.
const MAX_IDENTITY_JSON: u64 = 64 * 1024;

/// The paths inside a home directory.
#[derive(Debug, Clone)]
pub struct Home {
    /// The directory.
    pub dir: PathBuf,
}

/// What `identity.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The actor id (the public key of `identity.key`).
    pub actor: ActorId,
    /// Display name.
    pub name: String,
    /// Role (patient, carer, family, consultant, nurse, pharmacist, home-care, gp, ...).
    pub role: String,
    /// Organisation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// The default device name recorded on entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Attestations of this identity by identity assurance services (`cophr identity
    /// add`), as base64url text of their signed CBOR; published with the profile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<String>,
}

impl IdentityInfo {
    /// The profile published in records.
    pub fn profile(&self) -> Profile {
        Profile {
            name: self.name.clone(),
            role: self.role.clone(),
            organisation: self.organisation.clone(),
            attestations: self.signed_attestations(),
        }
    }

    /// The attestations, decoded and verified (any that no longer decodes is skipped; at
    /// most as many as a profile carries).
    pub fn signed_attestations(&self) -> Vec<SignedAttestation> {
        self.attestations
            .iter()
            .filter_map(|t| SignedAttestation::from_text(t).ok())
            .filter(|a| a.attestation.subject == self.actor)
            .take(cophr_protocol::entry::MAX_PROFILE_ATTESTATIONS)
            .collect()
    }
}

/// A loaded identity: key and description.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The secret key.
    pub key: Keypair,
    /// identity.json.
    pub info: IdentityInfo,
}

impl Identity {
    /// The actor id.
    pub fn actor(&self) -> ActorId {
        self.info.actor
    }
}

impl Home {
    /// The home at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Home { dir }
    }

    /// `identity.key`.
    pub fn identity_key(&self) -> PathBuf {
        self.dir.join("identity.key")
    }

    /// `identity.json`.
    pub fn identity_json(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    /// `node.key`.
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    /// `api-token`: the HTTP API's bearer token.
    pub fn api_token(&self) -> PathBuf {
        self.dir.join(cophr_node::http::token::TOKEN_FILE)
    }

    /// The API token, created (mode 0600) if the home has none yet.
    pub fn api_token_or_create(&self) -> Result<String> {
        let path = self.api_token();
        cophr_node::http::token::read_or_create(&path)
            .map_err(|e| CliError::io("cannot read the API token", &path, &e))
    }

    /// `store/`.
    pub fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Whether an identity exists here.
    pub fn has_identity(&self) -> bool {
        self.identity_key().exists() || self.identity_json().exists()
    }

    /// Creates the directory (mode 0700) if it does not exist.
    pub fn create_dir(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| CliError::io("cannot create home directory", &self.dir, &e))
    }

    /// Writes a new identity (key file first, mode 0600), replacing any existing one.
    pub fn write_identity(&self, key: &Keypair, info: &IdentityInfo) -> Result<()> {
        self.create_dir()?;
        write_key(&self.identity_key(), key)?;
        let json = serde_json::to_string_pretty(info)
            .map_err(|e| CliError::other(format!("cannot encode identity: {e}")))?;
        write_atomic(&self.identity_json(), format!("{json}\n").as_bytes(), 0o644)
    }

    /// Loads the identity, refusing a key file that group or others may read.
    pub fn identity(&self) -> Result<Identity> {
        let key_path = self.identity_key();
        let json_path = self.identity_json();
        if !key_path.exists() && !json_path.exists() {
            return Err(CliError::other(format!(
                "no identity in {}: run `cophr init --name NAME --role ROLE` first \
                 (or point --home / COPHR_HOME at an initialised home)",
                self.dir.display()
            )));
        }
        let key = read_key(&key_path)?;
        let text = read_limited(&json_path, MAX_IDENTITY_JSON)?;
        let info: IdentityInfo = serde_json::from_slice(&text).map_err(|e| {
            CliError::other(format!(
                "{} is not a valid identity file: {e}",
                json_path.display()
            ))
        })?;
        if key.actor() != info.actor {
            return Err(CliError::other(format!(
                "{} names actor {}, but {} holds the key of {}",
                json_path.display(),
                info.actor,
                key_path.display(),
                key.actor()
            )));
        }
        Ok(Identity { key, info })
    }

    /// Loads the node key, creating it (mode 0600) on first use.
    pub fn node_key_or_create(&self) -> Result<Keypair> {
        let path = self.node_key();
        if path.exists() {
            return read_key(&path);
        }
        if !self.dir.is_dir() {
            return Err(CliError::other(format!(
                "{} is not a cophr home: run `cophr init --name NAME --role ROLE` first",
                self.dir.display()
            )));
        }
        let key = Keypair::generate(&mut rand_core::OsRng);
        write_key(&path, &key)?;
        Ok(key)
    }
}

/// Writes a key file: created with mode 0600 before the secret is written, then fsync'd.
pub fn write_key(path: &Path, key: &Keypair) -> Result<()> {
    if path.exists() {
        fs::remove_file(path).map_err(|e| CliError::io("cannot replace", path, &e))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::io("cannot create key file", path, &e))?;
    // The umask may only remove bits; make sure the file is exactly 0600.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::io("cannot set permissions of", path, &e))?;
    let hex = HEXLOWER_PERMISSIVE.encode(&key.secret_bytes());
    f.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io("cannot write key file", path, &e))?;
    sync_dir(path);
    Ok(())
}

/// Reads a key file, refusing it if group or others have any permission on it.
pub fn read_key(path: &Path) -> Result<Keypair> {
    let meta = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::other(format!(
            "key file {} is missing: run `cophr init --name NAME --role ROLE` first",
            path.display()
        )),
        _ => CliError::io("cannot read key file", path, &e),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::other(format!(
            "refusing to use key file {}: its permissions are {mode:04o}, so other users may \
             read it; run `chmod 600 {}` (and consider the key compromised if others could \
             read it)",
            path.display(),
            path.display()
        )));
    }
    let text = read_limited(path, 1024)?;
    let text = String::from_utf8_lossy(&text);
    let bytes = HEXLOWER_PERMISSIVE
        .decode(text.trim().as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            CliError::other(format!(
                "key file {} is damaged: expected 64 hexadecimal characters",
                path.display()
            ))
        })?;
    Ok(Keypair::from_secret(&bytes))
}

/// Reads at most `max` bytes of a file, refusing larger files.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| CliError::io("cannot read", path, &e))?;
    if meta.len() > max {
        return Err(CliError::invalid(format!(
            "{} is {} bytes, more than the {max}-byte limit",
            path.display(),
            meta.len()
        )));
    }
    fs::read(path).map_err(|e| CliError::io("cannot read", path, &e))
}

/// Writes a file atomically (temporary file, fsync, rename, fsync the directory).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| CliError::io("cannot create", &tmp, &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::io("cannot write", &tmp, &e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CliError::io("cannot write", path, &e)
    })?;
    sync_dir(path);
    Ok(())
}

/// Makes a file's creation or rename durable (best effort).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
