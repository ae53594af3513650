//! Offer operations that change resources in place: RESERVE, UNRESERVE,
//! CREATE, DESTROY, GROW_VOLUME and SHRINK_VOLUME.
//!
//! Each is a conversion: it consumes some resources and produces others
//! (RESERVE turns `cpus:1` into `cpus(role):1`, CREATE turns reserved disk
//! into a persistent volume). [`conversion`] computes that pair from the
//! operation alone; [`apply`] checks the consumed side is present in a total
//! and swaps it for the converted side. The master applies operations to
//! offered resources and to its view of an agent; the agent applies the
//! same functions to its checkpointed total, so both always agree on the
//! arithmetic. Rules that need context (the framework's roles and
//! principal, whether a volume is in use) are the caller's.
//!
//! Resources are expected in the post-refinement format (`reservations`);
//! [`conversion`] upgrades the pre-refinement format itself.

use crate::resources::{self, Resources};
use crate::v1::{self, offer::operation::Type as OpType, resource, Resource};

/// What an operation takes and what it gives back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Conversion {
    /// Resources the operation consumes.
    pub consumed: Resources,
    /// Resources the operation produces in their place.
    pub converted: Resources,
}

/// The operation's type, `Unknown` when unset or unknown.
pub fn op_type(op: &v1::offer::Operation) -> OpType {
    op.r#type
        .and_then(|t| OpType::try_from(t).ok())
        .unwrap_or(OpType::Unknown)
}

/// Whether the operation is one this module converts (not LAUNCH).
pub fn is_conversion(op: &v1::offer::Operation) -> bool {
    matches!(
        op_type(op),
        OpType::Reserve
            | OpType::Unreserve
            | OpType::Create
            | OpType::Destroy
            | OpType::GrowVolume
            | OpType::ShrinkVolume
    )
}

fn upgraded(r: &Resource) -> Result<Resource, String> {
    let mut r = r.clone();
    resources::upgrade(&mut r);
    resources::validate(&r)?;
    Ok(r)
}

/// Whether `r` is a persistent volume.
pub fn is_persistent_volume(r: &Resource) -> bool {
    r.disk.as_ref().is_some_and(|d| d.persistence.is_some())
}

/// The persistence id of a persistent volume.
pub fn persistence_id(r: &Resource) -> Option<&str> {
    r.disk
        .as_ref()
        .and_then(|d| d.persistence.as_ref())
        .map(|p| p.id.as_str())
}

/// Whether `child` is `parent` or a role nested under it (`a/b` under `a`).
pub fn is_strict_subrole(child: &str, parent: &str) -> bool {
    child.len() > parent.len()
        && child.starts_with(parent)
        && child.as_bytes()[parent.len()] == b'/'
}

/// `r` without its persistence and volume: the disk it was made from.
pub fn strip_volume(r: &Resource) -> Resource {
    let mut r = r.clone();
    if let Some(d) = r.disk.as_mut() {
        d.persistence = None;
        d.volume = None;
        if d.source.is_none() {
            r.disk = None;
        }
    }
    r
}

fn pop_reservation(r: &Resource) -> Resource {
    let mut r = r.clone();
    r.reservations.pop();
    r
}

fn scalar_value(r: &Resource) -> f64 {
    r.scalar.as_ref().map(|s| s.value).unwrap_or(0.0)
}

fn with_scalar(r: &Resource, v: f64) -> Resource {
    let mut r = r.clone();
    r.scalar = Some(v1::value::Scalar {
        value: resources::round_scalar(v),
    });
    r
}

fn check_reserve(r: &Resource) -> Result<(), String> {
    let Some(last) = r.reservations.last() else {
        return Err(format!(
            "Invalid RESERVE: resource '{}' carries no reservation",
            r.name
        ));
    };
    if last.r#type != Some(resource::reservation_info::Type::Dynamic as i32) {
        return Err(format!(
            "Invalid RESERVE: the reservation of resource '{}' must be DYNAMIC",
            r.name
        ));
    }
    let role = last.role.as_deref().unwrap_or("");
    if role.is_empty() || role == "*" {
        return Err(format!(
            "Invalid RESERVE: resource '{}' must be reserved to a role other than '*'",
            r.name
        ));
    }
    if is_persistent_volume(r) {
        return Err("Invalid RESERVE: a persistent volume cannot be reserved".into());
    }
    if r.reservations.len() > 1 {
        let previous = resources::reservation_role(&pop_reservation(r)).to_string();
        if !is_strict_subrole(role, &previous) {
            return Err(format!(
                "Invalid RESERVE: a refined reservation for role '{role}' must be for a \
                 role nested under '{previous}'"
            ));
        }
    }
    Ok(())
}

fn check_volume(v: &Resource, what: &str) -> Result<(), String> {
    if v.name != "disk" {
        return Err(format!(
            "Invalid {what}: '{}' is not a disk resource",
            v.name
        ));
    }
    let Some(disk) = v.disk.as_ref() else {
        return Err(format!("Invalid {what}: the volume has no disk info"));
    };
    let Some(p) = disk.persistence.as_ref() else {
        return Err(format!("Invalid {what}: the volume has no persistence id"));
    };
    if p.id.is_empty() || p.id.contains('/') || p.id == "." || p.id == ".." || p.id.contains('\0') {
        return Err(format!(
            "Invalid {what}: persistence id '{}' must be non-empty and free of '/'",
            p.id
        ));
    }
    let Some(volume) = disk.volume.as_ref() else {
        return Err(format!(
            "Invalid {what}: persistent volume '{}' has no volume (container_path, mode)",
            p.id
        ));
    };
    if volume.container_path.is_empty() {
        return Err(format!(
            "Invalid {what}: persistent volume '{}' has an empty container_path",
            p.id
        ));
    }
    if volume.container_path.split('/').any(|c| c == "..") {
        return Err(format!(
            "Invalid {what}: container_path '{}' must not contain '..'",
            volume.container_path
        ));
    }
    if volume.host_path.is_some() {
        return Err(format!(
            "Invalid {what}: persistent volume '{}' must not set host_path",
            p.id
        ));
    }
    if v.reservations.is_empty() {
        return Err(format!(
            "Invalid {what}: persistent volume '{}' must be on reserved disk \
             (RESERVE the disk for a role first)",
            p.id
        ));
    }
    if v.shared.is_some() {
        return Err(format!(
            "Invalid {what}: shared persistent volumes are not supported"
        ));
    }
    Ok(())
}

/// The conversion an operation performs, with the checks that need nothing
/// but the operation itself.
pub fn conversion(op: &v1::offer::Operation) -> Result<Conversion, String> {
    let mut c = Conversion::default();
    match op_type(op) {
        OpType::Reserve => {
            let Some(reserve) = op.reserve.as_ref() else {
                return Err("Invalid RESERVE: 'reserve' is missing".into());
            };
            if reserve.resources.is_empty() {
                return Err("Invalid RESERVE: no resources to reserve".into());
            }
            for r in &reserve.resources {
                let r = upgraded(r)?;
                check_reserve(&r)?;
                c.converted.add(&r);
                if reserve.source.is_empty() {
                    c.consumed.add(&pop_reservation(&r));
                }
            }
            for s in &reserve.source {
                c.consumed.add(&upgraded(s)?);
            }
            if c.consumed.scalars() != c.converted.scalars() {
                return Err("Invalid RESERVE: 'source' and 'resources' differ in quantity".into());
            }
        }
        OpType::Unreserve => {
            let Some(unreserve) = op.unreserve.as_ref() else {
                return Err("Invalid UNRESERVE: 'unreserve' is missing".into());
            };
            if unreserve.resources.is_empty() {
                return Err("Invalid UNRESERVE: no resources to unreserve".into());
            }
            for r in &unreserve.resources {
                let r = upgraded(r)?;
                match r.reservations.last() {
                    None => {
                        return Err(format!(
                            "Invalid UNRESERVE: resource '{}' is not reserved",
                            r.name
                        ))
                    }
                    Some(l)
                        if l.r#type != Some(resource::reservation_info::Type::Dynamic as i32) =>
                    {
                        return Err(format!(
                            "Invalid UNRESERVE: resource '{}' is statically reserved; \
                             only dynamic reservations can be unreserved",
                            r.name
                        ))
                    }
                    _ => {}
                }
                if is_persistent_volume(&r) {
                    return Err(format!(
                        "Invalid UNRESERVE: persistent volume '{}' must be destroyed first",
                        persistence_id(&r).unwrap_or_default()
                    ));
                }
                c.consumed.add(&r);
                c.converted.add(&pop_reservation(&r));
            }
        }
        OpType::Create => {
            let Some(create) = op.create.as_ref() else {
                return Err("Invalid CREATE: 'create' is missing".into());
            };
            if create.volumes.is_empty() {
                return Err("Invalid CREATE: no volumes to create".into());
            }
            let mut ids = std::collections::BTreeSet::new();
            for v in &create.volumes {
                let v = upgraded(v)?;
                check_volume(&v, "CREATE")?;
                let id = persistence_id(&v).unwrap_or_default().to_string();
                if !ids.insert((resources::reservation_role(&v).to_string(), id.clone())) {
                    return Err(format!(
                        "Invalid CREATE: persistence id '{id}' appears twice"
                    ));
                }
                c.consumed.add(&strip_volume(&v));
                c.converted.add(&v);
            }
        }
        OpType::Destroy => {
            let Some(destroy) = op.destroy.as_ref() else {
                return Err("Invalid DESTROY: 'destroy' is missing".into());
            };
            if destroy.volumes.is_empty() {
                return Err("Invalid DESTROY: no volumes to destroy".into());
            }
            for v in &destroy.volumes {
                let v = upgraded(v)?;
                if !is_persistent_volume(&v) {
                    return Err(format!(
                        "Invalid DESTROY: resource '{}' is not a persistent volume",
                        v.name
                    ));
                }
                c.consumed.add(&v);
                c.converted.add(&strip_volume(&v));
            }
        }
        OpType::GrowVolume => {
            let Some(grow) = op.grow_volume.as_ref() else {
                return Err("Invalid GROW_VOLUME: 'grow_volume' is missing".into());
            };
            let volume = upgraded(&grow.volume)?;
            let addition = upgraded(&grow.addition)?;
            check_volume(&volume, "GROW_VOLUME")?;
            if scalar_value(&addition) <= 0.0 {
                return Err("Invalid GROW_VOLUME: the addition must be positive".into());
            }
            if !resources::same_kind(&addition, &strip_volume(&volume)) {
                return Err("Invalid GROW_VOLUME: the addition must be disk with the \
                            volume's reservations and source"
                    .into());
            }
            c.consumed.add(&volume);
            c.consumed.add(&addition);
            c.converted.add(&with_scalar(
                &volume,
                scalar_value(&volume) + scalar_value(&addition),
            ));
        }
        OpType::ShrinkVolume => {
            let Some(shrink) = op.shrink_volume.as_ref() else {
                return Err("Invalid SHRINK_VOLUME: 'shrink_volume' is missing".into());
            };
            let volume = upgraded(&shrink.volume)?;
            check_volume(&volume, "SHRINK_VOLUME")?;
            let by = shrink.subtract.value;
            if !by.is_finite() || by <= 0.0 || by >= scalar_value(&volume) {
                return Err(format!(
                    "Invalid SHRINK_VOLUME: subtract must be positive and smaller than \
                     the volume ({} MB)",
                    scalar_value(&volume)
                ));
            }
            c.consumed.add(&volume);
            c.converted
                .add(&with_scalar(&volume, scalar_value(&volume) - by));
            c.converted.add(&with_scalar(&strip_volume(&volume), by));
        }
        other => return Err(format!("operation {other:?} does not convert resources")),
    }
    Ok(c)
}

/// Whether `total` holds `consumed`, with persistent volumes whole (a
/// volume cannot be taken in part).
pub fn holds(total: &Resources, consumed: &Resources) -> bool {
    if !total.contains(consumed) {
        return false;
    }
    consumed.as_slice().iter().all(|r| {
        !is_persistent_volume(r)
            || total
                .as_slice()
                .iter()
                .any(|t| resources::same_kind(t, r) && scalar_value(t) == scalar_value(r))
    })
}

/// Applies a conversion to `total`: the consumed resources must be present.
/// `what` names the total in the error ("offered", "agent's").
pub fn apply_conversion(
    total: &Resources,
    c: &Conversion,
    what: &str,
) -> Result<Resources, String> {
    if !holds(total, &c.consumed) {
        return Err(format!(
            "the {what} resources {} do not contain {}",
            describe(total),
            describe(&c.consumed)
        ));
    }
    let mut out = total.clone();
    out.subtract_all(&c.consumed);
    out.add_all(&c.converted);
    Ok(out)
}

/// Applies an operation to an agent's total (resources without allocation
/// info): the checks of [`conversion`], presence of what it consumes, and
/// uniqueness of a new volume's persistence id within its role.
pub fn apply(total: &Resources, op: &v1::offer::Operation) -> Result<Resources, String> {
    let c = conversion(op)?;
    let c = Conversion {
        consumed: c.consumed.unallocated(),
        converted: c.converted.unallocated(),
    };
    if op_type(op) == OpType::Create {
        check_new_volumes(total, &c.converted)?;
    }
    apply_conversion(total, &c, "agent's")
}

/// Refuses volumes whose (role, persistence id) already exists in `total`.
pub fn check_new_volumes(total: &Resources, volumes: &Resources) -> Result<(), String> {
    for v in volumes.as_slice() {
        let id = persistence_id(v).unwrap_or_default();
        let role = resources::reservation_role(v);
        if total
            .as_slice()
            .iter()
            .any(|t| persistence_id(t) == Some(id) && resources::reservation_role(t) == role)
        {
            return Err(format!(
                "Invalid CREATE: persistence id '{id}' is already in use by role '{role}' \
                 on this agent"
            ));
        }
    }
    Ok(())
}

/// A short human-readable rendering (`cpus(a):1; disk(a)[vol:/data]:64`).
pub fn describe(rs: &Resources) -> String {
    if rs.is_empty() {
        return "{}".into();
    }
    rs.as_slice()
        .iter()
        .map(describe_one)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One resource in the agent flag's notation, with reservation and volume.
pub fn describe_one(r: &Resource) -> String {
    let mut s = r.name.clone();
    let role = resources::reservation_role(r);
    if role != "*" {
        s.push_str(&format!("({role})"));
    }
    if let Some(id) = persistence_id(r) {
        let path = r
            .disk
            .as_ref()
            .and_then(|d| d.volume.as_ref())
            .map(|v| v.container_path.as_str())
            .unwrap_or("");
        s.push_str(&format!("[{id}:{path}]"));
    }
    if let Some(sc) = &r.scalar {
        s.push_str(&format!(":{}", sc.value));
    } else if let Some(rs) = &r.ranges {
        let parts: Vec<String> = rs
            .range
            .iter()
            .map(|x| format!("{}-{}", x.begin, x.end))
            .collect();
        s.push_str(&format!(":[{}]", parts.join(",")));
    } else if let Some(set) = &r.set {
        s.push_str(&format!(":{{{}}}", set.item.join(",")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::resource::{disk_info, DiskInfo, ReservationInfo};

    fn dynamic(role: &str) -> ReservationInfo {
        ReservationInfo {
            r#type: Some(resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.into()),
            principal: Some("ops".into()),
            labels: None,
        }
    }

    fn reserved(mut r: Resource, roles: &[&str]) -> Resource {
        r.reservations = roles.iter().map(|x| dynamic(x)).collect();
        r
    }

    fn volume(r: Resource, id: &str) -> Resource {
        let mut r = r;
        r.disk = Some(Box::new(DiskInfo {
            persistence: Some(disk_info::Persistence {
                id: id.into(),
                principal: Some("ops".into()),
            }),
            volume: Some(v1::Volume {
                mode: v1::volume::Mode::Rw as i32,
                container_path: "data".into(),
                ..Default::default()
            }),
            source: None,
        }));
        r
    }

    fn op(ty: OpType) -> v1::offer::Operation {
        v1::offer::Operation {
            r#type: Some(ty as i32),
            ..Default::default()
        }
    }

    fn reserve(rs: Vec<Resource>) -> v1::offer::Operation {
        let mut o = op(OpType::Reserve);
        o.reserve = Some(v1::offer::operation::Reserve {
            source: vec![],
            resources: rs,
        });
        o
    }

    fn create(vs: Vec<Resource>) -> v1::offer::Operation {
        let mut o = op(OpType::Create);
        o.create = Some(v1::offer::operation::Create { volumes: vs });
        o
    }

    fn destroy(vs: Vec<Resource>) -> v1::offer::Operation {
        let mut o = op(OpType::Destroy);
        o.destroy = Some(v1::offer::operation::Destroy { volumes: vs });
        o
    }

    fn unreserve(rs: Vec<Resource>) -> v1::offer::Operation {
        let mut o = op(OpType::Unreserve);
        o.unreserve = Some(v1::offer::operation::Unreserve { resources: rs });
        o
    }

    fn total() -> Resources {
        Resources::from_vec(&[
            resources::scalar("cpus", 4.0),
            resources::scalar("disk", 1024.0),
        ])
    }

    #[test]
    fn reserve_create_destroy_unreserve_round_trip() {
        let disk = reserved(resources::scalar("disk", 256.0), &["web"]);
        let t1 = apply(&total(), &reserve(vec![disk.clone()])).unwrap();
        assert_eq!(t1.scalar("disk"), 1024.0);
        assert!(t1.contains_one(&disk));
        let vol = volume(disk.clone(), "v1");
        let t2 = apply(&t1, &create(vec![vol.clone()])).unwrap();
        assert!(t2.contains_one(&vol));
        assert!(!t2.contains_one(&disk));
        // The same id twice is refused.
        let err = apply(&t2, &create(vec![volume(disk.clone(), "v1")])).unwrap_err();
        assert!(err.contains("already in use"), "{err}");
        // A volume cannot be unreserved before it is destroyed.
        assert!(apply(&t2, &unreserve(vec![vol.clone()])).is_err());
        let t3 = apply(&t2, &destroy(vec![vol])).unwrap();
        let t4 = apply(&t3, &unreserve(vec![disk])).unwrap();
        assert_eq!(t4, total());
    }

    #[test]
    fn refused_operations_name_the_problem() {
        // More than is there.
        let big = reserved(resources::scalar("cpus", 5.0), &["web"]);
        let err = apply(&total(), &reserve(vec![big])).unwrap_err();
        assert!(err.contains("do not contain"), "{err}");
        // Unreserving what is not reserved.
        let err = apply(&total(), &unreserve(vec![resources::scalar("cpus", 1.0)])).unwrap_err();
        assert!(err.contains("not reserved"), "{err}");
        // A volume on unreserved disk.
        let err = apply(
            &total(),
            &create(vec![volume(resources::scalar("disk", 1.0), "x")]),
        )
        .unwrap_err();
        assert!(err.contains("reserved disk"), "{err}");
        // Refining a reservation to a role that is not nested.
        let disk = reserved(resources::scalar("disk", 1.0), &["a"]);
        let t = apply(&total(), &reserve(vec![disk])).unwrap();
        let err = apply(
            &t,
            &reserve(vec![reserved(resources::scalar("disk", 1.0), &["a", "b"])]),
        )
        .unwrap_err();
        assert!(err.contains("nested"), "{err}");
        let refined = reserved(resources::scalar("disk", 1.0), &["a", "a/b"]);
        let t = apply(&t, &reserve(vec![refined.clone()])).unwrap();
        assert!(t.contains_one(&refined));
        // Unreserving pops only the refinement.
        let t = apply(&t, &unreserve(vec![refined])).unwrap();
        assert!(t.contains_one(&reserved(resources::scalar("disk", 1.0), &["a"])));
    }

    #[test]
    fn grow_and_shrink_keep_the_volume() {
        let disk = reserved(resources::scalar("disk", 512.0), &["db"]);
        let t = apply(&total(), &reserve(vec![disk])).unwrap();
        let vol = volume(reserved(resources::scalar("disk", 128.0), &["db"]), "pg");
        let t = apply(&t, &create(vec![vol.clone()])).unwrap();
        let mut grow = op(OpType::GrowVolume);
        grow.grow_volume = Some(v1::offer::operation::GrowVolume {
            volume: vol.clone(),
            addition: reserved(resources::scalar("disk", 64.0), &["db"]),
        });
        let t = apply(&t, &grow).unwrap();
        let grown = with_scalar(&vol, 192.0);
        assert!(t.contains_one(&grown));
        let mut shrink = op(OpType::ShrinkVolume);
        shrink.shrink_volume = Some(v1::offer::operation::ShrinkVolume {
            volume: grown.clone(),
            subtract: v1::value::Scalar { value: 92.0 },
        });
        let t = apply(&t, &shrink).unwrap();
        assert!(t.contains_one(&with_scalar(&vol, 100.0)));
        assert_eq!(t.scalar("disk"), 1024.0);
        // A volume is consumed whole: destroying part of it is refused.
        let err = apply(&t, &destroy(vec![with_scalar(&vol, 50.0)])).unwrap_err();
        assert!(err.contains("do not contain"), "{err}");
    }

    #[test]
    fn static_reservations_cannot_be_unreserved() {
        let mut r = resources::scalar("cpus", 1.0);
        r.role = Some("web".into());
        resources::upgrade(&mut r);
        let t = Resources::from_vec(&[r.clone()]);
        let err = apply(&t, &unreserve(vec![r])).unwrap_err();
        assert!(err.contains("statically"), "{err}");
    }
}
