//! The agent's total resources and the operations that change them.
//!
//! The total is `--resources` with the checkpointed resources carved out of
//! it: every dynamically reserved resource and persistent volume the agent
//! ever made (RESERVE, CREATE, ...) is checkpointed in
//! `<work_dir>/meta/resources/resources.info` and, at start, taken back out of
//! the resources it was made from. When that is impossible — `--resources`
//! shrank or changed its static reservations under a checkpointed
//! reservation or volume — the agent refuses to start, as Mesos does.
//!
//! The master applies RESERVE, UNRESERVE, CREATE, DESTROY, GROW_VOLUME and
//! SHRINK_VOLUME to its own view and sends `ApplyOperation`; the agent
//! checks it against its total (`corral_api::operations::apply`), does the
//! work (creates or removes the volume's directory, takes or gives up an
//! HDFS lease), checkpoints the new total and answers an
//! `OperationStatusUpdate` with it. Updates of operations that have a
//! framework and an `id` are checkpointed and resent after every
//! (re-)registration until the master forwards the framework's
//! acknowledgement.

use std::sync::Arc;

use corral_api::ids;
use corral_api::internal::{self, agent_message};
use corral_api::operations::{self as ops, is_persistent_volume};
use corral_api::resources::{reservation_role, Resources};
use corral_api::v1::{self, offer::operation::Type as OpType, resource, Resource};

use crate::agent::{lock, Agent, ExecutorPhase, State};
use crate::status_updates::is_terminal;
use crate::volumes::{self, VolumeUse};
use crate::AgentError;

/// Repeated ApplyOperations recognised (by their uuid) without a checkpoint.
const RECENT_OPERATIONS: usize = 1024;

/// Whether a resource of the total comes from an operation (and so is
/// checkpointed): a dynamic reservation anywhere in its stack, or a volume.
pub fn needs_checkpoint(r: &Resource) -> bool {
    is_persistent_volume(r)
        || r.reservations
            .iter()
            .any(|x| x.r#type == Some(resource::reservation_info::Type::Dynamic as i32))
}

/// The part of a total that is checkpointed.
pub fn checkpointed(total: &Resources) -> Vec<Resource> {
    total
        .as_slice()
        .iter()
        .filter(|r| needs_checkpoint(r))
        .cloned()
        .collect()
}

/// What a checkpointed resource was made from: without its volume and its
/// dynamic reservations (a static reservation below them stays).
fn origin(r: &Resource) -> Resource {
    let mut r = ops::strip_volume(r);
    while r
        .reservations
        .last()
        .is_some_and(|x| x.r#type == Some(resource::reservation_info::Type::Dynamic as i32))
    {
        r.reservations.pop();
    }
    r
}

/// The total: `static_resources` with every checkpointed resource taken out
/// of what it was made from. An error says which one no longer fits.
pub fn total_with(static_resources: &[Resource], cp: &[Resource]) -> Result<Resources, String> {
    let mut total = Resources::from_vec(static_resources);
    for c in cp {
        resource_checks(c)?;
        let from = origin(c);
        if !total.contains_one(&from) {
            return Err(format!(
                "the checkpointed {} needs {} but the agent's resources only have {}",
                ops::describe_one(c),
                ops::describe_one(&from),
                ops::describe(&total)
            ));
        }
        total.subtract(&from);
        total.add(c);
    }
    Ok(total)
}

fn resource_checks(c: &Resource) -> Result<(), String> {
    corral_api::resources::validate(c)?;
    if !needs_checkpoint(c) {
        return Err(format!(
            "{} is neither dynamically reserved nor a persistent volume",
            ops::describe_one(c)
        ));
    }
    Ok(())
}

/// Who uses a volume: the first non-terminal task or live executor whose
/// resources hold it, as a message.
pub fn volume_user(st: &State, role: &str, persistence_id: &str) -> Option<String> {
    let holds = |rs: &[Resource]| {
        rs.iter()
            .any(|r| ops::persistence_id(r) == Some(persistence_id) && reservation_role(r) == role)
    };
    for (fw_id, fw) in &st.frameworks {
        for (ex_id, ex) in &fw.executors {
            if ex.phase == ExecutorPhase::Terminated {
                continue;
            }
            for t in ex.tasks.values().filter(|t| !is_terminal(t.state)) {
                if holds(&t.resources) {
                    return Some(format!("task '{}' of framework '{fw_id}'", t.task_id.value));
                }
            }
            if holds(&ex.info.resources) {
                return Some(format!("executor '{ex_id}' of framework '{fw_id}'"));
            }
        }
    }
    None
}

/// The volumes an operation creates or destroys.
fn volume_changes(op: &v1::offer::Operation) -> (Vec<VolumeUse>, Vec<VolumeUse>) {
    match ops::op_type(op) {
        OpType::Create => (
            volumes::volumes_of(op.create.iter().flat_map(|c| c.volumes.iter())),
            Vec::new(),
        ),
        OpType::Destroy => (
            Vec::new(),
            volumes::volumes_of(op.destroy.iter().flat_map(|d| d.volumes.iter())),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

fn op_name(op: &v1::offer::Operation) -> &'static str {
    ops::op_type(op).as_str_name()
}

impl Agent {
    /// Start-up: reads the checkpointed resources and makes the total from
    /// `--resources` and them; refuses when they no longer fit. Every
    /// checkpointed volume's directory exists afterwards.
    pub fn load_checkpointed_resources(&self) -> Result<(), AgentError> {
        let cp = &self.config.checkpoint;
        let path = cp.resources_path();
        let Some(list) = cp.read_resources().map_err(|e| {
            AgentError::Recovery(format!(
                "{e} (remove {} to forget the agent's dynamic reservations and persistent \
                 volumes; the volumes' data under {} is kept)",
                path.display(),
                self.config.work_dir.join("volumes").display()
            ))
        })?
        else {
            return Ok(());
        };
        let total = total_with(&self.config.resources, &list).map_err(|e| {
            AgentError::IncompatibleResources(format!(
                "{e}. --resources changed incompatibly with the reservations and persistent \
                 volumes this agent has checkpointed in {}: start it with --resources that \
                 include them again, or remove that file to drop them (the volumes' data under \
                 {} is kept)",
                path.display(),
                self.config.work_dir.join("volumes").display()
            ))
        })?;
        for v in volumes::volumes_of(total.as_slice()) {
            let dir = volumes::volume_dir(&self.config.work_dir, &v.role, &v.persistence_id);
            std::fs::create_dir_all(&dir).map_err(|source| AgentError::Io {
                context: format!(
                    "cannot create persistent volume directory {}",
                    dir.display()
                ),
                source,
            })?;
        }
        self.hdfs.adopt(&volumes::volumes_of(total.as_slice()));
        tracing::info!(
            checkpointed = %ops::describe(&Resources::from_vec(&list)),
            total = %total,
            "recovered checkpointed resources"
        );
        lock(&self.state).total = total;
        Ok(())
    }

    /// Applies an operation from the master: checks it against the total,
    /// does the work, checkpoints, and answers OPERATION_FINISHED or
    /// OPERATION_FAILED (with the total, unchanged on failure).
    pub async fn apply_operation(self: &Arc<Self>, msg: internal::ApplyOperation) {
        let info = &msg.info;
        let fw_id = msg
            .framework_id
            .as_ref()
            .map(|f| f.value.clone())
            .unwrap_or_default();
        let op_id = info
            .id
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_default();
        // A repeated operation is answered again, not applied again.
        if let Some(update) = self.known_operation_update(&msg.operation_uuid) {
            tracing::info!(framework_id = %fw_id, operation_id = %op_id, "repeated operation answered again");
            self.send_to_master(agent_message::Message::OperationUpdate(update));
            return;
        }
        let outcome = self.try_apply(&msg).await;
        let mut st = lock(&self.state);
        let (state, message, converted) = match outcome {
            Ok(total) => {
                let converted = ops::conversion(info)
                    .map(|c| c.converted.to_vec())
                    .unwrap_or_default();
                st.total = total;
                tracing::info!(
                    framework_id = %fw_id,
                    operation_id = %op_id,
                    operation = op_name(info),
                    total = %st.total,
                    "operation applied"
                );
                (v1::OperationState::OperationFinished, None, converted)
            }
            Err(e) => {
                tracing::warn!(
                    framework_id = %fw_id,
                    operation_id = %op_id,
                    operation = op_name(info),
                    error = %e,
                    "operation failed"
                );
                (v1::OperationState::OperationFailed, Some(e), Vec::new())
            }
        };
        let status = v1::OperationStatus {
            operation_id: info.id.clone(),
            state: state as i32,
            message,
            converted_resources: converted,
            uuid: Some(v1::Uuid {
                value: ids::new_uuid_bytes(),
            }),
            agent_id: st.agent_id.clone(),
            resource_provider_id: None,
        };
        let update = internal::OperationStatusUpdate {
            framework_id: msg.framework_id.clone(),
            status: status.clone(),
            operation_uuid: msg.operation_uuid.clone(),
            total_resources: st.total.to_vec(),
        };
        if msg.framework_id.is_some() && info.id.is_some() {
            let agent_id = st.agent_id.clone();
            st.operations.insert(
                msg.operation_uuid.clone(),
                v1::Operation {
                    framework_id: msg.framework_id.clone(),
                    agent_id,
                    info: info.clone(),
                    latest_status: status.clone(),
                    statuses: vec![status],
                    uuid: v1::Uuid {
                        value: msg.operation_uuid.clone(),
                    },
                },
            );
            self.checkpoint_operations(&st);
        }
        st.recent_operations
            .push_back((msg.operation_uuid.clone(), update.clone()));
        if st.recent_operations.len() > RECENT_OPERATIONS {
            st.recent_operations.pop_front();
        }
        drop(st);
        self.send_to_master(agent_message::Message::OperationUpdate(update));
    }

    fn known_operation_update(&self, uuid: &[u8]) -> Option<internal::OperationStatusUpdate> {
        let st = lock(&self.state);
        if let Some(op) = st.operations.get(uuid) {
            return Some(internal::OperationStatusUpdate {
                framework_id: op.framework_id.clone(),
                status: op.latest_status.clone(),
                operation_uuid: uuid.to_vec(),
                total_resources: st.total.to_vec(),
            });
        }
        st.recent_operations
            .iter()
            .find(|(u, _)| u == uuid)
            .map(|(_, update)| {
                let mut update = update.clone();
                update.total_resources = st.total.to_vec();
                update
            })
    }

    /// The checks and the work of an operation; the new total on success.
    /// The total is only changed by the caller, once this returns (operations
    /// are applied one at a time).
    async fn try_apply(
        self: &Arc<Self>,
        msg: &internal::ApplyOperation,
    ) -> Result<Resources, String> {
        let info = &msg.info;
        if !ops::is_conversion(info) {
            return Err(format!(
                "{} is not an operation the agent applies (RESERVE, UNRESERVE, CREATE, DESTROY, \
                 GROW_VOLUME, SHRINK_VOLUME)",
                op_name(info)
            ));
        }
        let (create, destroy) = volume_changes(info);
        for v in create.iter().chain(&destroy) {
            volumes::validate(v)?;
        }
        let new_total = {
            let st = lock(&self.state);
            let total = ops::apply(&st.total, info)?;
            for v in &destroy {
                if let Some(user) = volume_user(&st, &v.role, &v.persistence_id) {
                    return Err(format!(
                        "persistent volume '{}' of role '{}' is in use by {user}; kill it \
                         before destroying the volume",
                        v.persistence_id, v.role
                    ));
                }
            }
            total
        };
        for v in create.iter().chain(&destroy).filter(|v| v.hdfs) {
            self.hdfs.check_configured(v)?;
        }
        // The work, off the runtime: directories, and HDFS for backed volumes.
        let work_dir = self.config.work_dir.clone();
        for v in &create {
            let dir = volumes::volume_dir(&work_dir, &v.role, &v.persistence_id);
            let d = dir.clone();
            tokio::task::spawn_blocking(move || std::fs::create_dir_all(&d))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!(
                        "cannot create the directory {} of persistent volume '{}': {e}",
                        dir.display(),
                        v.persistence_id
                    )
                })?;
            if v.hdfs {
                let holder = lock(&self.state)
                    .agent_id
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_default();
                if let Err(e) = self.hdfs.open(v, &dir, &holder).await {
                    // Nothing of a failed CREATE stays behind.
                    let _ = std::fs::remove_dir(&dir);
                    return Err(e);
                }
            }
        }
        for v in &destroy {
            if v.hdfs {
                self.hdfs.destroy(v).await?;
            }
            let dir = volumes::volume_dir(&work_dir, &v.role, &v.persistence_id);
            let d = dir.clone();
            tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&d) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "cannot remove the data of persistent volume '{}' at {}: {e}",
                    v.persistence_id,
                    dir.display()
                )
            })?;
            tracing::info!(role = %v.role, persistence_id = %v.persistence_id, "destroyed persistent volume");
        }
        self.config
            .checkpoint
            .write_resources(&checkpointed(&new_total))
            .map_err(|e| format!("cannot checkpoint the agent's resources: {e}"))?;
        Ok(new_total)
    }

    /// The master forwarded a framework's acknowledgement of an operation
    /// status update: the operation is forgotten.
    pub fn acknowledge_operation(&self, ack: &internal::AcknowledgeOperationStatus) {
        let mut st = lock(&self.state);
        let matches = st.operations.get(&ack.operation_uuid).is_some_and(|op| {
            op.latest_status.uuid.as_ref().map(|u| u.value.as_slice())
                == Some(ack.status_uuid.as_slice())
        });
        if !matches {
            tracing::debug!("acknowledgement of an unknown operation status ignored");
            return;
        }
        if let Some(op) = st.operations.remove(&ack.operation_uuid) {
            tracing::info!(
                operation_id = op.info.id.as_ref().map(|i| i.value.as_str()).unwrap_or(""),
                "operation status acknowledged"
            );
        }
        self.checkpoint_operations(&st);
    }

    fn checkpoint_operations(&self, st: &State) {
        let Some(agent_id) = st.agent_id.as_ref() else {
            return;
        };
        let list: Vec<v1::Operation> = st.operations.values().cloned().collect();
        if let Err(e) = self
            .config
            .checkpoint
            .write_operations(&agent_id.value, &list)
        {
            tracing::error!(error = %e, "cannot checkpoint operations");
        }
    }

    /// After (re-)registering: the latest update of every operation not yet
    /// acknowledged goes to the master again, with the current total.
    pub(crate) fn resend_operation_updates(&self) {
        let updates: Vec<internal::OperationStatusUpdate> = {
            let st = lock(&self.state);
            st.operations
                .iter()
                .map(|(uuid, op)| internal::OperationStatusUpdate {
                    framework_id: op.framework_id.clone(),
                    status: op.latest_status.clone(),
                    operation_uuid: uuid.clone(),
                    total_resources: st.total.to_vec(),
                })
                .collect()
        };
        if !updates.is_empty() {
            tracing::info!(
                count = updates.len(),
                "resending unacknowledged operation updates"
            );
        }
        for u in updates {
            self.send_to_master(agent_message::Message::OperationUpdate(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::resources;
    use corral_api::v1::resource::ReservationInfo;

    fn dynamic(mut r: Resource, role: &str) -> Resource {
        r.reservations.push(ReservationInfo {
            r#type: Some(resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.into()),
            principal: Some("ops".into()),
            labels: None,
        });
        r
    }

    #[test]
    fn the_total_is_the_static_resources_with_the_checkpoint_carved_out() {
        let static_ = resources::parse("cpus:4;mem:1024;disk(db):512;disk:100").unwrap();
        let reserved_cpus = dynamic(resources::scalar("cpus", 1.5), "web");
        // A volume on a refined reservation of the static disk.
        let mut vol = dynamic(resources::parse("disk(db):200").unwrap().remove(0), "db/pg");
        vol.disk = Some(Box::new(resource::DiskInfo {
            persistence: Some(resource::disk_info::Persistence {
                id: "pg".into(),
                principal: None,
            }),
            volume: Some(v1::Volume {
                container_path: "data".into(),
                mode: v1::volume::Mode::Rw as i32,
                ..Default::default()
            }),
            source: None,
        }));
        let cp = vec![reserved_cpus.clone(), vol.clone()];
        let total = total_with(&static_, &cp).unwrap();
        assert_eq!(total.scalar("cpus"), 4.0);
        assert_eq!(total.scalar("disk"), 612.0);
        assert!(total.contains_one(&reserved_cpus));
        assert!(total.contains_one(&vol));
        assert!(total.contains_one(&resources::parse("disk(db):312").unwrap()[0]));
        assert_eq!(
            checkpointed(&total),
            vec![reserved_cpus.clone(), vol.clone()]
        );

        // Fewer cpus than were reserved: refused, naming what no longer fits.
        let err = total_with(&resources::parse("cpus:1;disk(db):512").unwrap(), &cp).unwrap_err();
        assert!(err.contains("cpus(web):1.5"), "{err}");
        // The static reservation under the volume is gone.
        let err = total_with(&resources::parse("cpus:4;disk:512").unwrap(), &cp).unwrap_err();
        assert!(err.contains("disk(db)"), "{err}");
        // Growing --resources is fine.
        let more = total_with(&resources::parse("cpus:8;disk(db):1024").unwrap(), &cp).unwrap();
        assert_eq!(more.scalar("cpus"), 8.0);
        // A checkpoint holding something no operation makes is refused.
        assert!(total_with(&static_, &[resources::scalar("cpus", 1.0)]).is_err());
    }
}
