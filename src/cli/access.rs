//! `permgate access explain | who-can`: what a config grants, from the analysis module, as text or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::analysis::explain::{ExplainOptions, Explanation};
use crate::analysis::{self, Credential, Holder, Usability, WhoCan};
use crate::policy::Known;
use crate::routes::Route;
use crate::snapshot::Snapshot;

/// The `access` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Everything one credential can do: resources, keys, routes, and why.
    Explain(ExplainArgs),
    /// Every credential that may call a route (METHOD PATH), or hold a key on a resource.
    WhoCan(WhoCanArgs),
    /// Access gained and lost between two configs (exit 3 with --fail-on-new-access and a gain).
    Diff(DiffArgs),
    /// Re-decide every request of a decision log under another config; report the verdicts that change.
    Replay(ReplayArgs),
}

/// Arguments of `permgate access replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The config to decide with.
    #[arg(long, default_value = "config/gateway.yaml")]
    pub config: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show at most this many groups (all are counted).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// The decision log (JSON lines, as `decision_log` writes them).
    pub log: PathBuf,
}

/// Arguments of `permgate access diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Exit 3 when the new config grants any access the old one does not.
    #[arg(long)]
    pub fail_on_new_access: bool,
    /// The time to compare at (RFC 3339); defaults to now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The old config's gateway.yaml.
    pub old: PathBuf,
    /// The new config's gateway.yaml.
    pub new: PathBuf,
}

/// Arguments of `permgate access explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The gateway config file.
    #[arg(long, default_value = "config/gateway.yaml")]
    pub config: PathBuf,
    /// A token secret (hashed here; never printed).
    #[arg(long, group = "who")]
    pub token: Option<String>,
    /// A token, by its id.
    #[arg(long, group = "who", value_name = "ID")]
    pub token_id: Option<String>,
    /// A user's legacy API key, by the user's id or email.
    #[arg(long, group = "who", value_name = "ID_OR_EMAIL")]
    pub user: Option<String>,
    /// The time to explain at (RFC 3339); defaults to now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Also list what the credential selects but cannot use, and why.
    #[arg(long)]
    pub blocked: bool,
    /// List at most this many resources in full (all are counted).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `permgate access who-can`.
#[derive(Debug, Args)]
pub struct WhoCanArgs {
    /// The gateway config file.
    #[arg(long, default_value = "config/gateway.yaml")]
    pub config: PathBuf,
    /// A permission key (with --resource instead of METHOD PATH).
    #[arg(long, requires = "resource", conflicts_with_all = ["method", "path"])]
    pub key: Option<String>,
    /// A resource key, e.g. com.cloudflare.api.account.zone.ZONE_ID (with --key).
    #[arg(long, requires = "key")]
    pub resource: Option<String>,
    /// The time to decide at (RFC 3339); defaults to now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Also list credentials that hold the access but are stopped, with the reason.
    #[arg(long)]
    pub blocked: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The request method.
    #[arg(required_unless_present = "key")]
    pub method: Option<String>,
    /// The request target (path and optional query), as it would be sent.
    #[arg(required_unless_present = "key")]
    pub path: Option<String>,
}

/// Runs an `access` subcommand: exit 0, or 2 for a config or usage error.
pub fn run(command: &AccessCommand) -> ExitCode {
    let result = match command {
        AccessCommand::Explain(args) => run_explain(args),
        AccessCommand::WhoCan(args) => run_who_can(args),
        AccessCommand::Replay(args) => run_replay(args),
        AccessCommand::Diff(args) => {
            return match run_diff(args) {
                Ok((output, gained)) => {
                    super::print_out(&output);
                    if gained && args.fail_on_new_access {
                        ExitCode::from(3)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(output) => {
            super::print_out(&output);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

fn load(config: &std::path::Path) -> Result<Snapshot, String> {
    crate::config::load(config).map_err(|errors| format!("config error:\n{errors}"))
}

fn time_text(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `permgate access explain`.
pub fn run_explain(args: &ExplainArgs) -> Result<String, String> {
    let now = super::time_arg(args.at.as_deref())?;
    let snapshot = load(&args.config)?;
    let policy = &snapshot.policy;
    let known = match (&args.token, &args.token_id, &args.user) {
        (Some(secret), _, _) => {
            use sha2::{Digest, Sha256};
            let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            analysis::token_by_secret_sha256(policy, &digest)
                .ok_or("no token of this config has that secret")?
        }
        (None, Some(id), _) => analysis::token_by_id(policy, id)
            .ok_or_else(|| format!("no token has the id {id:?} in this config"))?,
        (None, None, Some(user)) => {
            let index = analysis::user_by_id_or_email(policy, user)
                .ok_or_else(|| format!("no user {user:?} in this config"))?;
            if policy
                .users
                .get(index as usize)
                .is_none_or(|record| record.api_key_sha256.is_none())
            {
                return Err(format!("user {user} has no legacy API key in this config"));
            }
            Known::LegacyKey(index)
        }
        (None, None, None) => return Err("name a credential: --token, --token-id or --user".into()),
    };
    let explanation = analysis::explain(
        &snapshot,
        known,
        ExplainOptions {
            now,
            limit: args.limit,
            blocked: args.blocked,
            routes: true,
        },
    )
    .ok_or("the credential is not in this config")?;
    let routes = snapshot.routes.routes();
    Ok(if args.json {
        format!("{}\n", explain_json(&explanation, routes))
    } else {
        explain_text(&explanation, routes)
    })
}

fn route_line(route: &Route) -> String {
    format!("{} {} [{}]", route.methods, route.pattern, route.label)
}

fn credential_text(credential: &Credential<'_>) -> String {
    let owner = match credential.owner_email {
        Some(email) => format!(
            "{} {} ({email})",
            credential.owner_kind, credential.owner_id
        ),
        None => format!("{} {}", credential.owner_kind, credential.owner_id),
    };
    match credential.token_name {
        Some(name) => format!(
            "{} {name:?}, {}, owned by {owner}",
            credential.label(),
            credential.kind.described().trim_end_matches('s')
        ),
        None => format!("{}, owned by {owner}", credential.label()),
    }
}

fn conditions_text(usability: &Usability<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(condition) = usability.ip_condition {
        let list = |nets: &[ipnet::IpNet]| {
            nets.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = String::from("only from client IPs");
        if let Some(inside) = &condition.inside {
            text.push_str(&format!(" in {}", list(inside)));
        }
        if !condition.not_in.is_empty() {
            text.push_str(&format!(" not in {}", list(&condition.not_in)));
        }
        lines.push(text);
    }
    if let Some(at) = usability.not_before {
        lines.push(format!("not before {at}"));
    }
    if let Some(at) = usability.expires_on {
        lines.push(format!("expires on {at}"));
    }
    lines
}

fn explain_text(explanation: &Explanation<'_>, routes: &[Route]) -> String {
    let mut out = Vec::new();
    out.push(credential_text(&explanation.credential));
    out.push(format!("at:        {}", time_text(explanation.now)));
    match &explanation.usability.unusable {
        Some(reason) => out.push(format!("usable:    no — {reason}; nothing is granted")),
        None => out.push("usable:    yes".into()),
    }
    let conditions = conditions_text(&explanation.usability);
    if !conditions.is_empty() {
        out.push(format!(
            "condition: everything below holds only {}",
            conditions.join("; ")
        ));
    }
    out.push(format!(
        "access:    {} account(s), {} zone(s), {} user(s){}{}",
        explanation.accounts,
        explanation.zones,
        explanation.users,
        if explanation.children > 0 {
            format!(", {} other resource(s)", explanation.children)
        } else {
            String::new()
        },
        if explanation.truncated {
            format!(
                " — the first {} listed (--limit)",
                explanation.resources.len()
            )
        } else {
            String::new()
        }
    ));
    for access in &explanation.resources {
        out.push(String::new());
        out.push(format!("{} ({})", access.resource, access.name));
        if !access.selected_by.is_empty() {
            out.push(format!("  selected:  {}", access.selected_by.join(", ")));
        }
        if access.every_key {
            out.push(
                "  keys:      every key (a legacy key acts as its user on the user's own resource)"
                    .into(),
            );
        }
        if !access.keys.is_empty() {
            out.push("  keys:".into());
            for key in &access.keys {
                let mut why = Vec::new();
                if let Some(policy) = key.token_policy {
                    why.push(format!(
                        "token policy {policy}{}",
                        groups_text(&key.token_groups)
                    ));
                }
                if let Some(policy) = key.member_policy {
                    let mut text =
                        format!("member policy {policy}{}", groups_text(&key.member_groups));
                    if let Some(group) = key.user_group {
                        text.push_str(&format!(" of user group {group}"));
                    }
                    if !key.domain_groups.is_empty() {
                        text.push_str(&format!(
                            ", zone by domain group {}",
                            key.domain_groups.join(", ")
                        ));
                    }
                    why.push(text);
                }
                out.push(format!("    {}  ({})", key.key, why.join(" + ")));
            }
        }
        if !access.routes.is_empty() {
            out.push(format!("  routes ({}):", access.routes.len()));
            for index in &access.routes {
                if let Some(route) = routes.get(*index) {
                    out.push(format!("    {}", route_line(route)));
                }
            }
        }
        for blocked in &access.blocked {
            out.push(format!("  blocked:   {} — {}", blocked.key, blocked.reason));
        }
    }
    if !explanation.unscoped_routes.is_empty() {
        out.push(String::new());
        out.push(format!(
            "routes that name no resource ({}):",
            explanation.unscoped_routes.len()
        ));
        for index in &explanation.unscoped_routes {
            if let Some(route) = routes.get(*index) {
                out.push(format!("    {}", route_line(route)));
            }
        }
    }
    if !explanation.blocked.is_empty() {
        out.push(String::new());
        out.push("blocked:".into());
        for blocked in &explanation.blocked {
            out.push(format!("    {} — {}", blocked.what, blocked.reason));
        }
    }
    out.push(String::new());
    out.join("\n")
}

/// ` [DNS Read, Zone Read]`: the permission groups of a policy that hold a key.
fn groups_text(groups: &[&str]) -> String {
    if groups.is_empty() {
        String::new()
    } else {
        format!(" [{}]", groups.join(", "))
    }
}

fn credential_json(credential: &Credential<'_>) -> Value {
    json!({
        "kind": credential.kind.as_str(),
        "token_id": credential.token_id,
        "token_name": credential.token_name,
        "owner": {"kind": credential.owner_kind, "id": credential.owner_id, "email": credential.owner_email},
    })
}

fn usability_json(usability: &Usability<'_>) -> Value {
    json!({
        "usable": usability.unusable.is_none(),
        "unusable_reason": usability.unusable,
        "conditional": usability.conditional(),
        "ip_in": usability.ip_condition.and_then(|c| c.inside.as_ref()).map(|nets| nets.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "ip_not_in": usability.ip_condition.map(|c| c.not_in.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "not_before": usability.not_before,
        "expires_on": usability.expires_on,
    })
}

fn route_json(route: &Route) -> Value {
    json!({"id": &*route.label, "methods": &*route.methods, "path": &*route.pattern})
}

fn explain_json(explanation: &Explanation<'_>, routes: &[Route]) -> Value {
    let resources: Vec<Value> = explanation
        .resources
        .iter()
        .map(|access| {
            json!({
                "resource": access.resource.to_string(),
                "kind": match access.resource.kind {
                    crate::policy::ResourceKind::Account => "account",
                    crate::policy::ResourceKind::Zone => "zone",
                    crate::policy::ResourceKind::User => "user",
                    crate::policy::ResourceKind::Child => access.resource.child.map_or("child", |(form, _)| &*form.name),
                },
                "id": access.resource.id,
                "name": access.name,
                "selected_by": access.selected_by,
                "every_key": access.every_key,
                "keys": access.keys.iter().map(|key| json!({
                    "key": key.key,
                    "token_policy": key.token_policy,
                    "token_groups": key.token_groups,
                    "member_policy": key.member_policy,
                    "member_groups": key.member_groups,
                    "user_group": key.user_group,
                    "domain_groups": key.domain_groups,
                })).collect::<Vec<_>>(),
                "routes": access.routes.iter().filter_map(|index| routes.get(*index)).map(route_json).collect::<Vec<_>>(),
                "blocked": access.blocked.iter().map(|blocked| json!({
                    "key": blocked.key, "reason": blocked.reason, "deny_policy": blocked.deny_policy,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "credential": credential_json(&explanation.credential),
        "at": time_text(explanation.now),
        "usability": usability_json(&explanation.usability),
        "counts": {"accounts": explanation.accounts, "zones": explanation.zones, "users": explanation.users, "children": explanation.children},
        "truncated": explanation.truncated,
        "resources": resources,
        "unscoped_routes": explanation.unscoped_routes.iter().filter_map(|index| routes.get(*index)).map(route_json).collect::<Vec<_>>(),
        "blocked": explanation.blocked.iter().map(|blocked| json!({"what": blocked.what, "reason": blocked.reason})).collect::<Vec<_>>(),
    })
}

/// `permgate access who-can`.
pub fn run_who_can(args: &WhoCanArgs) -> Result<String, String> {
    let now = super::time_arg(args.at.as_deref())?;
    let snapshot = load(&args.config)?;
    let answer = match (&args.key, &args.resource, &args.method, &args.path) {
        (Some(key), Some(resource), _, _) => {
            analysis::who_can_key(&snapshot, key, resource, now, args.blocked)?
        }
        (None, _, Some(method), Some(path)) => {
            analysis::who_can_route(&snapshot, method, path, now, args.blocked)?
        }
        _ => return Err("give METHOD PATH, or --key KEY --resource RESOURCE".into()),
    };
    let routes = snapshot.routes.routes();
    Ok(if args.json {
        format!("{}\n", who_can_json(&answer, routes, now))
    } else {
        who_can_text(&answer, routes, now, args.blocked)
    })
}

fn holder_text(holder: &Holder<'_>) -> String {
    let mut text = credential_text(&holder.credential);
    if !holder.policies.is_empty() {
        text.push_str(&format!("\n      policies: {}", holder.policies.join(", ")));
    }
    let conditions = conditions_text(&holder.usability);
    if !conditions.is_empty() && holder.reason.is_none() {
        text.push_str(&format!("\n      conditional: {}", conditions.join("; ")));
    }
    if let Some(reason) = &holder.reason {
        text.push_str(&format!("\n      stopped: {reason}"));
    }
    text
}

fn who_can_text(answer: &WhoCan<'_>, routes: &[Route], now: i64, blocked: bool) -> String {
    let mut out = Vec::new();
    if let Some(route) = answer.route.and_then(|index| routes.get(index)) {
        out.push(format!("route:     {}", route_line(route)));
    }
    if let Some(resource) = &answer.resource {
        out.push(format!("resource:  {resource}"));
    }
    out.push(format!("at:        {}", time_text(now)));
    out.push(format!("allowed ({}):", answer.allowed.len()));
    for holder in &answer.allowed {
        out.push(format!("  {}", holder_text(holder)));
    }
    if blocked {
        out.push(format!(
            "holding it but stopped ({}):",
            answer.blocked.len()
        ));
        for holder in &answer.blocked {
            out.push(format!("  {}", holder_text(holder)));
        }
    }
    out.push(String::new());
    out.join("\n")
}

fn who_can_json(answer: &WhoCan<'_>, routes: &[Route], now: i64) -> Value {
    let holder = |holder: &Holder<'_>| {
        json!({
            "credential": credential_json(&holder.credential),
            "policies": holder.policies,
            "usability": usability_json(&holder.usability),
            "reason": holder.reason,
        })
    };
    json!({
        "route": answer.route.and_then(|index| routes.get(index)).map(route_json),
        "resource": answer.resource,
        "at": time_text(now),
        "allowed": answer.allowed.iter().map(holder).collect::<Vec<_>>(),
        "blocked": answer.blocked.iter().map(holder).collect::<Vec<_>>(),
    })
}

/// `permgate access diff`: the output, and whether any access was gained.
pub fn run_diff(args: &DiffArgs) -> Result<(String, bool), String> {
    let now = super::time_arg(args.at.as_deref())?;
    let old = crate::config::load(&args.old)
        .map_err(|errors| format!("config error in {}:\n{errors}", args.old.display()))?;
    let new = crate::config::load(&args.new)
        .map_err(|errors| format!("config error in {}:\n{errors}", args.new.display()))?;
    let diff = analysis::diff(&old, &new, now, &args.new.display().to_string());
    let gained = !diff.gained.is_empty();
    Ok((
        if args.json {
            format!("{}\n", diff_json(&diff, &old, &new, now))
        } else {
            diff_text(&diff, &old, &new, now)
        },
        gained,
    ))
}

/// The diff as JSON (also the `changes` of the reload's access-change record).
pub fn diff_json(diff: &analysis::AccessDiff, old: &Snapshot, new: &Snapshot, now: i64) -> Value {
    let (gained, lost) = diff.counts();
    json!({
        "old_hash": old.content_hash,
        "new_hash": new.content_hash,
        "at": time_text(now),
        "gained": gained,
        "lost": lost,
        "access_gained": diff.gained.iter().map(analysis::diff::AccessChange::to_json).collect::<Vec<_>>(),
        "access_lost": diff.lost.iter().map(analysis::diff::AccessChange::to_json).collect::<Vec<_>>(),
        "routes_added": diff.routes_added,
        "routes_removed": diff.routes_removed,
        "routes_changed": diff.routes_changed,
        "tokens": diff.tokens.iter().map(|t| json!({"token_id": t.token_id, "change": t.change})).collect::<Vec<_>>(),
    })
}

fn diff_text(diff: &analysis::AccessDiff, old: &Snapshot, new: &Snapshot, now: i64) -> String {
    let (gained, lost) = diff.counts();
    let mut out = vec![
        format!("old:    {}", old.content_hash),
        format!("new:    {}", new.content_hash),
        format!("at:     {}", time_text(now)),
        format!("access: {gained} gained, {lost} lost (credential x resource x key)"),
    ];
    if diff.is_empty() {
        out.push("no change in access, routes or tokens".into());
    }
    for (title, changes, sign) in [("gained", &diff.gained, '+'), ("lost", &diff.lost, '-')] {
        if changes.is_empty() {
            continue;
        }
        out.push(String::new());
        out.push(format!("{title}:"));
        for change in changes {
            out.push(format!("  {sign} {} on {}", change.label, change.resource));
            for key in &change.keys {
                out.push(format!("      key    {key}"));
            }
            for route in &change.routes {
                out.push(format!("      route  {route}"));
            }
            if let Some(example) = &change.example {
                out.push(format!("      check: {example}"));
            }
        }
    }
    for (title, list) in [
        ("routes added", &diff.routes_added),
        ("routes removed", &diff.routes_removed),
        ("routes changed", &diff.routes_changed),
    ] {
        if !list.is_empty() {
            out.push(String::new());
            out.push(format!("{title}: {}", list.join(", ")));
        }
    }
    if !diff.tokens.is_empty() {
        out.push(String::new());
        out.push("tokens:".into());
        for token in &diff.tokens {
            out.push(format!("  {} {}", token.change, token.token_id));
        }
    }
    out.push(String::new());
    out.join("\n")
}

/// `permgate access replay`.
pub fn run_replay(args: &ReplayArgs) -> Result<String, String> {
    use std::io::BufRead as _;
    let snapshot = load(&args.config)?;
    let file = std::fs::File::open(&args.log)
        .map_err(|error| format!("cannot open {}: {error}", args.log.display()))?;
    let mut replayer = analysis::replay::Replayer::new(&snapshot);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|error| format!("cannot read {}: {error}", args.log.display()))?;
        if read == 0 {
            break;
        }
        replayer.replay_line(&line);
    }
    let report = replayer.finish();
    let groups: Vec<Value> = report
        .groups
        .iter()
        .take(args.limit)
        .map(|(key, (count, example))| {
            json!({
                "route": key.route,
                "credential": key.credential,
                "change": key.change,
                "count": count,
                "example": {
                    "time": example.time,
                    "request_id": example.request_id,
                    "method": example.method,
                    "path": example.path,
                    "code": example.new_code,
                    "reason": example.reason,
                },
            })
        })
        .collect();
    if args.json {
        return Ok(format!(
            "{}\n",
            json!({
                "config_hash": snapshot.content_hash,
                "lines": report.lines,
                "replayed": report.replayed,
                "unchanged": report.unchanged,
                "changed": report.changed,
                "not_replayable": report.not_replayable,
                "malformed": report.malformed,
                "groups": groups,
            })
        ));
    }
    let mut out = vec![
        format!("config:         {}", snapshot.content_hash),
        format!(
            "lines:          {} ({} replayed, {} not replayable, {} malformed)",
            report.lines, report.replayed, report.not_replayable, report.malformed
        ),
        format!("unchanged:      {}", report.unchanged),
        format!("changed:        {}", report.changed),
    ];
    for (key, (count, example)) in report.groups.iter().take(args.limit) {
        out.push(String::new());
        out.push(format!(
            "{}  {}  {}  x{count}",
            key.change, key.route, key.credential
        ));
        out.push(format!(
            "    e.g. {} {} {} at {} -> {} ({})",
            example.request_id.as_deref().unwrap_or("-"),
            example.method,
            example.path,
            example.time,
            example.new_code,
            example.reason
        ));
    }
    if report.groups.len() > args.limit {
        out.push(format!(
            "\n… {} more groups (--limit)",
            report.groups.len() - args.limit
        ));
    }
    out.push(String::new());
    Ok(out.join("\n"))
}
