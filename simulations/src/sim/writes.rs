//! Scripted writes, grants and revocations at a node, through the one gate
//! (`Record::prepare_sealed`, as a node writes: sealed, with the key management a grant,
//! revocation or new stream needs; and the store's `write`), and the ground truth they
//! build: every entry an honest node wrote, applied to one `Record` in the order written.

use cophr_protocol::access::Grant;
use cophr_protocol::category::Category;
use cophr_protocol::entry::Payload;
use cophr_protocol::record::{Record, Rejection};
use cophr_protocol::{ActorId, EntryId, RecordId};

use super::{Event, NodeId, Replica, Revocation, Sim};
use crate::body;

/// What a scripted write does.
#[derive(Debug, Clone)]
pub(crate) enum WriteKind {
    Create(Category),
    /// Amend the writer's latest version in the category (a create if there is none).
    AmendOwn(Category),
    /// Annotate the latest entry by someone else in the category.
    Annotate(Category),
    Grant(Grant),
}

/// What a scripted write must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Ok,
    Refused,
    Any,
    /// Refused once the writer's replica holds a revocation that cuts it.
    RefusedIfRevoked,
    /// A member of an organisation writing under its grant: skipped until its replica
    /// holds its join, refused once it holds the member's removal, allowed otherwise.
    Member,
}

/// The latest create or amend in category `c` whose author is (`mine`) or is not `me`.
fn latest_item(r: &Record, me: &ActorId, c: &Category, mine: bool) -> Option<EntryId> {
    r.entries()
        .filter(|e| {
            (e.entry().author == *me) == mine
                && r.category_of(&e.id()) == Some(c)
                && (e.entry().payload.is_create() || e.entry().payload.is_amend())
        })
        .map(|e| e.id())
        .last()
}

/// The payload a scripted write makes, from the writer's replica.
fn payload_of(r: &Record, me: &ActorId, what: &WriteKind, seed: u64) -> Payload {
    let create = |c: &Category| Payload::Create {
        category: c.clone(),
        body: body::body(c, seed),
    };
    match what {
        WriteKind::Create(c) => create(c),
        WriteKind::AmendOwn(c) => match latest_item(r, me, c, true) {
            Some(target) => Payload::Amend {
                target,
                body: body::body(c, seed),
            },
            None => create(c),
        },
        WriteKind::Annotate(c) => match latest_item(r, me, c, false) {
            Some(target) => Payload::Annotate {
                target,
                text: "Seen; discussed at home.".into(),
            },
            None => create(c),
        },
        WriteKind::Grant(g) => Payload::Grant(g.clone()),
    }
}

impl Sim {
    /// Prepares and applies everything one action writes at `n`, recording it as truth.
    pub(super) fn commit(
        &mut self,
        n: NodeId,
        record: RecordId,
        payload: Payload,
    ) -> Result<Vec<EntryId>, Rejection> {
        let now = self.clock(n);
        let device = Some(format!(
            "{}-device",
            self.nodes[n].name.to_lowercase().replace(' ', "-")
        ));
        let vs = {
            let node = &self.nodes[n];
            let r = node.record(&record).ok_or(Rejection::NoGenesis)?;
            let policy = cophr_protocol::record::SealPolicy {
                seal_new_streams: true,
                history: true,
            };
            r.prepare_sealed(&node.key, payload, now, device, policy, &mut self.seal_rng)?
        };
        self.commit_prepared(n, record, vs)
    }

    /// Applies entries prepared at `n` (through the one gate), recording them as truth.
    pub(super) fn commit_prepared(
        &mut self,
        n: NodeId,
        record: RecordId,
        vs: Vec<cophr_protocol::Verified>,
    ) -> Result<Vec<EntryId>, Rejection> {
        let mut ids = Vec::new();
        for v in vs {
            let id = v.id();
            if let Err(e) = self.nodes[n].store.write(v.clone()) {
                self.violations.push(format!(
                    "{} could not apply an entry it had just prepared: {e}",
                    self.nodes[n].name
                ));
                return Err(e);
            }
            self.created.insert(id, self.now);
            let o = self
                .oracle
                .entry(record)
                .or_insert_with(|| Record::new(record));
            if let Err(e) = o.apply(v) {
                self.violations.push(format!(
                    "order dependence: {}'s replica accepted its own entry {} but the set of \
                     all entries written refuses it: {e}",
                    self.nodes[n].name,
                    id.short()
                ));
            }
            ids.push(id);
        }
        self.last_write = self.now;
        if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
            rep.dirty += 1;
        }
        self.changed(n, record, None);
        Ok(ids)
    }

    /// Whether `n`'s replica holds a revocation that cuts its actor.
    pub(super) fn knows_revoked(&self, n: NodeId, record: RecordId) -> bool {
        let me = self.nodes[n].actor();
        let Some(r) = self.nodes[n].record(&record) else {
            return false;
        };
        self.revocations
            .iter()
            .any(|rv| rv.record == record && rv.cuts.contains(&me) && r.contains(&rv.admin))
    }

    pub(super) fn write(&mut self, n: NodeId, record: RecordId, what: WriteKind, expect: Expect) {
        let Some(r) = self.nodes[n].record(&record).filter(|_| self.nodes[n].up) else {
            self.counters.writes_skipped += 1;
            return;
        };
        let me = self.nodes[n].actor();
        let revoked_known = self.knows_revoked(n, record);
        // A writer whose replica does not hold its grant yet (not synced since it was
        // granted) cannot write: skipped, not judged.
        let unsynced = me != record && r.grants_of(&me).is_empty();
        if unsynced && !revoked_known && matches!(expect, Expect::Ok | Expect::RefusedIfRevoked) {
            self.counters.writes_skipped += 1;
            return;
        }
        let joined = r.joined_members().iter().any(|m| m.member == me);
        let removed_known = Sim::removed_member_here(r, &me);
        if expect == Expect::Member && !joined {
            self.counters.writes_skipped += 1;
            return;
        }
        let seed = self.rng.below(u64::MAX);
        let payload = match self.nodes[n].record(&record) {
            Some(r) => payload_of(r, &me, &what, seed),
            None => return,
        };
        let result = self.commit(n, record, payload);
        if expect == Expect::Member {
            match &result {
                Ok(_) => self.org.member_writes.0 += 1,
                Err(_) => self.org.member_writes.1 += 1,
            }
        }
        let name = &self.nodes[n].name;
        let must_refuse = match expect {
            Expect::Refused => true,
            Expect::RefusedIfRevoked => revoked_known,
            Expect::Member => removed_known,
            _ => false,
        };
        match &result {
            Ok(_) => {
                self.counters.writes += 1;
                if must_refuse {
                    self.violations.push(format!(
                        "{name} wrote {what:?} although it may not (revoked known: {revoked_known})"
                    ));
                }
            }
            Err(e) => {
                self.counters.writes_refused += 1;
                if expect == Expect::Ok || (expect == Expect::Member && !must_refuse) {
                    self.violations.push(format!(
                        "{name}'s authorised write {what:?} was refused: {e}"
                    ));
                }
            }
        }
        if let (Ok(_), WriteKind::Grant(g)) = (&result, &what) {
            let grantee = self.nodes.iter().position(|x| x.actor() == g.grantee);
            if let Some(gn) = grantee {
                self.add_replica(gn, record);
            }
        }
    }

    /// `n` starts replicating `record` (it was told of a grant): first sync soon, then
    /// periodically.
    pub(crate) fn add_replica(&mut self, n: NodeId, record: RecordId) {
        if self.nodes[n].replicas.contains_key(&record) {
            return;
        }
        self.nodes[n]
            .replicas
            .insert(record, Replica::new(self.now));
        self.nodes[n].store.hold(record);
        let list = self.replicators.entry(record).or_default();
        if !list.contains(&n) {
            list.push(n);
        }
        let first = self.now + self.rng.range(1_000, 8_000);
        self.push(
            first,
            Event::Tick {
                node: n,
                record,
                periodic: true,
            },
        );
    }

    /// The patient's node starts its record with a genesis entry.
    pub(crate) fn genesis(&mut self, n: NodeId, role: &str) -> RecordId {
        let record = self.nodes[n].actor();
        self.nodes[n]
            .replicas
            .insert(record, Replica::new(self.now));
        self.nodes[n].store.hold(record);
        self.replicators.entry(record).or_default().push(n);
        self.patients.insert(record, n);
        let profile = cophr_protocol::testkit::profile(&self.nodes[n].name, role, None);
        if let Err(e) = self.commit(n, record, Payload::Genesis { profile }) {
            self.violations.push(format!("genesis refused: {e}"));
        }
        let first = self.now + self.rng.range(1_000, 8_000) + self.cfg.sync_every;
        self.push(
            first,
            Event::Tick {
                node: n,
                record,
                periodic: true,
            },
        );
        record
    }

    /// The grants `n` may revoke that name `target`, and every actor the revocation cuts
    /// (the grantee and grantees of grants delegated from them).
    fn revocable(
        &self,
        n: NodeId,
        record: RecordId,
        target: ActorId,
    ) -> (Vec<EntryId>, Vec<ActorId>) {
        let me = self.nodes[n].actor();
        let Some(r) = self.nodes[n].record(&record) else {
            return (Vec::new(), Vec::new());
        };
        let mut gs: Vec<EntryId> = r
            .grants()
            .filter(|g| g.grant.grantee == target && g.revoked_by.is_empty())
            .filter(|g| me == record || g.issuer == me)
            .map(|g| g.id)
            .collect();
        gs.sort();
        let mut cuts = vec![target];
        for g in r.grants() {
            let mut cur = g.parent;
            let mut depth = 0;
            while let (Some(p), true) = (cur, depth < 64) {
                if gs.contains(&p) && !cuts.contains(&g.grant.grantee) {
                    cuts.push(g.grant.grantee);
                }
                cur = r.grant(&p).and_then(|x| x.parent);
                depth += 1;
            }
        }
        cuts.sort();
        (gs, cuts)
    }

    pub(super) fn revoke(&mut self, n: NodeId, record: RecordId, grantee: NodeId) {
        if !self.nodes[n].up || !self.nodes[n].replicas.contains_key(&record) {
            self.counters.writes_skipped += 1;
            return;
        }
        let target = self.nodes[grantee].actor();
        let (grants, cuts) = self.revocable(n, record, target);
        for grant in grants {
            let payload = Payload::Revoke {
                grant,
                category: None,
                reason: "access ended".into(),
            };
            match self.commit(n, record, payload) {
                Ok(ids) => {
                    self.counters.writes += 1;
                    if let Some(admin) = ids.last() {
                        self.revocations.push(Revocation {
                            record,
                            admin: *admin,
                            cuts: cuts.clone(),
                        });
                    }
                }
                Err(e) => {
                    self.counters.writes_refused += 1;
                    self.violations
                        .push(format!("{} could not revoke: {e}", self.nodes[n].name));
                }
            }
        }
    }
}
