//! A client of the Mesos v1 scheduler HTTP API.
//!
//! [`Scheduler::start`] spawns a driver task that finds the leading master
//! ([`crate::detector`]), SUBSCRIBEs (protobuf unless JSON is asked for),
//! reads the RecordIO event stream, and hands typed [`SchedulerEvent`]s to
//! the framework over a bounded channel. When the stream ends, breaks, or
//! stays silent for `missed_heartbeats` heartbeat intervals, the driver says
//! so ([`SchedulerEvent::Disconnected`]) and subscribes again — with the
//! same FrameworkID, to whichever master leads then — backing off
//! exponentially. An ERROR event (the master removed or refused the
//! framework) ends the driver.
//!
//! Calls go out through the [`Scheduler`] handle (cheap to clone) with the
//! current `Mesos-Stream-Id`; each returns once the master accepted it
//! (`202`). Calls made while disconnected fail with
//! [`CallError::NotSubscribed`]: the framework retries them after the next
//! [`SchedulerEvent::Subscribed`] (and reconciles, as Mesos asks).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_api::codec::Encoding;
use corral_api::recordio;
use corral_api::v1::{self, scheduler};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::detector::{host_port_of_location, Detector, DetectorError, MasterSource};

/// How many redirects a call or subscription follows.
const MAX_REDIRECTS: usize = 3;
/// Heartbeat interval assumed until SUBSCRIBED says otherwise (Mesos'
/// default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// How the driver connects.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `zk://host:port/path`, or `host:port[,host:port...]`.
    pub master: String,
    /// The framework. Its `id`, when set, is used on the first SUBSCRIBE
    /// (a framework failing over to a new instance).
    pub framework: v1::FrameworkInfo,
    /// Roles to subscribe suppressed.
    pub suppressed_roles: Vec<String>,
    /// Wire encoding (Mesos' drivers default to protobuf).
    pub encoding: Encoding,
    /// Heartbeat intervals without any event after which the connection
    /// is taken as dead.
    pub missed_heartbeats: u32,
    /// First and largest wait between subscription attempts.
    pub backoff: (Duration, Duration),
    /// Largest single event accepted.
    pub max_event_bytes: usize,
    /// Events buffered for the framework before the stream is not read.
    pub event_buffer: usize,
}

impl SchedulerConfig {
    /// Defaults for `framework` at `master`.
    pub fn new(master: impl Into<String>, framework: v1::FrameworkInfo) -> Self {
        Self {
            master: master.into(),
            framework,
            suppressed_roles: Vec::new(),
            encoding: Encoding::Protobuf,
            missed_heartbeats: 3,
            backoff: (Duration::from_millis(250), Duration::from_secs(30)),
            max_event_bytes: 64 << 20,
            event_buffer: 1024,
        }
    }
}

/// A FrameworkInfo with what a Corral framework sets: MULTI_ROLE with
/// `roles`, the principal, checkpointing, a week's failover timeout, and
/// the process' user (root when unknown).
pub fn framework_info(name: &str, roles: &[&str], principal: Option<&str>) -> v1::FrameworkInfo {
    use v1::framework_info::{capability::Type, Capability};
    let caps = [
        Type::MultiRole,
        Type::PartitionAware,
        Type::ReservationRefinement,
        Type::TaskKillingState,
    ];
    v1::FrameworkInfo {
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        name: name.to_string(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        principal: principal.map(str::to_string),
        checkpoint: Some(true),
        failover_timeout: Some(7.0 * 24.0 * 3600.0),
        capabilities: caps
            .into_iter()
            .map(|t| Capability {
                r#type: Some(t as i32),
            })
            .collect(),
        ..Default::default()
    }
}

/// What the driver tells the framework.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerEvent {
    /// Subscribed (again): offers follow. After a re-subscription the
    /// framework should reconcile its tasks.
    Subscribed {
        /// The FrameworkID (the same on every re-subscription).
        framework_id: String,
        /// The master's `host:port`.
        master: String,
        /// Not the first subscription of this driver.
        resubscribed: bool,
        /// The master's heartbeat interval.
        heartbeat_interval: Duration,
    },
    /// The connection ended; the driver subscribes again.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// Offers.
    Offers(Vec<v1::Offer>),
    /// Inverse offers (maintenance).
    InverseOffers(Vec<v1::InverseOffer>),
    /// An offer was rescinded.
    Rescind(v1::OfferId),
    /// An inverse offer was rescinded.
    RescindInverseOffer(v1::OfferId),
    /// A task status update (acknowledge it when it has a `uuid`).
    Update(v1::TaskStatus),
    /// An operation status update.
    OperationUpdate(v1::OperationStatus),
    /// A message from an executor.
    Message {
        /// The agent.
        agent_id: v1::AgentId,
        /// The executor.
        executor_id: v1::ExecutorId,
        /// The payload.
        data: Vec<u8>,
    },
    /// An agent or executor failed.
    Failure {
        /// The agent.
        agent_id: Option<v1::AgentId>,
        /// The executor, for executor failures.
        executor_id: Option<v1::ExecutorId>,
        /// The executor's wait status (-1 when unknown).
        status: Option<i32>,
    },
    /// The master refused or removed the framework: the driver has
    /// stopped.
    Error(String),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No subscription is live; retry after the next `Subscribed`.
    #[error(
        "not subscribed to a master (the driver is (re)connecting); retry after it subscribes"
    )]
    NotSubscribed,
    /// The master answered with an error.
    #[error("the master refused the call ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The master's message.
        message: String,
    },
    /// The request did not reach the master.
    #[error("cannot reach the master at {master}: {message}")]
    Transport {
        /// `host:port`.
        master: String,
        /// What failed.
        message: String,
    },
}

/// Why the driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The master flag is malformed.
    #[error(transparent)]
    Master(#[from] DetectorError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
}

#[derive(Debug, Default)]
struct Connection {
    master: Option<String>,
    stream_id: Option<String>,
    framework_id: Option<v1::FrameworkId>,
}

struct Shared {
    http: reqwest::Client,
    encoding: Encoding,
    conn: Mutex<Connection>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The handle of a running driver: make calls, read the FrameworkID, stop.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
    driver: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Scheduler {
    /// Starts the driver; events arrive on the returned receiver.
    pub fn start(
        config: SchedulerConfig,
    ) -> Result<(Scheduler, mpsc::Receiver<SchedulerEvent>), StartError> {
        let detector = Detector::new(MasterSource::parse(&config.master)?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| StartError::Http(e.to_string()))?;
        let shared = Arc::new(Shared {
            http,
            encoding: config.encoding,
            conn: Mutex::new(Connection {
                framework_id: config.framework.id.clone(),
                ..Default::default()
            }),
        });
        let (tx, rx) = mpsc::channel(config.event_buffer.max(1));
        let driver = tokio::spawn(drive(Arc::clone(&shared), detector, config, tx));
        Ok((
            Scheduler {
                shared,
                driver: Arc::new(Mutex::new(Some(driver))),
            },
            rx,
        ))
    }

    /// The FrameworkID, once subscribed.
    pub fn framework_id(&self) -> Option<String> {
        lock(&self.shared.conn)
            .framework_id
            .as_ref()
            .map(|f| f.value.clone())
    }

    /// The master subscribed to, if any.
    pub fn master(&self) -> Option<String> {
        lock(&self.shared.conn).master.clone()
    }

    /// Stops the driver (the framework stays registered until its
    /// failover timeout; use [`Scheduler::teardown`] to remove it).
    pub fn stop(&self) {
        if let Some(d) = lock(&self.driver).take() {
            d.abort();
        }
        let mut c = lock(&self.shared.conn);
        c.master = None;
        c.stream_id = None;
    }

    /// Sends `call` (its `framework_id` is filled in).
    pub async fn call(&self, mut call: scheduler::Call) -> Result<(), CallError> {
        let (mut master, stream_id, framework_id) = {
            let c = lock(&self.shared.conn);
            match (&c.master, &c.stream_id) {
                (Some(m), Some(s)) => (m.clone(), s.clone(), c.framework_id.clone()),
                _ => return Err(CallError::NotSubscribed),
            }
        };
        call.framework_id = framework_id;
        let body = self.shared.encoding.encode(&call);
        let ct = self.shared.encoding.content_type();
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .shared
                .http
                .post(format!("http://{master}/api/v1/scheduler"))
                .header(http::header::CONTENT_TYPE, ct)
                .header(http::header::ACCEPT, ct)
                .header(corral_api::STREAM_ID_HEADER, &stream_id)
                .timeout(Duration::from_secs(30))
                .body(body.clone())
                .send()
                .await
                .map_err(|e| CallError::Transport {
                    master: master.clone(),
                    message: e.to_string(),
                })?;
            let status = response.status();
            if status.is_redirection() {
                match location(&response) {
                    Some(next) => {
                        master = next;
                        continue;
                    }
                    None => break,
                }
            }
            if status.is_success() {
                return Ok(());
            }
            let message = response.text().await.unwrap_or_default();
            return Err(CallError::Refused {
                status: status.as_u16(),
                message: message.trim().to_string(),
            });
        }
        Err(CallError::Refused {
            status: 307,
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    fn typed(kind: scheduler::call::Type) -> scheduler::Call {
        scheduler::Call {
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    /// ACCEPT `offer_ids` with `operations` (launches, reservations,
    /// volumes, ...), refusing what is left for `refuse_seconds`.
    pub async fn accept(
        &self,
        offer_ids: Vec<v1::OfferId>,
        operations: Vec<v1::offer::Operation>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Accept);
        call.accept = Some(scheduler::call::Accept {
            offer_ids,
            operations,
            filters: refuse_seconds.map(filters),
        });
        self.call(call).await
    }

    /// DECLINE `offer_ids`, not to be offered again for `refuse_seconds`
    /// (Mesos' default: 5 s).
    pub async fn decline(
        &self,
        offer_ids: Vec<v1::OfferId>,
        refuse_seconds: Option<f64>,
    ) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Decline);
        call.decline = Some(scheduler::call::Decline {
            offer_ids,
            filters: refuse_seconds.map(filters),
        });
        self.call(call).await
    }

    /// REVIVE offers for `roles` (all of the framework's when empty).
    pub async fn revive(&self, roles: Vec<String>) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Revive);
        call.revive = Some(scheduler::call::Revive { roles });
        self.call(call).await
    }

    /// SUPPRESS offers for `roles` (all of the framework's when empty).
    pub async fn suppress(&self, roles: Vec<String>) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Suppress);
        call.suppress = Some(scheduler::call::Suppress { roles });
        self.call(call).await
    }

    /// KILL a task.
    pub async fn kill(
        &self,
        task_id: &str,
        agent_id: Option<&str>,
        kill_policy: Option<v1::KillPolicy>,
    ) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Kill);
        call.kill = Some(scheduler::call::Kill {
            task_id: v1::TaskId {
                value: task_id.to_string(),
            },
            agent_id: agent_id.map(|a| v1::AgentId {
                value: a.to_string(),
            }),
            kill_policy,
        });
        self.call(call).await
    }

    /// SHUTDOWN an executor.
    pub async fn shutdown(&self, executor_id: &str, agent_id: &str) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Shutdown);
        call.shutdown = Some(scheduler::call::Shutdown {
            executor_id: v1::ExecutorId {
                value: executor_id.to_string(),
            },
            agent_id: v1::AgentId {
                value: agent_id.to_string(),
            },
        });
        self.call(call).await
    }

    /// ACKNOWLEDGE a status update; `Ok(false)` for updates that need none
    /// (no `uuid`: the master's own answers to reconciliation).
    pub async fn acknowledge(&self, status: &v1::TaskStatus) -> Result<bool, CallError> {
        let (Some(uuid), Some(agent_id)) = (&status.uuid, &status.agent_id) else {
            return Ok(false);
        };
        let mut call = Self::typed(scheduler::call::Type::Acknowledge);
        call.acknowledge = Some(scheduler::call::Acknowledge {
            agent_id: agent_id.clone(),
            task_id: status.task_id.clone(),
            uuid: uuid.clone(),
        });
        self.call(call).await.map(|()| true)
    }

    /// ACKNOWLEDGE_OPERATION_STATUS; `Ok(false)` when it carries no `uuid`.
    pub async fn acknowledge_operation(
        &self,
        status: &v1::OperationStatus,
    ) -> Result<bool, CallError> {
        let (Some(uuid), Some(operation_id)) = (&status.uuid, &status.operation_id) else {
            return Ok(false);
        };
        let mut call = Self::typed(scheduler::call::Type::AcknowledgeOperationStatus);
        call.acknowledge_operation_status = Some(scheduler::call::AcknowledgeOperationStatus {
            agent_id: status.agent_id.clone(),
            resource_provider_id: status.resource_provider_id.clone(),
            uuid: uuid.value.clone(),
            operation_id: operation_id.clone(),
        });
        self.call(call).await.map(|()| true)
    }

    /// RECONCILE: explicit for `tasks` (`(task id, agent id)`), implicit
    /// (every task the master knows of) when empty.
    pub async fn reconcile(&self, tasks: Vec<(String, Option<String>)>) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Reconcile);
        call.reconcile = Some(scheduler::call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(task, agent)| scheduler::call::reconcile::Task {
                    task_id: v1::TaskId { value: task },
                    agent_id: agent.map(|value| v1::AgentId { value }),
                })
                .collect(),
        });
        self.call(call).await
    }

    /// MESSAGE to an executor.
    pub async fn message(
        &self,
        agent_id: &str,
        executor_id: &str,
        data: Vec<u8>,
    ) -> Result<(), CallError> {
        let mut call = Self::typed(scheduler::call::Type::Message);
        call.message = Some(scheduler::call::Message {
            agent_id: v1::AgentId {
                value: agent_id.to_string(),
            },
            executor_id: v1::ExecutorId {
                value: executor_id.to_string(),
            },
            data,
        });
        self.call(call).await
    }

    /// UPDATE_FRAMEWORK: new FrameworkInfo (roles, capabilities, ...).
    pub async fn update_framework(
        &self,
        mut info: v1::FrameworkInfo,
        suppressed_roles: Vec<String>,
    ) -> Result<(), CallError> {
        info.id = lock(&self.shared.conn).framework_id.clone();
        let mut call = Self::typed(scheduler::call::Type::UpdateFramework);
        call.update_framework = Some(scheduler::call::UpdateFramework {
            framework_info: info,
            suppressed_roles,
            offer_constraints: None,
        });
        self.call(call).await
    }

    /// TEARDOWN: the master removes the framework and kills its tasks; the
    /// driver stops.
    pub async fn teardown(&self) -> Result<(), CallError> {
        let result = self
            .call(Self::typed(scheduler::call::Type::Teardown))
            .await;
        if result.is_ok() {
            self.stop();
        }
        result
    }
}

fn filters(refuse_seconds: f64) -> v1::Filters {
    v1::Filters {
        refuse_seconds: Some(refuse_seconds),
    }
}

fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(host_port_of_location)
}

/// How one subscription ended.
enum Ended {
    /// Subscribe again (after `backoff` unless it had subscribed).
    Retry { reason: String, subscribed: bool },
    /// Stop: the master refused or removed the framework.
    Fatal(String),
    /// The framework dropped its receiver.
    Closed,
}

async fn drive(
    shared: Arc<Shared>,
    detector: Detector,
    config: SchedulerConfig,
    tx: mpsc::Sender<SchedulerEvent>,
) {
    let (min, max) = config.backoff;
    let mut backoff = min;
    let mut subscriptions = 0u64;
    loop {
        let ended = match detector.leader().await {
            Ok(master) => subscribe(&shared, &config, master, &tx, &mut subscriptions).await,
            Err(e) => Ended::Retry {
                reason: e.to_string(),
                subscribed: false,
            },
        };
        {
            let mut c = lock(&shared.conn);
            c.master = None;
            c.stream_id = None;
        }
        match ended {
            Ended::Closed => return,
            Ended::Fatal(message) => {
                tracing::error!(%message, "the master refused the framework; the scheduler driver stops");
                let _ = tx.send(SchedulerEvent::Error(message)).await;
                return;
            }
            Ended::Retry { reason, subscribed } => {
                if subscribed {
                    backoff = min;
                    if tx
                        .send(SchedulerEvent::Disconnected {
                            reason: reason.clone(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "not subscribed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

async fn subscribe(
    shared: &Shared,
    config: &SchedulerConfig,
    mut master: String,
    tx: &mpsc::Sender<SchedulerEvent>,
    subscriptions: &mut u64,
) -> Ended {
    let retry = |reason: String| Ended::Retry {
        reason,
        subscribed: false,
    };
    let mut info = config.framework.clone();
    info.id = lock(&shared.conn).framework_id.clone();
    let call = scheduler::Call {
        framework_id: info.id.clone(),
        r#type: Some(scheduler::call::Type::Subscribe as i32),
        subscribe: Some(scheduler::call::Subscribe {
            framework_info: info,
            suppressed_roles: config.suppressed_roles.clone(),
            offer_constraints: None,
        }),
        ..Default::default()
    };
    let body = shared.encoding.encode(&call);
    let ct = shared.encoding.content_type();
    let mut redirects = 0;
    let response = loop {
        let sent = shared
            .http
            .post(format!("http://{master}/api/v1/scheduler"))
            .header(http::header::CONTENT_TYPE, ct)
            .header(http::header::ACCEPT, ct)
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return retry(format!("cannot reach {master}: {e}")),
        };
        let status = response.status();
        if status.is_redirection() && redirects < MAX_REDIRECTS {
            if let Some(next) = location(&response) {
                tracing::info!(from = %master, to = %next, "following the master's redirect");
                master = next;
                redirects += 1;
                continue;
            }
        }
        if status.is_success() {
            break response;
        }
        let message = response.text().await.unwrap_or_default();
        let message = format!("SUBSCRIBE to {master}: {status}: {}", message.trim());
        // 400 (a FrameworkInfo the master refuses), 401/403 (not
        // authenticated or authorised): trying again cannot help.
        return if matches!(status.as_u16(), 400 | 401 | 403) {
            Ended::Fatal(message)
        } else {
            retry(message)
        };
    };
    let Some(stream_id) = response
        .headers()
        .get(corral_api::STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return retry(format!(
            "{master} answered SUBSCRIBE without a Mesos-Stream-Id"
        ));
    };
    let mut decoder = recordio::Decoder::new(config.max_event_bytes);
    let mut body = response.bytes_stream();
    let mut heartbeat = DEFAULT_HEARTBEAT;
    let mut subscribed = false;
    let silence = |hb: Duration| hb * config.missed_heartbeats.max(1);
    loop {
        let chunk = match tokio::time::timeout(silence(heartbeat), body.next()).await {
            Err(_) => {
                return Ended::Retry {
                    reason: format!(
                        "no event from {master} for {} missed heartbeats ({:?})",
                        config.missed_heartbeats,
                        silence(heartbeat)
                    ),
                    subscribed,
                }
            }
            Ok(None) => {
                return Ended::Retry {
                    reason: format!("{master} closed the event stream"),
                    subscribed,
                }
            }
            Ok(Some(Err(e))) => {
                return Ended::Retry {
                    reason: format!("the event stream from {master} broke: {e}"),
                    subscribed,
                }
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        decoder.feed(&chunk);
        loop {
            let record = match decoder.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    return Ended::Retry {
                        reason: format!("bad event framing from {master}: {e}"),
                        subscribed,
                    }
                }
            };
            let event: scheduler::Event = match shared.encoding.decode(&record) {
                Ok(e) => e,
                Err(e) => {
                    return Ended::Retry {
                        reason: format!("undecodable event from {master}: {e}"),
                        subscribed,
                    }
                }
            };
            let out = match translate(event) {
                Translated::Subscribed {
                    framework_id,
                    heartbeat_interval,
                } => {
                    heartbeat = heartbeat_interval.unwrap_or(DEFAULT_HEARTBEAT);
                    {
                        let mut c = lock(&shared.conn);
                        c.master = Some(master.clone());
                        c.stream_id = Some(stream_id.clone());
                        c.framework_id = Some(v1::FrameworkId {
                            value: framework_id.clone(),
                        });
                    }
                    subscribed = true;
                    *subscriptions += 1;
                    tracing::info!(framework_id = %framework_id, %master, resubscribed = *subscriptions > 1, "subscribed");
                    Some(SchedulerEvent::Subscribed {
                        framework_id,
                        master: master.clone(),
                        resubscribed: *subscriptions > 1,
                        heartbeat_interval: heartbeat,
                    })
                }
                Translated::Heartbeat => None,
                Translated::Error(message) => return Ended::Fatal(message),
                Translated::Event(e) => Some(e),
                Translated::Unknown => None,
            };
            if let Some(out) = out {
                if tx.send(out).await.is_err() {
                    return Ended::Closed;
                }
            }
        }
    }
}

enum Translated {
    Subscribed {
        framework_id: String,
        heartbeat_interval: Option<Duration>,
    },
    Heartbeat,
    Error(String),
    Event(SchedulerEvent),
    Unknown,
}

fn translate(event: scheduler::Event) -> Translated {
    use scheduler::event::Type;
    let kind = event
        .r#type
        .and_then(|t| Type::try_from(t).ok())
        .unwrap_or(Type::Unknown);
    match kind {
        Type::Subscribed => match event.subscribed {
            Some(s) => Translated::Subscribed {
                framework_id: s.framework_id.value,
                heartbeat_interval: s
                    .heartbeat_interval_seconds
                    .filter(|h| h.is_finite() && *h > 0.0)
                    .map(Duration::from_secs_f64),
            },
            None => Translated::Unknown,
        },
        Type::Heartbeat => Translated::Heartbeat,
        Type::Error => Translated::Error(event.error.map(|e| e.message).unwrap_or_default()),
        Type::Offers => Translated::Event(SchedulerEvent::Offers(
            event.offers.map(|o| o.offers).unwrap_or_default(),
        )),
        Type::InverseOffers => Translated::Event(SchedulerEvent::InverseOffers(
            event
                .inverse_offers
                .map(|o| o.inverse_offers)
                .unwrap_or_default(),
        )),
        Type::Rescind => match event.rescind.map(|r| r.offer_id) {
            Some(id) => Translated::Event(SchedulerEvent::Rescind(id)),
            None => Translated::Unknown,
        },
        Type::RescindInverseOffer => {
            match event.rescind_inverse_offer.map(|r| r.inverse_offer_id) {
                Some(id) => Translated::Event(SchedulerEvent::RescindInverseOffer(id)),
                None => Translated::Unknown,
            }
        }
        Type::Update => match event.update.map(|u| u.status) {
            Some(status) => Translated::Event(SchedulerEvent::Update(status)),
            None => Translated::Unknown,
        },
        Type::UpdateOperationStatus => match event.update_operation_status.map(|u| u.status) {
            Some(status) => Translated::Event(SchedulerEvent::OperationUpdate(status)),
            None => Translated::Unknown,
        },
        Type::Message => match event.message {
            Some(m) => Translated::Event(SchedulerEvent::Message {
                agent_id: m.agent_id,
                executor_id: m.executor_id,
                data: m.data,
            }),
            None => Translated::Unknown,
        },
        Type::Failure => {
            let f = event.failure.unwrap_or_default();
            Translated::Event(SchedulerEvent::Failure {
                agent_id: f.agent_id,
                executor_id: f.executor_id,
                status: f.status,
            })
        }
        Type::Unknown => Translated::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: scheduler::event::Type) -> scheduler::Event {
        scheduler::Event {
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    #[test]
    fn translates_events() {
        use scheduler::event::Type;
        let mut e = event(Type::Subscribed);
        e.subscribed = Some(scheduler::event::Subscribed {
            framework_id: v1::FrameworkId { value: "f1".into() },
            heartbeat_interval_seconds: Some(2.5),
            master_info: None,
        });
        match translate(e) {
            Translated::Subscribed {
                framework_id,
                heartbeat_interval,
            } => {
                assert_eq!(framework_id, "f1");
                assert_eq!(heartbeat_interval, Some(Duration::from_millis(2500)));
            }
            _ => panic!("not subscribed"),
        }
        let mut e = event(Type::Error);
        e.error = Some(scheduler::event::Error {
            message: "Framework has been removed".into(),
        });
        assert!(matches!(translate(e), Translated::Error(m) if m.contains("removed")));
        assert!(matches!(
            translate(event(Type::Heartbeat)),
            Translated::Heartbeat
        ));
        // A FAILURE without fields is still a failure; an UPDATE without a
        // status is dropped, not a panic.
        assert!(matches!(
            translate(event(Type::Failure)),
            Translated::Event(SchedulerEvent::Failure { status: None, .. })
        ));
        assert!(matches!(
            translate(event(Type::Update)),
            Translated::Unknown
        ));
        let unknown = scheduler::Event {
            r#type: Some(99),
            ..Default::default()
        };
        assert!(matches!(translate(unknown), Translated::Unknown));
    }

    #[test]
    fn framework_info_is_multi_role_and_checkpointed() {
        let f = framework_info("svc", &["eng", "eng/web"], Some("ops"));
        assert_eq!(f.roles, ["eng", "eng/web"]);
        assert_eq!(f.checkpoint, Some(true));
        assert_eq!(f.principal.as_deref(), Some("ops"));
        assert!(f
            .capabilities
            .iter()
            .any(|c| c.r#type == Some(v1::framework_info::capability::Type::MultiRole as i32)));
    }

    #[tokio::test]
    async fn calls_before_subscribing_say_so() {
        let (s, _rx) = Scheduler::start(SchedulerConfig::new(
            "127.0.0.1:1",
            framework_info("x", &["*"], None),
        ))
        .expect("start");
        let e = s.revive(vec![]).await.unwrap_err();
        assert!(matches!(e, CallError::NotSubscribed), "{e}");
        s.stop();
        assert!(Scheduler::start(SchedulerConfig::new(
            "not a master",
            framework_info("x", &["*"], None)
        ))
        .is_err());
    }
}
