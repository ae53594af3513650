//! What every framework's shell does the same way: open its state store
//! (in memory, a local directory, or ZooKeeper with leader election among
//! instances), feed the scheduler's events and a periodic tick into its
//! actor's bounded channel, notice a lost leadership, and refuse API calls
//! with a status and a message ([`ApiError`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use corral_zk::{Session, ZkUrl};
use tokio::sync::mpsc;

use crate::leader::{Election, Instance};
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerEvent};
use crate::store::{LocalStore, MemoryStore, StateStore, StoreError, ZkStore};

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The store could not be opened.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// ZooKeeper could not be used.
    #[error("zookeeper: {0}")]
    ZooKeeper(String),
    /// The scheduler driver could not start.
    #[error("scheduler: {0}")]
    Scheduler(#[from] crate::scheduler::StartError),
    /// The framework's API could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// What a framework's shell opens before it can lead: its API's listener,
/// its state, its place in the election (with `--zk`), and the gate its
/// API answers through (a standby redirects to the leader).
pub struct Opened {
    /// The API's listener.
    pub listener: tokio::net::TcpListener,
    /// The state store.
    pub store: Arc<dyn StateStore>,
    /// The election, with `--zk`.
    pub election: Option<Election>,
    /// The API's gate (not leading yet).
    pub gate: crate::gate::Gate,
}

/// Binds `listen`, then opens the state as [`open_state`] does.
pub async fn open(
    listen: SocketAddr,
    zk: Option<&str>,
    state_dir: Option<&Path>,
    session: Duration,
) -> Result<Opened, ShellError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ShellError::Listen {
            addr: listen,
            source,
        })?;
    let (store, election) = open_state(zk, state_dir, listen, session).await?;
    let gate = crate::gate::Gate::new(election.as_ref().map(Election::leader));
    Ok(Opened {
        listener,
        store,
        election,
        gate,
    })
}

/// The store and, with `zk` (`zk://host:port/path`), this instance's place
/// in the election among the instances listening at `listen` (the state
/// under `<path>/state`, the election under `<path>/leader`); without it,
/// a [`LocalStore`] in `state_dir`, or a [`MemoryStore`].
pub async fn open_state(
    zk: Option<&str>,
    state_dir: Option<&Path>,
    listen: SocketAddr,
    session: Duration,
) -> Result<(Arc<dyn StateStore>, Option<Election>), ShellError> {
    match zk {
        Some(zk) => {
            let url = ZkUrl::parse(zk).map_err(|e| ShellError::ZooKeeper(e.to_string()))?;
            let conn = Session::connect(&url.servers, session, session)
                .await
                .map_err(|e| {
                    ShellError::ZooKeeper(format!("cannot reach {}: {e:?}", url.servers))
                })?;
            let store = ZkStore::open(Arc::new(conn), &format!("{}/state", url.path)).await?;
            let me = Instance::new(listen.ip().to_string(), listen.port());
            let election = Election::enter(
                &format!("zk://{}{}/leader", url.servers, url.path),
                &me,
                session,
            )
            .await
            .map_err(|e| ShellError::ZooKeeper(e.to_string()))?;
            Ok((Arc::new(store), Some(election)))
        }
        None => match state_dir {
            Some(dir) => Ok((Arc::new(LocalStore::open(dir)?), None)),
            None => Ok((Arc::new(MemoryStore::new()), None)),
        },
    }
}

/// Waits until this instance leads (at once without an election), then
/// starts the scheduler driver for `info` with the FrameworkID kept in the
/// store (`framework/id`), so a restarted instance or a new leader
/// re-subscribes as the same framework.
pub async fn lead_and_start(
    election: Option<&Election>,
    store: &dyn StateStore,
    master: &str,
    mut info: corral_api::v1::FrameworkInfo,
) -> Result<(Scheduler, mpsc::Receiver<SchedulerEvent>), ShellError> {
    if let Some(e) = election {
        tracing::info!("waiting to lead");
        e.lead()
            .await
            .map_err(|e| ShellError::ZooKeeper(e.to_string()))?;
    }
    if let Some(id) = store.get("framework/id").await? {
        info.id = Some(corral_api::v1::FrameworkId {
            value: String::from_utf8_lossy(&id.value).into_owned(),
        });
    }
    Ok(Scheduler::start(SchedulerConfig::new(master, info))?)
}

/// What a framework does on every SUBSCRIBED: keeps the FrameworkID in the
/// store (for [`lead_and_start`]), asks the master for every task it knows
/// of (unknown ones are the framework's to kill), and explicitly for the
/// tasks `adopted` from the store (the master answers LOST or GONE for those
/// it does not know, and the framework replaces them).
pub async fn on_subscribed(
    store: &dyn StateStore,
    scheduler: &Scheduler,
    framework_id: String,
    adopted: Vec<(String, Option<String>)>,
) {
    if let Err(e) = store.set("framework/id", framework_id.into_bytes()).await {
        tracing::error!(error = %e, "cannot store the framework id");
    }
    let _ = scheduler.reconcile(vec![]).await;
    if !adopted.is_empty() {
        tracing::info!(tasks = adopted.len(), "reconciling the tasks taken over");
        let _ = scheduler.reconcile(adopted).await;
    }
}

/// Feeds the scheduler's events into the actor's channel as `wrap(event)`.
pub fn forward_events<I: Send + 'static>(
    mut events: mpsc::Receiver<SchedulerEvent>,
    inputs: mpsc::Sender<I>,
    wrap: fn(SchedulerEvent) -> I,
) {
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if inputs.send(wrap(e)).await.is_err() {
                return;
            }
        }
    });
}

/// Sends `make()` into the actor's channel every `period`.
pub fn tick_every<I: Send + 'static>(inputs: mpsc::Sender<I>, period: Duration, make: fn() -> I) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            interval.tick().await;
            if inputs.send(make()).await.is_err() {
                return;
            }
        }
    });
}

/// Resolves when this instance's leadership is lost (never without an
/// election).
pub async fn leadership_lost(election: &Option<Election>) {
    match election {
        Some(e) => e.lost().await,
        None => std::future::pending().await,
    }
}

/// A refusal of a framework's API: the HTTP status and a message that says
/// what is wrong (sent as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// What is wrong.
    pub message: String,
}

impl ApiError {
    /// `400`.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::with(400, message)
    }
    /// `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::with(404, message)
    }
    /// `409`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::with(409, message)
    }
    /// `503`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::with(503, message)
    }
    fn with(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Parses a JSON body; a refusal (`400`) names the field at fault
/// (`instances: invalid type: ...`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad(format!("{path}: {inner}"))
        }
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_status_and_message() {
        let r = ApiError::conflict("taken").into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(ApiError::bad("x").status, 400);
        assert_eq!(ApiError::not_found("x").status, 404);
        assert_eq!(ApiError::unavailable("x").status, 503);
    }

    #[tokio::test]
    async fn without_zookeeper_the_state_is_local_and_nobody_elects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let (store, election) = open_state(None, Some(dir.path()), addr, Duration::from_secs(1))
            .await
            .expect("open");
        assert!(election.is_none());
        store.set("k", b"v".to_vec()).await.expect("set");
        // The directory is locked while a store has it open.
        drop(store);
        let (again, _) = open_state(None, Some(dir.path()), addr, Duration::from_secs(1))
            .await
            .expect("reopen");
        assert_eq!(
            again.get("k").await.expect("get").map(|v| v.value),
            Some(b"v".to_vec())
        );
        let lost = leadership_lost(&election);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), lost)
                .await
                .is_err(),
            "no election: never lost"
        );
    }
}
