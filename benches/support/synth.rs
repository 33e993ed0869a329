//! A deterministic synthetic config generator for benchmarks: accounts, zones, users, members and tokens at
//! any scale, built straight into the raw config types (no YAML text), plus a request mix over it.
// Included by benches (`#[path]`); a broken setup should stop loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(dead_code)]

use permgate::config::raw::{
    Effect, OrderedMap, RawAccount, RawBachPolicy, RawGroup, RawMember, RawObject, RawOwner,
    RawParent, RawPermission, RawPolicyFile, RawResourceGroup, RawResourceType, RawResourceValue,
    RawScope, RawToken, RawTokenPolicy, RawUser, RawZone,
};
use sha2::{Digest, Sha256};

pub const NS: &str = "com.cloudflare.api";

/// How big a world to make.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub tokens: usize,
    pub accounts: usize,
    pub zones_per_account: usize,
    pub users: usize,
    pub max_policies_per_token: usize,
    /// R2 buckets named per account (0: no resource type, no bucket route, no bucket policy: the world
    /// is exactly the one before buckets existed). With buckets, a quarter of the tokens get one more
    /// policy: one bucket of their home account, or every bucket of it. The rest of the world is drawn
    /// from the same random stream either way.
    pub buckets_per_account: usize,
}

/// The R2 bucket type's key prefix (as in the shipped Cloudflare config).
pub const BUCKET_PREFIX: &str = "com.cloudflare.edge.r2.bucket.";

/// The name of bucket `index` of an account.
pub fn bucket_name(index: usize) -> String {
    format!("b{index}")
}

/// The key of bucket `bucket` of account `account`.
pub fn bucket_key(account: usize, bucket: usize) -> String {
    format!(
        "{BUCKET_PREFIX}{}_default_{}",
        account_id(account),
        bucket_name(bucket)
    )
}

/// SplitMix64: small, fast, deterministic.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Resource families and actions: keys `#<family>:<action>` and dotted `<ns>.account.zone.<family>.<action>`.
pub const FAMILIES: [&str; 12] = [
    "dns_records",
    "zone",
    "zone_settings",
    "cache",
    "ssl",
    "waf",
    "workers",
    "analytics",
    "firewall",
    "logs",
    "page_rules",
    "load_balancers",
];
pub const ACTIONS: [&str; 2] = ["read", "edit"];

pub fn account_id(index: usize) -> String {
    format!("a{index:031x}")
}
pub fn zone_id(account: usize, zone: usize, per_account: usize) -> String {
    format!("z{:031x}", account * per_account + zone)
}
pub fn user_id(index: usize) -> String {
    format!("u{index:031x}")
}
pub fn token_secret(index: usize) -> String {
    format!("pgt_bench_{index:012}")
}

fn sha_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The route file: a zone-scoped read and edit route per family, and account-scoped ones; with `buckets`,
/// a bucket-scoped read route.
pub fn routes_yaml_with(buckets: bool) -> String {
    let mut out = routes_yaml();
    if buckets {
        out.push_str("  - { method: GET, path: \"/client/v4/accounts/{account_id}/r2/buckets/{bucket_name}\", permissions: [\"com.cloudflare.edge.r2.bucket.read\"], scope: { account: account_id, r2_bucket: bucket_name } }\n");
    }
    out
}

/// The route file: a zone-scoped read and edit route per family, and account-scoped ones.
pub fn routes_yaml() -> String {
    let mut out = String::from("routes:\n");
    for family in FAMILIES {
        out.push_str(&format!(
            "  - {{ method: GET, path: \"/client/v4/zones/{{zone_id}}/{family}\", permissions: [\"#{family}:read\"], scope: {{ zone: zone_id }} }}\n  - {{ method: POST, path: \"/client/v4/zones/{{zone_id}}/{family}\", permissions: [\"#{family}:edit\"], scope: {{ zone: zone_id }} }}\n  - {{ method: GET, path: \"/client/v4/accounts/{{account_id}}/{family}\", permissions: [\"#{family}:read\"], scope: {{ account: account_id }} }}\n"
        ));
    }
    out
}

/// Catalog: a read and an edit group per family, a read-all group with a wildcard, and an admin group.
pub fn groups() -> Vec<RawGroup> {
    let mut groups = Vec::new();
    for family in FAMILIES {
        for action in ACTIONS {
            groups.push(RawGroup {
                id: Some(format!("g-{family}-{action}")),
                name: Some(format!("{family} {action}")),
                permissions: Some(vec![RawPermission::Key(format!("#{family}:{action}"))]),
                ..RawGroup::default()
            });
        }
    }
    groups.push(RawGroup {
        id: Some("g-all-dns".into()),
        name: Some("all dns".into()),
        permissions: Some(vec![RawPermission::Key("#dns_records:*".into())]),
        ..RawGroup::default()
    });
    groups.push(RawGroup {
        id: Some("g-admin".into()),
        name: Some("admin".into()),
        permissions: Some(vec![RawPermission::Key("*".into())]),
        ..RawGroup::default()
    });
    groups
}

fn group_ref(rng: &mut Rng) -> RawGroup {
    let id = match rng.below(10) {
        0 => "g-all-dns".to_string(),
        1 => "g-admin".to_string(),
        _ => format!(
            "g-{}-{}",
            FAMILIES[rng.below(FAMILIES.len())],
            ACTIONS[rng.below(2)]
        ),
    };
    RawGroup {
        id: Some(id),
        ..RawGroup::default()
    }
}

/// The world: one policy file.
pub fn world(scale: Scale, seed: u64) -> RawPolicyFile {
    let mut rng = Rng(seed);
    // The buckets' own stream: the rest of the world is the same with or without buckets.
    let mut bucket_rng = Rng(seed ^ 0x0b0c_4e75);
    let per = scale.zones_per_account;
    let mut accounts: Vec<RawAccount> = (0..scale.accounts)
        .map(|a| RawAccount {
            id: account_id(a),
            name: format!("account {a}"),
            api_access: None,
            zones: (0..per)
                .map(|z| RawZone {
                    id: zone_id(a, z, per),
                    name: format!("z{z}.a{a}.example"),
                })
                .collect(),
            domain_groups: Vec::new(),
            members: Vec::new(),
            user_groups: Vec::new(),
        })
        .collect();
    // Each user is a member of one or two accounts, with one to three policies.
    let mut memberships: Vec<Vec<usize>> = Vec::with_capacity(scale.users);
    for u in 0..scale.users {
        let count = 1 + rng.below(2);
        let mut mine = Vec::new();
        for _ in 0..count {
            let a = rng.below(scale.accounts);
            if mine.contains(&a) {
                continue;
            }
            mine.push(a);
            let policies = (0..1 + rng.below(3))
                .map(|p| {
                    let objects = if rng.below(3) == 0 {
                        vec![RawObject {
                            key: format!("{NS}.account.zone.{}", zone_id(a, rng.below(per), per)),
                        }]
                    } else {
                        vec![RawObject { key: "*".into() }]
                    };
                    RawBachPolicy {
                        id: Some(format!("m{u}-{a}-{p}")),
                        access: if rng.below(10) == 0 {
                            Effect::Deny
                        } else {
                            Effect::Allow
                        },
                        permission_groups: vec![group_ref(&mut rng), group_ref(&mut rng)],
                        resource_groups: vec![RawResourceGroup {
                            id: None,
                            name: None,
                            meta: None,
                            scope: Some(RawScope {
                                key: format!("{NS}.account.{}", account_id(a)),
                                objects,
                            }),
                        }],
                    }
                })
                .collect();
            if let Some(account) = accounts.get_mut(a) {
                account.members.push(RawMember {
                    user: user_id(u),
                    api_access: None,
                    policies,
                });
            }
        }
        memberships.push(mine);
    }
    let users = (0..scale.users)
        .map(|u| RawUser {
            id: user_id(u),
            email: format!("user{u}@example.com"),
            name: None,
            api_key_sha256: Some(sha_hex(&format!("key-{u}"))),
        })
        .collect();
    let tokens = (0..scale.tokens)
        .map(|t| {
            let user_owned = t % 2 == 0;
            let (owner, home) = if user_owned {
                let u = rng.below(scale.users);
                let home = memberships
                    .get(u)
                    .and_then(|m| m.first().copied())
                    .unwrap_or(0);
                (
                    RawOwner {
                        user: Some(user_id(u)),
                        account: None,
                    },
                    home,
                )
            } else {
                let a = rng.below(scale.accounts);
                (
                    RawOwner {
                        user: None,
                        account: Some(account_id(a)),
                    },
                    a,
                )
            };
            let mut policies: Vec<RawTokenPolicy> = (0..1 + rng
                .below(scale.max_policies_per_token))
                .map(|p| {
                    let zone = zone_id(home, rng.below(per), per);
                    let account = format!("{NS}.account.{}", account_id(home));
                    let mut resources = OrderedMap::new();
                    match rng.below(4) {
                        0 => {
                            resources.insert(account, RawResourceValue::Text("*".into()));
                        }
                        1 => {
                            resources.insert(
                                format!("{NS}.account.zone.{zone}"),
                                RawResourceValue::Text("*".into()),
                            );
                        }
                        2 => {
                            let mut nested = OrderedMap::new();
                            nested.insert(format!("{NS}.account.zone.*"), "*".to_string());
                            resources.insert(account, RawResourceValue::Nested(nested));
                        }
                        _ => {
                            let mut nested = OrderedMap::new();
                            nested.insert(format!("{NS}.account.zone.{zone}"), "*".to_string());
                            resources.insert(account, RawResourceValue::Nested(nested));
                        }
                    }
                    RawTokenPolicy {
                        id: Some(format!("t{t}-{p}")),
                        effect: if p > 0 && rng.below(8) == 0 {
                            Effect::Deny
                        } else {
                            Effect::Allow
                        },
                        permission_groups: vec![group_ref(&mut rng), group_ref(&mut rng)],
                        resources,
                    }
                })
                .collect();
            if scale.buckets_per_account > 0 && bucket_rng.below(4) == 0 {
                let mut resources = OrderedMap::new();
                if bucket_rng.below(2) == 0 {
                    resources.insert(
                        bucket_key(home, bucket_rng.below(scale.buckets_per_account)),
                        RawResourceValue::Text("*".into()),
                    );
                } else {
                    let mut nested = OrderedMap::new();
                    nested.insert(format!("{BUCKET_PREFIX}*"), "*".to_string());
                    resources.insert(
                        format!("{NS}.account.{}", account_id(home)),
                        RawResourceValue::Nested(nested),
                    );
                }
                policies.push(RawTokenPolicy {
                    id: Some(format!("t{t}-bucket")),
                    effect: Effect::Allow,
                    permission_groups: vec![RawGroup {
                        id: Some("g-bucket-read".into()),
                        ..RawGroup::default()
                    }],
                    resources,
                });
            }
            RawToken {
                id: format!("t{t:031x}"),
                name: None,
                owner,
                secret_sha256: sha_hex(&token_secret(t)),
                status: None,
                not_before: None,
                expires_on: None,
                condition: None,
                policies,
                issued_on: None,
                modified_on: None,
                last_used_on: None,
            }
        })
        .collect();
    let mut permission_groups = groups();
    let mut resource_types = Vec::new();
    if scale.buckets_per_account > 0 {
        permission_groups.push(RawGroup {
            id: Some("g-bucket-read".into()),
            name: Some("bucket read".into()),
            permissions: Some(vec![RawPermission::Key(
                "com.cloudflare.edge.r2.bucket.read".into(),
            )]),
            ..RawGroup::default()
        });
        resource_types.push(RawResourceType {
            name: "r2_bucket".into(),
            key: format!("{BUCKET_PREFIX}{{account}}_default_{{name}}"),
            parent: RawParent::Account,
            description: None,
        });
    }
    RawPolicyFile {
        resource_types,
        permission_groups,
        users,
        accounts,
        tokens,
    }
}

/// Which account a token was generated for (its owner's account, or its owning user's first account).
pub fn token_home(world: &RawPolicyFile, token: usize) -> Option<String> {
    let raw = world.tokens.get(token)?;
    if let Some(account) = &raw.owner.account {
        return Some(account.clone());
    }
    raw.policies.first().and_then(|policy| {
        policy.resources.keys().next().and_then(|key| {
            key.strip_prefix(&format!("{NS}.account."))
                .filter(|rest| !rest.starts_with("zone."))
                .map(str::to_string)
        })
    })
}

// === Config text of a world (YAML or JSON) ===

/// The syntax a world's policy files are written in. Both hold the same items, one flow mapping per list
/// item (what an operator's generator would emit); YAML frames them as block lists, JSON as arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Yaml,
    Json,
}

impl Syntax {
    /// The file extension, which is what makes permgate pick its parser.
    pub fn extension(self) -> &'static str {
        match self {
            Syntax::Yaml => "yaml",
            Syntax::Json => "json",
        }
    }

    /// A mapping key: bare in YAML, quoted in JSON.
    fn k(self, key: &str) -> String {
        match self {
            Syntax::Yaml => key.to_string(),
            Syntax::Json => q(key),
        }
    }

    /// `{key: value, ...}` from pairs whose values are already rendered.
    fn map(self, pairs: &[(&str, String)]) -> String {
        let inner: Vec<String> = pairs
            .iter()
            .map(|(key, value)| format!("{}: {value}", self.k(key)))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

/// A string scalar: every string the generator makes is plain ASCII without quotes or backslashes, so
/// double quotes alone make it safe in YAML (`#` would otherwise start a comment) and in JSON.
fn q(text: &str) -> String {
    debug_assert!(!text.contains(['"', '\\']));
    format!("\"{text}\"")
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// Writes one policy file of top-level lists, one item per line.
fn write_lists(
    syntax: Syntax,
    lists: &[(&str, Vec<String>)],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    // An empty list is left out (absent is empty): a world without resource types is written exactly as
    // before they existed.
    let lists: Vec<&(&str, Vec<String>)> = lists
        .iter()
        .filter(|(_, items)| !items.is_empty())
        .collect();
    if syntax == Syntax::Json {
        writeln!(out, "{{")?;
    }
    for (index, (name, items)) in lists.iter().enumerate() {
        match syntax {
            Syntax::Yaml => {
                writeln!(out, "{name}:")?;
                for item in items {
                    writeln!(out, "  - {item}")?;
                }
            }
            Syntax::Json => {
                writeln!(out, "  {}: [", q(name))?;
                for (position, item) in items.iter().enumerate() {
                    let comma = if position + 1 < items.len() { "," } else { "" };
                    writeln!(out, "    {item}{comma}")?;
                }
                let comma = if index + 1 < lists.len() { "," } else { "" };
                writeln!(out, "  ]{comma}")?;
            }
        }
    }
    if syntax == Syntax::Json {
        writeln!(out, "}}")?;
    }
    Ok(())
}

fn group_refs(syntax: Syntax, groups: &[RawGroup]) -> String {
    list(
        groups
            .iter()
            .map(|group| syntax.map(&[("id", q(group.id.as_deref().unwrap_or("")))])),
    )
}

fn effect(effect: Effect) -> String {
    q(match effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    })
}

/// Writes `world` as one policy file in the documented format (SPEC §2.2–§2.4). Covers the shapes
/// [`world`] makes.
pub fn write_world(
    world: &RawPolicyFile,
    syntax: Syntax,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let lists = [
        (
            "resource_types",
            resource_type_items(syntax, &world.resource_types),
        ),
        (
            "permission_groups",
            group_items(syntax, &world.permission_groups),
        ),
        ("users", user_items(syntax, &world.users)),
        ("accounts", account_items(syntax, &world.accounts)),
        ("tokens", token_items(syntax, &world.tokens)),
    ];
    write_lists(syntax, &lists, out)
}

/// Accounts per file and tokens per file in [`write_world_files`]: many files of moderate size, as a
/// generator for a large deployment would write them (and permgate parses files in parallel).
pub const ACCOUNTS_PER_FILE: usize = 1_000;
pub const TOKENS_PER_FILE: usize = 2_000;

/// Writes `world` into `dir` as several policy files (catalog and users; accounts by
/// [`ACCOUNTS_PER_FILE`]; tokens by [`TOKENS_PER_FILE`]); returns their names, in load order.
pub fn write_world_files(
    world: &RawPolicyFile,
    syntax: Syntax,
    dir: &std::path::Path,
) -> std::io::Result<Vec<String>> {
    use std::io::Write as _;
    let extension = syntax.extension();
    let mut names = Vec::new();
    let mut write = |name: String, lists: &[(&str, Vec<String>)]| -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(&name))?);
        write_lists(syntax, lists, &mut out)?;
        out.flush()?;
        names.push(name);
        Ok(())
    };
    write(
        format!("base.{extension}"),
        &[
            (
                "resource_types",
                resource_type_items(syntax, &world.resource_types),
            ),
            (
                "permission_groups",
                group_items(syntax, &world.permission_groups),
            ),
            ("users", user_items(syntax, &world.users)),
        ],
    )?;
    for (index, chunk) in world.accounts.chunks(ACCOUNTS_PER_FILE).enumerate() {
        write(
            format!("accounts-{index:04}.{extension}"),
            &[("accounts", account_items(syntax, chunk))],
        )?;
    }
    for (index, chunk) in world.tokens.chunks(TOKENS_PER_FILE).enumerate() {
        write(
            format!("tokens-{index:04}.{extension}"),
            &[("tokens", token_items(syntax, chunk))],
        )?;
    }
    Ok(names)
}

fn resource_type_items(syntax: Syntax, types: &[RawResourceType]) -> Vec<String> {
    types
        .iter()
        .map(|form| {
            let parent = match form.parent {
                RawParent::Account => "account",
                RawParent::Zone => "zone",
            };
            syntax.map(&[
                ("name", q(&form.name)),
                ("key", q(&form.key)),
                ("parent", q(parent)),
            ])
        })
        .collect()
}

fn group_items(syntax: Syntax, groups: &[RawGroup]) -> Vec<String> {
    groups
        .iter()
        .map(|group| {
            let keys = group
                .permissions
                .iter()
                .flatten()
                .map(|permission| q(permission.key()));
            syntax.map(&[
                ("id", q(group.id.as_deref().unwrap_or(""))),
                ("name", q(group.name.as_deref().unwrap_or(""))),
                ("permissions", list(keys)),
            ])
        })
        .collect()
}

fn user_items(syntax: Syntax, users: &[RawUser]) -> Vec<String> {
    users
        .iter()
        .map(|user| {
            let mut pairs = vec![("id", q(&user.id)), ("email", q(&user.email))];
            if let Some(hash) = &user.api_key_sha256 {
                pairs.push(("api_key_sha256", q(hash)));
            }
            syntax.map(&pairs)
        })
        .collect()
}

fn account_items(syntax: Syntax, accounts: &[RawAccount]) -> Vec<String> {
    accounts
        .iter()
        .map(|account| {
            let zones = account
                .zones
                .iter()
                .map(|zone| syntax.map(&[("id", q(&zone.id)), ("name", q(&zone.name))]));
            let mut pairs = vec![
                ("id", q(&account.id)),
                ("name", q(&account.name)),
                ("zones", list(zones)),
            ];
            if !account.members.is_empty() {
                let members = account.members.iter().map(|member| {
                    let policies = member.policies.iter().map(|policy| {
                        let groups = policy
                            .resource_groups
                            .iter()
                            .filter_map(|group| group.scope.as_ref())
                            .map(|scope| {
                                let objects = scope
                                    .objects
                                    .iter()
                                    .map(|object| syntax.map(&[("key", q(&object.key))]));
                                let scope = syntax
                                    .map(&[("key", q(&scope.key)), ("objects", list(objects))]);
                                syntax.map(&[("scope", scope)])
                            });
                        syntax.map(&[
                            ("id", q(policy.id.as_deref().unwrap_or(""))),
                            ("access", effect(policy.access)),
                            (
                                "permission_groups",
                                group_refs(syntax, &policy.permission_groups),
                            ),
                            ("resource_groups", list(groups)),
                        ])
                    });
                    syntax.map(&[("user", q(&member.user)), ("policies", list(policies))])
                });
                pairs.push(("members", list(members)));
            }
            syntax.map(&pairs)
        })
        .collect()
}

fn token_items(syntax: Syntax, tokens: &[RawToken]) -> Vec<String> {
    tokens
        .iter()
        .map(|token| {
            let owner = match (&token.owner.user, &token.owner.account) {
                (Some(user), _) => syntax.map(&[("user", q(user))]),
                (None, Some(account)) => syntax.map(&[("account", q(account))]),
                (None, None) => "{}".to_string(),
            };
            let policies = token.policies.iter().map(|policy| {
                let resources: Vec<String> = policy
                    .resources
                    .iter()
                    .map(|(key, value)| match value {
                        RawResourceValue::Text(text) => format!("{}: {}", q(key), q(text)),
                        RawResourceValue::Nested(nested) => {
                            let inner: Vec<String> = nested
                                .iter()
                                .map(|(key, value)| format!("{}: {}", q(key), q(value)))
                                .collect();
                            format!("{}: {{{}}}", q(key), inner.join(", "))
                        }
                    })
                    .collect();
                syntax.map(&[
                    ("id", q(policy.id.as_deref().unwrap_or(""))),
                    ("effect", effect(policy.effect)),
                    (
                        "permission_groups",
                        group_refs(syntax, &policy.permission_groups),
                    ),
                    ("resources", format!("{{{}}}", resources.join(", "))),
                ])
            });
            syntax.map(&[
                ("id", q(&token.id)),
                ("owner", owner),
                ("secret_sha256", q(&token.secret_sha256)),
                ("policies", list(policies)),
            ])
        })
        .collect()
}

/// A `gateway.yaml` for a generated config folder holding `policy_files` and `routes.yaml`.
pub fn gateway_yaml(
    listen: &str,
    admin_listen: &str,
    upstream: &str,
    policy_files: &[String],
    tls: Option<(&str, &str)>,
) -> String {
    let mut out = format!(
        "listen: {listen}\nadmin_listen: {admin_listen}\nupstream:\n  url: {upstream}\n  pool_max_idle_per_host: 1024\npolicy_files: [{}]\nroute_files: [routes.yaml]\ndecision_log:\n  sink: \"off\"\n",
        policy_files.join(", ")
    );
    if let Some((cert, key)) = tls {
        out.push_str(&format!("tls:\n  cert_file: {cert}\n  key_file: {key}\n"));
    }
    out
}
