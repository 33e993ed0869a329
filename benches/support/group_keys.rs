//! The keys each catalog permission group grants over a set of route keys, shared by the benches that put
//! permgate beside another engine (Cedar, Rego), so both translate the synthetic world's groups the same way.
// Included by benches (`#[path]`); a broken setup should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::collections::HashMap;

use permgate::config::raw::RawPolicyFile;

/// Group id → the route keys it grants; `None` for the bare `*` (every key).
pub fn group_actions(raw: &RawPolicyFile, keys: &[String]) -> HashMap<String, Option<Vec<String>>> {
    raw.permission_groups
        .iter()
        .map(|group| {
            let mut granted = Vec::new();
            let mut all = false;
            for permission in group.permissions.iter().flatten() {
                let pattern = permission.key();
                if pattern == "*" {
                    all = true;
                } else if let Some(prefix) = pattern.strip_suffix('*') {
                    granted.extend(keys.iter().filter(|key| key.starts_with(prefix)).cloned());
                } else {
                    granted.push(pattern.to_string());
                }
            }
            (group.id.clone().unwrap(), (!all).then_some(granted))
        })
        .collect()
}
