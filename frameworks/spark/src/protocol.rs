//! Spark's REST submission protocol (pure): the messages `spark-submit`
//! exchanges with a standalone master's REST server in cluster deploy mode
//! (`--master spark://host:6066 --deploy-mode cluster`, `--status <id>`,
//! `--kill <id>`), as Spark 4 speaks it, and the way Spark's own server
//! routes, validates and answers them.
//!
//! # The protocol as implemented
//!
//! * **URLs** — `http://host:port/v1/submissions/<call>` ([`PROTOCOL_VERSION`]
//!   is `v1`, the port defaults to [`DEFAULT_PORT`]):
//!
//!   | call | method | body | answer |
//!   |---|---|---|---|
//!   | `create` | POST | [`CreateSubmissionRequest`] | [`CreateSubmissionResponse`] |
//!   | `status/<id>` | GET | — | [`SubmissionStatusResponse`] |
//!   | `kill/<id>` | POST | — | [`KillSubmissionResponse`] |
//!   | `killall` | POST | — | [`KillAllSubmissionResponse`] |
//!   | `clear` | POST | — | [`ClearResponse`] |
//!   | `readyz` | GET | — | [`ReadyzResponse`], or 503 + [`ErrorResponse`] |
//!
//!   Each call answers under its prefix, so `kill/a/b` kills `a` and
//!   `create/anything` creates; the id is the first path segment after the
//!   call. [`route`] maps a method and a path to a [`Route`].
//! * **Messages** — JSON objects whose `action` is the Spark message class's
//!   simple name (`"CreateSubmissionRequest"`, …, [`Action`]); field names
//!   are camelCase; fields that are null are **omitted** (Jackson
//!   `Include.NON_NULL`), empty strings and empty collections are kept;
//!   `success` is a JSON **boolean** (a `java.lang.Boolean`; early
//!   versions sent the string `"true"`); Spark writes fields in alphabetical order, pretty-printed,
//!   and reads them in any order, ignoring fields it does not know (on a
//!   create it lists those back in `unknownFields`).
//!   Requests carry `clientSparkVersion`, responses `serverSparkVersion`;
//!   neither side compares versions — they only have to be present.
//! * **Create** — Spark's server deserialises the body, validates it and
//!   answers **400** with an [`ErrorResponse`] whose message starts with
//!   `Malformed request: ` when the body is not JSON, has no `action`, has a
//!   field of the wrong JSON type, or fails validation: `clientSparkVersion`,
//!   `sparkProperties`, `appResource`, `appArgs`, `environmentVariables` and
//!   the `spark.app.name` property are required, `spark.driver.supervise`
//!   must be a boolean, `spark.driver.cores` and `spark.cores.max` numbers,
//!   `spark.driver.memory` and `spark.executor.memory` memory strings, and
//!   the standalone server then requires `mainClass`. A message of another
//!   known type is refused with 400 `Received message of unexpected type X.`
//!   [`parse_create`] does all of this and returns the message Spark would.
//!   An accepted driver is answered 200 with `success: true`, its
//!   `submissionId` (`driver-<yyyyMMddHHmmss>-<nnnn>`, [`driver_id`]) and
//!   `Driver successfully submitted as <id>`; a master that cannot take it
//!   answers 200 with `success: false` and a message.
//! * **Status, kill** — an unknown id is **not** an HTTP error: 200 with
//!   `success: false` (status: the id and nothing else; kill: `Driver <id>
//!   has already finished or does not exist`). A missing id is 400
//!   (`Submission ID is missing in status request.` / `… kill request.`).
//! * **killall, clear, readyz** (Spark 4) — killall kills every live driver
//!   (`Kill request for all drivers submitted`); clear forgets completed
//!   drivers and applications (`success: true`, `message: ""`); readyz
//!   answers 200 `success: true`, `message: ""` when the master is ready
//!   (not a standby), else **503** with the error `Master is not ready.`
//! * **Other paths** — 400 (`Missing protocol version.`, `Missing the
//!   /submissions prefix.`, `Missing an action: …`), or **468** (Spark's
//!   `SC_UNKNOWN_PROTOCOL_VERSION`) with `highestProtocolVersion: "v1"` when
//!   the first segment is not a known version. Every message ends with
//!   ` Please submit requests through http://[host]:[port]/v1/submissions/...`.
//! * **Errors** — an [`ErrorResponse`] has `action`, `message`,
//!   `serverSparkVersion` and, on a version mismatch only,
//!   `highestProtocolVersion`; it has no `success`.
//!
//! # What the client does with the answers
//!
//! `RestSubmissionClient` treats any status other than 200 as an error: it
//! does not parse that body but keeps it verbatim as the message of an
//! `ErrorResponse` it makes itself (with `highestProtocolVersion` set on a
//! 468), except that a 500 whose content type is not `application/json`
//! is a protocol exception — so every refusal must have a body, which
//! [`Reply`] always has. A 200 body must parse, carry a known `action`
//! and pass that message's validation, or the client fails with
//! `Malformed response received from server`. Only a refused connection,
//! a socket error, or no answer within 10 s ([`CLIENT_RESPONSE_TIMEOUT_MS`])
//! make `spark-submit` fall back to the legacy (RPC) gateway. With several
//! masters (`spark://a:6066,b:6066`) it tries each until one handles the
//! call; a kill, killall, clear or readyz answer whose `message` starts with
//! [`BACKUP_MASTER_PREFIX`] counts as "ask the next master" — so those
//! answers must always carry a `message` (the client reads it unchecked),
//! which the constructors here guarantee.
//!
//! After a create answered with `success: true` and a `submissionId`, the
//! client logs `Submission successfully created as <id>. Polling submission
//! state...` and asks for the status up to [`CLIENT_STATUS_POLL_TRIES`]
//! times, [`CLIENT_STATUS_POLL_INTERVAL_MS`] apart, until one answer has
//! `success: true`; it logs `State of driver <id> is now <driverState>.`,
//! `Driver is running on worker <workerId> at <workerHostPort>.` when both
//! are present, and the `message` as an error when present; it never waits
//! for the driver to finish (`spark.standalone.submit.waitAppCompletion`
//! is read only by the legacy gateway's client). A create answered with
//! `success: false` is not reported at all. `--status` logs the whole
//! status answer as JSON when `success` is true and `Server responded with
//! message of unexpected type SubmissionStatusResponse.` otherwise; `--kill`
//! logs the kill answer.
//!
//! # Where Corral differs (deliberately)
//!
//! Spark reads bodies of any size; Corral refuses more than
//! [`MAX_REQUEST_BODY_BYTES`] with 413. Where Spark's servlets let an
//! exception escape to Jetty (an unknown `action`, a body that is not UTF-8:
//! a 500 HTML page; a wrong method: Jetty's 405 HTML page), Corral answers
//! 400 or 405 with an [`ErrorResponse`]. Spark's `Malformed request:`
//! messages end with a Java stack trace; Corral puts the underlying cause
//! there instead (`Caused by: …`). Null entries in `appArgs` and null
//! property or environment values, which Spark accepts and then trips on,
//! are refused.
//!
//! # Where the facts come from
//!
//! Verified in apache/spark (Spark 4.x sources and tests), package
//! `org.apache.spark.deploy.rest` unless noted: `RestSubmissionServer.scala`
//! (servlet mapping, status codes, `ErrorServlet` messages, 468, readyz's
//! 503), `StandaloneRestServer.scala` (what each call answers, `Main class is
//! missing.`, `unknownFields`, environment placeholders and filtering),
//! `SubmitRestProtocolMessage.scala` (`NON_NULL`, alphabetical order,
//! `action`, `fromJson`), `SubmitRestProtocolRequest.scala` (validation),
//! `SubmitRestProtocolResponse.scala` (the responses, `success` a
//! `java.lang.Boolean`, `ReadyzResponse`, `ClearResponse`,
//! `KillAllSubmissionResponse`), `SubmitRestProtocolException.scala`,
//! `RestSubmissionClient.scala` (URLs, polling, error handling,
//! `PROTOCOL_VERSION`), the tests `StandaloneRestSubmitSuite.scala` and
//! `SubmitRestProtocolSuite.scala`; `deploy/master/Master.scala` (the
//! masters' messages), `deploy/master/DriverState.scala`,
//! `deploy/SparkSubmit.scala` (the fallback), `util/Utils.scala`
//! (`BACKUP_STANDALONE_MASTER_PREFIX`, `memoryStringToMb`),
//! `internal/config/Deploy.scala` (`spark.deploy.driverIdPattern`) and
//! `common/utils/.../JavaUtils.java` (`byteStringAs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version in every URL (`RestSubmissionClient.PROTOCOL_VERSION`).
pub const PROTOCOL_VERSION: &str = "v1";
/// The REST server's default port (`spark.master.rest.port`).
pub const DEFAULT_PORT: u16 = 6066;
/// Spark's status code for a request naming a protocol version it does not
/// speak (`RestSubmissionServer.SC_UNKNOWN_PROTOCOL_VERSION`).
pub const SC_UNKNOWN_PROTOCOL_VERSION: u16 = 468;
/// The Spark version Corral reports as `serverSparkVersion` unless told
/// otherwise; clients only require the field to be present.
pub const DEFAULT_SERVER_SPARK_VERSION: &str = "4.0.0";
/// The largest create body Corral reads (Spark has no limit).
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;
/// The content type of every answer.
pub const CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// The start of a message from a master that is not the active one
/// (`Utils.BACKUP_STANDALONE_MASTER_PREFIX`); clients then try the next.
pub const BACKUP_MASTER_PREFIX: &str = "Current state is not alive";
/// How many times the client asks for a new driver's status.
pub const CLIENT_STATUS_POLL_TRIES: u32 = 10;
/// How long the client waits between those status requests.
pub const CLIENT_STATUS_POLL_INTERVAL_MS: u64 = 1_000;
/// How long the client waits for any answer before giving up on a master.
pub const CLIENT_RESPONSE_TIMEOUT_MS: u64 = 10_000;
/// The application's name (required in every create).
pub const APP_NAME_KEY: &str = "spark.app.name";
/// Whether the driver is relaunched when it fails (a boolean).
pub const SUPERVISE_KEY: &str = "spark.driver.supervise";
/// The driver's cores (a number).
pub const DRIVER_CORES_KEY: &str = "spark.driver.cores";
/// The application's cores at most (a number).
pub const CORES_MAX_KEY: &str = "spark.cores.max";
/// The driver's memory (a memory string).
pub const DRIVER_MEMORY_KEY: &str = "spark.driver.memory";
/// Each executor's memory (a memory string).
pub const EXECUTOR_MEMORY_KEY: &str = "spark.executor.memory";

/// The message of a create answered `success: true`, before the id.
const SUBMITTED_PREFIX: &str = "Driver successfully submitted as ";
/// What every path error ends with.
const PATH_HINT: &str = " Please submit requests through http://[host]:[port]/v1/submissions/...";
/// The package Spark resolves `action` in.
const SPARK_REST_PACKAGE: &str = "org.apache.spark.deploy.rest";
const EXC_PROTOCOL: &str = "org.apache.spark.deploy.rest.SubmitRestProtocolException";
const EXC_MISSING_FIELD: &str = "org.apache.spark.deploy.rest.SubmitRestMissingFieldException";
const EXC_JSON_PARSE: &str = "com.fasterxml.jackson.core.JsonParseException";
const EXC_MISMATCHED_INPUT: &str = "com.fasterxml.jackson.databind.exc.MismatchedInputException";
const EXC_CLASS_NOT_FOUND: &str = "java.lang.ClassNotFoundException";
const EXC_MALFORMED_INPUT: &str = "java.nio.charset.MalformedInputException";
/// The top-level fields of a create request Spark knows.
const CREATE_FIELDS: [&str; 8] = [
    "action",
    "appArgs",
    "appResource",
    "clientSparkVersion",
    "environmentVariables",
    "mainClass",
    "message",
    "sparkProperties",
];

/// A message type: the `action` of its JSON, Spark's class name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Launch a driver (the only request with a body).
    CreateSubmissionRequest,
    /// The answer to a create.
    CreateSubmissionResponse,
    /// The answer to a kill.
    KillSubmissionResponse,
    /// The answer to a killall (Spark 4).
    KillAllSubmissionResponse,
    /// The answer to a status request.
    SubmissionStatusResponse,
    /// The answer to a clear (Spark 4).
    ClearResponse,
    /// The answer to a readyz when the master is ready (Spark 4).
    ReadyzResponse,
    /// Any refusal.
    ErrorResponse,
}

impl Action {
    /// Every message type.
    pub const ALL: [Action; 8] = [
        Action::CreateSubmissionRequest,
        Action::CreateSubmissionResponse,
        Action::KillSubmissionResponse,
        Action::KillAllSubmissionResponse,
        Action::SubmissionStatusResponse,
        Action::ClearResponse,
        Action::ReadyzResponse,
        Action::ErrorResponse,
    ];

    /// The `action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CreateSubmissionRequest => "CreateSubmissionRequest",
            Action::CreateSubmissionResponse => "CreateSubmissionResponse",
            Action::KillSubmissionResponse => "KillSubmissionResponse",
            Action::KillAllSubmissionResponse => "KillAllSubmissionResponse",
            Action::SubmissionStatusResponse => "SubmissionStatusResponse",
            Action::ClearResponse => "ClearResponse",
            Action::ReadyzResponse => "ReadyzResponse",
            Action::ErrorResponse => "ErrorResponse",
        }
    }

    /// The message type an `action` value names (exact, case-sensitive, as
    /// Spark's class lookup is).
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// Where a driver is, in the standalone master's words
/// (`org.apache.spark.deploy.master.DriverState`), as `driverState` carries
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverState {
    /// Submitted, not yet placed.
    Submitted,
    /// Placed and running.
    Running,
    /// Exited cleanly.
    Finished,
    /// Failed (non-zero exit or lost node) and supervised: waiting to run again.
    Relaunching,
    /// Not known for now (the master is recovering).
    Unknown,
    /// Killed on request.
    Killed,
    /// Exited non-zero and not supervised.
    Failed,
    /// Cannot run or be relaunched (e.g. its jar is missing).
    Error,
}

impl DriverState {
    /// Every state, in Spark's order.
    pub const ALL: [DriverState; 8] = [
        DriverState::Submitted,
        DriverState::Running,
        DriverState::Finished,
        DriverState::Relaunching,
        DriverState::Unknown,
        DriverState::Killed,
        DriverState::Failed,
        DriverState::Error,
    ];

    /// The name on the wire (`"RUNNING"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DriverState::Submitted => "SUBMITTED",
            DriverState::Running => "RUNNING",
            DriverState::Finished => "FINISHED",
            DriverState::Relaunching => "RELAUNCHING",
            DriverState::Unknown => "UNKNOWN",
            DriverState::Killed => "KILLED",
            DriverState::Failed => "FAILED",
            DriverState::Error => "ERROR",
        }
    }

    /// The state a wire name stands for.
    pub fn from_name(name: &str) -> Option<DriverState> {
        DriverState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the driver has ended for good (the states the master moves a
    /// driver to its completed drivers in).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DriverState::Finished | DriverState::Killed | DriverState::Failed | DriverState::Error
        )
    }
}

impl std::fmt::Display for DriverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to launch a driver (`POST /v1/submissions/create`), as
/// [`parse_create`] accepts it: every field Spark's standalone server
/// requires is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct CreateSubmissionRequest {
    /// The application's arguments.
    pub app_args: Vec<String>,
    /// The jar (or file) to run.
    pub app_resource: String,
    /// The submitting client's Spark version.
    pub client_spark_version: String,
    /// Environment variables for the driver (`spark-submit` sends the
    /// submitter's `SPARK_*` variables).
    pub environment_variables: BTreeMap<String, String>,
    /// The class to run.
    pub main_class: String,
    /// A free-form message (no client sends one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The application's configuration (`spark.app.name` at least).
    pub spark_properties: BTreeMap<String, String>,
}

impl CreateSubmissionRequest {
    /// A request as `RestSubmissionClient.constructSubmitRequest` builds it.
    pub fn new(
        client_spark_version: &str,
        app_resource: &str,
        main_class: &str,
        app_args: Vec<String>,
        spark_properties: BTreeMap<String, String>,
        environment_variables: BTreeMap<String, String>,
    ) -> Self {
        Self {
            app_args,
            app_resource: app_resource.to_string(),
            client_spark_version: client_spark_version.to_string(),
            environment_variables,
            main_class: main_class.to_string(),
            message: None,
            spark_properties,
        }
    }

    /// Checks the properties as Spark's validation does (the other fields
    /// of a typed request are necessarily present).
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_properties(&self.spark_properties)
    }

    /// A Spark property.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.spark_properties.get(key).map(String::as_str)
    }

    /// The application's name (`spark.app.name`).
    pub fn app_name(&self) -> Option<&str> {
        self.property(APP_NAME_KEY)
    }

    /// Whether the driver is supervised (`spark.driver.supervise`, false
    /// when absent or not a boolean).
    pub fn supervise(&self) -> bool {
        self.property(SUPERVISE_KEY)
            .and_then(parse_spark_boolean)
            .unwrap_or(false)
    }

    /// The driver's cores (`spark.driver.cores`), when given as a number.
    pub fn driver_cores(&self) -> Option<f64> {
        self.property(DRIVER_CORES_KEY).and_then(parse_java_double)
    }

    /// The driver's memory in MiB (`spark.driver.memory`), when given.
    pub fn driver_memory_mib(&self) -> Option<i64> {
        self.property(DRIVER_MEMORY_KEY)
            .and_then(memory_string_to_mib)
    }

    /// Each executor's memory in MiB (`spark.executor.memory`), when given.
    pub fn executor_memory_mib(&self) -> Option<i64> {
        self.property(EXECUTOR_MEMORY_KEY)
            .and_then(memory_string_to_mib)
    }
}

/// The answer to a create (200 either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct CreateSubmissionResponse {
    /// What the master said (`Driver successfully submitted as <id>`, or why
    /// not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// The new driver's id, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    /// Whether the driver was accepted.
    pub success: bool,
    /// Top-level request fields the server did not know, when there were
    /// any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_fields: Option<Vec<String>>,
}

impl CreateSubmissionResponse {
    /// A driver accepted as `submission_id`; `unknown_fields` as
    /// [`parse_create_with_unknown_fields`] found them (left out when empty).
    pub fn accepted(
        server_spark_version: &str,
        submission_id: &str,
        unknown_fields: Vec<String>,
    ) -> Self {
        Self {
            message: Some(format!("{SUBMITTED_PREFIX}{submission_id}")),
            server_spark_version: server_spark_version.to_string(),
            submission_id: Some(submission_id.to_string()),
            success: true,
            unknown_fields: (!unknown_fields.is_empty()).then_some(unknown_fields),
        }
    }

    /// A driver the server would not take (e.g. a full queue), with why.
    pub fn refused(server_spark_version: &str, message: &str) -> Self {
        Self {
            message: Some(message.to_string()),
            server_spark_version: server_spark_version.to_string(),
            submission_id: None,
            success: false,
            unknown_fields: None,
        }
    }
}

/// The answer to a kill (200 either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct KillSubmissionResponse {
    /// What happened; always present (the client reads it unchecked).
    #[serde(default)]
    pub message: String,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// The driver named in the URL.
    pub submission_id: String,
    /// Whether a kill was started.
    pub success: bool,
}

impl KillSubmissionResponse {
    /// A kill started (`Kill request for <id> submitted`).
    pub fn requested(server_spark_version: &str, submission_id: &str) -> Self {
        Self::new(
            server_spark_version,
            submission_id,
            true,
            &format!("Kill request for {submission_id} submitted"),
        )
    }

    /// No such live driver — never submitted, or already ended
    /// (`Driver <id> has already finished or does not exist`).
    pub fn not_found(server_spark_version: &str, submission_id: &str) -> Self {
        Self::new(
            server_spark_version,
            submission_id,
            false,
            &format!("Driver {submission_id} has already finished or does not exist"),
        )
    }

    /// Any other answer.
    pub fn new(
        server_spark_version: &str,
        submission_id: &str,
        success: bool,
        message: &str,
    ) -> Self {
        Self {
            message: message.to_string(),
            server_spark_version: server_spark_version.to_string(),
            submission_id: submission_id.to_string(),
            success,
        }
    }
}

/// The answer to a killall (Spark 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct KillAllSubmissionResponse {
    /// What happened; always present.
    #[serde(default)]
    pub message: String,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// Whether the kills were started.
    pub success: bool,
}

impl KillAllSubmissionResponse {
    /// Every live driver is being killed
    /// (`Kill request for all drivers submitted`).
    pub fn requested(server_spark_version: &str) -> Self {
        Self {
            message: "Kill request for all drivers submitted".to_string(),
            server_spark_version: server_spark_version.to_string(),
            success: true,
        }
    }
}

/// The answer to a clear (Spark 4): completed drivers and applications
/// forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct ClearResponse {
    /// Empty from Spark's server; always present.
    #[serde(default)]
    pub message: String,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// Whether it was done.
    pub success: bool,
}

impl ClearResponse {
    /// Cleared (`success: true`, `message: ""`).
    pub fn cleared(server_spark_version: &str) -> Self {
        Self {
            message: String::new(),
            server_spark_version: server_spark_version.to_string(),
            success: true,
        }
    }
}

/// The answer to a readyz when the master is ready (Spark 4); when it is
/// not, the answer is a 503 [`ErrorResponse`] ([`readyz_reply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct ReadyzResponse {
    /// Empty from Spark's server; always present.
    #[serde(default)]
    pub message: String,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// Ready.
    pub success: bool,
}

impl ReadyzResponse {
    /// Ready (`success: true`, `message: ""`).
    pub fn ready(server_spark_version: &str) -> Self {
        Self {
            message: String::new(),
            server_spark_version: server_spark_version.to_string(),
            success: true,
        }
    }
}

/// The answer to a status request (200 either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct SubmissionStatusResponse {
    /// Where the driver is, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_state: Option<DriverState>,
    /// Why it failed, when it did ([`cluster_exception_message`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// The driver named in the URL.
    pub submission_id: String,
    /// Whether the driver is known.
    pub success: bool,
    /// Where it runs: `host:port` of its worker (Corral: its agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_host_port: Option<String>,
    /// Where it runs: its worker's id (Corral: its agent's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

impl SubmissionStatusResponse {
    /// A known driver; `worker` is `(workerId, workerHostPort)` once placed,
    /// `message` the failure when there was one.
    pub fn found(
        server_spark_version: &str,
        submission_id: &str,
        state: DriverState,
        worker: Option<(&str, &str)>,
        message: Option<&str>,
    ) -> Self {
        Self {
            driver_state: Some(state),
            message: message.map(str::to_string),
            server_spark_version: server_spark_version.to_string(),
            submission_id: submission_id.to_string(),
            success: true,
            worker_host_port: worker.map(|(_, hp)| hp.to_string()),
            worker_id: worker.map(|(id, _)| id.to_string()),
        }
    }

    /// An unknown driver: `success: false` and the id, nothing else.
    pub fn not_found(server_spark_version: &str, submission_id: &str) -> Self {
        Self {
            driver_state: None,
            message: None,
            server_spark_version: server_spark_version.to_string(),
            submission_id: submission_id.to_string(),
            success: false,
            worker_host_port: None,
            worker_id: None,
        }
    }
}

/// Any refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub struct ErrorResponse {
    /// The highest protocol version the server speaks; only when the
    /// request named another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_protocol_version: Option<String>,
    /// What was wrong.
    pub message: String,
    /// The server's Spark version.
    pub server_spark_version: String,
    /// Never set by Spark's server; kept for reading other servers'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
}

impl ErrorResponse {
    /// An error with a message.
    pub fn new(server_spark_version: &str, message: &str) -> Self {
        Self {
            highest_protocol_version: None,
            message: message.to_string(),
            server_spark_version: server_spark_version.to_string(),
            success: None,
        }
    }
}

/// A request Spark would refuse: the HTTP status and what its
/// [`ErrorResponse`] would say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ProtocolError {
    /// The HTTP status (400, 405, 413, 468).
    pub status: u16,
    /// The error response's `message`.
    pub message: String,
    /// `highestProtocolVersion`, on a 468.
    pub highest_protocol_version: Option<String>,
    /// The methods the path takes, on a 405 (for the `Allow` header).
    pub allow: Option<&'static str>,
}

impl ProtocolError {
    fn new(status: u16, message: String) -> Self {
        Self {
            status,
            message,
            highest_protocol_version: None,
            allow: None,
        }
    }

    fn bad_request(message: String) -> Self {
        Self::new(400, message)
    }

    /// The error response to send.
    pub fn error_response(&self, server_spark_version: &str) -> ErrorResponse {
        ErrorResponse {
            highest_protocol_version: self.highest_protocol_version.clone(),
            ..ErrorResponse::new(server_spark_version, &self.message)
        }
    }
}

/// An answer ready to send: status, JSON body (content type
/// [`CONTENT_TYPE`]) and, on a 405, the `Allow` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: String,
    /// The `Allow` header, on a 405.
    pub allow: Option<&'static str>,
}

impl Reply {
    /// A 200 carrying `message`.
    pub fn ok<T: Serialize>(message: &T) -> Self {
        Self {
            status: 200,
            body: to_json(message),
            allow: None,
        }
    }

    /// A refusal.
    pub fn from_error(error: &ProtocolError, server_spark_version: &str) -> Self {
        Self {
            status: error.status,
            body: to_json(&error.error_response(server_spark_version)),
            allow: error.allow,
        }
    }
}

/// A message as JSON, pretty-printed as Spark writes it.
pub fn to_json<T: Serialize>(message: &T) -> String {
    serde_json::to_string_pretty(message).unwrap_or_else(|e| {
        // Not reachable with this module's messages (string keys only).
        error_response(&format!("Internal server error: {e}"), "").to_string()
    })
}

/// Spark's error response as a JSON value: `action`, `message`,
/// `serverSparkVersion`.
pub fn error_response(message: &str, server_spark_version: &str) -> Value {
    let mut m = Map::new();
    m.insert("action".into(), Value::from(Action::ErrorResponse.as_str()));
    m.insert("message".into(), Value::from(message));
    m.insert(
        "serverSparkVersion".into(),
        Value::from(server_spark_version),
    );
    Value::Object(m)
}

/// The answer to a readyz: 200 [`ReadyzResponse`] when ready, else 503 with
/// the error `Master is not ready.`
pub fn readyz_reply(ready: bool, server_spark_version: &str) -> Reply {
    if ready {
        Reply::ok(&ReadyzResponse::ready(server_spark_version))
    } else {
        Reply {
            status: 503,
            body: to_json(&ErrorResponse::new(
                server_spark_version,
                "Master is not ready.",
            )),
            allow: None,
        }
    }
}

/// The message of a status answer for a driver that failed with
/// `exception` (Spark: `Exception from the cluster:` and the stack trace).
pub fn cluster_exception_message(exception: &str) -> String {
    format!("Exception from the cluster:\n{exception}")
}

/// A driver id as the standalone master makes them
/// (`spark.deploy.driverIdPattern`, default `driver-%s-%04d`):
/// `submit_date` is `yyyyMMddHHmmss`, `number` the master's counter.
pub fn driver_id(submit_date: &str, number: u64) -> String {
    format!("driver-{submit_date}-{number:04}")
}

/// What a method and path ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/submissions/create`.
    Create,
    /// `POST /v1/submissions/kill/<id>`.
    Kill {
        /// The driver.
        submission_id: String,
    },
    /// `POST /v1/submissions/killall`.
    KillAll,
    /// `GET /v1/submissions/status/<id>` (or HEAD).
    Status {
        /// The driver.
        submission_id: String,
    },
    /// `POST /v1/submissions/clear`.
    Clear,
    /// `GET /v1/submissions/readyz` (or HEAD).
    Readyz,
}

impl Route {
    /// The method a client uses.
    pub fn method(&self) -> &'static str {
        match self {
            Route::Status { .. } | Route::Readyz => "GET",
            Route::Create | Route::Kill { .. } | Route::KillAll | Route::Clear => "POST",
        }
    }

    /// The path a client uses.
    pub fn path(&self) -> String {
        let base = format!("/{PROTOCOL_VERSION}/submissions");
        match self {
            Route::Create => format!("{base}/create"),
            Route::Kill { submission_id } => format!("{base}/kill/{submission_id}"),
            Route::KillAll => format!("{base}/killall"),
            Route::Status { submission_id } => format!("{base}/status/{submission_id}"),
            Route::Clear => format!("{base}/clear"),
            Route::Readyz => format!("{base}/readyz"),
        }
    }
}

/// The calls, as Spark maps its servlets (`/v1/submissions/<call>/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Create,
    Kill,
    KillAll,
    Status,
    Clear,
    Readyz,
}

const CALLS: [(&str, Call); 6] = [
    ("create", Call::Create),
    ("kill", Call::Kill),
    ("killall", Call::KillAll),
    ("status", Call::Status),
    ("clear", Call::Clear),
    ("readyz", Call::Readyz),
];

/// Maps a request to its call as Spark's REST server does.
///
/// The query string is ignored and the path percent-decoded (Jetty does
/// both before matching; an encoded `/` is refused, as Jetty 12 refuses
/// it). A call matches its path and anything below it. A wrong method is
/// 405 (`HTTP method X is not supported by this URL`); HEAD is taken
/// wherever GET is. A kill or status without an id is 400. Any other path
/// is answered as Spark's `ErrorServlet` answers it, whatever the method:
/// 400, or 468 with `highestProtocolVersion` when the first segment is not
/// `v1` — or is `v1` not followed by `submissions` (`/v1/x` says `Unknown
/// protocol version 'v1'.`, as Spark does).
pub fn route(method: &str, path: &str) -> Result<Route, ProtocolError> {
    let raw = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(raw)?;
    let path = if decoded.is_empty() {
        "/"
    } else {
        decoded.as_str()
    };
    let base = format!("/{PROTOCOL_VERSION}/submissions/");
    if let Some(after_base) = path.strip_prefix(base.as_str()) {
        for (name, call) in CALLS {
            let Some(rest) = after_base.strip_prefix(name) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            return call_route(call, method, rest);
        }
    }
    Err(path_error(path))
}

fn call_route(call: Call, method: &str, rest: &str) -> Result<Route, ProtocolError> {
    let (allowed, allow): (&[&str], &'static str) = match call {
        Call::Status | Call::Readyz => (&["GET", "HEAD"], "GET, HEAD"),
        Call::Create | Call::Kill | Call::KillAll | Call::Clear => (&["POST"], "POST"),
    };
    if !allowed.contains(&method) {
        return Err(ProtocolError {
            allow: Some(allow),
            ..ProtocolError::new(
                405,
                format!("HTTP method {method} is not supported by this URL"),
            )
        });
    }
    // Spark: strip one leading '/', split on '/', the first part if not empty.
    let id = rest
        .strip_prefix('/')
        .unwrap_or(rest)
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    match call {
        Call::Create => Ok(Route::Create),
        Call::KillAll => Ok(Route::KillAll),
        Call::Clear => Ok(Route::Clear),
        Call::Readyz => Ok(Route::Readyz),
        Call::Kill => id
            .map(|submission_id| Route::Kill { submission_id })
            .ok_or_else(|| {
                ProtocolError::bad_request("Submission ID is missing in kill request.".into())
            }),
        Call::Status => id
            .map(|submission_id| Route::Status { submission_id })
            .ok_or_else(|| {
                ProtocolError::bad_request("Submission ID is missing in status request.".into())
            }),
    }
}

/// Spark's `ErrorServlet`: a path no call takes.
fn path_error(path: &str) -> ProtocolError {
    let parts: Vec<&str> = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (message, mismatch) = match parts.as_slice() {
        [] => ("Missing protocol version.".to_string(), false),
        [v] if *v == PROTOCOL_VERSION => ("Missing the /submissions prefix.".to_string(), false),
        [v, "submissions", ..] if *v == PROTOCOL_VERSION => (
            "Missing an action: please specify one of /create, /kill, /killall, /clear, \
             /status, or /readyz."
                .to_string(),
            false,
        ),
        [unknown, ..] => (format!("Unknown protocol version '{unknown}'."), true),
    };
    let message = format!("{message}{PATH_HINT}");
    if mismatch {
        ProtocolError {
            highest_protocol_version: Some(PROTOCOL_VERSION.to_string()),
            ..ProtocolError::new(SC_UNKNOWN_PROTOCOL_VERSION, message)
        }
    } else {
        ProtocolError::bad_request(message)
    }
}

fn percent_decode(raw: &str) -> Result<String, ProtocolError> {
    if !raw.contains('%') {
        return Ok(raw.to_string());
    }
    let bad = || ProtocolError::bad_request("Bad URI encoding.".into());
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(bad());
            };
            let byte = u8::try_from(hi * 16 + lo).map_err(|_| bad())?;
            if byte == b'/' || byte == b'\\' {
                return Err(ProtocolError::bad_request(
                    "Ambiguous URI path separator.".into(),
                ));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Reads a create body as Spark's standalone server does: see
/// [`parse_create_with_unknown_fields`].
pub fn parse_create(body: &[u8]) -> Result<CreateSubmissionRequest, ProtocolError> {
    parse_create_with_unknown_fields(body).map(|(request, _)| request)
}

/// Reads a create body as Spark's standalone server does, with the
/// top-level fields it did not know (for `unknownFields`, in the order the
/// JSON map keeps them).
///
/// Refusals, all 400 unless said, with the message Spark's error response
/// carries (`Malformed request: <exception>: <detail>`):
///
/// * over [`MAX_REQUEST_BODY_BYTES`]: 413 (Corral's limit);
/// * not UTF-8, empty, not JSON;
/// * not an object, or no string `action`: `Action field not found in
///   JSON:` and the body;
/// * an `action` naming no Spark message (`ClassNotFoundException`), or
///   another message than a create: `Received message of unexpected type X.`;
/// * a field of the wrong JSON type (numbers and booleans are taken as
///   strings, as Jackson does; null is absent);
/// * validation, in Spark's order: `'clientSparkVersion' is missing…`,
///   `No Spark properties set!`, `'appResource' …`, `'appArgs' …`,
///   `'environmentVariables' …`, `'spark.app.name' …`, then the property
///   types (`Property 'spark.driver.supervise' expected boolean value:
///   actual was 'x'.`, numeric `spark.driver.cores` and `spark.cores.max`,
///   memory `spark.driver.memory` and `spark.executor.memory`);
/// * no `mainClass`: `Main class is missing.`
pub fn parse_create_with_unknown_fields(
    body: &[u8],
) -> Result<(CreateSubmissionRequest, Vec<String>), ProtocolError> {
    if body.len() > MAX_REQUEST_BODY_BYTES {
        return Err(ProtocolError::new(
            413,
            format!(
                "Request body of {} bytes is over the limit of {MAX_REQUEST_BODY_BYTES} bytes.",
                body.len()
            ),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| malformed(EXC_MALFORMED_INPUT, &format!("the body is not UTF-8 ({e})")))?;
    if text.trim().is_empty() {
        return Err(malformed(
            EXC_MISMATCHED_INPUT,
            "No content to map due to end-of-input",
        ));
    }
    let json: Value =
        serde_json::from_str(text).map_err(|e| malformed(EXC_JSON_PARSE, &e.to_string()))?;
    let action = match &json {
        Value::Object(obj) => match obj.get("action") {
            Some(Value::String(a)) => Some(a.as_str()),
            _ => None,
        },
        _ => None,
    };
    let (Some(action), Value::Object(obj)) = (action, &json) else {
        return Err(malformed(
            EXC_MISSING_FIELD,
            &format!("Action field not found in JSON:\n{text}"),
        ));
    };
    match Action::from_name(action) {
        Some(Action::CreateSubmissionRequest) => {}
        Some(other) => {
            return Err(ProtocolError::bad_request(format!(
                "Received message of unexpected type {}.",
                other.as_str()
            )))
        }
        None => {
            return Err(malformed(
                EXC_CLASS_NOT_FOUND,
                &format!("{SPARK_REST_PACKAGE}.{action}"),
            ))
        }
    }
    let raw = RawCreate {
        client_spark_version: string_field(obj, "clientSparkVersion")?,
        app_resource: string_field(obj, "appResource")?,
        main_class: string_field(obj, "mainClass")?,
        message: string_field(obj, "message")?,
        app_args: string_array_field(obj, "appArgs")?,
        spark_properties: string_map_field(obj, "sparkProperties")?,
        environment_variables: string_map_field(obj, "environmentVariables")?,
    };
    let unknown = obj
        .keys()
        .filter(|k| !CREATE_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok((validate_create(raw)?, unknown))
}

/// A create as deserialised, before validation.
struct RawCreate {
    client_spark_version: Option<String>,
    app_resource: Option<String>,
    main_class: Option<String>,
    message: Option<String>,
    app_args: Option<Vec<String>>,
    spark_properties: Option<BTreeMap<String, String>>,
    environment_variables: Option<BTreeMap<String, String>>,
}

fn validate_create(raw: RawCreate) -> Result<CreateSubmissionRequest, ProtocolError> {
    let client_spark_version = raw
        .client_spark_version
        .ok_or_else(|| missing_field("clientSparkVersion"))?;
    let spark_properties = raw
        .spark_properties
        .ok_or_else(|| validation_failed(EXC_PROTOCOL, "No Spark properties set!"))?;
    let app_resource = raw
        .app_resource
        .ok_or_else(|| missing_field("appResource"))?;
    let app_args = raw.app_args.ok_or_else(|| missing_field("appArgs"))?;
    let environment_variables = raw
        .environment_variables
        .ok_or_else(|| missing_field("environmentVariables"))?;
    check_properties(&spark_properties)?;
    let main_class = raw
        .main_class
        .ok_or_else(|| malformed(EXC_MISSING_FIELD, "Main class is missing."))?;
    Ok(CreateSubmissionRequest {
        app_args,
        app_resource,
        client_spark_version,
        environment_variables,
        main_class,
        message: raw.message,
        spark_properties,
    })
}

/// The typed Spark properties a create is checked for.
#[derive(Debug, Clone, Copy)]
enum PropertyKind {
    Boolean,
    Numeric,
    Memory,
}

impl PropertyKind {
    fn name(self) -> &'static str {
        match self {
            PropertyKind::Boolean => "boolean",
            PropertyKind::Numeric => "numeric",
            PropertyKind::Memory => "memory",
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            PropertyKind::Boolean => parse_spark_boolean(value).is_some(),
            PropertyKind::Numeric => parse_java_double(value).is_some(),
            PropertyKind::Memory => memory_string_to_mib(value).is_some(),
        }
    }
}

fn check_properties(props: &BTreeMap<String, String>) -> Result<(), ProtocolError> {
    if !props.contains_key(APP_NAME_KEY) {
        return Err(missing_field(APP_NAME_KEY));
    }
    let checks = [
        (SUPERVISE_KEY, PropertyKind::Boolean),
        (DRIVER_CORES_KEY, PropertyKind::Numeric),
        (CORES_MAX_KEY, PropertyKind::Numeric),
        (DRIVER_MEMORY_KEY, PropertyKind::Memory),
        (EXECUTOR_MEMORY_KEY, PropertyKind::Memory),
    ];
    for (key, kind) in checks {
        if let Some(value) = props.get(key) {
            if !kind.accepts(value) {
                return Err(validation_failed(
                    EXC_PROTOCOL,
                    &format!(
                        "Property '{key}' expected {} value: actual was '{value}'.",
                        kind.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn malformed(exception: &str, detail: &str) -> ProtocolError {
    ProtocolError::bad_request(format!("Malformed request: {exception}: {detail}"))
}

fn validation_failed(cause: &str, detail: &str) -> ProtocolError {
    ProtocolError::bad_request(format!(
        "Malformed request: {EXC_PROTOCOL}: Validation of message {} failed!\nCaused by: \
         {cause}: {detail}",
        Action::CreateSubmissionRequest.as_str()
    ))
}

fn missing_field(name: &str) -> ProtocolError {
    validation_failed(
        EXC_MISSING_FIELD,
        &format!(
            "'{name}' is missing in message {}.",
            Action::CreateSubmissionRequest.as_str()
        ),
    )
}

/// Jackson's name for a JSON token kind.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_f64() => "Floating-point",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

fn mismatched(java_type: &str, v: &Value, at: &str) -> ProtocolError {
    malformed(
        EXC_MISMATCHED_INPUT,
        &format!(
            "Cannot deserialize value of type `{java_type}` from {} value (through reference \
             chain: {SPARK_REST_PACKAGE}.{}[{at}])",
            json_kind(v),
            Action::CreateSubmissionRequest.as_str()
        ),
    )
}

/// A scalar as Jackson binds it to a `String`.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v)
            .map(Some)
            .ok_or_else(|| mismatched("java.lang.String", v, &format!("\"{name}\""))),
    }
}

fn string_array_field(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                scalar_text(v)
                    .ok_or_else(|| mismatched("java.lang.String", v, &format!("\"{name}\"][{i}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(mismatched("java.lang.String[]", v, &format!("\"{name}\""))),
    }
}

fn string_map_field(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(entries)) => entries
            .iter()
            .map(|(k, v)| {
                scalar_text(v).map(|text| (k.clone(), text)).ok_or_else(|| {
                    mismatched("java.lang.String", v, &format!("\"{name}\"][\"{k}\""))
                })
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        Some(v) => Err(mismatched(
            "scala.collection.immutable.Map<java.lang.String,java.lang.String>",
            v,
            &format!("\"{name}\""),
        )),
    }
}

/// A boolean as Scala's `String.toBoolean` reads it: `true` or `false`, any
/// case, nothing else (no trimming).
pub fn parse_spark_boolean(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A number as Java's `Double.parseDouble` reads it (Spark's "numeric"):
/// surrounding whitespace and control characters ignored, an optional sign,
/// decimal digits with an optional point and exponent, an optional `f`/`d`
/// suffix, or `NaN` / `Infinity`. (Hexadecimal floating-point literals,
/// which Java also takes, are refused.)
pub fn parse_java_double(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let (sign, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    match unsigned {
        "NaN" => return Some(f64::NAN),
        "Infinity" => return Some(sign * f64::INFINITY),
        _ => {}
    }
    let digits = unsigned
        .strip_suffix(['f', 'F', 'd', 'D'])
        .unwrap_or(unsigned);
    if !is_decimal_literal(digits) {
        return None;
    }
    digits.parse::<f64>().ok().map(|v| sign * v)
}

/// `digits [. digits] [e [sign] digits]` or `. digits [exponent]`.
fn is_decimal_literal(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(int)
        && frac.is_none_or(all_digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

/// A memory string in MiB as Spark's `Utils.memoryStringToMb` reads it
/// (`JavaUtils.byteStringAsBytes`, then whole MiB): digits and an optional
/// unit — `b`, `k`/`kb`, `m`/`mb`, `g`/`gb`, `t`/`tb`, `p`/`pb`, any case;
/// no unit means bytes; surrounding whitespace ignored; no fractions; the
/// byte count must fit a signed 64-bit integer.
pub fn memory_string_to_mib(s: &str) -> Option<i64> {
    let lower = s.to_lowercase();
    let t = lower.trim_matches(|c: char| c <= ' ');
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    if number.is_empty() || !suffix.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let shift = match suffix {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        "p" | "pb" => 50,
        _ => return None,
    };
    let value: i64 = number.parse().ok()?;
    let bytes = value.checked_mul(1i64 << shift)?;
    Some(bytes / (1024 * 1024))
}

/// Whether the server drops this driver environment variable
/// (`SPARK_LOCAL_IP` and `SPARK_LOCAL_HOSTNAME` describe the submitter's
/// machine).
pub fn is_dropped_environment_variable(name: &str) -> bool {
    name == "SPARK_LOCAL_IP" || name == "SPARK_LOCAL_HOSTNAME"
}

/// Spark 4's server-side placeholders in property and environment values:
/// a value that is exactly `{{NAME}}` becomes the server's `NAME` when that
/// is set (`lookup`), else stays as it is.
pub fn replace_placeholder(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    value
        .strip_prefix("{{")
        .and_then(|v| v.strip_suffix("}}"))
        .and_then(lookup)
        .unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V: &str = "4.0.0";

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn value<T: Serialize>(m: &T) -> Value {
        serde_json::from_str(&to_json(m)).unwrap_or(Value::Null)
    }

    /// A body as `spark-submit` 4 sends it.
    fn submit_body() -> Value {
        json!({
            "action": "CreateSubmissionRequest",
            "appArgs": ["10"],
            "appResource": "file:/opt/spark/examples/jars/spark-examples.jar",
            "clientSparkVersion": "4.0.0",
            "environmentVariables": {"SPARK_USER": "alice"},
            "mainClass": "org.apache.spark.examples.SparkPi",
            "sparkProperties": {
                "spark.app.name": "Spark Pi",
                "spark.driver.supervise": "false",
                "spark.master": "spark://dispatcher:6066",
                "spark.submit.deployMode": "cluster",
                "spark.driver.memory": "1g",
                "spark.driver.cores": "1",
                "spark.executor.memory": "512m"
            }
        })
    }

    fn body_with(f: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut v = submit_body();
        if let Value::Object(m) = &mut v {
            f(m);
        }
        v.to_string().into_bytes()
    }

    fn prop_body(key: &str, val: &str) -> Vec<u8> {
        body_with(|m| {
            if let Some(Value::Object(p)) = m.get_mut("sparkProperties") {
                p.insert(key.into(), Value::from(val));
            }
        })
    }

    fn err(body: &[u8]) -> ProtocolError {
        match parse_create(body) {
            Err(e) => e,
            Ok(r) => panic!("accepted {r:?}"),
        }
    }

    fn validation(cause: &str, detail: &str) -> String {
        format!(
            "Malformed request: org.apache.spark.deploy.rest.SubmitRestProtocolException: \
             Validation of message CreateSubmissionRequest failed!\nCaused by: {cause}: {detail}"
        )
    }

    fn missing(name: &str) -> String {
        validation(
            "org.apache.spark.deploy.rest.SubmitRestMissingFieldException",
            &format!("'{name}' is missing in message CreateSubmissionRequest."),
        )
    }

    // ---- messages ----

    #[test]
    fn actions_are_spark_class_names() {
        assert_eq!(value(&ClearResponse::cleared(V))["action"], "ClearResponse");
        assert_eq!(value(&ReadyzResponse::ready(V))["action"], "ReadyzResponse");
        assert_eq!(
            value(&KillAllSubmissionResponse::requested(V))["action"],
            "KillAllSubmissionResponse"
        );
        assert_eq!(
            value(&KillSubmissionResponse::requested(V, "d"))["action"],
            "KillSubmissionResponse"
        );
        assert_eq!(
            value(&SubmissionStatusResponse::not_found(V, "d"))["action"],
            "SubmissionStatusResponse"
        );
        assert_eq!(
            value(&CreateSubmissionResponse::refused(V, "no"))["action"],
            "CreateSubmissionResponse"
        );
        assert_eq!(
            value(&ErrorResponse::new(V, "x"))["action"],
            "ErrorResponse"
        );
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_name("createSubmissionRequest"), None);
    }

    #[test]
    fn create_request_json_and_round_trip() {
        let r = CreateSubmissionRequest::new(
            "1.2.3",
            "honey-walnut-cherry.jar",
            "org.apache.spark.examples.SparkPie",
            vec!["two slices".into()],
            props(&[("spark.app.name", "SparkPie")]),
            props(&[("PATH", "/dev/null")]),
        );
        let v = value(&r);
        assert_eq!(
            v,
            json!({
                "action": "CreateSubmissionRequest",
                "appArgs": ["two slices"],
                "appResource": "honey-walnut-cherry.jar",
                "clientSparkVersion": "1.2.3",
                "environmentVariables": {"PATH": "/dev/null"},
                "mainClass": "org.apache.spark.examples.SparkPie",
                "sparkProperties": {"spark.app.name": "SparkPie"}
            })
        );
        // Spark's own writer puts fields in alphabetical order; so do we.
        let text = to_json(&r);
        let order: Vec<usize> = [
            "\"action\"",
            "\"appArgs\"",
            "\"appResource\"",
            "\"clientSparkVersion\"",
            "\"environmentVariables\"",
            "\"mainClass\"",
            "\"sparkProperties\"",
        ]
        .iter()
        .filter_map(|k| text.find(k))
        .collect();
        assert_eq!(order.len(), 7);
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(parse_create(text.as_bytes()), Ok(r.clone()));
        let back: Result<CreateSubmissionRequest, _> = serde_json::from_str(&text);
        assert_eq!(back.ok(), Some(r));
    }

    #[test]
    fn create_response_json() {
        let ok = CreateSubmissionResponse::accepted(V, "driver-20240101000000-0001", vec![]);
        assert_eq!(
            value(&ok),
            json!({
                "action": "CreateSubmissionResponse",
                "message": "Driver successfully submitted as driver-20240101000000-0001",
                "serverSparkVersion": V,
                "submissionId": "driver-20240101000000-0001",
                "success": true
            })
        );
        let with_unknown = CreateSubmissionResponse::accepted(V, "d", vec!["tomato".into()]);
        assert_eq!(value(&with_unknown)["unknownFields"], json!(["tomato"]));
        let refused = CreateSubmissionResponse::refused(V, "the queue is full");
        assert_eq!(
            value(&refused),
            json!({
                "action": "CreateSubmissionResponse",
                "message": "the queue is full",
                "serverSparkVersion": V,
                "success": false
            })
        );
        let back: Result<CreateSubmissionResponse, _> = serde_json::from_str(&to_json(&ok));
        assert_eq!(back.ok(), Some(ok));
    }

    #[test]
    fn success_is_a_json_boolean() {
        let v = value(&KillSubmissionResponse::requested(V, "d"));
        assert_eq!(v["success"], Value::Bool(true));
        let v = value(&SubmissionStatusResponse::not_found(V, "d"));
        assert_eq!(v["success"], Value::Bool(false));
    }

    #[test]
    fn status_response_json() {
        let found = SubmissionStatusResponse::found(
            "1.2.3",
            "driver_123",
            DriverState::Running,
            Some(("worker_123", "1.2.3.4:7780")),
            None,
        );
        assert_eq!(
            value(&found),
            json!({
                "action": "SubmissionStatusResponse",
                "driverState": "RUNNING",
                "serverSparkVersion": "1.2.3",
                "submissionId": "driver_123",
                "success": true,
                "workerHostPort": "1.2.3.4:7780",
                "workerId": "worker_123"
            })
        );
        let queued = SubmissionStatusResponse::found(V, "d", DriverState::Submitted, None, None);
        assert_eq!(
            value(&queued),
            json!({
                "action": "SubmissionStatusResponse",
                "driverState": "SUBMITTED",
                "serverSparkVersion": V,
                "submissionId": "d",
                "success": true
            })
        );
        let failed = SubmissionStatusResponse::found(
            V,
            "d",
            DriverState::Failed,
            None,
            Some(&cluster_exception_message("exit code 1")),
        );
        assert_eq!(
            value(&failed)["message"],
            "Exception from the cluster:\nexit code 1"
        );
        assert_eq!(
            value(&SubmissionStatusResponse::not_found(V, "nope")),
            json!({
                "action": "SubmissionStatusResponse",
                "serverSparkVersion": V,
                "submissionId": "nope",
                "success": false
            })
        );
        let back: Result<SubmissionStatusResponse, _> = serde_json::from_str(&to_json(&found));
        assert_eq!(back.ok(), Some(found));
    }

    #[test]
    fn kill_killall_clear_readyz_json() {
        assert_eq!(
            value(&KillSubmissionResponse::requested(V, "driver-1")),
            json!({
                "action": "KillSubmissionResponse",
                "message": "Kill request for driver-1 submitted",
                "serverSparkVersion": V,
                "submissionId": "driver-1",
                "success": true
            })
        );
        assert_eq!(
            value(&KillSubmissionResponse::not_found(V, "x")),
            json!({
                "action": "KillSubmissionResponse",
                "message": "Driver x has already finished or does not exist",
                "serverSparkVersion": V,
                "submissionId": "x",
                "success": false
            })
        );
        assert_eq!(
            value(&KillAllSubmissionResponse::requested(V)),
            json!({
                "action": "KillAllSubmissionResponse",
                "message": "Kill request for all drivers submitted",
                "serverSparkVersion": V,
                "success": true
            })
        );
        // An empty message is kept, not omitted: the client reads it.
        assert_eq!(
            value(&ClearResponse::cleared(V)),
            json!({"action": "ClearResponse", "message": "", "serverSparkVersion": V, "success": true})
        );
        assert_eq!(
            value(&ReadyzResponse::ready(V)),
            json!({"action": "ReadyzResponse", "message": "", "serverSparkVersion": V, "success": true})
        );
        let k = KillAllSubmissionResponse::requested(V);
        let back: Result<KillAllSubmissionResponse, _> = serde_json::from_str(&to_json(&k));
        assert_eq!(back.ok(), Some(k));
        let c = ClearResponse::cleared(V);
        let back: Result<ClearResponse, _> = serde_json::from_str(&to_json(&c));
        assert_eq!(back.ok(), Some(c));
    }

    #[test]
    fn error_response_json() {
        assert_eq!(
            value(&ErrorResponse::new(
                "1.2.3",
                "Field not found in submit request: X"
            )),
            json!({
                "action": "ErrorResponse",
                "message": "Field not found in submit request: X",
                "serverSparkVersion": "1.2.3"
            })
        );
        assert_eq!(
            error_response("boom", V),
            json!({"action": "ErrorResponse", "message": "boom", "serverSparkVersion": V})
        );
        let e = route("GET", "/v2/submissions/status/x").err();
        let v = e
            .map(|e| value(&e.error_response(V)))
            .unwrap_or(Value::Null);
        assert_eq!(v["highestProtocolVersion"], "v1");
        assert!(v.get("success").is_none());
        let back: Result<ErrorResponse, _> = serde_json::from_str(&v.to_string());
        assert_eq!(
            back.ok().and_then(|e| e.highest_protocol_version),
            Some("v1".into())
        );
    }

    #[test]
    fn driver_states() {
        let names: Vec<Value> = DriverState::ALL.iter().map(|s| json!(s)).collect();
        assert_eq!(
            names,
            vec![
                json!("SUBMITTED"),
                json!("RUNNING"),
                json!("FINISHED"),
                json!("RELAUNCHING"),
                json!("UNKNOWN"),
                json!("KILLED"),
                json!("FAILED"),
                json!("ERROR")
            ]
        );
        for s in DriverState::ALL {
            assert_eq!(DriverState::from_name(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            let back: Result<DriverState, _> = serde_json::from_value(json!(s.as_str()));
            assert_eq!(back.ok(), Some(s));
        }
        let finals: Vec<DriverState> = DriverState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            vec![
                DriverState::Finished,
                DriverState::Killed,
                DriverState::Failed,
                DriverState::Error
            ]
        );
        assert_eq!(DriverState::from_name("running"), None);
    }

    #[test]
    fn driver_ids() {
        assert_eq!(
            driver_id("20231031224459", 19),
            "driver-20231031224459-0019"
        );
        assert_eq!(
            driver_id("20231031224459", 12345),
            "driver-20231031224459-12345"
        );
    }

    // ---- create validation ----

    #[test]
    fn parses_a_spark_submit_body() {
        let r = parse_create(submit_body().to_string().as_bytes());
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.main_class, "org.apache.spark.examples.SparkPi");
        assert_eq!(r.app_args, vec!["10".to_string()]);
        assert_eq!(r.app_name(), Some("Spark Pi"));
        assert!(!r.supervise());
        assert_eq!(r.driver_cores(), Some(1.0));
        assert_eq!(r.driver_memory_mib(), Some(1024));
        assert_eq!(r.executor_memory_mib(), Some(512));
        assert_eq!(
            r.environment_variables
                .get("SPARK_USER")
                .map(String::as_str),
            Some("alice")
        );
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn lists_unknown_fields() {
        let body = body_with(|m| {
            m.insert("potato".into(), json!("not-po-tah-to"));
            m.insert("tomato".into(), json!("not-a-fruit"));
        });
        let mut unknown = parse_create_with_unknown_fields(&body)
            .map(|(_, u)| u)
            .unwrap_or_default();
        unknown.sort();
        assert_eq!(unknown, vec!["potato".to_string(), "tomato".to_string()]);
        let plain = parse_create_with_unknown_fields(submit_body().to_string().as_bytes());
        assert_eq!(plain.map(|(_, u)| u), Ok(vec![]));
    }

    #[test]
    fn refuses_bodies_that_are_not_json() {
        let e = err(b"");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Malformed request: com.fasterxml.jackson.databind.exc.MismatchedInputException: \
             No content to map due to end-of-input"
        );
        let e = err(b"{\"action\": ");
        assert_eq!(e.status, 400);
        assert!(
            e.message
                .starts_with("Malformed request: com.fasterxml.jackson.core.JsonParseException: "),
            "{}",
            e.message
        );
        let e = err(&[0xff, 0xfe]);
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with(
            "Malformed request: java.nio.charset.MalformedInputException: the body is not UTF-8"
        ));
    }

    #[test]
    fn refuses_a_body_without_action() {
        let e = err(b"\"hello, world\"");
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Malformed request: org.apache.spark.deploy.rest.SubmitRestMissingFieldException: \
             Action field not found in JSON:\n\"hello, world\""
        );
        let body = body_with(|m| {
            m.remove("action");
        });
        assert!(err(&body)
            .message
            .contains("Action field not found in JSON:\n{"));
        let body = body_with(|m| {
            m.insert("action".into(), json!(7));
        });
        assert!(err(&body)
            .message
            .contains("Action field not found in JSON"));
    }

    #[test]
    fn refuses_other_actions() {
        let body = body_with(|m| {
            m.insert("action".into(), json!("KillSubmissionResponse"));
        });
        let e = err(&body);
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Received message of unexpected type KillSubmissionResponse."
        );
        let body = body_with(|m| {
            m.insert("action".into(), json!("LaunchRocket"));
        });
        let e = err(&body);
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "Malformed request: java.lang.ClassNotFoundException: \
             org.apache.spark.deploy.rest.LaunchRocket"
        );
    }

    #[test]
    fn refuses_missing_fields_in_sparks_order() {
        let cases = [
            ("clientSparkVersion", missing("clientSparkVersion")),
            (
                "sparkProperties",
                validation(
                    "org.apache.spark.deploy.rest.SubmitRestProtocolException",
                    "No Spark properties set!",
                ),
            ),
            ("appResource", missing("appResource")),
            ("appArgs", missing("appArgs")),
            ("environmentVariables", missing("environmentVariables")),
        ];
        for (field, message) in cases {
            let e = err(&body_with(|m| {
                m.remove(field);
            }));
            assert_eq!(
                (e.status, e.message.as_str()),
                (400, message.as_str()),
                "{field}"
            );
            // null is absent, as Jackson binds it
            let e = err(&body_with(|m| {
                m.insert(field.into(), Value::Null);
            }));
            assert_eq!(e.message, message, "{field} null");
        }
        // The first missing field in Spark's order is the one reported.
        let e = err(&body_with(|m| {
            m.remove("appResource");
            m.remove("clientSparkVersion");
        }));
        assert_eq!(e.message, missing("clientSparkVersion"));
        let e = err(&body_with(|m| {
            if let Some(Value::Object(p)) = m.get_mut("sparkProperties") {
                p.remove("spark.app.name");
            }
        }));
        assert_eq!(e.message, missing("spark.app.name"));
        let e = err(&body_with(|m| {
            m.remove("mainClass");
        }));
        assert_eq!(
            e.message,
            "Malformed request: org.apache.spark.deploy.rest.SubmitRestMissingFieldException: \
             Main class is missing."
        );
        // validation comes before the main class
        let e = err(&body_with(|m| {
            m.remove("mainClass");
            m.remove("appArgs");
        }));
        assert_eq!(e.message, missing("appArgs"));
        // empty collections are present
        let ok = parse_create(&body_with(|m| {
            m.insert("appArgs".into(), json!([]));
            m.insert("environmentVariables".into(), json!({}));
        }));
        assert!(ok.is_ok());
    }

    #[test]
    fn refuses_badly_typed_properties() {
        let cases = [
            ("spark.driver.supervise", "nope, never", "boolean"),
            ("spark.driver.cores", "one hundred feet", "numeric"),
            ("spark.cores.max", "two men", "numeric"),
            ("spark.driver.memory", "lots", "memory"),
            ("spark.executor.memory", "1.5g", "memory"),
        ];
        for (key, val, kind) in cases {
            let e = err(&prop_body(key, val));
            assert_eq!(e.status, 400);
            assert_eq!(
                e.message,
                validation(
                    "org.apache.spark.deploy.rest.SubmitRestProtocolException",
                    &format!("Property '{key}' expected {kind} value: actual was '{val}'.")
                ),
                "{key}"
            );
        }
        for (key, val) in [
            ("spark.driver.supervise", "TRUE"),
            ("spark.driver.cores", "0.5"),
            ("spark.cores.max", " 8 "),
            ("spark.driver.memory", "2048"),
            ("spark.executor.memory", "4G"),
        ] {
            assert!(parse_create(&prop_body(key, val)).is_ok(), "{key}={val}");
        }
    }

    #[test]
    fn field_types_as_jackson_binds_them() {
        // scalars become strings
        let r = parse_create(&body_with(|m| {
            m.insert("appArgs".into(), json!([1, true, "x"]));
            if let Some(Value::Object(p)) = m.get_mut("sparkProperties") {
                p.insert("spark.driver.cores".into(), json!(2));
            }
        }));
        let r = r.ok();
        assert_eq!(
            r.as_ref().map(|r| r.app_args.clone()),
            Some(vec!["1".into(), "true".into(), "x".into()])
        );
        assert_eq!(r.and_then(|r| r.driver_cores()), Some(2.0));
        // structures do not
        let e = err(&body_with(|m| {
            m.insert("appArgs".into(), json!("10"));
        }));
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with(
            "Malformed request: com.fasterxml.jackson.databind.exc.MismatchedInputException: \
             Cannot deserialize value of type `java.lang.String[]` from String value"
        ));
        let e = err(&body_with(|m| {
            m.insert("appResource".into(), json!(["a.jar"]));
        }));
        assert!(
            e.message.contains("`java.lang.String` from Array value"),
            "{}",
            e.message
        );
        assert!(e.message.contains("[\"appResource\"]"), "{}", e.message);
        let e = err(&body_with(|m| {
            m.insert("sparkProperties".into(), json!(["spark.app.name"]));
        }));
        assert!(e.message.contains("from Array value"));
        let e = err(&body_with(|m| {
            m.insert("environmentVariables".into(), json!({"A": null}));
        }));
        assert!(e.message.contains("from null value"), "{}", e.message);
        let e = err(&body_with(|m| {
            m.insert("appArgs".into(), json!([null]));
        }));
        assert!(e.message.contains("from null value"), "{}", e.message);
    }

    #[test]
    fn refuses_oversized_bodies() {
        let big = vec![b' '; MAX_REQUEST_BODY_BYTES + 1];
        let e = err(&big);
        assert_eq!(e.status, 413);
        assert!(e.message.contains("1048576"));
    }

    #[test]
    fn typed_request_validation() {
        let mut r = CreateSubmissionRequest::new(
            V,
            "a.jar",
            "Main",
            vec![],
            props(&[("spark.app.name", "a")]),
            BTreeMap::new(),
        );
        assert_eq!(r.validate(), Ok(()));
        r.spark_properties
            .insert(SUPERVISE_KEY.into(), "yes".into());
        assert_eq!(r.validate().map_err(|e| e.status), Err(400));
        assert!(!r.supervise());
        r.spark_properties.clear();
        assert_eq!(
            r.validate().map_err(|e| e.message),
            Err(missing("spark.app.name"))
        );
    }

    // ---- value parsers ----

    #[test]
    fn java_doubles() {
        for (s, v) in [
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            (" 4 ", 4.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("2.5E-1", 0.25),
            ("7d", 7.0),
            ("7F", 7.0),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse_java_double(s), Some(v), "{s}");
        }
        assert!(parse_java_double("NaN").is_some_and(f64::is_nan));
        for s in [
            "", ".", "e3", "1e", "inf", "nan", "infinity", "1,5", "one", "0x10", "1 2", "--1",
        ] {
            assert_eq!(parse_java_double(s), None, "{s}");
        }
    }

    #[test]
    fn memory_strings() {
        for (s, mib) in [
            ("1g", 1024),
            ("1GB", 1024),
            ("512m", 512),
            ("512mb", 512),
            ("1048576", 1),
            ("1048575b", 0),
            ("2048k", 2),
            ("1t", 1024 * 1024),
            ("1p", 1024 * 1024 * 1024),
            (" 3g ", 3072),
        ] {
            assert_eq!(memory_string_to_mib(s), Some(mib), "{s}");
        }
        for s in [
            "",
            "g",
            "1.5g",
            "1x",
            "1 g",
            "-1g",
            "lots",
            "9223372036854775807k",
            "99999999999999999999",
        ] {
            assert_eq!(memory_string_to_mib(s), None, "{s}");
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_spark_boolean("true"), Some(true));
        assert_eq!(parse_spark_boolean("False"), Some(false));
        assert_eq!(parse_spark_boolean(" true"), None);
        assert_eq!(parse_spark_boolean("yes"), None);
        assert_eq!(parse_spark_boolean("1"), None);
    }

    #[test]
    fn environment_helpers() {
        assert!(is_dropped_environment_variable("SPARK_LOCAL_IP"));
        assert!(is_dropped_environment_variable("SPARK_LOCAL_HOSTNAME"));
        assert!(!is_dropped_environment_variable("SPARK_LOCAL_DIRS"));
        let lookup = |n: &str| (n == "REGION").then(|| "eu".to_string());
        assert_eq!(replace_placeholder("{{REGION}}", lookup), "eu");
        assert_eq!(replace_placeholder("{{OTHER}}", lookup), "{{OTHER}}");
        assert_eq!(replace_placeholder("x{{REGION}}", lookup), "x{{REGION}}");
        assert_eq!(replace_placeholder("plain", lookup), "plain");
    }

    // ---- routing ----

    fn routed(method: &str, path: &str) -> Route {
        match route(method, path) {
            Ok(r) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn refused(method: &str, path: &str) -> ProtocolError {
        match route(method, path) {
            Err(e) => e,
            Ok(r) => panic!("{method} {path} routed to {r:?}"),
        }
    }

    fn kill(id: &str) -> Route {
        Route::Kill {
            submission_id: id.into(),
        }
    }

    fn status(id: &str) -> Route {
        Route::Status {
            submission_id: id.into(),
        }
    }

    #[test]
    fn routes_the_calls() {
        assert_eq!(routed("POST", "/v1/submissions/create"), Route::Create);
        assert_eq!(routed("POST", "/v1/submissions/create/"), Route::Create);
        assert_eq!(
            routed("POST", "/v1/submissions/create/anything"),
            Route::Create
        );
        assert_eq!(
            routed("POST", "/v1/submissions/kill/anything"),
            kill("anything")
        );
        assert_eq!(
            routed("POST", "/v1/submissions/kill/any/thing"),
            kill("any")
        );
        assert_eq!(routed("POST", "/v1/submissions/killall"), Route::KillAll);
        assert_eq!(
            routed("GET", "/v1/submissions/status/anything"),
            status("anything")
        );
        assert_eq!(
            routed("GET", "/v1/submissions/status/any/thing"),
            status("any")
        );
        assert_eq!(routed("HEAD", "/v1/submissions/status/d"), status("d"));
        assert_eq!(routed("POST", "/v1/submissions/clear"), Route::Clear);
        assert_eq!(routed("GET", "/v1/submissions/readyz"), Route::Readyz);
        assert_eq!(
            routed("GET", "/v1/submissions/status/driver-1?verbose=1"),
            status("driver-1")
        );
        assert_eq!(
            routed("GET", "/v1/submissions/status/dr%69ver-1"),
            status("driver-1")
        );
        for r in [
            Route::Create,
            kill("driver-20240101000000-0000"),
            Route::KillAll,
            status("driver-20240101000000-0000"),
            Route::Clear,
            Route::Readyz,
        ] {
            assert_eq!(route(r.method(), &r.path()), Ok(r.clone()));
        }
    }

    #[test]
    fn missing_ids() {
        for path in [
            "/v1/submissions/kill",
            "/v1/submissions/kill/",
            "/v1/submissions/kill//x",
        ] {
            let e = refused("POST", path);
            assert_eq!(
                (e.status, e.message.as_str()),
                (400, "Submission ID is missing in kill request."),
                "{path}"
            );
        }
        for path in ["/v1/submissions/status", "/v1/submissions/status/"] {
            let e = refused("GET", path);
            assert_eq!(
                (e.status, e.message.as_str()),
                (400, "Submission ID is missing in status request."),
                "{path}"
            );
        }
    }

    #[test]
    fn wrong_methods() {
        let e = refused("GET", "/v1/submissions/create");
        assert_eq!(e.status, 405);
        assert_eq!(e.message, "HTTP method GET is not supported by this URL");
        assert_eq!(e.allow, Some("POST"));
        let e = refused("POST", "/v1/submissions/status/x");
        assert_eq!((e.status, e.allow), (405, Some("GET, HEAD")));
        let e = refused("DELETE", "/v1/submissions/kill/x");
        assert_eq!((e.status, e.allow), (405, Some("POST")));
        assert_eq!(refused("POST", "/v1/submissions/readyz").status, 405);
        assert_eq!(refused("GET", "/v1/submissions/killall").status, 405);
        assert_eq!(refused("GET", "/v1/submissions/clear").status, 405);
        // the method is checked before the id, as the servlet does
        assert_eq!(refused("GET", "/v1/submissions/kill").status, 405);
        let reply = Reply::from_error(&refused("PUT", "/v1/submissions/create"), V);
        assert_eq!((reply.status, reply.allow), (405, Some("POST")));
    }

    #[test]
    fn bad_paths_as_sparks_error_servlet_answers() {
        let hint = " Please submit requests through http://[host]:[port]/v1/submissions/...";
        let bad = [
            ("", "Missing protocol version."),
            ("/", "Missing protocol version."),
            ("/v1", "Missing the /submissions prefix."),
            ("/v1/", "Missing the /submissions prefix."),
            (
                "/v1/submissions",
                "Missing an action: please specify one of /create, /kill, /killall, /clear, \
                 /status, or /readyz.",
            ),
            (
                "/v1/submissions/",
                "Missing an action: please specify one of /create, /kill, /killall, /clear, \
                 /status, or /readyz.",
            ),
            (
                "/v1/submissions/bad",
                "Missing an action: please specify one of /create, /kill, /killall, /clear, \
                 /status, or /readyz.",
            ),
            (
                "/v1/submissions/createx",
                "Missing an action: please specify one of /create, /kill, /killall, /clear, \
                 /status, or /readyz.",
            ),
        ];
        for (path, message) in bad {
            for method in ["GET", "POST"] {
                let e = refused(method, path);
                assert_eq!(e.status, 400, "{path}");
                assert_eq!(e.message, format!("{message}{hint}"), "{path}");
                assert_eq!(e.highest_protocol_version, None, "{path}");
            }
        }
        let versions = [
            ("/bad-version", "bad-version"),
            ("/v2/submissions/create", "v2"),
            ("/V1/submissions/create", "V1"),
            ("/v1/status/x", "v1"), // Spark's own quirk
        ];
        for (path, version) in versions {
            let e = refused("POST", path);
            assert_eq!(e.status, SC_UNKNOWN_PROTOCOL_VERSION, "{path}");
            assert_eq!(
                e.message,
                format!("Unknown protocol version '{version}'.{hint}"),
                "{path}"
            );
            assert_eq!(e.highest_protocol_version.as_deref(), Some("v1"));
            let v = value(&e.error_response(V));
            assert_eq!(v["highestProtocolVersion"], "v1");
        }
    }

    #[test]
    fn bad_encodings() {
        let e = refused("GET", "/v1/submissions/status/a%2Fb");
        assert_eq!(e.status, 400);
        assert_eq!(refused("GET", "/v1/submissions/status/%zz").status, 400);
        assert_eq!(refused("GET", "/v1/submissions/status/%ff").status, 400);
        assert_eq!(refused("GET", "/v1/submissions/status/%4").status, 400);
    }

    #[test]
    fn replies() {
        let ready = readyz_reply(true, V);
        assert_eq!(ready.status, 200);
        let body: Value = serde_json::from_str(&ready.body).unwrap_or(Value::Null);
        assert_eq!(body["action"], "ReadyzResponse");
        let not_ready = readyz_reply(false, V);
        assert_eq!(not_ready.status, 503);
        let body: Value = serde_json::from_str(&not_ready.body).unwrap_or(Value::Null);
        assert_eq!(
            body,
            json!({"action": "ErrorResponse", "message": "Master is not ready.", "serverSparkVersion": V})
        );
        let e = err(b"");
        let reply = Reply::from_error(&e, V);
        assert_eq!(reply.status, 400);
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        assert_eq!(body["action"], "ErrorResponse");
        assert_eq!(body["message"], Value::from(e.message));
        let ok = Reply::ok(&ClearResponse::cleared(V));
        assert_eq!((ok.status, ok.allow), (200, None));
    }
}
