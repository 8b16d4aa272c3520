//! What an AIS keeps in its home: the attestations it issued and the revocations it signed.
//!
//! ```text
//! HOME/ais/issued/a-SUBJECT/t-ID.cbor   each issued SignedAttestation (canonical CBOR)
//! HOME/ais/revoked/t-ID.cbor            each SignedRevocation
//! ```
//!
//! Files are written whole (temporary file, fsync, rename), mode 0640 in 0700 folders.
//! Everything read back is decoded and verified again; a file that does not verify is
//! reported, never served.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use cophr_protocol::trust::attestation::{Revocation, MAX_ATTESTATION_BYTES};
use cophr_protocol::trust::{AttestationId, SignedAttestation, SignedRevocation};
use cophr_protocol::{ActorId, Keypair, Timestamp};

use super::AisError;

/// Most attestations kept for one subject (older ones are still listed, none issued more).
pub const MAX_PER_SUBJECT: usize = 64;

/// An AIS's issued log and revocations.
#[derive(Debug, Clone)]
pub struct AisStore {
    dir: PathBuf,
}

/// One issued attestation and whether it was revoked.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The attestation.
    pub attestation: SignedAttestation,
    /// Its revocation, if revoked.
    pub revocation: Option<SignedRevocation>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AisError {
    AisError::Io(format!("{what} {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Result<(), AisError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| io("cannot create", path, e))
}

/// Writes a file whole: a temporary file, fsync, rename, then the folder fsync'd.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AisError> {
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
        .map_err(|e| io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("cannot write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io("cannot write", path, e)
    })?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, AisError> {
    let f = fs::File::open(path).map_err(|e| io("cannot read", path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_ATTESTATION_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io("cannot read", path, e))?;
    Ok(bytes)
}

fn cbor_files(dir: &Path) -> Result<Vec<PathBuf>, AisError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("cannot list", dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| io("cannot list", dir, e))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "cbor") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

impl AisStore {
    /// The AIS store inside the home `home` (`HOME/ais`).
    pub fn new(home: &Path) -> Self {
        AisStore {
            dir: home.join("ais"),
        }
    }

    fn issued_dir(&self) -> PathBuf {
        self.dir.join("issued")
    }

    fn subject_dir(&self, subject: &ActorId) -> PathBuf {
        self.issued_dir().join(subject.to_string())
    }

    fn revoked_dir(&self) -> PathBuf {
        self.dir.join("revoked")
    }

    /// Keeps an attestation this AIS signed (verified first; it must be this issuer's).
    pub fn issue(&self, a: &SignedAttestation) -> Result<AttestationId, AisError> {
        a.verify().map_err(AisError::Attestation)?;
        let dir = self.subject_dir(&a.attestation.subject);
        let existing = cbor_files(&dir)?.len();
        if existing >= MAX_PER_SUBJECT {
            return Err(AisError::Full(format!(
                "{} attestations are already issued for this key",
                existing
            )));
        }
        mkdir(&dir)?;
        let id = a.id();
        write_file(&dir.join(format!("{id}.cbor")), &a.encode(), 0o640)?;
        Ok(id)
    }

    /// The attestations issued for `subject`, oldest first.
    pub fn for_subject(&self, subject: &ActorId) -> Result<Vec<Issued>, AisError> {
        let revoked = self.revocations()?;
        let mut out = Vec::new();
        for p in cbor_files(&self.subject_dir(subject))? {
            let a = SignedAttestation::decode(&read_bounded(&p)?)
                .map_err(|e| AisError::Corrupt(format!("{}: {e}", p.display())))?;
            let revocation = revoked
                .iter()
                .find(|r| r.revocation.attestation == a.id())
                .cloned();
            out.push(Issued {
                attestation: a,
                revocation,
            });
        }
        out.sort_by_key(|i| i.attestation.attestation.not_before);
        Ok(out)
    }

    /// Every issued attestation, by subject then time.
    pub fn list(&self) -> Result<Vec<Issued>, AisError> {
        let dir = self.issued_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("cannot list", &dir, e)),
        };
        let mut subjects = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io("cannot list", &dir, e))?;
            if let Some(s) = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<ActorId>().ok())
            {
                subjects.push(s);
            }
        }
        subjects.sort();
        let mut out = Vec::new();
        for s in subjects {
            out.extend(self.for_subject(&s)?);
        }
        Ok(out)
    }

    /// Finds an issued attestation by id.
    pub fn find(&self, id: &AttestationId) -> Result<Option<Issued>, AisError> {
        Ok(self.list()?.into_iter().find(|i| i.attestation.id() == *id))
    }

    /// Signs and keeps the revocation of an attestation this AIS issued.
    pub fn revoke(
        &self,
        issuer: &Keypair,
        id: &AttestationId,
        reason: &str,
        now: Timestamp,
    ) -> Result<SignedRevocation, AisError> {
        let issued = self.find(id)?.ok_or_else(|| {
            AisError::NotFound(format!("this service issued no attestation {id}"))
        })?;
        if issued.revocation.is_some() {
            return Err(AisError::AlreadyRevoked(*id));
        }
        let a = &issued.attestation.attestation;
        if a.issuer != issuer.actor() {
            return Err(AisError::NotFound(format!(
                "{id} was issued by {}, not by this service's key",
                a.issuer
            )));
        }
        let r = Revocation {
            issuer: issuer.actor(),
            attestation: *id,
            subject: a.subject,
            time: now,
            reason: reason.to_string(),
        }
        .sign(issuer)
        .map_err(AisError::Attestation)?;
        mkdir(&self.revoked_dir())?;
        write_file(
            &self.revoked_dir().join(format!("{id}.cbor")),
            &r.encode(),
            0o640,
        )?;
        Ok(r)
    }

    /// Every revocation this AIS signed.
    pub fn revocations(&self) -> Result<Vec<SignedRevocation>, AisError> {
        let mut out = Vec::new();
        for p in cbor_files(&self.revoked_dir())? {
            let r = SignedRevocation::decode(&read_bounded(&p)?)
                .map_err(|e| AisError::Corrupt(format!("{}: {e}", p.display())))?;
            out.push(r);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::key;
    use cophr_protocol::trust::attestation::{Attestation, ATTESTATION_VERSION};
    use cophr_protocol::trust::{AssuranceLevel, Attributes, Method};

    #[test]
    fn issued_attestations_are_listed_by_subject_and_revoked_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = AisStore::new(dir.path());
        let (ais, george) = (key(5, "AIS"), key(5, "George"));
        let a = Attestation {
            v: ATTESTATION_VERSION,
            issuer: ais.actor(),
            subject: george.actor(),
            attributes: Attributes::Person {
                name: "George Jones".into(),
                birth_date: None,
                national_number: None,
            },
            level: AssuranceLevel::P9,
            method: Method::InPerson,
            not_before: 1_000,
            not_after: 2_000,
            serial: vec![2; 16],
        }
        .sign(&ais)
        .unwrap();
        let id = store.issue(&a).unwrap();
        assert_eq!(store.for_subject(&george.actor()).unwrap().len(), 1);
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.for_subject(&ais.actor()).unwrap().is_empty());
        let r = store.revoke(&ais, &id, "left the practice", 1_500).unwrap();
        r.verify().unwrap();
        assert!(matches!(
            store.revoke(&ais, &id, "again", 1_600),
            Err(AisError::AlreadyRevoked(_))
        ));
        assert_eq!(store.revocations().unwrap(), vec![r]);
        assert!(store.list().unwrap()[0].revocation.is_some());
        let unknown = AttestationId([9; 32]);
        assert!(matches!(
            store.revoke(&ais, &unknown, "x", 1),
            Err(AisError::NotFound(_))
        ));
    }
}
