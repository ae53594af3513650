//! Corral's YARN bridge (`corral yarn-bridge`): YARN
//! NodeManagers run as Corral tasks on offered resources, so YARN grows and
//! shrinks with its demand, with Apache Myriad's REST API.
//!
//! The pure cores:
//!
//! * [`profiles`] — NodeManager profiles (Myriad's defaults: zero, small,
//!   medium, large) and the resources a NodeManager task takes (the
//!   profile plus the NodeManager's own JVM and CPU overhead);
//! * [`nmconfig`] — a NodeManager's configuration: the properties the
//!   bridge sets (ResourceManager host, capacity, the four addresses on
//!   offered ports, the shuffle service) as `-D` options and as a
//!   `yarn-site.xml` merged over the user's own;
//! * [`myriad`] — Myriad's flex up / flex down requests and state answer in
//!   its JSON, validated with messages that say what is wrong;
//! * [`nodemanagers`] — NodeManagers flexed up (placed on offers one per
//!   host, where the constraints match, saying why when they cannot be)
//!   and flexed down gracefully (pending ones first, then the least busy,
//!   decommissioned in YARN before they are killed);
//! * [`autoscaler`] — the autoscaling policy (Dataproc's shape): the RM's
//!   pending and available memory, idle nodes and cooldowns give one
//!   decision with its reason and figures;
//! * [`fgs`] — fine-grained scaling: a zero-profile NodeManager's capacity
//!   follows the offers held on its host, and each YARN container is
//!   mirrored by a `yarn_<containerId>` placeholder task;
//! * [`nmtask`] — a NodeManager (and a container placeholder) as a Mesos
//!   TaskInfo: Hadoop from `YARN_HOME`, a tarball or a Docker image.
//!
//! The shell: [`server`] (the actor that runs the cores on the SDK's
//! scheduler, the store and leader election), [`rm`] (the
//! ResourceManager's REST API and `yarn rmadmin`) and [`api`] (Myriad's
//! REST API and Corral's additions), and [`webui`] (its web pages:
//! NodeManagers, profiles, the autoscaler's decisions).

pub mod api;
pub mod autoscaler;
pub mod fgs;
pub mod myriad;
pub mod nmconfig;
pub mod nmtask;
pub mod nodemanagers;
pub mod profiles;
pub mod rm;
pub mod server;
pub mod webui;
