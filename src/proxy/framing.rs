//! Request framing checks (SPEC §7): refuse anything two HTTP parsers could frame differently.
//!
//! hyper's HTTP/1 parser already refuses some of these; the gateway checks the headers again itself so the
//! guarantee does not depend on a parser version, and so HTTP/2 requests get the same rule. A refused
//! request is answered 400/6003 (chain 6100) and never forwarded.

use http::HeaderMap;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};

/// Why a request's framing was refused; `Display` goes into the `error_chain` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding headers")]
    LengthAndEncoding,
    #[error("several differing Content-Length values")]
    DifferingLengths,
    #[error("malformed Content-Length header")]
    MalformedLength,
    /// Only `chunked` is accepted: the gateway re-frames bodies, so any other coding would be lost or
    /// read differently by the upstream.
    #[error("unsupported Transfer-Encoding (only chunked is accepted)")]
    UnsupportedEncoding,
}

/// Checks `Content-Length` and `Transfer-Encoding`.
pub fn check(headers: &HeaderMap) -> Result<(), FramingError> {
    let has_encoding = headers.contains_key(TRANSFER_ENCODING);
    if has_encoding && headers.contains_key(CONTENT_LENGTH) {
        return Err(FramingError::LengthAndEncoding);
    }
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| FramingError::MalformedLength)?;
        // `Content-Length: 5, 5` is one list; RFC 9110 §8.6 allows identical repeats, nothing else.
        for item in text.split(',') {
            let item = item.trim_matches(|c| c == ' ' || c == '\t');
            if item.is_empty() || item.len() > 19 || !item.bytes().all(|byte| byte.is_ascii_digit())
            {
                return Err(FramingError::MalformedLength);
            }
            let parsed = item
                .parse::<u64>()
                .map_err(|_| FramingError::MalformedLength)?;
            match length {
                Some(seen) if seen != parsed => return Err(FramingError::DifferingLengths),
                _ => length = Some(parsed),
            }
        }
    }
    for value in headers.get_all(TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| FramingError::UnsupportedEncoding)?;
        if !text.trim().eq_ignore_ascii_case("chunked") {
            return Err(FramingError::UnsupportedEncoding);
        }
    }
    if headers.get_all(TRANSFER_ENCODING).iter().count() > 1 {
        return Err(FramingError::UnsupportedEncoding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn plain_framing_passes() {
        assert_eq!(check(&headers(&[])), Ok(()));
        assert_eq!(check(&headers(&[("content-length", "12")])), Ok(()));
        assert_eq!(
            check(&headers(&[
                ("content-length", "5"),
                ("content-length", "5")
            ])),
            Ok(())
        );
        assert_eq!(check(&headers(&[("content-length", "5, 5")])), Ok(()));
        assert_eq!(check(&headers(&[("transfer-encoding", "Chunked")])), Ok(()));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let cases: &[(&[(&str, &str)], FramingError)] = &[
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                FramingError::LengthAndEncoding,
            ),
            (
                &[("content-length", "5"), ("content-length", "6")],
                FramingError::DifferingLengths,
            ),
            (
                &[("content-length", "5, 6")],
                FramingError::DifferingLengths,
            ),
            (&[("content-length", "+5")], FramingError::MalformedLength),
            (&[("content-length", "0x5")], FramingError::MalformedLength),
            (&[("content-length", "")], FramingError::MalformedLength),
            (
                &[("content-length", "99999999999999999999")],
                FramingError::MalformedLength,
            ),
            (
                &[("transfer-encoding", "gzip, chunked")],
                FramingError::UnsupportedEncoding,
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                FramingError::UnsupportedEncoding,
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(check(&headers(pairs)), Err(*expected), "{pairs:?}");
        }
    }
}
