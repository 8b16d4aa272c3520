//! The export file: every entry of a record, the data definitions (category schemas with
//! archetype ids), the audit trail, and a manifest signed by the exporter. Anyone can
//! verify it offline with [`verify`]; a change to any byte is detected.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditError, SignedAudit};
use crate::entry::{
    from_cbor_canonical, to_cbor, verify_batch, EntryError, SignedEntry, Timestamp,
};
use crate::ids::{ActorId, EntryId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};
use crate::record::{Record, Rejection};

/// The format tag in every manifest.
pub const FORMAT: &str = "cophr-export/1";
/// Largest export file accepted.
pub const MAX_EXPORT_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// What the file claims, signed by the exporter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The record.
    pub record: RecordId,
    /// Who exported it.
    pub exporter: ActorId,
    /// When.
    pub time: Timestamp,
    /// Number of entries.
    pub entries: u64,
    /// BLAKE3 over the entry ids in file order.
    pub entries_hash: EntryId,
    /// BLAKE3 over the encoded data definitions.
    pub definitions_hash: EntryId,
    /// BLAKE3 over the audit event ids in file order.
    pub audit_hash: EntryId,
    /// The record's causal heads at export.
    pub heads: Vec<EntryId>,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    manifest: Manifest,
    sig: Sig,
    /// JSON text of the data definitions (category schemas).
    definitions: String,
    entries: Vec<serde_bytes::ByteBuf>,
    audit: Vec<serde_bytes::ByteBuf>,
}

/// Why an export file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Larger than allowed.
    #[error("export file is larger than {MAX_EXPORT_BYTES} bytes")]
    TooLarge,
    /// Not an export file, or altered so it no longer decodes canonically.
    #[error("not a valid export file: {0}")]
    Encoding(EntryError),
    /// Wrong format tag.
    #[error("unsupported export format `{0}`")]
    Format(String),
    /// The manifest signature does not verify.
    #[error("manifest signature does not verify")]
    ManifestSignature,
    /// The manifest disagrees with the contents.
    #[error("manifest does not match the contents: {0}")]
    Mismatch(&'static str),
    /// An entry is malformed or its signature bad.
    #[error("entry {index}: {error}")]
    Entry {
        /// Position in the file.
        index: usize,
        /// What is wrong.
        error: EntryError,
    },
    /// An entry breaks the record's rules (chain, backlink, authorisation…).
    #[error("entry {id} refused: {error}")]
    Rule {
        /// The entry.
        id: EntryId,
        /// Why.
        error: Box<Rejection>,
    },
    /// An audit event is bad.
    #[error("audit trail: {0}")]
    Audit(#[from] AuditError),
}

fn hash_ids<'a>(ids: impl Iterator<Item = &'a EntryId>) -> EntryId {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(id.as_bytes());
    }
    EntryId(*h.finalize().as_bytes())
}

/// The data definitions shipped with every export: every category schema, as JSON.
pub fn definitions_json() -> String {
    serde_json::to_string(crate::schema::all()).unwrap_or_default()
}

/// Writes an export of `record` (and the audit events given), signed by `exporter`.
pub fn build(
    record: &Record,
    audit: &[SignedAudit],
    exporter: &Keypair,
    now: Timestamp,
) -> Vec<u8> {
    let held: Vec<crate::entry::Verified> = record.entries().collect();
    let entries: Vec<&SignedEntry> = held.iter().map(|v| v.signed()).collect();
    let ids: Vec<EntryId> = entries.iter().map(|e| e.id()).collect();
    let audit_ids: Vec<EntryId> = audit.iter().map(SignedAudit::id).collect();
    let definitions = definitions_json();
    let manifest = Manifest {
        format: FORMAT.into(),
        record: record.id(),
        exporter: exporter.actor(),
        time: now,
        entries: ids.len() as u64,
        entries_hash: hash_ids(ids.iter()),
        definitions_hash: EntryId(*blake3::hash(definitions.as_bytes()).as_bytes()),
        audit_hash: hash_ids(audit_ids.iter()),
        heads: record.heads(),
    };
    let sig = exporter.sign(Domain::Manifest, &to_cbor(&manifest));
    to_cbor(&File {
        manifest,
        sig,
        definitions,
        entries: entries
            .iter()
            .map(|e| serde_bytes::ByteBuf::from(e.bytes().to_vec()))
            .collect(),
        audit: audit
            .iter()
            .map(|a| serde_bytes::ByteBuf::from(a.bytes().to_vec()))
            .collect(),
    })
}

/// A verified export.
#[derive(Debug)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// The record rebuilt from the file, every rule checked.
    pub record: Record,
    /// The audit events, signatures and chains checked.
    pub audit: Vec<SignedAudit>,
    /// The data definitions (JSON).
    pub definitions: String,
}

/// Verifies an export completely: canonical encoding, manifest signature and hashes, every
/// entry's encoding and signature (batched), every record rule by replaying the entries,
/// and the audit events' signatures and hash chains.
pub fn verify(bytes: &[u8]) -> Result<Verified, ExportError> {
    if bytes.len() > MAX_EXPORT_BYTES {
        return Err(ExportError::TooLarge);
    }
    let file: File = from_cbor_canonical(bytes).map_err(ExportError::Encoding)?;
    let m = &file.manifest;
    if m.format != FORMAT {
        return Err(ExportError::Format(m.format.clone()));
    }
    keys::verify(&m.exporter, Domain::Manifest, &to_cbor(m), &file.sig)
        .map_err(|_| ExportError::ManifestSignature)?;
    if m.entries != file.entries.len() as u64 {
        return Err(ExportError::Mismatch("entry count"));
    }
    if m.definitions_hash != EntryId(*blake3::hash(file.definitions.as_bytes()).as_bytes()) {
        return Err(ExportError::Mismatch("data definitions"));
    }
    let mut decoded = Vec::with_capacity(file.entries.len());
    for (index, b) in file.entries.iter().enumerate() {
        decoded.push(SignedEntry::decode(b).map_err(|error| ExportError::Entry { index, error })?);
    }
    if hash_ids(decoded.iter().map(|e| e.id()).collect::<Vec<_>>().iter()) != m.entries_hash {
        return Err(ExportError::Mismatch("entries"));
    }
    let verified =
        verify_batch(decoded).map_err(|(index, error)| ExportError::Entry { index, error })?;
    let mut record = Record::new(m.record);
    for v in verified {
        let id = v.id();
        record.apply(v).map_err(|error| ExportError::Rule {
            id,
            error: Box::new(error),
        })?;
    }
    if record.heads() != m.heads {
        return Err(ExportError::Mismatch("heads"));
    }
    let mut audit = Vec::with_capacity(file.audit.len());
    for b in &file.audit {
        audit.push(SignedAudit::decode(b)?);
    }
    if hash_ids(audit.iter().map(SignedAudit::id).collect::<Vec<_>>().iter()) != m.audit_hash {
        return Err(ExportError::Mismatch("audit trail"));
    }
    let mut by_node = audit.clone();
    by_node.sort_by_key(|a| (a.event.node, a.event.record, a.event.seq));
    audit::check_chain(&by_node)?;
    Ok(Verified {
        manifest: file.manifest,
        record,
        audit,
        definitions: file.definitions,
    })
}
