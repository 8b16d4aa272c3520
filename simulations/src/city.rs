//! The `city` scenario's own invariants and figures: a community host operator's records
//! placed across several host processes, and rebalanced when a host is added.

use std::collections::BTreeMap;

use cophr_protocol::home::SignedPointer;
use cophr_protocol::RecordId;

use crate::check::Check;
use crate::sim::{NodeId, Role, Sim};
use crate::Time;

/// At most this many failures are kept per invariant.
const KEEP: usize = 12;

fn fail(c: &mut Check, msg: String) {
    if c.failures.len() < KEEP {
        c.failures.push(msg);
    } else if c.failures.len() == KEEP {
        c.failures.push("…".into());
    }
}

/// What the operator's hosts did, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct CityFigures {
    /// Host processes before the one added, and after.
    pub hosts: (usize, usize),
    /// Records per host when the rebalancing started (the new host last).
    pub load_before: Vec<usize>,
    /// Records per host at the end.
    pub load_after: Vec<usize>,
    /// The largest distance of a host's load from the mean at the end, as a fraction of
    /// the mean, and the bound the invariant allows (five binomial standard deviations).
    pub spread: (f64, f64),
    /// Records admitted through the operator's front, and of them after the host was
    /// added (placed on the new set directly).
    pub admitted: (u64, u64),
    /// Moves asked of patients, and made (old host released).
    pub moves: (usize, usize),
    /// Passes of the rebalancing.
    pub passes: u32,
    /// Virtual time from the start of the rebalancing to the last move made.
    pub rebalance_time: Time,
    /// Moves' duration from the notice reaching the patient's node to the old host's
    /// release: median and max.
    pub move_time: (Time, Time),
    /// (replica, moved record) pairs where a node other than the patient synced with the
    /// new host after the move, of those that replicate a moved record.
    pub reached: (usize, usize),
}

/// Records per host, counted from what the hosts' stores hold.
fn loads(sim: &Sim, hosts: &[NodeId]) -> Vec<usize> {
    hosts
        .iter()
        .map(|&h| sim.nodes[h].store.records().count())
        .collect()
}

/// The largest distance from the mean as a fraction of it, and five binomial standard
/// deviations of one host's count as a fraction of the mean.
fn spread(load: &[usize]) -> (f64, f64) {
    let n: usize = load.iter().sum();
    let h = load.len().max(1) as f64;
    let mean = n as f64 / h;
    if mean == 0.0 {
        return (0.0, 0.0);
    }
    let worst = load
        .iter()
        .map(|&l| (l as f64 - mean).abs())
        .fold(0.0, f64::max);
    let p = 1.0 / h;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (worst / mean, 5.0 * sd / mean)
}

/// Non-host replicas of a moved record, the patient's node excluded.
fn replicas_of<'a>(sim: &'a Sim, record: &RecordId) -> impl Iterator<Item = NodeId> + 'a {
    let patient = sim.patients.get(record).copied();
    sim.replicators
        .get(record)
        .into_iter()
        .flatten()
        .copied()
        .filter(move |&n| Some(n) != patient && sim.nodes[n].role != Role::Host)
}

/// The city's invariants (none when the run has no operator).
pub(crate) fn check(sim: &Sim, holders: &BTreeMap<RecordId, Vec<NodeId>>) -> Vec<Check> {
    let Some(op) = sim.operator.as_ref() else {
        return Vec::new();
    };
    let mut one = Check {
        name: "city: every record has exactly one home host, the one the placement names, \
               and the DHT's patient-signed pointer names it",
        failures: Vec::new(),
    };
    let mut moved = Check {
        name: "city: every move the operator asked for was made by the patient's node, and \
               the old host released the record",
        failures: Vec::new(),
    };
    let mut found = Check {
        name: "city: lookups after the rebalancing reach the new host (the DHT, every \
               replica's home, a sync with it)",
        failures: Vec::new(),
    };
    let mut load = Check {
        name: "city: records per host within five binomial standard deviations of the mean",
        failures: Vec::new(),
    };
    for record in sim.oracle.keys() {
        let short = record.short();
        let hosts: Vec<NodeId> = holders
            .get(record)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&n| sim.nodes[n].role == Role::Host)
            .collect();
        let placed = sim.placement(record);
        if hosts.len() != 1 || placed != hosts.first().copied() {
            let names: Vec<&str> = hosts.iter().map(|&h| sim.nodes[h].name.as_str()).collect();
            fail(
                &mut one,
                format!(
                    "{short} is held by {names:?}; the placement names {}",
                    placed.map_or("none", |p| sim.nodes[p].name.as_str())
                ),
            );
            continue;
        }
        let dht = lookup(sim, record);
        if dht != placed {
            fail(
                &mut one,
                format!("the DHT's pointer for {short} does not name its host"),
            );
        }
    }
    for (record, &(from, to, _)) in &op.asked {
        let short = record.short();
        if !op.done.contains_key(record) {
            fail(
                &mut moved,
                format!(
                    "the move of {short} from {} to {} was not finished",
                    sim.nodes[from].name, sim.nodes[to].name
                ),
            );
        }
        if sim.nodes[from].store.record(record).is_some() {
            fail(
                &mut moved,
                format!("{} still holds {short}", sim.nodes[from].name),
            );
        }
        if lookup(sim, record) != Some(to) {
            fail(
                &mut found,
                format!("the DHT does not send {short} to {}", sim.nodes[to].name),
            );
        }
        let nodes = replicas_of(sim, record).chain(sim.patients.get(record).copied());
        for n in nodes {
            let home = sim.nodes[n].replicas.get(record).and_then(|r| r.home);
            if home != Some(to) {
                fail(
                    &mut found,
                    format!(
                        "{} takes {short}'s home to be {}, not {}",
                        sim.nodes[n].name,
                        home.map_or("unknown", |h| sim.nodes[h].name.as_str()),
                        sim.nodes[to].name
                    ),
                );
            }
        }
        for n in replicas_of(sim, record) {
            if !op.reached.contains(&(n, *record)) {
                fail(
                    &mut found,
                    format!(
                        "{} never synced {short} with its new host {}",
                        sim.nodes[n].name, sim.nodes[to].name
                    ),
                );
            }
        }
    }
    let (worst, bound) = spread(&loads(sim, &op.hosts));
    if worst > bound {
        fail(
            &mut load,
            format!(
                "a host's load is {:.1} % from the mean (bound {:.1} %)",
                100.0 * worst,
                100.0 * bound
            ),
        );
    }
    vec![one, moved, found, load]
}

/// The host the DHT names for `record`: its pointer decoded and the patient's signature
/// checked, as a node's lookup does.
fn lookup(sim: &Sim, record: &RecordId) -> Option<NodeId> {
    let p = sim.directory.get(record)?;
    let p = SignedPointer::decode(&p.encode(), record).ok()?;
    sim.node_of_peer(&p.pointer.host)
}

/// The city's figures (none when the run has no operator).
pub(crate) fn figures(sim: &Sim) -> Option<CityFigures> {
    let op = sim.operator.as_ref()?;
    let after = op.hosts.len();
    let before = after - usize::from(op.added.is_some());
    let load_after = loads(sim, &op.hosts);
    let mut times: Vec<Time> = Vec::new();
    let start = op.rebalanced_at.unwrap_or(0);
    let mut last = start;
    for (record, t) in &op.done {
        let noticed = op.asked.get(record).map_or(start, |a| a.2);
        times.push(t.saturating_sub(noticed));
        last = last.max(*t);
    }
    times.sort_unstable();
    let replicas: usize = op.asked.keys().map(|r| replicas_of(sim, r).count()).sum();
    Some(CityFigures {
        hosts: (before, after),
        load_before: op.load_before.iter().map(|&(_, l)| l).collect(),
        spread: spread(&load_after),
        load_after,
        admitted: op.admitted,
        moves: (op.asked.len(), op.done.len()),
        passes: op.passes,
        rebalance_time: last - start,
        move_time: (
            times.get(times.len() / 2).copied().unwrap_or(0),
            times.last().copied().unwrap_or(0),
        ),
        reached: (op.reached.len(), replicas),
    })
}

#[cfg(test)]
mod tests {
    use crate::{check, scenario, Options, Scenario, Size};

    fn city_failures(sim: &mut crate::sim::Sim) -> Vec<(&'static str, Vec<String>)> {
        check::check(sim)
            .checks
            .into_iter()
            .filter(|c| c.name.starts_with("city:"))
            .map(|c| (c.name, c.failures))
            .collect()
    }

    /// The city invariants hold on a run, and fail when an old host keeps a moved record
    /// or a replica still takes the old host for the record's home.
    #[test]
    fn the_city_invariants_see_a_record_left_behind_and_a_lookup_gone_astray() {
        let options = Options {
            patients: Some(240),
            hosts: Some(3),
        };
        let mut sim = scenario::build(Scenario::City, 4, Size::Small, options);
        sim.run();
        let f = city_failures(&mut sim);
        assert_eq!(f.len(), 4);
        assert!(f.iter().all(|(_, x)| x.is_empty()), "{f:?}");
        let op = sim.operator.as_ref().expect("an operator");
        let (&record, &(from, to, _)) = op.asked.iter().next().expect("a move was asked");
        // The old host still holds the record.
        sim.nodes[from].store.hold(record);
        let f = city_failures(&mut sim);
        let short = record.short();
        assert!(f[0].1.iter().any(|x| x.contains(&short)), "{f:?}");
        assert!(f[1].1.iter().any(|x| x.contains("still holds")), "{f:?}");
        assert!(f[2].1.is_empty() && f[3].1.is_empty(), "{f:?}");
        // A replica that did not follow the move.
        let replica = sim.replicators[&record]
            .iter()
            .copied()
            .find(|&n| sim.patients.get(&record) != Some(&n))
            .expect("a replica");
        sim.nodes[replica]
            .replicas
            .get_mut(&record)
            .expect("held")
            .home = Some(from);
        let f = city_failures(&mut sim);
        assert!(
            f[2].1.iter().any(|x| x.contains("takes")),
            "{f:?} (new host {to})"
        );
    }
}
