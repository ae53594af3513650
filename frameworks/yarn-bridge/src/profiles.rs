//! NodeManager profiles: how much a NodeManager advertises to the
//! ResourceManager, and what its task takes from an offer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a NodeManager advertises to YARN (Myriad's `profiles`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Virtual cores (`yarn.nodemanager.resource.cpu-vcores`).
    pub cpu: f64,
    /// Memory in MB (`yarn.nodemanager.resource.memory-mb`).
    pub mem: f64,
}

/// The NodeManager process's own needs, on top of what it advertises.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overhead {
    /// The NodeManager JVM's heap, MB (Myriad: 1024).
    pub jvm_max_memory_mb: f64,
    /// Its CPU (Myriad: 0.2).
    pub cpus: f64,
}

impl Default for Overhead {
    fn default() -> Self {
        Self {
            jvm_max_memory_mb: 1024.0,
            cpus: 0.2,
        }
    }
}

/// Why profiles were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// No such profile.
    #[error("unknown profile {given:?}; the profiles are {}", known.join(", "))]
    Unknown {
        /// The name given.
        given: String,
        /// The valid names.
        known: Vec<String>,
    },
    /// A profile's figures are not usable.
    #[error("profile {name}: {reason}")]
    Invalid {
        /// The profile.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The configured profiles, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    profiles: BTreeMap<String, Profile>,
    overhead: Overhead,
}

impl Default for Profiles {
    /// Myriad's defaults: zero 0/0, small 2/2048, medium 4/4096, large
    /// 10/12288, and its overhead (1024 MB heap, 0.2 CPU).
    fn default() -> Self {
        let profiles = [
            ("zero", 0.0, 0.0),
            ("small", 2.0, 2048.0),
            ("medium", 4.0, 4096.0),
            ("large", 10.0, 12288.0),
        ]
        .into_iter()
        .map(|(n, cpu, mem)| (n.to_string(), Profile { cpu, mem }))
        .collect();
        Self {
            profiles,
            overhead: Overhead::default(),
        }
    }
}

impl Profiles {
    /// `profiles` (replacing the defaults of the same names, adding the
    /// others) with `overhead`; refuses negative or non-finite figures.
    pub fn new(
        profiles: BTreeMap<String, Profile>,
        overhead: Overhead,
    ) -> Result<Self, ProfileError> {
        let mut all = Self::default();
        for (name, p) in profiles {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ProfileError::Invalid {
                    name,
                    reason: "names are letters, digits, '-' and '_'".into(),
                });
            }
            if !(p.cpu.is_finite() && p.mem.is_finite()) || p.cpu < 0.0 || p.mem < 0.0 {
                return Err(ProfileError::Invalid {
                    name,
                    reason: "cpu and mem must be non-negative numbers".into(),
                });
            }
            all.profiles.insert(name, p);
        }
        if !(overhead.cpus.is_finite() && overhead.jvm_max_memory_mb.is_finite())
            || overhead.cpus < 0.0
            || overhead.jvm_max_memory_mb < 0.0
        {
            return Err(ProfileError::Invalid {
                name: "overhead".into(),
                reason: "cpus and jvmMaxMemoryMb must be non-negative numbers".into(),
            });
        }
        all.overhead = overhead;
        Ok(all)
    }

    /// The profile `name`, or an error listing the valid ones.
    pub fn get(&self, name: &str) -> Result<Profile, ProfileError> {
        self.profiles
            .get(name)
            .copied()
            .ok_or_else(|| ProfileError::Unknown {
                given: name.to_string(),
                known: self.names(),
            })
    }

    /// The profile names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// Every profile, by name.
    pub fn all(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    /// The NodeManager's own overhead.
    pub fn overhead(&self) -> Overhead {
        self.overhead
    }

    /// What a NodeManager of `profile` takes from an offer: what it
    /// advertises plus its own overhead (cpus, mem in MB).
    pub fn task_resources(&self, profile: &str) -> Result<(f64, f64), ProfileError> {
        let p = self.get(profile)?;
        Ok((
            p.cpu + self.overhead.cpus,
            p.mem + self.overhead.jvm_max_memory_mb,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn myriads_defaults_with_the_nodemanagers_overhead() {
        let p = Profiles::default();
        assert_eq!(p.names(), ["large", "medium", "small", "zero"]);
        assert_eq!(
            p.get("small").expect("small"),
            Profile {
                cpu: 2.0,
                mem: 2048.0
            }
        );
        assert_eq!(p.task_resources("medium").expect("medium"), (4.2, 5120.0));
        assert_eq!(p.task_resources("zero").expect("zero"), (0.2, 1024.0));
        assert_eq!(p.task_resources("large").expect("large"), (10.2, 13312.0));
    }

    #[test]
    fn an_unknown_profile_names_the_valid_ones() {
        let e = Profiles::default().get("huge").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown profile \"huge\"; the profiles are large, medium, small, zero"
        );
    }

    #[test]
    fn configured_profiles_replace_and_extend_the_defaults() {
        let custom = [
            (
                "small".to_string(),
                Profile {
                    cpu: 1.0,
                    mem: 1024.0,
                },
            ),
            (
                "gpu-box".to_string(),
                Profile {
                    cpu: 16.0,
                    mem: 65536.0,
                },
            ),
        ]
        .into();
        let p = Profiles::new(
            custom,
            Overhead {
                jvm_max_memory_mb: 512.0,
                cpus: 0.5,
            },
        )
        .expect("profiles");
        assert_eq!(p.task_resources("small").expect("small"), (1.5, 1536.0));
        assert!(p.get("gpu-box").is_ok() && p.get("large").is_ok());
        let bad = [(
            "x".to_string(),
            Profile {
                cpu: -1.0,
                mem: 1.0,
            },
        )]
        .into();
        assert!(Profiles::new(bad, Overhead::default()).is_err());
        let bad = [("a b".to_string(), Profile { cpu: 1.0, mem: 1.0 })].into();
        assert!(Profiles::new(bad, Overhead::default()).is_err());
    }
}
