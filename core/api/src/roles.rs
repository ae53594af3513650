//! Role names as Mesos validates them.

/// Validates a role name as Mesos does.
pub fn validate_role(role: &str) -> Result<(), String> {
    if role == "*" {
        return Ok(());
    }
    if role.is_empty() {
        return Err("role name must not be empty".into());
    }
    if role.starts_with('/') || role.ends_with('/') {
        return Err(format!("role '{role}' must not start or end with '/'"));
    }
    for part in role.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.starts_with('-') {
            return Err(format!("role '{role}' has an invalid component '{part}'"));
        }
        if part
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(format!("role '{role}' contains invalid characters"));
        }
        if part == "*" {
            return Err(format!("role '{role}' must not contain '*' as a component"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_role;

    #[test]
    fn accepts_mesos_roles_and_refuses_the_rest() {
        for ok in ["*", "eng", "eng/spark", "a.b", "x-y"] {
            assert!(validate_role(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/eng", "eng/", "eng//x", ".", "..", "-x", "a b", "a/*", "a\\b",
        ] {
            assert!(validate_role(bad).is_err(), "{bad}");
        }
    }
}
