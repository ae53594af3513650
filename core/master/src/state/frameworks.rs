//! Frameworks: SUBSCRIBE (and re-subscription after a failover),
//! authorisation of calls, UPDATE_FRAMEWORK, removal and disconnection.

use super::*;

impl Master {
    /// SUBSCRIBE. Returns the framework id, or an error message for an
    /// ERROR event.
    pub fn subscribe(
        &mut self,
        call: &scheduler::Call,
        stream_id: &str,
        now: Clock,
    ) -> Result<String, String> {
        let Some(sub) = &call.subscribe else {
            return Err("Expecting 'subscribe' to be present".into());
        };
        let mut info = sub.framework_info.clone();
        if info.name.is_empty() {
            return Err("FrameworkInfo.name must be set".into());
        }
        let multi_role = has_capability(&info, FwCap::MultiRole);
        if multi_role && info.role.is_some() && info.role.as_deref() != Some("*") {
            return Err(
                "'FrameworkInfo.role' must not be set with the MULTI_ROLE capability; use 'roles'"
                    .into(),
            );
        }
        if !multi_role && !info.roles.is_empty() {
            return Err("'FrameworkInfo.roles' requires the MULTI_ROLE capability".into());
        }
        for role in framework_roles(&info) {
            validate_role(&role)?;
            self.check_whitelist(&role)?;
        }
        if let Some(t) = info.failover_timeout {
            if !t.is_finite() || t < 0.0 {
                return Err(format!("invalid failover_timeout {t}"));
            }
        }
        let call_id = call.framework_id.as_ref().map(|f| f.value.clone());
        let info_id = info.id.as_ref().map(|f| f.value.clone());
        if call_id != info_id {
            return Err("'framework_id' of the call and 'framework_info.id' must match".into());
        }
        let id = match info_id {
            Some(id) => {
                if id.is_empty() {
                    return Err("'framework_info.id' must not be empty".into());
                }
                if self.completed_frameworks.iter().any(|f| f.id == id) {
                    return Err(format!("Framework {id} has been removed"));
                }
                match self.frameworks.get(&id) {
                    // Another principal's framework.
                    Some(fw)
                        if fw.info.principal.is_some() && fw.info.principal != info.principal =>
                    {
                        return Err(format!(
                            "Framework {id} is registered with another principal"
                        ));
                    }
                    Some(_) => {}
                    // Unknown: only while agents may still re-register after a
                    // failover (they bring back the frameworks they run) is an
                    // unknown FrameworkID taken as one this master will learn.
                    None if self.reregister_deadline.is_none() => {
                        return Err(format!("Framework {id} is not known to this master"));
                    }
                    None => {}
                }
                id
            }
            None => {
                let id = format!("{}-{:04}", self.info.id, self.next_framework);
                self.next_framework += 1;
                id
            }
        };
        info.id = Some(v1::FrameworkId { value: id.clone() });
        let roles = framework_roles(&info);
        let existing = self.frameworks.contains_key(&id);
        if let Some(fw) = self.frameworks.get_mut(&id) {
            // Failover of a known framework: the new stream replaces the old.
            if let Some(old) = fw.stream_id.take() {
                if old != stream_id {
                    self.out.push(Effect::CloseFramework {
                        framework_id: id.clone(),
                        stream_id: old,
                        error: Some("Framework failed over".into()),
                    });
                }
            }
            fw.info = info.clone();
            fw.connected = true;
            fw.active = true;
            fw.recovered = false;
            fw.stream_id = Some(stream_id.to_string());
            fw.reregistered_time = Some(now.wall);
            fw.unregistered_time = None;
            fw.failover_deadline = None;
            self.allocator.update_framework(&id, roles.clone());
            self.allocator.set_framework_active(&id, true);
        } else {
            self.frameworks.insert(
                id.clone(),
                Framework {
                    id: id.clone(),
                    info: info.clone(),
                    connected: true,
                    active: true,
                    recovered: false,
                    stream_id: Some(stream_id.to_string()),
                    registered_time: now.wall,
                    reregistered_time: None,
                    unregistered_time: None,
                    tasks: BTreeMap::new(),
                    completed_tasks: VecDeque::new(),
                    executors: BTreeMap::new(),
                    offers: BTreeSet::new(),
                    failover_deadline: None,
                },
            );
            self.allocator.add_framework(&id, roles.clone(), true);
        }
        self.allocator
            .set_reservation_refinement(&id, has_capability(&info, FwCap::ReservationRefinement));
        // Offers made to the previous connection are rescinded.
        self.rescind_framework_offers(&id, false);
        self.allocator.revive(&id, &[]);
        if !sub.suppressed_roles.is_empty() {
            self.allocator.suppress(&id, &sub.suppressed_roles);
        }
        self.counters.inc("master/messages_register_framework");
        self.emit_fw(
            &id,
            scheduler::Event {
                r#type: Some(scheduler::event::Type::Subscribed as i32),
                subscribed: Some(scheduler::event::Subscribed {
                    framework_id: v1::FrameworkId { value: id.clone() },
                    heartbeat_interval_seconds: Some(self.flags.heartbeat_interval.as_secs_f64()),
                    master_info: Some(self.info.clone()),
                }),
                ..Default::default()
            },
        );
        let framework = self.framework_view(&id);
        if let Some(framework) = framework {
            let ev = if existing {
                op_event_framework_updated(framework)
            } else {
                op_event_framework_added(framework)
            };
            self.emit_op(ev);
        }
        // Tell agents running its tasks about the (possibly new) info.
        self.broadcast_framework_info(&id);
        self.resend_operation_updates(&id);
        tracing::info!(framework_id = %id, name = %info.name, failover = existing, "framework subscribed");
        Ok(id)
    }

    pub(crate) fn broadcast_framework_info(&mut self, framework_id: &str) {
        let Some(fw) = self.frameworks.get(framework_id) else {
            return;
        };
        let agents: BTreeSet<String> = fw
            .tasks
            .values()
            .map(|t| t.agent_id.value.clone())
            .chain(fw.executors.keys().map(|(a, _)| a.clone()))
            .collect();
        let info = fw.info.clone();
        for agent in agents {
            self.emit_agent(
                &agent,
                ToAgent::UpdateFramework(internal::UpdateFramework {
                    framework_info: info.clone(),
                }),
            );
        }
    }

    /// Checks a non-SUBSCRIBE call's framework and stream id.
    pub fn authorize_call(
        &self,
        call: &scheduler::Call,
        stream_id: Option<&str>,
    ) -> Result<String, CallError> {
        let Some(fid) = call.framework_id.as_ref().map(|f| f.value.clone()) else {
            return Err(CallError::BadRequest(
                "Expecting 'framework_id' to be present".into(),
            ));
        };
        let Some(fw) = self.frameworks.get(&fid) else {
            return Err(CallError::BadRequest(format!(
                "Framework {fid} is not registered with this master"
            )));
        };
        let Some(stream_id) = stream_id else {
            return Err(CallError::BadRequest(
                "All non-subscribe calls should include the 'Mesos-Stream-Id' header".into(),
            ));
        };
        if !fw.connected {
            return Err(CallError::Forbidden(format!(
                "Framework {fid} is not subscribed"
            )));
        }
        if fw.stream_id.as_deref() != Some(stream_id) {
            return Err(CallError::BadRequest(format!(
                "The stream ID '{stream_id}' included in this request didn't match the stream ID currently associated with framework ID {fid}"
            )));
        }
        Ok(fid)
    }

    /// UPDATE_FRAMEWORK.
    pub fn update_framework(
        &mut self,
        framework_id: &str,
        mut info: v1::FrameworkInfo,
    ) -> Result<(), CallError> {
        if info.id.as_ref().map(|i| i.value.as_str()) != Some(framework_id) {
            return Err(CallError::BadRequest(
                "'framework_info.id' must match the framework's id".into(),
            ));
        }
        if info.name.is_empty() {
            return Err(CallError::BadRequest(
                "FrameworkInfo.name must be set".into(),
            ));
        }
        for role in framework_roles(&info) {
            validate_role(&role).map_err(CallError::BadRequest)?;
            self.check_whitelist(&role).map_err(CallError::BadRequest)?;
        }
        info.id = Some(v1::FrameworkId {
            value: framework_id.to_string(),
        });
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return Err(CallError::BadRequest("unknown framework".into()));
        };
        if fw.info.user != info.user && !info.user.is_empty() {
            return Err(CallError::BadRequest(
                "'FrameworkInfo.user' cannot be changed".into(),
            ));
        }
        fw.info = info;
        let roles = fw.roles();
        let refinement = fw.has_capability(FwCap::ReservationRefinement);
        self.allocator.update_framework(framework_id, roles);
        self.allocator
            .set_reservation_refinement(framework_id, refinement);
        if let Some(view) = self.framework_view(framework_id) {
            self.emit_op(op_event_framework_updated(view));
        }
        self.broadcast_framework_info(framework_id);
        Ok(())
    }

    /// Removes a framework: its tasks are killed, offers and resources
    /// returned, and it moves to the completed frameworks.
    pub fn remove_framework(&mut self, framework_id: &str, now: Clock) {
        self.rescind_framework_offers(framework_id, false);
        let Some(mut fw) = self.frameworks.remove(framework_id) else {
            return;
        };
        let agents: BTreeSet<String> = fw
            .tasks
            .values()
            .map(|t| t.agent_id.value.clone())
            .chain(fw.executors.keys().map(|(a, _)| a.clone()))
            .collect();
        for a in &agents {
            self.emit_agent(
                a,
                ToAgent::ShutdownFramework(internal::ShutdownFramework {
                    framework_id: v1::FrameworkId {
                        value: framework_id.to_string(),
                    },
                }),
            );
            if let Some(agent) = self.agents.get_mut(a) {
                agent.used.remove(framework_id);
            }
        }
        for (_, mut t) in std::mem::take(&mut fw.tasks) {
            if !is_terminal(t.state) {
                t.state = TaskState::TaskKilled as i32;
                self.counters.inc("master/tasks_killed");
            }
            fw.completed_tasks.push_back(t);
        }
        while fw.completed_tasks.len() > self.flags.max_completed_tasks_per_framework {
            fw.completed_tasks.pop_front();
        }
        fw.executors.clear();
        self.allocator.remove_framework(framework_id);
        self.operations.forget_framework(framework_id);
        fw.connected = false;
        fw.active = false;
        fw.unregistered_time = Some(now.wall);
        if let Some(stream) = fw.stream_id.take() {
            self.out.push(Effect::CloseFramework {
                framework_id: framework_id.to_string(),
                stream_id: stream,
                error: None,
            });
        }
        self.emit_op(op::Event {
            r#type: Some(op::event::Type::FrameworkRemoved as i32),
            framework_removed: Some(op::event::FrameworkRemoved {
                framework_info: fw.info.clone(),
            }),
            ..Default::default()
        });
        tracing::info!(framework_id, "framework removed");
        self.completed_frameworks.push_back(fw);
        while self.completed_frameworks.len() > self.flags.max_completed_frameworks {
            self.completed_frameworks.pop_front();
        }
    }

    /// A framework's subscription stream broke.
    pub fn framework_disconnected(&mut self, framework_id: &str, stream_id: &str, now: Clock) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream_id.as_deref() != Some(stream_id) {
            return;
        }
        fw.stream_id = None;
        fw.connected = false;
        fw.active = false;
        let timeout = fw.info.failover_timeout.unwrap_or(0.0).clamp(0.0, 1e9);
        fw.failover_deadline = Some(now.mono + Duration::from_secs_f64(timeout));
        self.allocator.set_framework_active(framework_id, false);
        self.rescind_framework_offers(framework_id, false);
        if let Some(view) = self.framework_view(framework_id) {
            self.emit_op(op_event_framework_updated(view));
        }
        tracing::info!(
            framework_id,
            failover_timeout_secs = timeout,
            "framework disconnected"
        );
    }

    // ---------------------------------------------------------------
    // Agents
    // ---------------------------------------------------------------
}
