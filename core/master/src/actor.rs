//! The master's event loop: one task owns [`Master`] and every connection
//! (framework streams, agent sessions, operator subscribers). Inputs arrive
//! over one bounded channel; timers drive allocation, heartbeats, pings and
//! expiry. After every input the produced effects are delivered.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use corral_api::codec::Encoding;
use corral_api::internal::{self, MasterMessage};
use corral_api::recordio;
use corral_api::v1::{master as op, scheduler};
use tokio::sync::{mpsc, oneshot};

use crate::state::{self, CallError, Clock, Effect, Master};

/// Capacity of the actor's input channel.
pub const INPUT_CAPACITY: usize = 4096;
/// Capacity of each outgoing stream before a slow consumer is dropped.
pub const STREAM_CAPACITY: usize = 8192;

/// A message to an agent, as sent down its gRPC stream.
pub type AgentTx = mpsc::Sender<Result<MasterMessage, tonic::Status>>;

/// What a [`StateFn`] leaves to do once its transition is durable:
/// typically answering the HTTP request that caused it.
pub type Reply = Box<dyn FnOnce() + Send>;

/// A query or command run against the state inside the actor. The returned
/// [`Reply`] runs only after every registry write the transition issued is
/// durable, so an operator is never told "done" before the registry says so.
pub type StateFn = Box<dyn FnOnce(&mut Master, Clock) -> Reply + Send>;

/// A batch of registry operations with its sequence number; the writer
/// answers [`Input::Durable`] with the highest number it has applied.
pub type RegistryWrite = (u64, Vec<crate::registry::Operation>);

/// Inputs of the master actor.
pub enum Input {
    /// A SUBSCRIBE call; the reply is the stream id and the stream of
    /// RecordIO frames (starting with SUBSCRIBED or ERROR).
    Subscribe {
        /// The call.
        call: scheduler::Call,
        /// Encoding of the stream.
        encoding: Encoding,
        /// Where to answer.
        reply: oneshot::Sender<(String, mpsc::Receiver<Bytes>)>,
    },
    /// Any other scheduler call.
    Call {
        /// The call.
        call: scheduler::Call,
        /// `Mesos-Stream-Id` header.
        stream_id: Option<String>,
        /// Where to answer.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// A framework's subscription stream was dropped.
    StreamClosed {
        /// The stream.
        stream_id: String,
    },
    /// An agent opened a session with this registration.
    AgentRegister {
        /// The registration.
        register: internal::RegisterAgent,
        /// Messages to the agent.
        tx: AgentTx,
        /// Agent id and connection number, or a refusal.
        reply: oneshot::Sender<Result<(String, u64), String>>,
    },
    /// A message on an agent session.
    AgentMessage {
        /// The agent.
        agent_id: String,
        /// The session.
        conn: u64,
        /// The message.
        message: internal::agent_message::Message,
    },
    /// An agent session ended.
    AgentClosed {
        /// The agent.
        agent_id: String,
        /// The session.
        conn: u64,
    },
    /// An operator SUBSCRIBE: the reply is the stream of frames.
    OperatorSubscribe {
        /// Encoding of the stream.
        encoding: Encoding,
        /// Whether the stream starts with SUBSCRIBED and the whole state
        /// (an operator's SUBSCRIBE), or only with what happens next (the
        /// web UI's change notifications, which need no state: building
        /// it for every page would load the actor).
        initial_state: bool,
        /// Where to answer.
        reply: oneshot::Sender<mpsc::Receiver<Bytes>>,
    },
    /// Run a function on the state (queries, operator commands).
    With(StateFn),
    /// The registry writer has applied every write up to `seq` (or given
    /// up on them): what waited for them goes out now.
    Durable {
        /// Highest write sequence number applied.
        seq: u64,
    },
}

/// Something held back until a registry write is durable.
enum Deferred {
    Effect(Effect),
    Reply(Reply),
}

struct FrameworkConn {
    stream_id: String,
    tx: mpsc::Sender<Bytes>,
    encoding: Encoding,
}

struct OperatorConn {
    tx: mpsc::Sender<Bytes>,
    encoding: Encoding,
}

/// Encodes one event as a RecordIO frame.
pub fn frame<M: prost::Message + prost::Name>(encoding: Encoding, msg: &M) -> Bytes {
    Bytes::from(recordio::encode(&encoding.encode(msg)))
}

/// The actor.
pub struct Actor {
    master: Master,
    started: Instant,
    frameworks: HashMap<String, FrameworkConn>,
    retired: HashMap<String, FrameworkConn>,
    agents: HashMap<String, (u64, AgentTx)>,
    operators: Vec<OperatorConn>,
    next_conn: u64,
    next_ping: u64,
    inputs: mpsc::Sender<Input>,
    epoch: u64,
    registry: Option<mpsc::UnboundedSender<RegistryWrite>>,
    /// Registry writes issued and known durable. While `durable_seq <
    /// write_seq`, every effect and reply produced after the write waits in
    /// `deferred`, in order: Mesos acknowledges a registration, a removal or
    /// MARK_AGENT_GONE only once the registry holds it.
    write_seq: u64,
    durable_seq: u64,
    deferred: VecDeque<(u64, Deferred)>,
}

impl Actor {
    /// Creates the actor; `inputs` is a sender of its own channel (used
    /// to report closed streams).
    pub fn new(master: Master, inputs: mpsc::Sender<Input>) -> Self {
        Self {
            master,
            started: Instant::now(),
            frameworks: HashMap::new(),
            retired: HashMap::new(),
            agents: HashMap::new(),
            operators: Vec::new(),
            next_conn: 0,
            next_ping: 0,
            inputs,
            epoch: 1,
            registry: None,
            write_seq: 0,
            durable_seq: 0,
            deferred: VecDeque::new(),
        }
    }

    /// Sends the registry operations of transitions to `writer`, which
    /// applies them in order.
    pub fn with_registry_writer(mut self, writer: mpsc::UnboundedSender<RegistryWrite>) -> Self {
        self.registry = Some(writer);
        self
    }

    /// Sets the leader's epoch carried by every message to agents.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    fn now(&self) -> Clock {
        Clock {
            mono: self.started.elapsed(),
            wall: corral_api::ids::now_secs(),
        }
    }

    /// Runs until every input sender is gone or `shutdown` resolves.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Input>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let flags = self.master.flags.clone();
        let mut allocation = tokio::time::interval(flags.allocation_interval);
        let mut heartbeat = tokio::time::interval(flags.heartbeat_interval);
        let mut ping = tokio::time::interval(flags.agent_ping_timeout);
        let mut expire = tokio::time::interval(std::time::Duration::from_millis(500));
        for t in [&mut allocation, &mut heartbeat, &mut ping, &mut expire] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        heartbeat.reset();
        ping.reset();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    // Prompt allocation of agents whose resources changed.
                    let now = self.now();
                    self.master.allocate(now, false);
                }
                _ = allocation.tick() => {
                    let now = self.now();
                    self.master.allocate(now, true);
                }
                _ = heartbeat.tick() => self.heartbeat(),
                _ = ping.tick() => {
                    let now = self.now();
                    self.next_ping += 1;
                    self.master.ping_agents(now, self.next_ping);
                }
                _ = expire.tick() => {
                    let now = self.now();
                    self.master.expire(now);
                    // Off the per-input path: it walks the tasks while an
                    // agent drains.
                    self.master.drain_progress(now);
                }
            }
            self.deliver();
        }
        tracing::info!("master actor stopped");
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Subscribe {
                call,
                encoding,
                reply,
            } => {
                let stream_id = corral_api::ids::new_uuid();
                let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
                match self.master.subscribe(&call, &stream_id, now) {
                    Ok(framework_id) => {
                        if let Some(old) = self.frameworks.insert(
                            framework_id,
                            FrameworkConn {
                                stream_id: stream_id.clone(),
                                tx,
                                encoding,
                            },
                        ) {
                            self.retired.insert(old.stream_id.clone(), old);
                        }
                    }
                    Err(message) => {
                        tracing::info!(error = %message, "refused subscribe");
                        let _ = tx.try_send(frame(encoding, &state::error_event(&message)));
                    }
                }
                let _ = reply.send((stream_id, rx));
            }
            Input::Call {
                call,
                stream_id,
                reply,
            } => {
                let result = self
                    .master
                    .authorize_call(&call, stream_id.as_deref())
                    .and_then(|fid| self.master.scheduler_call(&fid, call, now));
                let _ = reply.send(result);
            }
            Input::StreamClosed { stream_id } => {
                self.retired.remove(&stream_id);
                let framework_id = self
                    .master
                    .frameworks
                    .values()
                    .find(|f| f.stream_id.as_deref() == Some(stream_id.as_str()))
                    .map(|f| f.id.clone());
                if let Some(framework_id) = framework_id {
                    if self
                        .frameworks
                        .get(&framework_id)
                        .is_some_and(|c| c.stream_id == stream_id)
                    {
                        self.frameworks.remove(&framework_id);
                    }
                    self.master
                        .framework_disconnected(&framework_id, &stream_id, now);
                }
            }
            Input::AgentRegister {
                register,
                tx,
                reply,
            } => match self.master.register_agent(register, now) {
                Ok(agent_id) => {
                    self.next_conn += 1;
                    let conn = self.next_conn;
                    self.agents.insert(agent_id.clone(), (conn, tx));
                    let _ = reply.send(Ok((agent_id, conn)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Input::AgentMessage {
                agent_id,
                conn,
                message,
            } => {
                if self.agents.get(&agent_id).is_some_and(|(c, _)| *c == conn) {
                    self.master.agent_message(&agent_id, message, now);
                }
            }
            Input::AgentClosed { agent_id, conn } => {
                if self.agents.get(&agent_id).is_some_and(|(c, _)| *c == conn) {
                    self.agents.remove(&agent_id);
                    self.master.agent_disconnected(&agent_id, now);
                }
            }
            Input::OperatorSubscribe {
                encoding,
                initial_state,
                reply,
            } => {
                let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
                if initial_state {
                    let subscribed = op::Event {
                        r#type: Some(op::event::Type::Subscribed as i32),
                        subscribed: Some(op::event::Subscribed {
                            get_state: Some(self.master.get_state()),
                            heartbeat_interval_seconds: Some(
                                self.master.flags.heartbeat_interval.as_secs_f64(),
                            ),
                        }),
                        ..Default::default()
                    };
                    let _ = tx.try_send(frame(encoding, &subscribed));
                }
                self.operators.push(OperatorConn { tx, encoding });
                let _ = reply.send(rx);
            }
            Input::With(f) => {
                let reply = f(&mut self.master, now);
                // The transition's effects first: a registry write among
                // them holds the reply back until it is durable.
                self.deliver();
                self.release_or_defer(Deferred::Reply(reply));
            }
            Input::Durable { seq } => {
                self.durable_seq = self.durable_seq.max(seq);
                while self
                    .deferred
                    .front()
                    .is_some_and(|(after, _)| *after <= self.durable_seq)
                {
                    if let Some((_, d)) = self.deferred.pop_front() {
                        self.release(d);
                    }
                }
            }
        }
    }

    fn send_agent(&mut self, agent_id: &str, msg: MasterMessage) {
        if let Some((_, tx)) = self.agents.get(agent_id) {
            if tx.try_send(Ok(msg)).is_err() {
                tracing::warn!(agent_id, "agent session cannot keep up; closing it");
                self.agents.remove(agent_id);
                let now = self.now();
                self.master.agent_disconnected(agent_id, now);
            }
        }
    }

    fn heartbeat(&mut self) {
        let event = state::heartbeat_event();
        let ids: Vec<String> = self.frameworks.keys().cloned().collect();
        for id in ids {
            self.send_framework(&id, &event);
        }
        let ev = op::Event {
            r#type: Some(op::event::Type::Heartbeat as i32),
            ..Default::default()
        };
        self.send_operators(&ev);
    }

    fn send_framework(&mut self, framework_id: &str, event: &scheduler::Event) {
        let Some(conn) = self.frameworks.get(framework_id) else {
            return;
        };
        if let Err(e) = conn.tx.try_send(frame(conn.encoding, event)) {
            // A consumer that cannot keep up (or is gone) is disconnected;
            // the framework re-subscribes and reconciles.
            tracing::warn!(framework_id, error = %e, "dropping framework stream");
            if let Some(conn) = self.frameworks.remove(framework_id) {
                let inputs = self.inputs.clone();
                tokio::spawn(async move {
                    let _ = inputs
                        .send(Input::StreamClosed {
                            stream_id: conn.stream_id,
                        })
                        .await;
                });
            }
        }
    }

    fn send_operators(&mut self, event: &op::Event) {
        self.operators
            .retain(|c| c.tx.try_send(frame(c.encoding, event)).is_ok());
    }

    fn deliver(&mut self) {
        for effect in self.master.take_effects() {
            match effect {
                Effect::Registry(ops) => {
                    if let Some(writer) = &self.registry {
                        self.write_seq += 1;
                        let _ = writer.send((self.write_seq, ops));
                    }
                }
                other => self.release_or_defer(Deferred::Effect(other)),
            }
        }
    }

    /// Performs `d` now, or queues it behind a registry write that is not
    /// durable yet (and behind everything already queued).
    fn release_or_defer(&mut self, d: Deferred) {
        if self.durable_seq < self.write_seq {
            self.deferred.push_back((self.write_seq, d));
        } else {
            self.release(d);
        }
    }

    fn release(&mut self, d: Deferred) {
        let effect = match d {
            Deferred::Reply(reply) => return reply(),
            Deferred::Effect(effect) => effect,
        };
        match effect {
            Effect::Framework {
                framework_id,
                event,
            } => self.send_framework(&framework_id, &event),
            Effect::CloseFramework {
                framework_id,
                stream_id,
                error,
            } => {
                let conn = if self
                    .frameworks
                    .get(&framework_id)
                    .is_some_and(|c| c.stream_id == stream_id)
                {
                    self.frameworks.remove(&framework_id)
                } else {
                    self.retired.remove(&stream_id)
                };
                if let (Some(conn), Some(message)) = (conn, error) {
                    let _ = conn
                        .tx
                        .try_send(frame(conn.encoding, &state::error_event(&message)));
                }
            }
            Effect::Agent { agent_id, message } => {
                let msg = MasterMessage {
                    epoch: Some(self.epoch),
                    message: Some(message),
                };
                self.send_agent(&agent_id, msg);
            }
            Effect::CloseAgent { agent_id } => {
                self.agents.remove(&agent_id);
            }
            Effect::Operator(event) => self.send_operators(&event),
            Effect::Registry(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "actor_tests.rs"]
mod tests;
