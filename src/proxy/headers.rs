//! Header hygiene (SPEC §7): what the upstream may see of a request and the client of a response.
//!
//! Pure functions over `HeaderMap`s, applied in a fixed order so that nothing a client sends can remove,
//! spoof or shadow a header the gateway sets: hop-by-hop headers and every header named in `Connection`
//! go first; then spoofable names (inbound `X-Permgate-*` in any spelling, gateway-set names from an
//! untrusted peer, credentials); only then does the gateway add its own headers. Names are compared
//! "normalised": lowercase with `_` read as `-`, because many upstream frameworks (CGI, WSGI, PHP, some
//! Node servers) fold the two spellings together.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::trace_context;
use crate::policy::PrincipalKind;

/// What a (normalised) request header name is to the hygiene: one `match` per name, which compiles to a
/// length switch and a comparison or two, instead of a scan of several lists per header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameClass {
    /// The hop-by-hop headers of RFC 9110 §7.6.1, plus the legacy `Proxy-Connection` and `Keep-Alive`.
    HopByHop,
    /// Carries a credential: removed before forwarding unless `forward_credentials`.
    Credential,
    /// Set by the gateway whoever the peer is (`X-Request-Id`, and `X-Forwarded-For`, which a trusted peer's
    /// value only extends).
    GatewaySet,
    /// Set by the gateway unless a trusted peer sent it (`X-Forwarded-Proto`, `X-Forwarded-Host`).
    GatewayDefault,
    /// Another client-address claim upstream frameworks commonly believe; the gateway does not set it, so
    /// from an untrusted peer it is dropped rather than passed on as if vouched for.
    ClientClaim,
    /// `Host`: the upstream client sets it to the upstream's authority.
    Host,
    /// `X-Permgate-*` (and `X-Permgate`): only the gateway sets these.
    Permgate,
    /// W3C Trace Context (`traceparent`, `tracestate`): passed on unchanged when the `traceparent` is valid,
    /// both removed when it is not ([`super::trace_context`]).
    TraceContext,
    Other,
}

fn classify(normal: &str) -> NameClass {
    match normal {
        "connection"
        | "keep-alive"
        | "proxy-connection"
        | "proxy-authenticate"
        | "proxy-authorization"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "upgrade"
        // An h2c upgrade offer's settings: meaningful for one hop only, and never forwarded.
        | "http2-settings" => NameClass::HopByHop,
        "authorization" | "x-auth-email" | "x-auth-key" => NameClass::Credential,
        "x-forwarded-for" | "x-request-id" => NameClass::GatewaySet,
        "x-forwarded-proto" | "x-forwarded-host" => NameClass::GatewayDefault,
        _ if is_client_claim(normal) => NameClass::ClientClaim,
        "host" => NameClass::Host,
        "x-permgate" => NameClass::Permgate,
        "traceparent" | "tracestate" => NameClass::TraceContext,
        _ if normal.starts_with(PERMGATE_PREFIX) => NameClass::Permgate,
        _ => NameClass::Other,
    }
}

/// The claims about the original request that some proxy in front may make and some upstream framework
/// believes, which the gateway does not set itself: from an untrusted peer they are dropped (never passed on
/// as if a proxy had vouched for them), in the `_` spelling always. Matched on the normalised name.
///
/// - the client's address: `Forwarded`, `X-Real-IP`, `True-Client-IP` (Akamai, Cloudflare Enterprise),
///   `CF-Connecting-IP` / `CF-Connecting-IPv6` (what an API behind Cloudflare believes), `X-Client-IP`,
///   `X-Cluster-Client-IP`, `Fastly-Client-IP`, `X-Forwarded`, `Forwarded-For`, `X-Originating-IP`,
///   `X-Remote-IP`, `X-Remote-Addr`, `X-ProxyUser-IP`, `Client-IP`, `X-Envoy-External-Address`,
///   `X-Azure-ClientIP`, `X-Azure-SocketIP`;
/// - its scheme, port and host: `X-Forwarded-Port`, `X-Forwarded-Scheme`, `X-Forwarded-Ssl`,
///   `Front-End-Https`, `X-Url-Scheme`, `CF-Visitor`, `X-Forwarded-Server`, `X-Host`, `X-HTTP-Host-Override`;
/// - its path: `X-Forwarded-Prefix` (Spring's `ForwardedHeaderFilter` and ASP.NET Core's `PathBase` build
///   the request path from it), `X-Forwarded-Path`, `X-Forwarded-Uri`, `X-Original-URI`, `X-Original-Path`,
///   `X-Envoy-Original-Path`. (The target *overrides* `X-Original-URL` and `X-Rewrite-URL`, which make some
///   back ends serve another path, are refused outright with the method overrides: `routes::target`.)
pub const CLIENT_CLAIMS: [&str; 33] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-forwarded",
    "forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "client-ip",
    "x-envoy-external-address",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-forwarded-port",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "cf-visitor",
    "x-forwarded-server",
    "x-host",
    "x-http-host-override",
    "x-forwarded-prefix",
    "x-forwarded-path",
    "x-forwarded-uri",
    "x-original-uri",
    "x-original-path",
    "x-envoy-original-path",
];

/// Whether a normalised name is one of [`CLIENT_CLAIMS`] (a `match`, which compiles to a length switch and a
/// comparison or two; a test checks it against the list).
fn is_client_claim(normal: &str) -> bool {
    matches!(
        normal,
        "forwarded"
            | "x-real-ip"
            | "true-client-ip"
            | "cf-connecting-ip"
            | "cf-connecting-ipv6"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "fastly-client-ip"
            | "x-forwarded"
            | "forwarded-for"
            | "x-originating-ip"
            | "x-remote-ip"
            | "x-remote-addr"
            | "x-proxyuser-ip"
            | "client-ip"
            | "x-envoy-external-address"
            | "x-azure-clientip"
            | "x-azure-socketip"
            | "x-forwarded-port"
            | "x-forwarded-scheme"
            | "x-forwarded-ssl"
            | "front-end-https"
            | "x-url-scheme"
            | "cf-visitor"
            | "x-forwarded-server"
            | "x-host"
            | "x-http-host-override"
            | "x-forwarded-prefix"
            | "x-forwarded-path"
            | "x-forwarded-uri"
            | "x-original-uri"
            | "x-original-path"
            | "x-envoy-original-path"
    )
}

/// The prefix of the identity headers only the gateway may set.
const PERMGATE_PREFIX: &str = "x-permgate-";

/// The identity header names sent upstream.
pub const PRINCIPAL: HeaderName = HeaderName::from_static("x-permgate-principal");
/// The token id of a token principal.
pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-permgate-token-id");
/// The account of the resource the request was authorized on.
pub const ACCOUNT: HeaderName = HeaderName::from_static("x-permgate-account");
/// The request id, on forwarded requests, forwarded responses and the gateway's own answers.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Who the gateway decided the caller is: the identity headers' values, each copied once out of the
/// snapshot into the value that is sent. A value that cannot be a header value is left out (compiled ids
/// have no control characters, so that does not happen for a valid config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `user:<id>` or `account:<id>`.
    pub principal: Option<HeaderValue>,
    /// The token's id, for token principals.
    pub token_id: Option<HeaderValue>,
    /// The account of the resource the request targets.
    pub account: Option<HeaderValue>,
}

// === impl Identity ===

impl Identity {
    /// The values for a principal (its kind and id), its token id and the account acted in.
    pub fn new(
        principal: Option<(PrincipalKind, &str)>,
        token_id: Option<&str>,
        account: Option<&str>,
    ) -> Self {
        let principal = principal.and_then(|(kind, id)| {
            let kind = kind.as_str();
            let mut value = Vec::with_capacity(kind.len() + 1 + id.len());
            value.extend_from_slice(kind.as_bytes());
            value.push(b':');
            value.extend_from_slice(id.as_bytes());
            HeaderValue::try_from(value).ok()
        });
        let value = |text: &str| HeaderValue::from_str(text).ok();
        Self {
            principal,
            token_id: token_id.and_then(value),
            account: account.and_then(value),
        }
    }
}

/// Everything the request hygiene needs besides the headers themselves.
#[derive(Debug, Clone)]
pub struct ForwardContext<'a> {
    pub identity: Identity,
    pub request_id: &'a HeaderValue,
    /// The TCP peer's address, as text (formatted once per connection).
    pub peer_ip: &'a HeaderValue,
    /// Whether the peer is in `trusted_proxies` (its `X-Forwarded-*` are believed and extended).
    pub peer_trusted: bool,
    /// Whether the inbound connection was TLS (`X-Forwarded-Proto`).
    pub inbound_tls: bool,
    /// The inbound `Host` (HTTP/1.1) or `:authority` (HTTP/2), for `X-Forwarded-Host`.
    pub inbound_host: Option<HeaderValue>,
    pub forward_credentials: bool,
    /// The upstream's own `Authorization` (`upstream.auth`), for a request the gateway authorized: set after
    /// every client credential header is removed, whatever `forward_credentials` says.
    pub upstream_authorization: Option<HeaderValue>,
    /// A WebSocket handshake the gateway carries: the upstream gets `Upgrade: websocket` and
    /// `Connection: upgrade` after the hop-by-hop removal.
    pub websocket: bool,
}

/// The name as upstream frameworks may read it: lowercase (`HeaderName` already is) with `_` as `-`;
/// `Cow::Owned` exactly when the name has a `_`.
fn normalised(name: &HeaderName) -> Cow<'_, str> {
    let text = name.as_str();
    if text.as_bytes().contains(&b'_') {
        Cow::Owned(text.replace('_', "-"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Removes hop-by-hop headers and every header named in `Connection`. With `keep_upgrade` (a WebSocket
/// handshake the gateway carries: see [`super::upgrade`]), `Upgrade: websocket` and `Connection: upgrade` are
/// set afterwards, whatever the other side had sent.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    remove_hop_by_hop_and(headers, keep_upgrade, |_, _| false);
}

/// Which of `X-Forwarded-Proto` and `X-Forwarded-Host` a removal pass left in the map, and whether it left a
/// `traceparent` (checked after the pass, so that a request without one pays no lookup).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct KeptDefaults {
    proto: bool,
    host: bool,
    traceparent: bool,
}

/// One pass over the names: removes the hop-by-hop headers, every header named in `Connection`, and every
/// header that `also_doomed` condemns (given its name's class and whether it is spelled with `_`); then puts
/// the WebSocket handshake when `keep_upgrade`. Removal is order-free, so one pass removes exactly what
/// separate passes would. Returns which `X-Forwarded-Proto` / `-Host` headers are left (so that the caller
/// need not look them up again).
fn remove_hop_by_hop_and(
    headers: &mut HeaderMap,
    keep_upgrade: bool,
    mut also_doomed: impl FnMut(NameClass, bool) -> bool,
) -> KeptDefaults {
    // The lists are filled in place (`extend`), not collected: a collected `SmallVec` is returned by value,
    // a copy of its whole inline array each time.
    let mut named: SmallVec<[HeaderName; 4]> = SmallVec::new();
    named.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|item| HeaderName::from_bytes(item.trim().as_bytes()).ok()),
    );
    let mut kept = KeptDefaults::default();
    let mut doomed: SmallVec<[HeaderName; 8]> = SmallVec::new();
    doomed.extend(
        headers
            .keys()
            .filter(|name| {
                let normal = normalised(name);
                let class = classify(&normal);
                let underscored = matches!(normal, Cow::Owned(_));
                // The hop-by-hop names are lowercase `-` spellings; an `_` spelling is not hop-by-hop.
                let doomed = (class == NameClass::HopByHop && !underscored)
                    || named.contains(name)
                    || also_doomed(class, underscored);
                if !doomed && class == NameClass::GatewayDefault {
                    kept.proto |= **name == FORWARDED_PROTO;
                    kept.host |= **name == FORWARDED_HOST;
                }
                if !doomed && class == NameClass::TraceContext {
                    kept.traceparent |= **name == trace_context::TRACEPARENT;
                }
                doomed
            })
            .cloned(),
    );
    for name in &doomed {
        headers.remove(name);
    }
    if keep_upgrade {
        super::upgrade::set_websocket_handshake(headers);
    }
    kept
}

/// Applies the whole request hygiene, in order, and adds the gateway's headers. `Host` is removed: the
/// upstream client sets it to the upstream's authority.
pub fn prepare_request(headers: &mut HeaderMap, ctx: ForwardContext<'_>) {
    // What the trusted proxy in front already said, kept before anything is removed.
    let prior_forwarded_for = ctx
        .peer_trusted
        .then(|| joined(headers, &FORWARDED_FOR))
        .flatten();

    // 1. Hop-by-hop (so that `Connection: x-permgate-principal` can only remove the client's own) and
    // 2. spoofable names, removed in one pass before anything is added.
    // The request id is always the gateway's (which is the trusted peer's when it sent a usable one), and
    // `X-Forwarded-For` the gateway's too (extending a trusted peer's, read above).
    let kept = remove_hop_by_hop_and(headers, ctx.websocket, |class, underscored| {
        match class {
            NameClass::Permgate | NameClass::Host | NameClass::GatewaySet => true,
            // From an untrusted peer never believed; in the `_` spelling never legitimate (a proxy in front
            // uses `-`), so dropped even from a trusted one.
            NameClass::GatewayDefault | NameClass::ClientClaim => !ctx.peer_trusted || underscored,
            // The `_` spellings were not what was authorized, so they never pass.
            NameClass::Credential => {
                !ctx.forward_credentials || ctx.upstream_authorization.is_some() || underscored
            }
            // The `_` spellings of hop-by-hop names (`Transfer_Encoding`, `HTTP2_Settings`; the `-` ones are
            // removed whatever this says): never legitimate, and an upstream that folds `_` into `-` (CGI,
            // WSGI) would read them as the real thing.
            NameClass::HopByHop => underscored,
            NameClass::TraceContext | NameClass::Other => false,
        }
    });
    // A `traceparent` that is not valid is not passed on, nor the `tracestate` that goes with it.
    if kept.traceparent && !trace_context::is_valid(headers) {
        headers.remove(trace_context::TRACEPARENT);
        headers.remove(trace_context::TRACESTATE);
    }

    // 3. The gateway's own headers.
    let identity = ctx.identity;
    for (name, value) in [
        (PRINCIPAL, identity.principal),
        (TOKEN_ID, identity.token_id),
        (ACCOUNT, identity.account),
        (REQUEST_ID, Some(ctx.request_id.clone())),
        (header::AUTHORIZATION, ctx.upstream_authorization),
    ] {
        if let Some(value) = value {
            headers.insert(name, value);
        }
    }
    let peer = ctx.peer_ip;
    let forwarded_for = match (prior_forwarded_for, peer.to_str()) {
        (Some(prior), Ok(peer)) if !prior.is_empty() => {
            HeaderValue::from_str(&format!("{prior}, {peer}")).ok()
        }
        _ => Some(peer.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(FORWARDED_FOR, value);
    }
    if !kept.proto {
        let proto = if ctx.inbound_tls { "https" } else { "http" };
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !kept.host
        && let Some(host) = ctx
            .inbound_host
            .as_ref()
            .filter(|host| is_host_authority(host))
    {
        headers.insert(FORWARDED_HOST, host.clone());
    }
}

/// Whether an inbound `Host` / `:authority` is a plain `host[:port]` (RFC 9110 §7.2): no userinfo, path,
/// spaces or other junk that an upstream building absolute URLs from `X-Forwarded-Host` would trust.
fn is_host_authority(host: &HeaderValue) -> bool {
    let bytes = host.as_bytes();
    !bytes.is_empty()
        && !bytes.contains(&b'@')
        && http::uri::Authority::try_from(bytes)
            .is_ok_and(|authority| authority.as_str().len() == bytes.len())
}

/// Response hygiene: hop-by-hop headers go, the request id is set. For a relayed `101 Switching Protocols`
/// (only ever a switch to exactly `websocket`) the handshake is `Upgrade: websocket`, `Connection: upgrade`.
pub fn prepare_response(
    headers: &mut HeaderMap,
    switching_protocols: bool,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers, switching_protocols);
    headers.insert(REQUEST_ID, request_id.clone());
}

/// All values of `name` joined with `, ` (`None` when one is not text).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out = String::new();
    for value in headers.get_all(name) {
        let text = value.to_str().ok()?.trim();
        if text.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(text);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn identity() -> Identity {
        Identity::new(Some((PrincipalKind::User, "u1")), Some("t1"), Some("a1"))
    }

    static RID: HeaderValue = HeaderValue::from_static("rid-1");
    static PEER: HeaderValue = HeaderValue::from_static("203.0.113.7");

    #[test]
    fn identity_values_are_the_ids_and_a_value_that_cannot_be_a_header_is_left_out() {
        let identity = Identity::new(Some((PrincipalKind::Account, "acc-1")), None, Some("a\nb"));
        assert_eq!(
            identity.principal,
            Some(HeaderValue::from_static("account:acc-1"))
        );
        assert_eq!((identity.token_id, identity.account), (None, None));
        assert_eq!(
            Identity::new(Some((PrincipalKind::User, "bad\r")), None, None).principal,
            None
        );
    }

    fn context(identity: Identity, trusted: bool) -> ForwardContext<'static> {
        ForwardContext {
            identity,
            request_id: &RID,
            peer_ip: &PEER,
            peer_trusted: trusted,
            inbound_tls: false,
            inbound_host: Some(HeaderValue::from_static("gw.example")),
            forward_credentials: false,
            upstream_authorization: None,
            websocket: false,
        }
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).and_then(|value| value.to_str().ok())
    }

    #[test]
    fn spoofed_identity_headers_are_replaced_in_every_spelling() {
        let identity = identity();
        let mut headers = map(&[
            ("X-Permgate-Principal", "user:admin"),
            ("x_permgate_principal", "user:admin"),
            ("X_PERMGATE-ACCOUNT", "a-evil"),
            ("x-permgate-anything", "1"),
            ("x-permgate", "1"),
            ("accept", "application/json"),
        ]);
        prepare_request(&mut headers, context(identity.clone(), false));
        assert_eq!(get(&headers, "x-permgate-principal"), Some("user:u1"));
        assert_eq!(headers.get_all("x-permgate-principal").iter().count(), 1);
        assert_eq!(get(&headers, "x-permgate-account"), Some("a1"));
        assert_eq!(get(&headers, "x-permgate-token-id"), Some("t1"));
        assert!(!headers.contains_key("x_permgate_principal"));
        assert!(!headers.contains_key("x_permgate-account"));
        assert!(!headers.contains_key("x-permgate-anything"));
        assert!(!headers.contains_key("x-permgate"));
        assert_eq!(get(&headers, "accept"), Some("application/json"));
    }

    #[test]
    fn connection_named_headers_go_before_the_gateway_adds_its_own() {
        let identity = identity();
        let mut headers = map(&[
            ("connection", "keep-alive, X-Permgate-Principal, x-custom"),
            ("x-custom", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic abc"),
            ("x-kept", "yes"),
        ]);
        prepare_request(&mut headers, context(identity.clone(), false));
        assert_eq!(get(&headers, "x-permgate-principal"), Some("user:u1"));
        for gone in [
            "connection",
            "x-custom",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(!headers.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(get(&headers, "x-kept"), Some("yes"));
    }

    #[test]
    fn credentials_are_removed_unless_forwarded_and_underscores_never_pass() {
        let identity = identity();
        let inbound = map(&[
            ("authorization", "Bearer secret"),
            ("x-auth-email", "a@b.c"),
            ("x-auth-key", "k"),
            ("x_auth_key", "k2"),
            ("authorization_", "x"),
        ]);
        let mut headers = inbound.clone();
        prepare_request(&mut headers, context(identity.clone(), false));
        for gone in ["authorization", "x-auth-email", "x-auth-key", "x_auth_key"] {
            assert!(!headers.contains_key(gone), "{gone} should be removed");
        }
        let mut headers = inbound;
        let mut forwarding = context(identity.clone(), false);
        forwarding.forward_credentials = true;
        prepare_request(&mut headers, forwarding);
        assert_eq!(get(&headers, "authorization"), Some("Bearer secret"));
        assert_eq!(get(&headers, "x-auth-key"), Some("k"));
        assert!(!headers.contains_key("x_auth_key"));
    }

    /// With the upstream's own credential, every client credential goes (any spelling, whatever
    /// `forward_credentials` says, even one the client names in `Connection`) and the gateway's is the one
    /// `Authorization` the upstream sees.
    #[test]
    fn the_upstream_credential_replaces_every_client_credential() {
        let upstream = HeaderValue::from_static("Bearer upstream-secret");
        for forward_credentials in [false, true] {
            let mut headers = map(&[
                ("connection", "authorization"),
                ("authorization", "Bearer pgt_client"),
                ("Authorization", "Basic x"),
                ("x-auth-email", "a@b.c"),
                ("X-Auth-Key", "0123456789abcdef0123456789abcdef01234"),
                ("x_auth_key", "k2"),
                ("AUTHORIZATION_", "x"),
                ("accept", "*/*"),
            ]);
            let mut ctx = context(identity(), false);
            ctx.forward_credentials = forward_credentials;
            ctx.upstream_authorization = Some(upstream.clone());
            prepare_request(&mut headers, ctx);
            assert_eq!(
                headers.get_all("authorization").iter().collect::<Vec<_>>(),
                [&upstream]
            );
            for gone in ["x-auth-email", "x-auth-key", "x_auth_key", "connection"] {
                assert!(!headers.contains_key(gone), "{gone}");
            }
            assert_eq!(get(&headers, "accept"), Some("*/*"));
        }
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
        let identity = identity();
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x_forwarded_for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-request-id", "spoofed"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "1.1.1.1"),
            ("host", "gw.example"),
        ]);
        prepare_request(&mut headers, context(identity.clone(), false));
        assert_eq!(get(&headers, "x-forwarded-for"), Some("203.0.113.7"));
        assert!(!headers.contains_key("x_forwarded_for"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("gw.example"));
        assert_eq!(get(&headers, "x-request-id"), Some("rid-1"));
        assert!(!headers.contains_key("host"));
        assert!(!headers.contains_key("forwarded"));
        assert!(!headers.contains_key("x-real-ip"));
    }

    #[test]
    fn a_malformed_inbound_host_is_not_relayed_as_x_forwarded_host() {
        let identity = identity();
        for (host, relayed) in [
            ("gw.example:8443", true),
            ("[2001:db8::1]:443", true),
            ("evil@gw.example", false),
            ("gw.example evil", false),
            ("gw.example/path", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            let mut ctx = context(identity.clone(), false);
            ctx.inbound_host = Some(HeaderValue::from_str(host).unwrap());
            prepare_request(&mut headers, ctx);
            assert_eq!(
                get(&headers, "x-forwarded-host"),
                relayed.then_some(host),
                "{host:?}"
            );
        }
    }

    #[test]
    fn forwarded_headers_from_a_trusted_peer_are_extended() {
        let identity = identity();
        let mut headers = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example"),
        ]);
        prepare_request(&mut headers, context(identity.clone(), true));
        assert_eq!(
            get(&headers, "x-forwarded-for"),
            Some("1.1.1.1, 10.0.0.1, 203.0.113.7")
        );
        assert!(!headers.contains_key("x_forwarded_for"));
        assert_eq!(get(&headers, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&headers, "x-forwarded-host"), Some("api.example"));
    }

    #[test]
    fn a_websocket_upgrade_keeps_its_handshake() {
        let identity = Identity::default();
        let mut headers = map(&[
            ("connection", "Upgrade, x-secret, HTTP2-Settings"),
            ("upgrade", "WebSocket"),
            ("x-secret", "1"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let mut ctx = context(identity.clone(), false);
        ctx.websocket = true;
        prepare_request(&mut headers, ctx);
        assert_eq!(get(&headers, "connection"), Some("upgrade"));
        assert_eq!(get(&headers, "upgrade"), Some("websocket"));
        assert!(!headers.contains_key("x-secret"));
        assert!(headers.contains_key("sec-websocket-key"));
        assert_eq!(headers.get_all("upgrade").iter().count(), 1);
        assert!(!headers.contains_key("http2-settings"));
        assert!(!headers.contains_key("x-permgate-principal"));
    }

    #[test]
    fn an_ignored_h2c_offer_reaches_the_upstream_as_a_plain_request() {
        // Whether or not `Connection` names them, the offer's headers never pass.
        for connection in ["Upgrade, HTTP2-Settings", "keep-alive"] {
            let mut headers = map(&[
                ("connection", connection),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAAQAAP__"),
                ("HTTP2_Settings", "AAMAAABkAAQAAP__"),
            ]);
            prepare_request(&mut headers, context(identity(), false));
            for gone in ["connection", "upgrade", "http2-settings"] {
                assert!(!headers.contains_key(gone), "{gone} with {connection:?}");
            }
        }
    }

    #[test]
    fn every_client_claim_is_dropped_from_an_untrusted_peer_in_any_spelling() {
        for claim in CLIENT_CLAIMS {
            assert_eq!(classify(claim), NameClass::ClientClaim, "{claim}");
            let upper = claim.to_ascii_uppercase();
            let underscored = claim.replace('-', "_");
            let mut spellings = vec![(claim.to_string(), true), (upper, true)];
            if underscored != claim {
                spellings.push((underscored, false));
            }
            for (name, from_trusted) in spellings {
                let mut headers = map(&[(&name, "evil")]);
                prepare_request(&mut headers, context(identity(), false));
                assert!(
                    !headers.contains_key(name.as_str()),
                    "{name} from an untrusted peer"
                );
                let mut headers = map(&[(&name, "10.0.0.9")]);
                prepare_request(&mut headers, context(identity(), true));
                assert_eq!(
                    headers.contains_key(name.as_str()),
                    from_trusted,
                    "{name} from a trusted peer"
                );
            }
        }
        // Names that merely resemble a claim are left alone.
        let mut headers = map(&[
            ("x-forwarded-prefixes", "1"),
            ("client-ips", "1"),
            ("content-type", "a/b"),
        ]);
        prepare_request(&mut headers, context(identity(), false));
        for kept in ["x-forwarded-prefixes", "client-ips", "content-type"] {
            assert!(headers.contains_key(kept), "{kept}");
        }
    }

    #[test]
    fn responses_lose_hop_by_hop_headers_and_get_the_request_id() {
        let id = HeaderValue::from_static("rid-9");
        let mut headers = map(&[
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
            ("keep-alive", "timeout=5"),
            ("x-request-id", "upstream"),
            ("content-type", "application/json"),
        ]);
        prepare_response(&mut headers, false, &id);
        assert!(!headers.contains_key("connection"));
        assert!(!headers.contains_key("x-internal"));
        assert!(!headers.contains_key("keep-alive"));
        assert_eq!(get(&headers, "x-request-id"), Some("rid-9"));
        assert_eq!(get(&headers, "content-type"), Some("application/json"));

        let mut switching = map(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        prepare_response(&mut switching, true, &id);
        assert_eq!(get(&switching, "upgrade"), Some("websocket"));
        assert_eq!(get(&switching, "connection"), Some("upgrade"));
    }
}
