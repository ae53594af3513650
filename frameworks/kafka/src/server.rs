//! The shell: the SDK's scheduler driver, the state store, a timer and the
//! REST API feed one actor over bounded channels. The actor runs the pure
//! [`Core`] and carries out what it returns: ACCEPTs (reservations,
//! volumes, launches), DECLINEs, kills, revives, store writes. After every
//! input it publishes a [`Snapshot`] the API reads.
//!
//! The brokers live in the store (`brokers/<id>`), with the FrameworkID
//! (`framework/id`) and the cluster id (`cluster/id`), written before the
//! operations that depend on them are sent. A restarted scheduler (same
//! `--state_dir`) or a new leader (`--zk`) re-subscribes as the same
//! framework, takes the brokers over and reconciles their tasks: running
//! brokers keep running, with the same task ids.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_sdk::scheduler::{framework_info, Scheduler, SchedulerEvent};
use corral_sdk::shell::ApiError;
use corral_sdk::store::StateStore;
use tokio::sync::{mpsc, watch};

use crate::api::{BrokerCall, BrokerCmd, Snapshot};
use crate::broker::Broker;
use crate::core::{Core, CoreConfig, Effect};
use crate::launch::Engine;

/// How often the actor is ticked.
const TICK: Duration = Duration::from_millis(500);
/// Inputs buffered for the actor.
const INPUTS: usize = 1024;
/// ZooKeeper session timeout.
const SESSION: Duration = Duration::from_secs(10);
/// Offers' remainder refused after an ACCEPT, s.
const REFUSE_AFTER_ACCEPT: f64 = 1.0;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--master`: `host:port[,...]` or `zk://...`.
    pub master: String,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// `--zk`: state in ZooKeeper and leader election among instances.
    pub zk: Option<String>,
    /// The embedded store's directory (`None`: in memory).
    pub state_dir: Option<PathBuf>,
    /// The framework's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its principal.
    pub principal: Option<String>,
    /// What the brokers run.
    pub engine: Engine,
    /// The volume's path in a broker's sandbox.
    pub volume_path: String,
}

/// Why the scheduler could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store, the election or the scheduler driver could not start.
    #[error(transparent)]
    Start(#[from] corral_sdk::shell::ShellError),
    /// The store could not be read.
    #[error("state store: {0}")]
    Store(#[from] corral_sdk::store::StoreError),
    /// This instance's ZooKeeper session expired: another may lead now.
    #[error("lost leadership (the ZooKeeper session expired); exiting so that a supervisor restarts this instance")]
    LostLeadership,
}

enum Input {
    Event(SchedulerEvent),
    Tick,
    Call(BrokerCall),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A KRaft cluster id: 16 random bytes, base64url without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

struct Actor {
    scheduler: Scheduler,
    store: Arc<dyn StateStore>,
    core: Core,
    adopted: Vec<(String, Option<String>)>,
    unsaved: std::collections::BTreeSet<u32>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    framework_id: Option<String>,
    subscribed: bool,
    counters: BTreeMap<&'static str, u64>,
}

/// Runs the scheduler until the process ends or, with `--zk`, until this
/// instance loses its leadership.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let corral_sdk::shell::Opened {
        listener,
        store,
        election,
        gate,
    } = corral_sdk::shell::open(
        config.listen,
        config.zk.as_deref(),
        config.state_dir.as_deref(),
        SESSION,
    )
    .await?;
    let (tx, mut rx) = mpsc::channel::<Input>(INPUTS);
    let (calls_tx, mut calls_rx) = mpsc::channel::<BrokerCall>(INPUTS);
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot {
        engine: config.engine.name(),
        independent: config.engine.independent_brokers(),
        ..Default::default()
    }));
    let app = crate::api::router(calls_tx, snap_rx, gate.clone());
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(c) = calls_rx.recv().await {
            if forward.send(Input::Call(c)).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the api server failed");
        }
    });
    tracing::info!(listen = %config.listen, master = %config.master, role = %config.role, engine = config.engine.name(), ha = config.zk.is_some(), "kafka scheduler serving");
    let mut info = framework_info(&config.name, &[&config.role], config.principal.as_deref());
    info.webui_url = Some(corral_sdk::webui::advertised_url(
        config.listen,
        None,
        "/ui",
    ));
    let (scheduler, events) =
        corral_sdk::shell::lead_and_start(election.as_ref(), store.as_ref(), &config.master, info)
            .await?;
    let cluster_id = match store.get("cluster/id").await? {
        Some(v) => String::from_utf8_lossy(&v.value).into_owned(),
        None => {
            let id = new_cluster_id();
            store.set("cluster/id", id.clone().into_bytes()).await?;
            id
        }
    };
    let core = Core::new(CoreConfig {
        name: config.name.clone(),
        role: config.role.clone(),
        principal: config.principal.clone(),
        engine: config.engine.clone(),
        volume_path: config.volume_path.clone(),
        cluster_id,
    });
    let mut actor = Actor {
        scheduler,
        store: Arc::clone(&store),
        core,
        adopted: Vec::new(),
        unsaved: Default::default(),
        snapshot: snap_tx,
        framework_id: None,
        subscribed: false,
        counters: BTreeMap::new(),
    };
    actor.load().await?;
    actor.publish();
    gate.set_leading();
    corral_sdk::shell::forward_events(events, tx.clone(), Input::Event);
    corral_sdk::shell::tick_every(tx.clone(), TICK, || Input::Tick);
    drop(tx);
    loop {
        let lost = corral_sdk::shell::leadership_lost(&election);
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    actor.handle(input).await;
                    actor.publish();
                }
                None => return Ok(()),
            },
            () = lost => {
                actor.scheduler.stop();
                return Err(ServerError::LostLeadership);
            }
        }
    }
}

impl Actor {
    async fn load(&mut self) -> Result<(), ServerError> {
        let mut brokers = Vec::new();
        for key in self.store.list("brokers").await? {
            let Some(v) = self.store.get(&key).await? else {
                continue;
            };
            match serde_json::from_slice::<Broker>(&v.value) {
                Ok(b) => brokers.push(b),
                Err(e) => {
                    tracing::warn!(%key, error = %e, "an unreadable broker record is skipped")
                }
            }
        }
        let n = brokers.len();
        self.adopted = self.core.import(brokers);
        tracing::info!(
            brokers = n,
            tasks = self.adopted.len(),
            "brokers taken over from the store"
        );
        Ok(())
    }

    fn publish(&self) {
        let s = Snapshot {
            brokers: self.core.brokers().clone(),
            why: self
                .core
                .brokers()
                .keys()
                .filter_map(|id| self.core.why(*id).map(|w| (*id, w.clone())))
                .collect(),
            framework_id: self.framework_id.clone(),
            subscribed: self.subscribed,
            independent: self.core.config().engine.independent_brokers(),
            engine: self.core.config().engine.name(),
            counters: self.counters.clone(),
        };
        self.snapshot.send_replace(Arc::new(s));
    }

    fn count(&mut self, name: &'static str, n: u64) {
        *self.counters.entry(name).or_insert(0) += n;
    }

    /// Writes every broker that changed; deletes removed ones.
    async fn persist(&mut self) {
        let mut changed = self.core.take_changed();
        changed.append(&mut self.unsaved);
        for id in changed {
            let key = format!("brokers/{id}");
            let result = match self.core.brokers().get(&id) {
                Some(b) => {
                    let bytes = serde_json::to_vec(b).unwrap_or_default();
                    self.store.set(&key, bytes).await.map(|_| ())
                }
                None => self.store.delete(&key, None).await.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::error!(broker = id, error = %e, "cannot store the broker; retrying on the next change");
                self.unsaved.insert(id);
            }
        }
    }

    async fn carry_out(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Accept {
                    offer_id,
                    operations,
                } => {
                    let launches: usize = operations
                        .iter()
                        .filter_map(|o| o.launch.as_ref())
                        .map(|l| l.task_infos.len())
                        .sum();
                    self.count("accepts", 1);
                    self.count("launches", launches as u64);
                    if let Err(e) = self
                        .scheduler
                        .accept(vec![offer_id], operations, Some(REFUSE_AFTER_ACCEPT))
                        .await
                    {
                        tracing::warn!(error = %e, "accept failed");
                    }
                }
                Effect::Decline {
                    offer_ids,
                    refuse_seconds,
                } => {
                    self.count("declines", offer_ids.len() as u64);
                    if let Err(e) = self
                        .scheduler
                        .decline(offer_ids, Some(refuse_seconds))
                        .await
                    {
                        tracing::debug!(error = %e, "decline failed");
                    }
                }
                Effect::Kill { task_id, agent_id } => {
                    self.count("kills", 1);
                    tracing::info!(task_id = %task_id, "killing a broker task");
                    if let Err(e) = self
                        .scheduler
                        .kill(&task_id, agent_id.as_deref(), None)
                        .await
                    {
                        tracing::warn!(task_id = %task_id, error = %e, "kill failed");
                    }
                }
                Effect::Revive => {
                    if let Err(e) = self.scheduler.revive(vec![]).await {
                        tracing::debug!(error = %e, "revive failed");
                    }
                }
            }
        }
    }

    async fn handle(&mut self, input: Input) {
        let now = now_ms();
        match input {
            Input::Event(e) => self.event(e, now).await,
            Input::Tick => {
                let effects = self.core.tick(now);
                self.persist().await;
                self.carry_out(effects).await;
            }
            Input::Call(call) => {
                let core = &mut self.core;
                let result = match call.cmd {
                    BrokerCmd::Add => core.add(&call.expr, &call.params).map(|ids| (ids, vec![])),
                    BrokerCmd::Update => core
                        .update(&call.expr, &call.params)
                        .map(|ids| (ids, vec![])),
                    BrokerCmd::Start => core.start(&call.expr),
                    BrokerCmd::Stop => core.stop(&call.expr, now),
                    BrokerCmd::Restart => core.restart(&call.expr, now),
                    BrokerCmd::Remove => core.remove(&call.expr),
                };
                match result {
                    Ok((ids, effects)) => {
                        tracing::info!(command = ?call.cmd, brokers = ?ids, "broker command");
                        self.persist().await;
                        self.publish();
                        let _ = call.reply.send(Ok(ids));
                        self.carry_out(effects).await;
                    }
                    Err(message) => {
                        tracing::info!(command = ?call.cmd, %message, "broker command refused");
                        let _ = call.reply.send(Err(ApiError::bad(message)));
                    }
                }
            }
        }
    }

    async fn event(&mut self, event: SchedulerEvent, now: i64) {
        match event {
            SchedulerEvent::Subscribed {
                framework_id,
                resubscribed,
                ..
            } => {
                self.framework_id = Some(framework_id.clone());
                self.subscribed = true;
                let adopted = std::mem::take(&mut self.adopted);
                corral_sdk::shell::on_subscribed(
                    self.store.as_ref(),
                    &self.scheduler,
                    framework_id,
                    adopted,
                )
                .await;
                if resubscribed {
                    tracing::info!("re-subscribed; reconciling");
                    let tasks: Vec<(String, Option<String>)> = self
                        .core
                        .brokers()
                        .values()
                        .filter_map(|b| b.task.as_ref())
                        .map(|t| (t.id.clone(), Some(t.slave_id.clone())))
                        .collect();
                    if !tasks.is_empty() {
                        let _ = self.scheduler.reconcile(tasks).await;
                    }
                }
                let _ = self.scheduler.revive(vec![]).await;
            }
            SchedulerEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "disconnected from the master");
                self.subscribed = false;
            }
            SchedulerEvent::Offers(offers) => {
                self.count("offers", offers.len() as u64);
                let effects = self.core.offers(now, offers);
                // Stored before launched: a new leader adopts, never
                // launches twice.
                self.persist().await;
                self.carry_out(effects).await;
            }
            SchedulerEvent::Update(status) => {
                self.count("status_updates", 1);
                let state = corral_api::v1::TaskState::try_from(status.state)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                tracing::info!(task_id = %status.task_id.value, state, message = status.message.as_deref().unwrap_or(""), "task status");
                let effects = self.core.status(now, &status);
                self.persist().await;
                self.carry_out(effects).await;
                if let Err(e) = self.scheduler.acknowledge(&status).await {
                    tracing::warn!(error = %e, task_id = %status.task_id.value, "acknowledgement failed");
                }
            }
            SchedulerEvent::Error(message) => {
                tracing::error!(%message, "the master refused the framework");
                self.subscribed = false;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kraft_shaped() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, new_cluster_id());
    }
}
