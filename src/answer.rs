//! Every answer the gateway makes itself, in Cloudflare's envelope, and the one place that picks status codes.
//!
//! `{"success":false,"errors":[{"code":N,"message":"…","error_chain":[…]}],"messages":[],"result":null}`

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::policy::decision::Denial;

/// A gateway-made error answer: status, code, message and an optional fixed `error_chain` entry.
///
/// The explanation of a 403 is not stored here: it is the [`Denial`] itself, rendered into the body only
/// when `explain_denials` is on, so deciding allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub code: u32,
    /// Borrowed for the gateway's own answers; owned for a route's own answer (`principal_refusal`).
    pub message: Cow<'static, str>,
    /// The fixed `error_chain` entry of 400s (6111, 6102, 6103, 6100), always shown.
    pub chain: Option<ChainEntry>,
}

/// One `error_chain` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    pub code: u32,
    pub message: Cow<'static, str>,
}

impl Answer {
    const fn plain(status: u16, code: u32, message: &'static str) -> Self {
        Self {
            status,
            code,
            message: Cow::Borrowed(message),
            chain: None,
        }
    }

    /// A route's own answer, as configured (`principal_refusal`: Cloudflare's 400/1001 "List accounts
    /// endpoint does not support account owned tokens." on `GET /accounts`, for one).
    pub fn configured(status: u16, code: u32, message: &str) -> Self {
        Self {
            status,
            code,
            message: Cow::Owned(message.to_string()),
            chain: None,
        }
    }

    fn chained(
        status: u16,
        code: u32,
        message: &'static str,
        chain_code: u32,
        chain: Cow<'static, str>,
    ) -> Self {
        Self {
            status,
            code,
            message: Cow::Borrowed(message),
            chain: Some(ChainEntry {
                code: chain_code,
                message: chain,
            }),
        }
    }

    /// 400/9106: a protected route without any credential.
    pub fn missing_credential() -> Self {
        Self::plain(
            400,
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        )
    }

    /// 400/6003 with chain 6111: a malformed `Authorization` header (or both kinds of credential).
    pub fn malformed_authorization() -> Self {
        Self::chained(
            400,
            6003,
            "Invalid request headers",
            6111,
            "Invalid format for Authorization header".into(),
        )
    }

    /// 400/6003 with chain 6102: a malformed or lone `X-Auth-Email`.
    pub fn malformed_email() -> Self {
        Self::chained(
            400,
            6003,
            "Invalid request headers",
            6102,
            "Invalid format for X-Auth-Email header".into(),
        )
    }

    /// 400/6003 with chain 6103: a malformed or lone `X-Auth-Key`.
    pub fn malformed_key() -> Self {
        Self::chained(
            400,
            6003,
            "Invalid request headers",
            6103,
            "Invalid format for X-Auth-Key header".into(),
        )
    }

    /// 400/6003 with chain 6100: a rejected request target or method-override header; `what` says which.
    pub fn rejected_request(what: impl Into<Cow<'static, str>>) -> Self {
        Self::chained(400, 6003, "Invalid request headers", 6100, what.into())
    }

    /// 403/10000 with `why` as its chain: a decision listener that cannot decide (a peer not in
    /// `trusted_proxies`, an internal error) denies, and says why.
    pub fn undecidable(why: impl Into<Cow<'static, str>>) -> Self {
        Self::chained(403, 10000, "Authentication error", 10000, why.into())
    }

    /// 400/1001: a legacy key on a token-verify route, as Cloudflare answers it (the route reads only
    /// `Authorization`).
    pub fn verify_needs_authorization() -> Self {
        Self::plain(400, 1001, "Missing \"Authorization\" header")
    }

    /// 400/7000: no route for the method and path, as Cloudflare answers it (a path that exists only for
    /// other methods included). Earlier versions of the spec said 404/7003; a client's SDK maps this to
    /// `BadRequestError`, as it does for Cloudflare itself.
    pub fn no_route() -> Self {
        Self::plain(400, 7000, "No route for that URI")
    }

    /// 502/1200: the upstream could not be reached.
    pub fn upstream_unavailable() -> Self {
        Self::plain(502, 1200, "Upstream unavailable")
    }

    /// 504/1201: the upstream did not answer in time.
    pub fn upstream_timeout() -> Self {
        Self::plain(504, 1201, "Upstream timed out")
    }

    /// 408/1203: the client did not send its whole request body within `request_body_timeout_ms`.
    pub fn body_timeout() -> Self {
        Self::plain(408, 1203, "Request body timed out")
    }

    /// 400/1204: the client's request body was malformed (a bad chunk) or cut short.
    pub fn broken_body() -> Self {
        Self::plain(400, 1204, "Malformed or incomplete request body")
    }

    /// 503/1202: over the connection or load limit.
    pub fn overloaded() -> Self {
        Self::plain(503, 1202, "Gateway overloaded")
    }

    /// The 403 for a denial (SPEC §5); its reason is rendered from the denial when explaining.
    pub fn for_denial(denial: &Denial<'_>) -> Self {
        let (code, message): (u32, &'static str) = match denial {
            Denial::TokenUnknown
            | Denial::TokenDisabled { .. }
            | Denial::TokenExpired { .. }
            | Denial::TokenNotYetValid { .. }
            | Denial::NotAToken
            | Denial::NotVerifiableHere { .. } => (1000, "Invalid API Token"),
            Denial::LegacyKeyUnknown => (9103, "Unknown X-Auth-Key or X-Auth-Email"),
            Denial::IpOutsideCondition { .. } => {
                (9109, "Cannot use the access token from location")
            }
            Denial::ApiAccessDisabled { .. } => {
                (9109, "API access is disabled for this account member")
            }
            Denial::UnknownResource { .. }
            | Denial::NotMember { .. }
            | Denial::OutsideOwnAccount { .. }
            | Denial::AccountTokenOnUserRoute { .. }
            | Denial::MissingPermission { .. }
            | Denial::MissingAnyPermission { .. }
            | Denial::DeniedByPolicy { .. }
            | Denial::NoResourceAllowed { .. }
            | Denial::CredentialNotAccepted { .. }
            | Denial::Internal { .. } => (10000, "Authentication error"),
        };
        Self::plain(403, code, message)
    }

    /// The message as sent: 9109 for an IP names the IP, as Cloudflare does.
    pub fn full_message(&self, denial: Option<&Denial<'_>>) -> Cow<'static, str> {
        match denial {
            Some(Denial::IpOutsideCondition { ip, .. }) => format!("{}: {ip}", self.message).into(),
            _ => self.message.clone(),
        }
    }

    /// The JSON envelope. A fixed chain always shows; with `explain`, a denial's reason is the chain.
    pub fn body(&self, denial: Option<&Denial<'_>>, explain: bool) -> String {
        let mut body = String::with_capacity(160);
        body.push_str("{\"success\":false,\"errors\":[{\"code\":");
        let _ = write!(body, "{}", self.code);
        body.push_str(",\"message\":");
        push_json_string(&mut body, &self.full_message(denial));
        let chain = match (&self.chain, denial) {
            (Some(chain), _) => Some((chain.code, chain.message.to_string())),
            (None, Some(denial)) if explain => Some((self.code, denial.to_string())),
            (None, _) => None,
        };
        if let Some((code, message)) = chain {
            let _ = write!(body, ",\"error_chain\":[{{\"code\":{code},\"message\":");
            push_json_string(&mut body, &message);
            body.push_str("}]");
        }
        body.push_str("}],\"messages\":[],\"result\":null}");
        body
    }
}

/// Appends `text` as a JSON string literal.
pub fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_match_cloudflare_byte_for_byte() {
        assert_eq!(
            Answer::missing_credential().body(None, true),
            r#"{"success":false,"errors":[{"code":9106,"message":"Missing X-Auth-Key, X-Auth-Email or Authorization headers"}],"messages":[],"result":null}"#
        );
        assert_eq!(
            Answer::malformed_authorization().body(None, false),
            r#"{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}],"messages":[],"result":null}"#
        );
        assert_eq!(
            Answer::no_route().body(None, true),
            r#"{"success":false,"errors":[{"code":7000,"message":"No route for that URI"}],"messages":[],"result":null}"#
        );
        assert_eq!(Answer::no_route().status, 400);
        let denial = Denial::LegacyKeyUnknown;
        assert_eq!(
            Answer::for_denial(&denial).body(Some(&denial), false),
            r#"{"success":false,"errors":[{"code":9103,"message":"Unknown X-Auth-Key or X-Auth-Email"}],"messages":[],"result":null}"#
        );
    }

    #[test]
    fn explanations_show_only_when_asked_and_ip_is_named() {
        let denial = Denial::IpOutsideCondition {
            token: "t1",
            ip: "10.1.2.3".parse().unwrap(),
        };
        let answer = Answer::for_denial(&denial);
        assert_eq!((answer.status, answer.code), (403, 9109));
        let body = answer.body(Some(&denial), true);
        assert!(
            body.contains(r#""message":"Cannot use the access token from location: 10.1.2.3""#)
        );
        assert!(body.contains("error_chain"));
        assert!(!answer.body(Some(&denial), false).contains("error_chain"));
    }
}
