//! The README's one-bucket example is real: its blocks (a token in Cloudflare's token form; a user and a
//! member policy in the Bach form) are pasted into a copy of the shipped Cloudflare config, and `permgate check`
//! (the real binary) must allow exactly the `photos` bucket's read routes and deny every other bucket, the
//! bucket's write and delete routes, and the account's own R2 routes.

use std::path::Path;

use crate::common;
use std::process::Command;

const ACCOUNT: &str = "01a7362d577a6c3019a474fd6f485823";

/// The ```yaml block after `<!-- {marker} -->` in the README.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let at = readme
        .find(&format!("<!-- {marker} -->"))
        .unwrap_or_else(|| panic!("the README has no block marked {marker:?}"));
    let block = readme[at..].split("```yaml\n").nth(1).unwrap();
    block.split("```").next().unwrap().to_string()
}

/// `(decision, reason)` of `permgate check` with these arguments.
fn check(gateway: &Path, args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_permgate"))
        .arg("check")
        .arg("--config")
        .arg(gateway)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|value| value.trim().to_string())
            .unwrap_or_default()
    };
    assert!(
        !field("decision").is_empty(),
        "no decision: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (field("decision"), field("reason"))
}

/// Every R2 bucket route of the shipped table, as (method, path pattern, requires only the read key).
fn bucket_routes(root: &Path) -> Vec<(String, String, bool)> {
    let table = std::fs::read_to_string(root.join("routes/cloudflare-v4.yaml")).unwrap();
    let mut routes = Vec::new();
    for line in table
        .lines()
        .filter(|line| line.contains("r2_bucket: \"bucket_name\""))
    {
        let method = line
            .split("method: ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let path = line
            .split("path: \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let reads = line.contains("permissions: [\"com.cloudflare.edge.r2.bucket.read\"]");
        routes.push((method.to_string(), path.to_string(), reads));
    }
    routes
}

#[test]
fn a_one_bucket_token_and_member_reach_that_bucket_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_shipped(root);
    let cloudflare = root.join("config/cloudflare");
    // The token form: a policy file of its own, added to policy_files.
    std::fs::write(
        cloudflare.join("bucket-token.yaml"),
        readme_block("one-bucket: token form"),
    )
    .unwrap();
    let gateway = cloudflare.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    let text = text.replace(
        "  - tokens.yaml\n",
        "  - tokens.yaml\n  - bucket-token.yaml\n",
    );
    assert!(text.contains("bucket-token.yaml"));
    std::fs::write(&gateway, text).unwrap();
    // The Bach form: the user under `users:`, the membership under the account's `members:`.
    let accounts = cloudflare.join("accounts.yaml");
    let text = std::fs::read_to_string(&accounts).unwrap();
    let text = text
        .replacen(
            "users:\n",
            &format!("users:\n{}", readme_block("one-bucket: Bach form, users")),
            1,
        )
        .replacen(
            "    members:\n",
            &format!(
                "    members:\n{}",
                readme_block("one-bucket: Bach form, members")
            ),
            1,
        );
    std::fs::write(&accounts, text).unwrap();

    let routes = bucket_routes(root);
    assert!(
        routes.len() >= 5 && routes.iter().any(|(_, _, reads)| *reads),
        "the shipped table's bucket routes: {routes:?}"
    );
    let credentials: [&[&str]; 2] = [
        &["--token", "pgt_cf_demo_photos_reader"],
        &[
            "--api-key",
            "ann@example.com:a2d0c8f1e3b5a7c9d1e3f5a7b9c1d3e5f7a91",
        ],
    ];
    let mut failures = Vec::new();
    for credential in credentials {
        for (method, pattern, reads) in &routes {
            for bucket in ["photos", "logs", "photos-archive"] {
                let path = pattern
                    .replace("{account_id}", ACCOUNT)
                    .replace("{bucket_name}", bucket);
                let mut args = credential.to_vec();
                args.extend([method.as_str(), path.as_str()]);
                let (decision, reason) = check(&gateway, &args);
                let expected = if *reads && bucket == "photos" {
                    "allow"
                } else {
                    "deny"
                };
                if decision != expected {
                    failures.push(format!(
                        "{credential:?} {method} {path}: {decision}, expected {expected} ({reason})"
                    ));
                }
            }
        }
        // Neither reaches the account's own R2 routes (the bucket list) nor another account's bucket.
        for path in [
            format!("/client/v4/accounts/{ACCOUNT}/r2/buckets"),
            "/client/v4/accounts/ffffffffffffffffffffffffffffffff/r2/buckets/photos".to_string(),
        ] {
            let mut args = credential.to_vec();
            args.extend(["GET", path.as_str()]);
            let (decision, reason) = check(&gateway, &args);
            if decision != "deny" {
                failures.push(format!("{credential:?} GET {path}: {decision} ({reason})"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What the README shows for the other bucket.
    let (decision, reason) = check(
        &gateway,
        &[
            "--token",
            "pgt_cf_demo_photos_reader",
            "GET",
            &format!("/client/v4/accounts/{ACCOUNT}/r2/buckets/logs"),
        ],
    );
    assert_eq!(decision, "deny");
    assert_eq!(
        reason,
        format!(
            "com.cloudflare.edge.r2.bucket.read is not granted on com.cloudflare.edge.r2.bucket.{ACCOUNT}_default_(a name no policy names) by the token's policies"
        )
    );
}
