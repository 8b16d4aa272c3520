//! The home's trust list: the identity assurance services this home trusts
//! (`HOME/trust.toml`, written by `cophr trust`) and the revocations learnt from them
//! (`HOME/trust-revocations.json`, written by `cophr trust refresh`).
//!
//! ```toml
//! [[issuer]]
//! id = "a-…"                       # the AIS's actor id
//! name = "Leeds Care Record AIS"   # shown as "verified P9 by Leeds Care Record AIS"
//! max_level = "P9"                 # the highest level accepted from it
//! url = "https://ais.example"      # where it publishes revocations (optional)
//! ```

use serde::{Deserialize, Serialize};

use cophr_protocol::trust::assess::{TrustList, TrustedIssuer};
use cophr_protocol::trust::{AssuranceLevel, SignedRevocation};
use cophr_protocol::ActorId;

use crate::error::{CliError, Result};
use crate::home::{read_limited, write_atomic, Home};

/// Largest trust.toml read.
const MAX_TRUST_FILE: u64 = 256 * 1024;
/// Largest revocations file read.
const MAX_REVOCATIONS_FILE: u64 = 64 * 1024 * 1024;
/// Longest issuer URL.
pub const MAX_URL: usize = 2048;

/// One trusted issuer, as the file names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerEntry {
    /// The AIS's actor id.
    pub id: ActorId,
    /// Its name, as shown.
    pub name: String,
    /// The highest level accepted from it.
    pub max_level: AssuranceLevel,
    /// Where it publishes revocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `trust.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The trusted issuers.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerEntry>,
}

/// `trust-revocations.json`: revocations (base64url of their signed CBOR).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RevocationsFile {
    revocations: Vec<String>,
}

impl Home {
    /// `HOME/trust.toml`.
    pub fn trust_file(&self) -> std::path::PathBuf {
        self.dir.join("trust.toml")
    }

    /// `HOME/trust-revocations.json`.
    pub fn revocations_file(&self) -> std::path::PathBuf {
        self.dir.join("trust-revocations.json")
    }

    /// The trusted issuers (none if the file does not exist).
    pub fn trust_entries(&self) -> Result<TrustFile> {
        let path = self.trust_file();
        if !path.exists() {
            return Ok(TrustFile::default());
        }
        let bytes = read_limited(&path, MAX_TRUST_FILE)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CliError::invalid(format!("{} is not UTF-8", path.display())))?;
        let file: TrustFile = toml::from_str(&text).map_err(|e| {
            CliError::invalid(format!("{} is not a valid trust list: {e}", path.display()))
        })?;
        for i in &file.issuers {
            check_url(i.url.as_deref())?;
        }
        Ok(file)
    }

    /// Writes the trusted issuers.
    pub fn write_trust_entries(&self, file: &TrustFile) -> Result<()> {
        let text = toml::to_string_pretty(file)
            .map_err(|e| CliError::other(format!("cannot encode the trust list: {e}")))?;
        let text =
            format!("# The identity assurance services this home trusts (`cophr trust`).\n{text}");
        write_atomic(&self.trust_file(), text.as_bytes(), 0o644)
    }

    /// The revocations learnt so far (each verified again; any that no longer verifies
    /// is skipped).
    pub fn revocations(&self) -> Result<Vec<SignedRevocation>> {
        let path = self.revocations_file();
        if !path.exists() {
            return Ok(Vec::new());
        }
        let bytes = read_limited(&path, MAX_REVOCATIONS_FILE)?;
        let file: RevocationsFile = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::invalid(format!("{} is not a revocations file: {e}", path.display()))
        })?;
        Ok(file
            .revocations
            .iter()
            .filter_map(|t| SignedRevocation::from_text(t).ok())
            .collect())
    }

    /// Writes the revocations learnt.
    pub fn write_revocations(&self, revocations: &[SignedRevocation]) -> Result<()> {
        let file = RevocationsFile {
            revocations: revocations.iter().map(SignedRevocation::to_text).collect(),
        };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| CliError::other(format!("cannot encode revocations: {e}")))?;
        write_atomic(&self.revocations_file(), &json, 0o644)
    }

    /// The trust list this home checks attestations against: the issuers of `trust.toml`
    /// and the revocations of its issuers learnt so far.
    pub fn trust_list(&self) -> Result<TrustList> {
        let mut list = TrustList::new();
        for i in self.trust_entries()?.issuers {
            list.trust(TrustedIssuer {
                id: i.id,
                name: i.name,
                max_level: i.max_level,
            })
            .map_err(|e| CliError::invalid(format!("{}: {e}", self.trust_file().display())))?;
        }
        for r in self.revocations()? {
            // Revocations of issuers no longer trusted are simply not kept.
            let _ = list.add_revocation(&r);
        }
        Ok(list)
    }
}

/// Checks an issuer URL: http(s), bounded.
pub fn check_url(url: Option<&str>) -> Result<()> {
    match url {
        None => Ok(()),
        Some(u)
            if u.len() <= MAX_URL && (u.starts_with("http://") || u.starts_with("https://")) =>
        {
            Ok(())
        }
        Some(_) => Err(CliError::invalid(format!(
            "an issuer's url must be an http:// or https:// URL of at most {MAX_URL} characters"
        ))),
    }
}
