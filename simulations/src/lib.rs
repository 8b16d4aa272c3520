//! A seeded, reproducible simulation of many cophr nodes in one process.
//!
//! Each simulated node holds records in the protocol's in-memory store
//! ([`cophr_protocol::sync::mem::MemStore`]) and plays one actor (patient, carer, family,
//! provider staff, community host, or a hostile node). Nodes talk with the real
//! [`cophr_protocol::sync`] messages, encoded and decoded with `sync::encode`/`sync::decode`,
//! over an in-memory network in virtual time (a priority queue of deliveries: no clocks, no
//! threads, no sleeps) with per-link latency and bandwidth, loss, duplication, delay spikes,
//! partitions and nodes that go down.
//!
//! Honest nodes run the protocol's own sync code, the code the node runs: each answers
//! requests with [`cophr_protocol::sync::server::Server::handle`] over its store (proofs
//! checked at its virtual clock, every served read audited) and runs every sync as a
//! [`cophr_protocol::sync::client::ClientSession`] driven over the virtual network, a
//! request unanswered within the timeout being a failure. Received batches are decoded,
//! verified and stored all or nothing; a batch that does not apply (a missing parent
//! included) fails the session. Only the hostile node has a server of its own.
//!
//! Every run ends with a healing period without faults, then checks the invariants (see
//! [`Report::invariants`]), among them that every entry an honest server sent is audited by
//! it for the proven actor. [`run`] gives the same [`Outcome`] for the same arguments.

mod body;
mod check;
mod city;
mod net;
mod org;
mod plot;
mod report;
mod rng;
mod scenario;
mod sim;
pub mod sweep;
mod trace;

pub use city::CityFigures;
pub use org::OrgFigures;
pub use plot::esc as svg_escape;
pub use report::{Report, Sample, Window};

/// Virtual time: milliseconds since the start of a run.
pub type Time = u64;

/// A scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Scenario {
    /// George's record (BRIEF acceptance scenario): family, home care, consultant, nurse,
    /// pharmacist, two hosts; a move of home host; home care revoked.
    Acceptance,
    /// Many patients, provider nodes and community hosts.
    Scale,
    /// Nodes (hosts too) leave and return.
    Churn,
    /// Two groups that cannot reach each other write on both sides, then heal.
    Partition,
    /// Heavy message loss, duplication and delay spikes.
    Loss,
    /// Revocations (including of a delegate, and re-grants) while syncs are in flight.
    Revocation,
    /// A community host operator runs several host processes; records placed across them
    /// by rendezvous hashing; a host added mid-run and the records rebalanced onto it by
    /// their patients' moves.
    City,
    /// A care organisation: its membership log kept by two administrators' nodes (forked
    /// and merged), members joining a patient's record under its grant, members removed
    /// while they write.
    Organisation,
}

impl Scenario {
    /// Every scenario, in the order `--list` shows them.
    pub const ALL: [Scenario; 8] = [
        Scenario::Acceptance,
        Scenario::Scale,
        Scenario::Churn,
        Scenario::Partition,
        Scenario::Loss,
        Scenario::Revocation,
        Scenario::City,
        Scenario::Organisation,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Acceptance => "acceptance",
            Scenario::Scale => "scale",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
            Scenario::Loss => "loss",
            Scenario::Revocation => "revocation",
            Scenario::City => "city",
            Scenario::Organisation => "organisation",
        }
    }

    /// One line on what the scenario does.
    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Acceptance => {
                "George, Mary, children, home care, consultant, diabetes nurse, pharmacist, two \
                 hosts; the BRIEF's grants; a move of home host; home care revoked; a hostile node"
            }
            Scenario::Scale => {
                "1,000 patients (--patients N), 50 provider nodes, 3 community hosts; each \
                 patient grants a few providers some categories; a hostile provider"
            }
            Scenario::Churn => {
                "George's family and more patients; every node, hosts included, leaves and \
                 returns at random; replicas fall back on each other"
            }
            Scenario::Partition => {
                "two groups cut off from each other, writes on both sides, the hostile node in \
                 the group without the home host; then heal"
            }
            Scenario::Loss => "25 % message loss, duplicates and delay spikes of up to 20 s",
            Scenario::Revocation => {
                "home care, the pharmacist and a child revoked while syncs are in flight; \
                 George revokes Mary offline while she delegates to a night sitter; re-grants"
            }
            Scenario::City => {
                "a city's community host on 4 host processes (--hosts N), 770,000 records \
                 (--patients N) placed by rendezvous hashing, found through the DHT; a host \
                 added mid-run, records rebalanced onto it by their patients' moves"
            }
            Scenario::Organisation => {
                "a home-care organisation: two administrators' nodes keep its membership log \
                 (forked by a partition, merged); members join George's record with their \
                 proofs and write busily; members removed while writing, concurrent \
                 add/remove by both administrators"
            }
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Size {
    /// Reduced sizes and shorter timelines, for the test sweep in a debug build.
    Small,
    /// The sizes the scenarios are described with.
    Full,
}

/// Options beyond the scenario, seed and size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Patients in the `scale` scenario (default: 1,000 at full size, 24 small), or
    /// records in the `city` scenario (default: 770,000 at full size, 2,000 small).
    pub patients: Option<usize>,
    /// Host processes the `city` operator starts with (default 4); one more is added.
    pub hosts: Option<usize>,
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The figures and the invariants.
    pub report: Report,
    /// Convergence over virtual time.
    pub series: Vec<Sample>,
    /// Fault windows (partitions, outages, loss, moves) for the plot.
    pub windows: Vec<Window>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.report.ok()
    }

    /// The convergence plot as a standalone SVG document.
    pub fn svg(&self) -> String {
        plot::svg(self)
    }
}

/// Runs a scenario with default options.
pub fn run(scenario: Scenario, seed: u64, size: Size) -> Outcome {
    run_with(scenario, seed, size, Options::default())
}

/// Runs a scenario.
pub fn run_with(scenario: Scenario, seed: u64, size: Size, options: Options) -> Outcome {
    let mut sim = scenario::build(scenario, seed, size, options);
    sim.run();
    sim.finish_attacks();
    let checks = check::check(&mut sim);
    report::outcome(&sim, scenario, size, checks)
}
