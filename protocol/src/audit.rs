//! Audit events: who did what to which entries, signed by the node that saw it and
//! hash-chained per node, so a removed or altered event is evident.

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Payload, Timestamp};
use crate::ids::{ActorId, EntryId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};

/// Most entry ids one audit event lists.
pub const MAX_AUDIT_ENTRIES: usize = 4096;

/// The type of activity (blueprint 8.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Record data was viewed.
    View,
    /// Data was added.
    Add,
    /// Data was edited (amended).
    Edit,
    /// Data was logically deleted.
    Delete,
    /// An annotation was added.
    Annotate,
    /// Access was granted.
    Grant,
    /// Access was revoked.
    Revoke,
    /// The record (or part of it) was exported.
    Export,
    /// Entries were imported.
    Import,
    /// The record moved host.
    Move,
    /// The audit trail itself was read.
    AuditRead,
    /// An actor published their profile (name, role, organisation).
    Profile,
    /// A device was added or removed.
    Device,
    /// The patient's guardians were named, or the patient key rotated.
    Keys,
    /// An organisation named or removed a member, or a member joined a record under the
    /// organisation's grant.
    Membership,
}

impl Action {
    /// The action writing an entry with this payload amounts to: the one mapping from
    /// entry kind to audit action (genesis and create add, amend edits, a move is a move…).
    pub fn for_payload(p: &Payload) -> Action {
        match p {
            Payload::Genesis { .. }
            | Payload::Create { .. }
            | Payload::SealedCreate { .. }
            | Payload::DefineSchema(_) => Action::Add,
            Payload::Amend { .. } | Payload::SealedAmend { .. } => Action::Edit,
            Payload::Delete { .. } | Payload::SealedDelete { .. } => Action::Delete,
            Payload::Annotate { .. } | Payload::SealedAnnotate { .. } => Action::Annotate,
            Payload::Grant(_) => Action::Grant,
            Payload::Revoke { .. } => Action::Revoke,
            Payload::Profile(_) => Action::Profile,
            Payload::MoveHome { .. } => Action::Move,
            Payload::AddDevice { .. } | Payload::RemoveDevice { .. } => Action::Device,
            Payload::AddMember { .. } | Payload::RemoveMember { .. } | Payload::JoinOrg { .. } => {
                Action::Membership
            }
            Payload::SetGuardians { .. }
            | Payload::KeyWrap { .. }
            | Payload::RotateKey { .. }
            | Payload::RotationPart { .. } => Action::Keys,
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Add => "add",
            Action::Edit => "edit",
            Action::Delete => "delete",
            Action::Annotate => "annotate",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
            Action::Export => "export",
            Action::Import => "import",
            Action::Move => "move",
            Action::AuditRead => "audit-read",
            Action::Profile => "profile",
            Action::Device => "device",
            Action::Keys => "keys",
            Action::Membership => "membership",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The record concerned.
    pub record: RecordId,
    /// The node that saw it and signs the event.
    pub node: ActorId,
    /// The node's audit sequence number for this record, from 1.
    pub seq: u64,
    /// Hash of the node's previous audit event for this record (`None` for its first).
    pub prev: Option<EntryId>,
    /// When (node time, ms since epoch).
    pub time: Timestamp,
    /// Type of activity.
    pub action: Action,
    /// Who did it.
    pub actor: ActorId,
    /// Their name, role and organisation, as known to the node.
    pub actor_name: Option<String>,
    /// Role.
    pub actor_role: Option<String>,
    /// Organisation.
    pub actor_organisation: Option<String>,
    /// Device or network address used.
    pub device: Option<String>,
    /// The entries touched.
    pub entries: Vec<EntryId>,
    /// A short description (e.g. which categories were shown). Never record contents.
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    event: AuditEvent,
    sig: Sig,
}

/// A signed audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedAudit {
    /// The event.
    pub event: AuditEvent,
    /// The node's signature.
    pub sig: Sig,
    id: EntryId,
    bytes: Vec<u8>,
}

/// Why an audit event is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuditError {
    /// Encoding problem.
    #[error(transparent)]
    Encoding(#[from] EntryError),
    /// Signature problem.
    #[error("audit event signature: {0}")]
    Key(#[from] keys::KeyError),
    /// Too many entries listed.
    #[error("audit event lists too many entries")]
    TooLarge,
    /// The hash chain is broken (an event was removed, reordered or altered).
    #[error("audit chain of node {node} broken at sequence {seq}")]
    Chain {
        /// The node.
        node: ActorId,
        /// Where.
        seq: u64,
    },
}

impl AuditEvent {
    /// Signs the event with the node's key.
    pub fn sign(self, node: &Keypair) -> SignedAudit {
        let sig = node.sign(Domain::Audit, &to_cbor(&self));
        let bytes = to_cbor(&Wire {
            event: self.clone(),
            sig,
        });
        SignedAudit {
            id: EntryId(*blake3::hash(&bytes).as_bytes()),
            event: self,
            sig,
            bytes,
        }
    }
}

impl SignedAudit {
    /// Decodes and verifies an audit event.
    pub fn decode(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() > crate::entry::MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let w: Wire = from_cbor_canonical(bytes)?;
        if w.event.entries.len() > MAX_AUDIT_ENTRIES {
            return Err(AuditError::TooLarge);
        }
        keys::verify(&w.event.node, Domain::Audit, &to_cbor(&w.event), &w.sig)?;
        Ok(SignedAudit {
            id: EntryId(*blake3::hash(bytes).as_bytes()),
            event: w.event,
            sig: w.sig,
            bytes: bytes.to_vec(),
        })
    }

    /// The event's hash (what the next event's `prev` names).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// Canonical bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Checks that each node's events for each record form an unbroken hash chain from
/// sequence 1 (events given in sequence order per node and record).
pub fn check_chain(events: &[SignedAudit]) -> Result<(), AuditError> {
    let mut last: std::collections::HashMap<(ActorId, RecordId), (u64, EntryId)> =
        Default::default();
    for e in events {
        let ev = &e.event;
        let ok = match last.get(&(ev.node, ev.record)) {
            None => ev.seq == 1 && ev.prev.is_none(),
            Some((s, id)) => ev.seq == s + 1 && ev.prev == Some(*id),
        };
        if !ok {
            return Err(AuditError::Chain {
                node: ev.node,
                seq: ev.seq,
            });
        }
        last.insert((ev.node, ev.record), (ev.seq, e.id()));
    }
    Ok(())
}

/// The `detail` of the view a node audits when it serves entries to a replica (sync).
pub const SERVED_TO_REPLICA: &str = "served to a replica";

/// The largest page of an audit query.
pub const MAX_AUDIT_PAGE: usize = 10_000;

impl Action {
    /// Every action, in the order they are listed to people.
    pub const ALL: [Action; 15] = [
        Action::View,
        Action::Add,
        Action::Edit,
        Action::Delete,
        Action::Annotate,
        Action::Grant,
        Action::Revoke,
        Action::Export,
        Action::Import,
        Action::Move,
        Action::AuditRead,
        Action::Profile,
        Action::Device,
        Action::Keys,
        Action::Membership,
    ];

    /// The action of a name ([`Action::name`]).
    pub fn from_name(name: &str) -> Option<Action> {
        let name = name.trim();
        Action::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Whether the action only read (a view or an audit-trail read).
    pub fn is_read(self) -> bool {
        matches!(self, Action::View | Action::AuditRead)
    }
}

impl AuditEvent {
    /// Whether this is a node serving entries to a replica (a sync read).
    pub fn is_sync_read(&self) -> bool {
        self.action == Action::View && self.detail.as_deref() == Some(SERVED_TO_REPLICA)
    }
}

/// Which of the reader's own events a query shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Own {
    /// Everything but the reader's own reads (views, audit-trail reads): who else looked.
    #[default]
    HideReads,
    /// Everything, the reader's own reads included.
    Include,
    /// Only the reader's own events.
    Only,
}

/// A question to a record's audit trail: filters, grouping and a page. The one place
/// the CLI, the REST API and the web app get their "who viewed what" from ([`query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Who is asking (whose own reads [`Own`] is about).
    pub reader: ActorId,
    /// Only events by these actors (empty: anyone).
    pub actors: Vec<ActorId>,
    /// Only events of these actions (empty: any).
    pub actions: Vec<Action>,
    /// Only events at or after this time.
    pub since: Option<Timestamp>,
    /// Only events at or before this time.
    pub until: Option<Timestamp>,
    /// The reader's own events.
    pub own: Own,
    /// Show each run of consecutive sync reads by one actor from one node as one row.
    pub group_sync: bool,
    /// Newest first (else oldest first).
    pub newest_first: bool,
    /// The page, from 1.
    pub page: usize,
    /// Rows per page (1 to [`MAX_AUDIT_PAGE`]).
    pub limit: usize,
}

impl AuditQuery {
    /// Everything but the reader's own reads, sync reads grouped, newest first, the first
    /// page of 100 rows.
    pub fn new(reader: ActorId) -> Self {
        AuditQuery {
            reader,
            actors: Vec::new(),
            actions: Vec::new(),
            since: None,
            until: None,
            own: Own::HideReads,
            group_sync: true,
            newest_first: true,
            page: 1,
            limit: 100,
        }
    }

    /// Whether an event passes the filters.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        let mine = e.actor == self.reader;
        let own_ok = match self.own {
            Own::HideReads => !(mine && e.action.is_read()),
            Own::Include => true,
            Own::Only => mine,
        };
        own_ok
            && (self.actors.is_empty() || self.actors.contains(&e.actor))
            && (self.actions.is_empty() || self.actions.contains(&e.action))
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time <= t)
    }
}

/// A run of consecutive sync reads by one actor from one node, shown as one row.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRun<'a> {
    /// The first (oldest) event.
    pub first: &'a SignedAudit,
    /// The last (newest) event.
    pub last: &'a SignedAudit,
    /// How many events.
    pub count: usize,
    /// How many entries they served, in all.
    pub entries: usize,
}

/// One row of an audit page.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditRow<'a> {
    /// One event.
    Event(&'a SignedAudit),
    /// A run of sync reads.
    Sync(SyncRun<'a>),
}

/// One page of an audit query's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage<'a> {
    /// The rows of this page.
    pub rows: Vec<AuditRow<'a>>,
    /// The page (from 1).
    pub page: usize,
    /// Rows per page.
    pub limit: usize,
    /// Rows on all pages.
    pub total_rows: usize,
    /// Events that passed the filters (a sync run counts each of its events).
    pub matched: usize,
    /// Events in the trail.
    pub events: usize,
}

impl AuditPage<'_> {
    /// Pages in all (at least 1).
    pub fn pages(&self) -> usize {
        self.total_rows.div_ceil(self.limit.max(1)).max(1)
    }
}

/// Answers an audit query over a trail given in time order (as
/// `Store::audit_events` gives it): filter, group sync reads, order, page. Pure; every
/// event is kept in the trail, this only chooses what to show.
pub fn query<'a>(events: &'a [SignedAudit], q: &AuditQuery) -> AuditPage<'a> {
    let limit = q.limit.clamp(1, MAX_AUDIT_PAGE);
    let page = q.page.max(1);
    let mut rows: Vec<AuditRow<'a>> = Vec::new();
    let mut matched = 0;
    for a in events.iter().filter(|a| q.matches(&a.event)) {
        matched += 1;
        if q.group_sync && a.event.is_sync_read() {
            if let Some(AuditRow::Sync(run)) = rows.last_mut() {
                let l = &run.last.event;
                if l.actor == a.event.actor && l.node == a.event.node {
                    run.last = a;
                    run.count += 1;
                    run.entries += a.event.entries.len();
                    continue;
                }
            }
            rows.push(AuditRow::Sync(SyncRun {
                first: a,
                last: a,
                count: 1,
                entries: a.event.entries.len(),
            }));
            continue;
        }
        rows.push(AuditRow::Event(a));
    }
    if q.newest_first {
        rows.reverse();
    }
    let total_rows = rows.len();
    let start = (page - 1).saturating_mul(limit);
    let rows: Vec<AuditRow<'a>> = rows.into_iter().skip(start).take(limit).collect();
    AuditPage {
        rows,
        page,
        limit,
        total_rows,
        matched,
        events: events.len(),
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    fn ev(
        node: &Keypair,
        seq: u64,
        time: Timestamp,
        actor: ActorId,
        action: Action,
        detail: &str,
    ) -> SignedAudit {
        AuditEvent {
            record: ActorId([7; 32]),
            node: node.actor(),
            seq,
            prev: None,
            time,
            action,
            actor,
            actor_name: None,
            actor_role: None,
            actor_organisation: None,
            device: None,
            entries: vec![EntryId([seq as u8; 32]); 2],
            detail: Some(detail.to_owned()),
        }
        .sign(node)
    }

    struct Trail {
        me: ActorId,
        replica: ActorId,
        gp: ActorId,
        events: Vec<SignedAudit>,
    }

    /// The patient's own reads and writes, a GP's view, and a replica syncing in two runs
    /// (broken by the GP's view).
    fn trail() -> Trail {
        let host = Keypair::from_secret(&[1; 32]);
        let me = Keypair::from_secret(&[2; 32]).actor();
        let replica = Keypair::from_secret(&[3; 32]).actor();
        let gp = Keypair::from_secret(&[4; 32]).actor();
        let mut events = Vec::new();
        let mut seq = 0;
        let mut push = |t: Timestamp, actor: ActorId, action: Action, detail: &str| {
            seq += 1;
            events.push(ev(&host, seq, t, actor, action, detail));
        };
        push(10, me, Action::Add, "add");
        push(20, me, Action::View, "show");
        push(30, replica, Action::View, SERVED_TO_REPLICA);
        push(40, replica, Action::View, SERVED_TO_REPLICA);
        push(50, replica, Action::View, SERVED_TO_REPLICA);
        push(60, me, Action::AuditRead, "audit");
        push(70, gp, Action::View, "show");
        push(80, replica, Action::View, SERVED_TO_REPLICA);
        push(90, gp, Action::Edit, "amend");
        Trail {
            me,
            replica,
            gp,
            events,
        }
    }

    fn times(p: &AuditPage<'_>) -> Vec<(Timestamp, usize)> {
        p.rows
            .iter()
            .map(|r| match r {
                AuditRow::Event(a) => (a.event.time, 1),
                AuditRow::Sync(s) => (s.first.event.time, s.count),
            })
            .collect()
    }

    #[test]
    fn by_default_own_reads_are_hidden_and_sync_runs_grouped_newest_first() {
        let t = trail();
        let p = query(&t.events, &AuditQuery::new(t.me));
        // The run of three sync reads is one row: the patient's view between them and
        // the GP's is hidden, so they stay consecutive; the GP's view breaks the next.
        assert_eq!(times(&p), vec![(90, 1), (80, 1), (70, 1), (30, 3), (10, 1)]);
        let AuditRow::Sync(run) = &p.rows[3] else {
            panic!("not a sync run")
        };
        assert_eq!((run.first.event.time, run.last.event.time), (30, 50));
        assert_eq!(run.entries, 6);
        assert_eq!((p.matched, p.events, p.total_rows, p.pages()), (7, 9, 5, 1));
    }

    #[test]
    fn own_reads_can_be_shown_or_shown_alone() {
        let t = trail();
        let mut q = AuditQuery::new(t.me);
        q.own = Own::Include;
        q.newest_first = false;
        // The patient's audit read splits the replica's run.
        assert_eq!(
            times(&query(&t.events, &q)),
            vec![
                (10, 1),
                (20, 1),
                (30, 3),
                (60, 1),
                (70, 1),
                (80, 1),
                (90, 1)
            ]
        );
        q.own = Own::Only;
        assert_eq!(
            times(&query(&t.events, &q)),
            vec![(10, 1), (20, 1), (60, 1)]
        );
    }

    #[test]
    fn filters_by_actor_action_and_time() {
        let t = trail();
        let mut q = AuditQuery::new(t.me);
        q.actors = vec![t.gp];
        assert_eq!(times(&query(&t.events, &q)), vec![(90, 1), (70, 1)]);
        q.actions = vec![Action::Edit];
        assert_eq!(times(&query(&t.events, &q)), vec![(90, 1)]);
        let mut q = AuditQuery::new(t.me);
        q.actors = vec![t.replica];
        q.since = Some(40);
        q.until = Some(80);
        // Only the replica's reads are shown, so all three are one run.
        assert_eq!(times(&query(&t.events, &q)), vec![(40, 3)]);
        q.group_sync = false;
        assert_eq!(
            times(&query(&t.events, &q)),
            vec![(80, 1), (50, 1), (40, 1)]
        );
    }

    #[test]
    fn pages_cover_every_row_once() {
        let t = trail();
        let mut q = AuditQuery::new(t.me);
        q.own = Own::Include;
        q.group_sync = false;
        q.limit = 4;
        let mut seen = Vec::new();
        for page in 1..=3 {
            q.page = page;
            let p = query(&t.events, &q);
            assert_eq!(p.pages(), 3);
            seen.extend(times(&p));
        }
        assert_eq!(seen.len(), 9);
        assert_eq!(seen.first(), Some(&(90, 1)));
        assert_eq!(seen.last(), Some(&(10, 1)));
        q.page = 4;
        assert!(query(&t.events, &q).rows.is_empty());
        // A limit of 0 is read as 1; page 0 as page 1.
        q.limit = 0;
        q.page = 0;
        assert_eq!(query(&t.events, &q).rows.len(), 1);
    }
}
