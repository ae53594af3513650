//! The agent and its master: registration and re-registration messages,
//! the leader's epoch, `Registered`, losing the master, and what the master
//! pushes about frameworks (UpdateFramework, framework-to-executor messages).

use super::*;

impl Agent {
    /// Sends to the master when a session is registered; dropped otherwise
    /// (status updates are resent after re-registration).
    pub fn send_to_master(&self, message: agent_message::Message) {
        let link = lock(&self.master);
        match link.as_ref() {
            Some(tx) => {
                let _ = tx.send(AgentMessage {
                    message: Some(message),
                });
            }
            None => tracing::debug!("no registered master, dropping message"),
        }
    }

    /// The RegisterAgent message for the current state.
    pub fn register_message(&self) -> internal::RegisterAgent {
        let st = lock(&self.state);
        let sum = lock(&self.sum);
        let mut frameworks = Vec::new();
        let mut executors = Vec::new();
        let mut tasks = Vec::new();
        for (fw_id, fw) in &st.frameworks {
            if fw.terminating {
                continue;
            }
            frameworks.push(fw.info.clone());
            for ex in fw.executors.values() {
                // Mesos does not report executors generated for command tasks.
                if ex.kind != ExecutorKind::Command && ex.phase != ExecutorPhase::Terminated {
                    executors.push(ex.info.clone());
                }
                for task in ex.tasks.values() {
                    let mut t = task.clone();
                    if let Some(head) = sum.head(fw_id, &t.task_id.value) {
                        t.status_update_state = Some(head.state);
                        t.status_update_uuid = head.uuid.clone();
                    }
                    tasks.push(t);
                }
            }
        }
        for t in &st.lost_tasks {
            if let Some(head) = sum.head(&t.framework_id.value, &t.task_id.value) {
                let mut t = t.clone();
                t.status_update_state = Some(head.state);
                t.status_update_uuid = head.uuid.clone();
                tasks.push(t);
            }
        }
        internal::RegisterAgent {
            agent_info: self.agent_info(&st),
            version: corral_api::VERSION.to_string(),
            endpoint: self.config.endpoint(),
            frameworks,
            executors,
            tasks,
            total_resources: st.total.to_vec(),
            operations: st.operations.values().cloned().collect(),
        }
    }

    /// This agent's AgentInfo.
    pub fn agent_info(&self, st: &State) -> AgentInfo {
        AgentInfo {
            hostname: self.config.hostname.clone(),
            port: Some(i32::from(self.config.address.port())),
            resources: self.config.resources.clone(),
            attributes: self.config.attributes.clone(),
            id: st.agent_id.clone(),
            domain: None,
        }
    }

    /// Checks a master message's epoch; false when it is older than the
    /// highest seen (the message must be dropped).
    pub fn accept_epoch(&self, epoch: Option<u64>) -> bool {
        let mut st = lock(&self.state);
        match epoch {
            Some(e) if e < st.highest_epoch => false,
            Some(e) => {
                st.highest_epoch = e;
                true
            }
            None => true,
        }
    }

    /// Applies `Registered` and makes `link` the channel to the master.
    /// Unacknowledged status updates are resent.
    pub fn registered(
        &self,
        reg: &internal::Registered,
        link: mpsc::UnboundedSender<AgentMessage>,
    ) {
        {
            let mut st = lock(&self.state);
            match &st.agent_id {
                None => {
                    tracing::info!(agent_id = %reg.agent_id.value, "registered with master");
                    st.agent_id = Some(reg.agent_id.clone());
                }
                Some(id) if *id == reg.agent_id => {
                    tracing::info!(agent_id = %id.value, "re-registered with master");
                }
                Some(id) => {
                    tracing::error!(
                        agent_id = %id.value,
                        assigned = %reg.agent_id.value,
                        "master assigned a different agent id on re-registration, keeping ours"
                    );
                }
            }
            st.master_info = Some(reg.master_info.clone());
            st.registered = true;
            // Mesos always checkpoints the agent's info: a restart keeps the id.
            if let Err(e) = self.config.checkpoint.write_agent(&self.agent_info(&st)) {
                tracing::error!(error = %e, "cannot checkpoint the agent info");
            }
        }
        *lock(&self.master) = Some(link);
        let resend = lock(&self.sum).resend_all(Instant::now());
        if !resend.is_empty() {
            tracing::info!(
                count = resend.len(),
                "resending unacknowledged status updates"
            );
        }
        for update in resend {
            self.send_to_master(agent_message::Message::StatusUpdate(update));
        }
        self.sum_wake.notify_one();
        self.resend_operation_updates();
    }

    /// The master session ended.
    pub fn master_lost(&self) {
        *lock(&self.master) = None;
        lock(&self.state).registered = false;
    }

    // ----- status updates ----------------------------------------------

    /// UpdateFramework: the stored FrameworkInfo is replaced.
    pub fn update_framework(&self, info: FrameworkInfo) {
        let Some(id) = info.id.as_ref().map(|i| i.value.clone()) else {
            return;
        };
        if let Some(fw) = lock(&self.state).frameworks.get_mut(&id) {
            fw.info = info;
        }
    }

    // ----- executor API ------------------------------------------------

    /// FrameworkToExecutor: a MESSAGE event.
    pub fn framework_message(&self, msg: internal::FrameworkToExecutor) {
        let mut st = lock(&self.state);
        let delivered = st
            .frameworks
            .get(&msg.framework_id.value)
            .and_then(|f| f.executors.get(&msg.executor_id.value))
            .is_some_and(|ex| {
                let mut ev = event(event::Type::Message);
                ev.message = Some(event::Message { data: msg.data });
                ex.send(ev)
            });
        if delivered {
            st.counters.valid_framework_messages += 1;
        } else {
            st.counters.invalid_framework_messages += 1;
            tracing::warn!(
                framework_id = %msg.framework_id.value,
                executor_id = %msg.executor_id.value,
                "framework message for an executor that is not subscribed dropped"
            );
        }
    }
}
