//! Request ids: one per request, on the forwarded request, every response and the logs.
//!
//! A fresh id is 128 random bits in hex. An inbound `X-Request-Id` is adopted only from a trusted proxy
//! (so a chain of proxies shares one id) and only when it is short, plain text; otherwise it is ignored.

use http::{HeaderMap, HeaderValue};

/// The longest inbound request id adopted from a trusted proxy.
const MAX_INBOUND_LEN: usize = 128;

/// A new random request id: 32 lowercase hex digits.
pub fn generate() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut random = rand::random::<u128>();
    let mut digits = [0u8; 32];
    for digit in digits.iter_mut().rev() {
        let nibble = usize::from(u8::try_from(random & 0xf).unwrap_or(0));
        *digit = HEX.get(nibble).copied().unwrap_or(b'0');
        random >>= 4;
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&digits)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-request-id"))
}

/// The request id to use: the trusted peer's when it sent a usable one, else a fresh one. Always plain
/// ASCII (so [`HeaderValue::to_str`] succeeds on it).
pub fn choose(headers: &HeaderMap, peer_trusted: bool) -> HeaderValue {
    if peer_trusted
        && let Some(inbound) = headers.get("x-request-id")
        && inbound.to_str().is_ok_and(is_usable)
    {
        return inbound.clone();
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
        assert!(
            a.as_bytes()
                .iter()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        );
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
        assert!(choose(&headers, true).to_str().is_ok());
    }
}
