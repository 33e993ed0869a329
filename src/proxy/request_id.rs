//! Request ids: one per request, on the forwarded request, every response and the logs.
//!
//! A fresh id is 128 random bits in hex. An inbound `X-Request-Id` is adopted only from a trusted proxy
//! (so a chain of proxies shares one id) and only when it is short, plain text; otherwise it is ignored.

use http::HeaderMap;

/// The longest inbound request id adopted from a trusted proxy.
const MAX_INBOUND_LEN: usize = 128;

/// A new random request id: 32 lowercase hex digits.
pub fn generate() -> String {
    let random = rand::random::<u128>();
    (0..32)
        .rev()
        .map(|nibble| {
            let digit = u32::try_from((random >> (nibble * 4)) & 0xf).unwrap_or(0);
            char::from_digit(digit, 16).unwrap_or('0')
        })
        .collect()
}

/// The request id to use: the trusted peer's when it sent a usable one, else a fresh one.
pub fn choose(headers: &HeaderMap, peer_trusted: bool) -> String {
    if peer_trusted {
        if let Some(inbound) = headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
        {
            if is_usable(inbound) {
                return inbound.to_string();
            }
        }
    }
    generate()
}

/// Printable, no spaces, not too long: safe to log and to echo in a header.
fn is_usable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_INBOUND_LEN
        && id.bytes().all(|byte| {
            byte.is_ascii_alphanumeric()
                || matches!(byte, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_distinct_hex() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_trusted_peer_sets_the_id_and_only_a_sane_one() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(choose(&headers, true), "abc-123");
        assert_ne!(choose(&headers, false), "abc-123");
        headers.insert("x-request-id", "has space".parse().unwrap());
        assert_ne!(choose(&headers, true), "has space");
        headers.insert("x-request-id", "x".repeat(129).parse().unwrap());
        assert_eq!(choose(&headers, true).len(), 32);
    }
}
