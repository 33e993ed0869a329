//! What a permission key's action says: whether holding the key lets one read, write, or neither is known.
//!
//! Pure vocabulary, no decision depends on it: the gateway compares keys as opaque strings. The OpenAPI
//! importer uses it not to guess in the permissive direction (a write must require a write key), and
//! `permgate validate` to find write routes that a group named "… Read" passes.
//!
//! A key's action is its last word: after the `:` of a legacy key (`#dns_records:edit` → `edit`), after the
//! last `.` of a dotted key (`com.cloudflare.api.account.token.create` → `create`). Some dotted keys name no
//! action at all (`com.cloudflare.api.account.aig`: Cloudflare's spec requires that one key for reading and
//! for writing AI Gateways); their last word is in neither list, so they are [`KeyAction::Unknown`], which
//! never counts as a read and never as a write.

/// Actions that only read: a key with one of these never lets its holder change anything.
pub const READ_ACTIONS: [&str; 3] = ["read", "list", "report"];

/// Actions that change state: every write action of Cloudflare's spec and permission-group names
/// (`create`, `update`, `edit`, `write`, `delete`, `purge`, `publish`, `batch`, `revoke`) and the verbs of
/// the same kind (`deploy`, `import`, `upload`, `run`, `execute`). Verbs only: a word that could also name a
/// resource (`admin`) would make the importer take an action-less key for a write key.
pub const WRITE_ACTIONS: [&str; 14] = [
    "create", "update", "edit", "write", "delete", "purge", "publish", "batch", "revoke", "deploy",
    "import", "upload", "run", "execute",
];

/// Keys whose action word writes but which only read, each with the reason. Opening a log tail
/// (`worker.tail.create`) creates a session that streams a script's logs to the caller and changes nothing
/// else; Cloudflare's "Workers Tail Read" group exists for exactly this.
pub const READ_EXCEPTIONS: [(&str, &str); 1] = [(
    "com.cloudflare.edge.worker.tail.create",
    "opening a log tail only streams a script's logs to the caller; Cloudflare's \"Workers Tail Read\" group \
     exists for it",
)];

/// The action a permission key says it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Reading only ([`READ_ACTIONS`], or a [`READ_EXCEPTIONS`] key).
    Read,
    /// Changing state ([`WRITE_ACTIONS`]).
    Write,
    /// No action word, or one in neither list: neither a read nor a write can be assumed.
    Unknown,
}

/// The last word of a key: after the `:` of a legacy `#resource:action` key, else after the last `.`.
pub fn action_word(key: &str) -> &str {
    let key = key.strip_suffix('*').unwrap_or(key);
    match key.strip_prefix('#') {
        Some(legacy) => legacy.rsplit_once(':').map_or("", |(_, action)| action),
        None => key.rsplit_once('.').map_or(key, |(_, action)| action),
    }
}

/// What `key` lets its holder do, by its action word (see the module docs).
pub fn key_action(key: &str) -> KeyAction {
    if READ_EXCEPTIONS
        .iter()
        .any(|(exception, _)| *exception == key)
    {
        return KeyAction::Read;
    }
    let action = action_word(key);
    if READ_ACTIONS.contains(&action) {
        KeyAction::Read
    } else if WRITE_ACTIONS.contains(&action) {
        KeyAction::Write
    } else {
        KeyAction::Unknown
    }
}

/// The write flavour of a key that does not write: the same resource with the action `edit`, the word both
/// key styles use for "change" (`#zone_settings:read` → `#zone_settings:edit`,
/// `com.cloudflare.edge.worker.script.read` → `com.cloudflare.edge.worker.script.edit`); a dotted key that
/// names no action gets `.edit` appended (`com.cloudflare.api.account.aig` → `com.cloudflare.api.account.aig.edit`).
pub fn write_flavour(key: &str) -> String {
    if let Some(legacy) = key.strip_prefix('#') {
        let resource = legacy
            .rsplit_once(':')
            .map_or(legacy, |(resource, _)| resource);
        return format!("#{resource}:edit");
    }
    let word = action_word(key);
    if (READ_ACTIONS.contains(&word)
        || WRITE_ACTIONS.contains(&word)
        || READ_EXCEPTIONS
            .iter()
            .any(|(exception, _)| *exception == key))
        && let Some((resource, _)) = key.rsplit_once('.')
    {
        return format!("{resource}.edit");
    }
    format!("{key}.edit")
}

/// Whether a method only reads (GET, HEAD, OPTIONS). Every other method, `*` included, can write.
pub fn is_safe_method(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|safe| method.eq_ignore_ascii_case(safe))
}

/// Whether a permission group's name says it only reads: its last word is `Read` ("DNS Read",
/// "Zero Trust: PII Read", "Workers Tail Read").
pub fn is_read_group_name(name: &str) -> bool {
    name.split_whitespace().next_back() == Some("Read")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_of_both_key_styles() {
        assert_eq!(key_action("#dns_records:read"), KeyAction::Read);
        assert_eq!(key_action("#teams:report"), KeyAction::Read);
        assert_eq!(key_action("#dns_records:edit"), KeyAction::Write);
        assert_eq!(key_action("#zaraz:publish"), KeyAction::Write);
        assert_eq!(key_action("#dns_records:batch"), KeyAction::Write);
        assert_eq!(
            key_action("com.cloudflare.api.account.token.list"),
            KeyAction::Read
        );
        assert_eq!(
            key_action("com.cloudflare.api.account.update"),
            KeyAction::Write
        );
        assert_eq!(
            key_action("com.cloudflare.edge.r2.bucket.write"),
            KeyAction::Write
        );
        assert_eq!(
            key_action("com.cloudflare.edge.worker.script.delete"),
            KeyAction::Write
        );
    }

    #[test]
    fn a_key_without_an_action_is_neither_read_nor_write() {
        assert_eq!(
            key_action("com.cloudflare.api.account.aig"),
            KeyAction::Unknown
        );
        assert_eq!(
            key_action("com.cloudflare.api.account.ai"),
            KeyAction::Unknown
        );
        assert_eq!(key_action("#dns_records"), KeyAction::Unknown);
        assert_eq!(key_action("#dns_records:frobnicate"), KeyAction::Unknown);
        assert_eq!(key_action("plain"), KeyAction::Unknown);
    }

    #[test]
    fn opening_a_log_tail_is_the_one_read_exception() {
        assert_eq!(
            key_action("com.cloudflare.edge.worker.tail.create"),
            KeyAction::Read
        );
        // Only that key: another `create` is still a write.
        assert_eq!(
            key_action("com.cloudflare.edge.worker.script.create"),
            KeyAction::Write
        );
    }

    #[test]
    fn write_flavours() {
        assert_eq!(write_flavour("#zone_settings:read"), "#zone_settings:edit");
        assert_eq!(write_flavour("#dns_records"), "#dns_records:edit");
        assert_eq!(
            write_flavour("com.cloudflare.edge.worker.script.read"),
            "com.cloudflare.edge.worker.script.edit"
        );
        assert_eq!(
            write_flavour("com.cloudflare.edge.worker.tail.create"),
            "com.cloudflare.edge.worker.tail.edit"
        );
        assert_eq!(
            write_flavour("com.cloudflare.api.account.aig"),
            "com.cloudflare.api.account.aig.edit"
        );
        for key in [
            "#zone_settings:read",
            "com.cloudflare.api.account.aig",
            "com.cloudflare.edge.worker.tail.create",
        ] {
            assert_eq!(key_action(&write_flavour(key)), KeyAction::Write, "{key}");
        }
    }

    #[test]
    fn methods_and_group_names() {
        assert!(is_safe_method("GET") && is_safe_method("head") && is_safe_method("OPTIONS"));
        for method in ["POST", "PUT", "PATCH", "DELETE", "TRACE", "*"] {
            assert!(!is_safe_method(method), "{method}");
        }
        assert!(is_read_group_name("DNS Read"));
        assert!(is_read_group_name("Zero Trust: PII Read"));
        assert!(!is_read_group_name("DNS Write"));
        assert!(!is_read_group_name("Read Replicas Admin"));
        assert!(!is_read_group_name("Reader"));
    }
}
