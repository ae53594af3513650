//! HDFS-backed persistent volumes.
//!
//! A volume is HDFS-backed when the reservation its disk lives on (the last
//! entry of `reservations`) carries the label `corral.storage/backend=hdfs`
//! (see [`crate::volumes`]). Tasks use it from the agent's local volume
//! directory like any volume; a copy is kept under `--hdfs_volume_root`
//! through `corral-storage` (Hadoop's own client), so the volume can come
//! back on another agent:
//!
//! * CREATE takes the volume's lease for this agent (holder = the agent id;
//!   refused while another holder's lease is live, naming it) and restores
//!   the stored data into the local directory (empty for a new volume).
//! * While the agent holds it, the lease is renewed every third of
//!   `--hdfs_lease_timeout`; the local data is written back when a task
//!   using the volume ends, every `--hdfs_writeback_interval`, and on demand
//!   (`POST /volumes/writeback`). A write-back is fenced by the lease's
//!   generation: once another agent took the volume over, this one can never
//!   commit into it again, and the volume is unusable here.
//! * DESTROY destroys the stored data (and with it the lease).
//! * After a restart the agent acquires its volumes' leases again (without
//!   restoring: the local data is the newest), retrying until it gets them;
//!   a volume whose lease another agent holds meanwhile cannot be used by
//!   tasks here.
//!
//! All backend calls block (JNI); they run on `spawn_blocking`, and each
//! volume's transfers run one at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_storage::{Lease, StorageError, TransferStats, VolumeBackend, VolumeId};
use serde::Serialize;
use tokio::time::Instant;

use crate::sync::lock;
use crate::volumes::{self, VolumeUse};
use crate::AgentError;

/// The last write-back of a volume.
#[derive(Debug, Clone, Serialize)]
pub struct WriteBack {
    /// When it committed (ms since the epoch).
    pub at_unix_ms: u64,
    /// What it moved.
    pub stats: TransferStats,
    /// The lease generation it committed with.
    pub generation: u64,
}

/// What the agent knows of one HDFS-backed volume (for `GET /volumes`).
#[derive(Debug, Clone, Serialize)]
pub struct VolumeStatus {
    /// Role of the volume.
    pub role: String,
    /// Persistence id.
    pub persistence_id: String,
    /// The lease this agent holds, if any.
    pub lease: Option<Lease>,
    /// Why it holds none (or why the last renewal or write-back failed).
    pub problem: Option<String>,
    /// The last successful write-back.
    pub last_writeback: Option<WriteBack>,
    /// Successful write-backs since the agent started.
    pub writebacks: u64,
}

struct Entry {
    lease: Option<Lease>,
    problem: Option<String>,
    last_writeback: Option<WriteBack>,
    writebacks: u64,
    renewed: Instant,
    written: Instant,
    /// Serialises this volume's transfers.
    busy: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    fn new(lease: Option<Lease>) -> Self {
        Entry {
            lease,
            problem: None,
            last_writeback: None,
            writebacks: 0,
            renewed: Instant::now(),
            written: Instant::now(),
            busy: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

struct Inner {
    root: Option<String>,
    work_dir: PathBuf,
    lease_timeout: Duration,
    writeback_interval: Duration,
    backend: Mutex<Option<Arc<dyn VolumeBackend>>>,
    volumes: Mutex<BTreeMap<VolumeId, Entry>>,
}

/// The agent's HDFS-backed volumes. Cheap to clone.
#[derive(Clone)]
pub struct HdfsVolumes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HdfsVolumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsVolumes")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

fn id_of(v: &VolumeUse) -> VolumeId {
    VolumeId::new(v.role.clone(), v.persistence_id.clone())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a write-back did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteBackError {
    /// The agent has no volume store (`--hdfs_volume_root`).
    #[error("this agent has no HDFS volume store: start it with --hdfs_volume_root (and a build with the cargo feature `hdfs`)")]
    NotConfigured,
    /// No such HDFS-backed volume here.
    #[error("no HDFS-backed persistent volume '{persistence_id}' of role '{role}' on this agent")]
    Unknown {
        /// Role.
        role: String,
        /// Persistence id.
        persistence_id: String,
    },
    /// The agent holds no lease on it.
    #[error("this agent holds no lease on persistent volume '{persistence_id}' of role '{role}'{}", .problem.as_ref().map(|p| format!(": {p}")).unwrap_or_default())]
    NotLeased {
        /// Role.
        role: String,
        /// Persistence id.
        persistence_id: String,
        /// Why.
        problem: Option<String>,
    },
    /// The backend refused or failed.
    #[error("cannot write back persistent volume '{persistence_id}': {message}")]
    Failed {
        /// Persistence id.
        persistence_id: String,
        /// The backend's error.
        message: String,
    },
}

/// A failed backend call.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the storage call panicked: {0}")]
    Panicked(String),
}

impl CallError {
    /// Another agent took the volume over: this lease is dead for good.
    fn fenced(&self) -> bool {
        matches!(self, CallError::Storage(StorageError::Fenced { .. }))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, CallError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(CallError::Storage),
        Err(e) => Err(CallError::Panicked(e.to_string())),
    }
}

/// Whether this build has the HDFS backend (cargo feature `hdfs`).
pub const HDFS_BUILT_IN: bool = cfg!(feature = "hdfs");

impl HdfsVolumes {
    /// From the settings themselves.
    pub fn with_settings(
        root: Option<String>,
        work_dir: PathBuf,
        lease_timeout: Duration,
        writeback_interval: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                root,
                work_dir,
                lease_timeout,
                writeback_interval,
                backend: Mutex::new(None),
                volumes: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Connects to `--hdfs_volume_root` (starting the JVM), when it is set.
    pub async fn connect(&self) -> Result<(), AgentError> {
        let Some(root) = self.inner.root.clone() else {
            return Ok(());
        };
        let backend = connect_backend(&root).await?;
        tracing::info!(root = %root, backend = backend.name(), "connected to the volume store");
        self.set_backend(backend);
        Ok(())
    }

    /// Uses `backend` for HDFS-backed volumes (tests give a local one).
    pub fn set_backend(&self, backend: Arc<dyn VolumeBackend>) {
        *lock(&self.inner.backend) = Some(backend);
    }

    fn backend(&self) -> Option<Arc<dyn VolumeBackend>> {
        lock(&self.inner.backend).clone()
    }

    /// Whether HDFS-backed volumes can be created or destroyed here.
    pub fn check_configured(&self, v: &VolumeUse) -> Result<(), String> {
        if self.backend().is_some() {
            return Ok(());
        }
        Err(if !HDFS_BUILT_IN {
            format!(
                "persistent volume '{}' asks for the HDFS backend (reservation label \
                 {}={}), but this agent was built without HDFS support: build corral with \
                 `--features hdfs` and start the agent with --hdfs_volume_root",
                v.persistence_id,
                volumes::BACKEND_LABEL,
                volumes::BACKEND_HDFS
            )
        } else {
            format!(
                "persistent volume '{}' asks for the HDFS backend (reservation label {}={}), \
                 but this agent has no --hdfs_volume_root",
                v.persistence_id,
                volumes::BACKEND_LABEL,
                volumes::BACKEND_HDFS
            )
        })
    }

    /// Whether a task may use an HDFS-backed volume now: this agent holds
    /// its lease.
    pub fn check_usable(&self, v: &VolumeUse) -> Result<(), String> {
        self.check_configured(v)?;
        let vols = lock(&self.inner.volumes);
        match vols.get(&id_of(v)) {
            Some(e) if e.lease.is_some() => Ok(()),
            Some(e) => Err(format!(
                "HDFS-backed persistent volume '{}' of role '{}' is not leased by this agent{}",
                v.persistence_id,
                v.role,
                e.problem
                    .as_ref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            )),
            None => Err(format!(
                "HDFS-backed persistent volume '{}' of role '{}' is not open on this agent",
                v.persistence_id, v.role
            )),
        }
    }

    /// CREATE: takes the lease for `holder` and restores the stored data
    /// into `dir`.
    pub async fn open(&self, v: &VolumeUse, dir: &Path, holder: &str) -> Result<(), String> {
        self.check_configured(v)?;
        let backend = self.backend().ok_or("no volume store")?;
        let id = id_of(v);
        let (holder, ttl) = (holder.to_string(), self.inner.lease_timeout);
        let b = backend.clone();
        let i = id.clone();
        let lease = blocking(move || b.acquire(&i, &holder, ttl))
            .await
            .map_err(|e| {
                format!(
                    "cannot open HDFS-backed persistent volume '{}': {e}",
                    v.persistence_id
                )
            })?;
        let (b, i, d) = (backend.clone(), id.clone(), dir.to_path_buf());
        match blocking(move || b.restore(&i, &d)).await {
            Ok(stats) => {
                tracing::info!(
                    role = %v.role,
                    persistence_id = %v.persistence_id,
                    generation = lease.generation,
                    files = stats.files,
                    bytes = stats.bytes,
                    "opened hdfs-backed volume"
                );
                lock(&self.inner.volumes).insert(id, Entry::new(Some(lease)));
                Ok(())
            }
            Err(e) => {
                let b = backend.clone();
                let _ = blocking(move || b.release(&lease)).await;
                Err(format!(
                    "cannot restore HDFS-backed persistent volume '{}' into {}: {e}",
                    v.persistence_id,
                    dir.display()
                ))
            }
        }
    }

    /// DESTROY: destroys the stored data (fencing the lease). A volume whose
    /// lease this agent lost is only forgotten here: its data belongs to the
    /// agent that holds it now.
    pub async fn destroy(&self, v: &VolumeUse) -> Result<(), String> {
        self.check_configured(v)?;
        let backend = self.backend().ok_or("no volume store")?;
        let id = id_of(v);
        let (busy, held) = {
            let vols = lock(&self.inner.volumes);
            match vols.get(&id) {
                Some(e) => (Some(e.busy.clone()), e.lease.is_some()),
                None => (None, false),
            }
        };
        let _guard = match &busy {
            Some(b) => Some(b.lock().await),
            None => None,
        };
        if held {
            let i = id.clone();
            blocking(move || backend.destroy(&i)).await.map_err(|e| {
                format!(
                    "cannot destroy the stored data of HDFS-backed persistent volume '{}': {e}",
                    v.persistence_id
                )
            })?;
        } else {
            tracing::warn!(role = %v.role, persistence_id = %v.persistence_id, "destroying an hdfs-backed volume this agent holds no lease on: only the local copy goes");
        }
        lock(&self.inner.volumes).remove(&id);
        Ok(())
    }

    /// Volumes of the total found at start: their leases are acquired again
    /// by [`maintain`].
    pub fn adopt(&self, vs: &[VolumeUse]) {
        let mut vols = lock(&self.inner.volumes);
        for v in vs.iter().filter(|v| v.hdfs) {
            vols.entry(id_of(v)).or_insert_with(|| {
                let mut e = Entry::new(None);
                e.problem = Some("the agent restarted; acquiring the lease again".into());
                e
            });
        }
    }

    /// Writes a volume's local data back now. Fails when the agent holds no
    /// current lease on it.
    pub async fn write_back(
        &self,
        role: &str,
        persistence_id: &str,
    ) -> Result<WriteBack, WriteBackError> {
        let id = VolumeId::new(role, persistence_id);
        let unknown = || WriteBackError::Unknown {
            role: role.to_string(),
            persistence_id: persistence_id.to_string(),
        };
        let backend = self.backend().ok_or(WriteBackError::NotConfigured)?;
        let busy = lock(&self.inner.volumes)
            .get(&id)
            .map(|e| e.busy.clone())
            .ok_or_else(unknown)?;
        let _guard = busy.lock().await;
        let lease = {
            let vols = lock(&self.inner.volumes);
            let e = vols.get(&id).ok_or_else(unknown)?;
            e.lease.clone().ok_or_else(|| WriteBackError::NotLeased {
                role: role.to_string(),
                persistence_id: persistence_id.to_string(),
                problem: e.problem.clone(),
            })?
        };
        let dir = volumes::volume_dir(&self.inner.work_dir, role, persistence_id);
        let l = lease.clone();
        let result = blocking(move || backend.write_back(&l, &dir)).await;
        let mut vols = lock(&self.inner.volumes);
        let Some(e) = vols.get_mut(&id) else {
            return Err(unknown());
        };
        match result {
            Ok(stats) => {
                let wb = WriteBack {
                    at_unix_ms: now_ms(),
                    stats,
                    generation: lease.generation,
                };
                e.last_writeback = Some(wb.clone());
                e.writebacks += 1;
                e.written = Instant::now();
                tracing::info!(
                    role,
                    persistence_id,
                    generation = lease.generation,
                    files = stats.files,
                    bytes = stats.bytes,
                    "wrote hdfs-backed volume back"
                );
                Ok(wb)
            }
            Err(err) => {
                if err.fenced() {
                    // Taken over by another agent: never write it again.
                    tracing::error!(role, persistence_id, error = %err, "lost the lease of an hdfs-backed volume");
                    e.lease = None;
                }
                e.problem = Some(err.to_string());
                Err(WriteBackError::Failed {
                    persistence_id: persistence_id.to_string(),
                    message: err.to_string(),
                })
            }
        }
    }

    /// Writes the volumes back in the background (a task using them ended).
    pub fn write_back_later(&self, vs: Vec<VolumeUse>) {
        for v in vs.into_iter().filter(|v| v.hdfs) {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.write_back(&v.role, &v.persistence_id).await {
                    tracing::warn!(role = %v.role, persistence_id = %v.persistence_id, error = %e, "write-back after the task failed");
                }
            });
        }
    }

    /// What the agent knows of its HDFS-backed volumes.
    pub fn status(&self) -> Vec<VolumeStatus> {
        lock(&self.inner.volumes)
            .iter()
            .map(|(id, e)| VolumeStatus {
                role: id.role.clone(),
                persistence_id: id.persistence_id.clone(),
                lease: e.lease.clone(),
                problem: e.problem.clone(),
                last_writeback: e.last_writeback.clone(),
                writebacks: e.writebacks,
            })
            .collect()
    }

    /// One round of upkeep: acquires missing leases (for `holder`), renews
    /// those due, writes back those due.
    pub async fn tick(&self, holder: Option<&str>) {
        let Some(backend) = self.backend() else {
            return;
        };
        let ttl = self.inner.lease_timeout;
        let renew_every = ttl / 3;
        let due: Vec<(VolumeId, Option<Lease>, bool, bool)> = lock(&self.inner.volumes)
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    e.lease.clone(),
                    e.renewed.elapsed() >= renew_every,
                    e.written.elapsed() >= self.inner.writeback_interval,
                )
            })
            .collect();
        for (id, lease, renew, write) in due {
            match lease {
                None => {
                    let Some(holder) = holder.map(str::to_string) else {
                        continue;
                    };
                    let (b, i) = (backend.clone(), id.clone());
                    let result = blocking(move || b.acquire(&i, &holder, ttl)).await;
                    let mut vols = lock(&self.inner.volumes);
                    let Some(e) = vols.get_mut(&id) else { continue };
                    match result {
                        Ok(l) => {
                            tracing::info!(role = %id.role, persistence_id = %id.persistence_id, generation = l.generation, "acquired the lease of an hdfs-backed volume again");
                            e.lease = Some(l);
                            e.problem = None;
                            e.renewed = Instant::now();
                        }
                        Err(err) => {
                            let err = err.to_string();
                            if e.problem.as_deref() != Some(err.as_str()) {
                                tracing::warn!(role = %id.role, persistence_id = %id.persistence_id, error = %err, "cannot acquire the lease of an hdfs-backed volume");
                            }
                            e.problem = Some(err);
                        }
                    }
                }
                Some(l) => {
                    if renew {
                        let b = backend.clone();
                        let result = blocking(move || b.renew(&l, ttl)).await;
                        let mut vols = lock(&self.inner.volumes);
                        let Some(e) = vols.get_mut(&id) else { continue };
                        match result {
                            Ok(l) => {
                                e.lease = Some(l);
                                e.renewed = Instant::now();
                            }
                            Err(err) => {
                                tracing::warn!(role = %id.role, persistence_id = %id.persistence_id, error = %err, "cannot renew the lease of an hdfs-backed volume");
                                if err.fenced() {
                                    e.lease = None;
                                }
                                e.problem = Some(err.to_string());
                            }
                        }
                    }
                    if write {
                        if let Err(err) = self.write_back(&id.role, &id.persistence_id).await {
                            tracing::warn!(role = %id.role, persistence_id = %id.persistence_id, error = %err, "periodic write-back failed");
                            if let Some(e) = lock(&self.inner.volumes).get_mut(&id) {
                                e.written = Instant::now();
                            }
                        }
                    }
                }
            }
        }
    }

    /// How often [`tick`](Self::tick) runs.
    pub fn tick_interval(&self) -> Duration {
        (self.inner.lease_timeout / 6)
            .min(self.inner.writeback_interval)
            .max(Duration::from_millis(100))
    }

    /// Writes every held volume back (the agent is stopping).
    pub async fn write_back_all(&self) {
        let held: Vec<VolumeId> = lock(&self.inner.volumes)
            .iter()
            .filter(|(_, e)| e.lease.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in held {
            if let Err(e) = self.write_back(&id.role, &id.persistence_id).await {
                tracing::warn!(role = %id.role, persistence_id = %id.persistence_id, error = %e, "write-back at shutdown failed");
            }
        }
    }
}

/// Keeps the agent's HDFS-backed volumes' leases and copies up to date
/// until `stop` turns true; `holder` names the lease holder (the agent's
/// id, once it has one).
pub async fn maintain(
    hdfs: HdfsVolumes,
    holder: impl Fn() -> Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if hdfs.backend().is_none() {
        return;
    }
    let mut interval = tokio::time::interval(hdfs.tick_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        hdfs.tick(holder().as_deref()).await;
    }
}

#[cfg(feature = "hdfs")]
async fn connect_backend(root: &str) -> Result<Arc<dyn VolumeBackend>, AgentError> {
    let r = root.to_string();
    let backend = tokio::task::spawn_blocking(move || corral_storage::HdfsBackend::from_uri(&r))
        .await
        .map_err(|e| AgentError::InvalidFlag(format!("--hdfs_volume_root={root}: {e}")))?
        .map_err(|e| {
            AgentError::InvalidFlag(format!(
                "--hdfs_volume_root={root}: {e} (check the URI, that Hadoop's client is on \
                 CLASSPATH with JAVA_HOME and LD_LIBRARY_PATH set — `eval \"$(scripts/hadoop-env.sh)\"` \
                 does it — and that the NameNode answers)"
            ))
        })?;
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "hdfs"))]
async fn connect_backend(root: &str) -> Result<Arc<dyn VolumeBackend>, AgentError> {
    Err(AgentError::InvalidFlag(format!(
        "--hdfs_volume_root={root} needs an agent built with HDFS support: build corral with \
         `--features hdfs`"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_storage::{LocalBackend, ManualClock};

    const TTL: Duration = Duration::from_secs(30);
    const WRITEBACK: Duration = Duration::from_secs(60);

    fn vol() -> VolumeUse {
        VolumeUse {
            role: "db".into(),
            persistence_id: "pg".into(),
            container_path: "data".into(),
            read_only: false,
            hdfs: true,
        }
    }

    /// Two agents' managers on one store (a real directory, through the
    /// same trait and lease protocol as HDFS), with a clock the test moves.
    fn two_agents(
        store: &Path,
        a: &Path,
        b: &Path,
    ) -> (HdfsVolumes, HdfsVolumes, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let backend: Arc<dyn VolumeBackend> =
            Arc::new(LocalBackend::with_clock(store, clock.clone()).unwrap());
        let make = |dir: &Path| {
            let m =
                HdfsVolumes::with_settings(Some("test".into()), dir.to_path_buf(), TTL, WRITEBACK);
            m.set_backend(backend.clone());
            m
        };
        (make(a), make(b), clock)
    }

    fn local(work: &Path) -> PathBuf {
        volumes::volume_dir(work, "db", "pg")
    }

    #[tokio::test]
    async fn lease_restore_write_back_and_fencing() {
        let (store, wa, wb) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (a, b, clock) = two_agents(store.path(), wa.path(), wb.path());
        let v = vol();
        assert!(a.check_usable(&v).is_err(), "not open yet");

        // Agent A creates the volume: a new, empty one.
        std::fs::create_dir_all(local(wa.path())).unwrap();
        a.open(&v, &local(wa.path()), "agent-A").await.unwrap();
        a.check_usable(&v).unwrap();
        std::fs::write(local(wa.path()).join("table"), b"rows").unwrap();
        let wb1 = a.write_back("db", "pg").await.unwrap();
        assert_eq!((wb1.stats.files, wb1.stats.bytes), (1, 4));

        // B cannot open it while A's lease is live; the message names A.
        std::fs::create_dir_all(local(wb.path())).unwrap();
        let err = b.open(&v, &local(wb.path()), "agent-B").await.unwrap_err();
        assert!(err.contains("agent-A"), "{err}");
        assert!(b.check_usable(&v).is_err());

        // A is lost: its lease expires; B opens the volume and finds A's data.
        clock.advance(TTL + Duration::from_secs(1));
        b.open(&v, &local(wb.path()), "agent-B").await.unwrap();
        assert_eq!(
            std::fs::read(local(wb.path()).join("table")).unwrap(),
            b"rows"
        );

        // A comes back and tries to write: fenced, and the volume is no
        // longer usable on A.
        std::fs::write(local(wa.path()).join("table"), b"stale").unwrap();
        let err = a.write_back("db", "pg").await.unwrap_err();
        assert!(matches!(err, WriteBackError::Failed { .. }), "{err}");
        let err = a.check_usable(&v).unwrap_err();
        assert!(
            err.contains("not leased") && err.contains("fenced"),
            "{err}"
        );
        assert!(matches!(
            a.write_back("db", "pg").await.unwrap_err(),
            WriteBackError::NotLeased { .. }
        ));

        b.write_back("db", "pg").await.unwrap();

        // DESTROY on B removes the stored data: created again, it is empty.
        b.destroy(&v).await.unwrap();
        assert!(b.check_usable(&v).is_err());
        std::fs::remove_dir_all(local(wb.path())).unwrap();
        std::fs::create_dir_all(local(wb.path())).unwrap();
        b.open(&v, &local(wb.path()), "agent-B").await.unwrap();
        assert_eq!(std::fs::read_dir(local(wb.path())).unwrap().count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn upkeep_renews_writes_back_and_reacquires_after_a_restart() {
        let (store, wa, wb) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (a, b, clock) = two_agents(store.path(), wa.path(), wb.path());
        let v = vol();
        std::fs::create_dir_all(local(wa.path())).unwrap();
        a.open(&v, &local(wa.path()), "agent-A").await.unwrap();
        let first = a.status()[0].lease.clone().unwrap();

        // A third of the lease later the upkeep renews it: past the first
        // expiry B still cannot take the volume.
        tokio::time::advance(TTL / 3 + Duration::from_secs(1)).await;
        clock.advance(TTL / 3 + Duration::from_secs(1));
        a.tick(Some("agent-A")).await;
        let renewed = a.status()[0].lease.clone().unwrap();
        assert_eq!(renewed.generation, first.generation);
        assert!(renewed.expires_at_unix_ms > first.expires_at_unix_ms);
        clock.advance(TTL - TTL / 3);
        std::fs::create_dir_all(local(wb.path())).unwrap();
        assert!(b.open(&v, &local(wb.path()), "agent-B").await.is_err());
        assert_eq!(a.status()[0].writebacks, 0);

        // Every --hdfs_writeback_interval the data goes back.
        std::fs::write(local(wa.path()).join("f"), b"1").unwrap();
        tokio::time::advance(WRITEBACK).await;
        a.tick(Some("agent-A")).await;
        let s = &a.status()[0];
        assert_eq!(s.writebacks, 1);
        assert_eq!(s.last_writeback.as_ref().unwrap().stats.files, 1);

        // After a restart the agent adopts its volume and acquires the lease
        // again once it knows its id; without restoring (the local data is
        // the newest).
        let a2 = HdfsVolumes::with_settings(
            Some("test".into()),
            wa.path().to_path_buf(),
            TTL,
            WRITEBACK,
        );
        a2.set_backend(a.backend().unwrap());
        std::fs::write(local(wa.path()).join("f"), b"newer").unwrap();
        a2.adopt(std::slice::from_ref(&v));
        let err = a2.check_usable(&v).unwrap_err();
        assert!(err.contains("acquiring the lease again"), "{err}");
        a2.tick(None).await;
        assert!(a2.check_usable(&v).is_err());
        a2.tick(Some("agent-A")).await;
        a2.check_usable(&v).unwrap();
        assert!(a2.status()[0].lease.as_ref().unwrap().generation > first.generation);
        assert_eq!(std::fs::read(local(wa.path()).join("f")).unwrap(), b"newer");
    }

    #[tokio::test]
    async fn without_a_store_the_message_says_what_to_do() {
        let w = tempfile::tempdir().unwrap();
        let m = HdfsVolumes::with_settings(None, w.path().to_path_buf(), TTL, WRITEBACK);
        let err = m.check_configured(&vol()).unwrap_err();
        if HDFS_BUILT_IN {
            assert!(err.contains("--hdfs_volume_root"), "{err}");
        } else {
            assert!(err.contains("built without HDFS support"), "{err}");
        }
        assert!(matches!(
            m.write_back("db", "pg").await.unwrap_err(),
            WriteBackError::NotConfigured
        ));
    }
}
