//! The invariants checked at the end of every run, against the ground truth (every entry an
//! honest node wrote, applied in the order written).

use std::collections::BTreeSet;

use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId, RecordId};

use crate::sim::{Role, Sim, EPOCH};

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
    pub concurrent_kept: std::collections::BTreeMap<String, usize>,
    /// (replica, entry it may see) pairs checked.
    pub pairs: usize,
    /// Entries written in good faith by a node that has no access at the end (its grant
    /// became void through a concurrent revocation above it): every peer refuses its pushes
    /// with the standard "no access", so they stay on that node.
    pub stranded: usize,
    /// Nodes that replicate a record but have no access to it at the end.
    pub cut_off: Vec<String>,
}

/// At most this many failures are kept per invariant.
const KEEP: usize = 12;

fn fail(c: &mut Check, msg: String) {
    if c.failures.len() < KEEP {
        c.failures.push(msg);
    } else if c.failures.len() == KEEP {
        c.failures.push("…".into());
    }
}

/// Revoke entries that cut `actor`'s access: revocations of its grants or of any grant
/// above them in their delegation chains.
fn cuts_of(o: &Record, actor: &ActorId) -> Vec<EntryId> {
    let mut out = BTreeSet::new();
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
    let mut written = Check {
        name: "the home host holds every entry written",
        ..Default::default()
    };
    let mut complete = Check {
        name: "every replica holds every entry it may see",
        ..Default::default()
    };
    let mut private = Check {
        name: "no node holds an entry it may not see (nothing after a revocation's cut)",
        ..Default::default()
    };
    let mut forged = Check {
        name: "no forged or unauthorised entry is held anywhere",
        ..Default::default()
    };
    let mut agree = Check {
        name: "replicas agree with the home host (same visible frontier)",
        ..Default::default()
    };
    let mut hosts = Check {
        name: "hosts hold only records they host (the old host released a moved record)",
        ..Default::default()
    };
    let mut hostile = Check {
        name: "every hostile attempt was refused",
        ..Default::default()
    };
    let mut rules = Check {
        name: "writes were allowed and refused as the grants say; no order dependence",
        ..Default::default()
    };
    let mut out = Checks::default();
    let now = EPOCH + sim.now;

    let home_of = |record: &RecordId| -> Option<usize> {
        let p = sim.directory.get(record)?;
        sim.nodes.iter().position(|n| n.peer == p.pointer.host)
    };

    for (record, o) in &sim.oracle {
        let short = record.short();
        let home = home_of(record);
        let Some(h) = home else {
            fail(&mut written, format!("record {short} has no home host"));
            continue;
        };
        let Some(hr) = sim.nodes[h].replicas.get(record) else {
            fail(
                &mut written,
                format!("{} (home of {short}) does not hold it", sim.nodes[h].name),
            );
            continue;
        };
        // Authors with no access at the end cannot push: their entries are reported as
        // stranded, not required at the home host or the other replicas.
        let may_push = |a: &ActorId| *a == *record || o.viewer(a, now).has_access();
        let stranded: BTreeSet<EntryId> = o
            .entries()
            .filter(|e| !hr.record.contains(&e.id()) && !may_push(&e.entry().author))
            .map(|e| e.id())
            .collect();
        out.stranded += stranded.len();
        let missing = o
            .entries()
            .filter(|e| !hr.record.contains(&e.id()) && !stranded.contains(&e.id()))
            .count();
        if missing > 0 {
            fail(
                &mut written,
                format!(
                    "{} (home of {short}) lacks {missing} of {} entries",
                    sim.nodes[h].name,
                    o.len()
                ),
            );
        }
        for (i, node) in sim.nodes.iter().enumerate() {
            let Some(r) = node.replicas.get(record) else {
                continue;
            };
            if node.role == Role::Host {
                if i != h {
                    fail(
                        &mut hosts,
                        format!(
                            "{} still holds {short} (home: {})",
                            node.name, sim.nodes[h].name
                        ),
                    );
                }
                for e in r.record.entries() {
                    if !o.contains(&e.id()) {
                        fail(
                            &mut forged,
                            format!(
                                "host {} holds {} that no honest node wrote",
                                node.name,
                                e.id().short()
                            ),
                        );
                    }
                }
                continue;
            }
            let actor = node.actor();
            let v = o.viewer(&actor, now);
            let cuts = cuts_of(o, &actor);
            // Privacy, and nothing but what honest nodes wrote.
            for e in r.record.entries() {
                let id = e.id();
                if !o.contains(&id) {
                    fail(
                        &mut forged,
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
                        &mut private,
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
            if node.role == Role::Hostile {
                continue;
            }
            if !may_push(&actor) {
                out.cut_off.push(format!("{} ({short})", node.name));
                continue;
            }
            // Completeness.
            let mut lacks = 0;
            for e in o.entries() {
                if stranded.contains(&e.id()) {
                    continue;
                }
                if o.can_see(&v, &e.id()) {
                    out.pairs += 1;
                    if !r.record.contains(&e.id()) {
                        lacks += 1;
                    }
                }
            }
            if lacks > 0 {
                fail(
                    &mut complete,
                    format!("{} lacks {lacks} entries of {short} it may see", node.name),
                );
            }
            // Agreement on the visible frontier.
            let mine = r.record.visible_frontier(&r.record.viewer(&actor, now));
            let theirs = hr.record.visible_frontier(&hr.record.viewer(&actor, now));
            if mine != theirs {
                fail(
                    &mut agree,
                    format!(
                        "{}'s visible frontier of {short} differs from {}'s",
                        node.name, sim.nodes[h].name
                    ),
                );
            }
        }
    }
    // Records held that no honest node ever wrote into.
    for node in &sim.nodes {
        for (record, r) in &node.replicas {
            if !sim.oracle.contains_key(record) && !r.record.is_empty() {
                fail(
                    &mut forged,
                    format!("{} holds an unknown record {}", node.name, record.short()),
                );
            }
        }
    }
    for node in &sim.nodes {
        for id in &sim.forged {
            if node.replicas.values().any(|r| r.record.contains(id)) {
                fail(
                    &mut forged,
                    format!("{} holds forged entry {}", node.name, id.short()),
                );
            }
        }
    }
    for a in &sim.attacks {
        if a.refused == Some(false) {
            fail(
                &mut hostile,
                format!("{} ({}) succeeded", a.kind.name(), a.detail),
            );
        }
    }
    for v in &sim.violations {
        if v.contains("hostile") || v.contains("was not refused") || v.contains("accepted twice") {
            continue;
        }
        fail(&mut rules, v.clone());
    }
    out.checks = vec![
        written, complete, private, forged, agree, hosts, hostile, rules,
    ];
    out
}
