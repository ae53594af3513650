use super::*;
use corral_api::resources::{parse, Resources};

fn res(s: &str) -> Resources {
    Resources::from_vec(&parse(s).unwrap())
}

const T0: Duration = Duration::ZERO;

#[test]
fn offers_whole_agent_to_lowest_share() {
    let mut a = Allocator::default();
    a.add_agent("a1", res("cpus:4;mem:1024"), &[]);
    a.add_agent("a2", res("cpus:4;mem:1024"), &[]);
    a.add_framework("f1", vec!["*".into()], true);
    a.add_framework("f2", vec!["*".into()], true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 2);
    // Each framework gets one agent: after f1 takes a1 its share is 0.5.
    assert_ne!(out[0].framework, out[1].framework);
    // Nothing left to offer.
    assert!(a.allocate(T0).is_empty());
}

#[test]
fn drf_example_from_the_mesos_paper() {
    // One agent of 9 CPUs and 18 GB. f1 runs <1 CPU, 4 GB> tasks, f2
    // <3 CPUs, 1 GB> tasks. Each takes one task's worth per offer and
    // returns the rest; DRF ends with f1: 3 tasks, f2: 2 tasks.
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:9;mem:18432"), &[]);
    a.add_framework("f1", vec!["*".into()], true);
    a.add_framework("f2", vec!["*".into()], true);
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
        t += Duration::from_secs(1);
        let out = a.allocate(t);
        let Some(offer) = out.into_iter().next() else {
            break;
        };
        let want = task(&offer.framework);
        if offer.resources.contains(&want) {
            let mut rest = offer.resources.clone();
            rest.subtract_all(&want);
            a.recover(&offer.framework, "a", &rest, None);
            *launched.entry(offer.framework.clone()).or_default() += 1;
        } else {
            // Cannot fit another task: decline for a long time.
            a.recover(
                &offer.framework,
                "a",
                &offer.resources,
                Some((t, Duration::from_secs(3600))),
            );
        }
    }
    assert_eq!(launched.get("f1"), Some(&3));
    assert_eq!(launched.get("f2"), Some(&2));
    assert!((a.dominant_share("f1") - 2.0 / 3.0).abs() < 1e-9);
    assert!((a.dominant_share("f2") - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn filters_expire_and_revive_clears_them() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:1;mem:128"), &[]);
    a.add_framework("f", vec!["*".into()], true);
    let o = a.allocate(T0).remove(0);
    a.recover("f", "a", &o.resources, Some((T0, Duration::from_secs(5))));
    assert_eq!(a.active_filters(T0), 1);
    assert!(a.allocate(Duration::from_secs(4)).is_empty());
    let o = a.allocate(Duration::from_secs(6));
    assert_eq!(o.len(), 1, "filter expired");
    a.recover(
        "f",
        "a",
        &o[0].resources,
        Some((Duration::from_secs(6), Duration::from_secs(100))),
    );
    assert!(a.allocate(Duration::from_secs(7)).is_empty());
    a.revive("f");
    assert_eq!(a.allocate_changed(Duration::from_secs(7)).len(), 1);
}

#[test]
fn suppressed_and_inactive_frameworks_get_nothing() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:1;mem:128"), &[]);
    a.add_framework("f", vec!["*".into()], true);
    a.suppress("f");
    assert!(a.allocate(T0).is_empty());
    a.revive("f");
    a.set_framework_active("f", false);
    assert!(a.allocate(T0).is_empty());
    a.set_framework_active("f", true);
    assert_eq!(a.allocate(T0).len(), 1);
}

#[test]
fn reserved_resources_only_reach_their_role() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus(eng):2;mem(eng):256"), &[]);
    a.add_framework("other", vec!["ops".into()], true);
    assert!(a.allocate(T0).is_empty());
    a.add_framework("eng", vec!["eng/spark".into()], true);
    let out = a.allocate(T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].framework, "eng");
}

#[test]
fn removing_a_framework_recovers_its_resources() {
    let mut a = Allocator::default();
    a.add_agent("a", res("cpus:2;mem:256"), &[]);
    a.add_framework("f", vec!["*".into()], true);
    assert_eq!(a.allocate(T0).len(), 1);
    a.remove_framework("f");
    assert_eq!(a.available("a"), res("cpus:2;mem:256"));
}

proptest::proptest! {
    /// Random recover/allocate sequences never allocate more than an agent has.
    #[test]
    fn never_over_allocates(ops in proptest::collection::vec((0usize..3, 0usize..3, 0u32..4), 1..60)) {
        let mut a = Allocator::default();
        for i in 0..3 {
            a.add_agent(&format!("a{i}"), res("cpus:4;mem:1024;ports:[100-200]"), &[]);
            a.add_framework(&format!("f{i}"), vec!["*".into()], true);
        }
        let mut held: Vec<Allocation> = vec![];
        let mut t = Duration::ZERO;
        for (op, idx, secs) in ops {
            t += Duration::from_secs(secs as u64);
            match op {
                0 => held.extend(a.allocate(t)),
                1 if !held.is_empty() => {
                    let o = held.remove(idx % held.len());
                    a.recover(&o.framework, &o.agent, &o.resources, Some((t, Duration::from_secs(secs as u64))));
                }
                _ => held.extend(a.allocate_changed(t)),
            }
            for i in 0..3 {
                let agent = format!("a{i}");
                let mut sum = Resources::new();
                for o in held.iter().filter(|o| o.agent == agent) {
                    // No resource is offered twice at once.
                    let mut overlap = sum.clone();
                    overlap.add_all(&o.resources);
                    proptest::prop_assert!(res("cpus:4;mem:1024;ports:[100-200]").contains(&overlap));
                    sum.add_all(&o.resources);
                }
            }
        }
    }
}
