//! The protocol-upgrade rules (SPEC §7): which `Upgrade` offers the gateway carries, what of them the upstream
//! sees, and which `101 Switching Protocols` it relays. Pure functions over header maps.
//!
//! The gateway authorizes one HTTP request. Once a connection switches protocol it is a raw tunnel, and
//! anything the client sends through it reaches the upstream unchecked; so the only switch the gateway allows
//! is the one whose protocol it understands to be a single authorized exchange: WebSocket. An upstream that
//! switched to anything else (`h2c`, say) would read every request the client liked over the tunnel.
//!
//! - **An offer** is an HTTP/1.1 request with an `Upgrade` header and the `upgrade` option in `Connection`
//!   (RFC 9110 §7.8: without the option, or on HTTP/1.0, `Upgrade` is not an offer and is dropped like any
//!   hop-by-hop header).
//! - **A WebSocket offer** lists exactly one protocol, `websocket` (any case), on a `GET` (RFC 6455 §4.1).
//!   The upstream receives `Upgrade: websocket` and `Connection: upgrade`, whatever spelling the client used,
//!   and the end-to-end `Sec-WebSocket-*` headers.
//! - **An offer that lists `websocket` beside anything else**, or on another method, is refused (400): no
//!   real WebSocket client sends one, and which protocol the upstream would pick cannot be known in advance.
//! - **Any other offer** (`h2c` from `curl --http2`, `TLS/1.0`) is ignored, as RFC 9110 §7.8 lets a server do:
//!   `Upgrade` and `HTTP2-Settings` are dropped and the request is served as plain HTTP/1.1, so such clients
//!   keep working and nothing of the offer reaches the upstream.
//! - **A `101`** is relayed only for a WebSocket offer and only when the upstream switched to exactly
//!   `websocket`; anything else is a failed upstream exchange (502) and the client's connection is closed.
//!
//! HTTP/2 carries no `Upgrade` (RFC 9113 §8.2.2: the h2 layer refuses such a request), and `CONNECT` is
//! refused before this module is asked (the gateway is not a forward proxy).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

/// `HTTP2-Settings` (RFC 7540 §3.2.1): the settings of an h2c upgrade offer; never forwarded.
pub const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// What a request's `Upgrade` header asks for, as far as the gateway is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No offer (or one the gateway ignores): a plain request; `Upgrade` is dropped as hop-by-hop.
    None,
    /// A WebSocket handshake: forwarded with `Upgrade: websocket` once authorized.
    WebSocket,
}

/// Why an upgrade offer was refused; `Display` goes into the `error_chain` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("Upgrade must offer websocket alone")]
    MixedProtocols,
    #[error("a WebSocket upgrade must be a GET request")]
    WebSocketNotGet,
}

/// Whether the comma-separated header `name` lists `token`, case-insensitively.
pub fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|item| item.eq_ignore_ascii_case(token))
}

/// The items of every `name` line, trimmed, empty items skipped. A value that is not text counts as one
/// item that is nothing the gateway knows (so it can never look like `websocket`).
fn tokens<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("\u{fffd}").split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Classifies the upgrade offer of a request (see the module docs for the rules).
pub fn offer(
    version: Version,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Offer, UpgradeError> {
    if version != Version::HTTP_11
        || !headers.contains_key(header::UPGRADE)
        || !lists_token(headers, &header::CONNECTION, "upgrade")
    {
        return Ok(Offer::None);
    }
    let mut websocket = 0usize;
    let mut others = 0usize;
    for item in tokens(headers, &header::UPGRADE) {
        if item.eq_ignore_ascii_case("websocket") {
            websocket += 1;
        } else {
            others += 1;
        }
    }
    match (websocket, others) {
        (0, _) => Ok(Offer::None),
        (1, 0) if method == Method::GET => Ok(Offer::WebSocket),
        (1, 0) => Err(UpgradeError::WebSocketNotGet),
        _ => Err(UpgradeError::MixedProtocols),
    }
}

/// The handshake headers the upstream receives for a WebSocket offer, set after the hop-by-hop removal (which
/// removed the client's `Upgrade` and `Connection` in whatever spelling).
pub fn set_websocket_handshake(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Whether an upstream's `101 Switching Protocols` switched to exactly `websocket` (`Upgrade` lists that one
/// protocol and `Connection` the `upgrade` option), the only switch the gateway relays.
pub fn switched_to_websocket(headers: &HeaderMap) -> bool {
    let mut protocols = tokens(headers, &header::UPGRADE);
    let only_websocket = protocols
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case("websocket"))
        && protocols.next().is_none();
    only_websocket && lists_token(headers, &header::CONNECTION, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        headers
    }

    fn get(pairs: &[(&str, &str)]) -> Result<Offer, UpgradeError> {
        offer(Version::HTTP_11, &Method::GET, &map(pairs))
    }

    #[test]
    fn a_websocket_offer_is_exactly_one_websocket_protocol_on_a_get() {
        assert_eq!(
            get(&[("connection", "Upgrade"), ("upgrade", "websocket")]),
            Ok(Offer::WebSocket)
        );
        assert_eq!(
            get(&[
                ("connection", "keep-alive, upgrade"),
                ("upgrade", "WebSocket")
            ]),
            Ok(Offer::WebSocket)
        );
        assert_eq!(
            offer(
                Version::HTTP_11,
                &Method::POST,
                &map(&[("connection", "upgrade"), ("upgrade", "websocket")])
            ),
            Err(UpgradeError::WebSocketNotGet)
        );
    }

    #[test]
    fn websocket_beside_another_protocol_is_refused_in_one_line_or_several() {
        for pairs in [
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")][..],
            &[("connection", "upgrade"), ("upgrade", "h2c,websocket")],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "websocket"),
            ],
            &[("connection", "upgrade"), ("upgrade", "websocket, TLS/1.2")],
        ] {
            assert_eq!(get(pairs), Err(UpgradeError::MixedProtocols), "{pairs:?}");
        }
    }

    #[test]
    fn other_offers_and_non_offers_are_ignored() {
        for pairs in [
            &[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", "AAMAAABkAAQAAP__"),
            ][..],
            &[("connection", "upgrade"), ("upgrade", "TLS/1.0")],
            &[("connection", "upgrade"), ("upgrade", "websocket/13")],
            // Not an offer: `Connection` does not name the option.
            &[("upgrade", "websocket")],
            &[("connection", "keep-alive"), ("upgrade", "websocket, h2c")],
            &[("connection", "upgrade")],
            // An `Upgrade` line that is not text cannot be read as an offer of anything: it is dropped.
            &[("connection", "upgrade"), ("upgrade", "websocket, \u{80}")],
        ] {
            assert_eq!(get(pairs), Ok(Offer::None), "{pairs:?}");
        }
        // HTTP/1.0 has no upgrades.
        let pairs = map(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]);
        assert_eq!(
            offer(Version::HTTP_10, &Method::GET, &pairs),
            Ok(Offer::None)
        );
    }

    #[test]
    fn only_a_switch_to_exactly_websocket_is_relayed() {
        assert!(switched_to_websocket(&map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket")
        ])));
        for pairs in [
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ],
            &[("upgrade", "websocket")],
            &[("connection", "upgrade")],
            &[],
        ] {
            assert!(!switched_to_websocket(&map(pairs)), "{pairs:?}");
        }
    }

    #[test]
    fn the_forwarded_handshake_is_exactly_websocket() {
        let mut headers = map(&[("x-kept", "1")]);
        set_websocket_handshake(&mut headers);
        assert_eq!(headers.get_all(header::UPGRADE).iter().count(), 1);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }
}
