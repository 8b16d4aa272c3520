//! The report of one run.

use std::collections::BTreeMap;
use std::fmt;

use crate::check::Checks;
use crate::sim::{Role, Sim};
use crate::{Outcome, Scenario, Size, Time};

/// Convergence at one moment: the fraction of (replica, entry it may see) pairs held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Virtual time.
    pub at: Time,
    /// Fraction held, 0 to 1.
    pub fraction: f64,
}

/// A fault window (a partition, a node down, message loss, a move), for the plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub from: Time,
    /// End.
    pub to: Time,
    /// What it was.
    pub label: String,
}

/// What one run did, and whether the invariants held.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Scenario.
    pub scenario: Scenario,
    /// Seed.
    pub seed: u64,
    /// Size.
    pub size: Size,
    /// Nodes, by role.
    pub nodes: BTreeMap<String, usize>,
    /// Records.
    pub records: usize,
    /// Replicas (node, record) outside the hosts.
    pub replicas: usize,
    /// Entries honest nodes wrote.
    pub entries: usize,
    /// Writes (actions) that succeeded.
    pub writes: u64,
    /// Writes refused by the writer's own replica (as the scenario expects for most).
    pub writes_refused: u64,
    /// Writes skipped because the writer was down or did not hold its grant yet.
    pub writes_skipped: u64,
    /// Revocations written.
    pub revocations: usize,
    /// Messages sent (requests and responses).
    pub messages: u64,
    /// Messages lost (loss, partitions, nodes down).
    pub lost: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Requests by kind.
    pub requests: BTreeMap<&'static str, u64>,
    /// Sync sessions started, and failed (timeout, refusal, bad data).
    pub syncs: (u64, u64),
    /// Entries served in pull responses, and pushed.
    pub entries_moved: (u64, u64),
    /// Pulled batches refused whole because an entry did not decode or verify (the
    /// session failed).
    pub bad_batches: u64,
    /// Pulled batches refused whole because an entry did not apply: not authorised as
    /// the receiver sees the record, or a parent missing (the session failed).
    pub served_refused: u64,
    /// Of those, batches an honest server sent.
    pub honest_refused: u64,
    /// Audit of served reads: (server, entry, actor) reads that honest servers sent, the
    /// served-read audit events those servers signed, and audit events pulled by nodes
    /// that may read the audit trail.
    pub audit: (usize, usize, u64),
    /// Hostile attempts: made, refused as required, unanswered.
    pub hostile: (usize, usize, usize),
    /// Forged entries made.
    pub forged: usize,
    /// Entries a revoked replica keeps because they were written concurrently with its
    /// revocation and reached it before the revocation reached the node that served it.
    pub concurrent_kept: BTreeMap<String, usize>,
    /// Entries stranded at a node whose grant became void (see `cut_off`).
    pub stranded: usize,
    /// Nodes that replicate a record but have no access to it at the end (a grant made
    /// void by a concurrent revocation above it): refused by every peer, they cannot learn
    /// of the revocation, and their replica of the record is frozen.
    pub cut_off: Vec<String>,
    /// Replicas that found the record's home host in the DHT.
    pub homes_found: u64,
    /// Replicas that followed a move of the home host (a move entry, or the DHT after the
    /// old host refused).
    pub moves_followed: u64,
    /// Time an entry took to reach a replica: median, 99th percentile, max (ms).
    pub propagation: (Time, Time, Time),
    /// Of that, lab results reaching the patient's node (acceptance scenario).
    pub lab_results_to_patient: Option<(Time, Time)>,
    /// Last write.
    pub last_write: Time,
    /// Faults end (and writes stop) here.
    pub healed: Time,
    /// The last fault ended here (a partition healed, a node came back, loss stopped).
    pub last_fault_end: Time,
    /// Last time any honest node gained an entry.
    pub last_gain: Time,
    /// End of the run.
    pub end: Time,
    /// First sample after the last disturbance from which convergence stayed at 100 %.
    pub converged: Option<Time>,
    /// (replica, entry it may see) pairs checked at the end.
    pub pairs: usize,
    /// Each invariant and what broke it (empty: held).
    pub invariants: Vec<(String, Vec<String>)>,
    /// The `city` scenario's hosts, placement and rebalancing.
    pub city: Option<crate::CityFigures>,
    /// The `organisation` scenario's membership changes, joins and removals.
    pub organisation: Option<crate::OrgFigures>,
}

impl Report {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.invariants.iter().all(|(_, f)| f.is_empty())
    }

    /// The last disturbance: the last write, or the end of the last fault.
    pub fn last_disturbance(&self) -> Time {
        self.last_write.max(self.last_fault_end)
    }

    /// Virtual time from the last disturbance to the last entry any honest node gained.
    pub fn time_to_converge(&self) -> Time {
        self.last_gain.saturating_sub(self.last_disturbance())
    }
}

fn percentile(sorted: &[Time], p: f64) -> Time {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn outcome(sim: &Sim, scenario: Scenario, size: Size, checks: Checks) -> Outcome {
    let nodes = nodes_by_role(sim);
    let replicas = sim
        .nodes
        .iter()
        .filter(|n| n.role != Role::Host)
        .map(|n| n.replicas.len())
        .sum();
    let mut delays: Vec<Time> = sim.arrivals.iter().map(|(_, _, d)| *d).collect();
    delays.sort_unstable();
    let lab = if scenario == Scenario::Acceptance {
        lab_results_to_george(sim)
    } else {
        None
    };
    let converged = converged_at(sim);
    let held = sim
        .attacks
        .iter()
        .filter(|a| a.refused == Some(true))
        .count();
    let unanswered = sim.attacks.iter().filter(|a| a.refused.is_none()).count();
    let report = Report {
        scenario,
        seed: sim.seed,
        size,
        nodes,
        records: sim.oracle.len(),
        replicas,
        entries: sim.oracle.values().map(|o| o.len()).sum(),
        writes: sim.counters.writes,
        writes_refused: sim.counters.writes_refused,
        writes_skipped: sim.counters.writes_skipped,
        revocations: sim.revocations.len(),
        messages: sim.net.sent,
        lost: sim.net.lost,
        duplicated: sim.net.duplicated,
        bytes: sim.net.bytes,
        requests: sim.counters.requests.clone(),
        syncs: (sim.counters.syncs, sim.counters.syncs_failed),
        entries_moved: (sim.counters.entries_served, sim.counters.entries_pushed),
        bad_batches: sim.counters.bad_batches,
        served_refused: sim.counters.served_refused,
        honest_refused: sim.counters.honest_refused,
        audit: (checks.audit.0, checks.audit.1, sim.counters.audit_pulled),
        hostile: (sim.attacks.len(), held, unanswered),
        forged: sim.forged.len(),
        concurrent_kept: checks.concurrent_kept.clone(),
        stranded: checks.stranded,
        cut_off: checks.cut_off.clone(),
        homes_found: sim.counters.homes_found,
        moves_followed: sim.counters.moves_followed,
        propagation: (
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays.last().copied().unwrap_or(0),
        ),
        lab_results_to_patient: lab,
        last_write: sim.last_write,
        healed: sim.cfg.heal,
        last_fault_end: sim.last_fault_end,
        last_gain: sim.last_gain,
        end: sim.cfg.end,
        converged,
        pairs: checks.pairs,
        invariants: checks
            .checks
            .iter()
            .cloned()
            .map(|c| (c.name.to_string(), c.failures))
            .collect(),
        city: crate::city::figures(sim),
        organisation: crate::org::figures(sim),
    };
    Outcome {
        report,
        series: sim
            .series
            .iter()
            .map(|(at, fraction)| Sample {
                at: *at,
                fraction: *fraction,
            })
            .collect(),
        windows: sim
            .windows
            .iter()
            .map(|(from, to, label)| Window {
                from: *from,
                to: *to,
                label: label.clone(),
            })
            .collect(),
    }
}

/// How many nodes of each role the simulation has.
fn nodes_by_role(sim: &Sim) -> BTreeMap<String, usize> {
    let mut nodes = BTreeMap::new();
    for n in &sim.nodes {
        let role = match n.role {
            Role::Patient => "patient",
            Role::Carer => "carer",
            Role::Family => "family",
            Role::Provider => "provider",
            Role::Host => "host",
            Role::Hostile => "hostile",
        };
        *nodes.entry(role.to_string()).or_insert(0) += 1;
    }
    nodes
}

/// How long lab results took to reach George's node: the median and the longest.
fn lab_results_to_george(sim: &Sim) -> Option<(Time, Time)> {
    let george = sim.nodes.iter().position(|n| n.name == "George");
    let mut d: Vec<Time> = sim
        .arrivals
        .iter()
        .filter(|(n, id, _)| {
            Some(*n) == george
                && sim.oracle.values().any(|o| {
                    o.category_of(id) == Some(&cophr_protocol::Category::LabResults)
                        && o.get(id).is_some_and(|e| e.entry().payload.is_create())
                })
        })
        .map(|(_, _, d)| *d)
        .collect();
    d.sort_unstable();
    (!d.is_empty()).then(|| (percentile(&d, 0.5), d[d.len() - 1]))
}

/// The first sample after the last write or fault from which every sample is fully converged.
fn converged_at(sim: &Sim) -> Option<Time> {
    let mut at = None;
    for (t, f) in &sim.series {
        if *t < sim.last_write.max(sim.last_fault_end) {
            continue;
        }
        if *f >= 1.0 {
            at.get_or_insert(*t);
        } else {
            at = None;
        }
    }
    at
}

/// Virtual time as minutes and seconds.
pub(crate) fn fmt_time(t: Time) -> String {
    let s = t / 1000;
    let ms = t % 1000;
    if s >= 60 {
        format!("{}m{:02}.{:03}s", s / 60, s % 60, ms)
    } else {
        format!("{s}.{ms:03}s")
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 10 * 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else if b >= 10 * 1024 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = match self.size {
            Size::Small => "small",
            Size::Full => "full",
        };
        writeln!(f, "scenario {} seed {} ({size})", self.scenario, self.seed)?;
        let nodes: Vec<String> = self.nodes.iter().map(|(r, n)| format!("{n} {r}")).collect();
        writeln!(
            f,
            "  nodes        {} ({})",
            self.nodes.values().sum::<usize>(),
            nodes.join(", ")
        )?;
        writeln!(
            f,
            "  records      {} with {} replicas outside the hosts; {} entries written",
            self.records, self.replicas, self.entries
        )?;
        writeln!(
            f,
            "  writes       {} ok, {} refused by the writer's own replica, {} skipped (writer \
             down or not synced yet); {} revocations",
            self.writes, self.writes_refused, self.writes_skipped, self.revocations
        )?;
        self.fmt_traffic(f)?;
        self.fmt_safety(f)?;
        self.fmt_city(f)?;
        self.fmt_org(f)?;
        self.fmt_timing(f)?;
        self.fmt_invariants(f)
    }
}

impl Report {
    /// Writes the traffic lines: messages, requests, syncs and propagation.
    fn fmt_traffic(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  messages     {} sent, {} lost, {} duplicated; {}",
            self.messages,
            self.lost,
            self.duplicated,
            fmt_bytes(self.bytes)
        )?;
        let reqs: Vec<String> = self
            .requests
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "  requests     {}", reqs.join(", "))?;
        writeln!(
            f,
            "  syncs        {} started, {} failed; {} entries served, {} pushed; homes found {}, \
             moves followed {}",
            self.syncs.0,
            self.syncs.1,
            self.entries_moved.0,
            self.entries_moved.1,
            self.homes_found,
            self.moves_followed
        )?;
        writeln!(
            f,
            "  propagation  entry to replica: p50 {}, p99 {}, max {}",
            fmt_time(self.propagation.0),
            fmt_time(self.propagation.1),
            fmt_time(self.propagation.2)
        )?;
        Ok(())
    }

    /// Writes the safety lines: lab results, hostile attempts, audit, revocation and cut-off.
    fn fmt_safety(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((p50, max)) = self.lab_results_to_patient {
            writeln!(
                f,
                "  lab results  reached George: p50 {}, max {}",
                fmt_time(p50),
                fmt_time(max)
            )?;
        }
        writeln!(
            f,
            "  hostile      {} attempts, {} refused, {} unanswered (lost); {} forged entries; \
             pulled batches refused whole: {} did not decode or verify, {} did not apply ({} \
             of them from honest servers)",
            self.hostile.0,
            self.hostile.1,
            self.hostile.2,
            self.forged,
            self.bad_batches,
            self.served_refused,
            self.honest_refused
        )?;
        writeln!(
            f,
            "  audit        {} distinct reads (server, entry, actor) served by honest servers, {} \
             served-read events they signed; {} events pulled by readers of the audit trail",
            self.audit.0, self.audit.1, self.audit.2
        )?;
        if !self.concurrent_kept.is_empty() {
            let by: Vec<String> = self
                .concurrent_kept
                .iter()
                .map(|(n, k)| format!("{n} {k}"))
                .collect();
            writeln!(
                f,
                "  revocation   entries revoked replicas keep that the final record no longer \
                 shows them (served before the revocation reached their server, none after \
                 the cut): {}",
                by.join(", ")
            )?;
        }
        if !self.cut_off.is_empty() {
            writeln!(
                f,
                "  cut off      {} (no access at the end: a grant void after a concurrent \
                 revocation above it, or a member removed from their organisation; refused by \
                 every peer, never learns why); {} entries they wrote are stranded there",
                self.cut_off.join(", "),
                self.stranded
            )?;
        }
        Ok(())
    }

    /// Writes the `organisation` lines: membership log, joins, removals.
    fn fmt_org(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(o) = &self.organisation else {
            return Ok(());
        };
        writeln!(
            f,
            "  membership   {} added, {} removed, {} refused by the administrator's replica; \
             concurrent: {} members added twice, {} removed twice",
            o.membership.0, o.membership.1, o.membership.2, o.forks.0, o.forks.1
        )?;
        writeln!(
            f,
            "  members      {} proofs given, {} joins; {} writes ({} refused: removal held); \
             {} key wraps given by the organisation's node",
            o.proofs_joins.0, o.proofs_joins.1, o.member_writes.0, o.member_writes.1, o.keys_given
        )?;
        writeln!(
            f,
            "  removals     {} written into patients' records; members' entries at the home \
             host {} valid, {} void (concurrent with the removal); removed members' pulls {} \
             kept to the removal's past, {} not",
            o.removals_written,
            o.member_entries.0,
            o.member_entries.1,
            o.removed_pulls.0,
            o.removed_pulls.1
        )
    }

    /// Writes the `city` lines: hosts, loads, moves.
    fn fmt_city(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(c) = &self.city else {
            return Ok(());
        };
        let list = |l: &[usize]| {
            l.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" / ")
        };
        writeln!(
            f,
            "  hosts        {} host processes, then {}; records admitted through the front {} \
             ({} after the host was added, placed on the new set)",
            c.hosts.0, c.hosts.1, c.admitted.0, c.admitted.1
        )?;
        writeln!(
            f,
            "  load         before rebalancing {}; after {} (largest distance from the mean \
             {:.2} %, bound {:.2} %)",
            list(&c.load_before),
            list(&c.load_after),
            100.0 * c.spread.0,
            100.0 * c.spread.1
        )?;
        writeln!(
            f,
            "  rebalancing  {} moves asked of patients, {} made and released ({} passes), in {}; \
             a move from notice to release p50 {}, max {}; {} of {} (replica, moved record) \
             pairs synced with the new host",
            c.moves.0,
            c.moves.1,
            c.passes,
            fmt_time(c.rebalance_time),
            fmt_time(c.move_time.0),
            fmt_time(c.move_time.1),
            c.reached.0,
            c.reached.1
        )
    }

    /// Writes the timing lines: last write, fault, gain and end, and convergence.
    fn fmt_timing(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  time         last write {}, last fault ended {}, last entry gained {}, end {}",
            fmt_time(self.last_write),
            fmt_time(self.last_fault_end),
            fmt_time(self.last_gain),
            fmt_time(self.end)
        )?;
        writeln!(
            f,
            "  converged    {} after the last write or fault{}",
            fmt_time(self.time_to_converge()),
            match self.converged {
                Some(t) => format!(" (100 % from the sample at {})", fmt_time(t)),
                None => " (never 100 % in the samples)".into(),
            }
        )?;
        Ok(())
    }

    /// Writes each invariant with its failures, and the result.
    fn fmt_invariants(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  invariants   ({} replica-entry pairs)", self.pairs)?;
        for (name, failures) in &self.invariants {
            let mark = if failures.is_empty() { "ok  " } else { "FAIL" };
            writeln!(f, "    {mark} {name}")?;
            for x in failures {
                writeln!(f, "         - {x}")?;
            }
        }
        if self.ok() {
            write!(f, "  result       all invariants hold")
        } else {
            write!(
                f,
                "  result       INVARIANTS VIOLATED; replay with: cargo run -p cophr-simulations \
                 --release -- --scenario {} --seed {}{}",
                self.scenario,
                self.seed,
                if self.size == Size::Small {
                    " --small"
                } else {
                    ""
                }
            )
        }
    }
}
