//! `permgate access replay`: re-decide the requests of a decision log under another config, and report the
//! verdicts that would change, grouped by route and principal.
//!
//! A line holds no secret, so the credential is found by what the line names: its `token_id` (also logged
//! for a token refused as disabled, expired, not yet valid or outside its IP condition), or for a legacy key
//! its `principal` (`user:<id>` without a token). The request is decided by [`pipeline::decide_as`] with the
//! line's method, canonical path, client IP and time. Lines whose credential the log cannot name (none, a
//! malformed one, an unknown secret) and lines refused before a decision keep their verdict: they are counted
//! as not replayable.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use http::HeaderMap;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pipeline::{self, Facts};
use crate::policy::Known;
use crate::snapshot::Snapshot;

/// The members of a decision-log line that replay reads.
#[derive(Debug, Deserialize)]
struct LoggedDecision<'a> {
    #[serde(borrow)]
    time: &'a str,
    #[serde(borrow, default)]
    request_id: Option<&'a str>,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow)]
    path: Option<&'a str>,
    #[serde(borrow)]
    route: Option<&'a str>,
    #[serde(borrow)]
    principal: Option<&'a str>,
    #[serde(borrow)]
    token_id: Option<&'a str>,
    #[serde(borrow)]
    decision: &'a str,
    #[serde(borrow)]
    client_ip: &'a str,
}

/// A group of changed verdicts: one route, one credential, one change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeKey {
    /// The route under the new config (the logged one when no route matches now).
    pub route: String,
    /// `token <id>` or `legacy key of user <id>`.
    pub credential: String,
    /// `allow -> deny` and so on.
    pub change: String,
}

/// One example of a group.
#[derive(Debug, Clone)]
pub struct Example {
    pub time: String,
    pub request_id: Option<String>,
    pub method: String,
    pub path: String,
    /// Why the new config decides as it does.
    pub reason: String,
    pub new_code: u32,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub lines: u64,
    pub replayed: u64,
    pub unchanged: u64,
    pub changed: u64,
    /// Lines the log cannot name a credential for, or refused before any decision.
    pub not_replayable: u64,
    /// Lines that are not decision-log JSON.
    pub malformed: u64,
    pub groups: BTreeMap<ChangeKey, (u64, Example)>,
}

/// Replays lines against one config.
pub struct Replayer<'s> {
    snapshot: &'s Snapshot,
    tokens: HashMap<&'s str, Known>,
    users: HashMap<&'s str, Known>,
    report: ReplayReport,
}

impl<'s> Replayer<'s> {
    /// A replayer for `snapshot` (indexes its token ids and users once).
    pub fn new(snapshot: &'s Snapshot) -> Self {
        let policy = &snapshot.policy;
        let tokens = super::token_ids(policy);
        let users = policy
            .users
            .iter()
            .enumerate()
            .filter_map(|(index, user)| {
                u32::try_from(index)
                    .ok()
                    .map(|index| (&*user.id, Known::LegacyKey(index)))
            })
            .collect();
        Self {
            snapshot,
            tokens,
            users,
            report: ReplayReport::default(),
        }
    }

    /// Re-decides one log line.
    pub fn replay_line(&mut self, line: &str) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        self.report.lines += 1;
        let Ok(logged) = serde_json::from_str::<LoggedDecision<'_>>(line) else {
            self.report.malformed += 1;
            return;
        };
        let Some(path) = logged.path else {
            self.report.not_replayable += 1;
            return;
        };
        let (known, credential) = match (logged.token_id, logged.principal) {
            (Some(id), _) => (self.tokens.get(id).copied(), format!("token {id}")),
            (None, Some(principal)) => match principal.strip_prefix("user:") {
                Some(user) => (
                    self.users.get(user).copied(),
                    format!("legacy key of user {user}"),
                ),
                None => {
                    self.report.not_replayable += 1;
                    return;
                }
            },
            (None, None) => {
                self.report.not_replayable += 1;
                return;
            }
        };
        let (Ok(time), Ok(client_ip)) = (
            OffsetDateTime::parse(logged.time, &Rfc3339),
            logged.client_ip.parse::<IpAddr>(),
        ) else {
            self.report.malformed += 1;
            return;
        };
        self.report.replayed += 1;
        let headers = HeaderMap::new();
        let facts = Facts {
            method: logged.method,
            target: path,
            headers: &headers,
            peer_ip: client_ip,
            now: time.unix_timestamp(),
        };
        // A credential the new config no longer has is refused as an unknown one would be.
        let (allowed, code, reason, route) = match known {
            Some(known) => {
                let verdict = pipeline::decide_as(self.snapshot, &facts, known);
                let reason = match &verdict.outcome {
                    Ok(()) => "allowed".to_string(),
                    Err(refusal) => refusal.reason(),
                };
                (
                    verdict.allowed(),
                    verdict.code(),
                    reason,
                    verdict.route.map(|route| route.label.to_string()),
                )
            }
            None => (
                false,
                crate::answer::Answer::for_denial(&crate::policy::Denial::TokenUnknown).code,
                format!("{credential} is not in this config"),
                None,
            ),
        };
        // `shadow_allow` was forwarded, but the verdict was a denial.
        let was_allowed = logged.decision == "allow";
        if was_allowed == allowed {
            self.report.unchanged += 1;
            return;
        }
        self.report.changed += 1;
        let key = ChangeKey {
            route: route
                .or_else(|| logged.route.map(str::to_string))
                .unwrap_or_else(|| "(no route)".into()),
            credential,
            change: format!(
                "{} -> {}",
                if was_allowed { "allow" } else { "deny" },
                if allowed { "allow" } else { "deny" }
            ),
        };
        let entry = self.report.groups.entry(key).or_insert_with(|| {
            (
                0,
                Example {
                    time: logged.time.to_string(),
                    request_id: logged.request_id.map(str::to_string),
                    method: logged.method.to_string(),
                    path: path.to_string(),
                    reason,
                    new_code: code,
                },
            )
        });
        entry.0 += 1;
    }

    /// The report so far.
    pub fn finish(self) -> ReplayReport {
        self.report
    }
}
