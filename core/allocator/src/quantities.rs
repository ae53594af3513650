//! Fixed-size scalar quantities: the allocator's arithmetic for shares,
//! quota and headroom, without allocation.

use std::collections::BTreeMap;

use corral_api::resources::{round_scalar, Resources};
use corral_api::v1;

/// How many distinct scalar resource names the allocator tracks for
/// fairness and quota (cpus, mem, disk, gpus and a few custom ones).
/// Further names are still offered, but do not count towards shares.
pub const MAX_SCALARS: usize = 8;

const EPSILON: f64 = 1e-9;

/// Quantities of scalar resources, indexed by `ScalarNames`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantities(pub [f64; MAX_SCALARS]);

impl Quantities {
    /// All zero.
    pub const ZERO: Quantities = Quantities([0.0; MAX_SCALARS]);
    /// All unbounded (no limit).
    pub const INFINITE: Quantities = Quantities([f64::INFINITY; MAX_SCALARS]);

    /// Adds `o`.
    pub fn add(&mut self, o: &Quantities) {
        for i in 0..MAX_SCALARS {
            self.0[i] += o.0[i];
        }
    }

    /// Subtracts `o`, never going below zero.
    pub fn sub(&mut self, o: &Quantities) {
        for i in 0..MAX_SCALARS {
            let v = self.0[i] - o.0[i];
            self.0[i] = if v.is_nan() || v < EPSILON { 0.0 } else { v };
        }
    }

    /// Element-wise minimum.
    pub fn min_with(&mut self, o: &Quantities) {
        for i in 0..MAX_SCALARS {
            self.0[i] = self.0[i].min(o.0[i]);
        }
    }

    /// Whether every quantity is (about) zero.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|v| *v <= EPSILON)
    }

    /// Whether every quantity is unbounded.
    pub fn is_infinite(&self) -> bool {
        self.0.iter().all(|v| v.is_infinite())
    }

    /// Whether some quantity is larger than in `o`.
    pub fn exceeds(&self, o: &Quantities) -> bool {
        (0..MAX_SCALARS).any(|i| self.0[i] > o.0[i] + EPSILON)
    }

    /// How far `self` meets `target` on the least met positive target
    /// (0.0 nothing met, 1.0 everything met).
    pub fn fraction_of(&self, target: &Quantities) -> f64 {
        (0..MAX_SCALARS)
            .filter(|i| target.0[*i] > EPSILON)
            .map(|i| (self.0[i] / target.0[i]).min(1.0))
            .fold(1.0, f64::min)
    }

    /// Dominant share against cluster totals.
    pub fn dominant_share(&self, totals: &Quantities) -> f64 {
        let mut share: f64 = 0.0;
        for i in 0..MAX_SCALARS {
            if totals.0[i] > EPSILON {
                share = share.max(self.0[i] / totals.0[i]);
            }
        }
        share
    }
}

/// Interned scalar resource names.
#[derive(Clone, Debug)]
pub struct ScalarNames {
    names: Vec<String>,
}

impl Default for ScalarNames {
    fn default() -> Self {
        Self {
            names: ["cpus", "mem", "disk", "gpus"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl ScalarNames {
    /// The index of `name`, interning it while there is room.
    pub fn index(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.find(name) {
            return Some(i);
        }
        if self.names.len() < MAX_SCALARS {
            self.names.push(name.to_string());
            return Some(self.names.len() - 1);
        }
        None
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Interns every scalar name of `rs`.
    pub fn intern_all(&mut self, rs: &Resources) {
        for r in rs.as_slice() {
            if r.scalar.is_some() {
                self.index(&r.name);
            }
        }
    }

    /// The scalar quantity of one resource.
    pub fn of_one(&self, r: &v1::Resource) -> Quantities {
        let mut q = Quantities::ZERO;
        if let (Some(s), Some(i)) = (&r.scalar, self.find(&r.name)) {
            q.0[i] = s.value;
        }
        q
    }

    /// The scalar quantities of a bag.
    pub fn of(&self, rs: &Resources) -> Quantities {
        let mut q = Quantities::ZERO;
        for r in rs.as_slice() {
            q.add(&self.of_one(r));
        }
        q
    }

    /// Quantities as a name -> value map, keeping values where `keep`.
    pub fn to_map(&self, q: &Quantities, keep: impl Fn(f64) -> bool) -> BTreeMap<String, f64> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(q.0[*i]))
            .map(|(i, n)| (n.clone(), round_scalar(q.0[i])))
            .collect()
    }

    /// Cuts the scalars of `pool` down to `cap` (non-scalars are kept; a
    /// persistent volume that does not fit whole is left out).
    pub fn chop(&self, pool: &Resources, cap: &Quantities) -> Resources {
        let mut room = *cap;
        let mut out = Vec::with_capacity(pool.as_slice().len());
        for r in pool.as_slice() {
            let (Some(s), Some(i)) = (&r.scalar, self.find(&r.name)) else {
                out.push(r.clone());
                continue;
            };
            if room.0[i].is_infinite() {
                out.push(r.clone());
                continue;
            }
            let take = round_scalar(s.value.min(room.0[i]));
            if take <= 0.0 {
                continue;
            }
            if r.disk.is_some() && take < s.value {
                continue;
            }
            room.0[i] -= take;
            let mut r = r.clone();
            r.scalar = Some(v1::value::Scalar { value: take });
            out.push(r);
        }
        Resources::from_vec(&out)
    }
}
