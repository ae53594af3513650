//! HDFS-backed persistent volumes.
//!
//! A volume is HDFS-backed when the reservation its disk lives on carries
//! the label `corral.storage/backend=hdfs` (see [`crate::volumes`]). Its data
//! is used from the agent's local volume directory like any volume, and kept
//! in HDFS under `--hdfs_volume_root` through `corral-storage`.

use std::path::Path;

use crate::agent::Config;
use crate::volumes::VolumeUse;

/// The agent's HDFS-backed volumes.
#[derive(Debug, Default)]
pub struct HdfsVolumes {}

impl HdfsVolumes {
    /// From the agent's configuration.
    pub fn new(_config: &Config) -> Self {
        Self {}
    }

    /// Whether an HDFS-backed volume can be created or destroyed here.
    pub fn check_configured(&self, v: &VolumeUse) -> Result<(), String> {
        Err(format!(
            "persistent volume '{}' asks for the HDFS backend, but this agent was built without \
             HDFS support (build corral with `--features hdfs`)",
            v.persistence_id
        ))
    }

    /// Whether a task may use an HDFS-backed volume now.
    pub fn check_usable(&self, v: &VolumeUse) -> Result<(), String> {
        self.check_configured(v)
    }

    /// CREATE: takes the lease and restores the stored data into `dir`.
    pub async fn open(&self, v: &VolumeUse, _dir: &Path) -> Result<(), String> {
        self.check_configured(v)
    }

    /// DESTROY: releases the lease and destroys the stored data.
    pub async fn destroy(&self, v: &VolumeUse) -> Result<(), String> {
        self.check_configured(v)
    }
}
