//! A simulated node's storage: the protocol's [`MemStore`] (records and signed audit
//! trails), seen by the protocol's sync server through [`SyncStore`]. Every method is the
//! `MemStore`'s; this wrapper only notes what the simulation measures: which entries were
//! new (for propagation delays), and the audit trail of a record removed after a move (so
//! the audit invariant can still see what the old host signed).

use std::collections::{BTreeMap, HashMap};

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::entry::{Timestamp, Verified};
use cophr_protocol::record::{Applied, Record, Rejection};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{SyncStore, Usage};
use cophr_protocol::{ActorId, EntryId, Keypair, RecordId};

/// One node's records and audit trails.
#[derive(Debug)]
pub(crate) struct SimStore {
    mem: MemStore,
    /// Entries that became held here since the driver last looked, by record.
    fresh: Vec<(RecordId, EntryId)>,
    /// Audit events this node held for records it removed (a released record).
    retired: BTreeMap<RecordId, Vec<SignedAudit>>,
}

impl SimStore {
    /// An empty store whose audit events `node` signs.
    pub(crate) fn new(node: Keypair) -> Self {
        SimStore {
            mem: MemStore::new(node),
            fresh: Vec::new(),
            retired: BTreeMap::new(),
        }
    }

    /// Reads sealed content with `key` (the node's identity), as a node does.
    pub(crate) fn unlock_with(&mut self, key: &Keypair) {
        self.mem.unlock_with(key);
    }

    /// The record, if held.
    pub(crate) fn record(&self, id: &RecordId) -> Option<&Record> {
        self.mem.record(id)
    }

    /// Every record held.
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.mem.records()
    }

    /// Starts holding an empty record (a replica about to pull it).
    pub(crate) fn hold(&mut self, id: RecordId) {
        self.mem.hold(id);
    }

    /// Applies one entry written here, through the one gate.
    pub(crate) fn write(&mut self, v: Verified) -> Result<Applied, Rejection> {
        self.mem.write(v)
    }

    /// Every audit event held for the record, in (node, sequence) order.
    pub(crate) fn audit_events(&self, record: &RecordId) -> Vec<&SignedAudit> {
        self.mem.audit_events(record)
    }

    /// Audit events of records this node removed.
    pub(crate) fn retired(&self, record: &RecordId) -> &[SignedAudit] {
        self.retired.get(record).map_or(&[], Vec::as_slice)
    }

    /// Records this node removed (whose audit events it kept aside).
    pub(crate) fn retired_records(&self) -> impl Iterator<Item = &RecordId> {
        self.retired.keys()
    }

    /// For each node, the highest audit sequence held for the record.
    pub(crate) fn audit_have(&self, record: &RecordId) -> Vec<(ActorId, u64)> {
        self.mem.audit_have(record)
    }

    /// The entries newly held since the last call.
    pub(crate) fn take_fresh(&mut self) -> Vec<(RecordId, EntryId)> {
        std::mem::take(&mut self.fresh)
    }
}

impl SyncStore for SimStore {
    type Error = Rejection;

    fn lacks_any_document(
        &self,
        docs: &[cophr_protocol::blob::BlobRef],
    ) -> Result<bool, Rejection> {
        self.mem.lacks_any_document(docs)
    }

    fn document_slice(
        &self,
        doc: &cophr_protocol::blob::BlobRef,
        offset: u64,
        len: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, Rejection> {
        self.mem.document_slice(doc, offset, len)
    }

    fn holds(&self, record: &RecordId) -> Result<bool, Rejection> {
        self.mem.holds(record)
    }

    fn read<T>(
        &self,
        record: &RecordId,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, Rejection> {
        self.mem.read(record, f)
    }

    fn ingest(&mut self, record: &RecordId, entries: Vec<Verified>) -> Result<usize, Rejection> {
        let ids: Vec<EntryId> = {
            let held = self.mem.record(record);
            entries
                .iter()
                .map(Verified::id)
                .filter(|id| held.is_none_or(|r| !r.contains(id)))
                .collect()
        };
        let added = self.mem.ingest(record, entries)?;
        let r = self.mem.record(record);
        let mut seen = std::collections::BTreeSet::new();
        for id in ids {
            if r.is_some_and(|r| r.contains(&id)) && seen.insert(id) {
                self.fresh.push((*record, id));
            }
        }
        Ok(added)
    }

    fn audit_served(
        &mut self,
        record: &RecordId,
        actor: ActorId,
        peer: &str,
        entries: Vec<EntryId>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        self.mem.audit_served(record, actor, peer, entries, now)
    }

    fn audit_beyond(
        &self,
        record: &RecordId,
        have: &HashMap<ActorId, u64>,
        limit: usize,
    ) -> Result<Vec<SignedAudit>, Rejection> {
        self.mem.audit_beyond(record, have, limit)
    }

    fn keep_audit(&mut self, events: &[SignedAudit]) -> Result<usize, Rejection> {
        self.mem.keep_audit(events)
    }

    fn set_home(&mut self, record: &RecordId, pointer: &[u8]) -> Result<(), Rejection> {
        self.mem.set_home(record, pointer)
    }

    fn put_backup(&mut self, actor: &ActorId, backup: &[u8]) -> Result<(), Rejection> {
        self.mem.put_backup(actor, backup)
    }

    fn backup(&self, actor: &ActorId) -> Result<Option<Vec<u8>>, Rejection> {
        self.mem.backup(actor)
    }

    fn put_share(
        &mut self,
        share: &cophr_protocol::share::Share,
        sealed: &[u8],
        now: cophr_protocol::Timestamp,
    ) -> Result<bool, Rejection> {
        self.mem.put_share(share, sealed, now)
    }

    fn end_share(
        &mut self,
        record: &RecordId,
        id: &cophr_protocol::share::ShareId,
        now: cophr_protocol::Timestamp,
    ) -> Result<bool, Rejection> {
        self.mem.end_share(record, id, now)
    }

    fn redeem_invitation(&mut self, code: &str, record: &RecordId) -> Result<bool, Rejection> {
        self.mem.redeem_invitation(code, record)
    }

    fn update_invitations<T>(
        &mut self,
        record: &RecordId,
        f: impl FnOnce(&mut cophr_protocol::invite::InvitationBox) -> T,
    ) -> Result<T, Rejection> {
        self.mem.update_invitations(record, f)
    }

    fn remove_record(&mut self, record: &RecordId) -> Result<(), Rejection> {
        let trail: Vec<SignedAudit> = self.mem.audit_events(record).into_iter().cloned().collect();
        self.retired.entry(*record).or_default().extend(trail);
        self.mem.remove_record(record)
    }

    fn set_released(&mut self, record: &RecordId, released: bool) -> Result<(), Rejection> {
        self.mem.set_released(record, released)
    }

    fn released(&self, record: &RecordId) -> Result<bool, Rejection> {
        self.mem.released(record)
    }

    fn usage(&self, record: &RecordId) -> Result<Usage, Rejection> {
        self.mem.usage(record)
    }
}
