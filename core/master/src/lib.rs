//! The Corral master.
//!
//! * [`state`] – the master's state and transitions (pure: inputs in,
//!   effects out), using the DRF allocator of `corral-allocator`.
//! * [`actor`] – the event loop that owns the state and the connections.
//! * [`http`] – scheduler API, operator API, legacy JSON, metrics.
//! * [`grpc`] – the agents' session service.
//! * [`legacy`] – v0 JSON views of the state.
//! * [`registry`] – what must outlive a master (weights, quota, agents):
//!   one trait, an in-memory and an on-disk store.
//! * [`flags`] – `corral master` flags.
//! * [`zk`], [`election`] – ZooKeeper sessions and Mesos-style leader
//!   election (`json.info_<seq>` znodes); [`testing`] starts a real
//!   ZooKeeper for tests.

pub mod actor;
pub mod flags;
pub mod grpc;
pub mod http;
mod jsonp;
pub mod legacy;
pub mod registry;
pub mod state;
pub mod webui;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use corral_api::internal::agent_service_server::AgentServiceServer;
use corral_api::v1;
use tokio::sync::mpsc;

pub use flags::MasterFlags;
// ZooKeeper lives in its own crate (the frameworks SDK uses it too); these
// keep the paths the master's users know.
pub use corral_zk as zk;
pub use corral_zk::{election, testing};

/// Errors starting the master.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// A flag is invalid.
    #[error("invalid flag --{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
    /// The registry could not be opened or recovered.
    #[error("registry: {0}")]
    Registry(#[from] registry::RegistryError),
    /// ZooKeeper could not be reached.
    #[error("zookeeper: {0}")]
    ZooKeeper(String),
    /// This master lost its ZooKeeper session (or its leadership): it
    /// stopped leading and must exit so a supervisor restarts it.
    #[error("lost leadership: {0}")]
    LostLeadership(String),
}

/// Builds this master's MasterInfo.
pub fn master_info(ip: IpAddr, port: u16, hostname: &str) -> v1::MasterInfo {
    let ip_u32 = match ip {
        // Mesos stores the address as the in-memory value of `s_addr`,
        // i.e. network byte order read as a host integer.
        IpAddr::V4(v4) => u32::from_ne_bytes(v4.octets()),
        IpAddr::V6(_) => 0,
    };
    v1::MasterInfo {
        id: corral_api::ids::new_uuid(),
        ip: ip_u32,
        port: u32::from(port),
        pid: Some(format!("master@{ip}:{port}")),
        hostname: Some(hostname.to_string()),
        version: Some(corral_api::MESOS_VERSION.to_string()),
        address: Some(v1::Address {
            hostname: Some(hostname.to_string()),
            ip: Some(ip.to_string()),
            port: i32::from(port),
        }),
        ..Default::default()
    }
}

/// Runs the master until `shutdown` resolves.
pub async fn run(
    flags: MasterFlags,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MasterError> {
    let zk_url = match &flags.zk {
        Some(zk) => Some(zk::ZkUrl::parse(zk).map_err(|e| MasterError::Flag {
            flag: "zk",
            message: e.to_string(),
        })?),
        None => None,
    };
    flags::parse_removal_limit(&flags.recovery_agent_removal_limit).map_err(|message| {
        MasterError::Flag {
            flag: "recovery_agent_removal_limit",
            message,
        }
    })?;
    if flags.quorum == Some(0) {
        return Err(MasterError::Flag {
            flag: "quorum",
            message: "must be at least 1".into(),
        });
    }
    for (flag, d) in [
        ("allocation_interval", flags.allocation_interval),
        ("agent_ping_timeout", flags.agent_ping_timeout),
        ("heartbeat_interval", flags.heartbeat_interval),
    ] {
        if d.is_zero() {
            return Err(MasterError::Flag {
                flag,
                message: "must be greater than zero".into(),
            });
        }
    }
    if flags.max_agent_ping_timeouts == 0 {
        return Err(MasterError::Flag {
            flag: "max_agent_ping_timeouts",
            message: "must be at least 1".into(),
        });
    }
    let flag_weights = match &flags.weights {
        Some(w) => flags::parse_weights(w).map_err(|message| MasterError::Flag {
            flag: "weights",
            message,
        })?,
        None => Vec::new(),
    };
    let whitelist = match &flags.roles {
        Some(r) => Some(flags::parse_roles(r).map_err(|message| MasterError::Flag {
            flag: "roles",
            message,
        })?),
        None => None,
    };
    let min_allocatable = corral_allocator::MinAllocatable::parse(&flags.min_allocatable_resources)
        .map_err(|message| MasterError::Flag {
            flag: "min_allocatable_resources",
            message,
        })?;
    let registry: Option<Arc<dyn registry::Registry>> = match (
        flags.registry.as_deref(),
        &flags.work_dir,
    ) {
        // With --zk the registry lives in ZooKeeper, opened once elected.
        (None | Some("zookeeper"), _) if zk_url.is_some() => None,
        (Some("zookeeper"), _) => {
            return Err(MasterError::Flag {
                flag: "registry",
                message: "'zookeeper' needs --zk".into(),
            })
        }
        (Some("in_memory"), _) | (None, None) => {
            tracing::warn!("registry is in memory: weights and quota are lost when the master stops (set --work_dir)");
            Some(Arc::new(registry::MemoryRegistry::new()))
        }
        (Some("local") | None, Some(dir)) => Some(Arc::new(registry::LocalRegistry::open(
            std::path::Path::new(dir).join("registry"),
        )?)),
        (Some("local"), None) => {
            return Err(MasterError::Flag {
                flag: "registry",
                message: "'local' needs --work_dir".into(),
            })
        }
        (Some(other), _) => {
            return Err(MasterError::Flag {
                flag: "registry",
                message: format!(
                    "unknown registry '{other}' (use 'local', 'in_memory' or 'zookeeper')"
                ),
            })
        }
    };
    let ip: IpAddr = flags.ip.parse().map_err(|_| MasterError::Flag {
        flag: "ip",
        message: format!("'{}' is not an IP address", flags.ip),
    })?;
    let addr = SocketAddr::new(ip, flags.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MasterError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    let hostname = flags.hostname.clone().unwrap_or_else(|| ip.to_string());
    let info = master_info(ip, local.port(), &hostname);
    tracing::info!(master_id = %info.id, addr = %local, "master starting");

    // One server for the life of the process: a standby answers with
    // redirects to the leader until this master leads.
    let leading: Arc<std::sync::OnceLock<axum::Router>> = Arc::default();
    let (leader_tx, leader_rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let app = http::dispatch(Arc::clone(&leading), leader_rx);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let mut shutdown = std::pin::pin!(shutdown);

    let mut epoch = 1;
    let mut session_state = None;
    let registry = match registry {
        Some(registry) => registry,
        None => {
            let url = zk_url
                .clone()
                .ok_or_else(|| MasterError::ZooKeeper("no --zk".into()))?;
            let session = zk::Session::connect(
                &url.servers,
                flags.zk_session_timeout,
                flags
                    .zk_session_timeout
                    .max(std::time::Duration::from_secs(10)),
            )
            .await
            .map_err(|e| {
                MasterError::ZooKeeper(format!("cannot connect to {}: {e:?}", url.servers))
            })?;
            let session = Arc::new(session);
            let contender = election::Contender::enter(Arc::clone(&session), &url.path, &info)
                .await
                .map_err(|e| MasterError::ZooKeeper(e.to_string()))?;
            tokio::select! {
                led = contender.lead(&leader_tx, flags.quorum.unwrap_or(1) as usize) => {
                    epoch = led.map_err(|e| MasterError::LostLeadership(e.to_string()))?;
                }
                _ = &mut shutdown => {
                    let _ = server.await;
                    return Ok(());
                }
            }
            tracing::info!(epoch, znode = %contender.name, quorum = flags.quorum.unwrap_or(1), "elected leading master");
            session_state = Some((session.state(), session, contender));
            let root = format!("{}/registry", url.path);
            let (_, session, _) = session_state
                .as_ref()
                .ok_or_else(|| MasterError::ZooKeeper("no session".into()))?;
            Arc::new(registry::ZooKeeperRegistry::open(session.zk.clone(), &root).await?)
        }
    };
    let recovered = registry.recover().await?;
    let mut master = state::Master::new(info, flags.clone(), corral_api::ids::now_secs());
    master.allocator.set_min_allocatable(min_allocatable);
    master.roles_whitelist = whitelist.map(|w| w.into_iter().collect());
    master.set_weights(&flag_weights);
    master.apply_registry(&recovered);
    master.recover_agents(
        &recovered,
        state::Clock {
            mono: std::time::Duration::ZERO,
            wall: corral_api::ids::now_secs(),
        },
    );
    tracing::info!(
        weights = recovered.weights.len(),
        quotas = recovered.quotas.len(),
        "registry recovered"
    );
    let (tx, rx) = mpsc::channel(actor::INPUT_CAPACITY);
    // The registry writer: applies the operations of state transitions
    // (agents admitted, unreachable, gone) in order, batching what queued
    // up. A conflict or a lost session means another master leads.
    let (writer_tx, mut writer_rx) = mpsc::unbounded_channel::<actor::RegistryWrite>();
    let (fatal_tx, mut fatal_rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let writer_registry = Arc::clone(&registry);
    let writer_inputs = tx.clone();
    tokio::spawn(async move {
        while let Some((mut seq, mut ops)) = writer_rx.recv().await {
            while let Ok((more_seq, more)) = writer_rx.try_recv() {
                seq = more_seq;
                ops.extend(more);
            }
            let result = writer_registry.apply(ops.clone()).await;
            if let Err(e) = result {
                if e.is_fatal_for_leader() {
                    let _ = fatal_tx.send(Some(e.to_string()));
                    return;
                }
                if e.is_rejection() {
                    // One refused operation must not drop the others.
                    for op in ops {
                        if let Err(e) = writer_registry.apply(vec![op]).await {
                            tracing::warn!(error = %e, "registry operation refused");
                        }
                    }
                } else {
                    tracing::error!(error = %e, "registry write failed");
                }
            }
            // What waited for these writes (a registration's answer, the
            // updates of an unreachable agent's tasks, an operator's reply)
            // goes out now.
            let _ = writer_inputs.send(actor::Input::Durable { seq }).await;
        }
    });
    let actor = actor::Actor::new(master, tx.clone())
        .with_epoch(epoch)
        .with_registry_writer(writer_tx);
    let actor_task = tokio::spawn({
        let mut stop = stop_rx.clone();
        async move {
            actor
                .run(rx, async move {
                    let _ = stop.changed().await;
                })
                .await
        }
    });
    let shared = http::Shared {
        inputs: tx.clone(),
        max_body: flags.max_request_body_bytes,
        advertised: format!("{hostname}:{}", local.port()),
        registry,
        registry_writes: Arc::new(tokio::sync::Mutex::new(())),
        history: Default::default(),
        ui_snapshot: Default::default(),
        http: reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| MasterError::Serve(std::io::Error::other(e)))?,
    };
    tokio::spawn(webui::sample_forever(shared.clone()));
    let grpc =
        tonic::service::Routes::new(AgentServiceServer::new(grpc::AgentSessions { inputs: tx }))
            .into_axum_router();
    let _ = leading.set(http::split_grpc(http::router(shared), grpc));
    leader_tx.send_replace(Some(format!("{hostname}:{}", local.port())));
    let mut expired = session_state.as_ref().map(|(state, _, _)| state.clone());
    let lost = async move {
        let session = async {
            match expired.as_mut() {
                Some(state) => {
                    let _ = state.wait_for(|s| *s == zk::SessionState::Expired).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = session => {}
            _ = fatal_rx.wait_for(|f| f.is_some()) => {}
        }
    };
    tokio::select! {
        _ = &mut shutdown => {}
        _ = lost => {
            // Fencing: stop acting as leader at once (no more messages to
            // agents or frameworks) and exit non-zero.
            actor_task.abort();
            tracing::error!(epoch, "zookeeper session expired or registry taken over: no longer the leader; exiting");
            return Err(MasterError::LostLeadership(
                "zookeeper session expired or another master wrote the registry".into(),
            ));
        }
    }
    server
        .await
        .map_err(|e| MasterError::Serve(std::io::Error::other(e)))??;
    let _ = actor_task.await;
    tracing::info!("master stopped");
    Ok(())
}
