use super::*;
use corral_api::resources::{parse, Resources};

fn res(s: &str) -> Resources {
    Resources::from_vec(&parse(s).unwrap())
}

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

const T0: Duration = Duration::ZERO;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Sum of a scalar over allocations to `framework`.
fn total(out: &[Allocation], framework: &str, name: &str) -> f64 {
    out.iter()
        .filter(|a| a.framework == framework)
        .map(|a| a.resources.scalar(name))
        .sum()
}

#[test]
fn offers_whole_agent_to_lowest_share() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]);
    a.add_agent("a2", res("cpus:4;mem:1024"), &[]);
    a.add_framework("f1", roles(&["*"]), true);
    a.add_framework("f2", roles(&["*"]), true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 2);
    assert_ne!(out[0].framework, out[1].framework);
    // Offers carry the role they are allocated to.
    assert!(out.iter().all(|o| o
        .resources
        .as_slice()
        .iter()
        .all(|r| { r.allocation_info.as_ref().and_then(|i| i.role.as_deref()) == Some("*") })));
    assert!(a.allocate(T0).is_empty());
}

#[test]
fn drf_example_from_the_mesos_paper() {
    // One agent of 9 CPUs and 18 GB. f1 runs <1 CPU, 4 GB> tasks, f2
    // <3 CPUs, 1 GB> tasks. Each takes one task's worth per offer and
    // returns the rest; DRF ends with f1: 3 tasks, f2: 2 tasks, both at a
    // dominant share of 2/3.
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:9;mem:18432"), &[]);
    a.add_framework("f1", roles(&["*"]), true);
    a.add_framework("f2", roles(&["*"]), true);
    let task = |fw: &str| {
        if fw == "f1" {
            res("cpus:1;mem:4096")
        } else {
            res("cpus:3;mem:1024")
        }
    };
    let mut launched: HashMap<String, usize> = HashMap::new();
    let mut t = Duration::ZERO;
    for _ in 0..20 {
        t += secs(1);
        let Some(offer) = a.allocate(t).into_iter().next() else {
            break;
        };
        let want = task(&offer.framework).allocated_to("*");
        if offer.resources.contains(&want) {
            let mut rest = offer.resources.clone();
            rest.subtract_all(&want);
            a.recover(&offer.framework, "a", &rest, None);
            *launched.entry(offer.framework.clone()).or_default() += 1;
        } else {
            a.recover(
                &offer.framework,
                "a",
                &offer.resources,
                Some((t, secs(3600))),
            );
        }
    }
    assert_eq!(launched.get("f1"), Some(&3));
    assert_eq!(launched.get("f2"), Some(&2));
    assert!((a.dominant_share("f1") - 2.0 / 3.0).abs() < 1e-9);
    assert!((a.dominant_share("f2") - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn weight_two_gets_twice_the_dominant_share() {
    let mut a = Allocator::default();
    for i in 0..30 {
        a.add_agent(&format!("a{i:02}"), res("cpus:1;mem:1024"), &[]);
    }
    a.update_weights(&[("heavy".into(), 2.0)]);
    a.add_framework("h", roles(&["heavy"]), true);
    a.add_framework("l", roles(&["light"]), true);
    let out = a.allocate(T0);
    assert_eq!(total(&out, "h", "cpus"), 20.0);
    assert_eq!(total(&out, "l", "cpus"), 10.0);
    assert!((a.role_share("heavy") - a.role_share("light")).abs() < 1e-9);
}

#[test]
fn hierarchical_roles_share_at_every_level() {
    let mut a = Allocator::default();
    for i in 0..12 {
        a.add_agent(&format!("a{i:02}"), res("cpus:1;mem:1024"), &[]);
    }
    a.add_framework("spark", roles(&["eng/spark"]), true);
    a.add_framework("etl", roles(&["eng/etl"]), true);
    a.add_framework("ops", roles(&["ops"]), true);
    let out = a.allocate(T0);
    // eng and ops split the cluster; eng's half is split again.
    assert_eq!(total(&out, "ops", "cpus"), 6.0);
    assert_eq!(total(&out, "spark", "cpus"), 3.0);
    assert_eq!(total(&out, "etl", "cpus"), 3.0);
}

#[test]
fn multi_role_frameworks_get_offers_for_each_role() {
    let mut a = Allocator::default();
    a.add_agent("r", res("cpus(a):2;mem(a):256"), &[]);
    a.add_agent("s", res("cpus(b):2;mem(b):256"), &[]);
    a.add_framework("m", roles(&["a", "b"]), true);
    let out = a.allocate(T0);
    let mut got: Vec<(String, String)> = out
        .iter()
        .map(|o| (o.agent.clone(), o.role.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("r".into(), "a".into()), ("s".into(), "b".into())]
    );
}

#[test]
fn quota_guarantee_is_met_before_fair_sharing() {
    let mut a = Allocator::default();
    for i in 0..10 {
        a.add_agent(&format!("a{i}"), res("cpus:1;mem:128"), &[]);
    }
    a.add_framework("q", roles(&["prod"]), true);
    a.add_framework("x", roles(&["dev"]), true);
    a.update_quota(
        "prod",
        Some(&Quota {
            guarantees: [("cpus".to_string(), 7.0)].into(),
            limits: BTreeMap::new(),
        }),
    );
    let out = a.allocate(T0);
    // Plain DRF would split 5/5; the guarantee comes first.
    assert_eq!(total(&out, "q", "cpus"), 7.0);
    assert_eq!(total(&out, "x", "cpus"), 3.0);
}

#[test]
fn unmet_guarantees_are_held_back_from_others() {
    let mut a = Allocator::default();
    for i in 0..10 {
        a.add_agent(&format!("a{i}"), res("cpus:1;mem:128"), &[]);
    }
    // prod's framework is connected but not active: nobody can use the
    // guarantee now, and nobody else may take it.
    a.add_framework("q", roles(&["prod"]), false);
    a.add_framework("x", roles(&["dev"]), true);
    a.update_quota(
        "prod",
        Some(&Quota {
            guarantees: [("cpus".to_string(), 6.0)].into(),
            limits: BTreeMap::new(),
        }),
    );
    let out = a.allocate(T0);
    assert_eq!(total(&out, "x", "cpus"), 4.0);
    // When prod's framework arrives it gets its guarantee.
    a.set_framework_active("q", true);
    let out = a.allocate(secs(1));
    assert_eq!(total(&out, "q", "cpus"), 6.0);
}

#[test]
fn quota_limits_are_never_exceeded() {
    let mut a = Allocator::default();
    for i in 0..10 {
        a.add_agent(&format!("a{i}"), res("cpus:1;mem:128"), &[]);
    }
    a.add_framework("l", roles(&["capped/sub"]), true);
    a.update_quota(
        "capped",
        Some(&Quota {
            guarantees: BTreeMap::new(),
            limits: [("cpus".to_string(), 3.5)].into(),
        }),
    );
    let out = a.allocate(T0);
    assert_eq!(total(&out, "l", "cpus"), 3.5);
    let info = a.roles().into_iter().find(|r| r.name == "capped").unwrap();
    assert_eq!(info.consumed.get("cpus"), Some(&3.5));
    // Nothing more, however many cycles run.
    assert_eq!(total(&a.allocate(secs(1)), "l", "cpus"), 0.0);
}

#[test]
fn filters_expire_and_revive_clears_them() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:1;mem:128"), &[]);
    a.add_framework("f", roles(&["*"]), true);
    let o = a.allocate(T0).remove(0);
    a.recover("f", "a", &o.resources, Some((T0, secs(5))));
    assert_eq!(a.active_filters(T0), 1);
    assert!(a.allocate(secs(4)).is_empty());
    // Expiry makes the agent eligible for prompt allocation too.
    let o = a.allocate_changed(secs(6));
    assert_eq!(o.len(), 1, "filter expired");
    a.recover("f", "a", &o[0].resources, Some((secs(6), secs(100))));
    assert!(a.allocate(secs(7)).is_empty());
    a.revive("f", &[]);
    assert_eq!(a.allocate_changed(secs(7)).len(), 1);
}

#[test]
fn suppress_and_revive_per_role() {
    let mut a = Allocator::default();
    a.add_agent("r", res("cpus(a):1;mem(a):128"), &[]);
    a.add_agent("s", res("cpus(b):1;mem(b):128"), &[]);
    a.add_framework("f", roles(&["a", "b"]), true);
    a.suppress("f", &roles(&["a"]));
    let out = a.allocate(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].role, "b");
    a.revive("f", &roles(&["a"]));
    let out = a.allocate_changed(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].role, "a");
}

#[test]
fn inactive_frameworks_get_nothing() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:1;mem:128"), &[]);
    a.add_framework("f", roles(&["*"]), false);
    assert!(a.allocate(T0).is_empty());
    a.set_framework_active("f", true);
    assert_eq!(a.allocate(T0).len(), 1);
}

#[test]
fn reserved_resources_only_reach_their_role_subtree() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus(eng):2;mem(eng):256"), &[]);
    a.add_framework("other", roles(&["ops"]), true);
    a.add_framework("parent", roles(&["*"]), true);
    assert!(a.allocate(T0).is_empty());
    a.add_framework("eng", roles(&["eng/spark"]), true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].framework, "eng");
    assert_eq!(out[0].role, "eng/spark");
}

#[test]
fn min_allocatable_resources_are_respected() {
    let mut a = Allocator::new(MinAllocatable::parse("cpus:2;mem:64").unwrap());
    a.add_agent("small", res("cpus:1;mem:1024"), &[]);
    a.add_agent("big", res("cpus:2;mem:64"), &[]);
    a.add_framework("f", roles(&["*"]), true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].agent, "big");
    assert!(MinAllocatable::parse("cpus").is_err());
    assert!(MinAllocatable::parse("cpus:-1").is_err());
}

#[test]
fn removing_a_framework_recovers_its_resources() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:2;mem:256"), &[]);
    a.add_framework("f", roles(&["*"]), true);
    assert_eq!(a.allocate(T0).len(), 1);
    a.remove_framework("f");
    assert_eq!(a.available("a"), res("cpus:2;mem:256"));
}

#[test]
fn used_resources_count_on_re_registration() {
    let mut a = Allocator::default();
    a.add_framework("f", roles(&["*"]), true);
    a.add_framework("g", roles(&["*"]), true);
    a.add_agent(
        "a",
        res("cpus:4;mem:1024"),
        &[("f".into(), res("cpus:3;mem:512").allocated_to("*"))],
    );
    assert!((a.dominant_share("f") - 0.75).abs() < 1e-9);
    let out = a.allocate(T0);
    assert_eq!(out[0].framework, "g");
    assert_eq!(out[0].resources.scalar("cpus"), 1.0);
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]

    /// Random event sequences keep the invariants: nothing offered twice,
    /// no agent over-allocated, reservations stay in their subtree,
    /// suppressed roles get nothing; and once filters expire everything
    /// declined is offered again.
    #[test]
    fn invariants_hold_under_random_events(
        ops in proptest::collection::vec((0usize..7, 0usize..6, 0u64..8), 1..80)
    ) {
        let agent_res = [
            "cpus:4;mem:1024;ports:[100-200]",
            "cpus(eng):2;mem(eng):512;cpus:2;mem:512",
            "cpus(ops):3;mem(ops):256",
        ];
        let fw_roles: [&[&str]; 4] = [&["eng/spark"], &["ops"], &["*"], &["eng", "ops"]];
        let mut a = Allocator::default();
        for (i, r) in agent_res.iter().enumerate() {
            a.add_agent(&format!("a{i}"), res(r), &[]);
        }
        for (i, r) in fw_roles.iter().enumerate() {
            a.add_framework(&format!("f{i}"), roles(r), true);
        }
        a.update_quota("eng", Some(&Quota {
            guarantees: [("cpus".to_string(), 2.0)].into(),
            limits: [("cpus".to_string(), 5.0)].into(),
        }));
        let mut held: Vec<Allocation> = vec![];
        let mut suppressed: HashSet<(String, String)> = HashSet::new();
        let mut t = Duration::ZERO;
        for (op, idx, s) in ops {
            t += secs(s);
            let fw = format!("f{}", idx % 4);
            let new = match op {
                0 => a.allocate(t),
                1 => a.allocate_changed(t),
                2 | 3 if !held.is_empty() => {
                    let o = held.remove(idx % held.len());
                    let filter = (op == 2).then_some((t, secs(s)));
                    a.recover(&o.framework, &o.agent, &o.resources, filter);
                    vec![]
                }
                4 => {
                    let r = fw_roles[idx % 4][0].to_string();
                    a.suppress(&fw, std::slice::from_ref(&r));
                    suppressed.insert((fw.clone(), r));
                    vec![]
                }
                5 => {
                    a.revive(&fw, &[]);
                    suppressed.retain(|(f, _)| *f != fw);
                    vec![]
                }
                _ => vec![],
            };
            for o in &new {
                proptest::prop_assert!(!suppressed.contains(&(o.framework.clone(), o.role.clone())),
                    "suppressed role {} of {} got an offer", o.role, o.framework);
                for r in o.resources.as_slice() {
                    let reserved = resources::reservation_role(r);
                    proptest::prop_assert!(
                        reserved == "*" || o.role == reserved || o.role.starts_with(&format!("{reserved}/")),
                        "resource reserved to {} offered to role {}", reserved, o.role);
                }
            }
            held.extend(new);
            // Never more outstanding on an agent than it has.
            for (i, r) in agent_res.iter().enumerate() {
                let agent = format!("a{i}");
                let mut sum = Resources::new();
                for o in held.iter().filter(|o| o.agent == agent) {
                    sum.add_all(&o.resources.unallocated());
                }
                proptest::prop_assert!(res(r).contains(&sum), "agent {} over-allocated: {}", agent, sum);
            }
            // eng's limit holds.
            let eng: f64 = held.iter().filter(|o| o.role.starts_with("eng")).map(|o| o.resources.scalar("cpus")).sum();
            proptest::prop_assert!(eng <= 5.0 + 1e-9, "eng limit exceeded: {}", eng);
        }
        // Liveness: decline everything, let the filters expire, revive the
        // suppressed roles: every agent's resources are offered again.
        for o in held.drain(..) {
            a.recover(&o.framework, &o.agent, &o.resources, Some((t, secs(30))));
        }
        for i in 0..4 {
            a.revive(&format!("f{i}"), &[]);
        }
        for o in held.drain(..) {
            a.recover(&o.framework, &o.agent, &o.resources, None);
        }
        let later = t + secs(31);
        let mut offered = Resources::new();
        for _ in 0..6 {
            for o in a.allocate(later) {
                offered.add_all(&o.resources.unallocated());
            }
        }
        // The unreserved and eng-reserved resources are all offered again
        // (ops' reservation has ops frameworks too).
        let mut everything = Resources::new();
        for r in agent_res {
            everything.add_all(&res(r));
        }
        let mut limited = everything.clone();
        limited.subtract_all(&offered);
        // Only what eng's cpus limit keeps back may remain unoffered.
        proptest::prop_assert!(limited.scalar("mem") == 0.0, "mem never offered again: {}", limited);
        proptest::prop_assert!(limited.scalar("cpus") <= 4.0 + 1e-9, "cpus never offered again: {}", limited);
    }
}

// ----------------------------------------------------------------------
// Operations: update_allocation, update_available, update_agent_total
// ----------------------------------------------------------------------

fn dynamic(r: v1::Resource, roles: &[&str]) -> v1::Resource {
    let mut r = r;
    r.reservations = roles
        .iter()
        .map(|role| v1::resource::ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.to_string()),
            ..Default::default()
        })
        .collect();
    r
}

fn bag(rs: &[v1::Resource]) -> Resources {
    Resources::from_vec(rs)
}

fn one(r: &v1::Resource) -> Resources {
    Resources::from_vec(std::slice::from_ref(r))
}

fn offered_to<'a>(out: &'a [Allocation], framework: &str) -> Option<&'a Allocation> {
    out.iter().find(|a| a.framework == framework)
}

#[test]
fn update_allocation_converts_what_the_framework_holds() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:4;mem:1024;disk:1024"), &[]);
    a.add_framework("web", roles(&["web"]), true);
    let out = a.allocate(T0);
    let offer = offered_to(&out, "web")
        .expect("offer to web")
        .resources
        .clone();
    // RESERVE disk:256 for web out of the offer.
    let consumed = bag(&[resources::scalar("disk", 256.0)]).allocated_to("web");
    let reserved = dynamic(resources::scalar("disk", 256.0), &["web"]);
    let converted = one(&reserved).allocated_to("web");
    a.update_allocation("web", "a1", &consumed, &converted)
        .expect("web holds the disk");
    // The agent's total now carries the reservation; the quantity is unchanged.
    let total = a.total("a1");
    assert!(total.contains_one(&reserved));
    assert_eq!(total.scalar("disk"), 1024.0);
    // The role consumes its reservation while it holds it.
    let web = a.roles().into_iter().find(|r| r.name == "web").unwrap();
    assert_eq!(web.consumed.get("disk"), Some(&1024.0));
    // What web holds now is the converted offer; it returns all of it.
    let mut held = offer.clone();
    held.subtract_all(&consumed);
    held.add_all(&converted);
    a.recover("web", "a1", &held, Some((T0, secs(3600))));
    // Another role gets the unreserved part only.
    a.add_framework("ops", roles(&["ops"]), true);
    let out = a.allocate(secs(1));
    let ops = offered_to(&out, "ops").expect("offer to ops");
    assert_eq!(ops.resources.scalar("disk"), 768.0);
    assert!(ops
        .resources
        .as_slice()
        .iter()
        .all(|r| resources::reservation_role(r) == "*"));
    // The reserved disk waits for web; alone it is not worth an offer
    // (min allocatable), so ops declines what it got.
    let declined = ops.resources.clone();
    a.recover("ops", "a1", &declined, Some((secs(1), secs(3600))));
    a.revive("web", &[]);
    let out = a.allocate(secs(2));
    let web = offered_to(&out, "web").expect("offer to web");
    assert!(web
        .resources
        .contains(&bag(&[reserved]).allocated_to("web")));
    // Converting what the framework does not hold is refused.
    let err = a
        .update_allocation(
            "web",
            "a1",
            &bag(&[resources::scalar("cpus", 100.0)]).allocated_to("web"),
            &bag(&[dynamic(resources::scalar("cpus", 100.0), &["web"])]).allocated_to("web"),
        )
        .unwrap_err();
    assert!(err.contains("does not hold"), "{err}");
    assert_eq!(a.total("a1").scalar("cpus"), 4.0);
}

#[test]
fn update_available_converts_free_resources_only() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:4;mem:1024;disk:1024"), &[]);
    let consumed = bag(&[resources::scalar("cpus", 2.0)]);
    let reserved = dynamic(resources::scalar("cpus", 2.0), &["db"]);
    let converted = one(&reserved);
    // No framework: everything is free.
    a.update_available("a1", &consumed, &converted).unwrap();
    assert!(a.available("a1").contains_one(&reserved));
    assert_eq!(a.available("a1").scalar("cpus"), 4.0);
    // Once offered, the rest is no longer free.
    a.add_framework("f", roles(&["*"]), true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.scalar("cpus"), 2.0);
    let err = a
        .update_available(
            "a1",
            &bag(&[resources::scalar("mem", 512.0)]),
            &bag(&[dynamic(resources::scalar("mem", 512.0), &["db"])]),
        )
        .unwrap_err();
    assert!(err.contains("do not contain"), "{err}");
    assert!(!a
        .total("a1")
        .contains_one(&dynamic(resources::scalar("mem", 512.0), &["db"])));
    // UNRESERVE through the same path gives it back to everyone.
    a.update_available("a1", &converted, &consumed).unwrap();
    a.recover("f", "a1", &out[0].resources, None);
    let out = a.allocate(secs(1));
    assert_eq!(out[0].resources.scalar("cpus"), 4.0);
    assert!(out[0]
        .resources
        .as_slice()
        .iter()
        .all(|r| resources::reservation_role(r) == "*"));
}

#[test]
fn volumes_are_offered_to_their_role_and_destroyed_back_to_disk() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:1;mem:512;disk:1024"), &[]);
    let disk = dynamic(resources::scalar("disk", 128.0), &["db"]);
    a.update_available("a1", &bag(&[resources::scalar("disk", 128.0)]), &one(&disk))
        .unwrap();
    let mut volume = disk.clone();
    volume.disk = Some(Box::new(v1::resource::DiskInfo {
        persistence: Some(v1::resource::disk_info::Persistence {
            id: "pg".into(),
            principal: None,
        }),
        volume: Some(v1::Volume {
            mode: v1::volume::Mode::Rw as i32,
            container_path: "data".into(),
            ..Default::default()
        }),
        source: None,
    }));
    a.update_available("a1", &one(&disk), &one(&volume))
        .unwrap();
    a.add_framework("other", roles(&["other"]), true);
    a.add_framework("db", roles(&["db"]), true);
    let out = a.allocate(T0);
    let db = offered_to(&out, "db").expect("offer to db");
    assert!(db.resources.contains(&one(&volume).allocated_to("db")));
    assert!(out
        .iter()
        .filter(|o| o.framework == "other")
        .all(|o| o.resources.scalar("disk") == 896.0));
    // A volume is taken whole: half of it cannot be destroyed.
    a.recover("db", "a1", &db.resources.clone(), None);
    let mut half = volume.clone();
    half.scalar = Some(v1::value::Scalar { value: 64.0 });
    assert!(a
        .update_available("a1", &bag(&[half]), &one(&disk))
        .is_err());
    a.update_available("a1", &bag(&[volume]), &one(&disk))
        .unwrap();
    assert!(a.total("a1").contains_one(&disk));
}

#[test]
fn update_agent_total_resyncs_and_drops_vanished_allocations() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]);
    a.add_framework("web", roles(&["web"]), true);
    let out = a.allocate(T0);
    let offer = out[0].resources.clone();
    // The master converted cpus:1 speculatively ...
    let consumed = bag(&[resources::scalar("cpus", 1.0)]).allocated_to("web");
    let reserved = dynamic(resources::scalar("cpus", 1.0), &["web"]);
    let converted = one(&reserved).allocated_to("web");
    a.update_allocation("web", "a1", &consumed, &converted)
        .unwrap();
    // ... but the agent failed the operation: its total is the old one.
    a.update_agent_total("a1", res("cpus:4;mem:1024"));
    assert!(!a.total("a1").contains_one(&reserved));
    // The framework returns what it holds; the vanished reservation is not
    // made up, the unreserved cpus come back.
    let mut held = offer;
    held.subtract_all(&consumed);
    held.add_all(&converted);
    a.recover("web", "a1", &held, None);
    let available = a.available("a1");
    assert_eq!(available, res("cpus:4;mem:1024"));
    assert!(!available.contains_one(&reserved));
    let out = a.allocate(secs(1));
    assert_eq!(out[0].resources.scalar("cpus"), 4.0);
}

#[test]
fn refined_reservations_reach_only_refinement_capable_frameworks() {
    let mut a = Allocator::default();
    let refined = dynamic(resources::scalar("cpus", 2.0), &["a", "a/b"]);
    a.add_agent(
        "a1",
        bag(&[
            refined.clone(),
            dynamic(resources::scalar("mem", 256.0), &["a/b"]),
        ]),
        &[],
    );
    a.add_framework("old", roles(&["a/b"]), true);
    a.set_reservation_refinement("old", false);
    let out = a.allocate(T0);
    let old = offered_to(&out, "old").expect("the single reservation is offered");
    assert_eq!(old.resources.scalar("mem"), 256.0);
    assert_eq!(old.resources.scalar("cpus"), 0.0);
    // A capable framework in the same role gets the refined reservation.
    a.add_framework("new", roles(&["a/b"]), true);
    let out = a.allocate(secs(1));
    let new = offered_to(&out, "new").expect("the refined reservation is offered");
    assert!(new.resources.contains(&bag(&[refined]).allocated_to("a/b")));
}

#[test]
fn one_cycle_offers_a_pool_with_refined_reservations_to_both_kinds_of_frameworks() {
    let mut a = Allocator::default();
    let refined = dynamic(resources::scalar("cpus", 2.0), &["a", "a/b"]);
    let plain = dynamic(resources::scalar("mem", 256.0), &["a/b"]);
    a.add_agent("a1", bag(&[refined.clone(), plain.clone()]), &[]);
    a.add_framework("old", roles(&["a/b"]), true);
    a.set_reservation_refinement("old", false);
    a.add_framework("new", roles(&["a/b"]), true);
    let out = a.allocate(T0);
    let mut all = Resources::new();
    for o in &out {
        if o.framework == "old" {
            assert!(o
                .resources
                .as_slice()
                .iter()
                .all(|r| r.reservations.len() <= 1));
        }
        all.add_all(&o.resources.unallocated());
    }
    assert!(all.contains(&bag(&[refined, plain])), "{out:?}");
}
