//! An encrypted backup of the identity's key from the web app (`protocol::backup`,
//! `docs/trust.md` "Key backup"): sealed here under the passphrase the person types
//! (argon2id, XChaCha20-Poly1305), returned for download, and, if asked, handed to the
//! record's home host, which keeps it without being able to open it. Restoring is `cophr key
//! restore` in a new home (a file, or `--from-host`).
//!
//! The passphrase reaches this node only inside the request, over the loopback (or the
//! TLS-terminated) connection to the node that already holds the key; it is never logged,
//! stored or returned, and is zeroized once the backup is sealed.

use cophr_protocol::backup::{BackupError, Holder, KdfParams, KeyBackup};
use zeroize::Zeroizing;

use super::*;
use crate::net::client;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupInput {
    passphrase: String,
    #[serde(default)]
    to_host: bool,
}

impl std::fmt::Debug for BackupInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupInput")
            .field("to_host", &self.to_host)
            .finish_non_exhaustive()
    }
}

/// Seals the identity's key under the passphrase; optionally hands it to the home host.
pub(super) async fn backup(
    State(st): State<AppState>,
    JsonBody(input): JsonBody<BackupInput>,
) -> Result<Response, ApiError> {
    // Checked before the (deliberately slow) key derivation.
    let n = input.passphrase.chars().count();
    if n < cophr_protocol::backup::MIN_PASSPHRASE_CHARS
        || input.passphrase.len() > cophr_protocol::backup::MAX_PASSPHRASE_BYTES
    {
        return Err(ApiError::invalid(format!(
            "the passphrase must be at least {} characters (and at most {} bytes)",
            cophr_protocol::backup::MIN_PASSPHRASE_CHARS,
            cophr_protocol::backup::MAX_PASSPHRASE_BYTES
        )));
    }
    let handle = if input.to_host {
        Some(node(&st, "keeping a backup at the home host needs")?)
    } else {
        None
    };
    let to_host = input.to_host;
    let passphrase = Zeroizing::new(input.passphrase);
    let (sealed, record) = st
        .blocking(move |st| {
            let p = st.profile();
            let holder = Holder {
                name: p.name.clone(),
                role: p.role.clone(),
                organisation: p.organisation.clone(),
            };
            let sealed = KeyBackup::seal(
                st.keypair(),
                Some(&holder),
                &passphrase,
                KdfParams::DEFAULT,
                &mut rand_core::OsRng,
            )
            .map_err(|e| match e {
                BackupError::Passphrase => ApiError::invalid(e.to_string()),
                other => ApiError::internal(other.to_string()),
            })?;
            drop(passphrase);
            // The record whose home host keeps it: the one this identity is the patient of.
            let me = st.actor();
            let mut record = None;
            if to_host {
                for r in st.store().records()? {
                    if st.store().with_record(&r, |rec| rec.is_patient(&me))? {
                        record = Some(r);
                        break;
                    }
                }
            }
            Ok((sealed, record))
        })
        .await?;
    let mut host = None;
    if let Some(handle) = handle {
        let record = record.ok_or_else(|| {
            ApiError::conflict(
                "this identity is the patient of no record held here, so it has no home host",
            )
        })?;
        let addr = handle
            .peer_book(&record)
            .map_err(net_error)?
            .home
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "record {record} has no home host yet (`cophr host ADDR` first)"
                ))
            })?;
        client::put_backup(&handle, &addr, record, sealed.bytes().to_vec())
            .await
            .map_err(net_error)?;
        host = Some(addr.to_string());
    }
    let p = sealed.params();
    Ok(created(json!({
        "actor": sealed.actor(),
        "backup": data_encoding::BASE64.encode(sealed.bytes()),
        "file_name": format!("cophr-key-{}.backup", sealed.actor()),
        "host": host,
        "kdf": {"algorithm": "argon2id", "m_kib": p.m_kib, "t": p.t, "p": p.p},
        "aead": "xchacha20-poly1305",
    })))
}
