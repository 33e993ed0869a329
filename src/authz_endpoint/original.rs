//! The original request a decision request names, read by the listener's protocol only (pure).
//!
//! | protocol         | method                     | request-target                                  |
//! |------------------|----------------------------|-------------------------------------------------|
//! | `auth_request`   | `X-Original-Method`        | `X-Original-URI`                                |
//! | `forward_auth`   | `X-Forwarded-Method`       | `X-Forwarded-Uri`                               |
//! | `ext_authz_http` | the check request's own    | the check request's own, `strip_prefix` removed |
//! | `ext_authz_grpc` | `attributes.request.http`  | `attributes.request.http.path`                  |
//!
//! The names are fixed by the listener's configuration, never guessed per request: a listener reads its one
//! family and no other (an `auth_request` listener never reads `X-Forwarded-Uri`), and only in the
//! `-` spelling (`X_Original_URI` or `X.Original.URI` are other headers, never read). Exactly one value of
//! each is needed: a request that names no original method or URI, or two of either, is refused (400),
//! never decided as `/` or on the decision request's own path.
//!
//! Two kinds of header are refused whatever the protocol, because the proxy in front passes the client's
//! headers on and cannot strip a family of them: `X-Permgate-*` in any spelling (only permgate sets those;
//! the proxy copies permgate's values upstream), and a credential header in a `_` or `.` spelling
//! (`X_Auth_Key`: not what was authorized, and an upstream that folds `_` into `-` would read it).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use crate::answer::Answer;
use crate::settings::DecisionProtocol;

/// The original request's method and request-target, as named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named<'a> {
    pub method: &'a str,
    pub target: Cow<'a, str>,
}

/// Refuses the headers no decision request may carry (see the module docs).
pub fn check_headers(headers: &HeaderMap) -> Result<(), Answer> {
    for name in headers.keys() {
        let text = name.as_str();
        let spelled_otherwise = text.contains(['_', '.']);
        let normal: Cow<'_, str> = if spelled_otherwise {
            Cow::Owned(text.replace(['_', '.'], "-"))
        } else {
            Cow::Borrowed(text)
        };
        if normal == "x-permgate" || normal.starts_with("x-permgate-") {
            return Err(Answer::rejected_request(
                "X-Permgate-* headers are set only by permgate: the request carries one",
            ));
        }
        if spelled_otherwise && matches!(&*normal, "authorization" | "x-auth-key" | "x-auth-email")
        {
            return Err(Answer::rejected_request(format!(
                "{text:?} is not a credential header (the `-` spelling is)"
            )));
        }
    }
    Ok(())
}

/// The one value of header `name`, as text; `None` when absent. Two values, or one that is not visible
/// ASCII, is refused.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    label: &str,
) -> Result<Option<&'a str>, Answer> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Answer::rejected_request(format!(
            "more than one {label} header"
        )));
    }
    match value.to_str() {
        Ok(text) if !text.is_empty() => Ok(Some(text)),
        _ => Err(Answer::rejected_request(format!(
            "{label} is empty or not plain text"
        ))),
    }
}

/// The original request named by headers `method_name` and `uri_name` (both required).
fn from_headers<'a>(
    headers: &'a HeaderMap,
    method_name: (&HeaderName, &str),
    uri_name: (&HeaderName, &str),
) -> Result<Named<'a>, Answer> {
    let target = single(headers, uri_name.0, uri_name.1)?.ok_or_else(|| {
        Answer::rejected_request(format!(
            "no {} header: the proxy in front must name the original request",
            uri_name.1
        ))
    })?;
    let method = single(headers, method_name.0, method_name.1)?.ok_or_else(|| {
        Answer::rejected_request(format!(
            "no {} header: the proxy in front must name the original method",
            method_name.1
        ))
    })?;
    Ok(Named {
        method,
        target: Cow::Borrowed(target),
    })
}

const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// The original request of an HTTP decision request: by `protocol`'s headers, or (`ext_authz_http`) the
/// request's own `own_method` and `own_target` with `strip_prefix` removed. The gRPC form names it in its
/// message ([`from_check`]).
pub fn from_http<'a>(
    protocol: DecisionProtocol,
    headers: &'a HeaderMap,
    own_method: &'a str,
    own_target: &'a str,
    strip_prefix: Option<&str>,
) -> Result<Named<'a>, Answer> {
    check_headers(headers)?;
    match protocol {
        DecisionProtocol::AuthRequest => from_headers(
            headers,
            (&ORIGINAL_METHOD, "X-Original-Method"),
            (&ORIGINAL_URI, "X-Original-URI"),
        ),
        DecisionProtocol::ForwardAuth => from_headers(
            headers,
            (&FORWARDED_METHOD, "X-Forwarded-Method"),
            (&FORWARDED_URI, "X-Forwarded-Uri"),
        ),
        DecisionProtocol::ExtAuthzHttp => Ok(Named {
            method: own_method,
            target: strip(own_target, strip_prefix)?,
        }),
        DecisionProtocol::ExtAuthzGrpc => Err(Answer::undecidable(
            "internal error: a gRPC decision listener got an HTTP request",
        )),
    }
}

/// `target` without `prefix` (`/authz/zones?x` → `/zones?x`, `/authz` → `/`); a target that does not
/// start with the prefix (at a segment boundary) is refused.
fn strip<'a>(target: &'a str, prefix: Option<&str>) -> Result<Cow<'a, str>, Answer> {
    let Some(prefix) = prefix else {
        return Ok(Cow::Borrowed(target));
    };
    match target.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => Ok(Cow::Borrowed(rest)),
        Some(rest) if rest.is_empty() || rest.starts_with('?') => {
            Ok(Cow::Owned(format!("/{rest}")))
        }
        _ => Err(Answer::rejected_request(format!(
            "the check request's path does not start with strip_prefix {prefix}"
        ))),
    }
}

/// The original request of an Envoy `CheckRequest`: its `attributes.request.http` method and path (the
/// request-target as received: path and query).
pub fn from_check<'a>(method: &'a str, path: &'a str) -> Result<Named<'a>, Answer> {
    if path.is_empty() {
        return Err(Answer::rejected_request(
            "the CheckRequest names no original path (attributes.request.http.path)",
        ));
    }
    if method.is_empty() {
        return Err(Answer::rejected_request(
            "the CheckRequest names no original method (attributes.request.http.method)",
        ));
    }
    Ok(Named {
        method,
        target: Cow::Borrowed(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn refusal(result: Result<Named<'_>, Answer>) -> (u16, u32, String) {
        let answer = result.unwrap_err();
        let chain = answer.chain.map(|chain| chain.message.to_string());
        (answer.status, answer.code, chain.unwrap_or_default())
    }

    #[test]
    fn each_protocol_reads_its_own_family_only() {
        let map = headers(&[
            ("x-original-uri", "/a?x=1"),
            ("x-original-method", "POST"),
            ("x-forwarded-uri", "/b"),
            ("x-forwarded-method", "DELETE"),
        ]);
        let nginx = from_http(DecisionProtocol::AuthRequest, &map, "GET", "/auth", None).unwrap();
        assert_eq!((nginx.method, &*nginx.target), ("POST", "/a?x=1"));
        let caddy = from_http(DecisionProtocol::ForwardAuth, &map, "GET", "/auth", None).unwrap();
        assert_eq!((caddy.method, &*caddy.target), ("DELETE", "/b"));
        let envoy = from_http(DecisionProtocol::ExtAuthzHttp, &map, "PUT", "/c/d?e", None).unwrap();
        assert_eq!((envoy.method, &*envoy.target), ("PUT", "/c/d?e"));
    }

    #[test]
    fn a_missing_original_uri_is_refused_never_decided_as_the_own_path() {
        let only_other_family =
            headers(&[("x-forwarded-uri", "/b"), ("x-forwarded-method", "GET")]);
        let (status, code, why) = refusal(from_http(
            DecisionProtocol::AuthRequest,
            &only_other_family,
            "GET",
            "/",
            None,
        ));
        assert_eq!((status, code), (400, 6003));
        assert!(why.contains("X-Original-URI"), "{why}");
        let no_method = headers(&[("x-forwarded-uri", "/b")]);
        let (_, _, why) = refusal(from_http(
            DecisionProtocol::ForwardAuth,
            &no_method,
            "GET",
            "/",
            None,
        ));
        assert!(why.contains("X-Forwarded-Method"), "{why}");
        let twice = headers(&[
            ("x-original-uri", "/a"),
            ("x-original-uri", "/b"),
            ("x-original-method", "GET"),
        ]);
        let (_, _, why) = refusal(from_http(
            DecisionProtocol::AuthRequest,
            &twice,
            "GET",
            "/",
            None,
        ));
        assert!(why.contains("more than one"), "{why}");
    }

    #[test]
    fn underscore_and_dot_spellings_are_never_read() {
        let map = headers(&[
            ("x_original_uri", "/a"),
            ("x.original.uri", "/a"),
            ("x-original-method", "GET"),
        ]);
        let (_, _, why) = refusal(from_http(
            DecisionProtocol::AuthRequest,
            &map,
            "GET",
            "/",
            None,
        ));
        assert!(why.contains("no X-Original-URI"), "{why}");
        let map = headers(&[("x_forwarded_uri", "/a"), ("x_forwarded_method", "GET")]);
        let (_, _, why) = refusal(from_http(
            DecisionProtocol::ForwardAuth,
            &map,
            "GET",
            "/",
            None,
        ));
        assert!(why.contains("no X-Forwarded-Uri"), "{why}");
    }

    #[test]
    fn permgate_headers_and_odd_credential_spellings_are_refused() {
        for name in [
            "x-permgate-principal",
            "x_permgate_account",
            "x-permgate",
            "x.permgate.token-id",
        ] {
            let map = headers(&[
                (name, "v"),
                ("x-original-uri", "/a"),
                ("x-original-method", "GET"),
            ]);
            let (status, code, _) = refusal(from_http(
                DecisionProtocol::AuthRequest,
                &map,
                "GET",
                "/",
                None,
            ));
            assert_eq!((status, code), (400, 6003), "{name}");
        }
        let map = headers(&[
            ("x_auth_key", "k"),
            ("x-forwarded-uri", "/a"),
            ("x-forwarded-method", "GET"),
        ]);
        assert!(from_http(DecisionProtocol::ForwardAuth, &map, "GET", "/", None).is_err());
        let fine = headers(&[
            ("x-auth-key", "k"),
            ("x-forwarded-uri", "/a"),
            ("x-forwarded-method", "GET"),
        ]);
        assert!(from_http(DecisionProtocol::ForwardAuth, &fine, "GET", "/", None).is_ok());
    }

    #[test]
    fn the_ext_authz_prefix_is_removed_at_a_segment_boundary_only() {
        let none = HeaderMap::new();
        let strip_ = |target| {
            from_http(
                DecisionProtocol::ExtAuthzHttp,
                &none,
                "GET",
                target,
                Some("/authz"),
            )
            .map(|named| named.target.into_owned())
        };
        assert_eq!(strip_("/authz/zones/1?a=b").unwrap(), "/zones/1?a=b");
        assert_eq!(strip_("/authz").unwrap(), "/");
        assert_eq!(strip_("/authz?q").unwrap(), "/?q");
        assert!(strip_("/authzzz/zones").is_err());
        assert!(strip_("/zones").is_err());
    }

    #[test]
    fn a_check_request_without_a_path_or_method_is_refused() {
        assert!(from_check("GET", "").is_err());
        assert!(from_check("", "/a").is_err());
        assert_eq!(from_check("GET", "/a").unwrap().target, "/a");
    }
}
