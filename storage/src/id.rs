//! Validation of volume ids and holders, and their encoding as one path
//! component each.
//!
//! HDFS refuses path components with `:` and Hadoop's `Path` gives meaning
//! to more characters, so ids are stored encoded: ASCII letters, digits,
//! `.`, `_` and `-` as themselves, every other byte as `%XX`.

use crate::{StorageError, VolumeId};

const MAX_ID_BYTES: usize = 200;
const MAX_HOLDER_BYTES: usize = 1024;

fn invalid(what: &'static str, value: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidId {
        what,
        value: value.to_string(),
        reason,
    }
}

pub(crate) fn validate_persistence_id(id: &str) -> Result<(), StorageError> {
    const WHAT: &str = "persistence id";
    if id.is_empty() {
        return Err(invalid(WHAT, id, "it is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(invalid(WHAT, id, "it is longer than 200 bytes"));
    }
    if id == "." || id == ".." {
        return Err(invalid(WHAT, id, "'.' and '..' are not allowed"));
    }
    if id.contains(['/', '\\']) {
        return Err(invalid(WHAT, id, "it must not contain '/' or '\\'"));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid(
            WHAT,
            id,
            "it must not contain NUL or other control characters",
        ));
    }
    Ok(())
}

pub(crate) fn validate_role(role: &str) -> Result<(), StorageError> {
    const WHAT: &str = "role";
    if role.is_empty() {
        return Err(invalid(WHAT, role, "it is empty"));
    }
    if role.len() > MAX_ID_BYTES {
        return Err(invalid(WHAT, role, "it is longer than 200 bytes"));
    }
    if role
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(invalid(
            WHAT,
            role,
            "it must not contain NUL, control characters, whitespace or '\\'",
        ));
    }
    for level in role.split('/') {
        if level.is_empty() {
            return Err(invalid(
                WHAT,
                role,
                "an empty level ('/' at either end, or '//')",
            ));
        }
        if level == "." || level == ".." {
            return Err(invalid(WHAT, role, "a level is '.' or '..'"));
        }
        if level.starts_with('-') {
            return Err(invalid(WHAT, role, "a level starts with '-'"));
        }
    }
    Ok(())
}

pub(crate) fn validate_holder(holder: &str) -> Result<(), StorageError> {
    const WHAT: &str = "lease holder";
    if holder.is_empty() {
        return Err(invalid(WHAT, holder, "it is empty"));
    }
    if holder.len() > MAX_HOLDER_BYTES {
        return Err(invalid(WHAT, holder, "it is longer than 1024 bytes"));
    }
    if holder.chars().any(char::is_control) {
        return Err(invalid(
            WHAT,
            holder,
            "it must not contain NUL or other control characters",
        ));
    }
    Ok(())
}

/// One path component for an id (see the module docs).
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The volume's directory below a backend's root: `<role>/<persistence id>`,
/// both encoded (a hierarchical role stays one component: its `/` is
/// encoded too, so `a/b` + `c` and `a` + `b/c` never meet).
pub(crate) fn volume_dir(id: &VolumeId) -> String {
    format!(
        "{}/{}",
        encode_component(&id.role),
        encode_component(&id.persistence_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_safe_bytes_and_escapes_the_rest() {
        assert_eq!(encode_component("kafka-0_a.b"), "kafka-0_a.b");
        assert_eq!(encode_component("a:b/c%"), "a%3Ab%2Fc%25");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_component("..."), "...");
    }

    #[test]
    fn hierarchical_roles_do_not_collide_with_ids() {
        let a = volume_dir(&VolumeId::new("a/b", "c"));
        let b = volume_dir(&VolumeId::new("a", "b/c"));
        assert_ne!(a, b);
        assert_eq!(a, "a%2Fb/c");
    }

    #[test]
    fn roles() {
        for ok in ["eng", "eng/spark", "*", "a.b", "x-y", "a/b/c"] {
            validate_role(ok).unwrap();
        }
        for bad in [
            "", ".", "..", "/a", "a/", "a//b", "a/./b", "a/../b", "-a", "a/-b", "a b", "a\0b",
            "a\\b",
        ] {
            assert!(validate_role(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_role(&"r".repeat(201)).is_err());
    }

    #[test]
    fn persistence_ids() {
        for ok in ["v1", "kafka:broker 0", "...", ".hidden", "ünï"] {
            validate_persistence_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb"] {
            assert!(validate_persistence_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_persistence_id(&"p".repeat(201)).is_err());
    }

    #[test]
    fn holders() {
        validate_holder("agent-1 (host:5051)").unwrap();
        assert!(validate_holder("").is_err());
        assert!(validate_holder("a\0").is_err());
    }
}
