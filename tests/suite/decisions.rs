//! Table-driven decision cases: every `tests/cases/*.yaml` file names a config and lists requests with the
//! decision the SPEC (§1–§5) says they get. Each request is decided exactly as `permgate check` decides it:
//! load the config, put the credential in the headers, call `pipeline::decide`.
//!
//! The cases are written from the SPEC, not from the implementation. Every failing case is reported at the
//! end (file, name, expected, got), not only the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};
use permgate::pipeline::{Facts, decide};
use permgate::snapshot::Snapshot;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The fewest cases the corpus must hold (so that a file that silently stops loading is noticed).
const MIN_CASES: usize = 90;

/// One `tests/cases/*.yaml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// The config's `gateway.yaml`, relative to the case file.
    config: String,
    /// The default time of the cases (RFC 3339).
    at: String,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: Request,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    /// The raw request target (path and query), exactly as a client sends it.
    path: String,
    /// A token secret, sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    token: Option<String>,
    /// A legacy key `email:key`, sent as `X-Auth-Email` and `X-Auth-Key`.
    #[serde(default)]
    api_key: Option<String>,
    /// Raw headers, added after the ones above (a list value sends the header several times).
    #[serde(default)]
    headers: BTreeMap<String, HeaderValues>,
    /// The TCP peer (default 127.0.0.1).
    #[serde(default)]
    ip: Option<String>,
    /// Overrides the file's `at`.
    #[serde(default)]
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `allow` or `deny`.
    decision: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    code: Option<u32>,
    /// The code of the answer's `error_chain` entry (400 answers).
    #[serde(default)]
    chain: Option<u32>,
    /// A substring of the human reason (case-insensitive).
    #[serde(default)]
    reason_contains: Option<String>,
    /// Substrings the reason must not contain (e.g. another user's id: SPEC §3.5).
    #[serde(default)]
    reason_excludes: Vec<String>,
}

/// What the library decided, in the terms of `Expect`.
#[derive(Debug)]
struct Got {
    allowed: bool,
    status: u16,
    code: u32,
    chain: Option<u32>,
    reason: String,
}

impl std::fmt::Display for Got {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let decision = if self.allowed { "allow" } else { "deny" };
        write!(f, "{decision} {} code {}", self.status, self.code)?;
        if let Some(chain) = self.chain {
            write!(f, " chain {chain}")?;
        }
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.decision)?;
        if let Some(status) = self.status {
            write!(f, " {status}")?;
        }
        if let Some(code) = self.code {
            write!(f, " code {code}")?;
        }
        if let Some(chain) = self.chain {
            write!(f, " chain {chain}")?;
        }
        if let Some(reason) = &self.reason_contains {
            write!(f, " reason containing {reason:?}")?;
        }
        if !self.reason_excludes.is_empty() {
            write!(f, " reason without {:?}", self.reason_excludes)?;
        }
        Ok(())
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cases")
}

fn case_files() -> Result<Vec<PathBuf>, String> {
    let dir = cases_dir();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn unix_seconds(text: &str) -> Result<i64, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("bad RFC 3339 time {text:?}: {e}"))
}

fn headers_of(request: &Request) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    let value =
        |text: &str| HeaderValue::from_str(text).map_err(|e| format!("header value {text:?}: {e}"));
    if let Some(token) = &request.token {
        headers.append(
            http::header::AUTHORIZATION,
            value(&format!("Bearer {token}"))?,
        );
    }
    if let Some(api_key) = &request.api_key {
        let (email, key) = api_key
            .split_once(':')
            .ok_or_else(|| format!("api_key {api_key:?} is not email:key"))?;
        headers.append("x-auth-email", value(email)?);
        headers.append("x-auth-key", value(key)?);
    }
    for (name, values) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name {name:?}: {e}"))?;
        match values {
            HeaderValues::One(one) => {
                headers.append(name, value(one)?);
            }
            HeaderValues::Many(many) => {
                for one in many {
                    headers.append(name.clone(), value(one)?);
                }
            }
        }
    }
    Ok(headers)
}

/// Decides one case's request against `snapshot`.
fn run(snapshot: &Snapshot, request: &Request, default_at: i64) -> Result<Got, String> {
    let headers = headers_of(request)?;
    let peer_ip: IpAddr = request
        .ip
        .as_deref()
        .unwrap_or("127.0.0.1")
        .parse()
        .map_err(|e| format!("bad ip {:?}: {e}", request.ip))?;
    let now = match &request.at {
        Some(at) => unix_seconds(at)?,
        None => default_at,
    };
    let facts = Facts {
        method: &request.method,
        target: &request.path,
        headers: &headers,
        peer_ip,
        now,
    };
    let verdict = decide(snapshot, &facts);
    let (chain, reason) = match &verdict.outcome {
        Ok(()) => (None, String::new()),
        Err(refusal) => (
            refusal.answer.chain.as_ref().map(|entry| entry.code),
            refusal.reason(),
        ),
    };
    Ok(Got {
        allowed: verdict.allowed(),
        status: verdict.status(),
        code: verdict.code(),
        chain,
        reason,
    })
}

/// Why `got` does not meet `expect`, if it does not.
fn mismatch(expect: &Expect, got: &Got) -> Option<String> {
    let mut problems = Vec::new();
    match expect.decision.as_str() {
        "allow" if !got.allowed => problems.push("decision"),
        "deny" if got.allowed => problems.push("decision"),
        "allow" | "deny" => {}
        _ => return Some(format!("bad expected decision {:?}", expect.decision)),
    }
    if expect.status.is_some_and(|status| status != got.status) {
        problems.push("status");
    }
    if expect.code.is_some_and(|code| code != got.code) {
        problems.push("code");
    }
    if expect.chain.is_some() && expect.chain != got.chain {
        problems.push("chain");
    }
    if let Some(needle) = &expect.reason_contains
        && !got.reason.to_lowercase().contains(&needle.to_lowercase())
    {
        problems.push("reason");
    }
    let reason = got.reason.to_lowercase();
    if expect
        .reason_excludes
        .iter()
        .any(|needle| reason.contains(&needle.to_lowercase()))
    {
        problems.push("reason (contains an excluded text)");
    }
    (!problems.is_empty()).then(|| problems.join(", "))
}

#[test]
fn decision_cases() {
    let files = case_files().unwrap();
    assert!(
        !files.is_empty(),
        "no case files in {}",
        cases_dir().display()
    );

    let mut snapshots: BTreeMap<PathBuf, Result<Snapshot, String>> = BTreeMap::new();
    let mut total = 0usize;
    let mut passed = 0usize;
    let mut failures = String::new();
    let mut per_file = String::new();

    for file in &files {
        let short = file
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        let text = std::fs::read_to_string(file).unwrap();
        let parsed: CaseFile = match serde_saphyr::from_str(&text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let _ = writeln!(
                    failures,
                    "\n[{short}] the case file does not parse: {error}"
                );
                continue;
            }
        };
        let config = file.parent().unwrap_or(Path::new(".")).join(&parsed.config);
        let snapshot = snapshots.entry(config.clone()).or_insert_with(|| {
            permgate::config::load(&config)
                .map_err(|errors| format!("config {} does not load:\n{errors}", config.display()))
        });
        let default_at = match unix_seconds(&parsed.at) {
            Ok(at) => at,
            Err(error) => {
                let _ = writeln!(failures, "\n[{short}] {error}");
                continue;
            }
        };
        let mut file_passed = 0usize;
        for case in &parsed.cases {
            total += 1;
            let outcome = match snapshot {
                Ok(snapshot) => run(snapshot, &case.request, default_at),
                Err(error) => Err(error.clone()),
            };
            let problem = match &outcome {
                Ok(got) => {
                    mismatch(&case.expect, got).map(|what| format!("wrong {what}: got {got}"))
                }
                Err(error) => Some(format!("could not run: {error}")),
            };
            match problem {
                None => {
                    passed += 1;
                    file_passed += 1;
                }
                Some(problem) => {
                    let request = &case.request;
                    let credential = match (&request.token, &request.api_key) {
                        (Some(token), _) => format!(" token {token}"),
                        (None, Some(key)) => format!(" api_key {key}"),
                        (None, None) => String::new(),
                    };
                    let _ = writeln!(
                        failures,
                        "\n[{short}] {}\n    request:  {} {}{credential}{}{}\n    expected: {}\n    {problem}",
                        case.name,
                        request.method,
                        request.path,
                        request
                            .ip
                            .as_deref()
                            .map(|ip| format!(" ip {ip}"))
                            .unwrap_or_default(),
                        request
                            .at
                            .as_deref()
                            .map(|at| format!(" at {at}"))
                            .unwrap_or_default(),
                        case.expect,
                    );
                }
            }
        }
        let _ = writeln!(
            per_file,
            "  {short}: {file_passed}/{} passed",
            parsed.cases.len()
        );
    }

    println!("decision cases: {passed}/{total} passed\n{per_file}");
    assert!(
        failures.is_empty(),
        "{} of {total} decision cases failed:\n{failures}\nper file:\n{per_file}",
        total - passed
    );
    assert!(
        total >= MIN_CASES,
        "only {total} decision cases; expected at least {MIN_CASES}"
    );
}
