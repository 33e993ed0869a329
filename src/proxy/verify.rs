//! `GET /user/tokens/verify` (and the account and scope-less variants, routes with `handler: verify_token`):
//! answered by the gateway itself, in Cloudflare's shape, for the token that authenticated.

use http::Response;
use http::header::HeaderValue;

use super::body::ProxyBody;
use super::error::json_response;
use super::headers::REQUEST_ID;
use crate::answer::push_json_string;
use crate::pipeline;
use crate::policy::{Denial, Principal};

/// What `GET /user/tokens/verify` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VerifiedToken {
    id: String,
    not_before: Option<String>,
    expires_on: Option<String>,
}

/// The token a principal authenticated with, as `verify` reports it; `None` for a legacy key.
pub(super) fn verified_token(principal: &Principal<'_>) -> Option<VerifiedToken> {
    let token = principal.token?;
    Some(VerifiedToken {
        id: token.id.to_string(),
        not_before: token.not_before.as_ref().map(|(_, text)| text.to_string()),
        expires_on: token.expires_on.as_ref().map(|(_, text)| text.to_string()),
    })
}

/// `verify` reports on API tokens; a legacy key is authenticated but is not a token, so it gets the answer
/// an unknown token gets (403/1000), with the reason as an explanation.
pub(super) fn verify_with_legacy_key() -> pipeline::Refusal<'static> {
    pipeline::Refusal {
        shadow_forwardable: false,
        ..pipeline::Refusal::denied(Denial::NotAToken)
    }
}

/// Cloudflare's `GET /user/tokens/verify` answer for a usable token.
pub(super) fn verify_response(
    token: &VerifiedToken,
    id_value: &HeaderValue,
) -> Response<ProxyBody> {
    let mut body = String::with_capacity(256);
    body.push_str(
        r#"{"success":true,"errors":[],"messages":[{"code":10000,"message":"This API Token is valid and active","type":null}],"result":{"id":"#,
    );
    push_json_string(&mut body, &token.id);
    body.push_str(r#","status":"active""#);
    for (name, value) in [
        ("not_before", &token.not_before),
        ("expires_on", &token.expires_on),
    ] {
        if let Some(value) = value {
            body.push_str(",\"");
            body.push_str(name);
            body.push_str("\":");
            push_json_string(&mut body, value);
        }
    }
    body.push_str("}}");
    let mut response = json_response(200, body);
    response.headers_mut().insert(REQUEST_ID, id_value.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn verify_answers_in_cloudflare_shape() {
        let id = HeaderValue::from_static("rid");
        let token = VerifiedToken {
            id: "ed17574386854bf78a67040be0a770b0".into(),
            not_before: None,
            expires_on: Some("2030-01-01T00:00:00Z".into()),
        };
        let response = verify_response(&token, &id);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-request-id"], "rid");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"success":true,"errors":[],"messages":[{"code":10000,"message":"This API Token is valid and active","type":null}],"result":{"id":"ed17574386854bf78a67040be0a770b0","status":"active","expires_on":"2030-01-01T00:00:00Z"}}"#
        );
    }

    #[test]
    fn a_legacy_key_on_verify_is_not_a_token() {
        let refusal = verify_with_legacy_key();
        assert_eq!((refusal.answer.status, refusal.answer.code), (403, 1000));
        assert!(!refusal.body(false).contains("legacy"));
        assert!(refusal.body(true).contains("legacy API key"));
    }
}
