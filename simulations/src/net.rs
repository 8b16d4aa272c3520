//! The in-memory network: per-link latency and bandwidth, loss, duplication, delay spikes
//! and partitions, all drawn from a seeded stream. Time is virtual.

use crate::rng::Rng;
use crate::Time;

/// Faults currently in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Probability of a delay spike.
    pub delay_p: f64,
    /// Longest delay spike (ms).
    pub delay_max: Time,
}

/// What the network did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Dropped.
    Lost,
    /// Delivered after each of these delays (two for a duplicate).
    Deliver(Vec<Time>),
}

/// Bytes a link carries per virtual millisecond (10 Mbit/s).
const BYTES_PER_MS: u64 = 1250;

/// The network.
#[derive(Debug)]
pub(crate) struct Net {
    rng: Rng,
    seed: u64,
    /// Faults in force.
    pub faults: Faults,
    /// While partitioned: a group per node; nodes reach only their own group.
    pub groups: Option<Vec<u8>>,
    /// Messages sent.
    pub sent: u64,
    /// Messages lost (loss, partition, or a node that was down).
    pub lost: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Bytes sent.
    pub bytes: u64,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Net {
    pub(crate) fn new(seed: u64) -> Self {
        Net {
            rng: Rng::new(seed, 2),
            seed,
            faults: Faults::default(),
            groups: None,
            sent: 0,
            lost: 0,
            duplicated: 0,
            bytes: 0,
        }
    }

    /// A link's base one-way latency: 5–120 ms, fixed per link for the run.
    pub(crate) fn base_latency(&self, a: usize, b: usize) -> Time {
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        5 + mix(self.seed ^ mix(x << 32 | y)) % 116
    }

    /// Whether a partition separates two nodes.
    pub(crate) fn reachable(&self, a: usize, b: usize) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|g| g.get(a).copied().unwrap_or(0) == g.get(b).copied().unwrap_or(0))
    }

    /// Sends `len` bytes from `a` to `b`.
    pub(crate) fn send(&mut self, a: usize, b: usize, len: usize) -> Fate {
        self.sent += 1;
        self.bytes += len as u64;
        if !self.reachable(a, b) || self.rng.chance(self.faults.loss) {
            self.lost += 1;
            return Fate::Lost;
        }
        let base = self.base_latency(a, b);
        let mut d = base + self.rng.below(base / 2 + 1) + len as u64 / BYTES_PER_MS;
        if self.rng.chance(self.faults.delay_p) {
            d += self.rng.below(self.faults.delay_max + 1);
        }
        if self.rng.chance(self.faults.dup) {
            self.duplicated += 1;
            let again = d + self.rng.below(2 * base + 1);
            return Fate::Deliver(vec![d, again]);
        }
        Fate::Deliver(vec![d])
    }
}
