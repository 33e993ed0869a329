//! `permgate check`: decide one request offline, exactly as the proxy would (same loader, same pipeline).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::answer::push_json_string;
use crate::pipeline::{Facts, Verdict, decide, decide_as};

/// Arguments of `permgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The gateway config file.
    #[arg(long, default_value = "config/gateway.yaml")]
    pub config: PathBuf,
    /// A token secret, sent as `Authorization: Bearer SECRET`.
    #[arg(long, conflicts_with = "api_key")]
    pub token: Option<String>,
    /// A legacy user API key, sent as `X-Auth-Email` and `X-Auth-Key`.
    #[arg(long, value_name = "EMAIL:KEY", conflicts_with = "token_id")]
    pub api_key: Option<String>,
    /// Decide as the token with this id, without its secret (the config holds only its hash): the same
    /// decision, with the credential named instead of presented.
    #[arg(long, value_name = "ID", conflicts_with_all = ["token", "user"])]
    pub token_id: Option<String>,
    /// Decide as this user's legacy API key (by id or email), without the key.
    #[arg(long, value_name = "ID_OR_EMAIL", conflicts_with_all = ["token", "api_key"])]
    pub user: Option<String>,
    /// An extra request header, `Name: value` (repeatable), e.g. `X-Forwarded-For`.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The client IP (the TCP peer).
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// The time of the request (RFC 3339); defaults to now.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The request method.
    pub method: String,
    /// The request target: path and optional query, exactly as it would be sent.
    pub path: String,
}

/// Runs `permgate check`: exit 0 allow, 1 deny, 2 config or usage error.
pub fn run(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok((output, allowed)) => {
            super::print_out(&format!("{output}\n"));
            if allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

/// Decides the request and renders the answer; `Err` is a config or usage error.
pub fn check(args: &CheckArgs) -> Result<(String, bool), String> {
    let now = super::time_arg(args.at.as_deref())?;
    let headers = request_headers(args)?;
    let snapshot =
        crate::config::load(&args.config).map_err(|errors| format!("config error:\n{errors}"))?;
    let facts = Facts {
        method: &args.method,
        target: &args.path,
        headers: &headers,
        peer_ip: args.ip,
        now,
    };
    let verdict = decide_named(
        &snapshot,
        &facts,
        args.token_id.as_deref(),
        args.user.as_deref(),
    )?;
    let output = if args.json {
        render_json(&verdict)
    } else {
        render_text(&verdict)
    };
    Ok((output, verdict.allowed()))
}

/// The decision for `facts`: as the token with id `token_id`, or as `user`'s legacy key (by id or email),
/// with `decide_as`; with neither, as the request's own headers say (`decide`). What `--token-id` and
/// `--user` do, and the admin console's Why denied? form.
pub fn decide_named<'s>(
    snapshot: &'s crate::snapshot::Snapshot,
    facts: &Facts<'_>,
    token_id: Option<&str>,
    user: Option<&str>,
) -> Result<Verdict<'s>, String> {
    Ok(match (token_id, user) {
        (Some(id), _) => {
            let known = crate::analysis::token_by_id(&snapshot.policy, id)
                .ok_or_else(|| format!("no token has the id {id:?} in this config"))?;
            decide_as(snapshot, facts, known)
        }
        (None, Some(user)) => {
            let index = crate::analysis::user_by_id_or_email(&snapshot.policy, user)
                .ok_or_else(|| format!("no user {user:?} in this config"))?;
            decide_as(snapshot, facts, crate::policy::Known::LegacyKey(index))
        }
        (None, None) => decide(snapshot, facts),
    })
}

fn request_headers(args: &CheckArgs) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &str| -> Result<(), String> {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a valid header value"))?;
        headers.append(name, value);
        Ok(())
    };
    if let Some(token) = &args.token {
        add("authorization", &format!("Bearer {token}"))?;
    }
    if let Some(pair) = &args.api_key {
        let (email, key) = pair
            .split_once(':')
            .ok_or_else(|| "--api-key must be EMAIL:KEY".to_string())?;
        add("x-auth-email", email)?;
        add("x-auth-key", key)?;
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("--header {header:?} must be `Name: value`"))?;
        add(name, value)?;
    }
    Ok(headers)
}

fn route_text(verdict: &Verdict<'_>) -> Option<String> {
    verdict
        .route
        .map(|route| format!("{} {}", route.methods, route.pattern))
}

fn render_text(verdict: &Verdict<'_>) -> String {
    let mut lines = vec![
        format!(
            "decision:  {}",
            if verdict.allowed() { "allow" } else { "deny" }
        ),
        format!("status:    {}", verdict.status()),
    ];
    if let Err(refusal) = &verdict.outcome {
        lines.push(format!("code:      {}", refusal.answer.code));
        lines.push(format!(
            "message:   {}",
            refusal.answer.full_message(refusal.denial.as_ref())
        ));
    }
    if let Some(canonical) = &verdict.canonical {
        lines.push(format!("path:      {}", canonical.path));
    }
    if let Some(route) = route_text(verdict) {
        lines.push(format!("route:     {route}"));
    }
    if let Some(principal) = &verdict.principal {
        lines.push(format!("principal: {principal}"));
        if let Some(token) = principal.token_id() {
            lines.push(format!("token:     {token}"));
        }
    }
    if let Some(resource) = &verdict.resource {
        lines.push(format!("resource:  {resource}"));
    }
    if !verdict.policies.is_empty() {
        lines.push(format!("policies:  {}", verdict.policies.join(", ")));
    }
    let reason = match &verdict.outcome {
        Ok(()) => "allowed".to_string(),
        Err(refusal) => refusal.reason(),
    };
    lines.push(format!("reason:    {reason}"));
    lines.join("\n")
}

/// `check --json`'s object (also the admin console's Why denied? answer).
pub fn render_json(verdict: &Verdict<'_>) -> String {
    let mut out = String::from("{");
    let mut field = |name: &str, value: Option<String>, quoted: bool| {
        if out.len() > 1 {
            out.push(',');
        }
        push_json_string(&mut out, name);
        out.push(':');
        match value {
            None => out.push_str("null"),
            Some(value) if quoted => push_json_string(&mut out, &value),
            Some(value) => out.push_str(&value),
        }
    };
    let refusal = verdict.outcome.as_ref().err();
    field(
        "decision",
        Some(if verdict.allowed() { "allow" } else { "deny" }.into()),
        true,
    );
    field("status", Some(verdict.status().to_string()), false);
    field(
        "code",
        refusal.map(|refusal| refusal.answer.code.to_string()),
        false,
    );
    field(
        "message",
        refusal.map(|refusal| {
            refusal
                .answer
                .full_message(refusal.denial.as_ref())
                .into_owned()
        }),
        true,
    );
    field(
        "reason",
        Some(refusal.map_or_else(|| "allowed".to_string(), |refusal| refusal.reason())),
        true,
    );
    field(
        "path",
        verdict
            .canonical
            .as_ref()
            .map(|canonical| canonical.path.clone()),
        true,
    );
    field("route", route_text(verdict), true);
    field(
        "principal",
        verdict.principal.map(|principal| principal.to_string()),
        true,
    );
    field(
        "token_id",
        verdict
            .principal
            .and_then(|p| p.token_id().map(str::to_string)),
        true,
    );
    field("account", verdict.account().map(str::to_string), true);
    field(
        "resource",
        verdict.resource.map(|resource| resource.to_string()),
        true,
    );
    let mut policies = String::from("[");
    for (index, policy) in verdict.policies.iter().enumerate() {
        if index > 0 {
            policies.push(',');
        }
        push_json_string(&mut policies, policy);
    }
    policies.push(']');
    field("policies", Some(policies), false);
    field("client_ip", Some(verdict.client_ip.to_string()), true);
    out.push('}');
    out
}
