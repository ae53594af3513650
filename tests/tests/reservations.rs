//! Dynamic reservations and persistent volumes, end to end against a real
//! master and agent: RESERVE / UNRESERVE / CREATE / DESTROY from frameworks
//! (ACCEPT) and from the operator (v1 operator API and the legacy
//! endpoints, in both reservation formats), reservation refinement, labels,
//! operation feedback, bad input refused without a change of state, and
//! reservations and volumes coming back from the agent after a master
//! restart.

use corral_tests::corral_api::codec::{self, Encoding};
use corral_tests::corral_api::resources::Resources;
use corral_tests::corral_api::v1;
use corral_tests::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A FrameworkInfo in `role` with principal `ops` and
/// RESERVATION_REFINEMENT.
fn framework(name: &str, role: &str) -> Value {
    let mut info = default_framework_info(name);
    info["role"] = json!(role);
    info["principal"] = json!("ops");
    info["capabilities"] = json!([{"type": "RESERVATION_REFINEMENT"}]);
    info
}

/// `name:value` dynamically reserved to the stack `roles` by `ops`.
fn reserved(name: &str, value: f64, roles: &[&str]) -> Value {
    json!({
        "name": name,
        "type": "SCALAR",
        "scalar": {"value": value},
        "reservations": roles
            .iter()
            .map(|r| json!({"type": "DYNAMIC", "role": r, "principal": "ops"}))
            .collect::<Vec<_>>(),
    })
}

/// A persistent volume of `value` MB of disk reserved to `role`.
fn volume(value: f64, role: &str, id: &str) -> Value {
    let mut v = reserved("disk", value, &[role]);
    v["disk"] = json!({
        "persistence": {"id": id, "principal": "ops"},
        "volume": {"mode": "RW", "container_path": "data"},
    });
    v
}

fn op(ty: &str, id: Option<&str>, field: &str, body: Value) -> Value {
    let mut o = json!({"type": ty});
    o[field] = body;
    if let Some(id) = id {
        o["id"] = json!({"value": id});
    }
    o
}

fn reserve(id: Option<&str>, resources: Vec<Value>) -> Value {
    op("RESERVE", id, "reserve", json!({"resources": resources}))
}

fn unreserve(id: Option<&str>, resources: Vec<Value>) -> Value {
    op(
        "UNRESERVE",
        id,
        "unreserve",
        json!({"resources": resources}),
    )
}

fn create(id: Option<&str>, volumes: Vec<Value>) -> Value {
    op("CREATE", id, "create", json!({"volumes": volumes}))
}

fn destroy(id: Option<&str>, volumes: Vec<Value>) -> Value {
    op("DESTROY", id, "destroy", json!({"volumes": volumes}))
}

fn role_of(r: &Value) -> String {
    r["reservations"]
        .as_array()
        .and_then(|rs| rs.last())
        .and_then(|x| x["role"].as_str())
        .or_else(|| r["role"].as_str())
        .unwrap_or("*")
        .to_string()
}

/// The resources of `rs` reserved to `role` (any depth of the stack's top).
fn reserved_to(rs: &Value, role: &str) -> Vec<Value> {
    rs.as_array()
        .into_iter()
        .flatten()
        .filter(|r| role_of(r) == role)
        .cloned()
        .collect()
}

fn persistence_ids(rs: &Value) -> Vec<String> {
    rs.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["disk"]["persistence"]["id"].as_str())
        .map(str::to_string)
        .collect()
}

/// Waits for an offer whose resources satisfy `want`, declining the others
/// (with a zero filter, so they come back).
async fn offer_where(s: &mut Scheduler, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    s.offer_where(what, |o| want(&o["resources"])).await
}

/// Whether two JSON resource lists hold the same resources (in any order).
fn same(a: &Value, b: &Value) -> bool {
    let bag = |v: &Value| {
        let rs: Vec<v1::Resource> = v
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| codec::from_json_value(r.clone()).expect("a Resource"))
            .collect();
        Resources::from_vec(&rs)
    };
    let (a, b) = (bag(a), bag(b));
    a.contains(&b) && b.contains(&a)
}

/// The agent's `total_resources` in GET_AGENTS.
async fn agent_total(c: &Cluster) -> Value {
    let (status, body) = c.operator(json!({"type": "GET_AGENTS"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["get_agents"]["agents"][0]["total_resources"].clone()
}

/// What must not change when an operation is refused: every agent's total
/// and every task.
async fn snapshot(c: &Cluster) -> (Value, Value) {
    let state = c.state_json().await;
    let totals: Vec<Value> = state["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["total_resources"].clone())
        .collect();
    (json!(totals), state["get_tasks"].clone())
}

/// Waits until no operation is pending on an agent (the agent answered
/// every one; a failure would have resynced the master's view).
async fn settled(c: &Cluster) {
    let ok = wait_for(TIMEOUT, || async {
        let (_, body) = c.operator(json!({"type": "GET_OPERATIONS"})).await;
        body["get_operations"]["operations"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|o| o["latest_status"]["state"] != "OPERATION_PENDING")
    })
    .await;
    assert!(ok, "operations still pending\n{}", c.logs());
}

/// The agent's own view (`/state` of the agent): reserved resources by role.
async fn agent_reserved(c: &Cluster) -> Value {
    let body: Value = c
        .http
        .get(c.agents[0].url("/state"))
        .send()
        .await
        .expect("agent /state")
        .json()
        .await
        .expect("agent /state JSON");
    body["reserved_resources"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_resources_go_only_to_their_role_and_unreserve_returns_them_to_everyone() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut web = c
        .subscribe_with(Encoding::Json, framework("web", "web"))
        .await;
    let offer = web.offers().await.remove(0);
    let mut cpus = reserved("cpus", 1.0, &["web"]);
    cpus["reservations"][0]["labels"] = json!({"labels": [{"key": "owner", "value": "kafka"}]});
    let mem = reserved("mem", 256.0, &["web"]);
    web.accept(
        &offer,
        json!([reserve(Some("r1"), vec![cpus.clone(), mem.clone()])]),
    )
    .await;
    let status = web.operation_update("r1").await;
    assert_eq!(status["state"], "OPERATION_FINISHED", "{status}");
    assert_eq!(status["agent_id"]["value"], c.agents[0].id);
    web.acknowledge_operation(&status).await;
    // The master and the agent agree.
    let total = agent_total(&c).await;
    assert_eq!(scalar_of(&json!(reserved_to(&total, "web")), "cpus"), 1.0);
    assert_eq!(agent_reserved(&c).await["web"]["cpus"], 1.0);

    // web is offered its reservation, labels and all.
    let offer = offer_where(&mut web, "cpus reserved to web", |rs| {
        scalar_of(&json!(reserved_to(rs, "web")), "cpus") == 1.0
    })
    .await;
    let offered = reserved_to(&offer["resources"], "web");
    let offered_cpus = offered.iter().find(|r| r["name"] == "cpus").unwrap();
    assert_eq!(
        offered_cpus["reservations"][0]["labels"]["labels"][0],
        json!({"key": "owner", "value": "kafka"})
    );
    assert_eq!(offered_cpus["reservations"][0]["principal"], "ops");

    // Another role never sees it, even while web holds no offer.
    web.decline(std::slice::from_ref(&offer), 3600.0).await;
    let mut batch = c
        .subscribe_with(Encoding::Json, framework("batch", "batch"))
        .await;
    for _ in 0..3 {
        let offers = batch.offers().await;
        for o in &offers {
            assert!(
                reserved_to(&o["resources"], "web").is_empty(),
                "web's reservation offered to batch: {o}"
            );
            assert!(scalar_of(&o["resources"], "cpus") <= 1.0, "{o}");
        }
        batch.decline(&offers, 0.0).await;
    }

    // UNRESERVE, with the resources as they are offered.
    web.call_ok(json!({"type": "REVIVE"})).await;
    let offer = offer_where(&mut web, "cpus reserved to web", |rs| {
        scalar_of(&json!(reserved_to(rs, "web")), "cpus") == 1.0
    })
    .await;
    let offered = reserved_to(&offer["resources"], "web");
    web.accept(&offer, json!([unreserve(Some("u1"), offered.clone())]))
        .await;
    let status = web.operation_update("u1").await;
    assert_eq!(status["state"], "OPERATION_FINISHED", "{status}");
    web.acknowledge_operation(&status).await;
    assert!(reserved_to(&agent_total(&c).await, "web").is_empty());
    assert!(agent_reserved(&c).await.get("web").is_none());
    // web leaves; batch is offered all the agent's cpus, none reserved.
    web.call_ok(json!({"type": "TEARDOWN"})).await;
    let batch_id = batch.framework_id.clone();
    let ok = wait_for(TIMEOUT, || async {
        let (_, body) = c.operator(json!({"type": "GET_FRAMEWORKS"})).await;
        body["get_frameworks"]["frameworks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["framework_info"]["id"]["value"] == batch_id.as_str())
            .is_some_and(|f| {
                let offered = &f["offered_resources"];
                scalar_of(offered, "cpus") == 2.0
                    && offered
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| role_of(r) == "*")
            })
    })
    .await;
    assert!(
        ok,
        "batch was not offered the unreserved cpus\n{}",
        c.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_api_and_legacy_endpoints_in_both_formats() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].id.clone();
    let before = agent_total(&c).await;

    // v1 operator API, post-refinement format.
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent},
            "resources": [reserved("cpus", 1.0, &["ops-role"])]}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let total = agent_total(&c).await;
    assert_eq!(
        scalar_of(&json!(reserved_to(&total, "ops-role")), "cpus"),
        1.0
    );
    settled(&c).await;
    assert_eq!(agent_reserved(&c).await["ops-role"]["cpus"], 1.0);
    let (status, body) = c
        .operator(
            json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
            "agent_id": {"value": agent},
            "resources": [reserved("cpus", 1.0, &["ops-role"])]}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    settled(&c).await;
    let total = agent_total(&c).await;
    assert!(same(&total, &before), "{total} != {before}");

    // v1 operator API, pre-refinement format (role + reservation).
    let old_format = json!([{
        "name": "mem", "type": "SCALAR", "scalar": {"value": 128.0},
        "role": "legacy", "reservation": {"principal": "ops"}}]);
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent}, "resources": old_format.clone()}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = c
        .operator(
            json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
            "agent_id": {"value": agent}, "resources": old_format.clone()}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    settled(&c).await;
    let total = agent_total(&c).await;
    assert!(same(&total, &before), "{total} != {before}");

    // /master/reserve with the pre-refinement format.
    let (status, body) = c
        .post_form(
            "/master/reserve",
            &[("slaveId", &agent), ("resources", &old_format.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let state = c.get_json("/master/state").await;
    let slave = &state["slaves"][0];
    assert_eq!(slave["reserved_resources"]["legacy"]["mem"], 128.0);
    let full = &slave["reserved_resources_full"]["legacy"][0];
    assert_eq!(full["role"], "legacy");
    assert_eq!(full["reservation"]["principal"], "ops");
    assert_eq!(full["reservations"][0]["role"], "legacy");
    assert_eq!(full["reservations"][0]["type"], "DYNAMIC");
    assert_eq!(slave["unreserved_resources"]["mem"], 1024.0 - 128.0);
    assert!(slave["unreserved_resources_full"].is_array());
    assert!(slave["used_resources_full"].is_array());
    // /roles reports the reservation.
    let roles = c.get_json("/roles").await;
    let legacy = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "legacy")
        .cloned()
        .expect("the reserved role in /roles");
    assert_eq!(legacy["reserved"]["mem"], 128.0);
    settled(&c).await;
    assert_eq!(agent_reserved(&c).await["legacy"]["mem"], 128.0);

    // /master/unreserve with the post-refinement format.
    let new_format = json!([reserved("mem", 128.0, &["legacy"])]);
    let (status, body) = c
        .post_form(
            "/master/unreserve",
            &[("slaveId", &agent), ("resources", &new_format.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // /master/create-volumes and /master/destroy-volumes.
    let disk = json!([reserved("disk", 64.0, &["legacy"])]);
    let (status, body) = c
        .post_form(
            "/reserve",
            &[("slaveId", &agent), ("resources", &disk.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let vols = json!([volume(64.0, "legacy", "logs")]);
    let (status, body) = c
        .post_form(
            "/master/create-volumes",
            &[("slaveId", &agent), ("volumes", &vols.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(persistence_ids(&agent_total(&c).await), ["logs"]);
    settled(&c).await;
    assert_eq!(persistence_ids(&agent_total(&c).await), ["logs"]);
    let (status, body) = c
        .post_form(
            "/master/destroy-volumes",
            &[("slaveId", &agent), ("volumes", &vols.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = c
        .post_form(
            "/master/unreserve",
            &[("slaveId", &agent), ("resources", &disk.to_string())],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    settled(&c).await;
    let total = agent_total(&c).await;
    assert!(same(&total, &before), "{total} != {before}");
    assert_eq!(agent_reserved(&c).await, json!({}));

    // Malformed forms: 400 with a message.
    for (path, form, expected) in [
        ("/master/reserve", vec![("resources", "[]")], "slaveId"),
        (
            "/master/reserve",
            vec![("slaveId", agent.as_str())],
            "resources",
        ),
        (
            "/master/reserve",
            vec![("slaveId", agent.as_str()), ("resources", "{not json")],
            "Error in parsing 'resources'",
        ),
        (
            "/master/create-volumes",
            vec![("slaveId", agent.as_str()), ("resources", "[]")],
            "volumes",
        ),
        (
            "/master/reserve",
            vec![
                ("slaveId", "no-such-agent"),
                ("resources", &disk.to_string()),
            ],
            "No agent",
        ),
    ] {
        let (status, body) = c.post_form(path, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {form:?}: {body}");
        assert!(body.contains(expected), "{path} {form:?}: {body}");
    }
    let total = agent_total(&c).await;
    assert!(same(&total, &before), "{total} != {before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_refinement_from_a_to_a_b() {
    let c = Cluster::start(ClusterOptions::default()).await;
    // The operator reserves for `a`.
    let (status, body) = c
        .operator(json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": c.agents[0].id},
            "resources": [reserved("cpus", 1.0, &["a"]), reserved("mem", 256.0, &["a"])]}}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A framework in `a/b` is offered `a`'s reservation and refines it.
    let mut ab = c
        .subscribe_with(Encoding::Json, framework("ab", "a/b"))
        .await;
    let offer = offer_where(&mut ab, "cpus reserved to a", |rs| {
        scalar_of(&json!(reserved_to(rs, "a")), "cpus") == 1.0
    })
    .await;
    ab.accept(
        &offer,
        json!([reserve(
            Some("refine"),
            vec![reserved("cpus", 1.0, &["a", "a/b"])]
        )]),
    )
    .await;
    let status = ab.operation_update("refine").await;
    assert_eq!(status["state"], "OPERATION_FINISHED", "{status}");
    ab.acknowledge_operation(&status).await;
    let offer = offer_where(&mut ab, "cpus reserved to a/b", |rs| {
        scalar_of(&json!(reserved_to(rs, "a/b")), "cpus") == 1.0
    })
    .await;
    let refined = reserved_to(&offer["resources"], "a/b");
    let stack: Vec<&str> = refined[0]["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(stack, ["a", "a/b"]);
    // The agent holds the stack too.
    settled(&c).await;
    assert_eq!(agent_reserved(&c).await["a/b"]["cpus"], 1.0);
    // UNRESERVE pops the refinement only: back to `a`.
    ab.accept(&offer, json!([unreserve(Some("pop"), refined.clone())]))
        .await;
    let status = ab.operation_update("pop").await;
    assert_eq!(status["state"], "OPERATION_FINISHED", "{status}");
    let total = agent_total(&c).await;
    assert_eq!(scalar_of(&json!(reserved_to(&total, "a")), "cpus"), 1.0);
    assert!(reserved_to(&total, "a/b").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_feedback_finished_acknowledged_reconciled_and_errors() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut s = c
        .subscribe_with(Encoding::Json, framework("fb", "fb"))
        .await;
    let offer = s.offers().await.remove(0);
    s.accept(
        &offer,
        json!([reserve(Some("ok"), vec![reserved("mem", 64.0, &["fb"])])]),
    )
    .await;
    let status = s.operation_update("ok").await;
    assert_eq!(status["state"], "OPERATION_FINISHED", "{status}");
    assert!(status["uuid"]["value"].is_string(), "{status}");
    // Not acknowledged yet: reconciliation reports it, without a uuid.
    s.reconcile_operations(&[]).await;
    let r = s.operation_update("ok").await;
    assert_eq!(r["state"], "OPERATION_FINISHED", "{r}");
    assert!(r.get("uuid").is_none(), "{r}");
    s.acknowledge_operation(&status).await;
    // Once acknowledged, the master forgets it; unknown ones are UNKNOWN.
    let ok = wait_for(TIMEOUT, || async {
        let (_, body) = c.operator(json!({"type": "GET_OPERATIONS"})).await;
        body["get_operations"]["operations"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    })
    .await;
    assert!(ok, "the acknowledged operation is still tracked");
    s.reconcile_operations(&["ok", "never"]).await;
    assert_eq!(s.operation_update("ok").await["state"], "OPERATION_UNKNOWN");
    assert_eq!(
        s.operation_update("never").await["state"],
        "OPERATION_UNKNOWN"
    );
    // An invalid operation with an id: OPERATION_ERROR with the reason.
    let offer = s.offers().await.remove(0);
    s.accept(
        &offer,
        json!([reserve(Some("bad"), vec![reserved("cpus", 64.0, &["fb"])])]),
    )
    .await;
    let status = s.operation_update("bad").await;
    assert_eq!(status["state"], "OPERATION_ERROR", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or("")
            .contains("do not contain"),
        "{status}"
    );
    assert!(c.metric("master/operations/finished").await >= Some(1.0));
    assert!(c.metric("master/operations/error").await >= Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_volume_is_offered_to_its_role_and_destroy_returns_the_disk() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let mut db = c
        .subscribe_with(Encoding::Json, framework("db", "db"))
        .await;
    let offer = db.offers().await.remove(0);
    db.accept(
        &offer,
        json!([
            reserve(Some("r"), vec![reserved("disk", 256.0, &["db"])]),
            create(Some("c"), vec![volume(128.0, "db", "pg")]),
        ]),
    )
    .await;
    for id in ["r", "c"] {
        let status = db.operation_update(id).await;
        assert_eq!(status["state"], "OPERATION_FINISHED", "{id}: {status}");
        db.acknowledge_operation(&status).await;
    }
    // The volume comes in the next offer to the role, with its id.
    let offer = offer_where(&mut db, "volume pg", |rs| persistence_ids(rs) == ["pg"]).await;
    let vol = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["disk"]["persistence"]["id"] == "pg")
        .cloned()
        .unwrap();
    assert_eq!(vol["scalar"]["value"], 128.0);
    assert_eq!(vol["disk"]["volume"]["container_path"], "data");
    assert_eq!(role_of(&vol), "db");
    // Another role never sees it, even while db holds no offer.
    db.decline(std::slice::from_ref(&offer), 3600.0).await;
    let mut other = c
        .subscribe_with(Encoding::Json, framework("other", "other"))
        .await;
    let offers = other.offers().await;
    for o in &offers {
        assert!(persistence_ids(&o["resources"]).is_empty(), "{o}");
        assert!(reserved_to(&o["resources"], "db").is_empty(), "{o}");
    }
    other.decline(&offers, 3600.0).await;
    db.call_ok(json!({"type": "REVIVE"})).await;
    let offer = offer_where(&mut db, "volume pg", |rs| persistence_ids(rs) == ["pg"]).await;
    // DESTROY gives the reserved disk back (no volume), UNRESERVE the rest.
    db.accept(&offer, json!([destroy(Some("d"), vec![vol.clone()])]))
        .await;
    assert_eq!(
        db.operation_update("d").await["state"],
        "OPERATION_FINISHED"
    );
    let offer = offer_where(&mut db, "256 MB of disk reserved to db, no volume", |rs| {
        persistence_ids(rs).is_empty() && scalar_of(&json!(reserved_to(rs, "db")), "disk") == 256.0
    })
    .await;
    db.accept(
        &offer,
        json!([unreserve(Some("u"), reserved_to(&offer["resources"], "db"))]),
    )
    .await;
    assert_eq!(
        db.operation_update("u").await["state"],
        "OPERATION_FINISHED"
    );
    assert!(reserved_to(&agent_total(&c).await, "db").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_message_and_changes_nothing() {
    let c = Cluster::start(ClusterOptions::default()).await;
    let agent = c.agents[0].id.clone();
    let mut db = c
        .subscribe_with(Encoding::Json, framework("db", "db"))
        .await;
    // A volume a task uses.
    let offer = db.offers().await.remove(0);
    db.accept(
        &offer,
        json!([
            reserve(None, vec![reserved("disk", 128.0, &["db"])]),
            create(Some("vol"), vec![volume(128.0, "db", "busy")]),
            {"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "user",
                "task_id": {"value": "user"},
                "agent_id": {"value": agent},
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 64.0}},
                    volume(128.0, "db", "busy"),
                ],
                "command": {"shell": true, "value": "sleep 1000"},
            }]}},
        ]),
    )
    .await;
    assert_eq!(
        db.operation_update("vol").await["state"],
        "OPERATION_FINISHED"
    );
    db.follow("user", "TASK_RUNNING").await;
    settled(&c).await;
    let before = snapshot(&c).await;

    // Operator API.
    let reserve_call = |rs: Value| {
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent}, "resources": rs}})
    };
    let mut unreserved_volume = volume(64.0, "db", "x");
    unreserved_volume
        .as_object_mut()
        .unwrap()
        .remove("reservations");
    let cases = [
        (
            "reserving more than is free",
            reserve_call(json!([reserved("cpus", 3.0, &["db"])])),
            StatusCode::CONFLICT,
            "do not contain",
        ),
        (
            "unreserving what is not reserved",
            json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
                "agent_id": {"value": agent},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}]}}),
            StatusCode::BAD_REQUEST,
            "not reserved",
        ),
        (
            "unreserving a reservation the agent does not have",
            json!({"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
                "agent_id": {"value": agent},
                "resources": [reserved("cpus", 1.0, &["nobody"])]}}),
            StatusCode::CONFLICT,
            "do not contain",
        ),
        (
            "a volume on unreserved disk",
            json!({"type": "CREATE_VOLUMES", "create_volumes": {
                "agent_id": {"value": agent}, "volumes": [unreserved_volume]}}),
            StatusCode::BAD_REQUEST,
            "reserved disk",
        ),
        (
            "DESTROY of a volume in use",
            json!({"type": "DESTROY_VOLUMES", "destroy_volumes": {
                "agent_id": {"value": agent}, "volumes": [volume(128.0, "db", "busy")]}}),
            StatusCode::CONFLICT,
            "in use",
        ),
        (
            "an unknown agent",
            json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
                "agent_id": {"value": "nope"}, "resources": [reserved("cpus", 1.0, &["db"])]}}),
            StatusCode::BAD_REQUEST,
            "No agent",
        ),
    ];
    for (what, call, code, expected) in cases {
        let (status, body) = c.operator(call).await;
        assert_eq!(status, code, "{what}: {body}");
        assert!(
            body.as_str().unwrap_or("").contains(expected),
            "{what}: {body}"
        );
        assert_eq!(snapshot(&c).await, before, "{what} changed the state");
    }
    // The legacy endpoint says the same.
    let (status, body) = c
        .post_form(
            "/master/reserve",
            &[
                ("slaveId", &agent),
                (
                    "resources",
                    &json!([reserved("mem", 4096.0, &["db"])]).to_string(),
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("do not contain"), "{body}");

    // Frameworks: OPERATION_ERROR with the reason, nothing changes.
    let mut wrong = reserved("cpus", 0.5, &["db"]);
    wrong["reservations"][0]["principal"] = json!("mallory");
    let mut bare = volume(32.0, "db", "bare");
    bare.as_object_mut().unwrap().remove("reservations");
    for (id, operation, expected) in [
        (
            "principal",
            reserve(Some("principal"), vec![wrong]),
            "does not match",
        ),
        (
            "more",
            reserve(Some("more"), vec![reserved("cpus", 8.0, &["db"])]),
            "do not contain",
        ),
        ("bare", create(Some("bare"), vec![bare]), "reserved disk"),
        (
            "busy",
            destroy(Some("busy"), vec![volume(128.0, "db", "busy")]),
            "in use",
        ),
    ] {
        let offer = db.offers().await.remove(0);
        db.accept(&offer, json!([operation])).await;
        let status = db.operation_update(id).await;
        assert_eq!(status["state"], "OPERATION_ERROR", "{id}: {status}");
        assert!(
            status["message"].as_str().unwrap_or("").contains(expected),
            "{id}: {status}"
        );
        assert_eq!(snapshot(&c).await, before, "{id} changed the state");
    }
    // The agent agrees: the volume is still there, no stray reservation.
    let reserved = agent_reserved(&c).await;
    assert_eq!(reserved["db"]["disk"], 128.0, "{reserved}");
    assert!(reserved.get("nobody").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_volumes_come_back_after_a_master_restart() {
    let registry = tempfile::tempdir().expect("master work dir");
    let mut c = Cluster::start(ClusterOptions {
        master_flags: vec![format!("--work_dir={}", registry.path().display())],
        ..Default::default()
    })
    .await;
    let agent = c.agents[0].id.clone();
    for call in [
        json!({"type": "RESERVE_RESOURCES", "reserve_resources": {
            "agent_id": {"value": agent},
            "resources": [reserved("cpus", 1.0, &["db"]), reserved("mem", 128.0, &["db"]),
                          reserved("disk", 256.0, &["db"])]}}),
        json!({"type": "CREATE_VOLUMES", "create_volumes": {
            "agent_id": {"value": agent}, "volumes": [volume(128.0, "db", "pg")]}}),
    ] {
        let (status, body) = c.operator(call).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    settled(&c).await;
    // A framework's operation whose status it does not acknowledge.
    let mut db = c
        .subscribe_with(Encoding::Json, framework("db", "db"))
        .await;
    let offer = offer_where(&mut db, "unreserved mem", |rs| scalar_of(rs, "mem") >= 64.0).await;
    db.accept(
        &offer,
        json!([reserve(Some("keep"), vec![reserved("mem", 64.0, &["db"])])]),
    )
    .await;
    let first = db.operation_update("keep").await;
    assert_eq!(first["state"], "OPERATION_FINISHED", "{first}");
    settled(&c).await;
    let before = agent_total(&c).await;
    let mut info = framework("db", "db");
    info["id"] = json!({"value": db.framework_id});
    drop(db);

    // kill -9 of the master; the registry holds no reservation: the agent
    // brings them back when it re-registers.
    c.restart_master().await;
    let ok = wait_for(TIMEOUT, || async { same(&agent_total(&c).await, &before) }).await;
    assert!(ok, "the new master's view: {}", agent_total(&c).await);
    // The framework re-subscribes and gets the status it never
    // acknowledged, from the new master (learned from the agent).
    let mut db = c.subscribe_with(Encoding::Json, info).await;
    let again = db.operation_update("keep").await;
    assert_eq!(again["state"], "OPERATION_FINISHED", "{again}");
    assert_eq!(again["uuid"], first["uuid"]);
    db.acknowledge_operation(&again).await;
    let offer = offer_where(&mut db, "the volume and the reservation", |rs| {
        persistence_ids(rs) == ["pg"] && scalar_of(&json!(reserved_to(rs, "db")), "cpus") == 1.0
    })
    .await;
    let db_res = json!(reserved_to(&offer["resources"], "db"));
    assert_eq!(scalar_of(&db_res, "disk"), 256.0);
    assert_eq!(scalar_of(&db_res, "mem"), 128.0 + 64.0);
    // Another role gets none of it.
    db.decline(std::slice::from_ref(&offer), 3600.0).await;
    let mut other = c
        .subscribe_with(Encoding::Json, framework("other", "other"))
        .await;
    for o in other.offers().await {
        assert!(reserved_to(&o["resources"], "db").is_empty(), "{o}");
    }
    // The acknowledgement reached the agent: nothing is tracked any more.
    let ok = wait_for(TIMEOUT, || async {
        let (_, body) = c.operator(json!({"type": "GET_OPERATIONS"})).await;
        body["get_operations"]["operations"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    })
    .await;
    assert!(ok, "operations still tracked after the acknowledgement");
}
