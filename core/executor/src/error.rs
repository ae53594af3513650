//! The executor's error type.

use std::time::Duration;

/// Why the executor stopped (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A required environment variable is not set.
    #[error("required environment variable {0} is not set (the executor must be started by a Mesos-compatible agent)")]
    MissingEnv(&'static str),
    /// An environment variable has a value the executor cannot use.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    InvalidEnv {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client: {0}")]
    HttpClient(String),
    /// The agent rejected the SUBSCRIBE call in a way retrying cannot fix.
    #[error("the agent rejected SUBSCRIBE with HTTP {status}: {body}")]
    SubscribeRejected {
        /// HTTP status code.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The connection to the agent broke and the framework does not
    /// checkpoint, so the executor killed its tasks.
    #[error("lost the connection to the agent ({0}) and checkpointing is disabled")]
    Disconnected(String),
    /// The agent did not come back within the recovery timeout.
    #[error("could not (re-)subscribe with the agent within the recovery timeout of {0:?}")]
    RecoveryTimeout(Duration),
}
