//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` a client sends.
//!
//! The gateway takes no part in tracing (it records no spans and starts no trace): a valid `traceparent` is
//! passed to the upstream unchanged, with its `tracestate`, and its trace id is the `trace_id` field of the
//! request's decision-log line, so that a denial can be found from a trace. A request without one is
//! forwarded without one (the upstream's tracer starts the trace) and logged with `"trace_id":null`.
//!
//! A `traceparent` that is not valid by the specification's parsing rules (§3.2.2 and §3.3, "Versioning of
//! traceparent") is not forwarded: the upstream gets neither it nor its `tracestate` (which the specification
//! says must not be read without a valid parent), as if none had been sent, and the log's `trace_id` is null.
//! Valid means:
//!
//! - exactly one `traceparent` header (two are ambiguous: invalid);
//! - `version-traceid-parentid-flags`, all lowercase hex, of 2, 32, 16 and 2 digits;
//! - a version other than `ff`; version `00` exactly 55 characters long; a later version at least 55, and
//!   if longer, a `-` right after the flags (what follows is that version's business and passed on as sent);
//! - a trace id and a parent id that are not all zeros.

use http::header::{HeaderMap, HeaderName};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`, which goes with its `traceparent`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The length of a version-00 `traceparent` (and of a later version's part that version 00 defines).
const VERSION_00_LEN: usize = 55;

/// The 32 lowercase hex digits of a trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

// === impl TraceId ===

impl TraceId {
    /// The trace id as text.
    pub fn as_str(&self) -> &str {
        // Lowercase hex digits only, by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// The trace id of the request's `traceparent` when it is valid (see the module's rules); `None` when the
/// request has none, or an invalid one, or several.
pub fn trace_id(headers: &HeaderMap) -> Option<TraceId> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse(value.as_bytes())
}

/// Whether the request's `traceparent` may be passed on (see [`trace_id`]).
pub fn is_valid(headers: &HeaderMap) -> bool {
    trace_id(headers).is_some()
}

/// Parses one `traceparent` value: its trace id when valid.
fn parse(value: &[u8]) -> Option<TraceId> {
    let head = value.get(..VERSION_00_LEN)?;
    let (version, rest) = head.split_at(2);
    let (dash_1, rest) = rest.split_at(1);
    let (trace, rest) = rest.split_at(32);
    let (dash_2, rest) = rest.split_at(1);
    let (parent, rest) = rest.split_at(16);
    let (dash_3, flags) = rest.split_at(1);
    let fields_ok = [version, trace, parent, flags]
        .iter()
        .all(|field| field.iter().all(|byte| is_lower_hex(*byte)))
        && [dash_1, dash_2, dash_3].iter().all(|dash| *dash == b"-");
    let length_ok = match (version, value.get(VERSION_00_LEN)) {
        (b"ff", _) => false,
        (b"00", next) => next.is_none(),
        (_, next) => next.is_none_or(|byte| *byte == b'-'),
    };
    let ids_ok = trace.iter().any(|byte| *byte != b'0') && parent.iter().any(|byte| *byte != b'0');
    if !(fields_ok && length_ok && ids_ok) {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(trace);
    Some(TraceId(id))
}

fn is_lower_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn id(value: &str) -> Option<String> {
        parse(value.as_bytes()).map(|id| id.as_str().to_owned())
    }

    #[test]
    fn a_version_00_traceparent_gives_its_trace_id() {
        assert_eq!(
            id(VALID).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        // Any flags byte is fine.
        assert!(id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe").is_some());
    }

    #[test]
    fn what_the_specification_rejects_is_rejected() {
        for bad in [
            "",
            "00",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, and version 00 with anything after the flags.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Wrong lengths, separators and characters.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // A later version: something after the flags must start with `-`.
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00_with_its_extra_fields() {
        for later in [
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next",
        ] {
            assert_eq!(
                id(later).as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{later}"
            );
        }
    }

    #[test]
    fn two_traceparent_headers_are_invalid() {
        let mut headers = HeaderMap::new();
        assert!(trace_id(&headers).is_none());
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(is_valid(&headers));
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(!is_valid(&headers));
    }
}
