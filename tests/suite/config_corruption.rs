//! Config corruption: more than 50 mutations of a valid config (truncation, wrong types, dangling
//! references, duplicate ids, a zone in two accounts, bad CIDRs and dates, wildcard misuse, a 50 MB file,
//! invalid UTF-8, an unreadable file, deleted files and folders) are applied to a running gateway through
//! `Reloader::reload_now`. Each must be rejected as a whole with an error naming the file (and, for content
//! errors, the path or line inside it), and the last good config must keep deciding exactly as before.

use crate::common;
use crate::reload_support;

use std::path::{Path, PathBuf};

use common::*;
use permgate::metrics::ReloadOutcome;
use permgate::reload::Trigger;
use reload_support::*;

/// Where the error must point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The file only (it cannot be read, is not UTF-8, is not there).
    File,
    /// The file and a path or line inside it.
    Located,
}

/// How a mutation damages the config folder.
enum Damage {
    /// Replace the text of a file (relative to the config folder) with `edit(text)`.
    Edit(&'static str, fn(String) -> String),
    /// Replace a file with these bytes.
    Bytes(&'static str, fn() -> Vec<u8>),
    /// Anything else, on the config folder.
    Custom(fn(&Path)),
}

struct Mutation {
    name: &'static str,
    damage: Damage,
    /// A fragment of the file name (or folder) the error must name.
    names: &'static str,
    place: Place,
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "mutation anchor {from:?} not found");
    text.replacen(from, to, 1)
}

fn truncate_at(text: &str, anchor: &str, extra: usize) -> String {
    let at = text.find(anchor).expect("truncation anchor") + extra;
    text[..at].to_string()
}

fn mutations() -> Vec<Mutation> {
    use Damage::*;
    use Place::*;
    let m = |name, damage, names, place| Mutation {
        name,
        damage,
        names,
        place,
    };
    vec![
        // ---- gateway.yaml
        m(
            "gateway: empty file",
            Bytes("gateway.yaml", Vec::new),
            "gateway.yaml",
            File,
        ),
        m(
            "gateway: truncated mid key",
            Edit("gateway.yaml", |t| truncate_at(&t, "admin_listen", 5)),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: truncated before routes",
            Edit("gateway.yaml", |t| truncate_at(&t, "route_files", 0)),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: listen is a list",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "listen: 127.0.0.1:0\n", "listen: [1, 2]\n")
            }),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: upstream scheme",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "url: http://", "url: ftp://")
            }),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: unknown key",
            Edit("gateway.yaml", |t| t + "surprise: 1\n"),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: missing policy file",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "tokens.yaml]", "tokens.yaml, missing.yaml]")
            }),
            "missing.yaml",
            File,
        ),
        m(
            "gateway: missing route folder",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "route_files: [routes]", "route_files: [no-such-dir]")
            }),
            "no-such-dir",
            File,
        ),
        m(
            "gateway: CIDR prefix too long",
            Edit("gateway.yaml", |t| t + "trusted_proxies: [10.0.0.0/33]\n"),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: CIDR not an address",
            Edit("gateway.yaml", |t| t + "trusted_proxies: [not-an-ip]\n"),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: unknown mode",
            Edit("gateway.yaml", |t| t + "mode: permissive\n"),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: boolean of wrong type",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "explain_denials: true", "explain_denials: maybe")
            }),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: negative timeout",
            Edit("gateway.yaml", |t| {
                replace_once(
                    &t,
                    "header_read_timeout_ms: 10000",
                    "header_read_timeout_ms: -5",
                )
            }),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: number of wrong type",
            Edit("gateway.yaml", |t| {
                replace_once(&t, "max_connections: 1000", "max_connections: lots")
            }),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: tab indentation",
            Edit("gateway.yaml", |t| replace_once(&t, "\n  url:", "\n\turl:")),
            "gateway.yaml",
            Located,
        ),
        m(
            "gateway: invalid UTF-8",
            Bytes("gateway.yaml", || {
                b"listen: 127.0.0.1:0\nadmin_listen: \xff\xfe\n".to_vec()
            }),
            "gateway.yaml",
            File,
        ),
        m(
            "gateway: unclosed flow mapping",
            Bytes("gateway.yaml", || b"{ listen: 127.0.0.1:0, ".to_vec()),
            "gateway.yaml",
            Located,
        ),
        // ---- permission_groups.yaml
        m(
            "groups: truncated mid key",
            Edit("permission_groups.yaml", |t| {
                truncate_at(&t, "    scopes:", 7)
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: duplicate id",
            Edit("permission_groups.yaml", |t| {
                replace_once(&t, "id: grp-dns-write", "id: grp-dns-read")
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: wildcard inside a key",
            Edit("permission_groups.yaml", |t| {
                replace_once(&t, "\"#dns_records:*\"", "\"#dns_*records:read\"")
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: wildcard in a dotted key",
            Edit("permission_groups.yaml", |t| {
                replace_once(
                    &t,
                    "com.cloudflare.api.account.zone.dns-record.*",
                    "com.*.dns-record.read",
                )
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: permissions is a number",
            Edit("permission_groups.yaml", |t| {
                replace_once(
                    &t,
                    "permissions:\n      - \"#dns_records:*\"",
                    "permissions: 5\n      x: \"#dns_records:*\"",
                )
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: unknown field",
            Edit("permission_groups.yaml", |t| {
                replace_once(&t, "name: DNS Read\n", "name: DNS Read\n    colour: red\n")
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: scopes twice",
            Edit("permission_groups.yaml", |t| {
                replace_once(
                    &t,
                    "name: DNS Read\n",
                    "name: DNS Read\n    meta: { scopes: com.cloudflare.api.account.zone }\n",
                )
            }),
            "permission_groups.yaml",
            Located,
        ),
        m(
            "groups: id misspelt",
            Edit("permission_groups.yaml", |t| {
                replace_once(&t, "- id: grp-dns-read", "- idd: grp-dns-read")
            }),
            "permission_groups.yaml",
            Located,
        ),
        // ---- accounts.yaml
        m(
            "accounts: zone in two accounts",
            Edit("accounts.yaml", |t| {
                t + "  - id: acct-b\n    name: B\n    zones: [{ id: zone-1, name: example.com }]\n"
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: duplicate account id",
            Edit("accounts.yaml", |t| t + "  - id: acct-a\n    name: Again\n"),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: duplicate zone id",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "id: zone-2,", "id: zone-1,")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: duplicate user id",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "  - id: user-dave\n", "  - id: user-joe\n")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: member is an unknown user",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "user: user-dave", "user: user-nobody")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: policy names an unknown group",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "{ id: grp-dns-write }", "{ id: grp-missing }")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: scope is another account",
            Edit("accounts.yaml", |t| {
                replace_once(
                    &t,
                    "key: com.cloudflare.api.account.acct-a\n",
                    "key: com.cloudflare.api.account.acct-zzz\n",
                )
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: object zone not in the account",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "account.zone.zone-1 }", "account.zone.zone-9 }")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: object key wildcard misuse",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "account.zone.zone-1 }", "account.zone.zone-* }")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: unknown access",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "access: allow", "access: maybe")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: unknown api_access",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "api_access: disabled", "api_access: sometimes")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: api key hash not hex",
            Edit("accounts.yaml", |t| {
                let hash = sha256_hex(JOE_KEY);
                replace_once(&t, &hash, "zz")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: name is a list",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "name: Example\n", "name: [1, 2]\n")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: user id is a list",
            Edit("accounts.yaml", |t| {
                replace_once(&t, "  - id: user-joe\n", "  - id: [user-joe]\n")
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: domain group with an unknown zone",
            Edit("accounts.yaml", |t| {
                replace_once(
                    &t,
                    "    members:\n",
                    "    domain_groups:\n      - { id: dg-1, name: G, zones: [zone-9] }\n    members:\n",
                )
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: truncated in members",
            Edit("accounts.yaml", |t| {
                truncate_at(&t, "      - user: user-joe", 12)
            }),
            "accounts.yaml",
            Located,
        ),
        m(
            "accounts: invalid UTF-8 inside",
            Bytes("accounts.yaml", || {
                let mut bytes = b"users: []\naccounts:\n  - id: acct-a\n    name: Ex".to_vec();
                bytes.extend_from_slice(b"\xff\xfeample\n");
                bytes
            }),
            "accounts.yaml",
            File,
        ),
        m(
            "accounts: 50 MB of junk",
            Bytes("accounts.yaml", || {
                let mut junk = Vec::with_capacity(50 << 20);
                let mut state = 0x2545_F491_4F6C_DD1Du64;
                while junk.len() < 50 << 20 {
                    // xorshift: printable junk with colons, dashes, brackets and newlines.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    const ALPHABET: &[u8] = b"ab:- [{\n\"'#&*!|>%@";
                    junk.push(ALPHABET[usize::try_from(state).unwrap() % ALPHABET.len()]);
                }
                junk
            }),
            "accounts.yaml",
            File,
        ),
        // ---- tokens.yaml
        m(
            "tokens: CIDR prefix too long",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "in: [192.0.2.0/24]", "in: [192.0.2.0/40]")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: CIDR not an address",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "in: [192.0.2.0/24]", "in: [192.0.2.x/24]")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: month 13",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "2020-01-01T00:00:00Z", "2020-13-01T00:00:00Z")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: date in words",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "2099-01-01T00:00:00Z", "next year")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: date without zone",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "2099-01-01T00:00:00Z", "2099-01-01 00:00")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: duplicate id",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "id: tok-write", "id: tok-read")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: duplicate secret",
            Edit("tokens.yaml", |t| {
                replace_once(&t, &sha256_hex(TOKEN_WRITE), &sha256_hex(TOKEN_READ))
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: short secret hash",
            Edit("tokens.yaml", |t| {
                replace_once(&t, &sha256_hex(TOKEN_WRITE), "abc")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: owner is an unknown user",
            Edit("tokens.yaml", |t| {
                replace_once(
                    &t,
                    "owner: { user: user-dave }",
                    "owner: { user: user-ghost }",
                )
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: owner is an unknown account",
            Edit("tokens.yaml", |t| {
                replace_once(
                    &t,
                    "owner: { account: acct-a }",
                    "owner: { account: acct-ghost }",
                )
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: owner is both",
            Edit("tokens.yaml", |t| {
                replace_once(
                    &t,
                    "owner: { account: acct-a }",
                    "owner: { account: acct-a, user: user-joe }",
                )
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: unknown status",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "status: active", "status: enabledish")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: unknown effect",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "effect: allow", "effect: permit")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: resource wildcard misuse",
            Edit("tokens.yaml", |t| {
                replace_once(
                    &t,
                    "com.cloudflare.api.account.zone.zone-1: \"*\"",
                    "com.cloudflare.api.account.zone.zone-*: \"*\"",
                )
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: policy names an unknown group",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "{ id: grp-dns-read }", "{ id: grp-nope }")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: resource value not a star",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "zone-1: \"*\"", "zone-1: \"all\"")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: unknown condition operator",
            Edit("tokens.yaml", |t| {
                replace_once(&t, "{ in: [192.0.2.0/24] }", "{ inside: [192.0.2.0/24] }")
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "tokens: truncated in a hash",
            Edit("tokens.yaml", |t| truncate_at(&t, "secret_sha256: ", 20)),
            "tokens.yaml",
            Located,
        ),
        // ---- routes
        m(
            "routes: conflicting paths",
            Edit("routes/test.yaml", |t| {
                t + "  - id: conflict\n    method: GET\n    path: /client/v4/zones/{other}/dns_records\n    scope: none\n"
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: method of wrong type",
            Edit("routes/test.yaml", |t| {
                replace_once(&t, "method: POST", "method: [GET, { a: 1 }]")
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: scope names a missing parameter",
            Edit("routes/test.yaml", |t| {
                replace_once(&t, "scope: { zone: zone_id }", "scope: { zone: zone_idx }")
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: permission wildcard misuse",
            Edit("routes/test.yaml", |t| {
                replace_once(
                    &t,
                    "com.cloudflare.api.account.zone.dns-record.list",
                    "com.*.list",
                )
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: unknown field",
            Edit("routes/test.yaml", |t| {
                replace_once(&t, "id: dns.create\n", "id: dns.create\n    colour: red\n")
            }),
            "test.yaml",
            Located,
        ),
        m(
            "tokens: bad not_in CIDR",
            Edit("tokens.yaml", |t| {
                replace_once(
                    &t,
                    "{ in: [192.0.2.0/24] }",
                    "{ in: [192.0.2.0/24], not_in: [192.0.2.1/99] }",
                )
            }),
            "tokens.yaml",
            Located,
        ),
        m(
            "routes: unknown handler",
            Edit("routes/test.yaml", |t| {
                replace_once(&t, "handler: verify_token", "handler: nope")
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: path without slash",
            Edit("routes/test.yaml", |t| {
                replace_once(&t, "path: /client/v4/ips", "path: client/v4/ips")
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: unclosed parameter",
            Edit("routes/test.yaml", |t| {
                replace_once(
                    &t,
                    "{zone_id}/dns_records/{record_id}",
                    "{zone_id/dns_records/{record_id}",
                )
            }),
            "test.yaml",
            Located,
        ),
        m(
            "routes: a junk route file beside",
            Custom(|root| std::fs::write(root.join("routes/junk.yaml"), "routes: {\n").unwrap()),
            "junk.yaml",
            Located,
        ),
        m(
            "routes: invalid UTF-8 route file beside",
            Custom(|root| {
                std::fs::write(root.join("routes/bad.yaml"), b"routes: [\xc0\xaf]\n").unwrap()
            }),
            "bad.yaml",
            File,
        ),
        // ---- the file system
        m(
            "fs: route folder deleted",
            Custom(|root| std::fs::rename(root.join("routes"), root.join("routes.gone")).unwrap()),
            "routes",
            File,
        ),
        m(
            "fs: tokens file deleted",
            Custom(|root| std::fs::remove_file(root.join("tokens.yaml")).unwrap()),
            "tokens.yaml",
            File,
        ),
        m(
            "fs: tokens file is a directory",
            Custom(|root| {
                std::fs::remove_file(root.join("tokens.yaml")).unwrap();
                std::fs::create_dir(root.join("tokens.yaml")).unwrap();
            }),
            "tokens.yaml",
            File,
        ),
        m(
            "fs: gateway file deleted",
            Custom(|root| std::fs::remove_file(root.join("gateway.yaml")).unwrap()),
            "gateway.yaml",
            File,
        ),
    ]
}

/// Every file of the good config, to restore after each mutation.
fn snapshot_folder(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for name in [
        "gateway.yaml",
        "permission_groups.yaml",
        "accounts.yaml",
        "tokens.yaml",
        "routes/test.yaml",
    ] {
        files.push((root.join(name), std::fs::read(root.join(name)).unwrap()));
    }
    files
}

fn restore_folder(root: &Path, good: &[(PathBuf, Vec<u8>)]) {
    if root.join("routes.gone").exists() {
        let _ = std::fs::remove_dir_all(root.join("routes"));
        std::fs::rename(root.join("routes.gone"), root.join("routes")).unwrap();
    }
    if root.join("tokens.yaml").is_dir() {
        std::fs::remove_dir(root.join("tokens.yaml")).unwrap();
    }
    for extra in ["routes/junk.yaml", "routes/bad.yaml"] {
        let _ = std::fs::remove_file(root.join(extra));
    }
    for (path, bytes) in good {
        #[cfg(unix)]
        if path.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
}

/// The decisions the good config makes, checked after every rejected mutation.
async fn assert_decides_as_before(services: &permgate::cli::serve::Services, label: &str) {
    let records = records_path();
    let other = format!("/client/v4/zones/{OTHER_ZONE}/dns_records");
    assert_eq!(
        call(services, &records, TOKEN_READ).await,
        (200, 0),
        "{label}: allowed call"
    );
    assert_eq!(
        call(services, &other, TOKEN_READ).await,
        (403, 10000),
        "{label}: denied zone"
    );
    assert_eq!(
        call(services, &records, TOKEN_DISABLED).await,
        (403, 1000),
        "{label}: disabled token"
    );
    assert_eq!(
        call(services, &records, TOKEN_IP).await,
        (403, 9109),
        "{label}: IP condition"
    );
    assert_eq!(
        call_with_key(services, &records).await,
        (200, 0),
        "{label}: legacy key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corruption_is_rejected_by_name_and_the_last_good_config_keeps_deciding() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, MANUAL).await;
    let good = snapshot_folder(&root);
    let generation = services.proxy.gateway.snapshot().generation;
    let hash = services.proxy.gateway.snapshot().content_hash.clone();
    assert_decides_as_before(&services, "start").await;

    let mutations = mutations();
    assert!(mutations.len() >= 50, "only {} mutations", mutations.len());
    let mut failures = Vec::new();
    for mutation in &mutations {
        match &mutation.damage {
            Damage::Edit(file, edit) => {
                let path = root.join(file);
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, edit(text)).unwrap();
            }
            Damage::Bytes(file, bytes) => std::fs::write(root.join(file), bytes()).unwrap(),
            Damage::Custom(apply) => apply(&root),
        }
        let started = std::time::Instant::now();
        let outcome = services.reloader.reload_now(Trigger::Manual).await;
        let took = started.elapsed();
        let status = services.reloader.status();
        if outcome != ReloadOutcome::Rejected {
            failures.push(format!("{}: {outcome:?}, expected Rejected", mutation.name));
        } else if let Some((_, errors)) = &status.error {
            let naming: Vec<_> = errors
                .0
                .iter()
                .filter(|error| error.to_string().contains(mutation.names))
                .collect();
            if naming.is_empty() {
                failures.push(format!(
                    "{}: no error names {}:\n{errors}",
                    mutation.name, mutation.names
                ));
            } else if mutation.place == Place::Located
                && !naming
                    .iter()
                    .any(|error| !error.path.is_empty() || error.line.is_some())
            {
                failures.push(format!("{}: no path or line in:\n{errors}", mutation.name));
            }
        } else {
            failures.push(format!(
                "{}: rejected without an error in the status",
                mutation.name
            ));
        }
        // The gateway still serves the last good snapshot.
        let serving = services.proxy.gateway.snapshot();
        if serving.generation != generation || serving.content_hash != hash {
            failures.push(format!("{}: the serving snapshot changed", mutation.name));
        }
        drop(serving);
        assert_decides_as_before(&services, mutation.name).await;
        assert!(
            took < std::time::Duration::from_secs(20),
            "{}: reload took {took:?}",
            mutation.name
        );
        restore_folder(&root, &good);
    }
    // `/status` shows the last rejection with its file; then the restored config applies cleanly.
    let shown = status(&services).await;
    assert!(
        shown["last_error"]
            .as_str()
            .is_some_and(|error| error.contains("gateway.yaml")),
        "{shown:#}"
    );
    let outcome = services.reloader.reload_now(Trigger::Manual).await;
    // Unchanged when the last rejection was remembered by content, applied (same content, next
    // generation) when the last attempt could not even read the files.
    assert!(
        matches!(outcome, ReloadOutcome::Unchanged | ReloadOutcome::Applied),
        "{outcome:?}"
    );
    assert!(services.reloader.status().error.is_none());
    assert_decides_as_before(&services, "restored").await;
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// An unreadable file. As root, `chmod 000` does not stop reading: the case is then covered by
/// "fs: tokens file is a directory" above and this test says so instead of passing vacuously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_rejected_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let tokens = config.dir.path().join("tokens.yaml");
    let services = start_services(&config, MANUAL).await;
    // Change the content too, so the reload cannot be skipped as unchanged.
    edit(&tokens, |text| text + "\n# edited\n");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&tokens).is_ok() {
        eprintln!(
            "running as root: chmod 000 does not prevent reading; covered by the directory case"
        );
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
        return;
    }
    let outcome = services.reloader.reload_now(Trigger::Manual).await;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(outcome, ReloadOutcome::Rejected);
    let errors = services.reloader.status().error.unwrap().1.to_string();
    assert!(errors.contains("tokens.yaml"), "{errors}");
    assert_eq!(call(&services, &records_path(), TOKEN_READ).await, (200, 0));
}

/// A deleted config folder (the whole directory renamed away): rejected, the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_config_folder_is_rejected_and_serving_continues() {
    let upstream = start_upstream().await;
    let config = write_config(&Options::new(&upstream.url()));
    let root = config.dir.path().to_path_buf();
    let services = start_services(&config, MANUAL).await;
    let moved = root.with_extension("gone");
    std::fs::rename(&root, &moved).unwrap();
    let outcome = services.reloader.reload_now(Trigger::Manual).await;
    std::fs::rename(&moved, &root).unwrap();
    assert_eq!(outcome, ReloadOutcome::Rejected);
    let errors = services.reloader.status().error.unwrap().1.to_string();
    assert!(errors.contains("gateway.yaml"), "{errors}");
    assert_decides_as_before(&services, "deleted folder").await;
}
