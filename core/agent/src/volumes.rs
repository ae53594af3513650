//! Persistent volumes on the agent: where their data lives, which of a
//! container's resources are volumes, and bind-mounting them into sandboxes.
//!
//! A persistent volume's data lives at
//! `<work_dir>/volumes/roles/<role>/<persistence id>`, Mesos' layout. A
//! hierarchical role's `/` cannot appear in one directory name, so it is
//! written as a space (`eng/spark` -> `eng spark`), as Mesos does; role names
//! never contain whitespace, so the encoding is unambiguous.
//!
//! A task or executor whose resources hold a volume gets it bind-mounted at
//! `<sandbox>/<container_path>` (read-only when `Volume.mode` is RO) before
//! its executor starts. The mount is made in the agent's mount namespace and
//! recorded with the container; it is detached (`MNT_DETACH`) when the
//! container ends and, after a restart, for containers that did not survive.
//! A sandbox is never removed while something is mounted below it
//! ([`remove_sandbox`]), so removing a sandbox can never reach into a
//! volume's data.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use corral_api::operations::{is_persistent_volume, persistence_id};
use corral_api::resources::reservation_role;
use corral_api::v1::{self, Resource};

/// The reservation label that asks for an HDFS-backed volume: a volume whose
/// disk is reserved (last entry of `reservations`) with this label.
pub const BACKEND_LABEL: &str = "corral.storage/backend";
/// The value of [`BACKEND_LABEL`] for HDFS.
pub const BACKEND_HDFS: &str = "hdfs";

/// Errors of mounting and unmounting.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The volume cannot be placed where the task asks for it.
    #[error("{0}")]
    Invalid(String),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A persistent volume a container uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUse {
    /// The role its disk is reserved for.
    pub role: String,
    /// `DiskInfo.persistence.id`.
    pub persistence_id: String,
    /// `DiskInfo.volume.container_path`.
    pub container_path: String,
    /// `Volume.mode` is RO.
    pub read_only: bool,
    /// The reservation carries `corral.storage/backend=hdfs`.
    pub hdfs: bool,
}

/// Checks a volume's role and persistence id are safe as path components
/// (Mesos' role rules: levels separated by `/`, none empty, `.` or `..`;
/// no `/` in the persistence id).
pub fn validate(v: &VolumeUse) -> Result<(), String> {
    corral_storage::VolumeId::new(v.role.clone(), v.persistence_id.clone())
        .validate()
        .map_err(|e| format!("persistent volume '{}': {e}", v.persistence_id))
}

/// The directory name of a role under `volumes/roles`.
pub fn role_dir_name(role: &str) -> String {
    role.replace('/', " ")
}

/// `<work_dir>/volumes/roles/<role>/<persistence id>`.
pub fn volume_dir(work_dir: &Path, role: &str, persistence_id: &str) -> PathBuf {
    work_dir
        .join("volumes")
        .join("roles")
        .join(role_dir_name(role))
        .join(persistence_id)
}

/// Whether a volume's reservation asks for the HDFS backend.
pub fn is_hdfs_backed(r: &Resource) -> bool {
    r.reservations
        .last()
        .or(r.reservation.as_ref())
        .and_then(|res| res.labels.as_ref())
        .is_some_and(|l| {
            l.labels
                .iter()
                .any(|l| l.key == BACKEND_LABEL && l.value.as_deref() == Some(BACKEND_HDFS))
        })
}

/// The persistent volumes among `resources`.
pub fn volumes_of<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Vec<VolumeUse> {
    let mut out: Vec<VolumeUse> = Vec::new();
    for r in resources {
        if !is_persistent_volume(r) {
            continue;
        }
        let volume = r.disk.as_ref().and_then(|d| d.volume.as_ref());
        let v = VolumeUse {
            role: reservation_role(r).to_string(),
            persistence_id: persistence_id(r).unwrap_or_default().to_string(),
            container_path: volume.map(|v| v.container_path.clone()).unwrap_or_default(),
            read_only: volume.is_some_and(|v| v.mode == v1::volume::Mode::Ro as i32),
            hdfs: is_hdfs_backed(r),
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Where a volume with a relative `container_path` goes in a sandbox. An
/// absolute path needs a container image (a Docker task), and `..` or an
/// empty path are refused.
pub fn mount_point(sandbox: &Path, v: &VolumeUse) -> Result<PathBuf, VolumeError> {
    let p = Path::new(&v.container_path);
    if v.container_path.is_empty() {
        return Err(VolumeError::Invalid(format!(
            "persistent volume '{}' has an empty container_path",
            v.persistence_id
        )));
    }
    if p.is_absolute() {
        return Err(VolumeError::Invalid(format!(
            "persistent volume '{}' has the absolute container_path '{}', which needs a \
             container image; without one (the Mesos containerizer runs tasks on the host's \
             file system) give a path relative to the sandbox, such as 'data'",
            v.persistence_id, v.container_path
        )));
    }
    let mut out = sandbox.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(VolumeError::Invalid(format!(
                    "persistent volume '{}': container_path '{}' must stay inside the sandbox",
                    v.persistence_id, v.container_path
                )))
            }
        }
    }
    if out == sandbox {
        return Err(VolumeError::Invalid(format!(
            "persistent volume '{}': container_path '{}' names the sandbox itself",
            v.persistence_id, v.container_path
        )));
    }
    Ok(out)
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

fn cpath(p: &Path) -> Result<CString, VolumeError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| VolumeError::Invalid(format!("path {} contains NUL", p.display())))
}

/// Creates `target` (a directory below `base`) without following symbolic
/// links: a link on the way (put there by a task, say) is refused rather than
/// mounted through.
fn create_mount_dir(base: &Path, target: &Path) -> Result<(), VolumeError> {
    let rel = target.strip_prefix(base).map_err(|_| {
        VolumeError::Invalid(format!(
            "{} is outside {}",
            target.display(),
            base.display()
        ))
    })?;
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(VolumeError::Invalid(format!(
                    "cannot mount a volume at {}: it is a symbolic link",
                    cur.display()
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(VolumeError::Invalid(format!(
                    "cannot mount a volume at {}: a file is in the way",
                    cur.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(io("cannot create the mount point", &cur))?;
            }
            Err(e) => return Err(io("cannot inspect", &cur)(e)),
        }
    }
    Ok(())
}

/// Bind-mounts `source` at `target` (created, inside `base`), read-only when
/// asked (a bind mount followed by a read-only remount of it).
pub fn bind_mount(
    source: &Path,
    base: &Path,
    target: &Path,
    read_only: bool,
) -> Result<(), VolumeError> {
    create_mount_dir(base, target)?;
    let (src, dst) = (cpath(source)?, cpath(target)?);
    // SAFETY: both are valid NUL-terminated paths; a bind mount takes no
    // filesystem type or data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io("cannot bind-mount the volume at", target)(
            std::io::Error::last_os_error(),
        ));
    }
    if read_only {
        // SAFETY: as above; the remount changes the flags of the bind mount
        // just made at `dst`.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            let _ = unmount(target);
            return Err(io("cannot make the volume read-only at", target)(e));
        }
    }
    Ok(())
}

/// Detaches the mount at `target` (lazily: processes that still have files
/// open keep them, the path is free at once). Not mounted is fine.
pub fn unmount(target: &Path) -> Result<(), VolumeError> {
    let dst = cpath(target)?;
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // EINVAL: not a mount point; ENOENT: gone.
        if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Ok(());
        }
        return Err(io("cannot unmount", target)(e));
    }
    Ok(())
}

/// Decodes the octal escapes of `/proc/self/mountinfo` (`\040` is a space).
fn unescape_mount_path(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Mount points in `mountinfo` text at or below `dir`, most recent first
/// (the order to unmount them in).
pub fn parse_mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.reverse();
    out.dedup();
    out
}

/// Mount points at or below `dir` in the agent's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mounts_under(&t, dir))
        .unwrap_or_default()
}

/// Detaches every mount at or below `dir`; returns how many.
pub fn unmount_all_under(dir: &Path) -> usize {
    let mut n = 0;
    for m in mounts_under(dir) {
        match unmount(&m) {
            Ok(()) => n += 1,
            Err(e) => tracing::warn!(mount = %m.display(), error = %e, "cannot unmount"),
        }
    }
    n
}

/// Removes a sandbox (garbage collection): first every mount below it is
/// detached, and nothing is removed if one cannot be, so that a volume's
/// data is never deleted with the sandbox it was mounted into.
pub fn remove_sandbox(dir: &Path) -> Result<(), VolumeError> {
    unmount_all_under(dir);
    if let Some(m) = mounts_under(dir).into_iter().next() {
        return Err(VolumeError::Invalid(format!(
            "not removing {}: {} is still mounted",
            dir.display(),
            m.display()
        )));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("cannot remove", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::resources;
    use corral_api::v1::resource::{disk_info, DiskInfo, ReservationInfo};

    pub(crate) fn volume(
        role: &str,
        id: &str,
        path: &str,
        ro: bool,
        labels: &[(&str, &str)],
    ) -> Resource {
        let mut r = resources::scalar("disk", 64.0);
        r.reservations.push(ReservationInfo {
            r#type: Some(v1::resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.into()),
            principal: None,
            labels: (!labels.is_empty()).then(|| v1::Labels {
                labels: labels
                    .iter()
                    .map(|(k, v)| v1::Label {
                        key: (*k).into(),
                        value: Some((*v).into()),
                    })
                    .collect(),
            }),
        });
        r.disk = Some(Box::new(DiskInfo {
            persistence: Some(disk_info::Persistence {
                id: id.into(),
                principal: None,
            }),
            volume: Some(v1::Volume {
                mode: if ro {
                    v1::volume::Mode::Ro
                } else {
                    v1::volume::Mode::Rw
                } as i32,
                container_path: path.into(),
                ..Default::default()
            }),
            source: None,
        }));
        r
    }

    #[test]
    fn unsafe_roles_and_ids_are_refused() {
        let v = |role: &str, id: &str| VolumeUse {
            role: role.into(),
            persistence_id: id.into(),
            container_path: "d".into(),
            read_only: false,
            hdfs: false,
        };
        assert!(validate(&v("eng/spark", "v1")).is_ok());
        for (role, id) in [
            ("..", "v"),
            ("a/../b", "v"),
            ("a//b", "v"),
            ("r", ".."),
            ("r", "a/b"),
        ] {
            assert!(validate(&v(role, id)).is_err(), "{role} {id}");
        }
    }

    #[test]
    fn layout_and_role_encoding() {
        assert_eq!(
            volume_dir(Path::new("/w"), "eng/spark", "v1"),
            PathBuf::from("/w/volumes/roles/eng spark/v1")
        );
        assert_eq!(
            volume_dir(Path::new("/w"), "web", "pg"),
            PathBuf::from("/w/volumes/roles/web/pg")
        );
    }

    #[test]
    fn finds_volumes_and_the_hdfs_label() {
        let rs = vec![
            resources::scalar("cpus", 1.0),
            volume("web", "a", "data", false, &[]),
            volume("web", "b", "logs", true, &[(BACKEND_LABEL, BACKEND_HDFS)]),
        ];
        let vs = volumes_of(&rs);
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[0].persistence_id, "a");
        assert!(!vs[0].read_only && !vs[0].hdfs);
        assert!(vs[1].read_only && vs[1].hdfs);
        assert!(!is_hdfs_backed(&volume(
            "web",
            "c",
            "x",
            false,
            &[(BACKEND_LABEL, "local")]
        )));
    }

    #[test]
    fn mount_points_stay_in_the_sandbox() {
        let sb = Path::new("/sb");
        let v = |p: &str| volumes_of(&[volume("r", "v", p, false, &[])]).remove(0);
        assert_eq!(
            mount_point(sb, &v("data")).unwrap(),
            PathBuf::from("/sb/data")
        );
        assert_eq!(
            mount_point(sb, &v("./a/b")).unwrap(),
            PathBuf::from("/sb/a/b")
        );
        let err = mount_point(sb, &v("/data")).unwrap_err().to_string();
        assert!(err.contains("container image"), "{err}");
        assert!(mount_point(sb, &v("a/../../etc")).is_err());
        assert!(mount_point(sb, &v(".")).is_err());
    }

    #[test]
    fn parses_mountinfo() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 8:1 /w/volumes/roles/a\\040b/v /w/slaves/S/x/data rw shared:1 - ext4 /dev/sda1 rw\n\
                    91 22 8:1 /w/volumes/roles/r/v /w/slaves/S/y/data ro shared:1 - ext4 /dev/sda1 rw\n\
                    92 22 0:5 / /w/slavesX rw - tmpfs t rw\n";
        assert_eq!(
            parse_mounts_under(text, Path::new("/w/slaves")),
            vec![
                PathBuf::from("/w/slaves/S/y/data"),
                PathBuf::from("/w/slaves/S/x/data")
            ]
        );
        assert_eq!(
            unescape_mount_path("/a\\040b\\134c"),
            PathBuf::from("/a b\\c")
        );
    }

    /// Real bind mounts (the agent runs as root, as do these tests).
    #[test]
    fn mounts_read_write_and_read_only_and_gc_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let work = std::fs::canonicalize(dir.path()).unwrap();
        let data = volume_dir(&work, "web", "v1");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("existing"), b"old").unwrap();
        let sandbox = work.join("slaves/S/frameworks/F/executors/E/runs/C");
        std::fs::create_dir_all(&sandbox).unwrap();

        let rw = sandbox.join("data");
        let ro = sandbox.join("nested/ro");
        bind_mount(&data, &sandbox, &rw, false).unwrap();
        bind_mount(&data, &sandbox, &ro, true).unwrap();
        assert_eq!(mounts_under(&sandbox), vec![ro.clone(), rw.clone()]);
        // RW: writes land in the volume; RO: writes fail, reads work.
        std::fs::write(rw.join("new"), b"written").unwrap();
        assert_eq!(std::fs::read(data.join("new")).unwrap(), b"written");
        let err = std::fs::write(ro.join("nope"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert_eq!(std::fs::read(ro.join("existing")).unwrap(), b"old");

        // A symbolic link on the way to a mount point is refused.
        std::os::unix::fs::symlink("/tmp", sandbox.join("link")).unwrap();
        let err = bind_mount(&data, &sandbox, &sandbox.join("link/x"), false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        // Garbage collection of the sandbox unmounts first: the volume's
        // data survives the sandbox.
        remove_sandbox(&sandbox).unwrap();
        assert!(!sandbox.exists());
        assert!(mounts_under(&work).is_empty());
        assert_eq!(std::fs::read(data.join("existing")).unwrap(), b"old");
        assert_eq!(std::fs::read(data.join("new")).unwrap(), b"written");

        // Unmounting what is not mounted is fine.
        unmount(&rw).unwrap();
    }
}
