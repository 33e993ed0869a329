//! `permgate access diff`: each kind of config edit gives exactly the access change it should, checked
//! against the shipped config (a copy in a temporary folder, edited as a user would), and the CLI's exit
//! codes (0, 3 with `--fail-on-new-access` and a gain, 2 for a broken config).

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use permgate::analysis::{self, AccessDiff};
use permgate::pipeline::{Facts, decide_as};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const SHOP: &str = "com.cloudflare.api.account.zone.90cd2c6d19429ceb92a8da695473c3e4";

/// A copy of the shipped config and route table, old and new side by side.
struct Pair {
    _dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
}

fn pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    for side in ["old", "new"] {
        common::copy_shipped(&dir.path().join(side));
    }
    Pair {
        old: dir.path().join("old/config/gateway.yaml"),
        new: dir.path().join("new/config/gateway.yaml"),
        _dir: dir,
    }
}

impl Pair {
    /// Replaces `from` (which must be there exactly once) by `to` in a file of the new side.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.new.parent().unwrap().parent().unwrap().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    fn diff(&self) -> AccessDiff {
        let old = permgate::config::load(&self.old).unwrap();
        let new = permgate::config::load(&self.new).unwrap();
        let now = OffsetDateTime::parse("2026-03-01T00:00:00Z", &Rfc3339)
            .unwrap()
            .unix_timestamp();
        analysis::diff(&old, &new, now, "NEW")
    }
}

/// `+ credential resource key` / `- …` lines, sorted; then route and token changes.
fn lines(diff: &AccessDiff) -> Vec<String> {
    let mut out = Vec::new();
    for (sign, changes) in [("+", &diff.gained), ("-", &diff.lost)] {
        for change in changes {
            for key in &change.keys {
                out.push(format!(
                    "{sign} {} {} {key}",
                    change.credential, change.resource
                ));
            }
            if change.keys.is_empty() {
                for route in &change.routes {
                    out.push(format!(
                        "{sign} {} {} route {route}",
                        change.credential, change.resource
                    ));
                }
            }
        }
    }
    out.sort();
    for route in &diff.routes_changed {
        out.push(format!("route changed {route}"));
    }
    for route in &diff.routes_added {
        out.push(format!("route added {route}"));
    }
    for route in &diff.routes_removed {
        out.push(format!("route removed {route}"));
    }
    for token in &diff.tokens {
        out.push(format!("token {} {}", token.change, token.token_id));
    }
    out
}

fn expect(diff: &AccessDiff, expected: &[String]) {
    let got = lines(diff);
    assert_eq!(got, expected, "\ngot:\n{}\n", got.join("\n"));
}

const FRANK: &str = "key:1999910c759cfa1109d6611af2904508";

fn change(sign: &str, who: &str, resource: &str, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|key| format!("{sign} {who} {resource} {key}"))
        .collect()
}

#[test]
fn an_edited_domain_group_gains_exactly_the_new_zone_for_its_users() {
    let pair = pair();
    // Frank's member policy is DNS Write + Zone Read on the "Staging zones" domain group.
    pair.edit(
        "config/accounts.yaml",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b]",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b, 90cd2c6d19429ceb92a8da695473c3e4]",
    );
    let diff = pair.diff();
    let mut expected = change(
        "+",
        FRANK,
        SHOP,
        &[
            "#zone:read",
            "com.cloudflare.api.account.zone.dns-record.create",
            "com.cloudflare.api.account.zone.dns-record.delete",
            "com.cloudflare.api.account.zone.dns-record.list",
            "com.cloudflare.api.account.zone.dns-record.read",
            "com.cloudflare.api.account.zone.dns-record.update",
            "com.cloudflare.api.account.zone.read",
        ],
    );
    expected.sort();
    expect(&diff, &expected);
    // The gain comes with the routes it opens and a check line that shows it.
    assert!(
        diff.gained[0]
            .routes
            .contains(&"dns_records.create".to_string())
    );
    assert_eq!(
        diff.gained[0].example.as_deref(),
        Some(
            "permgate check --config NEW --user frank.li@example.com GET /client/v4/zones/90cd2c6d19429ceb92a8da695473c3e4"
        )
    );
}

const JOE_ZONE_READ: &str = "          - id: 05a08a380dadb8da4212c948d165c653
            access: allow
            permission_groups:
              - { name: Zone Read }                          # by name: exactly one catalog group has it
            resource_groups:
              - scope:
                  key: com.cloudflare.api.account.a67e14daa5f8dceeb91fe5449ba496eb
                  objects:
                    - key: com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f
                    - key: com.cloudflare.api.account.zone.0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b
";

#[test]
fn a_removed_member_policy_loses_the_member_and_every_token_it_bounded() {
    let pair = pair();
    pair.edit("config/accounts.yaml", JOE_ZONE_READ, "");
    let diff = pair.diff();
    let expected: Vec<String> = [
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b #zone:read",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b com.cloudflare.api.account.zone.read",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f #zone:read",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b #zone:read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b com.cloudflare.api.account.zone.read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f #zone:read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.read",
        ]
    .iter()
    .map(|line| line.to_string())
    .collect();
    expect(&diff, &expected);
}

#[test]
fn an_added_deny_loses_its_keys_for_every_credential_it_covers() {
    let pair = pair();
    let deny = "          - id: joe-no-dns-write
            access: deny
            permission_groups:
              - { id: 4755a26eedb94da69e1066d98aa820be }    # DNS Write
            resource_groups:
              - scope:
                  key: com.cloudflare.api.account.a67e14daa5f8dceeb91fe5449ba496eb
                  objects:
                    - key: com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f
";
    pair.edit(
        "config/accounts.yaml",
        JOE_ZONE_READ,
        &format!("{JOE_ZONE_READ}{deny}"),
    );
    let diff = pair.diff();
    let expected: Vec<String> = [
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.create",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.delete",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.read",
            "- key:7c5dae5552338874e5053f2534d2767a com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.update",
            "- token:5149d67b34cf85a38a40f75273de20a0 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- token:5149d67b34cf85a38a40f75273de20a0 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.read",
            "- token:78faad841164856e5fa8537a9016b155 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- token:78faad841164856e5fa8537a9016b155 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.create",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.delete",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.read",
            "- token:8e74ea50d73c291e963f0bb07fa7937f com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.update",
        ]
    .iter()
    .map(|line| line.to_string())
    .collect();
    expect(&diff, &expected);
}

#[test]
fn a_group_that_loses_a_key_loses_it_for_everyone_who_had_it_only_from_that_group() {
    let pair = pair();
    pair.edit(
        "config/permission_groups.yaml",
        "      - com.cloudflare.api.account.zone.dns-record.read\n      - com.cloudflare.api.account.zone.dns-record.list\n\n  - id: 4755a26eedb94da69e1066d98aa820be",
        "      - com.cloudflare.api.account.zone.dns-record.read\n\n  - id: 4755a26eedb94da69e1066d98aa820be",
    );
    let diff = pair.diff();
    let expected: Vec<String> = [
            "- key:76c752982b2cc4bd437a1f85f2895a9f com.cloudflare.api.account.zone.5524c6622368f1da2c4ddfccf9d6748a com.cloudflare.api.account.zone.dns-record.list",
            "- key:76c752982b2cc4bd437a1f85f2895a9f com.cloudflare.api.account.zone.5859cc398ea53c193d3e56e596864a4a com.cloudflare.api.account.zone.dns-record.list",
            "- key:fdd26511472a008e35725ccc0e8c1532 com.cloudflare.api.account.zone.5859cc398ea53c193d3e56e596864a4a com.cloudflare.api.account.zone.dns-record.list",
            "- token:0ddedf6b94ed8ba7664a2c3ceee429c2 com.cloudflare.api.account.zone.5524c6622368f1da2c4ddfccf9d6748a com.cloudflare.api.account.zone.dns-record.list",
            "- token:0ddedf6b94ed8ba7664a2c3ceee429c2 com.cloudflare.api.account.zone.5859cc398ea53c193d3e56e596864a4a com.cloudflare.api.account.zone.dns-record.list",
            "- token:5149d67b34cf85a38a40f75273de20a0 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- token:78faad841164856e5fa8537a9016b155 com.cloudflare.api.account.zone.b1fbb152bbde3bd28919a7f4bdca841f com.cloudflare.api.account.zone.dns-record.list",
            "- token:9f2d19f716ea15b563c916e68b398483 com.cloudflare.api.account.zone.5859cc398ea53c193d3e56e596864a4a com.cloudflare.api.account.zone.dns-record.list",
            "- token:aeb874edbb324f2192250efc2f19d850 com.cloudflare.api.account.zone.5524c6622368f1da2c4ddfccf9d6748a com.cloudflare.api.account.zone.dns-record.list",
            "- token:aeb874edbb324f2192250efc2f19d850 com.cloudflare.api.account.zone.5859cc398ea53c193d3e56e596864a4a com.cloudflare.api.account.zone.dns-record.list",
        ]
    .iter()
    .map(|line| line.to_string())
    .collect();
    expect(&diff, &expected);
}

#[test]
fn a_route_whose_keys_change_is_reported_with_the_access_it_moves() {
    let pair = pair();
    pair.edit(
        "routes/demo.yaml",
        "    path: /client/v4/zones/{zone_id}/dns_records\n    permissions: [com.cloudflare.api.account.zone.dns-record.list]",
        "    path: /client/v4/zones/{zone_id}/dns_records\n    permissions: [com.cloudflare.api.account.zone.dns-record.create]",
    );
    let diff = pair.diff();
    assert_eq!(diff.routes_changed, ["dns_records.list"]);
    assert!(diff.routes_added.is_empty() && diff.routes_removed.is_empty());
    // Exactly the (credential, zone) pairs whose decision on the route changed, by the decision itself.
    let old = permgate::config::load(&pair.old).unwrap();
    let new = permgate::config::load(&pair.new).unwrap();
    let now = OffsetDateTime::parse("2026-03-01T00:00:00Z", &Rfc3339)
        .unwrap()
        .unix_timestamp();
    let mut oracle = BTreeSet::new();
    for known in analysis::credentials(&new.policy) {
        let credential = analysis::Credential::of(&new.policy, known).unwrap();
        let name = analysis::diff::credential_name(&credential);
        let ip = analysis::usability(&new.policy, known, now)
            .witness_ip
            .unwrap_or_else(|| "192.0.2.1".parse().unwrap());
        for zone in &new.policy.zones {
            let target = format!("/client/v4/zones/{}/dns_records", zone.id);
            let headers = http::HeaderMap::new();
            let facts = Facts {
                method: "GET",
                target: &target,
                headers: &headers,
                peer_ip: ip,
                now,
            };
            let before = decide_as(&old, &facts, known).allowed();
            let after = decide_as(&new, &facts, known).allowed();
            if before != after {
                let sign = if after { "+" } else { "-" };
                oracle.insert(format!(
                    "{sign} {name} com.cloudflare.api.account.zone.{} route dns_records.list",
                    zone.id
                ));
            }
        }
    }
    let reported: BTreeSet<String> = lines(&diff)
        .into_iter()
        .filter(|line| line.ends_with(" route dns_records.list"))
        .collect();
    assert_eq!(reported, oracle);
    assert!(oracle.len() >= 10, "{oracle:?}");
    // The key the route no longer checks is no longer listed as held on zones (it grants nothing there).
    assert!(diff.lost.iter().any(|change| {
        change
            .keys
            .contains(&"com.cloudflare.api.account.zone.dns-record.list".to_string())
    }));
    assert!(diff.gained.is_empty(), "{:?}", diff.gained);
}

#[test]
fn the_cli_exits_0_3_and_2() {
    let pair = pair();
    let run = |extra: &[&str], old: &Path, new: &Path| {
        Command::new(env!("CARGO_BIN_EXE_permgate"))
            .args(["access", "diff", "--at", "2026-03-01T00:00:00Z"])
            .args(extra)
            .arg(old)
            .arg(new)
            .output()
            .unwrap()
    };
    // No change: 0, with or without the gate.
    let same = run(&["--fail-on-new-access"], &pair.old, &pair.old);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).contains("no change in access"));
    pair.edit(
        "config/accounts.yaml",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b]",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b, 90cd2c6d19429ceb92a8da695473c3e4]",
    );
    // A gain: 0 without the gate, 3 with it; the reverse (a loss only) passes the gate.
    assert_eq!(run(&[], &pair.old, &pair.new).status.code(), Some(0));
    let gated = run(&["--fail-on-new-access", "--json"], &pair.old, &pair.new);
    assert_eq!(gated.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&gated.stdout).unwrap();
    assert_eq!(json["gained"], 7);
    assert_eq!(json["lost"], 0);
    assert_eq!(json["access_gained"][0]["credential"], FRANK);
    let reverse = run(&["--fail-on-new-access"], &pair.new, &pair.old);
    assert_eq!(reverse.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&reverse.stdout).contains("0 gained, 7 lost"));
    // A broken config: 2, and the error names the file.
    pair.edit("config/accounts.yaml", "accounts:", "accounts: [");
    let broken = run(&[], &pair.old, &pair.new);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("accounts.yaml"));
}

/// The fast path (only the tokens that differ are analysed when nothing else does) gives exactly the full
/// diff, for token edits of every kind.
#[test]
fn the_token_only_fast_path_equals_the_full_diff() {
    let edits: &[(&str, &str)] = &[
        // A token disabled.
        (
            "    status: active\n    policies:\n      - id: 6fbb207b1ea19cd1bc8bfb72261d7dc3",
            "    status: disabled\n    policies:\n      - id: 6fbb207b1ea19cd1bc8bfb72261d7dc3",
        ),
        // An account token that loses a group.
        (
            "          - { id: 4755a26eedb94da69e1066d98aa820be }    # DNS Write\n          - { id: c8fed203ed3043cba015a93ad1616f1f }    # Zone Read\n          - { id: 517b21aee92c4d89936c976ba6e4be55 }    # Zone Settings Read\n          - { id: c1fde68c7bcc44588cbb6ddbc16d6480 }",
            "          - { id: c8fed203ed3043cba015a93ad1616f1f }    # Zone Read\n          - { id: 517b21aee92c4d89936c976ba6e4be55 }    # Zone Settings Read\n          - { id: c1fde68c7bcc44588cbb6ddbc16d6480 }",
        ),
        // A token's policy turned into a deny.
        (
            "      - id: 6fbb207b1ea19cd1bc8bfb72261d7dc3\n        effect: allow",
            "      - id: 6fbb207b1ea19cd1bc8bfb72261d7dc3\n        effect: deny",
        ),
    ];
    let now = OffsetDateTime::parse("2026-03-01T00:00:00Z", &Rfc3339)
        .unwrap()
        .unix_timestamp();
    for (from, to) in edits {
        let pair = pair();
        pair.edit("config/tokens.yaml", from, to);
        let old = permgate::config::load(&pair.old).unwrap();
        let new = permgate::config::load(&pair.new).unwrap();
        let (old_changed, new_changed) =
            analysis::diff::changed_tokens(&old.policy, &new.policy).expect("only tokens differ");
        assert_eq!((old_changed.len(), new_changed.len()), (1, 1), "{to}");
        let fast = analysis::diff::diff_with(&old, &new, now, "NEW", true);
        let full = analysis::diff::diff_with(&old, &new, now, "NEW", false);
        assert!(!lines(&fast).is_empty(), "{to}");
        assert_eq!(lines(&fast), lines(&full), "{to}");
    }
    // An entity edit is never taken for a token-only one.
    let pair = pair();
    pair.edit(
        "config/accounts.yaml",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b]",
        "zones: [0c5d1e7a9a3b4a3e8c1f2b7d6e5f4a3b, 90cd2c6d19429ceb92a8da695473c3e4]",
    );
    let old = permgate::config::load(&pair.old).unwrap();
    let new = permgate::config::load(&pair.new).unwrap();
    assert!(analysis::diff::changed_tokens(&old.policy, &new.policy).is_none());
}
