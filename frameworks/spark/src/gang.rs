//! Placing one application's tasks on offers, all or nothing (pure): its
//! driver, its standalone master and its workers are launched together or
//! not at all, so a half-placed application never holds resources it
//! cannot use. Offers of one role only (each offer is allocated to one of
//! the dispatcher's roles); the driver where its volume is (or on an agent
//! with disk for a new one) and where its constraints admit it, the master
//! and the workers where the application's constraints admit them, first
//! fit in offer order.

use corral_api::resources::Resources;
use corral_api::v1;
use corral_sdk::offers::{allocation_role, attribute_text, find_volume, take, Need};

use crate::plan::{admits, Constraints, Plan, TaskSize};

/// One offer as placement sees it: what is left of it.
#[derive(Debug, Clone)]
pub struct Room {
    /// The offer.
    pub offer_id: v1::OfferId,
    /// Its agent.
    pub agent_id: v1::AgentId,
    /// The agent's hostname.
    pub hostname: String,
    /// The address tasks bind to and are reached at (the agent's IP when
    /// the offer says, else its hostname).
    pub address: String,
    /// The role the offer is allocated to.
    pub role: String,
    /// The agent's attributes, as text.
    pub attributes: Vec<(String, String)>,
    /// Scalars and ports not yet placed on.
    pub left: Resources,
    /// The persistent volumes offered.
    pub volumes: Vec<v1::Resource>,
}

impl Room {
    /// The room of an offer.
    pub fn of_offer(offer: &v1::Offer) -> Self {
        let (volumes, rest): (Vec<v1::Resource>, Vec<v1::Resource>) = offer
            .resources
            .iter()
            .cloned()
            .partition(|r| r.disk.as_ref().is_some_and(|d| d.persistence.is_some()));
        Self {
            offer_id: offer.id.clone(),
            agent_id: offer.agent_id.clone(),
            hostname: offer.hostname.clone(),
            address: offer
                .url
                .as_ref()
                .and_then(|u| u.address.ip.clone())
                .unwrap_or_else(|| offer.hostname.clone()),
            role: offer
                .resources
                .first()
                .map(|r| allocation_role(r).to_string())
                .unwrap_or_else(|| "*".to_string()),
            attributes: offer
                .attributes
                .iter()
                .map(|a| (a.name.clone(), attribute_text(a)))
                .collect(),
            left: Resources::from_vec(&rest),
            volumes,
        }
    }
}

/// A persistent volume the driver asks for
/// (`spark.corral.driver.volume`).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeAsk {
    /// Its persistence id.
    pub persistence_id: String,
    /// Where it is mounted in the driver's sandbox.
    pub container_path: String,
    /// Its size when it has to be created, MB.
    pub size_mb: f64,
    /// The agent that holds it, when the dispatcher created it.
    pub agent_id: Option<String>,
}

/// What to place.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// The role.
    pub role: &'a str,
    /// The sizes.
    pub plan: &'a Plan,
    /// Where the driver may run.
    pub driver_constraints: &'a Constraints,
    /// Where the master and workers may run.
    pub constraints: &'a Constraints,
    /// The driver's volume.
    pub volume: Option<&'a VolumeAsk>,
}

/// One task's place.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Index of its room.
    pub room: usize,
    /// The resources it takes.
    pub resources: Vec<v1::Resource>,
    /// Its ports, in the order taken.
    pub ports: Vec<u64>,
}

/// The driver's volume in a placement.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeUse {
    /// It exists in the driver's offer.
    Existing(v1::Resource),
    /// It is created from this disk (taken from the driver's offer;
    /// reserved for the role first unless it already is).
    Create(v1::Resource),
}

/// Where every task of an application goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The driver.
    pub driver: Slot,
    /// Its volume.
    pub volume: Option<VolumeUse>,
    /// The standalone master.
    pub master: Slot,
    /// The workers.
    pub workers: Vec<Slot>,
}

fn need(size: &TaskSize, disk: f64) -> Need {
    Need {
        cpus: size.cpus,
        mem: size.mem_mib.ceil(),
        disk,
        ports: size.ports,
    }
}

fn ports_of(resources: &[v1::Resource]) -> Vec<u64> {
    corral_sdk::offers::ports_of(resources)
}

/// Takes `size` out of the first room `fits` admits.
fn first_fit(rooms: &mut [Room], size: &TaskSize, fits: impl Fn(&Room) -> bool) -> Option<Slot> {
    for (i, room) in rooms.iter_mut().enumerate() {
        if !fits(room) {
            continue;
        }
        if let Some((resources, left)) = take(&room.left, &need(size, 0.0)) {
            room.left = left;
            let ports = ports_of(&resources);
            return Some(Slot {
                room: i,
                resources,
                ports,
            });
        }
    }
    None
}

/// Places the whole application on `rooms` (updating what is left of them)
/// or, when it does not fit, says why and leaves `rooms` as they were.
pub fn place(rooms: &mut [Room], ask: &Ask<'_>) -> Result<Placement, String> {
    let mut trial: Vec<Room> = rooms.to_vec();
    let ours = |r: &Room| r.role == ask.role;
    // The driver first: it is the most constrained.
    // A volume offered anywhere is used where it is, never made again.
    let offered = ask.volume.is_some_and(|v| {
        trial
            .iter()
            .any(|r| ours(r) && find_volume(&r.volumes, &v.persistence_id).is_some())
    });
    let mut driver = None;
    for (i, room) in trial.iter_mut().enumerate() {
        if !ours(room) || !admits(ask.driver_constraints, &room.attributes, &room.hostname) {
            continue;
        }
        let volume = match ask.volume {
            None => None,
            Some(v) => match find_volume(&room.volumes, &v.persistence_id) {
                Some(found) => Some(VolumeUse::Existing(found.clone())),
                // Known elsewhere: only that agent will do.
                None if v.agent_id.is_some() || offered => continue,
                None => None,
            },
        };
        let create = ask.volume.is_some() && volume.is_none();
        let disk = ask.volume.filter(|_| create).map_or(0.0, |v| v.size_mb);
        let Some((mut resources, left)) = take(&room.left, &need(&ask.plan.driver, disk)) else {
            continue;
        };
        let volume = if create {
            let Some(pos) = resources.iter().position(|r| r.name == "disk") else {
                continue;
            };
            Some(VolumeUse::Create(resources.remove(pos)))
        } else {
            volume
        };
        room.left = left;
        let ports = ports_of(&resources);
        driver = Some((
            Slot {
                room: i,
                resources,
                ports,
            },
            volume,
        ));
        break;
    }
    let (total_cpus, total_mem) = ask.plan.total();
    let short = |what: &str| {
        format!(
            "waiting for offers of role {}: no room for its {what} (the application takes {} cpus \
             and {} MiB in all: a driver, a Spark master and {} worker(s){})",
            ask.role,
            (total_cpus * 100.0).round() / 100.0,
            total_mem.ceil(),
            ask.plan.workers,
            match ask.volume {
                Some(v) if v.agent_id.is_some() =>
                    format!("; its driver must run where volume {} is", v.persistence_id),
                Some(v) => format!(
                    "; its driver needs {} MB of disk for volume {}",
                    v.size_mb, v.persistence_id
                ),
                None => String::new(),
            }
        )
    };
    let Some((driver, volume)) = driver else {
        return Err(short("driver"));
    };
    let spread = |r: &Room| ours(r) && admits(ask.constraints, &r.attributes, &r.hostname);
    let master = first_fit(&mut trial, &ask.plan.master, spread).ok_or_else(|| short("master"))?;
    let mut workers = Vec::with_capacity(ask.plan.workers as usize);
    for _ in 0..ask.plan.workers {
        workers
            .push(first_fit(&mut trial, &ask.plan.worker, spread).ok_or_else(|| short("workers"))?);
    }
    rooms.clone_from_slice(&trial);
    Ok(Placement {
        driver,
        volume,
        master,
        workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, PlanDefaults};
    use crate::queue::Application;
    use corral_api::resources::{ranges, scalar};
    use std::collections::BTreeMap;

    fn offer(id: &str, role: &str, cpus: f64, mem: f64, attrs: &[(&str, &str)]) -> v1::Offer {
        let mut res = vec![
            scalar("cpus", cpus),
            scalar("mem", mem),
            scalar("disk", 10_000.0),
            ranges("ports", &[(31000, 31099)]),
        ];
        for r in &mut res {
            r.allocation_info = Some(v1::resource::AllocationInfo {
                role: Some(role.into()),
            });
        }
        v1::Offer {
            id: v1::OfferId { value: id.into() },
            agent_id: v1::AgentId {
                value: format!("agent-{id}"),
            },
            hostname: format!("host-{id}"),
            resources: res,
            attributes: corral_api::resources::parse_attributes(
                &attrs
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            )
            .expect("attributes"),
            ..Default::default()
        }
    }

    fn app(props: &[(&str, &str)]) -> Plan {
        let a = Application {
            app_resource: "/jobs/pi.jar".into(),
            main_class: "Pi".into(),
            app_args: Vec::new(),
            spark_properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            environment_variables: BTreeMap::new(),
        };
        plan(&a, &PlanDefaults::default()).expect("plan")
    }

    #[test]
    fn an_application_is_placed_whole_across_offers_of_its_role() {
        let p = app(&[("spark.executor.instances", "3")]);
        let mut rooms: Vec<Room> = [
            offer("a", "eng", 2.0, 4096.0, &[]),
            offer("b", "ops", 8.0, 16384.0, &[]),
            offer("c", "eng", 4.0, 8192.0, &[]),
        ]
        .iter()
        .map(Room::of_offer)
        .collect();
        let none = Vec::new();
        let ask = Ask {
            role: "eng",
            plan: &p,
            driver_constraints: &none,
            constraints: &none,
            volume: None,
        };
        let placed = place(&mut rooms, &ask).expect("fits");
        assert_eq!(placed.driver.room, 0);
        assert_eq!(placed.driver.ports.len(), 3);
        assert_eq!(placed.master.ports.len(), 2);
        assert_eq!(placed.workers.len(), 3);
        let used: Vec<usize> = placed.workers.iter().map(|w| w.room).collect();
        assert!(!used.contains(&1), "never the other role's offer: {used:?}");
        assert!(
            used.contains(&2),
            "spilled onto the second eng offer: {used:?}"
        );
        // Ports are distinct within an agent.
        let mut on_a: Vec<u64> = placed.driver.ports.clone();
        on_a.extend(&placed.master.ports);
        for w in placed.workers.iter().filter(|w| w.room == 0) {
            on_a.extend(&w.ports);
        }
        let n = on_a.len();
        on_a.sort();
        on_a.dedup();
        assert_eq!(on_a.len(), n);
        // Nothing is left on a for another 3-worker application.
        assert!(place(&mut rooms, &ask).is_err());
    }

    #[test]
    fn a_gang_that_does_not_fit_takes_nothing_and_says_why() {
        let p = app(&[("spark.executor.instances", "8")]);
        let mut rooms = vec![Room::of_offer(&offer("a", "eng", 4.0, 8192.0, &[]))];
        let before = rooms[0].left.clone();
        let none = Vec::new();
        let ask = Ask {
            role: "eng",
            plan: &p,
            driver_constraints: &none,
            constraints: &none,
            volume: None,
        };
        let why = place(&mut rooms, &ask).expect_err("too big");
        assert!(why.contains("workers") && why.contains("8 worker"), "{why}");
        assert_eq!(rooms[0].left, before);
    }

    #[test]
    fn constraints_and_volumes_choose_the_drivers_agent() {
        let p = app(&[("spark.executor.instances", "1")]);
        let mut b = offer("b", "eng", 4.0, 8192.0, &[("rack", "r2")]);
        let mut vol = scalar("disk", 64.0);
        vol.allocation_info = Some(v1::resource::AllocationInfo {
            role: Some("eng".into()),
        });
        vol.disk = Some(Box::new(v1::resource::DiskInfo {
            persistence: Some(v1::resource::disk_info::Persistence {
                id: "words".into(),
                principal: None,
            }),
            volume: Some(v1::Volume {
                container_path: "data".into(),
                mode: v1::volume::Mode::Rw as i32,
                ..Default::default()
            }),
            ..Default::default()
        }));
        b.resources.push(vol.clone());
        let offers = [offer("a", "eng", 4.0, 8192.0, &[("rack", "r1")]), b];
        let none = Vec::new();
        let r1 = vec![("rack".to_string(), vec!["r1".to_string()])];
        // Constraint: driver on r1.
        let mut rooms: Vec<Room> = offers.iter().map(Room::of_offer).collect();
        let placed = place(
            &mut rooms,
            &Ask {
                role: "eng",
                plan: &p,
                driver_constraints: &r1,
                constraints: &none,
                volume: None,
            },
        )
        .expect("fits");
        assert_eq!(placed.driver.room, 0);
        // An existing volume pins the driver to its agent.
        let mut rooms: Vec<Room> = offers.iter().map(Room::of_offer).collect();
        let ask_vol = VolumeAsk {
            persistence_id: "words".into(),
            container_path: "data".into(),
            size_mb: 64.0,
            agent_id: Some("agent-b".into()),
        };
        let placed = place(
            &mut rooms,
            &Ask {
                role: "eng",
                plan: &p,
                driver_constraints: &none,
                constraints: &none,
                volume: Some(&ask_vol),
            },
        )
        .expect("fits");
        assert_eq!(placed.driver.room, 1);
        assert_eq!(placed.volume, Some(VolumeUse::Existing(vol)));
        // A new volume is made from disk of the driver's offer.
        let mut rooms: Vec<Room> = offers.iter().map(Room::of_offer).collect();
        let new_vol = VolumeAsk {
            persistence_id: "fresh".into(),
            agent_id: None,
            ..ask_vol.clone()
        };
        let placed = place(
            &mut rooms,
            &Ask {
                role: "eng",
                plan: &p,
                driver_constraints: &none,
                constraints: &none,
                volume: Some(&new_vol),
            },
        )
        .expect("fits");
        match placed.volume {
            Some(VolumeUse::Create(d)) => {
                assert_eq!(d.scalar.map(|s| s.value), Some(64.0));
                assert!(placed.driver.resources.iter().all(|r| r.name != "disk"));
            }
            other => panic!("expected a new volume, got {other:?}"),
        }
        // Known on an agent that offers nothing: waits.
        let mut rooms = vec![Room::of_offer(&offers[0])];
        let gone = VolumeAsk {
            agent_id: Some("agent-z".into()),
            ..ask_vol
        };
        let why = place(
            &mut rooms,
            &Ask {
                role: "eng",
                plan: &p,
                driver_constraints: &none,
                constraints: &none,
                volume: Some(&gone),
            },
        )
        .expect_err("elsewhere");
        assert!(why.contains("where volume words is"), "{why}");
    }
}
