//! Shards and backends.
//!
//! A session key (the session id) hashes to one of a fixed number of shards
//! with [`stable_hash`] (FNV-1a 64 followed by a 64-bit finaliser), which is
//! the same in every process, on every machine and with every Rust version,
//! so API nodes and backends agree without talking. The shard is the RabbitMQ
//! routing key ([`ShardId::routing_key`]).
//!
//! Shards are assigned to backend nodes by rendezvous (highest random weight)
//! hashing: each shard goes to the backend with the highest
//! `score(shard, backend)`. The assignment is a pure function of the shard
//! count and the *set* of backends — any node that knows the membership
//! computes the same owners, and nothing needs to be persisted. Adding a
//! backend moves to it exactly the shards it now wins (about `1/(n+1)` of
//! them) and moves nothing else; removing one moves only its shards, spread
//! over the rest. The shell acts on the [`Assignment`] diff: the old owner
//! stops consuming a shard's queue and flushes its sessions, then the new
//! owner starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The default number of shards.
pub const DEFAULT_SHARDS: u32 = 64;

/// The largest shard count a [`Ring`] accepts.
pub const MAX_SHARDS: u32 = 65_536;

/// The longest backend id, in bytes.
pub const MAX_BACKEND_ID_LEN: usize = 255;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit, over `bytes`. Fixed by its definition; never changes.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The 64-bit finaliser of MurmurHash3 (`fmix64`): spreads every input bit
/// over every output bit. Fixed by its definition; never changes.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// The service's stable hash: `fmix64(fnv1a64(bytes))`. The same value in
/// every process and every build; use it (never `std`'s `DefaultHasher`)
/// wherever two processes must agree.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    fmix64(fnv1a64(bytes))
}

/// A shard number, `0..shard_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    /// The RabbitMQ routing key of the shard: `shard.<n>`.
    pub fn routing_key(self) -> String {
        format!("shard.{}", self.0)
    }

    /// The name of the shard's RabbitMQ queue under a service name:
    /// `<service>.shard.<n>`.
    pub fn queue_name(self, service: &str) -> String {
        format!("{service}.shard.{}", self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of a backend node (for example its Corral task id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackendId(String);

impl BackendId {
    /// Checks and wraps a backend id: 1 to [`MAX_BACKEND_ID_LEN`] bytes, no
    /// control characters.
    pub fn new(id: impl Into<String>) -> Result<BackendId, RingError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_BACKEND_ID_LEN || id.chars().any(char::is_control) {
            return Err(RingError::InvalidBackendId(id));
        }
        Ok(BackendId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BackendId {
    type Error = RingError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BackendId::new(s)
    }
}

impl From<BackendId> for String {
    fn from(b: BackendId) -> String {
        b.0
    }
}

/// What the ring refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The shard count is 0 or above [`MAX_SHARDS`].
    #[error("shard count {0} is out of range 1..={MAX_SHARDS}")]
    ShardCount(u32),
    /// A backend id is empty, too long or has control characters.
    #[error("backend id {0:?} is invalid: it must be 1 to {MAX_BACKEND_ID_LEN} bytes without control characters")]
    InvalidBackendId(String),
    /// The backend is already in the ring.
    #[error("backend {0} is already in the ring")]
    DuplicateBackend(BackendId),
    /// The backend is not in the ring.
    #[error("backend {0} is not in the ring")]
    UnknownBackend(BackendId),
}

/// One shard changing hands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// The shard.
    pub shard: ShardId,
    /// Its owner before; `None` when the ring had no backend.
    pub from: Option<BackendId>,
    /// Its owner after; `None` when the ring has no backend left.
    pub to: Option<BackendId>,
}

/// The difference between two assignments: which shards move from whom to
/// whom, in shard order. The shell makes each `from` release the shard (stop
/// consuming its queue, flush its sessions) before `to` acquires it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The moves, one per shard whose owner changed, in shard order.
    pub moves: Vec<Move>,
}

impl Assignment {
    /// Whether no shard moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// How many shards move.
    pub fn len(&self) -> usize {
        self.moves.len()
    }

    /// The shards `backend` must stop serving.
    pub fn released_by(&self, backend: &BackendId) -> Vec<ShardId> {
        self.moves
            .iter()
            .filter(|m| m.from.as_ref() == Some(backend))
            .map(|m| m.shard)
            .collect()
    }

    /// The shards `backend` must start serving.
    pub fn acquired_by(&self, backend: &BackendId) -> Vec<ShardId> {
        self.moves
            .iter()
            .filter(|m| m.to.as_ref() == Some(backend))
            .map(|m| m.shard)
            .collect()
    }
}

/// The shard ring: a fixed shard count and the current set of backends, with
/// each shard's owner computed by rendezvous hashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    shards: u32,
    backends: BTreeSet<BackendId>,
    /// `owners[s]` owns shard `s`; `None` only when there is no backend.
    owners: Vec<Option<BackendId>>,
}

impl Ring {
    /// A ring of `shards` shards and no backends.
    pub fn new(shards: u32) -> Result<Ring, RingError> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(RingError::ShardCount(shards));
        }
        Ok(Ring {
            shards,
            backends: BTreeSet::new(),
            owners: vec![None; shards as usize],
        })
    }

    /// A ring of `shards` shards over `backends` (duplicates are merged).
    pub fn with_backends(
        shards: u32,
        backends: impl IntoIterator<Item = BackendId>,
    ) -> Result<Ring, RingError> {
        let mut ring = Ring::new(shards)?;
        ring.set_backends(backends);
        Ok(ring)
    }

    /// The number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// The shard a session key belongs to: `stable_hash(key)` reduced to
    /// `0..shard_count` by multiply-shift (no modulo bias worth the name).
    pub fn shard_for(&self, key: &[u8]) -> ShardId {
        shard_for(key, self.shards)
    }

    /// The current backends, in order.
    pub fn backends(&self) -> impl Iterator<Item = &BackendId> {
        self.backends.iter()
    }

    /// Whether `backend` is in the ring.
    pub fn contains(&self, backend: &BackendId) -> bool {
        self.backends.contains(backend)
    }

    /// The owner of `shard`; `None` if the shard is out of range or there is
    /// no backend.
    pub fn owner(&self, shard: ShardId) -> Option<&BackendId> {
        self.owners.get(shard.0 as usize).and_then(Option::as_ref)
    }

    /// The shard of `key` and its owner (`None` when there is no backend).
    pub fn route(&self, key: &[u8]) -> (ShardId, Option<&BackendId>) {
        let shard = self.shard_for(key);
        (shard, self.owner(shard))
    }

    /// The shards `backend` owns, in order.
    pub fn shards_of(&self, backend: &BackendId) -> Vec<ShardId> {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, o)| o.as_ref() == Some(backend))
            .map(|(s, _)| ShardId(s as u32))
            .collect()
    }

    /// How many shards each backend owns (every backend listed, even with 0).
    pub fn load(&self) -> BTreeMap<BackendId, usize> {
        let mut load: BTreeMap<BackendId, usize> =
            self.backends.iter().map(|b| (b.clone(), 0)).collect();
        for owner in self.owners.iter().flatten() {
            *load.entry(owner.clone()).or_default() += 1;
        }
        load
    }

    /// Adds a backend; returns the shards that move to it.
    pub fn add_backend(&mut self, backend: BackendId) -> Result<Assignment, RingError> {
        if self.backends.contains(&backend) {
            return Err(RingError::DuplicateBackend(backend));
        }
        let mut next = self.backends.clone();
        next.insert(backend);
        Ok(self.set_backends(next))
    }

    /// Removes a backend (it left or failed); returns where its shards go.
    pub fn remove_backend(&mut self, backend: &BackendId) -> Result<Assignment, RingError> {
        if !self.backends.contains(backend) {
            return Err(RingError::UnknownBackend(backend.clone()));
        }
        let mut next = self.backends.clone();
        next.remove(backend);
        Ok(self.set_backends(next))
    }

    /// Replaces the set of backends (for example with the running backend
    /// tasks after a reconcile); returns the moves.
    pub fn set_backends(&mut self, backends: impl IntoIterator<Item = BackendId>) -> Assignment {
        self.backends = backends.into_iter().collect();
        let owners = assign(self.shards, &self.backends);
        let moves = self
            .owners
            .iter()
            .zip(&owners)
            .enumerate()
            .filter(|(_, (old, new))| old != new)
            .map(|(s, (old, new))| Move {
                shard: ShardId(s as u32),
                from: old.clone(),
                to: new.clone(),
            })
            .collect();
        self.owners = owners;
        Assignment { moves }
    }
}

/// The shard of `key` among `shards` shards (see [`Ring::shard_for`]).
///
/// # Panics
/// Never; `shards == 0` yields shard 0.
pub fn shard_for(key: &[u8], shards: u32) -> ShardId {
    let h = stable_hash(key);
    ShardId(((u128::from(h) * u128::from(shards)) >> 64) as u32)
}

/// The rendezvous score of `backend` for `shard`; the highest score wins.
pub fn score(shard: ShardId, backend: &BackendId) -> u64 {
    // Seeded per shard so that a backend's scores for different shards are
    // independent; the backend's own hash is computed once per call.
    fmix64(
        stable_hash(backend.as_str().as_bytes())
            ^ fmix64(u64::from(shard.0) ^ 0x9e37_79b9_7f4a_7c15),
    )
}

fn assign(shards: u32, backends: &BTreeSet<BackendId>) -> Vec<Option<BackendId>> {
    let hashes: Vec<(u64, &BackendId)> = backends
        .iter()
        .map(|b| (stable_hash(b.as_str().as_bytes()), b))
        .collect();
    (0..shards)
        .map(|s| {
            let seed = fmix64(u64::from(s) ^ 0x9e37_79b9_7f4a_7c15);
            hashes
                .iter()
                // Ties (astronomically rare) go to the smaller id: `max_by_key`
                // keeps the last maximum, so compare on (score, Reverse(id)).
                .max_by(|(ha, a), (hb, b)| {
                    fmix64(ha ^ seed)
                        .cmp(&fmix64(hb ^ seed))
                        .then_with(|| b.cmp(a))
                })
                .map(|(_, b)| (*b).clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> BackendId {
        BackendId::new(s).unwrap()
    }

    fn names(n: usize) -> Vec<BackendId> {
        (0..n).map(|i| b(&format!("backend-{i}"))).collect()
    }

    #[test]
    fn fnv_known_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Pinned values: if these change, routing changes between versions.
        assert_eq!(stable_hash(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(fmix64(0), 0);
        assert_eq!(stable_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        let s = shard_for(b"0123456789abcdef0123456789abcdef", 64);
        assert_eq!(s, shard_for(b"0123456789abcdef0123456789abcdef", 64));
        let pinned: Vec<u32> = ["a", "b", "session-1", "session-2"]
            .iter()
            .map(|k| shard_for(k.as_bytes(), 64).0)
            .collect();
        assert_eq!(pinned, PINNED_SHARDS);
    }

    // Computed independently (Python) from the FNV-1a and fmix64 definitions.
    const PINNED_SHARDS: [u32; 4] = [32, 27, 60, 11];

    #[test]
    fn routing_names() {
        assert_eq!(ShardId(7).routing_key(), "shard.7");
        assert_eq!(ShardId(7).queue_name("eventing"), "eventing.shard.7");
    }

    #[test]
    fn bad_input() {
        assert_eq!(Ring::new(0), Err(RingError::ShardCount(0)));
        assert!(Ring::new(MAX_SHARDS + 1).is_err());
        assert!(BackendId::new("").is_err());
        assert!(BackendId::new("a\nb").is_err());
        assert!(BackendId::new("x".repeat(256)).is_err());
        let mut ring = Ring::with_backends(8, names(2)).unwrap();
        assert_eq!(
            ring.add_backend(b("backend-0")),
            Err(RingError::DuplicateBackend(b("backend-0")))
        );
        assert_eq!(
            ring.remove_backend(&b("nope")),
            Err(RingError::UnknownBackend(b("nope")))
        );
        assert!(serde_json::from_str::<BackendId>("\"\"").is_err());
    }

    #[test]
    fn empty_ring_and_single_backend() {
        let mut ring = Ring::new(16).unwrap();
        assert_eq!(ring.route(b"k").1, None);
        let a = ring.add_backend(b("only")).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.moves.iter().all(|m| m.from.is_none()));
        assert_eq!(a.acquired_by(&b("only")).len(), 16);
        assert_eq!(ring.route(b"k").1, Some(&b("only")));
        let r = ring.remove_backend(&b("only")).unwrap();
        assert_eq!(r.released_by(&b("only")).len(), 16);
        assert!(r.moves.iter().all(|m| m.to.is_none()));
        assert!(ring.owner(ShardId(0)).is_none());
        assert!(ring.owner(ShardId(99)).is_none());
    }

    #[test]
    fn assignment_independent_of_insertion_order() {
        let mut fwd = Ring::new(64).unwrap();
        for n in names(5) {
            fwd.add_backend(n).unwrap();
        }
        let mut rev = Ring::new(64).unwrap();
        for n in names(5).into_iter().rev() {
            rev.add_backend(n).unwrap();
        }
        assert_eq!(fwd, rev);
        assert_eq!(fwd, Ring::with_backends(64, names(5)).unwrap());
    }

    /// Deterministic names, 64 and 1024 shards: balance within a fixed bound.
    #[test]
    fn load_balance_with_typical_names() {
        for shards in [64u32, 1024] {
            for n in 1..=16usize {
                let ring = Ring::with_backends(shards, names(n)).unwrap();
                let load = ring.load();
                let mean = f64::from(shards) / n as f64;
                let max = *load.values().max().unwrap() as f64;
                let bound = mean + 4.0 * mean.sqrt() + 2.0;
                assert!(
                    max <= bound,
                    "shards={shards} n={n} max={max} bound={bound} {load:?}"
                );
                assert_eq!(load.values().sum::<usize>(), shards as usize);
            }
        }
    }

    fn backend_set() -> impl Strategy<Value = Vec<BackendId>> {
        prop::collection::btree_set("[a-z0-9-]{1,24}", 1..12)
            .prop_map(|s| s.into_iter().map(|n| BackendId::new(n).unwrap()).collect())
    }

    /// A tail bound on a Binomial(shards, p) count that is essentially never
    /// exceeded (mean + 6 sd + 2).
    fn tail_bound(shards: u32, p: f64) -> usize {
        let mean = f64::from(shards) * p;
        (mean + 6.0 * (mean * (1.0 - p)).sqrt() + 2.0).ceil() as usize
    }

    proptest! {
        #[test]
        fn adding_moves_a_fair_share_only_to_the_new_backend(
            set in backend_set(),
            new in "[A-Z]{1,10}",
            shards in prop::sample::select(vec![16u32, 64, 256]),
        ) {
            let mut ring = Ring::with_backends(shards, set.clone()).unwrap();
            let before = ring.clone();
            let new = BackendId::new(new).unwrap();
            let diff = ring.add_backend(new.clone()).unwrap();
            let n = set.len() + 1;
            prop_assert!(diff.len() <= tail_bound(shards, 1.0 / n as f64),
                "moved {} of {} with {} backends", diff.len(), shards, n);
            for m in &diff.moves {
                prop_assert_eq!(m.to.as_ref(), Some(&new));
                prop_assert_eq!(m.from.as_ref(), before.owner(m.shard));
            }
            // Every shard not in the diff kept its owner.
            for s in 0..shards {
                let s = ShardId(s);
                if !diff.moves.iter().any(|m| m.shard == s) {
                    prop_assert_eq!(before.owner(s), ring.owner(s));
                }
            }
            prop_assert_eq!(ring.shards_of(&new), diff.acquired_by(&new));
        }

        #[test]
        fn removing_moves_only_the_removed_backends_shards(
            set in backend_set(),
            pick in any::<prop::sample::Index>(),
            shards in prop::sample::select(vec![16u32, 64, 256]),
        ) {
            let mut ring = Ring::with_backends(shards, set.clone()).unwrap();
            let before = ring.clone();
            let gone = pick.get(&set).clone();
            let owned = before.shards_of(&gone);
            let diff = ring.remove_backend(&gone).unwrap();
            prop_assert_eq!(diff.released_by(&gone), owned.clone());
            prop_assert_eq!(diff.len(), owned.len());
            for m in &diff.moves {
                prop_assert_eq!(m.from.as_ref(), Some(&gone));
                if set.len() > 1 {
                    prop_assert!(m.to.is_some());
                    prop_assert!(m.to.as_ref() != Some(&gone));
                }
            }
            prop_assert!(ring.shards_of(&gone).is_empty());
            // Adding it back restores exactly the old assignment.
            let back = ring.add_backend(gone.clone()).unwrap();
            prop_assert_eq!(&ring, &before);
            prop_assert_eq!(back.acquired_by(&gone), owned);
        }

        #[test]
        fn load_is_bounded(set in backend_set(), shards in prop::sample::select(vec![64u32, 1024])) {
            let ring = Ring::with_backends(shards, set.clone()).unwrap();
            let load = ring.load();
            prop_assert_eq!(load.len(), set.len());
            prop_assert_eq!(load.values().sum::<usize>(), shards as usize);
            let bound = tail_bound(shards, 1.0 / set.len() as f64);
            for (backend, l) in &load {
                prop_assert!(*l <= bound, "{} owns {} of {} (bound {})", backend, l, shards, bound);
            }
        }

        #[test]
        fn shard_for_is_in_range_and_deterministic(key in prop::collection::vec(any::<u8>(), 0..64), shards in 1u32..=MAX_SHARDS) {
            let s = shard_for(&key, shards);
            prop_assert!(s.0 < shards);
            prop_assert_eq!(s, shard_for(&key, shards));
        }

        #[test]
        fn every_shard_has_an_owner_in_the_set(set in backend_set(), shards in 1u32..300) {
            let ring = Ring::with_backends(shards, set.clone()).unwrap();
            for s in 0..shards {
                let owner = ring.owner(ShardId(s)).unwrap();
                prop_assert!(set.contains(owner));
                // The owner has the highest score.
                let best = set.iter().map(|b| score(ShardId(s), b)).max().unwrap();
                prop_assert_eq!(score(ShardId(s), owner), best);
            }
        }
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut counts = [0usize; 64];
        for i in 0..64_000 {
            counts[shard_for(format!("{i:032x}").as_bytes(), 64).0 as usize] += 1;
        }
        // Mean 1000, sd ~31.5: every shard within 6 sd.
        assert!(
            counts.iter().all(|&c| (810..=1190).contains(&c)),
            "{counts:?}"
        );
    }
}
