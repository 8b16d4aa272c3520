//! Acting as an identity on this node's store: what the CLI and the HTTP API share.
//!
//! A [`Session`] is a person's key and profile (and the device they name) over the store.
//! Writes are checked first, so a refused write stores nothing, and before the person's
//! first write into a record (or after their profile changed) their profile is published in
//! it, so the patient's grants list and audit trail can name them. Refusals are explained in
//! the person's terms (a revoked grant says so, with the revocation's reason). Reads are
//! audited with [`Session::audit_read`].

use cophr_protocol::audit::{Action, MAX_AUDIT_ENTRIES};
use cophr_protocol::entry::Payload;
use cophr_protocol::record::{AccessError, Record, Rejection};
use cophr_protocol::{ActorId, EntryId, Keypair, Profile, RecordId, Timestamp};

use crate::store::{AuditInput, Store, StoreError};

/// Why an act was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The record's rules refused the entry; nothing was stored. The message explains it
    /// in the actor's terms.
    #[error("{message}")]
    Refused {
        /// The rule broken.
        rejection: Box<Rejection>,
        /// The explanation.
        message: String,
    },
    /// The store failed (or does not hold the record).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// Whether the refusal is about access (no grant, level too low, revoked).
    pub fn is_access(&self) -> bool {
        matches!(self, SessionError::Refused { rejection, .. } if matches!(**rejection, Rejection::Access(_)))
    }
}

/// An identity acting on a store.
#[derive(Debug, Clone)]
pub struct Session {
    /// The store.
    pub store: Store,
    /// The identity's key.
    pub key: Keypair,
    /// The identity's profile (name, role, organisation).
    pub profile: Profile,
    /// The device named on entries and audit events.
    pub device: Option<String>,
}

/// Explains a refusal in the actor's terms: a missing grant says whether (and why) the
/// actor's access was revoked.
pub fn explain(record: &Record, me: &ActorId, r: Rejection) -> SessionError {
    if let Rejection::Access(AccessError::NoGrant) = &r {
        let revoked = record
            .grants()
            .filter(|g| g.grant.grantee == *me && !g.revoked_by.is_empty())
            .max_by_key(|g| g.time);
        let message = match revoked {
            Some(g) => {
                let reason = g.revoked_by.iter().find_map(|rv| match record.get(rv) {
                    Some(e) => match &e.entry().payload {
                        Payload::Revoke { reason, .. } => Some(reason.clone()),
                        _ => None,
                    },
                    None => None,
                });
                format!(
                    "not authorised: your access to this record was revoked (grant {}{})",
                    g.id.short(),
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                )
            }
            None => "not authorised: you hold no grant in this record".to_owned(),
        };
        return SessionError::Refused {
            rejection: Box::new(r),
            message,
        };
    }
    SessionError::Refused {
        message: r.to_string(),
        rejection: Box::new(r),
    }
}

impl Session {
    /// The acting identity.
    pub fn actor(&self) -> ActorId {
        self.key.actor()
    }

    /// A store error, with refusals explained.
    pub fn store_error(&self, record: &RecordId, e: StoreError) -> SessionError {
        match e {
            StoreError::Rejected(r) => self
                .store
                .with_record(record, |rec| explain(rec, &self.actor(), r.clone()))
                .unwrap_or_else(|_| SessionError::Store(StoreError::Rejected(r))),
            e => SessionError::Store(e),
        }
    }

    /// Writes an entry as the identity at `now`. The write is checked first, so a refused
    /// write stores nothing (not even the profile); the profile is published first when
    /// needed ([`Session::publish_profile`]).
    pub fn write(
        &self,
        record: &RecordId,
        payload: Payload,
        now: Timestamp,
    ) -> Result<EntryId, SessionError> {
        // A dry run: `prepare_all` checks everything the write would (structure, rules).
        self.store.with_record(record, |r| {
            r.prepare_all(&self.key, payload.clone(), now, self.device.clone())
                .map(drop)
                .map_err(|e| explain(r, &self.actor(), e))
        })??;
        self.publish_profile(record, now)?;
        self.store
            .write(record, &self.key, payload, now, self.device.clone())
            .map_err(|e| self.store_error(record, e))
    }

    /// Publishes the identity's profile in a record it has access to, if the record does
    /// not hold it yet (or holds an older one). Returns whether it wrote.
    pub fn publish_profile(&self, record: &RecordId, now: Timestamp) -> Result<bool, SessionError> {
        let needed = self.store.with_record(record, |r| {
            r.profile(&self.actor(), None) != Some(&self.profile)
                && r.prepare_all(
                    &self.key,
                    Payload::Profile(self.profile.clone()),
                    now,
                    self.device.clone(),
                )
                .is_ok()
        })?;
        if needed {
            self.store
                .write(
                    record,
                    &self.key,
                    Payload::Profile(self.profile.clone()),
                    now,
                    self.device.clone(),
                )
                .map_err(|e| self.store_error(record, e))?;
        }
        Ok(needed)
    }

    /// Records that the identity read something (`action` is [`Action::View`] or
    /// [`Action::AuditRead`]): the entries seen (at most [`MAX_AUDIT_ENTRIES`]) and a short
    /// description, never record contents.
    pub fn audit_read(
        &self,
        record: &RecordId,
        action: Action,
        mut entries: Vec<EntryId>,
        detail: String,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        entries.truncate(MAX_AUDIT_ENTRIES);
        self.store.audit(
            record,
            AuditInput {
                action,
                actor: self.actor(),
                device: self.device.clone(),
                entries,
                detail: Some(detail),
            },
            now,
        )?;
        Ok(())
    }
}
