//! The invariants checked at the end of every run, against the ground truth (every entry an
//! honest node wrote, applied in the order written) and what honest servers sent on the
//! wire.

use std::collections::{BTreeMap, BTreeSet};

use cophr_protocol::audit::{Action, SignedAudit};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId, RecordId};

use crate::sim::{NodeId, Role, Sim, EPOCH};

/// One invariant: its name and what broke it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Check {
    pub name: &'static str,
    pub failures: Vec<String>,
}

/// The result of checking.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    pub checks: Vec<Check>,
    /// Entries a revoked replica holds that were written concurrently with its revocation
    /// and reached it before the revocation reached the node that served it.
    pub concurrent_kept: BTreeMap<String, usize>,
    /// (replica, entry it may see) pairs checked.
    pub pairs: usize,
    /// Entries written in good faith by a node that has no access at the end (its grant
    /// became void through a concurrent revocation above it): every peer refuses its pushes
    /// with the standard "no access", so they stay on that node.
    pub stranded: usize,
    /// Nodes that replicate a record but have no access to it at the end.
    pub cut_off: Vec<String>,
    /// (server, entry, actor) reads served by honest servers, and the served-read audit
    /// events those servers signed, that the audit invariant compared.
    pub audit: (usize, usize),
}

/// At most this many failures are kept per invariant.
const KEEP: usize = 12;

pub(crate) fn fail(c: &mut Check, msg: String) {
    if c.failures.len() < KEEP {
        c.failures.push(msg);
    } else if c.failures.len() == KEEP {
        c.failures.push("…".into());
    }
}

pub(crate) fn named(name: &'static str) -> Check {
    Check {
        name,
        failures: Vec::new(),
    }
}

/// Every invariant, by name.
struct All {
    written: Check,
    complete: Check,
    private: Check,
    forged: Check,
    agree: Check,
    hosts: Check,
    hostile: Check,
    rules: Check,
    audit: Check,
    sealed: Check,
}

/// Revoke entries that cut `actor`'s access: revocations of its grants or of any grant
/// above them in their delegation chains; and the removal of a member of an organisation
/// (a device removal, its parts).
fn cuts_of(o: &Record, actor: &ActorId) -> Vec<EntryId> {
    let mut out = BTreeSet::new();
    for e in o.entries() {
        if matches!(&e.entry().payload,
            cophr_protocol::entry::Payload::RemoveDevice { device, .. } if device == actor)
        {
            out.insert(e.id());
        }
    }
    for g in o.grants().filter(|g| g.grant.grantee == *actor) {
        let mut cur = Some(g.id);
        let mut depth = 0;
        while let (Some(id), true) = (cur, depth < 64) {
            let Some(info) = o.grant(&id) else { break };
            out.extend(info.revoked_by.iter().copied());
            cur = info.parent;
            depth += 1;
        }
    }
    out.into_iter().collect()
}

pub(crate) fn check(sim: &mut Sim) -> Checks {
    let mut all = All {
        written: named("the home host holds every entry written"),
        complete: named("every replica holds every entry it may see"),
        private: named("no node holds an entry it may not see (nothing after a revocation's cut)"),
        forged: named("no forged or unauthorised entry is held anywhere"),
        agree: named("replicas agree with the home host (same visible frontier)"),
        hosts: named("hosts hold only records they host (the old host released a moved record)"),
        hostile: named("every hostile attempt was refused"),
        rules: named("writes were allowed and refused as the grants say; no order dependence"),
        audit: named(
            "honest servers audited exactly the entries they served, for the proven actor",
        ),
        sealed: named(
            "sealed content: hosts open nothing, a revoked party opens nothing written after its \
             revocation (even holding every entry), nothing honest is flagged",
        ),
    };
    let mut out = Checks::default();
    // Which nodes hold each record, in node order (one pass over the stores, so a city of
    // records is checked in time that grows with the replicas, not records × nodes).
    let mut holders: BTreeMap<RecordId, Vec<NodeId>> = BTreeMap::new();
    for (i, node) in sim.nodes.iter().enumerate() {
        for r in node.store.records() {
            holders.entry(r.id()).or_default().push(i);
        }
    }
    for (record, o) in &sim.oracle {
        let held = holders.get(record).map_or(&[][..], Vec::as_slice);
        check_record(sim, record, o, held, &mut all, &mut out);
    }
    let city = crate::city::check(sim, &holders);
    let orgs = crate::org::check(sim, &holders);
    check_unknown(sim, &mut all.forged);
    for a in &sim.attacks {
        if a.refused == Some(false) {
            fail(
                &mut all.hostile,
                format!("{} ({}) succeeded", a.kind.name(), a.detail),
            );
        }
    }
    for v in &sim.violations {
        if v.contains("hostile") || v.contains("was not refused") || v.contains("accepted twice") {
            continue;
        }
        fail(&mut all.rules, v.clone());
    }
    out.audit = check_audit(sim, &mut all.audit);
    out.checks = vec![
        all.written,
        all.complete,
        all.private,
        all.forged,
        all.agree,
        all.hosts,
        all.hostile,
        all.rules,
        all.sealed,
        all.audit,
    ];
    out.checks.extend(city);
    out.checks.extend(orgs);
    out
}

/// The sealing invariants for one node's copy of a record.
fn check_sealed(sim: &Sim, n: NodeId, r: &Record, o: &Record, sealed: &mut Check) {
    use cophr_protocol::record::ContentState;
    let node = &sim.nodes[n];
    for e in r.entries() {
        match r.content_state(&e.id()) {
            Some(ContentState::Opened) if node.role == Role::Host => fail(
                sealed,
                format!("host {} opened {}", node.name, e.id().short()),
            ),
            Some(ContentState::Flagged(why)) if o.contains(&e.id()) => fail(
                sealed,
                format!(
                    "{} flagged {}, written by an honest node: {why}",
                    node.name,
                    e.id().short()
                ),
            ),
            _ => {}
        }
    }
    let cuts = cuts_of(o, &node.actor());
    if cuts.is_empty() || node.role == Role::Host {
        return;
    }
    // Everything any honest node wrote, unlocked with the revoked party's key: as if every
    // entry had leaked to it. (What it may see again — granted anew, with the history —
    // it may open.)
    let mut leaked = o.clone();
    leaked.unlock(&node.key);
    let now = o.viewer(&node.actor(), EPOCH + sim.now);
    for e in o.entries() {
        let id = e.id();
        if e.entry().payload.sealed().is_none()
            || !cuts.iter().any(|c| o.in_past(c, &id))
            || o.can_see(&now, &id)
        {
            continue;
        }
        if leaked.content_state(&id) == Some(ContentState::Opened) {
            fail(
                sealed,
                format!(
                    "{} (revoked) opens {} ({}), written after its revocation",
                    node.name,
                    id.short(),
                    e.entry().payload.kind()
                ),
            );
        }
    }
}

/// One record at its home host and at every node that holds it (`holders`, in node order).
fn check_record(
    sim: &Sim,
    record: &RecordId,
    o: &Record,
    holders: &[NodeId],
    all: &mut All,
    out: &mut Checks,
) {
    let now = EPOCH + sim.now;
    let short = record.short();
    let home = sim
        .directory
        .get(record)
        .and_then(|p| sim.node_of_peer(&p.pointer.host));
    let Some(h) = home else {
        fail(&mut all.written, format!("record {short} has no home host"));
        return;
    };
    let Some(hr) = sim.nodes[h].record(record) else {
        fail(
            &mut all.written,
            format!("{} (home of {short}) does not hold it", sim.nodes[h].name),
        );
        return;
    };
    // Authors with no access at the end cannot push: their entries are reported as
    // stranded, not required at the home host or the other replicas.
    let may_push = |a: &ActorId| *a == *record || o.viewer(a, now).has_access();
    let stranded: BTreeSet<EntryId> = o
        .entries()
        .filter(|e| !hr.contains(&e.id()) && !may_push(&e.entry().author))
        .map(|e| e.id())
        .collect();
    out.stranded += stranded.len();
    let missing = o
        .entries()
        .filter(|e| !hr.contains(&e.id()) && !stranded.contains(&e.id()))
        .count();
    if missing > 0 {
        fail(
            &mut all.written,
            format!(
                "{} (home of {short}) lacks {missing} of {} entries",
                sim.nodes[h].name,
                o.len()
            ),
        );
    }
    for &i in holders {
        let node = &sim.nodes[i];
        let Some(r) = node.record(record) else {
            continue;
        };
        check_sealed(sim, i, r, o, &mut all.sealed);
        if node.role == Role::Host {
            check_host_copy(sim, i, h, r, o, all);
            continue;
        }
        check_privacy(sim, i, r, o, all, out);
        if node.role == Role::Hostile {
            continue;
        }
        if !may_push(&node.actor()) {
            out.cut_off.push(format!("{} ({short})", node.name));
            continue;
        }
        check_replica(sim, (i, r), (h, hr), o, &stranded, all, out);
    }
}

/// A host's copy of a record: only at its home host, and only entries honest nodes wrote.
fn check_host_copy(sim: &Sim, n: NodeId, home: NodeId, r: &Record, o: &Record, all: &mut All) {
    let name = &sim.nodes[n].name;
    if n != home {
        fail(
            &mut all.hosts,
            format!(
                "{name} still holds {} (home: {})",
                o.id().short(),
                sim.nodes[home].name
            ),
        );
    }
    for e in r.entries() {
        if !o.contains(&e.id()) {
            fail(
                &mut all.forged,
                format!(
                    "host {name} holds {} that no honest node wrote",
                    e.id().short()
                ),
            );
        }
    }
}

/// An honest replica with access: it holds every entry it may see (but those stranded),
/// and its visible frontier is the home host's for the same actor.
fn check_replica(
    sim: &Sim,
    (n, r): (NodeId, &Record),
    (h, hr): (NodeId, &Record),
    o: &Record,
    stranded: &BTreeSet<EntryId>,
    all: &mut All,
    out: &mut Checks,
) {
    let now = EPOCH + sim.now;
    let (name, short) = (&sim.nodes[n].name, o.id().short());
    let actor = sim.nodes[n].actor();
    let v = o.viewer(&actor, now);
    let mut lacks = 0;
    for e in o.entries() {
        if !stranded.contains(&e.id()) && o.can_see(&v, &e.id()) {
            out.pairs += 1;
            lacks += usize::from(!r.contains(&e.id()));
        }
    }
    if lacks > 0 {
        fail(
            &mut all.complete,
            format!("{name} lacks {lacks} entries of {short} it may see"),
        );
    }
    let mine = r.visible_frontier(&r.viewer(&actor, now));
    let theirs = hr.visible_frontier(&hr.viewer(&actor, now));
    if mine != theirs {
        fail(
            &mut all.agree,
            format!(
                "{name}'s visible frontier of {short} differs from {}'s",
                sim.nodes[h].name
            ),
        );
    }
}

/// Privacy, and nothing but what honest nodes wrote, at one non-host node's replica `r`.
fn check_privacy(sim: &Sim, n: NodeId, r: &Record, o: &Record, all: &mut All, out: &mut Checks) {
    let node = &sim.nodes[n];
    let actor = node.actor();
    let v = o.viewer(&actor, EPOCH + sim.now);
    let cuts = cuts_of(o, &actor);
    for e in r.entries() {
        let id = e.id();
        if !o.contains(&id) {
            fail(
                &mut all.forged,
                format!(
                    "{} holds {} that no honest node wrote",
                    node.name,
                    id.short()
                ),
            );
            continue;
        }
        if o.can_see(&v, &id) {
            continue;
        }
        let after_cut = cuts.iter().any(|c| o.in_past(c, &id));
        if cuts.is_empty() || after_cut {
            fail(
                &mut all.private,
                format!(
                    "{} holds {} ({}) it may not see{}",
                    node.name,
                    id.short(),
                    e.entry().payload.kind(),
                    if after_cut {
                        ", written after its revocation"
                    } else {
                        ""
                    }
                ),
            );
        } else {
            *out.concurrent_kept.entry(node.name.clone()).or_default() += 1;
        }
    }
}

/// Records no honest node wrote into, and forged entries, held anywhere.
fn check_unknown(sim: &Sim, forged: &mut Check) {
    for node in &sim.nodes {
        for r in node.store.records() {
            if !sim.oracle.contains_key(&r.id()) && !r.is_empty() {
                fail(
                    forged,
                    format!("{} holds an unknown record {}", node.name, r.id().short()),
                );
            }
        }
        for id in &sim.forged {
            if node.store.records().any(|r| r.contains(id)) {
                fail(
                    forged,
                    format!("{} holds forged entry {}", node.name, id.short()),
                );
            }
        }
    }
}

/// Audit of served reads. For every honest server: each entry it sent to a peer in an
/// `Entries` response (as decoded from the wire) is named by a served-read audit event it
/// signed (checked again from its bytes) for the actor the request proved; and each such
/// event names only entries it sent to that actor. A record the server removed after a
/// move counts with the trail it held then. Returns the reads and events compared.
fn check_audit(sim: &Sim, c: &mut Check) -> (usize, usize) {
    type Key = (NodeId, RecordId, ActorId);
    let mut audited: BTreeMap<Key, BTreeSet<EntryId>> = BTreeMap::new();
    let mut events = 0;
    for (n, node) in sim.nodes.iter().enumerate() {
        if !node.honest() {
            continue;
        }
        // Its own served-read events exist only for records it held: held now, or removed
        // (kept aside as retired).
        let records: BTreeSet<RecordId> = node
            .store
            .retired_records()
            .copied()
            .chain(node.store.records().map(Record::id))
            .collect();
        for record in records {
            let held = node.store.audit_events(&record);
            let trail = held.into_iter().chain(node.store.retired(&record));
            for e in trail.filter(|e| e.event.node == node.audit_signer) {
                let ok = SignedAudit::decode(e.bytes()).is_ok_and(|d| d.event == e.event);
                if !ok || e.event.record != record || e.event.action != Action::View {
                    fail(
                        c,
                        format!(
                            "{} holds its own audit event {} of {} that does not verify or \
                             is not a served read",
                            node.name,
                            e.event.seq,
                            record.short()
                        ),
                    );
                    continue;
                }
                events += 1;
                audited
                    .entry((n, record, e.event.actor))
                    .or_default()
                    .extend(e.event.entries.iter().copied());
            }
        }
    }
    let keys: BTreeSet<&Key> = sim.served.keys().chain(audited.keys()).collect();
    let none = BTreeSet::new();
    let mut reads = 0;
    for key @ (n, record, actor) in keys {
        let served = sim.served.get(key).unwrap_or(&none);
        let logged = audited.get(key).unwrap_or(&none);
        reads += served.len();
        let name = |a: &ActorId| {
            let node = sim.nodes.iter().find(|x| x.actor() == *a);
            node.map_or_else(|| a.short(), |x| x.name.clone())
        };
        let who = |what: &str, k: usize| {
            format!(
                "{} {what} {k} entries of {}'s record to {}",
                sim.nodes[*n].name,
                name(record),
                name(actor)
            )
        };
        let unaudited = served.difference(logged).count();
        if unaudited > 0 {
            fail(c, who("served without an audit event", unaudited));
        }
        let unserved = logged.difference(served).count();
        if unserved > 0 {
            fail(c, who("audited as served, but never sent,", unserved));
        }
    }
    (reads, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scenario, Options, Scenario, Size};

    fn audit_failures(sim: &mut Sim) -> Vec<String> {
        let checks = check(sim);
        let audit = checks.checks.last().expect("the audit invariant");
        assert!(audit.name.contains("audited"), "{}", audit.name);
        audit.failures.clone()
    }

    /// The audit invariant holds on a run, and fails when a served read has no audit
    /// event, or an audit event names a read that was never served.
    #[test]
    fn the_audit_invariant_sees_unaudited_and_unserved_reads() {
        let mut sim = scenario::build(Scenario::Acceptance, 1, Size::Small, Options::default());
        sim.run();
        assert_eq!(audit_failures(&mut sim), Vec::<String>::new());
        let (key, ids) = sim
            .served
            .iter()
            .next()
            .map(|(k, v)| (*k, v.clone()))
            .expect("something was served");
        // A read the server sent but did not audit.
        let unaudited = EntryId([7; 32]);
        sim.served.entry(key).or_default().insert(unaudited);
        let f = audit_failures(&mut sim);
        assert!(
            f.len() == 1 && f[0].contains("served without an audit event 1 entries"),
            "{f:?}"
        );
        // A read the server audited but never sent.
        sim.served
            .insert(key, ids.iter().skip(1).copied().collect());
        let f = audit_failures(&mut sim);
        assert!(
            f.len() == 1 && f[0].contains("audited as served, but never sent, 1 entries"),
            "{f:?}"
        );
    }
}
