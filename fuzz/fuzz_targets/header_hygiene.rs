//! Fuzzes the request header hygiene (`proxy::headers::prepare_request`): whatever headers a client sends,
//! in whatever spelling, the upstream gets exactly the gateway's identity and forwarding headers, no
//! hop-by-hop header (nor `HTTP2-Settings`), no `Upgrade` but an exact `websocket` on a WebSocket handshake,
//! no credential unless forwarded (and never an `_` spelling), and from an untrusted peer no claim about the
//! original request.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use permgate::policy::PrincipalKind;
use permgate::proxy::headers::{CLIENT_CLAIMS, ForwardContext, Identity, prepare_request};

/// Names worth spelling many ways; a record may also carry a name of its own.
const NAMES: [&str; 16] = [
    "connection",
    "upgrade",
    "http2-settings",
    "transfer-encoding",
    "keep-alive",
    "x-permgate-principal",
    "x-permgate-account",
    "authorization",
    "x-auth-key",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-request-id",
    "cf-connecting-ip",
    "x-forwarded-prefix",
    "forwarded",
    "accept",
];

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

fn normalised(name: &str) -> String {
    name.replace('_', "-")
}

/// A spelling of `name` chosen by `how`: as is, upper case, `_` for `-`, or mixed.
fn spelled(name: &str, how: u8) -> String {
    match how % 4 {
        0 => name.to_string(),
        1 => name.to_ascii_uppercase(),
        2 => name.replace('-', "_"),
        _ => name
            .char_indices()
            .map(|(index, c)| match (index % 2, c) {
                (0, '-') => '_',
                (1, c) => c.to_ascii_uppercase(),
                (_, c) => c,
            })
            .collect(),
    }
}

static RID: HeaderValue = HeaderValue::from_static("rid-fuzz");
static PEER: HeaderValue = HeaderValue::from_static("203.0.113.7");
static UPSTREAM: HeaderValue = HeaderValue::from_static("Bearer upstream-secret");

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let trusted = flags & 1 != 0;
    let forward_credentials = flags & 2 != 0;
    let websocket = flags & 4 != 0;
    // The gateway holds the upstream's own credential: it replaces every client credential.
    let upstream_auth = flags & 8 != 0;
    // Records separated by 0x00: [selector, spelling, value…]; selector 0xff: "name:value" of its own.
    let mut headers = HeaderMap::new();
    for record in rest.split(|byte| *byte == 0) {
        let [selector, how, value @ ..] = record else {
            continue;
        };
        let (name, value) = if *selector == 0xff {
            let text = String::from_utf8_lossy(value);
            let Some((name, value)) = text.split_once(':') else {
                continue;
            };
            (name.to_string(), value.as_bytes().to_vec())
        } else {
            let name = NAMES[usize::from(*selector) % NAMES.len()];
            (spelled(name, *how), value.to_vec())
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    let identity = Identity::new(Some((PrincipalKind::User, "u1")), Some("t1"), Some("a1"));
    prepare_request(
        &mut headers,
        ForwardContext {
            identity,
            request_id: &RID,
            peer_ip: &PEER,
            peer_trusted: trusted,
            inbound_tls: false,
            inbound_host: None,
            forward_credentials,
            upstream_authorization: upstream_auth.then(|| UPSTREAM.clone()),
            websocket,
        },
    );

    for name in headers.keys() {
        let text = name.as_str();
        let normal = normalised(text);
        let underscored = text.contains('_');
        // The family is `X-Permgate` and `X-Permgate-*` (`X-PermgateFoo` is another name).
        if normal == "x-permgate" || normal.starts_with("x-permgate-") {
            assert!(
                [
                    "x-permgate-principal",
                    "x-permgate-token-id",
                    "x-permgate-account"
                ]
                .contains(&text),
                "spoofed {text}"
            );
            assert_eq!(headers.get_all(name).iter().count(), 1, "{text} twice");
        }
        if HOP_BY_HOP.contains(&normal.as_str()) {
            let handshake = websocket
                && ((text == "upgrade" && headers.get_all(name).iter().eq([&"websocket"]))
                    || (text == "connection" && headers.get_all(name).iter().eq([&"upgrade"])));
            assert!(handshake, "hop-by-hop {text} forwarded");
        }
        if upstream_auth
            && ["authorization", "x-auth-email", "x-auth-key"].contains(&normal.as_str())
        {
            assert!(
                text == "authorization" && headers.get_all(name).iter().eq([&UPSTREAM]),
                "client credential {text} forwarded beside the upstream's"
            );
        } else if ["authorization", "x-auth-email", "x-auth-key"].contains(&normal.as_str()) {
            assert!(
                forward_credentials && !underscored,
                "credential {text} forwarded"
            );
        }
        if !trusted || underscored {
            assert!(
                !CLIENT_CLAIMS.contains(&normal.as_str()),
                "claim {text} forwarded (trusted: {trusted})"
            );
        }
    }
    assert_eq!(
        headers
            .get("x-permgate-principal")
            .map(HeaderValue::as_bytes),
        Some(&b"user:u1"[..])
    );
    assert_eq!(headers.get_all("x-request-id").iter().count(), 1);
    assert_eq!(headers.get("x-request-id"), Some(&RID));
    if !trusted {
        assert_eq!(
            headers
                .get_all("x-forwarded-for")
                .iter()
                .collect::<Vec<_>>(),
            [&PEER]
        );
    }
    if upstream_auth {
        assert_eq!(
            headers.get_all("authorization").iter().collect::<Vec<_>>(),
            [&UPSTREAM]
        );
    }
});
