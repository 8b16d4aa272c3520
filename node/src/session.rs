//! Acting as an identity on this node's store: what the CLI and the HTTP API share.
//!
//! A [`Session`] is a person's key and profile (and the device they name) over the store.
//! Writes are checked first, so a refused write stores nothing, and before the person's
//! first write into a record (or after their profile changed) their profile is published in
//! it, so the patient's grants list and audit trail can name them. Refusals are explained in
//! the person's terms (a revoked grant says so, with the revocation's reason).
//!
//! Every read of record data goes through [`Session::read`]: the reading code gets a
//! [`Reader`], says what it showed of each record ([`Seen`]), and its result comes back
//! only once exactly that has been audited (one event per record read). A read can be
//! given a [`Cancel`]: long work checks it ([`Reader::check`]) and stops once the caller
//! has gone (an HTTP request that timed out or was dropped), and a cancelled read audits
//! nothing, because its result was never delivered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use cophr_protocol::audit::{Action, SignedAudit, MAX_AUDIT_ENTRIES};
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
    /// The read was cancelled before its result was delivered; nothing was audited.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
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
        return SessionError::Refused {
            message: format!("not authorised: {}", why_no_grant(record, me)),
            rejection: Box::new(r),
        };
    }
    SessionError::Refused {
        message: r.to_string(),
        rejection: Box::new(r),
    }
}

/// Why `me` holds no grant in effect, from where its latest grant stands
/// ([`Record::grant_status`], the one computation of it).
fn why_no_grant(record: &Record, me: &ActorId) -> String {
    use cophr_protocol::GrantStatus;
    let Some(g) = record
        .grants()
        .filter(|g| g.grant.grantee == *me)
        .max_by_key(|g| (g.time, g.id))
    else {
        return "you hold no grant in this record".to_owned();
    };
    let id = g.id.short();
    // Revocation, a revoked parent and voidness do not depend on the time asked at; the
    // grant's own time keeps its period out of the answer.
    match record.grant_status(&g.id, g.time) {
        Some(GrantStatus::Revoked) => {
            let reason = g.revoked_by.iter().find_map(|rv| match record.get(rv) {
                Some(e) => match &e.entry().payload {
                    Payload::Revoke { reason, .. } => Some(reason.clone()),
                    _ => None,
                },
                None => None,
            });
            format!(
                "your access to this record was revoked (grant {id}{})",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            )
        }
        Some(GrantStatus::ParentRevoked) => format!(
            "your grant {id} was delegated under a grant that has since been revoked, so it \
             gives nothing any more"
        ),
        Some(GrantStatus::Void) => format!(
            "your grant {id} never took effect: the grant it was delegated under was revoked \
             at the same time"
        ),
        _ => format!("your grant {id} is not in effect at this time (outside its period)"),
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
        self.write_with(record, payload, now, true)
    }

    /// Checks that the identity may write `payload` at `now` (a dry run of
    /// [`Session::write`]: structure, rules, grants, sealing), storing nothing but the
    /// organisation join a member's first action writes anyway. Used to check every entry
    /// of a group before writing any of them.
    pub fn check_write(
        &self,
        record: &RecordId,
        payload: &Payload,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        self.join_if_member(record, now)?;
        self.dry_run(record, payload, now, true)
    }

    /// Prepares `payload` as it would be written now, without writing it: every check the
    /// write makes (structure, rules, sealing).
    fn dry_run(
        &self,
        record: &RecordId,
        payload: &Payload,
        now: Timestamp,
        history: bool,
    ) -> Result<(), SessionError> {
        self.store.with_record(record, |r| {
            r.prepare_sealed(
                &self.key,
                payload.clone(),
                now,
                self.device.clone(),
                self.store.seal_policy(history),
                &mut rand_core::OsRng,
            )
            .map(drop)
            .map_err(|e| explain(r, &self.actor(), e))
        })?
    }

    /// [`Session::write`], saying whether a grant gives the grantee the keys of what was
    /// written before it (`history`) or only of what comes after
    /// ([`Store::write_with`]).
    pub fn write_with(
        &self,
        record: &RecordId,
        payload: Payload,
        now: Timestamp,
        history: bool,
    ) -> Result<EntryId, SessionError> {
        self.join_if_member(record, now)?;
        if self.profile_needed(record, now)? {
            // The profile goes first: a dry run (preparing checks everything the write
            // would: structure, rules, sealing), so a refused write publishes nothing
            // either. Otherwise the write checks itself, under the record's lock.
            self.dry_run(record, &payload, now, history)?;
            self.write_profile(record, now)?;
        }
        self.store
            .write_with(
                record,
                &self.key,
                payload,
                now,
                self.device.clone(),
                history,
            )
            .map_err(|e| self.store_error(record, e))
    }

    /// Joins the record under an organisation's grant (a `JoinOrg`), if the identity is a
    /// member of an organisation holding a grant there and has not joined yet
    /// ([`Record::join_needed`]): a member's first action in a record. Returns whether it
    /// wrote.
    pub fn join_if_member(&self, record: &RecordId, now: Timestamp) -> Result<bool, SessionError> {
        let proofs = self.store.memberships().map_err(SessionError::Store)?;
        if proofs.is_empty() {
            return Ok(false);
        }
        let proof = self
            .store
            .with_record(record, |r| r.join_needed(&self.actor(), &proofs))?;
        let Some(proof) = proof else {
            return Ok(false);
        };
        self.store
            .write(
                record,
                &self.key,
                Payload::JoinOrg { proof },
                now,
                self.device.clone(),
            )
            .map_err(|e| self.store_error(record, e))?;
        Ok(true)
    }

    /// As an organisation's administrator: removes `member` from the organisation's own
    /// record `org` (a `RemoveMember`), then from every record held here that they joined
    /// for it (a `RemoveDevice` as the organisation; the others get it when this node next
    /// pulls them, [`Store::org_duties`]). Returns the removal and the records it reached.
    pub fn remove_member(
        &self,
        org: &RecordId,
        member: ActorId,
        reason: &str,
        now: Timestamp,
    ) -> Result<(EntryId, Vec<RecordId>), SessionError> {
        let id = self.write(
            org,
            Payload::RemoveMember {
                member,
                reason: reason.to_owned(),
            },
            now,
        )?;
        let mut records = Vec::new();
        for r in self.store.joined_by(&member, org)? {
            self.write(
                &r,
                Payload::RemoveDevice {
                    device: member,
                    category: None,
                    reason: reason.to_owned(),
                },
                now,
            )?;
            records.push(r);
        }
        Ok((id, records))
    }

    /// Publishes the identity's profile in a record it has access to, if the record does
    /// not hold it yet (or holds an older one). Returns whether it wrote.
    pub fn publish_profile(&self, record: &RecordId, now: Timestamp) -> Result<bool, SessionError> {
        let needed = self.profile_needed(record, now)?;
        if needed {
            self.write_profile(record, now)?;
        }
        Ok(needed)
    }

    /// Whether the record lacks the identity's current profile and would take it.
    fn profile_needed(&self, record: &RecordId, now: Timestamp) -> Result<bool, SessionError> {
        Ok(self.store.with_record(record, |r| {
            r.profile(&self.actor(), None) != Some(&self.profile)
                && r.prepare_all(
                    &self.key,
                    Payload::Profile(self.profile.clone()),
                    now,
                    self.device.clone(),
                )
                .is_ok()
        })?)
    }

    fn write_profile(&self, record: &RecordId, now: Timestamp) -> Result<EntryId, SessionError> {
        self.store
            .write(
                record,
                &self.key,
                Payload::Profile(self.profile.clone()),
                now,
                self.device.clone(),
            )
            .map_err(|e| self.store_error(record, e))
    }

    /// Reads as the identity: `f` looks at records through the [`Reader`] and says what
    /// it showed; its result is returned only after exactly that is audited at `now` (one
    /// event per record whose [`Seen`] was used; a view, an audit-trail read or an export,
    /// naming the entries shown, at most [`MAX_AUDIT_ENTRIES`], and a short description,
    /// never record contents). An error from `f` audits nothing.
    ///
    /// If `cancel` was cancelled before the result is committed, nothing is audited and
    /// the read fails with [`SessionError::Cancelled`] (as an `E`). Once committed, a
    /// later [`Cancel::cancel`] reports that the result is on its way.
    pub fn read<T, E>(
        &self,
        cancel: &Cancel,
        now: Timestamp,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<SessionError>,
    {
        let mut reader = Reader {
            store: &self.store,
            cancel,
            seen: BTreeMap::new(),
            detail: None,
        };
        let value = f(&mut reader)?;
        let Reader { seen, detail, .. } = reader;
        // A last checkpoint, then the commitment: from here the result is delivered.
        cancel.check().map_err(SessionError::from)?;
        cancel.commit().map_err(SessionError::from)?;
        for (record, s) in seen {
            let Seen {
                mut entries,
                action,
                detail: own,
            } = s;
            entries.sort_unstable();
            entries.dedup();
            entries.truncate(MAX_AUDIT_ENTRIES);
            self.store
                .audit(
                    &record,
                    AuditInput {
                        action,
                        actor: self.actor(),
                        device: self.device.clone(),
                        entries,
                        detail: own.or_else(|| detail.clone()),
                    },
                    now,
                )
                .map_err(SessionError::from)?;
        }
        Ok(value)
    }
}

/// What a read showed of one record: the entries and the kind of read. Got from
/// [`Reader::record`] or [`Reader::seen`]; a record's `Seen` that is used at all is
/// audited, even with no entries (an empty list was shown).
#[derive(Debug)]
pub struct Seen {
    entries: Vec<EntryId>,
    action: Action,
    detail: Option<String>,
}

impl Seen {
    /// The reader was shown these entries.
    pub fn add(&mut self, entries: impl IntoIterator<Item = EntryId>) {
        self.entries.extend(entries);
    }

    /// The reader was shown the record's audit trail (audited as an audit-read).
    pub fn audit_trail(&mut self) {
        self.action = Action::AuditRead;
    }

    /// The entries shown leave in an export (audited as an export).
    pub fn export(&mut self) {
        self.action = Action::Export;
    }

    /// The description of this record's audit event (else the reader's).
    pub fn detail(&mut self, detail: impl Into<String>) {
        self.detail = Some(detail.into());
    }
}

/// A read in progress (see [`Session::read`]): access to records, and what was shown.
pub struct Reader<'a> {
    store: &'a Store,
    cancel: &'a Cancel,
    seen: BTreeMap<RecordId, Seen>,
    detail: Option<String>,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("records", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl Reader<'_> {
    /// Looks at a record: `f` gets it and the [`Seen`] to fill with what it showed. A
    /// `Seen` left untouched still audits the record as read; use [`Store::with_record`]
    /// (through [`Reader::store`]) for looks that show nothing (access checks).
    pub fn record<U>(
        &mut self,
        id: &RecordId,
        f: impl FnOnce(&Record, &mut Seen) -> U,
    ) -> Result<U, StoreError> {
        let store = self.store;
        let seen = self.seen(id);
        store.with_record(id, |r| f(r, seen))
    }

    /// What was shown of a record (created empty: the record counts as read).
    pub fn seen(&mut self, id: &RecordId) -> &mut Seen {
        self.seen.entry(*id).or_insert_with(|| Seen {
            entries: Vec::new(),
            action: Action::View,
            detail: None,
        })
    }

    /// The record's audit trail, for showing (mark it with [`Seen::audit_trail`]).
    pub fn audit_events(&self, id: &RecordId) -> Result<Vec<SignedAudit>, StoreError> {
        self.store.audit_events(id)
    }

    /// The store, for looks that show nothing of a record (which records are held,
    /// whether the reader has access).
    pub fn store(&self) -> &Store {
        self.store
    }

    /// The description of every audit event of this read (a record's own wins).
    pub fn detail(&mut self, detail: impl Into<String>) {
        self.detail = Some(detail.into());
    }

    /// A checkpoint for long work: `Err` once the read was cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        self.cancel.check()
    }

    /// The read's cancellation flag.
    pub fn cancel(&self) -> &Cancel {
        self.cancel
    }
}

/// The read was cancelled: whoever asked for it is gone, so nothing is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read was cancelled before its result was delivered")]
pub struct Cancelled;

const RUNNING: u8 = 0;
const COMMITTED: u8 = 1;
const CANCELLED: u8 = 2;

/// A test hook run at every [`Cancel::check`].
pub type Checkpoint = Arc<dyn Fn() + Send + Sync>;

/// Whether a read's result is still wanted. Shared (cloned) between the reading work and
/// whoever waits for it: the waiter [`Cancel::cancel`]s when it gives up, the work
/// [`Cancel::check`]s in its loops and stops, and [`Session::read`] commits before it
/// audits, after which the read is no longer cancellable.
#[derive(Clone, Default)]
pub struct Cancel {
    state: Arc<AtomicU8>,
    checkpoint: Option<Checkpoint>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("state", &self.state.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// A flag for a new read, not cancelled.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// A flag that runs `hook` at every [`Cancel::check`] (for tests: to hold the work at
    /// a checkpoint, or count checkpoints).
    pub fn with_checkpoint(hook: Checkpoint) -> Self {
        Cancel {
            state: Arc::default(),
            checkpoint: Some(hook),
        }
    }

    /// Gives up on the result. Returns `true` if the read is (now) cancelled, `false` if
    /// its result was already committed (audited and on its way: wait for it).
    pub fn cancel(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(now) => now == CANCELLED,
        }
    }

    /// Whether the read was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::SeqCst) == CANCELLED
    }

    /// A checkpoint: `Err` once cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        if let Some(hook) = &self.checkpoint {
            hook();
        }
        if self.is_cancelled() {
            return Err(Cancelled);
        }
        Ok(())
    }

    /// Commits to delivering the result (unless cancelled first).
    fn commit(&self) -> Result<(), Cancelled> {
        match self
            .state
            .compare_exchange(RUNNING, COMMITTED, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(()),
            Err(COMMITTED) => Ok(()),
            Err(_) => Err(Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::{bp, grant, key, Fixture};
    use cophr_protocol::{Category, Level};

    fn refusal(f: &Fixture, who: &cophr_protocol::Keypair) -> String {
        let r = f
            .record
            .prepare_all(
                who,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(120, 80),
                },
                f.now,
                None,
            )
            .expect_err("refused");
        match explain(&f.record, &who.actor(), r) {
            SessionError::Refused { message, .. } => message,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_refused_write_says_where_the_writers_grant_stands() {
        let mut f = Fixture::new(3, "George");
        let g = f.patient.clone();
        let mary = key(3, "Mary");
        let sitter = key(3, "Sitter");
        let stranger = key(3, "Stranger");
        let mg = f.grant(grant(&mary, Level::Write, &[], false, true));
        f.write(
            &mary,
            Payload::Grant(grant(
                &sitter,
                Level::Write,
                &[Category::VitalSigns],
                false,
                false,
            )),
        )
        .unwrap();
        f.write(
            &g,
            Payload::Revoke {
                grant: mg,
                category: None,
                reason: "moved abroad".into(),
            },
        )
        .unwrap();
        assert!(refusal(&f, &stranger).contains("you hold no grant"));
        let m = refusal(&f, &mary);
        assert!(
            m.contains("was revoked") && m.contains("moved abroad"),
            "{m}"
        );
        let s = refusal(&f, &sitter);
        assert!(
            s.contains("delegated under a grant that has since been revoked"),
            "{s}"
        );
    }
}
