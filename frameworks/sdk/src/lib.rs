//! Corral's frameworks SDK: what every bundled framework (and any third-party
//! one written in Rust) is built on.
//!
//! * [`scheduler`]: a client of the Mesos v1 scheduler HTTP API — SUBSCRIBE
//!   (protobuf or JSON), `Mesos-Stream-Id`, heartbeats with a
//!   missed-heartbeat timeout, re-subscription with the same FrameworkID
//!   after a disconnection or a master failover, typed events in and typed
//!   calls out.
//! * [`detector`]: finding the leading master — `zk://` (the `json.info_`
//!   znodes Mesos masters publish), or a list of `host:port`, following
//!   `307` redirects.
//! * [`store`]: a small versioned key-value [`store::StateStore`] with an
//!   in-memory, an embedded (local directory) and a ZooKeeper
//!   implementation, all passing one conformance suite.
//! * [`leader`]: leader election among instances of one framework through
//!   ZooKeeper, so only the leader subscribes.
//! * [`offers`]: helpers for matching offers — resource arithmetic from
//!   `corral-api`, ports from ranges, placement constraints.
//! * [`gate`]: a framework's REST API answered by the elected leader only;
//!   standbys redirect to it.
//! * [`sandbox`]: a task's log files read from its sandbox through the
//!   master and its agent (`/files/read`).
//! * [`shell`]: what every framework's shell does alike — the store and
//!   the election opened from `--zk`/`--state_dir`, events and ticks fed to
//!   its actor, API refusals with a status and a message.
//! * [`webui`]: what the frameworks' web pages share — the advertised
//!   `webui_url` (a listen address and a hostname), a framework's pages'
//!   brand and navigation, HTML answers and error pages, times.

pub mod detector;
pub mod gate;
pub mod leader;
pub mod offers;
pub mod sandbox;
pub mod scheduler;
pub mod shell;
pub mod store;
pub mod webui;
