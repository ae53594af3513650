//! Realistic, non-default fixtures shared by the codec integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Debug;

use corral_api::codec::{self, Encoding};
use corral_api::v1::{self, *};
use prost::{Message, Name};

pub const FRAMEWORK: &str = "7f3e1c2a-9b8d-4e6f-a1b2-c3d4e5f60718-0000";
pub const AGENT: &str = "7f3e1c2a-9b8d-4e6f-a1b2-c3d4e5f60718-S3";
pub const UUID: [u8; 16] = [
    0x9a, 0x1f, 0x00, 0xff, 0x42, 0x7e, 0x4b, 0x11, 0x80, 0x01, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x10,
];

pub fn fid() -> FrameworkId {
    FrameworkId {
        value: FRAMEWORK.into(),
    }
}
pub fn aid() -> AgentId {
    AgentId {
        value: AGENT.into(),
    }
}
pub fn tid(v: &str) -> TaskId {
    TaskId { value: v.into() }
}
pub fn eid(v: &str) -> ExecutorId {
    ExecutorId { value: v.into() }
}
pub fn oid(v: &str) -> OfferId {
    OfferId { value: v.into() }
}
pub fn opid(v: &str) -> OperationId {
    OperationId { value: v.into() }
}
pub fn secs(s: i64) -> DurationInfo {
    DurationInfo {
        nanoseconds: s * 1_000_000_000,
    }
}

pub fn labels(kv: &[(&str, &str)]) -> Labels {
    Labels {
        labels: kv
            .iter()
            .map(|(k, v)| Label {
                key: (*k).into(),
                value: Some((*v).into()),
            })
            .collect(),
    }
}

pub fn scalar(name: &str, v: f64) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar { value: v }),
        ..Default::default()
    }
}

pub fn ports(ranges: &[(u64, u64)]) -> Resource {
    Resource {
        name: "ports".into(),
        r#type: value::Type::Ranges as i32,
        ranges: Some(value::Ranges {
            range: ranges
                .iter()
                .map(|&(begin, end)| value::Range { begin, end })
                .collect(),
        }),
        ..Default::default()
    }
}

pub fn set(name: &str, items: &[&str]) -> Resource {
    Resource {
        name: name.into(),
        r#type: value::Type::Set as i32,
        set: Some(value::Set {
            item: items.iter().map(|s| (*s).into()).collect(),
        }),
        ..Default::default()
    }
}

/// Offered resources: unreserved, dynamically reserved (refinement format),
/// statically reserved (pre-refinement format), ranges and set.
pub fn offered_resources() -> Vec<Resource> {
    let alloc = Some(resource::AllocationInfo {
        role: Some("analytics".into()),
    });
    let mut cpus = scalar("cpus", 3.5);
    cpus.allocation_info = alloc.clone();
    let mut mem = scalar("mem", 16384.0);
    mem.allocation_info = alloc.clone();
    mem.reservations = vec![
        resource::ReservationInfo {
            r#type: Some(resource::reservation_info::Type::Static as i32),
            role: Some("analytics".into()),
            ..Default::default()
        },
        resource::ReservationInfo {
            r#type: Some(resource::reservation_info::Type::Dynamic as i32),
            role: Some("analytics/batch".into()),
            principal: Some("ops".into()),
            labels: Some(labels(&[("owner", "team-a")])),
        },
    ];
    let mut disk = scalar("disk", 102400.5);
    disk.allocation_info = alloc.clone();
    disk.role = Some("analytics".into());
    disk.reservation = Some(resource::ReservationInfo {
        principal: Some("ops".into()),
        labels: Some(labels(&[("k", "v")])),
        ..Default::default()
    });
    disk.disk = Some(Box::new(resource::DiskInfo {
        persistence: Some(resource::disk_info::Persistence {
            id: "vol-1".into(),
            principal: Some("ops".into()),
        }),
        volume: Some(Volume {
            mode: volume::Mode::Rw as i32,
            container_path: "data".into(),
            ..Default::default()
        }),
        source: None,
    }));
    let mut p = ports(&[(31000, 31099), (32000, 32000)]);
    p.allocation_info = alloc.clone();
    let mut gpus = set("zones", &["us-east-1a", "us-east-1b"]);
    gpus.allocation_info = alloc;
    gpus.revocable = Some(resource::RevocableInfo {});
    vec![cpus, mem, disk, p, gpus]
}

pub fn task_resources() -> Vec<Resource> {
    vec![
        scalar("cpus", 0.25),
        scalar("mem", 128.0),
        ports(&[(31005, 31005)]),
    ]
}

pub fn command() -> CommandInfo {
    CommandInfo {
        uris: vec![
            command_info::Uri {
                value: "https://example.com/app.tar.gz".into(),
                executable: Some(false),
                extract: Some(true),
                cache: Some(true),
                output_file: Some("app.tgz".into()),
            },
            command_info::Uri {
                value: "hdfs://nn/conf.json".into(),
                ..Default::default()
            },
        ],
        environment: Some(Environment {
            variables: vec![
                environment::Variable {
                    name: "PORT0".into(),
                    r#type: Some(environment::variable::Type::Value as i32),
                    value: Some("31005".into()),
                    secret: None,
                },
                environment::Variable {
                    name: "TOKEN".into(),
                    r#type: Some(environment::variable::Type::Secret as i32),
                    value: None,
                    secret: Some(Secret {
                        r#type: Some(secret::Type::Reference as i32),
                        reference: Some(secret::Reference {
                            name: "/vault/token".into(),
                            key: Some("t".into()),
                        }),
                        value: None,
                    }),
                },
            ],
        }),
        shell: Some(true),
        value: Some("./app --port $PORT0 --greeting 'h\u{e9}llo \u{2603}'".into()),
        arguments: vec![],
        user: Some("nobody".into()),
    }
}

pub fn container() -> ContainerInfo {
    ContainerInfo {
        r#type: container_info::Type::Mesos as i32,
        volumes: vec![Volume {
            mode: volume::Mode::Ro as i32,
            container_path: "/etc/app".into(),
            host_path: Some("/srv/app/etc".into()),
            ..Default::default()
        }],
        hostname: Some("web-1".into()),
        docker: None,
        mesos: Some(container_info::MesosInfo {
            image: Some(Image {
                r#type: image::Type::Docker as i32,
                docker: Some(image::Docker {
                    name: "library/nginx:1.25".into(),
                    ..Default::default()
                }),
                cached: Some(false),
                ..Default::default()
            }),
        }),
        network_infos: vec![NetworkInfo {
            ip_addresses: vec![network_info::IpAddress {
                protocol: Some(network_info::Protocol::IPv6 as i32),
                ip_address: None,
            }],
            name: Some("overlay".into()),
            groups: vec!["web".into()],
            labels: None,
            port_mappings: vec![network_info::PortMapping {
                host_port: 31005,
                container_port: 80,
                protocol: Some("tcp".into()),
            }],
        }],
        ..Default::default()
    }
}

pub fn health_check() -> HealthCheck {
    HealthCheck {
        delay_seconds: Some(5.0),
        interval_seconds: Some(2.5),
        timeout_seconds: Some(1.0),
        consecutive_failures: Some(7),
        grace_period_seconds: Some(30.0),
        r#type: Some(health_check::Type::Http as i32),
        command: None,
        http: Some(health_check::HttpCheckInfo {
            protocol: Some(network_info::Protocol::IPv4 as i32),
            scheme: Some("http".into()),
            port: 80,
            path: Some("/healthz".into()),
            statuses: vec![200, 204],
        }),
        tcp: None,
    }
}

pub fn task_info(name: &str) -> TaskInfo {
    TaskInfo {
        name: name.into(),
        task_id: tid(&format!("{name}.a1b2c3")),
        agent_id: aid(),
        resources: task_resources(),
        executor: None,
        command: Some(command()),
        container: Some(container()),
        health_check: Some(health_check()),
        check: Some(CheckInfo {
            r#type: Some(check_info::Type::Tcp as i32),
            tcp: Some(check_info::Tcp { port: 31005 }),
            delay_seconds: Some(1.0),
            ..Default::default()
        }),
        kill_policy: Some(KillPolicy {
            grace_period: Some(secs(30)),
        }),
        data: Some(vec![0, 1, 2, 0xfe, 0xff, b'{']),
        labels: Some(labels(&[("tier", "frontend"), ("canary", "")])),
        discovery: Some(DiscoveryInfo {
            visibility: discovery_info::Visibility::Cluster as i32,
            name: Some("web".into()),
            ports: Some(Ports {
                ports: vec![Port {
                    number: 31005,
                    name: Some("http".into()),
                    protocol: Some("tcp".into()),
                    visibility: Some(discovery_info::Visibility::External as i32),
                    labels: None,
                }],
            }),
            ..Default::default()
        }),
        max_completion_time: Some(DurationInfo {
            nanoseconds: 86_400_000_000_123,
        }),
        limits: HashMap::from([("cpus".to_string(), value::Scalar { value: 2.0 })]),
    }
}

pub fn executor_info() -> ExecutorInfo {
    ExecutorInfo {
        r#type: Some(executor_info::Type::Custom as i32),
        executor_id: eid("default-executor-7"),
        framework_id: Some(fid()),
        command: Some(CommandInfo {
            value: Some("/usr/libexec/corral/executor".into()),
            shell: Some(false),
            arguments: vec!["executor".into(), "--verbose".into()],
            ..Default::default()
        }),
        container: None,
        resources: vec![scalar("cpus", 0.1), scalar("mem", 32.0)],
        name: Some("Custom Executor".into()),
        source: None,
        data: Some(b"executor-data".to_vec()),
        discovery: None,
        shutdown_grace_period: Some(secs(5)),
        labels: Some(labels(&[("x", "y")])),
    }
}

pub fn framework_info() -> FrameworkInfo {
    FrameworkInfo {
        user: "root".into(),
        name: "Example \u{65e5}\u{672c} Framework".into(),
        id: Some(fid()),
        failover_timeout: Some(604800.0),
        checkpoint: Some(true),
        role: None,
        roles: vec!["analytics".into(), "analytics/batch".into()],
        hostname: Some("sched-1.example.com".into()),
        principal: Some("analytics-principal".into()),
        webui_url: Some("http://sched-1.example.com:8080".into()),
        capabilities: [
            framework_info::capability::Type::MultiRole,
            framework_info::capability::Type::ReservationRefinement,
            framework_info::capability::Type::PartitionAware,
            framework_info::capability::Type::TaskKillingState,
        ]
        .into_iter()
        .map(|t| framework_info::Capability {
            r#type: Some(t as i32),
        })
        .collect(),
        labels: Some(labels(&[("team", "data")])),
        offer_filters: HashMap::from([(
            "analytics".to_string(),
            OfferFilters {
                min_allocatable_resources: Some(offer_filters::MinAllocatableResources {
                    quantities: vec![offer_filters::ResourceQuantities {
                        quantities: HashMap::from([
                            ("cpus".to_string(), value::Scalar { value: 1.0 }),
                            ("mem".to_string(), value::Scalar { value: 512.0 }),
                        ]),
                    }],
                }),
            },
        )]),
    }
}

pub fn master_info() -> MasterInfo {
    MasterInfo {
        id: "c0ffee00-1111-2222-3333-444455556666".into(),
        ip: 0x0A00_0001u32.swap_bytes(),
        port: 5050,
        pid: Some("master@10.0.0.1:5050".into()),
        hostname: Some("master-1.example.com".into()),
        version: Some("1.11.0".into()),
        address: Some(Address {
            hostname: Some("master-1.example.com".into()),
            ip: Some("10.0.0.1".into()),
            port: 5050,
        }),
        domain: Some(domain()),
        capabilities: vec![master_info::Capability {
            r#type: Some(master_info::capability::Type::AgentUpdate as i32),
        }],
    }
}

pub fn domain() -> DomainInfo {
    DomainInfo {
        fault_domain: Some(domain_info::FaultDomain {
            region: domain_info::fault_domain::RegionInfo {
                name: "us-east-1".into(),
            },
            zone: domain_info::fault_domain::ZoneInfo {
                name: "us-east-1a".into(),
            },
        }),
    }
}

pub fn agent_info() -> AgentInfo {
    AgentInfo {
        hostname: "agent-3.example.com".into(),
        port: Some(5051),
        resources: vec![
            scalar("cpus", 8.0),
            scalar("mem", 31_000.0),
            ports(&[(31000, 32000)]),
        ],
        attributes: vec![
            Attribute {
                name: "rack".into(),
                r#type: value::Type::Text as i32,
                text: Some(value::Text {
                    value: "r12".into(),
                }),
                ..Default::default()
            },
            Attribute {
                name: "gen".into(),
                r#type: value::Type::Scalar as i32,
                scalar: Some(value::Scalar { value: 3.0 }),
                ..Default::default()
            },
        ],
        id: Some(aid()),
        domain: Some(domain()),
    }
}

pub fn offer(n: u32) -> Offer {
    Offer {
        id: oid(&format!("{FRAMEWORK}-O{n}")),
        framework_id: fid(),
        agent_id: aid(),
        hostname: "agent-3.example.com".into(),
        url: Some(Url {
            scheme: "http".into(),
            address: Address {
                hostname: None,
                ip: Some("10.0.0.3".into()),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            query: vec![Parameter {
                key: "a".into(),
                value: "b".into(),
            }],
            fragment: None,
        }),
        domain: Some(domain()),
        resources: offered_resources(),
        attributes: agent_info().attributes,
        executor_ids: vec![eid("default-executor-7")],
        unavailability: Some(unavailability()),
        allocation_info: Some(resource::AllocationInfo {
            role: Some("analytics".into()),
        }),
    }
}

pub fn unavailability() -> Unavailability {
    Unavailability {
        start: TimeInfo {
            nanoseconds: 1_735_689_600_123_456_789,
        },
        duration: Some(DurationInfo {
            nanoseconds: 3_600_000_000_000,
        }),
    }
}

pub fn inverse_offer() -> InverseOffer {
    InverseOffer {
        id: oid("inverse-O7"),
        url: None,
        framework_id: fid(),
        agent_id: Some(aid()),
        unavailability: unavailability(),
        resources: vec![scalar("cpus", 8.0)],
    }
}

pub fn task_status(state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: tid("web.a1b2c3"),
        state: state as i32,
        message: Some("Container exited with status 137 \u{2014} OOM".into()),
        source: Some(task_status::Source::Executor as i32),
        reason: Some(task_status::Reason::ContainerLimitationMemory as i32),
        data: Some(vec![1, 2, 3, 250]),
        agent_id: Some(aid()),
        executor_id: Some(eid("default-executor-7")),
        timestamp: Some(1_735_689_600.123_456),
        uuid: Some(UUID.to_vec()),
        healthy: Some(false),
        check_status: Some(CheckStatusInfo {
            r#type: Some(check_info::Type::Http as i32),
            http: Some(check_status_info::Http {
                status_code: Some(503),
            }),
            ..Default::default()
        }),
        labels: Some(labels(&[("attempt", "2")])),
        container_status: Some(ContainerStatus {
            container_id: Some(ContainerId {
                value: "child".into(),
                parent: Some(Box::new(ContainerId {
                    value: "parent".into(),
                    parent: None,
                })),
            }),
            network_infos: vec![NetworkInfo {
                ip_addresses: vec![network_info::IpAddress {
                    protocol: None,
                    ip_address: Some("172.17.0.5".into()),
                }],
                ..Default::default()
            }],
            cgroup_info: None,
            executor_pid: Some(4242),
        }),
        unreachable_time: Some(TimeInfo { nanoseconds: -5 }),
        limitation: Some(TaskResourceLimitation {
            resources: vec![scalar("mem", 128.0)],
        }),
    }
}

pub fn operation_status() -> OperationStatus {
    OperationStatus {
        operation_id: Some(opid("reserve-1")),
        state: OperationState::OperationFinished as i32,
        message: Some("done".into()),
        converted_resources: offered_resources(),
        uuid: Some(v1::Uuid {
            value: UUID.to_vec(),
        }),
        agent_id: Some(aid()),
        resource_provider_id: Some(ResourceProviderId {
            value: "rp-1".into(),
        }),
    }
}

pub fn filters(refuse: f64) -> Filters {
    Filters {
        refuse_seconds: Some(refuse),
    }
}

pub fn task(state: TaskState) -> Task {
    let ti = task_info("web");
    Task {
        name: ti.name,
        task_id: ti.task_id,
        framework_id: fid(),
        executor_id: Some(eid("default-executor-7")),
        agent_id: aid(),
        state: state as i32,
        resources: ti.resources,
        statuses: vec![task_status(TaskState::TaskStarting), task_status(state)],
        status_update_state: Some(state as i32),
        status_update_uuid: Some(UUID.to_vec()),
        labels: ti.labels,
        discovery: ti.discovery,
        container: ti.container,
        health_check: ti.health_check,
        kill_policy: ti.kill_policy,
        user: Some("nobody".into()),
        limits: ti.limits,
    }
}

/// Asserts `decode(encode(m)) == m` in JSON and protobuf, and that the JSON
/// is compact, pure ASCII and an object. Returns the JSON value.
pub fn roundtrip<M>(m: &M) -> serde_json::Value
where
    M: Message + Name + Default + PartialEq + Debug,
{
    for enc in [Encoding::Json, Encoding::Protobuf] {
        let bytes = enc.encode(m);
        let back: M = enc
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("{enc:?} decode of {} failed: {e}", M::full_name()));
        assert_eq!(&back, m, "{enc:?} round trip of {}", M::full_name());
    }
    let json = codec::to_json(m);
    assert!(json.is_ascii(), "JSON output must be ASCII");
    assert!(!json.contains(&b'\n'), "JSON output must be a single line");
    let value: serde_json::Value = serde_json::from_slice(&json).expect("valid JSON");
    assert!(value.is_object());
    // The Value-level API agrees with the byte-level one.
    assert_eq!(codec::to_json_value(m), value);
    let back: M = codec::from_json_value(value.clone()).expect("from_json_value");
    assert_eq!(&back, m);
    value
}

/// Parses JSON text into `M`, panicking with the codec error on failure.
pub fn parse<M: Message + Name + Default>(json: &str) -> M {
    codec::from_json(json.as_bytes())
        .unwrap_or_else(|e| panic!("parsing {} failed: {e}\n{json}", M::full_name()))
}

/// Asserts that `actual` contains everything in `expected`: objects may have
/// extra keys (fields the documentation omits); arrays must match
/// element-wise; numbers compare by value (15 == 15.0).
#[track_caller]
pub fn assert_json_superset(actual: &serde_json::Value, expected: &serde_json::Value) {
    fn go(a: &serde_json::Value, e: &serde_json::Value, path: &str) {
        use serde_json::Value::*;
        match (a, e) {
            (Object(a), Object(e)) => {
                for (k, ev) in e {
                    let av = a
                        .get(k)
                        .unwrap_or_else(|| panic!("missing key {path}.{k}; have {a:?}"));
                    go(av, ev, &format!("{path}.{k}"));
                }
            }
            (Array(a), Array(e)) => {
                assert_eq!(a.len(), e.len(), "array length at {path}");
                for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                    go(av, ev, &format!("{path}[{i}]"));
                }
            }
            (Number(a), Number(e)) => {
                assert_eq!(a.as_f64(), e.as_f64(), "number at {path}");
            }
            _ => assert_eq!(a, e, "value at {path}"),
        }
    }
    go(actual, expected, "$");
}
