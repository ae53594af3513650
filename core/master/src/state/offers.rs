//! Offers: the allocation cycle that makes them, DECLINE, rescinding,
//! and the timers (offer timeout, framework failover timeout).

use super::*;

impl Master {
    pub(crate) fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[v1::OfferId],
        filters: Option<&v1::Filters>,
        now: Clock,
    ) {
        let refuse = refuse_duration(filters);
        for oid in offer_ids {
            let belongs = self
                .offers
                .get(&oid.value)
                .is_some_and(|o| o.offer.framework_id.value == framework_id);
            if belongs {
                self.remove_offer(&oid.value, Some((now.mono, refuse)));
            }
        }
        self.counters.inc("master/messages_decline_offers");
    }

    /// Removes an offer and returns its resources to the allocator.
    pub(crate) fn remove_offer(
        &mut self,
        offer_id: &str,
        filter: Option<(Duration, Duration)>,
    ) -> Option<OfferEntry> {
        let entry = self.offers.remove(offer_id)?;
        let fid = entry.offer.framework_id.value.clone();
        let aid = entry.offer.agent_id.value.clone();
        if let Some(fw) = self.frameworks.get_mut(&fid) {
            fw.offers.remove(offer_id);
        }
        if let Some(agent) = self.agents.get_mut(&aid) {
            agent.offered.subtract_all(&entry.resources);
        }
        self.allocator.recover(&fid, &aid, &entry.resources, filter);
        Some(entry)
    }

    pub(crate) fn rescind_offer(&mut self, offer_id: &str) {
        if let Some(entry) = self.remove_offer(offer_id, None) {
            let fid = entry.offer.framework_id.value.clone();
            self.emit_fw(
                &fid,
                scheduler::Event {
                    r#type: Some(scheduler::event::Type::Rescind as i32),
                    rescind: Some(scheduler::event::Rescind {
                        offer_id: entry.offer.id.clone(),
                    }),
                    ..Default::default()
                },
            );
        }
    }

    pub(crate) fn rescind_framework_offers(&mut self, framework_id: &str, notify: bool) {
        let ids: Vec<String> = self
            .frameworks
            .get(framework_id)
            .map(|f| f.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            if notify {
                self.rescind_offer(&id);
            } else {
                self.remove_offer(&id, None);
            }
        }
    }

    pub(crate) fn rescind_agent_offers(&mut self, agent_id: &str) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.offer.agent_id.value == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    /// Removes an offer without recovering its resources in the allocator
    /// (they stay allocated to the framework while being launched on).
    pub(crate) fn remove_offer_keep_allocation(&mut self, offer_id: &str) -> Option<OfferEntry> {
        let entry = self.offers.remove(offer_id)?;
        if let Some(fw) = self.frameworks.get_mut(&entry.offer.framework_id.value) {
            fw.offers.remove(offer_id);
        }
        if let Some(agent) = self.agents.get_mut(&entry.offer.agent_id.value) {
            agent.offered.subtract_all(&entry.resources);
        }
        Some(entry)
    }

    /// Runs an allocation cycle (all agents, or only changed ones) and
    /// turns the allocator's decisions into offers.
    pub fn allocate(&mut self, now: Clock, full: bool) {
        let started = std::time::Instant::now();
        let allocations = if full {
            self.allocator.allocate(now.mono)
        } else {
            self.allocator.allocate_changed(now.mono)
        };
        if full {
            self.counters.inc("allocator/mesos/allocation_runs");
            self.allocation_run_ms
                .push_back(started.elapsed().as_secs_f64() * 1000.0);
            if self.allocation_run_ms.len() > 1000 {
                self.allocation_run_ms.pop_front();
            }
        }
        let mut by_framework: BTreeMap<String, Vec<v1::Offer>> = BTreeMap::new();
        for a in allocations {
            let Some(agent) = self.agents.get_mut(&a.agent) else {
                continue;
            };
            let resources = a.resources.allocated_to(&a.role);
            agent.offered.add_all(&resources);
            let offer_id = format!("{}-O{}", self.info.id, self.next_offer);
            self.next_offer += 1;
            let executor_ids = self
                .frameworks
                .get(&a.framework)
                .map(|f| {
                    f.executors
                        .keys()
                        .filter(|(ag, _)| *ag == a.agent)
                        .map(|(_, e)| v1::ExecutorId { value: e.clone() })
                        .collect()
                })
                .unwrap_or_default();
            let offer = v1::Offer {
                id: v1::OfferId {
                    value: offer_id.clone(),
                },
                framework_id: v1::FrameworkId {
                    value: a.framework.clone(),
                },
                agent_id: v1::AgentId {
                    value: a.agent.clone(),
                },
                hostname: agent.info.hostname.clone(),
                url: Some(agent_url(agent)),
                resources: resources.to_vec(),
                attributes: agent.info.attributes.clone(),
                executor_ids,
                allocation_info: Some(v1::resource::AllocationInfo {
                    role: Some(a.role.clone()),
                }),
                ..Default::default()
            };
            if let Some(fw) = self.frameworks.get_mut(&a.framework) {
                fw.offers.insert(offer_id.clone());
            }
            self.offers.insert(
                offer_id,
                OfferEntry {
                    offer: offer.clone(),
                    resources,
                    role: a.role,
                    created: now.mono,
                },
            );
            by_framework.entry(a.framework).or_default().push(offer);
        }
        for (fid, offers) in by_framework {
            let refinement = self
                .frameworks
                .get(&fid)
                .is_some_and(|f| f.has_capability(FwCap::ReservationRefinement));
            let offers = offers
                .into_iter()
                .map(|mut o| {
                    if !refinement {
                        for r in &mut o.resources {
                            resources::downgrade(r);
                        }
                    }
                    o
                })
                .collect::<Vec<_>>();
            self.counters
                .values
                .entry("master/offers_sent")
                .and_modify(|c| *c += offers.len() as u64)
                .or_insert(offers.len() as u64);
            self.emit_fw(
                &fid,
                scheduler::Event {
                    r#type: Some(scheduler::event::Type::Offers as i32),
                    offers: Some(scheduler::event::Offers { offers }),
                    ..Default::default()
                },
            );
        }
    }

    /// Periodic housekeeping: failover timeouts of disconnected frameworks
    /// and removal of agents disconnected for too long.
    pub fn expire(&mut self, now: Clock) {
        if let Some(timeout) = self.flags.offer_timeout {
            let stale: Vec<String> = self
                .offers
                .iter()
                .filter(|(_, o)| now.mono >= o.created + timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                self.counters.inc("master/offers_rescinded");
                self.rescind_offer(&id);
            }
        }
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| !f.connected && f.failover_deadline.is_some_and(|d| d <= now.mono))
            .map(|f| f.id.clone())
            .collect();
        for fid in expired {
            tracing::info!(framework_id = %fid, "framework failover timeout expired");
            self.remove_framework(&fid, now);
        }
        let timeout = self.agent_timeout();
        let gone: Vec<String> = self
            .agents
            .values()
            .filter(|a| a.disconnected_at.is_some_and(|t| now.mono >= t + timeout))
            .map(|a| a.id.clone())
            .collect();
        for aid in gone {
            self.remove_agent(&aid, now);
        }
        self.expire_recovering(now);
    }
}
