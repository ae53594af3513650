use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn plus(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs))
        .expect("time")
}

fn job(id: &str, extra: serde_json::Value) -> Request {
    let mut doc = json!({"id": id, "requestType": "SCHEDULED"});
    for (k, v) in extra.as_object().expect("object") {
        doc[k] = v.clone();
    }
    serde_json::from_value(doc).expect("request")
}

fn launches(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Launch { run_id, .. } => Some(run_id.clone()),
            _ => None,
        })
        .collect()
}

fn outcomes(jobs: &Jobs, id: &str) -> Vec<Outcome> {
    jobs.runs(id).iter().map(|r| r.outcome.clone()).collect()
}

const T0: &str = "2026-06-01T00:00:30Z";

#[test]
fn due_runs_start_once_each() {
    let mut jobs = Jobs::new();
    jobs.upsert(
        &job("every-minute", json!({"schedule": "* * * * *"})),
        at(T0),
    )
    .expect("upsert");
    assert_eq!(
        jobs.next_due("every-minute"),
        Some(at("2026-06-01T00:01:00Z"))
    );
    assert!(jobs.tick(at("2026-06-01T00:00:59Z")).is_empty());
    let first = jobs.tick(at("2026-06-01T00:01:00Z"));
    assert_eq!(launches(&first).len(), 1);
    assert!(
        jobs.tick(at("2026-06-01T00:01:30Z")).is_empty(),
        "not twice"
    );
    let run = &jobs.runs("every-minute")[0];
    assert_eq!(run.scheduled_for, at("2026-06-01T00:01:00Z"));
    jobs.run_started("every-minute", &run.run_id.clone(), at(T0));
    let id = jobs.runs("every-minute")[0].run_id.clone();
    assert!(jobs
        .run_finished("every-minute", &id, Ok(()), at("2026-06-01T00:01:10Z"))
        .is_empty());
    assert_eq!(launches(&jobs.tick(at("2026-06-01T00:02:00Z"))).len(), 1);
    assert_eq!(outcomes(&jobs, "every-minute")[0], Outcome::Succeeded);
}

#[test]
fn a_gap_without_a_leader_records_missed_runs_with_the_reason() {
    let mut jobs = Jobs::new();
    jobs.upsert(
        &job(
            "m",
            json!({"schedule": "* * * * *", "latenessAllowanceMillis": 60000}),
        ),
        at(T0),
    )
    .expect("upsert");
    // Nobody ticks from 00:00:30 to 00:05:30 (the leader died; the new one
    // starts from the stored state).
    let stored = jobs.clone();
    let mut new_leader = stored;
    let cmds = new_leader.tick(at("2026-06-01T00:05:30Z"));
    let runs = new_leader.runs("m");
    assert_eq!(runs.len(), 5, "00:01..00:05, each accounted for");
    for r in &runs[..4] {
        match &r.outcome {
            Outcome::Missed(reason) => assert!(reason.contains("lateness allowance"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        runs[4].outcome,
        Outcome::Launching,
        "00:05 is 30 s late: within the allowance"
    );
    assert_eq!(launches(&cmds).len(), 1);
    // The state written after that tick, read by yet another leader: the
    // due times it handled are not handled again.
    let mut third = new_leader.clone();
    assert!(third.tick(at("2026-06-01T00:05:40Z")).is_empty());
    assert_eq!(third.runs("m").len(), 5);
}

#[test]
fn concurrency_policies() {
    for (policy, want_launch, want_kill) in [("SKIP", 0, 0), ("ALLOW", 1, 0), ("REPLACE", 1, 1)] {
        let mut jobs = Jobs::new();
        jobs.upsert(
            &job(
                "c",
                json!({"schedule": "* * * * *", "concurrencyPolicy": policy}),
            ),
            at(T0),
        )
        .expect("upsert");
        let first = launches(&jobs.tick(at("2026-06-01T00:01:00Z")));
        jobs.run_started("c", &first[0], at(T0));
        let cmds = jobs.tick(at("2026-06-01T00:02:00Z"));
        assert_eq!(launches(&cmds).len(), want_launch, "{policy}");
        let kills = cmds
            .iter()
            .filter(|c| matches!(c, Command::Kill { .. }))
            .count();
        assert_eq!(kills, want_kill, "{policy}");
        let last = outcomes(&jobs, "c").last().cloned().expect("a run");
        if policy == "SKIP" {
            assert!(matches!(last, Outcome::Skipped(_)), "{last:?}");
        }
        if policy == "REPLACE" {
            assert_eq!(outcomes(&jobs, "c")[0], Outcome::Replaced);
        }
    }
}

#[test]
fn failures_are_retried_with_backoff_then_given_up() {
    let mut jobs = Jobs::new();
    jobs.upsert(
        &job(
            "r",
            json!({"schedule": "0 * * * *", "numRetriesOnFailure": 2}),
        ),
        at(T0),
    )
    .expect("upsert");
    let t = at("2026-06-01T01:00:00Z");
    let run = launches(&jobs.tick(t)).remove(0);
    jobs.run_finished("r", &run, Err("exit 1".into()), plus(t, 1));
    assert!(jobs.tick(plus(t, 5)).is_empty(), "first retry after 5 s");
    let retry1 = launches(&jobs.tick(plus(t, 6))).remove(0);
    jobs.run_finished("r", &retry1, Err("exit 1".into()), plus(t, 7));
    assert!(jobs.tick(plus(t, 16)).is_empty(), "second retry after 10 s");
    let retry2 = launches(&jobs.tick(plus(t, 17))).remove(0);
    jobs.run_finished("r", &retry2, Err("exit 1".into()), plus(t, 18));
    assert!(jobs.tick(plus(t, 600)).is_empty(), "no third retry");
    let attempts: Vec<u32> = jobs.runs("r").iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [0, 1, 2]);
    assert!(jobs.runs("r").iter().all(|r| r.scheduled_for == t));
}

#[test]
fn runs_past_the_timeout_are_killed() {
    let mut jobs = Jobs::new();
    jobs.upsert(
        &job(
            "t",
            json!({"schedule": "0 * * * *", "killOldNonLongRunningTasksAfterMillis": 10000}),
        ),
        at(T0),
    )
    .expect("upsert");
    let t = at("2026-06-01T01:00:00Z");
    let run = launches(&jobs.tick(t)).remove(0);
    jobs.run_started("t", &run, at(T0));
    assert!(jobs.tick(plus(t, 9)).is_empty());
    let cmds = jobs.tick(plus(t, 10));
    assert_eq!(
        cmds,
        [Command::Kill {
            job: "t".into(),
            run_id: run.clone()
        }]
    );
    assert_eq!(outcomes(&jobs, "t"), [Outcome::TimedOut]);
    // The kill's own report changes nothing.
    jobs.run_finished("t", &run, Err("killed".into()), plus(t, 11));
    assert_eq!(outcomes(&jobs, "t"), [Outcome::TimedOut]);
}

#[test]
fn dependent_jobs_run_in_order_and_cycles_are_refused() {
    let mut jobs = Jobs::new();
    jobs.upsert(&job("a", json!({"schedule": "0 * * * *"})), at(T0))
        .expect("a");
    jobs.upsert(&job("b", json!({"dependsOn": ["a"]})), at(T0))
        .expect("b");
    jobs.upsert(&job("c", json!({"dependsOn": ["b"]})), at(T0))
        .expect("c");
    assert_eq!(
        jobs.upsert(&job("x", json!({"dependsOn": ["nope"]})), at(T0)),
        Err(JobError::UnknownParent("nope".into()))
    );
    let cycle = jobs.upsert(
        &job("a", json!({"schedule": "0 * * * *", "dependsOn": ["c"]})),
        at(T0),
    );
    assert!(matches!(cycle, Err(JobError::Cycle(_))), "{cycle:?}");
    assert!(
        jobs.next_due("a").is_some(),
        "the refused change changed nothing"
    );

    let t = at("2026-06-01T01:00:00Z");
    let a = launches(&jobs.tick(t));
    assert_eq!(a.len(), 1, "only a is scheduled");
    let b = launches(&jobs.run_finished("a", &a[0], Ok(()), plus(t, 5)));
    assert_eq!(b.len(), 1);
    assert_eq!(jobs.runs("b").len(), 1);
    assert!(jobs.runs("c").is_empty(), "c waits for b");
    let c = launches(&jobs.run_finished("b", &b[0], Ok(()), plus(t, 9)));
    assert_eq!(c.len(), 1);
    assert_eq!(jobs.runs("c").len(), 1);
    // A failed parent triggers nothing.
    let a2 = launches(&jobs.tick(at("2026-06-01T02:00:00Z")));
    assert!(jobs
        .run_finished(
            "a",
            &a2[0],
            Err("exit 2".into()),
            at("2026-06-01T02:00:05Z")
        )
        .is_empty());
    assert_eq!(jobs.runs("b").len(), 1);
}

#[test]
fn paused_jobs_record_missed_runs_and_run_now_starts_one() {
    let mut jobs = Jobs::new();
    jobs.upsert(&job("p", json!({"schedule": "* * * * *"})), at(T0))
        .expect("upsert");
    jobs.set_paused("p", true).expect("pause");
    assert!(jobs.tick(at("2026-06-01T00:01:00Z")).is_empty());
    assert_eq!(
        outcomes(&jobs, "p"),
        [Outcome::Missed("the job was paused".into())]
    );
    jobs.set_paused("p", false).expect("unpause");
    assert_eq!(
        launches(
            &jobs
                .run_now("p", at("2026-06-01T00:01:10Z"))
                .expect("run now")
        )
        .len(),
        1
    );
    assert_eq!(
        jobs.run_now("nope", at(T0)),
        Err(JobError::UnknownJob("nope".into()))
    );
    let kills = jobs.remove("p");
    assert_eq!(kills.len(), 1, "removing a job kills its running run");
}

#[test]
fn a_new_leader_importing_the_state_runs_or_misses_what_came_due_meanwhile() {
    let mut old = Jobs::new();
    let request = job(
        "j",
        json!({"schedule": "* * * * *", "latenessAllowanceMillis": 90000}),
    );
    old.upsert(&request, at(T0)).expect("upsert");
    let running = launches(&old.tick(at("2026-06-01T00:01:00Z"))).remove(0);
    old.run_started("j", &running, at(T0));
    let stored = serde_json::to_string(&old.export("j").expect("export")).expect("json");
    // The old leader dies; a new one starts at 00:04:10 from the store.
    let mut new = Jobs::new();
    new.upsert(&request, at("2026-06-01T00:04:10Z"))
        .expect("upsert");
    let record: JobRecord = serde_json::from_str(&stored).expect("record");
    let in_flight = new
        .import("j", record, at("2026-06-01T00:04:10Z"))
        .expect("import");
    // The run going at the failover is re-attached, not failed.
    assert_eq!(in_flight, vec![running.clone()]);
    assert_eq!(new.runs("j")[0].outcome, Outcome::Running);
    let cmds = new.tick(at("2026-06-01T00:04:10Z"));
    let outcomes: Vec<Outcome> = new.runs("j").iter().map(|r| r.outcome.clone()).collect();
    // 00:02 is 130 s late: missed; 00:03 (70 s) and 00:04 (10 s): skipped
    // while 00:01's run still goes (the default SKIP policy).
    assert!(matches!(outcomes[1], Outcome::Missed(_)), "{outcomes:?}");
    assert!(matches!(outcomes[2], Outcome::Skipped(_)), "{outcomes:?}");
    assert!(matches!(outcomes[3], Outcome::Skipped(_)), "{outcomes:?}");
    assert!(launches(&cmds).is_empty());
    // The re-attached run ends as its task reports.
    new.run_finished("j", &running, Ok(()), at("2026-06-01T00:04:20Z"));
    assert_eq!(new.runs("j")[0].outcome, Outcome::Succeeded);
    // 00:05 runs.
    let cmds = new.tick(at("2026-06-01T00:05:00Z"));
    assert_eq!(launches(&cmds).len(), 1);
    let ids: std::collections::BTreeSet<&str> =
        new.runs("j").iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 5, "run ids stay unique across leaders");
}

#[test]
fn re_attached_runs_the_master_does_not_know_are_launched_or_failed() {
    let mut old = Jobs::new();
    let request = job("j", json!({"schedule": "* * * * *"}));
    old.upsert(&request, at(T0)).expect("upsert");
    let decided = launches(&old.tick(at("2026-06-01T00:01:00Z"))).remove(0);
    let record = old.export("j").expect("export");
    let mut new = Jobs::new();
    new.upsert(&request, at("2026-06-01T00:01:05Z"))
        .expect("upsert");
    assert_eq!(
        new.import("j", record.clone(), at("2026-06-01T00:01:05Z"))
            .expect("import"),
        vec![decided.clone()]
    );
    // Decided but never launched: launched now, under the same run id.
    let cmds = new.run_unknown("j", &decided, at("2026-06-01T00:01:06Z"));
    assert_eq!(launches(&cmds), vec![decided.clone()]);
    assert_eq!(new.runs("j").len(), 1, "no second run");
    // Running, then unknown to the master: lost, so failed.
    new.run_started("j", &decided, at(T0));
    let cmds = new.run_unknown("j", &decided, at("2026-06-01T00:01:07Z"));
    assert!(launches(&cmds).is_empty());
    assert!(
        matches!(&new.runs("j")[0].outcome, Outcome::Failed(m) if m.contains("unknown to the master"))
    );
    // A finished run is left alone.
    assert!(new
        .run_unknown("j", &decided, at("2026-06-01T00:01:08Z"))
        .is_empty());
}

#[test]
fn history_is_bounded_and_keeps_runs_still_going() {
    let mut jobs = Jobs::new();
    jobs.upsert(
        &job(
            "h",
            json!({"schedule": "* * * * *", "concurrencyPolicy": "ALLOW"}),
        ),
        at(T0),
    )
    .expect("upsert");
    let first = launches(&jobs.tick(at("2026-06-01T00:01:00Z"))).remove(0);
    jobs.run_started("h", &first, at(T0));
    let mut t = at("2026-06-01T00:01:00Z");
    for _ in 0..150 {
        t = plus(t, 60);
        for id in launches(&jobs.tick(t)) {
            jobs.run_finished("h", &id, Ok(()), t);
        }
    }
    let runs = jobs.runs("h");
    assert_eq!(runs.len(), HISTORY);
    assert_eq!(runs[0].run_id, first, "the run still going is kept");
    assert_eq!(runs.last().map(|r| r.scheduled_for), Some(t));
}

proptest! {
    /// However the ticks are spread (a leader ticking often, or gaps of
    /// minutes while none leads), every scheduled time is accounted for
    /// exactly once: started, skipped or missed — never twice, never lost.
    #[test]
    fn every_due_time_is_accounted_for_exactly_once(
        // At most 40 ticks up to 130 s apart: fewer due times than the
        // history keeps.
        gaps in proptest::collection::vec(1i64..130, 1..40),
        lateness in 0u64..120_000,
        finish_quickly in any::<bool>(),
    ) {
        let mut jobs = Jobs::new();
        let start = at("2026-06-01T00:00:00Z");
        jobs.upsert(
            &job("p", json!({"schedule": "* * * * *", "latenessAllowanceMillis": lateness,
                             "concurrencyPolicy": "ALLOW"})),
            start,
        ).expect("upsert");
        let mut now = start;
        for g in &gaps {
            now = plus(now, *g);
            for cmd in jobs.tick(now) {
                if let (Command::Launch { run_id, .. }, true) = (cmd, finish_quickly) {
                    jobs.run_finished("p", &run_id, Ok(()), now);
                }
            }
        }
        let due: Vec<Timestamp> = {
            let s = Schedule::parse("* * * * *", None).expect("cron");
            let mut v = Vec::new();
            let mut t = start;
            while let Some(n) = s.next_after(t).filter(|n| *n <= now) {
                v.push(n);
                t = n;
            }
            v
        };
        let mut seen: Vec<Timestamp> = jobs.runs("p").iter().map(|r| r.scheduled_for).collect();
        seen.sort();
        prop_assert_eq!(seen, due);
    }
}
