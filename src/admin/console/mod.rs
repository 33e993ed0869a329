//! The read-only web console on the admin listener (`/console/`; `admin.console: off` turns it off, and
//! every console URL is then 404).
//!
//! Server-rendered pages, one URL each, linked with ordinary links (a crawler reaches every page; nothing
//! needs JavaScript to be read): Overview, Traffic, Recent denials, Routes, Who can do what, Why denied?.
//! One small external script (`/console/assets/console.js`) does the live parts: it polls
//! `/console/api/live` every two seconds, keeps the generation and content hash in the header current and,
//! when the config (or, on Recent denials, the newest denial) changes, re-fetches the page and swaps its
//! `#pg-live` part in place; on Traffic it draws the chart from `/console/api/traffic`.
//!
//! The answers come from the same code as the command line: Who can do what runs
//! [`crate::analysis::explain()`] and [`crate::analysis::who_can_route`]/[`crate::analysis::who_can_key`]
//! and renders `permgate access … --json`'s documents ([`crate::cli::access::explain_json`],
//! [`crate::cli::access::who_can_json`]); Why denied? runs [`crate::cli::check::decide_named`] (the
//! pipeline's `decide_as`, as `permgate check --token-id/--user`) against the loaded snapshot. Forms take
//! token ids and users, never a secret.
//!
//! Security: every value is escaped ([`html`]); every answer carries a strict Content-Security-Policy
//! (`default-src 'self'; frame-ancestors 'none'`, so no inline script or style runs), `nosniff` and
//! `Referrer-Policy: no-referrer`; nothing shows a secret or any part of a secret's hash (the snapshot's
//! hashes are never read here; the denials are decision-log lines, which hold none).

pub mod html;
mod pages;
pub mod traffic;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use super::AdminState;
use crate::decision_log::DenialRing;
use html::query_pairs;
use traffic::History;

/// What the console keeps besides the gateway's state: the denial ring and the traffic history.
#[derive(Debug)]
pub struct ConsoleState {
    /// The last denials, fed by the decision log's writer (none when the log is off).
    pub denials: Option<Arc<DenialRing>>,
    /// The sampled traffic counters.
    pub traffic: Arc<History>,
}

/// The console's stylesheet, script and icon, compiled into the binary.
const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// A request's query, decoded.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// The decoded pairs of `query`.
    pub fn parse(query: Option<&str>) -> Self {
        Self(query.map(query_pairs).unwrap_or_default())
    }

    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The value of `name`, or `""`.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Whether a checkbox `name` is on.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("on" | "1" | "true" | "yes"))
    }
}

/// The answer to a console URL (`path` starts with `/console`).
pub fn answer(state: &AdminState, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let query = Query::parse(query);
    match path {
        "/console" => redirect("/console/"),
        "/console/" => html(StatusCode::OK, pages::overview(state)),
        "/console/traffic" => html(StatusCode::OK, pages::traffic(state)),
        "/console/denials" => html(StatusCode::OK, pages::denials(state, &query)),
        "/console/routes" => html(StatusCode::OK, pages::routes(state, &query)),
        "/console/who-can" => html(StatusCode::OK, pages::who_can(state, &query)),
        "/console/why-denied" => html(StatusCode::OK, pages::why_denied(state, &query)),
        "/console/assets/console.css" => asset("text/css; charset=utf-8", CSS),
        "/console/assets/console.js" => asset("text/javascript; charset=utf-8", JS),
        "/console/assets/favicon.svg" => asset("image/svg+xml", ICON),
        "/console/api/live" => json(StatusCode::OK, &live(state)),
        "/console/api/traffic" => {
            let totals = traffic::Totals::of(&state.gateway.metrics().gather());
            json(StatusCode::OK, &state.console.traffic.to_json(&totals))
        }
        "/console/api/denials" => json(StatusCode::OK, &pages::denials_json(state, &query)),
        "/console/api/routes" => json(StatusCode::OK, &pages::routes_json(state, &query)),
        "/console/api/who-can" => api(pages::who_can_document(state, &query)),
        "/console/api/explain" => api(pages::explain_document(state, &query)),
        "/console/api/check" => api(pages::check_document(state, &query)),
        _ => html(StatusCode::NOT_FOUND, pages::not_found(state, path)),
    }
}

/// What the script polls: the serving generation and hash, and stamps that change when the page's live
/// part should be fetched again.
fn live(state: &AdminState) -> Value {
    let snapshot = state.gateway.snapshot();
    let (last_reload_at, last_change_generation, in_sync) = match &state.reloader {
        Some(reloader) => {
            let status = reloader.status();
            (
                status
                    .last
                    .as_ref()
                    .map(|last| super::rfc3339(last.at))
                    .unwrap_or_default(),
                status
                    .last_change
                    .as_ref()
                    .and_then(|change| change["generation"].as_u64()),
                status.error.is_none(),
            )
        }
        None => (String::new(), None, true),
    };
    let newest_denial = state
        .console
        .denials
        .as_ref()
        .and_then(|ring| ring.newest_first().into_iter().next())
        .map(|line| {
            format!(
                "{} {}",
                line.get("time").and_then(Value::as_str).unwrap_or(""),
                line.get("request_id").and_then(Value::as_str).unwrap_or("")
            )
        });
    json!({
        "generation": snapshot.generation,
        "content_hash": snapshot.content_hash,
        "last_reload_at": last_reload_at,
        "last_change_generation": last_change_generation,
        "in_sync": in_sync,
        "newest_denial": newest_denial,
    })
}

/// The security headers of every admin answer.
pub fn secure(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(page)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Compiled in: a new binary may change them, so revalidate.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn redirect(to: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    response
}

/// The console's redirect from `/`.
pub fn redirect_root() -> Response<Full<Bytes>> {
    redirect("/console/")
}

fn api(result: Result<Value, String>) -> Response<Full<Bytes>> {
    match result {
        Ok(document) => json(StatusCode::OK, &document),
        Err(message) => json(StatusCode::BAD_REQUEST, &json!({"error": message})),
    }
}

fn json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    super::json(status, value)
}
