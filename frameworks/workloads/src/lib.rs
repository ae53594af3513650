//! Corral's services-and-jobs framework, shaped like HubSpot's Singularity.
//!
//! Built so far:
//!
//! * [`jobs`] — the pure core of scheduled jobs: due runs started, missed
//!   (with the reason) or skipped, retries with backoff, timeouts, runs
//!   triggered by parents;
//! * [`model`] — requests and deploys in Singularity's JSON, validated with
//!   refusals that name the field;
//! * [`services`] — the pure core of SERVICE and WORKER requests: placement
//!   on offers, step-wise deploys gated on health with rollback, failed
//!   instances replaced with backoff, cooldown then pause;
//! * [`schedule`] — the schedules of SCHEDULED requests: cron expressions
//!   (5 fields, or 6 with seconds) in an IANA time zone, correct across
//!   daylight-saving changes, and Chronos' ISO 8601 repeating intervals
//!   (`R[n]/start/period`);
//! * [`lb`] — load balancing of SERVICE requests through a real HAProxy
//!   (configuration written, checked and reloaded without dropping
//!   connections);
//! * [`server`] and its REST API — the shell running the cores;
//! * [`webui`] — its web pages (requests, deploys, task history, sandbox
//!   links), rendered from the API's documents.

mod api;
pub mod cluster;
pub mod jobs;
pub mod lb;
pub mod logs;
pub mod model;
pub mod schedule;
pub mod server;
pub mod services;
pub mod taskinfo;
pub mod webui;
