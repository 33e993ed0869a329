//! The pure decision for one request, shared by `permgate check` and the proxy (no I/O, no clock).
//!
//! Order of checks (SPEC §3.3 point 7), so that one request has one answer: canonical target (400) →
//! route (400/7000) → credential present and well-formed (400) → credential known and usable (1000 / 9103) →
//! token IP condition (9109) → kind of credential the route accepts (its `principal_refusal`, else 10000) →
//! resource known (10000) → API access (9109) → policies (10000).

use std::net::IpAddr;

use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::answer::Answer;
use crate::auth::{Credential, CredentialError, read_credential};
use crate::policy::evaluate::PolicyIds;
use crate::policy::model::KindIdx;
use crate::policy::{
    AccessRequest, Decision, Denial, Known, PolicySet, Presented, Principal, PrincipalKind,
    Required, ResourceRef, Target, TokenOwner,
};
use crate::routes::{
    CanonicalTarget, CredentialKind, Handler, Requirement, Route, Scope, canonicalize_request,
    reject_override_headers,
};
use crate::snapshot::Snapshot;

/// What the gateway knows about one request before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a str,
    /// The raw request-target as received (origin-form path and query).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// The TCP peer's address.
    pub peer_ip: IpAddr,
    /// Now, in Unix seconds (passed in: this module reads no clock).
    pub now: i64,
}

/// Why the gateway answers itself instead of forwarding. Borrows the snapshot; [`Refusal::render`] gives
/// an owned copy to keep past it.
#[derive(Debug, Clone)]
pub struct Refusal<'s> {
    pub answer: Answer,
    /// The authorization reason, for 403s.
    pub denial: Option<Denial<'s>>,
    /// Whether `mode: shadow` may forward this request anyway. Never for a rejected target or a
    /// method-override header: those cannot be forwarded safely.
    pub shadow_forwardable: bool,
}

/// A refusal turned into text: what the proxy keeps once the snapshot may be gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedRefusal {
    pub answer: Answer,
    /// The response body (with the reason as `error_chain` when explaining).
    pub body: String,
    /// The human reason, for logs.
    pub reason: String,
    pub shadow_forwardable: bool,
}

impl<'s> Refusal<'s> {
    fn rejected(answer: Answer) -> Self {
        Self {
            answer,
            denial: None,
            shadow_forwardable: false,
        }
    }

    fn refused(answer: Answer) -> Self {
        Self {
            answer,
            denial: None,
            shadow_forwardable: true,
        }
    }

    /// A 403 for `denial`.
    pub fn denied(denial: Denial<'s>) -> Self {
        Self {
            answer: Answer::for_denial(&denial),
            denial: Some(denial),
            shadow_forwardable: true,
        }
    }

    /// The response body; `explain` adds the 403 reason as `error_chain`.
    pub fn body(&self, explain: bool) -> String {
        self.answer.body(self.denial.as_ref(), explain)
    }

    /// The human reason, for logs and `permgate check`.
    pub fn reason(&self) -> String {
        match (&self.denial, &self.answer.chain) {
            (Some(denial), _) => denial.to_string(),
            (None, Some(chain)) => chain.message.to_string(),
            (None, None) => self.answer.message.to_string(),
        }
    }

    /// An owned copy with the body and reason as text.
    pub fn render(&self, explain: bool) -> RenderedRefusal {
        RenderedRefusal {
            answer: self.answer.clone(),
            body: self.body(explain),
            reason: self.reason(),
            shadow_forwardable: self.shadow_forwardable,
        }
    }
}

/// The decision for one request, with everything the proxy forwards, logs and counts.
#[derive(Debug)]
pub struct Verdict<'s> {
    /// The one canonical target: what was routed, authorized and is forwarded.
    pub canonical: Option<CanonicalTarget>,
    pub route: Option<&'s Route>,
    /// The matched route's index in the snapshot's route table (set with `route`).
    pub route_index: Option<usize>,
    /// The client IP used for the decision (peer, or `X-Forwarded-For` behind a trusted proxy).
    pub client_ip: IpAddr,
    pub principal: Option<Principal<'s>>,
    pub resource: Option<ResourceRef<'s>>,
    /// The ids of the policies that decided (allow or deny).
    pub policies: PolicyIds<'s>,
    pub outcome: Result<(), Refusal<'s>>,
}

impl<'s> Verdict<'s> {
    /// Whether the request may go to the upstream.
    pub fn allowed(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The status the gateway answers when it refuses (200 when allowed: the upstream answers).
    pub fn status(&self) -> u16 {
        self.outcome
            .as_ref()
            .err()
            .map_or(200, |refusal| refusal.answer.status)
    }

    /// The account the request acts in: the resource's account, or an account token's own account.
    pub fn account(&self) -> Option<&str> {
        self.resource
            .and_then(|resource| resource.account)
            .or_else(|| {
                self.principal
                    .filter(|principal| principal.kind == crate::policy::PrincipalKind::Account)
                    .map(|principal| principal.id)
            })
    }

    /// The id of the token the request presented, when the config knows it: the principal's token, or the
    /// token a refusal names (disabled, expired, not yet valid, outside its IP condition). Never a secret.
    pub fn token_id(&self) -> Option<&'s str> {
        if let Some(principal) = &self.principal {
            return principal.token_id();
        }
        match self
            .outcome
            .as_ref()
            .err()
            .and_then(|refusal| refusal.denial.as_ref())?
        {
            Denial::TokenDisabled { token }
            | Denial::TokenExpired { token, .. }
            | Denial::TokenNotYetValid { token, .. }
            | Denial::IpOutsideCondition { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The code of the refusal, 0 when allowed.
    pub fn code(&self) -> u32 {
        self.outcome
            .as_ref()
            .err()
            .map_or(0, |refusal| refusal.answer.code)
    }
}

/// Decides one request against one snapshot.
pub fn decide<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>) -> Verdict<'s> {
    decide_with(snapshot, facts, None)
}

/// Decides one request as if `known` had presented its credential: the same checks in the same order as
/// [`decide`], with the credential named by the config instead of read from the headers (any credential
/// headers are ignored). For access analysis and `permgate check --token-id`, which know no secret.
pub fn decide_as<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>, known: Known) -> Verdict<'s> {
    decide_with(snapshot, facts, Some(known))
}

// Inlined into both callers: the verdict is built in the caller's frame, not copied out of this one.
#[inline(always)]
fn decide_with<'s>(snapshot: &'s Snapshot, facts: &Facts<'_>, known: Option<Known>) -> Verdict<'s> {
    let mut verdict = Verdict {
        canonical: None,
        route: None,
        route_index: None,
        client_ip: facts.peer_ip,
        principal: None,
        resource: None,
        policies: PolicyIds::new(),
        outcome: Ok(()),
    };
    verdict.outcome = decide_into(snapshot, facts, known, &mut verdict);
    verdict
}

// The refusal is moved once into the verdict; boxing it would allocate on every refused request.
#[allow(clippy::result_large_err)]
fn decide_into<'s>(
    snapshot: &'s Snapshot,
    facts: &Facts<'_>,
    known: Option<Known>,
    verdict: &mut Verdict<'s>,
) -> Result<(), Refusal<'s>> {
    let canonical = canonicalize_request(facts.method, facts.target)
        .map_err(|rejection| Refusal::rejected(Answer::rejected_request(rejection.to_string())))?;
    reject_override_headers(facts.headers)
        .map_err(|rejection| Refusal::rejected(Answer::rejected_request(rejection.to_string())))?;
    verdict.client_ip = client_ip(
        facts.peer_ip,
        facts.headers,
        &snapshot.settings.trusted_proxies,
    )
    .ok_or_else(|| {
        Refusal::rejected(Answer::rejected_request("malformed X-Forwarded-For header"))
    })?;
    let canonical = verdict.canonical.insert(canonical);

    // An encoded slash only ever passes in a parameter the matched route declares opaque, as received.
    let matched = snapshot
        .routes
        .route_request(facts.method, canonical, facts.target)
        .map_err(|rejection| Refusal::rejected(Answer::rejected_request(rejection.to_string())))?;
    let Some(matched) = matched else {
        return Err(Refusal::refused(Answer::no_route()));
    };
    let route = matched.route;
    verdict.route = Some(route);
    verdict.route_index = Some(matched.index);
    if route.public {
        return Ok(());
    }
    let decision = match known {
        None => authenticate_and_authorize(
            &snapshot.policy,
            route,
            ResourceIds {
                id: matched.resource_id,
                parent: matched.parent_id,
            },
            facts.headers,
            verdict.client_ip,
            facts.now,
        )?,
        Some(known) => authorize_known(
            &snapshot.policy,
            route,
            ResourceIds {
                id: matched.resource_id,
                parent: matched.parent_id,
            },
            known,
            verdict.client_ip,
            facts.now,
        )?,
    };
    verdict.principal = decision.principal;
    verdict.resource = decision.resource;
    verdict.policies = decision.policies;
    decision
        .outcome
        .map_err(|denial| match (&denial, &route.principal_refusal) {
            // The route's own answer, exactly as the API gives it (no explanation added).
            (Denial::CredentialNotAccepted { .. }, Some(own)) => {
                Refusal::refused(Answer::configured(own.status, own.code, &own.message))
            }
            _ => Refusal::denied(denial),
        })
}

/// The kind of credential a principal authenticated with, as a route's `principals:` names it.
pub fn credential_kind(principal: &Principal<'_>) -> CredentialKind {
    match (principal.kind, principal.token) {
        (PrincipalKind::Account, _) => CredentialKind::AccountToken,
        (PrincipalKind::User, Some(_)) => CredentialKind::UserToken,
        (PrincipalKind::User, None) => CredentialKind::ApiKey,
    }
}

/// The ids a matched path names for the route's scope: the resource's (a child's name for a child scope)
/// and, for a child, its parent's.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceIds<'p> {
    pub id: Option<&'p str>,
    pub parent: Option<&'p str>,
}

impl<'p> ResourceIds<'p> {
    /// An account's or a zone's id.
    pub fn of(id: Option<&'p str>) -> Self {
        Self { id, parent: None }
    }
}

/// The decision proper, once the route is known (SPEC §10's "authenticate + authorize"): read the
/// credential from the headers, hash it, and evaluate the policy set for the route's keys and resource.
/// `Err` is a missing or malformed credential (400); a denial is in the returned decision.
#[allow(clippy::result_large_err)] // see decide_into
pub fn authenticate_and_authorize<'s>(
    policy: &'s PolicySet,
    route: &'s Route,
    resource_id: ResourceIds<'_>,
    headers: &HeaderMap,
    client_ip: IpAddr,
    now: i64,
) -> Result<Decision<'s>, Refusal<'s>> {
    let verify = route.handler == Some(Handler::VerifyToken);
    let target = route_target(policy, route, resource_id, verify)?;
    let credential = read_credential(headers).map_err(|error| {
        Refusal::refused(match error {
            CredentialError::Missing => Answer::missing_credential(),
            CredentialError::MalformedAuthorization | CredentialError::Both => {
                Answer::malformed_authorization()
            }
            CredentialError::MalformedEmail => Answer::malformed_email(),
            CredentialError::MalformedKey => Answer::malformed_key(),
        })
    })?;
    if verify && matches!(credential, Credential::LegacyKey { .. }) {
        // Cloudflare's verify routes read only `Authorization`.
        return Err(Refusal::refused(Answer::verify_needs_authorization()));
    }
    let presented = match credential {
        Credential::Token(secret) => Presented::Token {
            sha256: Sha256::digest(secret.as_bytes()).into(),
        },
        Credential::LegacyKey { email, key } => Presented::LegacyKey {
            email,
            key_sha256: Sha256::digest(key.as_bytes()).into(),
        },
    };
    Ok(authorize_presented(
        policy, route, target, verify, presented, client_ip, now,
    ))
}

/// [`authenticate_and_authorize`] for a credential named by the config ([`decide_as`]).
#[allow(clippy::result_large_err)] // see decide_into
pub fn authorize_known<'s>(
    policy: &'s PolicySet,
    route: &'s Route,
    resource_id: ResourceIds<'_>,
    known: Known,
    client_ip: IpAddr,
    now: i64,
) -> Result<Decision<'s>, Refusal<'s>> {
    let verify = route.handler == Some(Handler::VerifyToken);
    let target = route_target(policy, route, resource_id, verify)?;
    if verify && matches!(known, Known::LegacyKey(_)) {
        return Err(Refusal::refused(Answer::verify_needs_authorization()));
    }
    Ok(authorize_presented(
        policy,
        route,
        target,
        verify,
        Presented::Known(known),
        client_ip,
        now,
    ))
}

/// The resource a route's scope names, with the id from its path.
#[allow(clippy::result_large_err)] // see decide_into
fn route_target<'s, 'p>(
    policy: &PolicySet,
    route: &'s Route,
    ids: ResourceIds<'p>,
    verify: bool,
) -> Result<Target<'p>, Refusal<'s>> {
    let resource_id = ids.id;
    Ok(match (&route.scope, resource_id) {
        // Token verification reads only the token: owned as the route's scope says, no permission.
        (Scope::None, _) if verify => Target::Verify(TokenOwner::Any),
        (Scope::User, _) if verify => Target::Verify(TokenOwner::User),
        (Scope::Account { .. }, Some(id)) if verify => Target::Verify(TokenOwner::Account(id)),
        (Scope::Zone { .. } | Scope::Child { .. } | Scope::Any, _) if verify => {
            return Err(Refusal::denied(Denial::Internal {
                what: "a verify route scoped to a zone or a collection",
            }));
        }
        (Scope::Account { .. }, Some(id)) => Target::Account(id),
        (Scope::Zone { .. }, Some(id)) => Target::Zone(id),
        (Scope::Child { kind, .. }, Some(name)) => match ids.parent {
            Some(parent) => Target::Child {
                // A type the policy files do not declare is denied (and the loader refuses such a
                // config).
                kind: policy.resource_type(kind).unwrap_or(KindIdx::MAX),
                parent,
                name,
            },
            None => {
                return Err(Refusal::denied(Denial::Internal {
                    what: "route matched without its parent's parameter",
                }));
            }
        },
        (Scope::User, _) => Target::User,
        (Scope::Any, _) => Target::Any,
        (Scope::None, _) => Target::None,
        (Scope::Account { .. } | Scope::Zone { .. } | Scope::Child { .. }, None) => {
            return Err(Refusal::denied(Denial::Internal {
                what: "route matched without its scope parameter",
            }));
        }
    })
}

/// The policy decision for a presented credential on the route's target, then the route's own rule on
/// which kinds of credential it takes.
fn authorize_presented<'s>(
    policy: &'s PolicySet,
    route: &'s Route,
    target: Target<'_>,
    verify: bool,
    presented: Presented<'_>,
    client_ip: IpAddr,
    now: i64,
) -> Decision<'s> {
    let required = match &route.requirement {
        _ if verify => Required::None,
        Requirement::None => Required::None,
        Requirement::AllOf(keys) => Required::AllOf(keys),
        Requirement::AnyOf(keys) => Required::AnyOf(keys),
    };
    let mut decision = policy.evaluate(&AccessRequest {
        presented,
        client_ip,
        now,
        target,
        required,
    });
    // A principal means the credential is known, usable and inside its IP condition: then, before the
    // resource, the API-access toggle and the policies, the route says whether it takes this kind of
    // credential at all (Cloudflare refuses account-owned tokens on `GET /accounts` and on page rules).
    if let Some(principal) = &decision.principal {
        let kind = credential_kind(principal);
        if !route.principals.accepts(kind) {
            decision.outcome = Err(Denial::CredentialNotAccepted {
                kind: kind.described(),
            });
            decision.policies.clear();
        }
    }
    decision
}

/// The client IP: the peer, or behind a trusted proxy the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy (the left-most when all are). `None` when a needed entry is not an IP address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().ok())
        .collect::<Option<Vec<_>>>()?;
    for entry in values.iter().rev().flat_map(|value| value.rsplit(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            return None;
        }
        let ip = parse_forwarded_ip(entry)?;
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| {
        entry
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|addr| addr.ip())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn client_ip_believes_forwarded_for_only_behind_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let outsider: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(outsider, &headers(&["1.1.1.1"]), &trusted),
            Some(outsider)
        );
        assert_eq!(
            client_ip(peer, &headers(&["1.1.1.1, 2.2.2.2, 10.0.0.7"]), &trusted),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(
            client_ip(peer, &headers(&["1.1.1.1", "10.0.0.8"]), &trusted),
            Some("1.1.1.1".parse().unwrap())
        );
        assert_eq!(client_ip(peer, &headers(&[]), &trusted), Some(peer));
        assert_eq!(client_ip(peer, &headers(&["bogus"]), &trusted), None);
        assert_eq!(
            client_ip(peer, &headers(&["1.1.1.1, bogus"]), &trusted),
            None
        );
    }
}
