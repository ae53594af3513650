//! Small helpers for Mesos id messages (`{"value": ...}`).

use crate::v1;

macro_rules! id_ctor {
    ($fn:ident, $ty:ident) => {
        /// Builds the id message from a string.
        pub fn $fn(value: impl Into<String>) -> v1::$ty {
            v1::$ty {
                value: value.into(),
            }
        }
    };
}

id_ctor!(framework_id, FrameworkId);
id_ctor!(agent_id, AgentId);
id_ctor!(task_id, TaskId);
id_ctor!(executor_id, ExecutorId);
id_ctor!(offer_id, OfferId);

/// A fresh random UUID as a string.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh random UUID as its 16 bytes (what `TaskStatus.uuid` carries).
pub fn new_uuid_bytes() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

/// Seconds since the Unix epoch as a float, as Mesos timestamps are.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
