//! The console's pages (server-rendered HTML) and the JSON documents behind its forms.
// The documents are read with `Value[&str]`, which answers `Null` for a missing member and never panics.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use http::HeaderMap;
use serde_json::{Value, json};

use super::html::{Html, url_with_query};
use super::traffic::Totals;
use super::{AdminState, Query};
use crate::analysis::{self, explain::ExplainOptions};
use crate::cli;
use crate::pipeline::Facts;
use crate::routes::{Requirement, Route, Scope};
use crate::snapshot::Snapshot;

/// The pages, in the order the navigation lists them.
const PAGES: [(&str, &str); 6] = [
    ("/console/", "Overview"),
    ("/console/traffic", "Traffic"),
    ("/console/denials", "Recent denials"),
    ("/console/routes", "Routes"),
    ("/console/who-can", "Who can do what"),
    ("/console/why-denied", "Why denied?"),
];

/// How many characters of the content hash the header shows (the whole hash is its title).
const HASH_SHOWN: usize = 16;

/// A page: head, header with navigation and the serving generation and hash, `body`, footer.
fn layout(snapshot: &Snapshot, current: &str, title: &str, body: impl FnOnce(&mut Html)) -> String {
    let mut h = Html::new();
    h.raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<title>")
        .text(title)
        .raw(" · permgate console</title>")
        .raw("<link rel=\"icon\" href=\"/console/assets/favicon.svg\" type=\"image/svg+xml\">")
        .raw("<link rel=\"stylesheet\" href=\"/console/assets/console.css\">")
        .raw("<script src=\"/console/assets/console.js\" defer></script>")
        .raw("</head><body data-page=\"")
        .text(current)
        .raw("\"><header><a class=\"brand\" href=\"/console/\">permgate</a><nav>");
    for (href, label) in PAGES {
        if href == current {
            h.raw("<a aria-current=\"page\" href=\"")
                .text(href)
                .raw("\">")
                .text(label)
                .raw("</a>");
        } else {
            h.link(href, label);
        }
    }
    let hash = &snapshot.content_hash;
    h.raw("</nav><div class=\"serving\">generation <strong id=\"pg-generation\">")
        .count(snapshot.generation)
        .raw("</strong> · config <code id=\"pg-hash\" title=\"")
        .text(hash)
        .raw("\">")
        .text(hash.get(..HASH_SHOWN).unwrap_or(hash))
        .raw("</code><span id=\"pg-notice\" class=\"notice\" hidden></span></div></header><main><h1>")
        .text(title)
        .raw("</h1>");
    body(&mut h);
    h.raw("</main><footer>Read-only: the config lives in its files. ")
        .raw("<a href=\"/status\">/status</a> · <a href=\"/metrics\">/metrics</a></footer></body></html>\n");
    h.finish()
}

/// A JSON value as text: strings bare, `null` as a dash.
fn text_of(value: &Value) -> String {
    match value {
        Value::Null => "—".to_string(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `<tr><th>label</th><td>value</td></tr>`.
fn row(h: &mut Html, label: &str, value: &str) {
    h.raw("<tr><th scope=\"row\">")
        .text(label)
        .raw("</th><td>")
        .text(value)
        .raw("</td></tr>");
}

fn error_box(h: &mut Html, message: &str) {
    h.raw("<p class=\"error\" role=\"alert\">")
        .text(message)
        .raw("</p>");
}

// ---- Overview -------------------------------------------------------------------------------------

/// `/console/`: what is loaded, the last reload and its errors, the watcher, counts, the last access change.
pub fn overview(state: &AdminState) -> String {
    let snapshot = state.gateway.snapshot();
    let status = super::super::status(state);
    layout(&snapshot, "/console/", "Overview", |h| {
        h.raw("<div id=\"pg-live\"><div class=\"cards\">");
        h.raw("<section><h2>Serving</h2><table class=\"facts\">");
        row(h, "generation", &text_of(&status["generation"]));
        row(h, "content hash", &text_of(&status["content_hash"]));
        row(h, "loaded at", &text_of(&status["loaded_at"]));
        row(h, "mode", &text_of(&status["mode"]));
        row(h, "config", &text_of(&status["config"]));
        let in_sync = status["in_sync"].as_bool().unwrap_or(false);
        h.raw("<tr><th scope=\"row\">in sync</th><td>");
        if in_sync {
            h.raw("<span class=\"good\" id=\"pg-in-sync\">yes: the files on disk are what is served</span>");
        } else {
            h.raw("<span class=\"bad\" id=\"pg-in-sync\">no: the files on disk are a rejected config; the last good one serves</span>");
        }
        h.raw("</td></tr>");
        let restart = status["restart_required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        row(
            h,
            "restart required",
            &if restart.is_empty() {
                "no".to_string()
            } else {
                format!("yes, for {}", text_of(&Value::Array(restart)))
            },
        );
        let watcher = &status["watcher"];
        row(
            h,
            "file watcher",
            &match (watcher["enabled"].as_bool(), watcher["healthy"].as_bool()) {
                (Some(false), _) => "off (no reloads)".to_string(),
                (_, Some(true)) => format!(
                    "healthy; watching {}; {} restart(s)",
                    text_of(&watcher["folders"]),
                    text_of(&watcher["restarts"])
                ),
                _ => format!(
                    "unhealthy: {}; {} restart(s)",
                    text_of(&watcher["last_error"]),
                    text_of(&watcher["restarts"])
                ),
            },
        );
        h.raw("</table></section>");

        h.raw("<section><h2>Last reload</h2>");
        let last = &status["last_reload"];
        if last.is_null() {
            h.raw("<p>No reload yet.</p>");
        } else {
            h.raw("<table class=\"facts\">");
            row(h, "outcome", &text_of(&last["outcome"]));
            row(h, "trigger", &text_of(&last["trigger"]));
            row(h, "at", &text_of(&last["at"]));
            row(h, "generation", &text_of(&last["generation"]));
            row(h, "took (ms)", &text_of(&last["duration_ms"]));
            row(h, "last applied at", &text_of(&status["last_applied_at"]));
            h.raw("</table>");
        }
        let errors = status["errors"].as_array().cloned().unwrap_or_default();
        if !errors.is_empty() {
            h.raw("<h3>Errors of the rejected config</h3><p>Rejected at ")
                .text(&text_of(&status["last_error_at"]))
                .raw(". Nothing of it serves.</p><table><thead><tr><th>where</th><th>path in the file</th><th>code</th><th>message</th></tr></thead><tbody>");
            for error in &errors {
                h.raw("<tr><td><code>")
                    .text(&format!(
                        "{}:{}:{}",
                        text_of(&error["file"]),
                        text_of(&error["line"]),
                        text_of(&error["column"])
                    ))
                    .raw("</code></td><td><code>")
                    .text(&text_of(&error["path"]))
                    .raw("</code></td><td>")
                    .text(&text_of(&error["code"]))
                    .raw("</td><td>")
                    .text(&text_of(&error["message"]))
                    .raw("</td></tr>");
            }
            h.raw("</tbody></table>");
        }
        h.raw("</section>");

        h.raw("<section><h2>Counts</h2><table class=\"facts\"><tbody>");
        if let Some(counts) = status["counts"].as_object() {
            for (name, value) in counts {
                row(h, &name.replace('_', " "), &text_of(value));
            }
        }
        h.raw("</tbody></table></section></div>");

        h.raw("<section id=\"pg-last-change\"><h2>Last access change</h2>");
        last_change(h, &status["last_change"]);
        h.raw("</section></div>");
    })
}

fn last_change(h: &mut Html, change: &Value) {
    if change.is_null() {
        h.raw("<p>No reload has changed the config since the start.</p>");
        return;
    }
    h.raw("<p>Generation <strong class=\"change-generation\">")
        .text(&text_of(&change["generation"]))
        .raw("</strong> at ")
        .text(&text_of(&change["time"]))
        .raw(": <strong class=\"gained\">")
        .text(&text_of(&change["gained"]))
        .raw(" gained</strong>, <strong class=\"lost\">")
        .text(&text_of(&change["lost"]))
        .raw(" lost</strong> (credential × resource × key). Config <code>")
        .text(
            &text_of(&change["previous_hash"])
                .chars()
                .take(HASH_SHOWN)
                .collect::<String>(),
        )
        .raw("</code> → <code>")
        .text(
            &text_of(&change["content_hash"])
                .chars()
                .take(HASH_SHOWN)
                .collect::<String>(),
        )
        .raw("</code>.</p>");
    for (name, label) in [
        ("routes_added", "routes added"),
        ("routes_removed", "routes removed"),
        ("routes_changed", "routes changed"),
    ] {
        if change[name].as_array().is_some_and(|list| !list.is_empty()) {
            h.raw("<p>")
                .text(label)
                .raw(": ")
                .text(&text_of(&change[name]))
                .raw("</p>");
        }
    }
    if let Some(tokens) = change["tokens"].as_array().filter(|list| !list.is_empty()) {
        h.raw("<p>tokens: ");
        for (index, token) in tokens.iter().enumerate() {
            if index > 0 {
                h.raw(", ");
            }
            h.text(&format!(
                "{} {}",
                text_of(&token["change"]),
                text_of(&token["token_id"])
            ));
        }
        h.raw("</p>");
    }
    let changes = change["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        return;
    }
    h.raw("<table class=\"changes\"><thead><tr><th></th><th>credential</th><th>resource</th><th>keys</th><th>routes</th><th>check</th></tr></thead><tbody>");
    for item in &changes {
        let gained = item["direction"] == "gained";
        h.raw(if gained {
            "<tr class=\"gained\"><td>+ gained</td><td>"
        } else {
            "<tr class=\"lost\"><td>− lost</td><td>"
        })
        .text(&text_of(&item["label"]))
        .raw("</td><td><code>")
        .text(&text_of(&item["resource"]))
        .raw("</code></td><td>")
        .text(&text_of(&item["keys"]))
        .raw("</td><td>")
        .text(&text_of(&item["routes"]))
        .raw("</td><td>");
        if let Some(example) = item["example"].as_str() {
            h.element("<code>", example, "</code>");
        }
        h.raw("</td></tr>");
    }
    h.raw("</tbody></table>");
    // `/status` keeps the first 20 changes of the record.
    if changes.len() >= 20 {
        h.raw("<p>The first 20 changes are shown; the decision log's config_change line has 100, and <code>permgate access diff</code> all of them.</p>");
    }
}

// ---- Traffic --------------------------------------------------------------------------------------

/// `/console/traffic`: requests, denials by code, route and reason, upstream errors, decision latency, and
/// the chart of the last minutes (drawn by the script).
pub fn traffic(state: &AdminState) -> String {
    let snapshot = state.gateway.snapshot();
    let totals = Totals::of(&state.gateway.metrics().gather());
    layout(&snapshot, "/console/traffic", "Traffic", |h| {
        h.raw("<section><h2>The last ten minutes</h2>")
            .raw("<canvas id=\"pg-chart\" width=\"960\" height=\"260\" role=\"img\" aria-label=\"requests and denials per second\">")
            .raw("The chart needs JavaScript; the tables below are the same counters.</canvas>")
            .raw("<p class=\"legend\"><span class=\"key requests\">requests/s</span> <span class=\"key denied\">denied/s</span> <span class=\"key upstream\">upstream errors/s</span> <span id=\"pg-latency\"></span></p>")
            .raw("<p class=\"hint\">From the gateway's own metrics, sampled every 2 s; the page follows live.</p></section>");
        h.raw("<div id=\"pg-live\" class=\"cards\"><section><h2>Since the start</h2><table class=\"facts\">");
        row(h, "requests", &format!("{}", totals.requests()));
        for (decision, count) in &totals.by_decision {
            row(h, &format!("decision {decision}"), &format!("{count}"));
        }
        row(
            h,
            "upstream errors",
            &format!("{}", totals.upstream_failures()),
        );
        for (kind, count) in &totals.upstream_errors {
            row(h, &format!("upstream error {kind}"), &format!("{count}"));
        }
        row(h, "decisions timed", &format!("{}", totals.decisions));
        if totals.decisions > 0 {
            row(
                h,
                "decision latency, mean",
                &format!(
                    "{:.1} µs",
                    totals.decision_seconds / totals.decisions as f64 * 1e6
                ),
            );
            for quantile in [0.5, 0.99] {
                if let Some(bound) = totals.decision_quantile(quantile) {
                    row(
                        h,
                        &format!("decision latency, p{}", quantile * 100.0),
                        &format!("≤ {} µs", bound * 1e6),
                    );
                }
            }
        }
        h.raw("</table></section>");
        counts_table(h, "Denials by status", "status", &totals.denied_by_code, 20);
        counts_table(h, "Denials by route", "route", &totals.denied_by_route, 20);
        let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
        if let Some(ring) = &state.console.denials {
            for line in ring.newest_first() {
                *reasons.entry(text_of(&line["reason"])).or_default() += 1.0;
            }
        }
        counts_table(
            h,
            "Denial reasons (the denials kept by Recent denials)",
            "reason",
            &reasons,
            20,
        );
        h.raw("</div>");
    })
}

fn counts_table(
    h: &mut Html,
    title: &str,
    what: &str,
    counts: &BTreeMap<String, f64>,
    limit: usize,
) {
    h.raw("<section><h2>").text(title).raw("</h2>");
    if counts.is_empty() {
        h.raw("<p>None.</p></section>");
        return;
    }
    let mut sorted: Vec<(&String, &f64)> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| a.0.cmp(b.0)));
    h.raw("<table><thead><tr><th>")
        .text(what)
        .raw("</th><th>count</th></tr></thead><tbody>");
    for (name, count) in sorted.iter().take(limit) {
        h.raw("<tr><td>")
            .text(name)
            .raw("</td><td class=\"number\">")
            .text(&format!("{count}"))
            .raw("</td></tr>");
    }
    h.raw("</tbody></table></section>");
}

// ---- Recent denials -------------------------------------------------------------------------------

fn matching_denials(state: &AdminState, query: &Query) -> Option<(usize, Vec<Value>)> {
    let ring = state.console.denials.as_ref()?;
    let reason = query.get("reason").map(str::to_lowercase);
    let route = query.get("route").map(str::to_lowercase);
    let token = query.get("token_id");
    let lines = ring.newest_first();
    let kept = lines.len();
    let shown = lines
        .into_iter()
        .filter(|line| {
            reason.as_ref().is_none_or(|wanted| {
                text_of(&line["reason"])
                    .to_lowercase()
                    .contains(wanted.as_str())
            }) && route.as_ref().is_none_or(|wanted| {
                text_of(&line["route"])
                    .to_lowercase()
                    .contains(wanted.as_str())
            }) && token.is_none_or(|wanted| line["token_id"].as_str() == Some(wanted))
        })
        .collect();
    Some((kept, shown))
}

/// `/console/api/denials`: the kept denials matching `reason`, `route` (case-insensitive substrings) and
/// `token_id` (exact), newest first, as decision-log lines.
pub fn denials_json(state: &AdminState, query: &Query) -> Value {
    match matching_denials(state, query) {
        Some((kept, shown)) => json!({
            "recording": true,
            "capacity": state.console.denials.as_ref().map(|ring| ring.capacity()),
            "kept": kept,
            "denials": shown,
        }),
        None => json!({"recording": false, "capacity": 0, "kept": 0, "denials": []}),
    }
}

/// `/console/denials`.
pub fn denials(state: &AdminState, query: &Query) -> String {
    let snapshot = state.gateway.snapshot();
    layout(&snapshot, "/console/denials", "Recent denials", |h| {
        h.raw("<form class=\"filters\" method=\"get\" action=\"/console/denials\">")
            .input("reason contains", "name=\"reason\"", query.text("reason"))
            .input("route contains", "name=\"route\"", query.text("route"))
            .input("token id", "name=\"token_id\"", query.text("token_id"))
            .raw("<button type=\"submit\">Filter</button> <a href=\"/console/denials\">clear</a></form>");
        h.raw("<div id=\"pg-live\">");
        match matching_denials(state, query) {
            None => {
                h.raw("<p>The decision log is off (<code>decision_log.sink: off</code>), and the denials shown here are the lines it writes: none are recorded.</p>");
            }
            Some((kept, shown)) => {
                h.raw("<p class=\"hint\">")
                    .count(shown.len() as u64)
                    .raw(" shown of the ")
                    .count(kept as u64)
                    .raw(" denials kept (the last ")
                    .count(
                        state
                            .console
                            .denials
                            .as_ref()
                            .map_or(0, |ring| ring.capacity() as u64),
                    )
                    .raw(", newest first; the page follows live). Shadow-mode would-be denials are listed as <code>shadow_allow</code>.</p>");
                if !shown.is_empty() {
                    h.raw("<div class=\"scroll\"><table class=\"denials\"><thead><tr><th>time</th><th>request</th><th>status</th><th>route</th><th>reason</th><th>token id</th><th>principal</th><th>resource</th><th>policies</th><th>client</th><th></th></tr></thead><tbody>");
                    for line in &shown {
                        denial_row(h, line);
                    }
                    h.raw("</tbody></table></div>");
                }
            }
        }
        h.raw("</div>");
    })
}

fn denial_row(h: &mut Html, line: &Value) {
    h.raw("<tr class=\"denial\"><td>")
        .text(&text_of(&line["time"]))
        .raw("</td><td class=\"request\"><code>")
        .text(&format!(
            "{} {}",
            text_of(&line["method"]),
            text_of(&line["path"])
        ))
        .raw("</code></td><td>")
        .text(&format!(
            "{} {} ({})",
            text_of(&line["status"]),
            text_of(&line["code"]),
            text_of(&line["decision"])
        ))
        .raw("</td><td>")
        .text(&text_of(&line["route"]))
        .raw("</td><td class=\"reason\">")
        .text(&text_of(&line["reason"]))
        .raw("</td><td>");
    if let Some(token) = line["token_id"].as_str() {
        h.link(
            &url_with_query("/console/who-can", &[("token_id", token)]),
            token,
        );
    } else {
        h.raw("—");
    }
    h.raw("</td><td>")
        .text(&text_of(&line["principal"]))
        .raw("</td><td><code>")
        .text(&text_of(&line["resource"]))
        .raw("</code>")
        .raw("</td><td>")
        .text(&text_of(&line["policies"]))
        .raw("</td><td>")
        .text(&text_of(&line["client_ip"]))
        .raw("</td><td>");
    // The same request again, by the Why denied? form: as the same token, or the legacy key's user.
    if let (Some(method), Some(path)) = (line["method"].as_str(), line["path"].as_str()) {
        let token = line["token_id"].as_str().unwrap_or("");
        let user = match (token, line["principal"].as_str()) {
            ("", Some(principal)) => principal.strip_prefix("user:").unwrap_or(""),
            _ => "",
        };
        let href = url_with_query(
            "/console/why-denied",
            &[
                ("method", method),
                ("path", path),
                ("token_id", token),
                ("user", user),
                ("ip", line["client_ip"].as_str().unwrap_or("")),
                ("at", line["time"].as_str().unwrap_or("")),
            ],
        );
        h.link(&href, "why?");
    }
    h.raw("</td></tr>");
}

// ---- Routes ---------------------------------------------------------------------------------------

fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Account { param } => format!("account {{{param}}}"),
        Scope::Zone { param } => format!("zone {{{param}}}"),
        Scope::Child {
            kind,
            param,
            parent_param,
            ..
        } => format!("{kind} {{{param}}} of {{{parent_param}}}"),
        Scope::User => "user".into(),
        Scope::Any => "any".into(),
        Scope::None => "none".into(),
    }
}

fn keys_of(snapshot: &Snapshot, route: &Route) -> (&'static str, Vec<String>) {
    let (mode, keys): (&str, &[crate::policy::KeyId]) = match &route.requirement {
        Requirement::None => ("none", &[]),
        Requirement::AllOf(keys) => ("all of", keys),
        Requirement::AnyOf(keys) => ("any of", keys),
    };
    (
        mode,
        keys.iter()
            .map(|key| snapshot.policy.keys.name(*key).to_string())
            .collect(),
    )
}

fn route_json(snapshot: &Snapshot, route: &Route) -> Value {
    let (mode, keys) = keys_of(snapshot, route);
    json!({
        "id": &*route.label,
        "methods": &*route.methods,
        "path": &*route.pattern,
        "scope": scope_text(&route.scope),
        "keys_mode": mode,
        "keys": keys,
        "principals": route.principals.to_string(),
        "public": route.public,
        "handler": route.handler.map(|_| "verify_token"),
        "opaque": route.opaque.iter().map(|param| &*param.name).collect::<Vec<_>>(),
        "principal_refusal": route.principal_refusal.as_ref().map(|refusal| json!({
            "status": refusal.status, "code": refusal.code, "message": &*refusal.message,
        })),
    })
}

fn matching_routes<'s>(snapshot: &'s Snapshot, query: &Query) -> Vec<&'s Route> {
    let wanted = query.get("q").map(str::to_lowercase);
    snapshot
        .routes
        .routes()
        .iter()
        .filter(|route| {
            wanted.as_ref().is_none_or(|wanted| {
                let (_, keys) = keys_of(snapshot, route);
                route.label.to_lowercase().contains(wanted.as_str())
                    || route.pattern.to_lowercase().contains(wanted.as_str())
                    || route.methods.to_lowercase().contains(wanted.as_str())
                    || keys
                        .iter()
                        .any(|key| key.to_lowercase().contains(wanted.as_str()))
            })
        })
        .collect()
}

/// `/console/api/routes`: the routes matching `q` (id, path, methods or a key; case-insensitive).
pub fn routes_json(state: &AdminState, query: &Query) -> Value {
    let snapshot = state.gateway.snapshot();
    let routes = matching_routes(&snapshot, query);
    json!({
        "total": snapshot.routes.len(),
        "routes": routes.iter().map(|route| route_json(&snapshot, route)).collect::<Vec<_>>(),
    })
}

/// `/console/routes`.
pub fn routes(state: &AdminState, query: &Query) -> String {
    let snapshot = state.gateway.snapshot();
    layout(&snapshot, "/console/routes", "Routes", |h| {
        h.raw("<form class=\"filters\" method=\"get\" action=\"/console/routes\">")
            .input(
                "search id, path, method or key",
                "type=\"search\" name=\"q\"",
                query.text("q"),
            )
            .raw("<button type=\"submit\">Search</button> <a href=\"/console/routes\">all</a></form>");
        let routes = matching_routes(&snapshot, query);
        h.raw("<div id=\"pg-live\"><p class=\"hint\">")
            .count(routes.len() as u64)
            .raw(" of ")
            .count(snapshot.routes.len() as u64)
            .raw(" routes.</p><table class=\"routes\"><thead><tr><th>id</th><th>method</th><th>path</th><th>scope</th><th>keys</th><th>who may call</th><th>notes</th></tr></thead><tbody>");
        for route in routes {
            let (mode, keys) = keys_of(&snapshot, route);
            h.raw("<tr><td>")
                .text(&route.label)
                .raw("</td><td>")
                .text(&route.methods)
                .raw("</td><td><code>")
                .text(&route.pattern)
                .raw("</code></td><td>")
                .text(&scope_text(&route.scope))
                .raw("</td><td>");
            if keys.is_empty() {
                h.raw("—");
            } else {
                h.text(mode).raw(":<ul class=\"keys\">");
                for key in &keys {
                    h.element("<li><code>", key, "</code></li>");
                }
                h.raw("</ul>");
            }
            h.raw("</td><td>");
            if route.public {
                h.raw("anyone (public: no credential)");
            } else {
                h.text(&route.principals.to_string());
            }
            h.raw("</td><td>");
            let mut notes = Vec::new();
            if route.handler.is_some() {
                notes.push("answered by the gateway (verify_token)".to_string());
            }
            if !route.opaque.is_empty() {
                notes.push(format!(
                    "opaque: {}",
                    route
                        .opaque
                        .iter()
                        .map(|param| &*param.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(refusal) = &route.principal_refusal {
                notes.push(format!(
                    "other kinds: {}/{} {}",
                    refusal.status, refusal.code, refusal.message
                ));
            }
            h.text(&notes.join("; ")).raw("</td></tr>");
        }
        h.raw("</tbody></table></div>");
    })
}

// ---- Who can do what ------------------------------------------------------------------------------

/// `/console/api/explain`: `permgate access explain --json` for `token_id` or `user`, with `at`,
/// `blocked` and `limit` as the CLI takes them.
pub fn explain_document(state: &AdminState, query: &Query) -> Result<Value, String> {
    let now = cli::time_arg(query.get("at"))?;
    let snapshot = state.gateway.snapshot();
    let known =
        cli::access::credential_named(&snapshot.policy, query.get("token_id"), query.get("user"))
            .map_err(|message| {
            message.replace("--token, --token-id or --user", "a token id or a user")
        })?;
    let limit = match query.get("limit") {
        Some(text) => text
            .parse()
            .map_err(|_| format!("limit {text:?} is not a number"))?,
        None => 50,
    };
    let explanation = analysis::explain(
        &snapshot,
        known,
        ExplainOptions {
            now,
            limit,
            blocked: query.flag("blocked"),
            routes: true,
        },
    )
    .ok_or("the credential is not in this config")?;
    Ok(cli::access::explain_json(
        &explanation,
        snapshot.routes.routes(),
    ))
}

/// `/console/api/who-can`: `permgate access who-can --json` for `method` and `path`, or `key` and
/// `resource`, with `at` and `blocked`.
pub fn who_can_document(state: &AdminState, query: &Query) -> Result<Value, String> {
    let now = cli::time_arg(query.get("at"))?;
    let snapshot = state.gateway.snapshot();
    let blocked = query.flag("blocked");
    let answer = match (
        query.get("key"),
        query.get("resource"),
        query.get("method"),
        query.get("path"),
    ) {
        (Some(key), Some(resource), _, _) => {
            analysis::who_can_key(&snapshot, key, resource, now, blocked)?
        }
        (_, _, Some(method), Some(path)) => {
            analysis::who_can_route(&snapshot, method, path, now, blocked)?
        }
        _ => return Err("give a method and a path, or a key and a resource".into()),
    };
    Ok(cli::access::who_can_json(
        &answer,
        snapshot.routes.routes(),
        now,
    ))
}

fn credential_label(credential: &Value) -> String {
    match (
        credential["token_id"].as_str(),
        credential["owner"]["email"].as_str(),
    ) {
        (Some(id), _) => format!("token {id}"),
        (None, Some(email)) => format!("legacy key of {email}"),
        (None, None) => format!("legacy key of user {}", text_of(&credential["owner"]["id"])),
    }
}

fn credential_link(h: &mut Html, credential: &Value) {
    let label = credential_label(credential);
    let href = match credential["token_id"].as_str() {
        Some(id) => url_with_query("/console/who-can", &[("token_id", id)]),
        None => url_with_query(
            "/console/who-can",
            &[("user", credential["owner"]["id"].as_str().unwrap_or(""))],
        ),
    };
    h.link(&href, &label);
}

fn owner_text(credential: &Value) -> String {
    let owner = &credential["owner"];
    match owner["email"].as_str() {
        Some(email) => format!(
            "{} {} ({email})",
            text_of(&owner["kind"]),
            text_of(&owner["id"])
        ),
        None => format!("{} {}", text_of(&owner["kind"]), text_of(&owner["id"])),
    }
}

fn conditions_text(usability: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(nets) = usability["ip_in"].as_array() {
        parts.push(format!("from {}", text_of(&Value::Array(nets.clone()))));
    }
    if let Some(nets) = usability["ip_not_in"]
        .as_array()
        .filter(|nets| !nets.is_empty())
    {
        parts.push(format!("not from {}", text_of(&Value::Array(nets.clone()))));
    }
    if let Some(at) = usability["not_before"].as_str() {
        parts.push(format!("not before {at}"));
    }
    if let Some(at) = usability["expires_on"].as_str() {
        parts.push(format!("expires on {at}"));
    }
    parts.join("; ")
}

/// `/console/who-can`: a credential's effective access, or who can call a route or hold a key.
pub fn who_can(state: &AdminState, query: &Query) -> String {
    let snapshot = state.gateway.snapshot();
    layout(&snapshot, "/console/who-can", "Who can do what", |h| {
        h.raw("<div class=\"forms\">");
        h.raw(
            "<form method=\"get\" action=\"/console/who-can\"><h2>What can a credential do?</h2>",
        )
        .input("token id", TOKEN_ID_INPUT, query.text("token_id"))
        .input(USER_LABEL, "name=\"user\"", query.text("user"));
        at_and_blocked(h, query);
        h.raw("<button type=\"submit\">Explain</button></form>");
        h.raw("<form method=\"get\" action=\"/console/who-can\"><h2>Who can call a route?</h2>")
            .input("method", "name=\"method\" size=\"7\"", query.text("method"))
            .input(
                "path",
                "name=\"path\" size=\"48\" placeholder=\"/client/v4/zones/…/dns_records\"",
                query.text("path"),
            );
        at_and_blocked(h, query);
        h.raw("<button type=\"submit\">Who can?</button></form>");
        h.raw("<form method=\"get\" action=\"/console/who-can\"><h2>Who holds a key on a resource?</h2>")
            .input("key", "name=\"key\"", query.text("key"))
            .input(
                "resource",
                "name=\"resource\" size=\"48\" placeholder=\"com.cloudflare.api.account.zone.…\"",
                query.text("resource"),
            );
        at_and_blocked(h, query);
        h.raw("<button type=\"submit\">Who holds it?</button></form></div>");
        token_datalist(h, &snapshot);

        h.raw("<div id=\"pg-live\">");
        if query.get("token_id").is_some() || query.get("user").is_some() {
            match explain_document(state, query) {
                Ok(document) => explanation(h, &document),
                Err(message) => error_box(h, &message),
            }
        } else if (query.get("method").is_some() && query.get("path").is_some())
            || (query.get("key").is_some() && query.get("resource").is_some())
        {
            match who_can_document(state, query) {
                Ok(document) => holders(h, &document),
                Err(message) => error_box(h, &message),
            }
        } else {
            h.raw("<p class=\"hint\">The answers are <code>permgate access explain</code>'s and <code>permgate access who-can</code>'s, computed on the config serving now. Token ids and users only: never a secret.</p>");
        }
        h.raw("</div>");
    })
}

/// The token-id input of the forms that take one: it offers the datalist of [`token_datalist`].
const TOKEN_ID_INPUT: &str = "name=\"token_id\" list=\"pg-token-ids\" autocomplete=\"off\"";

/// The label of the forms' user input.
const USER_LABEL: &str = "or user (legacy key), id or email";

/// The token ids (and names) the forms' token-id input offers: the first 2,000 tokens.
fn token_datalist(h: &mut Html, snapshot: &Snapshot) {
    h.raw("<datalist id=\"pg-token-ids\">");
    for token in snapshot.policy.tokens.iter().take(2000) {
        h.raw("<option value=\"")
            .text(&token.id)
            .raw("\">")
            .text(&token.name)
            .raw("</option>");
    }
    h.raw("</datalist>");
}

fn at_and_blocked(h: &mut Html, query: &Query) {
    h.input("at (RFC 3339; empty: now)", "name=\"at\"", query.text("at"))
        .raw("<label class=\"check\"><input type=\"checkbox\" name=\"blocked\" value=\"on\"");
    if query.flag("blocked") {
        h.raw(" checked");
    }
    h.raw("> also what is held but stopped</label>");
}

fn explanation(h: &mut Html, document: &Value) {
    let credential = &document["credential"];
    h.raw("<section class=\"explain\"><h2>")
        .text(&credential_label(credential))
        .raw("</h2><table class=\"facts\">");
    row(h, "kind", &text_of(&credential["kind"]));
    if let Some(name) = credential["token_name"].as_str() {
        row(h, "name", name);
    }
    row(h, "owner", &owner_text(credential));
    row(h, "at", &text_of(&document["at"]));
    let usability = &document["usability"];
    row(
        h,
        "usable",
        &match usability["unusable_reason"].as_str() {
            Some(reason) => format!("no — {reason}; nothing is granted"),
            None => "yes".into(),
        },
    );
    let conditions = conditions_text(usability);
    if !conditions.is_empty() {
        row(h, "holds only", &conditions);
    }
    let counts = &document["counts"];
    row(
        h,
        "access",
        &format!(
            "{} account(s), {} zone(s), {} user(s){}",
            text_of(&counts["accounts"]),
            text_of(&counts["zones"]),
            text_of(&counts["users"]),
            if document["truncated"] == true {
                " — the first ones listed (limit)"
            } else {
                ""
            }
        ),
    );
    h.raw("</table>");
    let resources = document["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !resources.is_empty() {
        h.raw("<table class=\"resources\"><thead><tr><th>resource</th><th>selected by</th><th>keys (and the policies that grant them)</th><th>routes</th></tr></thead><tbody>");
        for resource in &resources {
            h.raw("<tr><td><strong>")
                .text(&text_of(&resource["name"]))
                .raw("</strong><br><code>")
                .text(&text_of(&resource["resource"]))
                .raw("</code></td><td>")
                .text(&text_of(&resource["selected_by"]))
                .raw("</td><td><ul class=\"keys\">");
            if resource["every_key"] == true {
                h.raw(
                    "<li>every key (a legacy key acts as its user on the user's own resource)</li>",
                );
            }
            for key in resource["keys"].as_array().into_iter().flatten() {
                let mut why = Vec::new();
                if let Some(policy) = key["token_policy"].as_str() {
                    why.push(format!("token policy {policy}"));
                }
                if let Some(policy) = key["member_policy"].as_str() {
                    why.push(format!("member policy {policy}"));
                }
                h.raw("<li><code>")
                    .text(&text_of(&key["key"]))
                    .raw("</code> <span class=\"why\">")
                    .text(&why.join(" + "))
                    .raw("</span></li>");
            }
            for blocked in resource["blocked"].as_array().into_iter().flatten() {
                h.raw("<li class=\"blocked\"><code>")
                    .text(&text_of(&blocked["key"]))
                    .raw("</code> blocked: ")
                    .text(&text_of(&blocked["reason"]))
                    .raw("</li>");
            }
            h.raw("</ul></td><td><ul class=\"keys\">");
            for route in resource["routes"].as_array().into_iter().flatten() {
                h.raw("<li>")
                    .text(&format!(
                        "{} {} [{}]",
                        text_of(&route["methods"]),
                        text_of(&route["path"]),
                        text_of(&route["id"])
                    ))
                    .raw("</li>");
            }
            h.raw("</ul></td></tr>");
        }
        h.raw("</tbody></table>");
    }
    let unscoped = document["unscoped_routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !unscoped.is_empty() {
        h.raw("<h3>Routes that name no resource</h3><ul>");
        for route in &unscoped {
            h.raw("<li>")
                .text(&format!(
                    "{} {} [{}]",
                    text_of(&route["methods"]),
                    text_of(&route["path"]),
                    text_of(&route["id"])
                ))
                .raw("</li>");
        }
        h.raw("</ul>");
    }
    let blocked = document["blocked"].as_array().cloned().unwrap_or_default();
    if !blocked.is_empty() {
        h.raw("<h3>Selected but not usable</h3><ul>");
        for item in &blocked {
            h.raw("<li>")
                .text(&format!(
                    "{} — {}",
                    text_of(&item["what"]),
                    text_of(&item["reason"])
                ))
                .raw("</li>");
        }
        h.raw("</ul>");
    }
    h.raw("</section>");
}

fn holders(h: &mut Html, document: &Value) {
    h.raw("<section class=\"who-can\"><table class=\"facts\">");
    if !document["route"].is_null() {
        let route = &document["route"];
        row(
            h,
            "route",
            &format!(
                "{} {} [{}]",
                text_of(&route["methods"]),
                text_of(&route["path"]),
                text_of(&route["id"])
            ),
        );
    }
    row(h, "resource", &text_of(&document["resource"]));
    row(h, "at", &text_of(&document["at"]));
    h.raw("</table>");
    for (name, title) in [
        ("allowed", "Allowed"),
        ("blocked", "Holding it but stopped"),
    ] {
        let list = document[name].as_array().cloned().unwrap_or_default();
        if name == "blocked" && list.is_empty() {
            continue;
        }
        h.raw("<h2>")
            .text(title)
            .raw(" (")
            .count(list.len() as u64)
            .raw(")</h2>");
        if list.is_empty() {
            h.raw("<p>Nobody.</p>");
            continue;
        }
        h.raw("<table class=\"holders\" data-list=\"")
            .text(name)
            .raw(
                "\"><thead><tr><th>credential</th><th>kind</th><th>owner</th><th>policies</th><th>",
            )
            .raw(if name == "allowed" {
                "conditions"
            } else {
                "stopped because"
            })
            .raw("</th></tr></thead><tbody>");
        for holder in &list {
            let credential = &holder["credential"];
            h.raw("<tr><td class=\"credential\">");
            credential_link(h, credential);
            if let Some(name) = credential["token_name"].as_str() {
                h.raw("<br><span class=\"why\">").text(name).raw("</span>");
            }
            h.raw("</td><td>")
                .text(&text_of(&credential["kind"]))
                .raw("</td><td>")
                .text(&owner_text(credential))
                .raw("</td><td>")
                .text(&text_of(&holder["policies"]))
                .raw("</td><td>");
            if name == "allowed" {
                h.text(&conditions_text(&holder["usability"]));
            } else {
                h.text(&text_of(&holder["reason"]));
            }
            h.raw("</td></tr>");
        }
        h.raw("</tbody></table>");
    }
    h.raw("</section>");
}

// ---- Why denied? ----------------------------------------------------------------------------------

/// `/console/api/check`: `permgate check --json` for `method` and `path` as `token_id` or `user` (or no
/// credential), from client `ip` (default 127.0.0.1) at `at` (default now).
pub fn check_document(state: &AdminState, query: &Query) -> Result<Value, String> {
    let (Some(method), Some(path)) = (query.get("method"), query.get("path")) else {
        return Err("give a method and a path".into());
    };
    let now = cli::time_arg(query.get("at"))?;
    let ip: IpAddr = match query.get("ip") {
        Some(text) => text
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address"))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let snapshot = state.gateway.snapshot();
    let headers = HeaderMap::new();
    let facts = Facts {
        method,
        target: path,
        headers: &headers,
        peer_ip: ip,
        now,
    };
    let verdict =
        cli::check::decide_named(&snapshot, &facts, query.get("token_id"), query.get("user"))?;
    serde_json::from_str(&cli::check::render_json(&verdict)).map_err(|error| error.to_string())
}

/// `/console/why-denied`.
pub fn why_denied(state: &AdminState, query: &Query) -> String {
    let snapshot = state.gateway.snapshot();
    layout(&snapshot, "/console/why-denied", "Why denied?", |h| {
        h.raw("<form class=\"check\" method=\"get\" action=\"/console/why-denied\">")
            .input(
                "method",
                "name=\"method\" size=\"7\"",
                query.get("method").unwrap_or("GET"),
            )
            .input(
                "path",
                "name=\"path\" size=\"56\" placeholder=\"/client/v4/zones/…/dns_records\"",
                query.text("path"),
            )
            .input("token id", TOKEN_ID_INPUT, query.text("token_id"))
            .input(USER_LABEL, "name=\"user\"", query.text("user"))
            .input(
                "client IP",
                "name=\"ip\"",
                query.get("ip").unwrap_or("127.0.0.1"),
            )
            .input(
                "time (RFC 3339; empty: now)",
                "name=\"at\"",
                query.text("at"),
            )
            .raw("<button type=\"submit\">Decide</button></form>");
        token_datalist(h, &snapshot);
        h.raw("<div id=\"pg-live\">");
        if query.get("path").is_none() {
            h.raw("<p class=\"hint\">The same decision as <code>permgate check --token-id ID</code> (or <code>--user</code>) on the config serving now: named by token id, never by a secret.</p>");
        } else {
            match check_document(state, query) {
                Err(message) => error_box(h, &message),
                Ok(document) => {
                    let allowed = document["decision"] == "allow";
                    h.raw(if allowed {
                        "<p class=\"verdict good\" id=\"pg-decision\">allow</p>"
                    } else {
                        "<p class=\"verdict bad\" id=\"pg-decision\">deny</p>"
                    });
                    h.raw("<table class=\"facts\">");
                    for name in [
                        "status",
                        "code",
                        "message",
                        "reason",
                        "path",
                        "route",
                        "principal",
                        "token_id",
                        "account",
                        "resource",
                        "policies",
                        "client_ip",
                    ] {
                        row(h, &name.replace('_', " "), &text_of(&document[name]));
                    }
                    h.raw("</table>");
                }
            }
        }
        h.raw("</div>");
    })
}

// ---- Not found ------------------------------------------------------------------------------------

/// A console URL that is no page.
pub fn not_found(state: &AdminState, path: &str) -> String {
    let snapshot = state.gateway.snapshot();
    layout(&snapshot, "", "Not found", |h| {
        h.raw("<p>No console page at <code>")
            .text(path)
            .raw("</code>. The pages are linked above.</p>");
    })
}
