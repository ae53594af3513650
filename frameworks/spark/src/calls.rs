//! The REST submission calls answered from the dispatcher's state (pure):
//! a create queues the driver (or refuses it when the queue is full), a
//! status reports it in Spark's words, a kill ends it, killall and clear
//! act on all of them, readyz says whether this instance leads. Each
//! answer is the [`Reply`] Spark's own server would give, plus the
//! [`Command`]s the shell must carry out.

use crate::plan::{apply_driver_defaults, parse_constraints, plan, PlanDefaults};
use crate::protocol::{
    ClearResponse, CreateSubmissionRequest, CreateSubmissionResponse, KillAllSubmissionResponse,
    KillSubmissionResponse, Reply, SubmissionStatusResponse,
};
use crate::queue::{Application, Command, Dispatcher, QueueError};

/// The property naming a submission's role.
pub const ROLE_KEY: &str = "spark.corral.role";

/// A call, once routed and (for a create) parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `create`, with the unknown fields the request carried.
    Create(CreateSubmissionRequest, Vec<String>),
    /// `status/<id>`.
    Status(String),
    /// `kill/<id>`.
    Kill(String),
    /// `killall`.
    KillAll,
    /// `clear`.
    Clear,
}

/// What answering needs besides the state.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// `serverSparkVersion`.
    pub server_version: &'a str,
    /// The role of submissions that name none.
    pub default_role: &'a str,
    /// The roles submissions may name (empty: any).
    pub roles: &'a [String],
    /// The dispatcher's configuration (driver defaults).
    pub defaults: &'a std::collections::BTreeMap<String, String>,
    /// How applications are sized.
    pub sizing: &'a PlanDefaults,
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

/// Answers `call` from `dispatcher`.
pub fn answer(dispatcher: &mut Dispatcher, call: Call, cx: &Context<'_>) -> (Reply, Vec<Command>) {
    let v = cx.server_version;
    match call {
        Call::Create(req, unknown) => {
            let role = req
                .property(ROLE_KEY)
                .unwrap_or(cx.default_role)
                .to_string();
            if !cx.roles.is_empty() && !cx.roles.contains(&role) {
                let msg = format!(
                    "{ROLE_KEY}: role {role:?} is not one of this dispatcher's roles ({})",
                    cx.roles.join(", ")
                );
                return (
                    Reply::ok(&CreateSubmissionResponse::refused(v, &msg)),
                    Vec::new(),
                );
            }
            let mut app = Application {
                app_resource: req.app_resource,
                main_class: req.main_class,
                app_args: req.app_args,
                spark_properties: req.spark_properties,
                environment_variables: req.environment_variables,
            };
            apply_driver_defaults(&mut app, cx.defaults);
            if let Err(why) = check(&app, cx.sizing) {
                return (
                    Reply::ok(&CreateSubmissionResponse::refused(v, &why)),
                    Vec::new(),
                );
            }
            match dispatcher.submit(app, &role, cx.now_ms) {
                Ok(id) => (
                    Reply::ok(&CreateSubmissionResponse::accepted(v, &id, unknown)),
                    Vec::new(),
                ),
                Err(e) => (
                    Reply::ok(&CreateSubmissionResponse::refused(v, &e.to_string())),
                    Vec::new(),
                ),
            }
        }
        Call::Status(id) => {
            let reply = match dispatcher.get(&id) {
                Some(d) => {
                    let worker = d.agent_id.as_deref().zip(d.hostname.as_deref());
                    // A running driver's Spark UI is linked from its status.
                    let ui = d
                        .ui_url
                        .as_ref()
                        .filter(|_| d.state == crate::protocol::DriverState::Running)
                        .map(|u| format!("Spark UI: {u}"));
                    let message = d.message.clone().or(ui);
                    SubmissionStatusResponse::found(v, &id, d.state, worker, message.as_deref())
                }
                None => SubmissionStatusResponse::not_found(v, &id),
            };
            (Reply::ok(&reply), Vec::new())
        }
        Call::Kill(id) => match dispatcher.kill(&id, cx.now_ms) {
            Ok(cmds) => (Reply::ok(&KillSubmissionResponse::requested(v, &id)), cmds),
            Err(QueueError::Unknown(_) | QueueError::Finished { .. })
            | Err(QueueError::Full { .. }) => (
                Reply::ok(&KillSubmissionResponse::not_found(v, &id)),
                Vec::new(),
            ),
        },
        Call::KillAll => {
            let (_, cmds) = dispatcher.kill_all(cx.now_ms);
            (Reply::ok(&KillAllSubmissionResponse::requested(v)), cmds)
        }
        Call::Clear => {
            dispatcher.clear();
            (Reply::ok(&ClearResponse::cleared(v)), Vec::new())
        }
    }
}

/// The properties of the dispatcher's own that must be readable before a
/// submission is queued: its sizes, its constraints, its volume.
fn check(app: &Application, sizing: &PlanDefaults) -> Result<(), String> {
    plan(app, sizing)?;
    for key in [CONSTRAINTS_KEY, DRIVER_CONSTRAINTS_KEY] {
        if let Some(text) = app.property(key) {
            parse_constraints(text).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    volume_of(app)?;
    Ok(())
}

/// Where the master and workers may run (Mesos' constraint syntax).
pub const CONSTRAINTS_KEY: &str = "spark.corral.constraints";
/// Where the driver may run.
pub const DRIVER_CONSTRAINTS_KEY: &str = "spark.corral.driver.constraints";
/// The persistent volume of the driver: its persistence id.
pub const VOLUME_KEY: &str = "spark.corral.driver.volume";
/// Where the volume is mounted in the driver's sandbox (`data`).
pub const VOLUME_PATH_KEY: &str = "spark.corral.driver.volume.path";
/// Its size when it is created, MB (1024).
pub const VOLUME_SIZE_KEY: &str = "spark.corral.driver.volume.size";

/// The driver's volume, read from the application's properties.
pub fn volume_of(app: &Application) -> Result<Option<crate::gang::VolumeAsk>, String> {
    let Some(id) = app.property(VOLUME_KEY) else {
        return Ok(None);
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !s.starts_with('.')
    };
    if !valid(id) {
        return Err(format!(
            "{VOLUME_KEY}: {id:?} is not a volume id (letters, digits, '-', '_', '.')"
        ));
    }
    let path = app.property(VOLUME_PATH_KEY).unwrap_or("data");
    if !path.split('/').all(valid) {
        return Err(format!(
            "{VOLUME_PATH_KEY}: {path:?} must be a relative path in the sandbox"
        ));
    }
    let size_mb = match app.property(VOLUME_SIZE_KEY) {
        None => 1024.0,
        Some(t) => t
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("{VOLUME_SIZE_KEY}: {t:?} is not a size in MB"))?,
    };
    Ok(Some(crate::gang::VolumeAsk {
        persistence_id: id.to_string(),
        container_path: path.to_string(),
        size_mb,
        agent_id: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Limits;
    use std::collections::BTreeMap;

    const T0: i64 = 1_796_380_000_000;

    fn create(props: &[(&str, &str)]) -> Call {
        let mut spark_properties: BTreeMap<String, String> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spark_properties.insert("spark.app.name".into(), "pi".into());
        Call::Create(
            CreateSubmissionRequest {
                app_args: vec!["10".into()],
                app_resource: "file:///jobs/pi.jar".into(),
                client_spark_version: "4.3.0".into(),
                environment_variables: BTreeMap::new(),
                main_class: "Pi".into(),
                message: None,
                spark_properties,
            },
            Vec::new(),
        )
    }

    fn json(r: &Reply) -> serde_json::Value {
        serde_json::from_str(&r.body).expect("json")
    }

    #[test]
    fn a_submission_is_queued_reported_and_killed_in_sparks_words() {
        let mut d = Dispatcher::new(Limits::default());
        let defaults: BTreeMap<String, String> = [(
            "spark.corral.dispatcher.driverDefault.spark.executor.memory".to_string(),
            "2g".to_string(),
        )]
        .into();
        let cx = Context {
            server_version: "4.3.0",
            default_role: "spark",
            roles: &[],
            defaults: &defaults,
            sizing: &PlanDefaults::default(),
            now_ms: T0,
        };
        let (r, _) = answer(&mut d, create(&[]), &cx);
        let v = json(&r);
        assert_eq!(r.status, 200);
        assert_eq!(v["action"], "CreateSubmissionResponse");
        assert_eq!(v["success"], true);
        let id = v["submissionId"].as_str().expect("id").to_string();
        assert!(id.starts_with("driver-20261204"), "{id}");
        let drv = d.get(&id).expect("queued");
        assert_eq!(drv.role, "spark");
        assert_eq!(
            drv.application.property("spark.executor.memory"),
            Some("2g")
        );

        let (r, _) = answer(&mut d, Call::Status(id.clone()), &cx);
        let v = json(&r);
        assert_eq!(v["action"], "SubmissionStatusResponse");
        assert_eq!(v["driverState"], "SUBMITTED");
        assert_eq!(v["success"], true);

        let (r, cmds) = answer(&mut d, Call::Kill(id.clone()), &cx);
        assert_eq!(json(&r)["success"], true);
        assert!(cmds.is_empty(), "queued: no task to kill");
        let (r, _) = answer(&mut d, Call::Status(id.clone()), &cx);
        assert_eq!(json(&r)["driverState"], "KILLED");
        // Killing it again, or an unknown id: success false, 200.
        let (r, _) = answer(&mut d, Call::Kill(id.clone()), &cx);
        assert_eq!((r.status, json(&r)["success"].clone()), (200, false.into()));
        let (r, _) = answer(&mut d, Call::Status("driver-nope".into()), &cx);
        let v = json(&r);
        assert_eq!(v["success"], false);
        assert!(v.get("driverState").is_none());
        // clear forgets it.
        let (r, _) = answer(&mut d, Call::Clear, &cx);
        assert_eq!(json(&r)["action"], "ClearResponse");
        assert!(d.get(&id).is_none());
    }

    #[test]
    fn a_full_queue_and_a_foreign_role_are_refused_with_success_false() {
        let mut d = Dispatcher::new(Limits {
            max_queued: 1,
            ..Limits::default()
        });
        let roles = vec!["eng".to_string(), "ops".to_string()];
        let defaults = BTreeMap::new();
        let cx = Context {
            server_version: "4.3.0",
            default_role: "eng",
            roles: &roles,
            defaults: &defaults,
            sizing: &PlanDefaults::default(),
            now_ms: T0,
        };
        let (r, _) = answer(&mut d, create(&[("spark.corral.role", "ops")]), &cx);
        assert_eq!(json(&r)["success"], true);
        assert_eq!(d.live().next().map(|x| x.role.as_str()), Some("ops"));
        let (r, _) = answer(&mut d, create(&[]), &cx);
        let v = json(&r);
        assert_eq!((r.status, v["success"].clone()), (200, false.into()));
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("queue is full")),
            "{v}"
        );
        let (r, _) = answer(&mut d, create(&[("spark.corral.role", "web")]), &cx);
        let v = json(&r);
        assert_eq!(v["success"], false);
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("eng, ops")),
            "{v}"
        );
        for (key, value, says) in [
            ("spark.executor.memory", "lots", "spark.executor.memory"),
            ("spark.corral.driver.volume", "../x", "not a volume id"),
            ("spark.corral.constraints", ":x", "spark.corral.constraints"),
        ] {
            let (r, _) = answer(
                &mut d,
                create(&[("spark.corral.role", "ops"), (key, value)]),
                &cx,
            );
            let v = json(&r);
            assert_eq!(v["success"], false, "{key}");
            assert!(
                v["message"].as_str().is_some_and(|m| m.contains(says)),
                "{v}"
            );
        }
        assert_eq!(d.live().count(), 1, "refusals changed nothing");
        let (r, _) = answer(&mut d, Call::KillAll, &cx);
        assert_eq!(json(&r)["action"], "KillAllSubmissionResponse");
        assert_eq!(d.live().count(), 0);
    }
}
