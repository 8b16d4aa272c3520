//! The scenarios: who the nodes are, who grants what, and a timeline of writes, faults,
//! moves, revocations and attacks, all drawn from the seed.

use cophr_protocol::access::Level;
use cophr_protocol::category::Category;
use cophr_protocol::testkit::grant;
use cophr_protocol::RecordId;

use crate::net::Faults;
use crate::sim::{Act, Attack, Config, Expect, MemberOp, NodeId, Role, Sim, WriteKind};
use crate::{Options, Scenario, Size, Time};

const S: Time = 1000;
const MIN: Time = 60 * S;

pub(crate) fn build(scenario: Scenario, seed: u64, size: Size, options: Options) -> Sim {
    match scenario {
        Scenario::Acceptance => acceptance(seed, size),
        Scenario::Scale => scale(seed, size, options),
        Scenario::Churn => churn(seed, size),
        Scenario::Partition => partition(seed, size),
        Scenario::Loss => loss(seed, size),
        Scenario::Revocation => revocation(seed, size),
        Scenario::City => city(seed, size, options),
        Scenario::Organisation => organisation(seed, size),
    }
}

fn config(active: Time, settle: Time, sync_every: Time, sample_every: Time) -> Config {
    Config {
        sync_every,
        sync_jitter: sync_every / 5,
        timeout: 10 * S,
        sample_every,
        pull_limit: 64,
        push_batch: 64,
        heal: active,
        end: active + settle,
    }
}

fn pick(size: Size, small: Time, full: Time) -> Time {
    match size {
        Size::Small => small,
        Size::Full => full,
    }
}

/// George's family and care team (BRIEF, "The acceptance scenario"), a hostile node, hosts,
/// and `extras` more patients who share with some of the same providers.
struct Family {
    george: NodeId,
    mary: NodeId,
    patricia: NodeId,
    alex: NodeId,
    homecare: NodeId,
    consultant: NodeId,
    nurse: NodeId,
    pharmacist: NodeId,
    mallory: NodeId,
    hosts: Vec<NodeId>,
    record: RecordId,
    extras: Vec<(NodeId, RecordId)>,
}

const EXTRA: [&str; 8] = [
    "Edith", "Frank", "Grace", "Harold", "Ivy", "Jack", "Kath", "Len",
];

fn write(sim: &mut Sim, at: Time, node: NodeId, record: RecordId, what: WriteKind, expect: Expect) {
    sim.at(
        at,
        Act::Write {
            node,
            record,
            what,
            expect,
        },
    );
}

fn create(c: Category) -> WriteKind {
    WriteKind::Create(c)
}

/// Grants from `issuer`'s node to `grantee`'s actor.
#[allow(clippy::too_many_arguments)]
fn grant_at(
    sim: &mut Sim,
    at: Time,
    issuer: NodeId,
    record: RecordId,
    grantee: NodeId,
    level: Level,
    cats: &[Category],
    audit: bool,
    delegate: bool,
    expect: Expect,
) {
    let g = grant(&sim.nodes[grantee].key, level, cats, audit, delegate);
    write(sim, at, issuer, record, WriteKind::Grant(g), expect);
}

/// Writes by `node` from `from` to `to`, about every `mean`, cycling through `kinds`.
#[allow(clippy::too_many_arguments)]
fn writes(
    sim: &mut Sim,
    node: NodeId,
    record: RecordId,
    from: Time,
    to: Time,
    mean: Time,
    kinds: &[WriteKind],
    expect: Expect,
) {
    let mut t = from + sim.rng.range(0, mean);
    let mut k = 0;
    while t < to {
        write(sim, t, node, record, kinds[k % kinds.len()].clone(), expect);
        t += sim.rng.range(mean / 2, mean * 3 / 2);
        k += 1;
    }
}

/// George's family, providers and hosts, and the extra patients: nodes, records and grants.
fn family(sim: &mut Sim, extras: usize, hosts: usize) -> Family {
    let (mut f, extra_nodes) = add_family(sim, extras, hosts);
    george_writes_and_hosts(sim, &f);
    let mut t = 10 * S;
    family_grants(sim, &f, &mut t);
    provider_grants(sim, &f, &mut t);
    f.extras = extra_patients(sim, &f, &extra_nodes);
    f
}

/// What home care may write: vital signs, wound care (procedures) and blood-test requests
/// (lab results).
const HOME_CARE: [Category; 3] = [
    Category::VitalSigns,
    Category::Procedures,
    Category::LabResults,
];
/// What the pharmacist sees: problems, medications and allergies.
const PHARMACY: [Category; 3] = [
    Category::Problems,
    Category::Medications,
    Category::Allergies,
];

/// The next grant time: two seconds after the last.
fn next_grant(t: &mut Time) -> Time {
    *t += 2 * S;
    *t
}

/// Adds the family's nodes, the hosts and the extra patients, and George's record (its
/// genesis); the family (no extra records yet) and the extra patients' nodes.
fn add_family(sim: &mut Sim, extras: usize, hosts: usize) -> (Family, Vec<NodeId>) {
    let george = sim.add_node("George", Role::Patient);
    let mary = sim.add_node("Mary", Role::Carer);
    let patricia = sim.add_node("Patricia", Role::Family);
    let alex = sim.add_node("Alex", Role::Family);
    let homecare = sim.add_node("Home care", Role::Provider);
    let consultant = sim.add_node("Renal consultant", Role::Provider);
    let nurse = sim.add_node("Diabetes nurse", Role::Provider);
    let pharmacist = sim.add_node("Pharmacist", Role::Provider);
    let mallory = sim.add_node("Mallory", Role::Hostile);
    let hosts: Vec<NodeId> = (1..=hosts)
        .map(|i| sim.add_node(&format!("Host {i}"), Role::Host))
        .collect();
    let extra_nodes: Vec<NodeId> = EXTRA
        .iter()
        .take(extras)
        .map(|n| sim.add_node(n, Role::Patient))
        .collect();

    // George's record: his genesis and what he knows about himself, then hosting, then grants.
    let record = sim.genesis(george, "patient");
    let f = Family {
        george,
        mary,
        patricia,
        alex,
        homecare,
        consultant,
        nurse,
        pharmacist,
        mallory,
        hosts,
        record,
        extras: Vec::new(),
    };
    (f, extra_nodes)
}

/// George writes what he knows about himself, then has his record hosted by the first host.
fn george_writes_and_hosts(sim: &mut Sim, f: &Family) {
    let (george, record) = (f.george, f.record);
    for c in [
        Category::Problems,
        Category::Problems,
        Category::Problems,
        Category::Medications,
        Category::Medications,
        Category::Allergies,
        Category::AboutMe,
    ] {
        write(sim, 0, george, record, create(c), Expect::Ok);
    }
    sim.at(
        S,
        Act::Host {
            node: george,
            record,
            to: f.hosts[0],
        },
    );
}

/// George's grants to his family: Mary everything, the children a view.
fn family_grants(sim: &mut Sim, f: &Family, t: &mut Time) {
    let (george, record) = (f.george, f.record);
    let all: &[Category] = &[];
    // Mary: full access, the audit trail, and the right to delegate.
    grant_at(
        sim,
        next_grant(t),
        george,
        record,
        f.mary,
        Level::Delete,
        all,
        true,
        true,
        Expect::Ok,
    );
    // The children view everything and the audit trail, and write nothing.
    for child in [f.patricia, f.alex] {
        grant_at(
            sim,
            next_grant(t),
            george,
            record,
            child,
            Level::View,
            all,
            true,
            false,
            Expect::Ok,
        );
    }
}

/// George's grants to his providers, and to the app that went rogue.
fn provider_grants(sim: &mut Sim, f: &Family, t: &mut Time) {
    let (george, record) = (f.george, f.record);
    let all: &[Category] = &[];
    // Home care: vital signs, wound care (procedures) and blood-test requests (lab results).
    grant_at(
        sim,
        next_grant(t),
        george,
        record,
        f.homecare,
        Level::Write,
        &HOME_CARE,
        false,
        false,
        Expect::Ok,
    );
    // The consultant and the nurse see and write everything, without the audit trail.
    for c in [f.consultant, f.nurse] {
        grant_at(
            sim,
            next_grant(t),
            george,
            record,
            c,
            Level::Write,
            all,
            false,
            false,
            Expect::Ok,
        );
    }
    // The pharmacist sees problems, medications and allergies.
    grant_at(
        sim,
        next_grant(t),
        george,
        record,
        f.pharmacist,
        Level::View,
        &PHARMACY,
        false,
        false,
        Expect::Ok,
    );
    // A fitness app George tried, since gone rogue: allergies only.
    grant_at(
        sim,
        next_grant(t),
        george,
        record,
        f.mallory,
        Level::View,
        &[Category::Allergies],
        false,
        false,
        Expect::Ok,
    );
}

/// The extra patients' records: each written, hosted and granted to two of George's
/// providers.
fn extra_patients(sim: &mut Sim, f: &Family, extra_nodes: &[NodeId]) -> Vec<(NodeId, RecordId)> {
    let providers = [f.homecare, f.consultant, f.nurse, f.pharmacist];
    let all: &[Category] = &[];
    let mut extra_records = Vec::new();
    for (i, &p) in extra_nodes.iter().enumerate() {
        let r = sim.genesis(p, "patient");
        write(sim, 0, p, r, create(Category::Problems), Expect::Ok);
        write(sim, 0, p, r, create(Category::Medications), Expect::Ok);
        sim.at(
            2 * S,
            Act::Host {
                node: p,
                record: r,
                to: f.hosts[(i + 1) % f.hosts.len()],
            },
        );
        for (j, k) in sim.rng.sample(providers.len(), 2).into_iter().enumerate() {
            let (level, cats): (Level, &[Category]) = match providers[k] {
                x if x == f.pharmacist => (Level::View, &PHARMACY),
                x if x == f.homecare => (Level::Write, &HOME_CARE),
                _ => (Level::Write, all),
            };
            let at = 12 * S + 2 * S * j as Time;
            grant_at(
                sim,
                at,
                p,
                r,
                providers[k],
                level,
                cats,
                false,
                false,
                Expect::Ok,
            );
        }
        extra_records.push((p, r));
    }
    extra_records
}

/// Everyday writing in George's record and the extra patients' records.
fn everyday(sim: &mut Sim, f: &Family, from: Time, to: Time, scale: Time) {
    use Category::*;
    let r = f.record;
    writes(
        sim,
        f.mary,
        r,
        from,
        to,
        4 * scale,
        &[create(VitalSigns)],
        Expect::Ok,
    );
    writes(
        sim,
        f.homecare,
        r,
        from,
        to,
        6 * scale,
        &[create(VitalSigns), create(Procedures), create(LabResults)],
        Expect::RefusedIfRevoked,
    );
    writes(
        sim,
        f.consultant,
        r,
        from,
        to,
        8 * scale,
        &[
            create(Problems),
            create(LabResults),
            WriteKind::AmendOwn(Problems),
        ],
        Expect::Ok,
    );
    writes(
        sim,
        f.nurse,
        r,
        from,
        to,
        9 * scale,
        &[create(Medications), create(VitalSigns)],
        Expect::Ok,
    );
    writes(
        sim,
        f.george,
        r,
        from,
        to,
        10 * scale,
        &[
            create(AboutMe),
            WriteKind::Annotate(LabResults),
            create(VitalSigns),
        ],
        Expect::Ok,
    );
    for &(p, pr) in &f.extras {
        writes(
            sim,
            p,
            pr,
            from,
            to,
            7 * scale,
            &[create(VitalSigns), create(Allergies)],
            Expect::Ok,
        );
    }
}

/// Writes that must be refused by the writer's own replica.
fn refused_writes(sim: &mut Sim, f: &Family, at: Time) {
    use Category::*;
    let r = f.record;
    write(sim, at, f.patricia, r, create(VitalSigns), Expect::Refused);
    write(
        sim,
        at + 20 * S,
        f.alex,
        r,
        create(Problems),
        Expect::Refused,
    );
    write(
        sim,
        at + 40 * S,
        f.pharmacist,
        r,
        create(Medications),
        Expect::Refused,
    );
    write(
        sim,
        at + 60 * S,
        f.homecare,
        r,
        create(Medications),
        Expect::Refused,
    );
    write(
        sim,
        at + 80 * S,
        f.mallory,
        r,
        create(Problems),
        Expect::Refused,
    );
}

/// The hostile node's attempts, at random times in `from..to`.
fn hostile(sim: &mut Sim, f: &Family, from: Time, to: Time, kinds: &[Attack]) {
    for &attack in kinds {
        let at = sim.rng.range(from, to);
        let (record, target) = match attack {
            Attack::PullUnauthorised => match f.extras.first() {
                Some(&(_, r)) => (r, None),
                None => continue,
            },
            Attack::PushToReplica => (f.record, Some(f.consultant)),
            _ => (f.record, None),
        };
        sim.at(
            at,
            Act::Attack {
                node: f.mallory,
                record,
                attack,
                target,
            },
        );
    }
}

const ATTACKS: [Attack; 11] = [
    Attack::ForgedSignature,
    Attack::Tampered,
    Attack::Escalate,
    Attack::ReplayCaptured,
    Attack::ReplayOwn,
    Attack::StaleProof,
    Attack::Impersonate,
    Attack::PullUnauthorised,
    Attack::ProbeStreams,
    Attack::PushToReplica,
    Attack::AnnounceSpam,
];

fn acceptance(seed: u64, size: Size) -> Sim {
    let active = pick(size, 24 * MIN, 60 * MIN);
    let settle = pick(size, 5 * MIN, 8 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, settle, 60 * S, pick(size, 20 * S, 15 * S)),
    );
    let f = family(&mut sim, 1, 2);
    let scale = pick(size, MIN / 2, MIN);
    let to = active - 2 * MIN;
    everyday(&mut sim, &f, MIN, to, scale);
    let r = f.record;
    write(
        &mut sim,
        active / 3,
        f.mary,
        r,
        WriteKind::AmendOwn(Category::VitalSigns),
        Expect::Ok,
    );
    refused_writes(&mut sim, &f, active / 5);
    // George moves his record to the second host; every grant survives.
    sim.at(
        active * 45 / 100,
        Act::Host {
            node: f.george,
            record: r,
            to: f.hosts[1],
        },
    );
    // Later he revokes home care: it keeps what it saw, sees nothing new, writes nothing.
    sim.at(
        active * 70 / 100,
        Act::Revoke {
            node: f.george,
            record: r,
            grantee: f.homecare,
        },
    );
    sim.at(
        active * 70 / 100 + MIN,
        Act::Attack {
            node: f.homecare,
            record: r,
            attack: Attack::RevokedWrite,
            target: None,
        },
    );
    hostile(&mut sim, &f, 2 * MIN, to, &ATTACKS);
    sim
}

fn partition(seed: u64, size: Size) -> Sim {
    let active = pick(size, 24 * MIN, 40 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, pick(size, 5 * MIN, 8 * MIN), 60 * S, 20 * S),
    );
    let f = family(&mut sim, pick(size, 1, 4) as usize, 2);
    everyday(&mut sim, &f, MIN, active - MIN, pick(size, MIN / 2, MIN));
    // Mary, the children, the nurse and Mallory are cut off from the hosts and the rest
    // until the end of the active period; then the partition heals.
    let mut groups = vec![1u8; sim.nodes.len()];
    for n in [f.mary, f.patricia, f.alex, f.nurse, f.mallory] {
        groups[n] = 0;
    }
    let (cut, heal) = (active / 4, active);
    sim.at(cut, Act::Partition(groups, "partition".into()));
    // The hostile node, in the cut-off group, makes the others pull from it.
    for _ in 0..4 {
        let at = sim.rng.range(cut, heal);
        sim.at(
            at,
            Act::Attack {
                node: f.mallory,
                record: f.record,
                attack: Attack::AnnounceSpam,
                target: None,
            },
        );
    }
    hostile(&mut sim, &f, 2 * MIN, active - MIN, &ATTACKS);
    sim.at(active, Act::Heal);
    sim
}

fn churn(seed: u64, size: Size) -> Sim {
    let active = pick(size, 24 * MIN, 50 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, pick(size, 5 * MIN, 8 * MIN), 60 * S, 20 * S),
    );
    let f = family(&mut sim, pick(size, 2, 6) as usize, 2);
    everyday(&mut sim, &f, MIN, active - MIN, pick(size, MIN / 2, MIN));
    refused_writes(&mut sim, &f, active / 5);
    let last = active * 85 / 100;
    for n in 0..sim.nodes.len() {
        let host = sim.nodes[n].role == Role::Host;
        let outages = if host { 1 } else { sim.rng.range(1, 3) };
        for _ in 0..outages {
            let start = sim.rng.range(2 * MIN, last - MIN);
            let len = if host {
                sim.rng.range(MIN, 4 * MIN)
            } else {
                sim.rng.range(MIN, 6 * MIN)
            };
            sim.at(start, Act::Down(n));
            sim.at((start + len).min(last), Act::Up(n));
        }
    }
    hostile(&mut sim, &f, 2 * MIN, active - MIN, &ATTACKS);
    sim.at(active, Act::Heal);
    sim
}

fn loss(seed: u64, size: Size) -> Sim {
    let active = pick(size, 24 * MIN, 45 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, pick(size, 5 * MIN, 8 * MIN), 60 * S, 20 * S),
    );
    let f = family(&mut sim, pick(size, 1, 4) as usize, 2);
    everyday(&mut sim, &f, MIN, active - MIN, pick(size, MIN / 2, MIN));
    sim.at(
        MIN,
        Act::Faults(
            Faults {
                loss: 0.25,
                dup: 0.03,
                delay_p: 0.1,
                delay_max: 20 * S,
            },
            "25 % loss, duplicates, delays".into(),
        ),
    );
    hostile(&mut sim, &f, 2 * MIN, active - MIN, &ATTACKS);
    sim.at(active, Act::Heal);
    sim
}

fn revocation(seed: u64, size: Size) -> Sim {
    let active = pick(size, 20 * MIN, 40 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, pick(size, 4 * MIN, 6 * MIN), 20 * S, 10 * S),
    );
    let f = family(&mut sim, 1, 1);
    let sitter = sim.add_node("Night sitter", Role::Carer);
    let r = f.record;
    let to = active - MIN;
    sim.at(
        MIN / 2,
        Act::Faults(
            Faults {
                loss: 0.05,
                dup: 0.01,
                delay_p: 0.2,
                delay_max: 5 * S,
            },
            "5 % loss, delays".into(),
        ),
    );
    // Busy writers: syncs are in flight most of the time.
    let busy = pick(size, 20 * S, 30 * S);
    busy_writers(&mut sim, &f, to, busy);
    mary_revoked_while_delegating(&mut sim, &f, sitter, active, busy);
    home_care_revoked(&mut sim, &f, active);
    pharmacist_granted_again(&mut sim, &f, active);
    // A child, revoked for good.
    sim.at(
        active * 6 / 10,
        Act::Revoke {
            node: f.george,
            record: r,
            grantee: f.patricia,
        },
    );
    hostile(
        &mut sim,
        &f,
        2 * MIN,
        to,
        &[
            Attack::Escalate,
            Attack::ProbeStreams,
            Attack::ForgedSignature,
            Attack::ReplayOwn,
        ],
    );
    sim.at(active, Act::Heal);
    sim
}

/// Mary, home care, George and the consultant write busily until `to`.
fn busy_writers(sim: &mut Sim, f: &Family, to: Time, busy: Time) {
    use Category::*;
    let r = f.record;
    writes(
        sim,
        f.mary,
        r,
        MIN,
        to,
        busy,
        &[create(VitalSigns)],
        Expect::Any,
    );
    writes(
        sim,
        f.homecare,
        r,
        MIN,
        to,
        busy,
        &[create(VitalSigns), create(Procedures), create(LabResults)],
        Expect::RefusedIfRevoked,
    );
    writes(
        sim,
        f.george,
        r,
        MIN,
        to,
        4 * busy,
        &[create(VitalSigns), create(Problems)],
        Expect::Ok,
    );
    writes(
        sim,
        f.consultant,
        r,
        MIN,
        to,
        3 * busy,
        &[create(LabResults)],
        Expect::Ok,
    );
}

/// George revokes Mary while offline and grants her again, while she delegates to the
/// night sitter, who writes.
fn mary_revoked_while_delegating(
    sim: &mut Sim,
    f: &Family,
    sitter: NodeId,
    active: Time,
    busy: Time,
) {
    use Category::*;
    let r = f.record;
    let to = active - MIN;
    // George revokes Mary on his phone while it is offline, and grants her again without
    // the right to delegate. Meanwhile Mary, not knowing, delegates vital signs to a night
    // sitter, who starts writing. George's phone comes back online minutes later.
    let g_t = sim.rng.range(active / 5, active * 3 / 10);
    let offline = g_t - 90 * S;
    let back = g_t + sim.rng.range(2 * MIN, 4 * MIN);
    let mut groups = vec![1u8; sim.nodes.len()];
    groups[f.george] = 0;
    sim.at(offline, Act::Partition(groups, "George offline".into()));
    let revoke_at = g_t - sim.rng.range(10 * S, 60 * S);
    sim.at(
        revoke_at,
        Act::Revoke {
            node: f.george,
            record: r,
            grantee: f.mary,
        },
    );
    grant_at(
        sim,
        g_t - 5 * S,
        f.george,
        r,
        f.mary,
        Level::Write,
        &[],
        true,
        false,
        Expect::Ok,
    );
    sim.at(back, Act::Unpartition);
    grant_at(
        sim,
        g_t,
        f.mary,
        r,
        sitter,
        Level::Write,
        &[VitalSigns],
        false,
        false,
        Expect::Any,
    );
    writes(
        sim,
        sitter,
        r,
        g_t + 10 * S,
        to,
        busy,
        &[create(VitalSigns)],
        Expect::RefusedIfRevoked,
    );
}

/// Home care is revoked while busy, then writes under the revoked grant anyway.
fn home_care_revoked(sim: &mut Sim, f: &Family, active: Time) {
    let r = f.record;
    // Home care, revoked while busy, then tries to write under the revoked grant anyway.
    let h_t = sim.rng.range(active * 35 / 100, active / 2);
    sim.at(
        h_t,
        Act::Revoke {
            node: f.george,
            record: r,
            grantee: f.homecare,
        },
    );
    sim.at(
        h_t + MIN,
        Act::Attack {
            node: f.homecare,
            record: r,
            attack: Attack::RevokedWrite,
            target: None,
        },
    );
}

/// The pharmacist is revoked, then granted again a few minutes later.
fn pharmacist_granted_again(sim: &mut Sim, f: &Family, active: Time) {
    let r = f.record;
    // The pharmacist, revoked and granted again a few minutes later.
    let p_t = sim.rng.range(active * 3 / 10, active * 45 / 100);
    sim.at(
        p_t,
        Act::Revoke {
            node: f.george,
            record: r,
            grantee: f.pharmacist,
        },
    );
    let again = p_t + sim.rng.range(2 * MIN, 5 * MIN);
    grant_at(
        sim,
        again,
        f.george,
        r,
        f.pharmacist,
        Level::View,
        &PHARMACY,
        false,
        false,
        Expect::Ok,
    );
}

fn scale(seed: u64, size: Size, options: Options) -> Sim {
    let patients = options
        .patients
        .unwrap_or(match size {
            Size::Small => 24,
            Size::Full => 1000,
        })
        .max(1);
    let providers = pick(size, 6, 50) as usize;
    let active = pick(size, 8 * MIN, 20 * MIN);
    let sync_every = pick(size, 2 * MIN, 10 * MIN);
    let mut sim = Sim::new(
        seed,
        config(
            active,
            2 * sync_every + 2 * MIN,
            sync_every,
            pick(size, 20 * S, 60 * S),
        ),
    );
    let hosts: Vec<NodeId> = (1..=3)
        .map(|i| sim.add_node(&format!("Community host {i}"), Role::Host))
        .collect();
    let provs: Vec<NodeId> = (1..=providers)
        .map(|i| sim.add_node(&format!("Provider {i:02}"), Role::Provider))
        .collect();
    let mallory = sim.add_node("Mallory", Role::Hostile);
    let w = ScaleWorld {
        hosts,
        provs,
        mallory,
        active,
        size,
    };
    let mut mallory_records = Vec::new();
    let mut other_records = Vec::new();
    sim.at(
        0,
        Act::Faults(
            Faults {
                loss: 0.01,
                dup: 0.0,
                delay_p: 0.01,
                delay_max: 5 * S,
            },
            "1 % loss".into(),
        ),
    );
    for i in 0..patients {
        let to_mallory = i % (patients / 3).max(1) == 0;
        let r = scale_patient(&mut sim, &w, i, to_mallory);
        if to_mallory {
            mallory_records.push(r);
        } else {
            other_records.push(r);
        }
    }
    mallory_attacks(&mut sim, &w, &other_records, &mallory_records);
    sim.at(active, Act::Heal);
    sim
}

/// The categories the `scale` scenario writes and grants.
const SCALE_CATS: [Category; 6] = [
    Category::VitalSigns,
    Category::Problems,
    Category::Medications,
    Category::Allergies,
    Category::LabResults,
    Category::Procedures,
];

/// The shared nodes and settings of the `scale` scenario.
struct ScaleWorld {
    hosts: Vec<NodeId>,
    provs: Vec<NodeId>,
    mallory: NodeId,
    active: Time,
    size: Size,
}

/// Adds patient `i` of the `scale` scenario: a record, written, hosted and granted to
/// providers (and Mallory, if `to_mallory`); its id.
fn scale_patient(sim: &mut Sim, w: &ScaleWorld, i: usize, to_mallory: bool) -> RecordId {
    let p = sim.add_node(&format!("Patient {i:04}"), Role::Patient);
    let r = sim.genesis(p, "patient");
    let t0 = sim.rng.range(0, pick(w.size, 30 * S, 120 * S));
    let first = SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone();
    write(sim, t0, p, r, create(first), Expect::Ok);
    sim.at(
        t0 + S,
        Act::Host {
            node: p,
            record: r,
            to: w.hosts[i % w.hosts.len()],
        },
    );
    scale_provider_grants(sim, w, p, r, t0);
    if to_mallory {
        grant_at(
            sim,
            t0 + 20 * S,
            p,
            r,
            w.mallory,
            Level::View,
            &[Category::Allergies],
            false,
            false,
            Expect::Ok,
        );
    }
    for _ in 0..sim.rng.range(2, 3) {
        let c = SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone();
        let wt = sim.rng.range(2 * MIN, w.active - S);
        write(sim, wt, p, r, create(c), Expect::Ok);
    }
    r
}

/// Grants two or three providers access to a patient's record; some of them write.
fn scale_provider_grants(sim: &mut Sim, w: &ScaleWorld, p: NodeId, r: RecordId, t0: Time) {
    let providers = w.provs.len();
    let k = sim.rng.range(2, 4) as usize;
    for (j, pi) in sim.rng.sample(providers, k).into_iter().enumerate() {
        let scope: Vec<Category> = if sim.rng.chance(0.15) {
            Vec::new()
        } else {
            let n = sim.rng.range(2, 4) as usize;
            sim.rng
                .sample(SCALE_CATS.len(), n)
                .into_iter()
                .map(|c| SCALE_CATS[c].clone())
                .collect()
        };
        let level = if sim.rng.chance(0.5) {
            Level::Write
        } else {
            Level::View
        };
        let at = t0 + 10 * S + j as Time * S;
        grant_at(
            sim,
            at,
            p,
            r,
            w.provs[pi],
            level,
            &scope,
            false,
            false,
            Expect::Ok,
        );
        if level == Level::Write && sim.rng.chance(0.6) {
            let c = if scope.is_empty() {
                SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone()
            } else {
                scope[sim.rng.index(scope.len())].clone()
            };
            let wt = sim.rng.range(2 * MIN, w.active - S);
            write(sim, wt, w.provs[pi], r, create(c), Expect::Ok);
        }
    }
}

/// Mallory's attacks: on the records that granted her allergies, and pulls of others.
fn mallory_attacks(
    sim: &mut Sim,
    w: &ScaleWorld,
    other_records: &[RecordId],
    mallory_records: &[RecordId],
) {
    let (active, size, mallory) = (w.active, w.size, w.mallory);
    let kinds = [
        Attack::PullUnauthorised,
        Attack::ForgedSignature,
        Attack::Escalate,
        Attack::ProbeStreams,
        Attack::StaleProof,
        Attack::Impersonate,
        Attack::ReplayCaptured,
        Attack::Tampered,
    ];
    let n = pick(size, 8, 16) as usize;
    for i in 0..n {
        let attack = kinds[i % kinds.len()];
        let pool = if attack == Attack::PullUnauthorised && !other_records.is_empty() {
            other_records
        } else {
            mallory_records
        };
        let record = pool[sim.rng.index(pool.len())];
        let at = sim.rng.range(3 * MIN, active - S);
        sim.at(
            at,
            Act::Attack {
                node: mallory,
                record,
                attack,
                target: None,
            },
        );
    }
}

/// The `city` scenario: a community host operator runs `hosts` host processes (4 unless
/// `--hosts`) for a city's records (770,000 at full size unless `--patients`, 2,000 small).
/// Each patient's node creates its record, asks the operator's front where to host it
/// (rendezvous hashing of the record id over the operator's hosts, `sim/operator.rs`) and
/// hosts it there; it grants its GP practice (one of about one per 7,000 patients) write
/// access and, for one patient in twenty, a carer a view. Practices and carers find the
/// home host through the DHT and sync. Mid-run the operator starts one more host process
/// and rebalances: the patients of the records the placement now puts on the new host are
/// asked to move, and their nodes run the move procedure (patient-signed pointer, move
/// entry, release of the old host). Some patients' nodes are offline for a while then;
/// new patients keep joining. With 0.5 % message loss.
fn city(seed: u64, size: Size, options: Options) -> Sim {
    let records = options
        .patients
        .unwrap_or(match size {
            Size::Small => 2_000,
            Size::Full => 770_000,
        })
        .max(1);
    let hosts = options.hosts.unwrap_or(4).max(1);
    let practices = (records / 7_000).max(4);
    let admit_until = pick(size, 4 * MIN, 10 * MIN);
    let add_at = pick(size, 6 * MIN, 15 * MIN);
    let rebalance_at = add_at + 30 * S;
    let moving = pick(size, 3 * MIN, 10 * MIN);
    let active = pick(size, 14 * MIN, 30 * MIN);
    // Replicas follow new entries through announcements; the periodic catch-up (which
    // also finds a moved record) is rarer than in the smaller scenarios.
    let sync_every = pick(size, 3 * MIN, 20 * MIN);
    let mut sim = Sim::new(
        seed,
        config(
            active,
            2 * sync_every + 2 * MIN,
            sync_every,
            pick(size, 20 * S, 60 * S),
        ),
    );
    let host_nodes: Vec<NodeId> = (1..=hosts + 1)
        .map(|i| sim.add_node(&format!("City host {i}"), Role::Host))
        .collect();
    sim.operator = Some(crate::sim::Operator {
        hosts: host_nodes[..hosts].to_vec(),
        ..Default::default()
    });
    let practice_nodes: Vec<NodeId> = (1..=practices)
        .map(|i| sim.add_node(&format!("Practice {i:03}"), Role::Provider))
        .collect();
    sim.at(
        0,
        Act::Faults(
            Faults {
                loss: 0.005,
                dup: 0.0,
                delay_p: 0.0,
                delay_max: 0,
            },
            "0.5 % loss".into(),
        ),
    );
    let expected_moves = (records / (hosts + 1)).max(1) as Time;
    let pace = (moving / expected_moves).max(1);
    for i in 0..records {
        // One patient in twenty joins while the new host is being added and filled.
        let late = i % 20 == 19;
        let t0 = if late {
            sim.rng.range(add_at, active - 4 * MIN)
        } else {
            sim.rng.range(0, admit_until)
        };
        let practice = practice_nodes[sim.rng.index(practices)];
        city_patient(&mut sim, i, t0, practice, active);
    }
    // Some patients' nodes are offline while the operator rebalances: their moves wait.
    let patients: Vec<NodeId> = sim.patients.values().copied().collect();
    for &p in &patients {
        if sim.rng.chance(0.01) {
            let start = sim.rng.range(rebalance_at, rebalance_at + moving);
            let len = sim.rng.range(2 * MIN, 8 * MIN);
            sim.at(start, Act::Down(p));
            sim.at((start + len).min(active), Act::Up(p));
        }
    }
    sim.at(add_at, Act::AddHost(host_nodes[hosts]));
    sim.at(rebalance_at, Act::Rebalance { pace });
    // A second pass finds records whose first hosting was still in flight.
    sim.at(rebalance_at + moving + MIN, Act::Rebalance { pace });
    sim.at(active, Act::Heal);
    sim
}

/// Patient `i` of the `city` scenario: a record with a genesis and an entry, hosted where
/// the operator's front says, granted to its practice (and, for one in twenty, a carer);
/// a later entry by the patient, and by the practice for about a third.
fn city_patient(sim: &mut Sim, i: usize, t0: Time, practice: NodeId, active: Time) {
    let p = sim.add_node(&format!("Resident {i:06}"), Role::Patient);
    let r = sim.genesis(p, "patient");
    let first = SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone();
    write(sim, t0, p, r, create(first), Expect::Ok);
    sim.at(t0 + S, Act::Admit { node: p, record: r });
    grant_at(
        sim,
        t0 + 10 * S,
        p,
        r,
        practice,
        Level::Write,
        &[],
        false,
        false,
        Expect::Ok,
    );
    if i % 20 == 7 {
        let carer = sim.add_node(&format!("Carer {i:06}"), Role::Carer);
        grant_at(
            sim,
            t0 + 12 * S,
            p,
            r,
            carer,
            Level::View,
            &[],
            false,
            false,
            Expect::Ok,
        );
    }
    let later = (t0 + 2 * MIN).min(active - 2 * S);
    let c = SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone();
    let wt = sim.rng.range(later, active - S);
    write(sim, wt, p, r, create(c), Expect::Ok);
    if sim.rng.chance(0.33) {
        let c = SCALE_CATS[sim.rng.index(SCALE_CATS.len())].clone();
        let wt = sim.rng.range(later, active - S);
        write(sim, wt, practice, r, create(c), Expect::Ok);
    }
}

/// What George grants the home-care organisation, at write.
const ORG_GRANT: [Category; 3] = [
    Category::VitalSigns,
    Category::Procedures,
    Category::Appointments,
];

/// The organisation scenario's people: the organisation's node and its second
/// administrator's, and the members' nodes.
struct Org {
    george: NodeId,
    record: RecordId,
    org: NodeId,
    admin: NodeId,
    org_record: RecordId,
    jo: NodeId,
    sam: NodeId,
    kim: NodeId,
    pat: NodeId,
    lee: NodeId,
    max: NodeId,
}

fn member_op(sim: &mut Sim, at: Time, node: NodeId, o: &Org, op: MemberOp) {
    sim.at(
        at,
        Act::Member {
            node,
            org_record: o.org_record,
            op,
        },
    );
}

fn give_proof(sim: &mut Sim, at: Time, from: NodeId, member: NodeId, o: &Org) {
    sim.at(
        at,
        Act::GiveProof {
            from,
            member,
            org_record: o.org_record,
            record: o.record,
        },
    );
}

/// Everyone cut off from `node` (and it from them) from `from` to `to`.
fn offline(sim: &mut Sim, node: NodeId, from: Time, to: Time) {
    let mut groups = vec![1u8; sim.nodes.len()];
    groups[node] = 0;
    let label = format!("{} offline", sim.nodes[node].name);
    sim.at(from, Act::Partition(groups, label));
    sim.at(to, Act::Unpartition);
}

/// A home-care organisation (issue 19): its own record holds the membership log, written
/// by the organisation's node and a second administrator's node, synced between them (and
/// their host) under loss, delays and a partition, so the log forks and merges. George
/// grants the organisation once; members join with the proofs they are given and write
/// busily; members are removed while they write (one cut off from everyone meanwhile),
/// and the two administrators add and remove the same members concurrently.
fn organisation(seed: u64, size: Size) -> Sim {
    let active = pick(size, 12 * MIN, 40 * MIN);
    let mut sim = Sim::new(
        seed,
        config(active, pick(size, 3 * MIN, 6 * MIN), 20 * S, 10 * S),
    );
    let george = sim.add_node("George", Role::Patient);
    let host = sim.add_node("Host 1", Role::Host);
    let org = sim.add_node("Leeds Home Care", Role::Provider);
    let admin = sim.add_node("Office manager", Role::Provider);
    let [jo, sam, kim, pat, lee, max] = [
        "Nurse Jo",
        "Nurse Sam",
        "Kim (reception)",
        "Nurse Pat",
        "Nurse Lee",
        "Nurse Max",
    ]
    .map(|n| sim.add_node(n, Role::Provider));
    let record = sim.genesis(george, "patient");
    let org_record = sim.genesis(org, "organisation");
    sim.add_administrator(org, admin);
    // George writes only in the categories he grants the organisation: where his record
    // has a sealed stream the organisation's grant does not cover, its node cannot write a
    // member's removal (the new epoch in that stream is refused; see the README, "Known
    // gaps").
    for c in ORG_GRANT {
        write(&mut sim, 0, george, record, create(c), Expect::Ok);
    }
    for (node, r) in [(george, record), (org, org_record)] {
        let t = S + sim.rng.range(0, S);
        sim.at(
            t,
            Act::Host {
                node,
                record: r,
                to: host,
            },
        );
    }
    let o = Org {
        george,
        record,
        org,
        admin,
        org_record,
        jo,
        sam,
        kim,
        pat,
        lee,
        max,
    };
    sim.at(
        30 * S,
        Act::Faults(
            Faults {
                loss: 0.05,
                dup: 0.01,
                delay_p: 0.2,
                delay_max: 5 * S,
            },
            "5 % loss, delays".into(),
        ),
    );
    // George grants the organisation once: write on vital signs, procedures, appointments.
    grant_at(
        &mut sim,
        10 * S,
        george,
        record,
        org,
        Level::Write,
        &ORG_GRANT,
        false,
        false,
        Expect::Ok,
    );
    // The first members, added by either administrator, given their proofs a little later.
    member_op(&mut sim, 20 * S, org, &o, MemberOp::Add(jo, "nurse"));
    member_op(&mut sim, 25 * S, admin, &o, MemberOp::Add(sam, "nurse"));
    member_op(
        &mut sim,
        35 * S,
        admin,
        &o,
        MemberOp::Add(kim, "receptionist"),
    );
    for (from, m) in [(org, jo), (admin, sam), (admin, kim)] {
        let t = MIN + sim.rng.range(0, 30 * S);
        give_proof(&mut sim, t, from, m, &o);
    }
    george_and_members_write(&mut sim, &o, active, pick(size, 45 * S, 20 * S));
    administrators_fork(&mut sim, &o, active);
    // Jo is removed while writing with her node cut off from everyone: what she writes
    // meanwhile is concurrent with the removal, and void; her pulls are refused after.
    let cut = active * 65 / 100;
    offline(&mut sim, jo, cut, active * 80 / 100);
    let t = cut + sim.rng.range(MIN, 2 * MIN);
    member_op(&mut sim, t, org, &o, MemberOp::Remove(jo));
    // Pat, added twice, is removed by the office manager while syncs are in flight.
    let t = sim.rng.range(active * 82 / 100, active * 88 / 100);
    member_op(&mut sim, t, admin, &o, MemberOp::Remove(pat));
    sim.at(active, Act::Heal);
    sim
}

/// George writes now and then; each member writes busily in what their role and the
/// organisation's grant allow.
fn george_and_members_write(sim: &mut Sim, o: &Org, active: Time, busy: Time) {
    use Category::*;
    let r = o.record;
    let to = active - MIN;
    writes(
        sim,
        o.george,
        r,
        MIN,
        to,
        4 * busy,
        &[create(VitalSigns), create(Procedures)],
        Expect::Ok,
    );
    let nurse = [
        create(VitalSigns),
        create(Procedures),
        WriteKind::AmendOwn(VitalSigns),
    ];
    for m in [o.jo, o.sam, o.pat, o.lee, o.max] {
        writes(sim, m, r, 2 * MIN, to, busy, &nurse, Expect::Member);
    }
    writes(
        sim,
        o.kim,
        r,
        2 * MIN,
        to,
        2 * busy,
        &[create(Appointments)],
        Expect::Member,
    );
}

/// The office manager's node goes offline: both administrators add Pat, and Max; the
/// organisation's node removes Max, concurrently with the office manager's addition of
/// him; both remove Kim; the office manager removes Sam while the organisation's node adds
/// Lee. The log forks, and merges when the office manager is back (a removal wins over a
/// concurrent addition wherever both are known).
fn administrators_fork(sim: &mut Sim, o: &Org, active: Time) {
    let (from, to) = (active * 30 / 100, active * 55 / 100);
    offline(sim, o.admin, from, to);
    let at = |sim: &mut Sim, a: u64, b: u64| sim.rng.range(active * a / 100, active * b / 100);
    let t = at(sim, 32, 36);
    member_op(sim, t, o.org, o, MemberOp::Add(o.pat, "nurse"));
    member_op(sim, t + 5 * S, o.admin, o, MemberOp::Add(o.pat, "nurse"));
    give_proof(sim, t + MIN, o.org, o.pat, o);
    let t = at(sim, 32, 36);
    member_op(sim, t, o.org, o, MemberOp::Add(o.max, "nurse"));
    member_op(sim, t + 4 * S, o.admin, o, MemberOp::Add(o.max, "nurse"));
    give_proof(sim, t + 30 * S, o.org, o.max, o);
    let t2 = at(sim, 50, 53);
    member_op(sim, t2, o.org, o, MemberOp::Remove(o.max));
    let t = at(sim, 38, 42);
    member_op(sim, t, o.org, o, MemberOp::Remove(o.kim));
    member_op(sim, t + 3 * S, o.admin, o, MemberOp::Remove(o.kim));
    let t = at(sim, 44, 50);
    member_op(sim, t, o.admin, o, MemberOp::Remove(o.sam));
    member_op(sim, t + 2 * S, o.org, o, MemberOp::Add(o.lee, "nurse"));
    give_proof(sim, t + MIN, o.org, o.lee, o);
}
