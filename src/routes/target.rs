//! The one canonical request target: checks and canonicalises the raw request-target once (SPEC §7).
//!
//! The route match, the policy decision and the forwarded request all use the string produced here, so
//! the gateway and the upstream can never disagree about which resource a request names. Anything
//! ambiguous is rejected rather than repaired. Pure: no I/O.
//!
//! Canonical form of the path:
//! - percent-encoded unreserved characters (`ALPHA DIGIT - . _ ~`) are decoded (RFC 3986 §6.2.2.2);
//! - every other percent-encoding is kept, with its hex in upper case (`%3a` → `%3A`);
//! - raw printable characters that RFC 3986 does not allow in a path (`" < > [ ] ^ ` { | }`) are
//!   percent-encoded, so `{` and `%7B` have one form;
//! - the query (after the first `?`) is forwarded byte for byte and plays no part in the decision.
//!
//! Canonicalisation is idempotent: `canonicalize(m, &c.path_and_query()) == Ok(c)`.
//!
//! Encoded slashes: [`canonicalize`] refuses every `%2F`. [`canonicalize_request`], what the gateway runs on
//! requests, instead keeps a segment holding `%2F` (any case) exactly as received, checked but never decoded,
//! and flags the target: the route it matches must then declare that segment an opaque parameter, or the
//! request is refused as before (see [`super::table::RouteTable::route_request`]).

use http::HeaderMap;

/// The longest path (in bytes, as received and after canonicalisation) the gateway accepts.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// A checked, canonical request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The canonical path: starts with `/` (or is `*` for `OPTIONS *`). Routes match against it.
    pub path: String,
    /// The text after the first `?`, unchanged; `Some("")` for a bare trailing `?`.
    pub query: Option<String>,
    /// Some segment of `path` holds an encoded slash, kept as received: only [`canonicalize_request`] lets
    /// one through, for the route to admit (an opaque parameter) or refuse.
    pub encoded_slash: bool,
}

// === impl CanonicalTarget ===

impl CanonicalTarget {
    /// The exact request-target to forward upstream: the canonical path plus the original query.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => {
                let mut out = String::with_capacity(self.path.len() + 1 + query.len());
                out.push_str(&self.path);
                out.push('?');
                out.push_str(query);
                out
            }
            None => self.path.clone(),
        }
    }

    /// Whether `target` is exactly this canonical target's text (canonicalizing it changed nothing), so
    /// that the request's own copy of it can be forwarded.
    pub fn is(&self, target: &str) -> bool {
        match &self.query {
            Some(query) => target
                .strip_prefix(self.path.as_str())
                .and_then(|rest| rest.strip_prefix('?'))
                .is_some_and(|rest| rest == query),
            None => target == self.path,
        }
    }
}

/// Why a request target (or a method-override header) was rejected; every variant answers 400.
///
/// `Display` says what was rejected, for the `error_chain` message; it never echoes the target itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetRejection {
    #[error("empty request target")]
    Empty,
    #[error("request target is not in origin-form (it must start with /)")]
    NotOriginForm,
    #[error("asterisk-form request target (*) is only allowed for OPTIONS")]
    AsteriskForm,
    #[error("encoded slash (%2F) in path")]
    EncodedSlash,
    #[error("backslash (raw or %5C) in path")]
    Backslash,
    #[error("dot segment (. or .., raw or percent-encoded) in path")]
    DotSegment,
    #[error("empty path segment (//) in path")]
    EmptySegment,
    #[error("semicolon (raw or %3B) in path")]
    Semicolon,
    #[error("control character (raw or percent-encoded) in request target")]
    ControlCharacter,
    #[error("unencoded space in request target")]
    Space,
    #[error("unencoded non-ASCII byte in request target")]
    NonAscii,
    #[error("fragment (#) in request target")]
    Fragment,
    #[error("invalid percent-encoding in path")]
    InvalidPercentEncoding,
    #[error("percent-encoded bytes in path are not valid UTF-8")]
    InvalidUtf8,
    #[error("path longer than 8192 bytes")]
    TooLong,
    /// A segment holding `%2F` is kept as received, so it must need no other canonicalisation.
    #[error("a path segment with an encoded slash holds a character that must be percent-encoded")]
    UnencodedBesideEncodedSlash,
    /// An opaque parameter as received matched another route than its canonical form (never expected).
    #[error("an opaque path parameter, as received, would match another route")]
    OpaqueChangedRoute,
    /// `CONNECT` asks for a tunnel to a host the client names: the gateway is a reverse proxy.
    #[error("CONNECT is not served (the gateway is not a forward proxy)")]
    Connect,
    /// The canonical spelling of the header family that was present.
    #[error("method-override header {0} is not allowed")]
    MethodOverride(&'static str),
    /// The canonical spelling of the header family that was present.
    #[error("target-override header {0} is not allowed")]
    TargetOverride(&'static str),
}

// === impl TargetRejection ===

impl TargetRejection {
    /// A short, stable, bounded name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NotOriginForm => "not_origin_form",
            Self::AsteriskForm => "asterisk_form",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::DotSegment => "dot_segment",
            Self::EmptySegment => "empty_segment",
            Self::Semicolon => "semicolon",
            Self::ControlCharacter => "control_character",
            Self::Space => "space",
            Self::NonAscii => "non_ascii",
            Self::Fragment => "fragment",
            Self::InvalidPercentEncoding => "invalid_percent_encoding",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooLong => "too_long",
            Self::UnencodedBesideEncodedSlash => "unencoded_beside_encoded_slash",
            Self::OpaqueChangedRoute => "opaque_changed_route",
            Self::Connect => "connect",
            Self::MethodOverride(_) => "method_override",
            Self::TargetOverride(_) => "target_override",
        }
    }
}

/// Checks and canonicalises a raw request-target (for HTTP/2, the `:path`) of a request with `method`.
///
/// Accepts origin-form (`/path?query`) and, for `OPTIONS` only, `*`. See the module docs for the form
/// produced and [`TargetRejection`] for everything refused.
pub fn canonicalize(method: &str, target: &str) -> Result<CanonicalTarget, TargetRejection> {
    canonicalize_with(method, target, EncodedSlashes::Refuse)
}

/// [`canonicalize`] for a request the gateway decides: a segment holding an encoded slash (`%2F`, any case)
/// is kept exactly as received instead of refused, once checked ([`check_encoded_slash_segment`]), and the
/// target is flagged ([`CanonicalTarget::encoded_slash`]); whether the matched route declares that segment an
/// opaque parameter decides whether the request goes on. Idempotent like [`canonicalize`].
pub fn canonicalize_request(
    method: &str,
    target: &str,
) -> Result<CanonicalTarget, TargetRejection> {
    canonicalize_with(method, target, EncodedSlashes::KeepSegment)
}

/// What canonicalisation does with a segment holding `%2F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EncodedSlashes {
    Refuse,
    KeepSegment,
}

fn canonicalize_with(
    method: &str,
    target: &str,
    slashes: EncodedSlashes,
) -> Result<CanonicalTarget, TargetRejection> {
    if method == "CONNECT" {
        return Err(TargetRejection::Connect);
    }
    if target.is_empty() {
        return Err(TargetRejection::Empty);
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(CanonicalTarget {
                path: "*".to_string(),
                query: None,
                encoded_slash: false,
            })
        } else {
            Err(TargetRejection::AsteriskForm)
        };
    }
    if !target.starts_with('/') {
        return Err(TargetRejection::NotOriginForm);
    }
    // A byte search: `?` is ASCII, so the split is at a character boundary (`str::split_once` would run a
    // general character searcher).
    let (raw_path, query) = match target.bytes().position(|byte| byte == b'?') {
        Some(at) => (target.get(..at).unwrap_or(target), target.get(at + 1..)),
        None => (target, None),
    };
    if let Some(query) = query {
        check_query(query)?;
    }
    if raw_path.len() > MAX_PATH_LEN {
        return Err(TargetRejection::TooLong);
    }
    let encoded_slash = slashes == EncodedSlashes::KeepSegment && has_encoded_slash(raw_path);
    let path = if encoded_slash {
        canonical_path_keeping_encoded_slash_segments(raw_path)?
    } else {
        canonical_path(raw_path)?
    };
    if path.len() > MAX_PATH_LEN {
        return Err(TargetRejection::TooLong);
    }
    check_segments(&path)?;
    Ok(CanonicalTarget {
        path,
        query: query.map(str::to_string),
        encoded_slash,
    })
}

/// Whether `text` holds an encoded slash, `%2F` or `%2f` (a SIMD search for `%`: most paths have none).
pub fn has_encoded_slash(text: &str) -> bool {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'%', bytes).any(|at| {
        bytes.get(at + 1) == Some(&b'2') && matches!(bytes.get(at + 2), Some(b'F' | b'f'))
    })
}

/// The canonical path, each segment canonicalised on its own except a segment holding `%2F`, which is kept as
/// received once [`check_encoded_slash_segment`] accepts it.
fn canonical_path_keeping_encoded_slash_segments(raw: &str) -> Result<String, TargetRejection> {
    let mut out = String::with_capacity(raw.len());
    for (index, segment) in raw.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        if has_encoded_slash(segment) {
            check_encoded_slash_segment(segment)?;
            out.push_str(segment);
        } else {
            out.push_str(&canonical_path(segment)?);
        }
    }
    Ok(out)
}

/// A segment holding `%2F`, to be kept as received: split at each `%2F`, every piece must be canonical
/// but for percent-encodings (no `%5C`, `;`, control characters, bad encodings or UTF-8, which
/// the canonical path refuses), hold no raw character that canonicalisation would encode (the segment is
/// forwarded byte for byte, so it must already be in one form), and not be a dot segment, raw or encoded: an
/// upstream that decoded `%2F` before routing would otherwise resolve `a%2F..%2Fb` to another path.
pub fn check_encoded_slash_segment(segment: &str) -> Result<(), TargetRejection> {
    let mut rest = segment;
    loop {
        let (piece, after) = match rest
            .as_bytes()
            .windows(3)
            .position(|window| matches!(window, [b'%', b'2', b'F' | b'f']))
        {
            Some(at) => (rest.get(..at).unwrap_or(rest), rest.get(at + 3..)),
            None => (rest, None),
        };
        let canonical = canonical_path(piece)?;
        if canonical == "." || canonical == ".." {
            return Err(TargetRejection::DotSegment);
        }
        if !piece.bytes().all(|byte| byte == b'%' || is_path_char(byte)) || piece.contains('/') {
            return Err(TargetRejection::UnencodedBesideEncodedSlash);
        }
        match after {
            Some(after) => rest = after,
            None => return Ok(()),
        }
    }
}

/// The query is forwarded as is, but bytes that can never be in a request line are still refused.
fn check_query(query: &str) -> Result<(), TargetRejection> {
    for &byte in query.as_bytes() {
        match byte {
            b'#' => return Err(TargetRejection::Fragment),
            b' ' => return Err(TargetRejection::Space),
            0x00..=0x1F | 0x7F => return Err(TargetRejection::ControlCharacter),
            0x80..=0xFF => return Err(TargetRejection::NonAscii),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes unreserved percent-encodings, upper-cases the others, encodes raw characters a path may not
/// hold, and refuses everything ambiguous. Segment rules are checked afterwards on the result.
fn canonical_path(raw: &str) -> Result<String, TargetRejection> {
    let bytes = raw.as_bytes();
    // Fast path, the usual case: only bytes the loop below keeps as they are (no `%`, nothing to encode
    // or refuse), so the path is already canonical; one scan and one copy instead of a push per byte.
    if bytes.iter().all(|&byte| is_path_char(byte)) {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    // Consecutive percent-encoded bytes ≥ 0x80: they must decode to valid UTF-8 (no overlong `.` or `/`).
    let mut high_run: Vec<u8> = Vec::new();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let value = match (bytes.get(index + 1), bytes.get(index + 2)) {
                (Some(&high), Some(&low)) => match (hex_value(high), hex_value(low)) {
                    (Some(high), Some(low)) => (high << 4) | low,
                    _ => return Err(TargetRejection::InvalidPercentEncoding),
                },
                _ => return Err(TargetRejection::InvalidPercentEncoding),
            };
            index += 3;
            if value >= 0x80 {
                high_run.push(value);
                push_encoded(&mut out, value);
                continue;
            }
            flush_high_run(&mut high_run)?;
            match value {
                b'/' => return Err(TargetRejection::EncodedSlash),
                b'\\' => return Err(TargetRejection::Backslash),
                b';' => return Err(TargetRejection::Semicolon),
                0x00..=0x1F | 0x7F => return Err(TargetRejection::ControlCharacter),
                _ if is_unreserved(value) => out.push(char::from(value)),
                _ => push_encoded(&mut out, value),
            }
            continue;
        }
        flush_high_run(&mut high_run)?;
        index += 1;
        match byte {
            b'\\' => return Err(TargetRejection::Backslash),
            b';' => return Err(TargetRejection::Semicolon),
            b'#' => return Err(TargetRejection::Fragment),
            b' ' => return Err(TargetRejection::Space),
            0x00..=0x1F | 0x7F => return Err(TargetRejection::ControlCharacter),
            0x80..=0xFF => return Err(TargetRejection::NonAscii),
            _ if is_path_char(byte) => out.push(char::from(byte)),
            // Printable ASCII that RFC 3986 does not allow raw in a path: one form, encoded.
            _ => push_encoded(&mut out, byte),
        }
    }
    flush_high_run(&mut high_run)?;
    Ok(out)
}

/// Empty segments and dot segments, checked on the decoded path (a decoded `%2E` is a `.`).
/// An empty last segment is the root `/` or a trailing slash (`/a/`), which is kept.
fn check_segments(path: &str) -> Result<(), TargetRejection> {
    // The segments after the first `/`, scanned as bytes (`/` is ASCII).
    let Some(first) = path.bytes().position(|byte| byte == b'/') else {
        return Ok(());
    };
    let mut rest = path.as_bytes().get(first + 1..).unwrap_or_default();
    loop {
        let end = rest.iter().position(|&byte| byte == b'/');
        let segment = rest.get(..end.unwrap_or(rest.len())).unwrap_or_default();
        match (segment, end) {
            (b"", Some(_)) => return Err(TargetRejection::EmptySegment),
            (b"." | b"..", _) => return Err(TargetRejection::DotSegment),
            _ => {}
        }
        match end {
            Some(end) => rest = rest.get(end + 1..).unwrap_or_default(),
            None => return Ok(()),
        }
    }
}

fn flush_high_run(run: &mut Vec<u8>) -> Result<(), TargetRejection> {
    if run.is_empty() {
        return Ok(());
    }
    let valid = std::str::from_utf8(run).is_ok();
    run.clear();
    if valid {
        Ok(())
    } else {
        Err(TargetRejection::InvalidUtf8)
    }
}

fn push_encoded(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    for nibble in [byte >> 4, byte & 0x0F] {
        if let Some(&digit) = HEX.get(usize::from(nibble)) {
            out.push(char::from(digit));
        }
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: `ALPHA / DIGIT / - . _ ~`.
pub(crate) fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes kept raw in a canonical path: `/`, unreserved, sub-delims other than `;`, `:` and `@`.
#[inline]
fn is_path_char(byte: u8) -> bool {
    PATH_CHARS.get(usize::from(byte)).copied().unwrap_or(false)
}

/// [`is_path_char`] as a table, one entry per byte value (built at compile time from the rule).
// `byte < 256` by the loop condition, and a bad index here would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
static PATH_CHARS: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = path_char_rule(byte as u8);
        byte += 1;
    }
    table
};

const fn path_char_rule(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'.' | b'_' | b'~')
        || matches!(
            byte,
            b'/' | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// A header family's rejection, given the family's canonical spelling.
type Rejection = fn(&'static str) -> TargetRejection;

/// The header families that make some upstream act on another method or target than the request line's, by
/// canonical spelling, each with the rejection it gets.
///
/// - Method overrides (Rails, Express `method-override`, Symfony, ASP.NET, Google APIs): the method the gateway
///   authorized must be the one the upstream executes.
/// - Target overrides: IIS URL Rewrite and ASP.NET (`X-Original-URL`, `X-Rewrite-URL`), Symfony before
///   CVE-2018-14773 and Zend Framework read them as the request path, so a request authorized for one path is
///   served as another. (Claims about the original path that upstreams use to build URLs rather than to route,
///   such as `X-Forwarded-Prefix`, are dropped from untrusted peers by the proxy's header hygiene instead.)
const OVERRIDE_HEADERS: [(&str, Rejection); 5] = [
    ("X-HTTP-Method-Override", TargetRejection::MethodOverride),
    ("X-HTTP-Method", TargetRejection::MethodOverride),
    ("X-Method-Override", TargetRejection::MethodOverride),
    ("X-Original-URL", TargetRejection::TargetOverride),
    ("X-Rewrite-URL", TargetRejection::TargetOverride),
];

/// Rejects any method-override header (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) and
/// any target-override header (`X-Original-URL`, `X-Rewrite-URL`), in any case and with `_` in place of `-`:
/// the method and target the gateway authorised must be the ones the upstream acts on.
pub fn reject_override_headers(headers: &HeaderMap) -> Result<(), TargetRejection> {
    for name in headers.keys() {
        let name = name.as_str().as_bytes();
        for (canonical, rejection) in OVERRIDE_HEADERS {
            if same_header_name(name, canonical.as_bytes()) {
                return Err(rejection(canonical));
            }
        }
    }
    Ok(())
}

/// Case-insensitive, with `_` and `-` equal.
fn same_header_name(name: &[u8], canonical: &[u8]) -> bool {
    name.len() == canonical.len()
        && name.iter().zip(canonical).all(|(&a, &b)| {
            let a = if a == b'_' { b'-' } else { a };
            a.eq_ignore_ascii_case(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetRejection as R;
    use proptest::prelude::*;

    fn get(target: &str) -> Result<CanonicalTarget, TargetRejection> {
        canonicalize("GET", target)
    }

    fn path(target: &str) -> String {
        get(target).unwrap().path
    }

    #[test]
    fn plain_paths_are_kept() {
        assert_eq!(path("/"), "/");
        assert_eq!(path("/client/v4/zones"), "/client/v4/zones");
        assert_eq!(path("/a/"), "/a/", "a single trailing slash is kept");
        assert_eq!(path("/a/.../b"), "/a/.../b", "three dots are a name");
        assert_eq!(path("/a/.b/c./..d"), "/a/.b/c./..d");
        assert_eq!(path("/a:b@c!$&'()*+,="), "/a:b@c!$&'()*+,=");
    }

    #[test]
    fn a_target_is_its_canonical_form_only_when_canonicalizing_changed_nothing() {
        for target in ["/a/b", "/a/b?x=1", "/a/b?", "/"] {
            assert!(get(target).unwrap().is(target), "{target}");
        }
        for (target, other) in [
            ("/%61b", "/%61b"),
            ("/a%3ab?x", "/a%3ab?x"),
            ("/a{b}", "/a{b}"),
            ("/a/b?x=1", "/a/b?x=2"),
            ("/a/b?x=1", "/a/b"),
            ("/a/b", "/a/b?"),
            ("/a/b", "/a/bc"),
        ] {
            assert!(!get(target).unwrap().is(other), "{target} vs {other}");
        }
    }

    #[test]
    fn the_query_is_split_off_unchanged() {
        let target = get("/a/b?x=%2F&y=/../;z?w").unwrap();
        assert_eq!(target.path, "/a/b");
        assert_eq!(target.query.as_deref(), Some("x=%2F&y=/../;z?w"));
        assert_eq!(target.path_and_query(), "/a/b?x=%2F&y=/../;z?w");
        let bare = get("/a?").unwrap();
        assert_eq!(bare.query.as_deref(), Some(""));
        assert_eq!(bare.path_and_query(), "/a?");
        assert_eq!(get("/a").unwrap().query, None);
        assert_eq!(get("/a?b c"), Err(R::Space));
        assert_eq!(get("/a?b\x01"), Err(R::ControlCharacter));
        assert_eq!(get("/a?b#c"), Err(R::Fragment));
        assert_eq!(get("/a?\u{e9}"), Err(R::NonAscii));
    }

    #[test]
    fn unreserved_encodings_are_decoded_others_upper_cased() {
        assert_eq!(path("/%61%62%7e%5F%2d%30"), "/ab~_-0");
        assert_eq!(path("/a%3ab%40c"), "/a%3Ab%40c");
        assert_eq!(path("/a%20b"), "/a%20b");
        assert_eq!(path("/a%25b"), "/a%25b", "an encoded % stays encoded");
        assert_eq!(path("/a%3fb%23c"), "/a%3Fb%23c");
        assert_eq!(path("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(
            path("/x%2e"),
            "/x.",
            "a decoded dot that is not a dot segment is fine"
        );
    }

    #[test]
    fn raw_characters_a_path_may_not_hold_are_encoded() {
        assert_eq!(path("/a{b}|c"), "/a%7Bb%7D%7Cc");
        assert_eq!(path("/\"<>[]^`"), "/%22%3C%3E%5B%5D%5E%60");
        assert_eq!(path("/%7b"), path("/{"));
    }

    #[test]
    fn encoded_slashes_are_rejected() {
        assert_eq!(get("/a%2Fb"), Err(R::EncodedSlash));
        assert_eq!(get("/a%2fb"), Err(R::EncodedSlash));
        assert_eq!(get("/%2f"), Err(R::EncodedSlash));
    }

    /// `canonicalize_request` keeps a segment holding `%2F` as received and flags it (the route decides);
    /// `canonicalize` still refuses it, and so does every check a kept segment must pass.
    #[test]
    fn a_request_keeps_an_encoded_slash_segment_as_received_for_the_route_to_decide() {
        let kept = canonicalize_request("GET", "/v/%61/images%2Fcat.png?x=%2F").unwrap();
        assert_eq!(
            kept.path, "/v/a/images%2Fcat.png",
            "other segments are canonical"
        );
        assert_eq!(kept.query.as_deref(), Some("x=%2F"));
        assert!(kept.encoded_slash);
        for (target, path) in [
            ("/v/a%2fb", "/v/a%2fb"),
            ("/v/%61%2Fb", "/v/%61%2Fb"),
            ("/v/%2F", "/v/%2F"),
            ("/v/%2Fa%2F%2Fb%2F", "/v/%2Fa%2F%2Fb%2F"),
            ("/v/a%3a%2Fb~", "/v/a%3a%2Fb~"),
            ("/v/caf%C3%A9%2F1", "/v/caf%C3%A9%2F1"),
        ] {
            let kept = canonicalize_request("GET", target).unwrap();
            assert_eq!(kept.path, path, "{target}: byte for byte");
            assert!(kept.encoded_slash);
            assert_eq!(
                canonicalize_request("GET", &kept.path_and_query()),
                Ok(kept.clone()),
                "idempotent"
            );
            assert_eq!(
                get(target),
                Err(R::EncodedSlash),
                "canonicalize refuses {target}"
            );
        }
        let plain = canonicalize_request("GET", "/v/a?x=%2F").unwrap();
        assert!(
            !plain.encoded_slash,
            "a %2F in the query is no encoded slash in the path"
        );
        assert_eq!(plain, get("/v/a?x=%2F").unwrap());
        for (target, rejection) in [
            ("/v/a%2F..%2Fb", R::DotSegment),
            ("/v/..%2Fzone-2", R::DotSegment),
            ("/v/a%2F.", R::DotSegment),
            ("/v/%2E%2E%2Fx", R::DotSegment),
            ("/v/a%2F%2e%2Fb", R::DotSegment),
            ("/v/a%2F%5Cb", R::Backslash),
            ("/v/a%2F;b", R::Semicolon),
            ("/v/a%2F%3Bb", R::Semicolon),
            ("/v/a%2F%00", R::ControlCharacter),
            ("/v/a%2F%G1", R::InvalidPercentEncoding),
            ("/v/%C3%2F%A9", R::InvalidUtf8),
            ("/v/a%2F{b}", R::UnencodedBesideEncodedSlash),
            ("/v/a%2F\"b", R::UnencodedBesideEncodedSlash),
            ("/v/..", R::DotSegment),
            ("/v//a%2Fb", R::EmptySegment),
        ] {
            assert_eq!(
                canonicalize_request("GET", target),
                Err(rejection),
                "{target}"
            );
        }
    }

    #[test]
    fn backslashes_are_rejected() {
        assert_eq!(get("/a\\b"), Err(R::Backslash));
        assert_eq!(get("/a%5Cb"), Err(R::Backslash));
        assert_eq!(get("/a%5cb"), Err(R::Backslash));
    }

    #[test]
    fn dot_segments_are_rejected_raw_or_encoded() {
        for target in [
            "/.",
            "/..",
            "/a/.",
            "/a/..",
            "/a/./b",
            "/a/../b",
            "/./a",
            "/../a",
            "/a/./",
            "/a/../",
            "/%2e",
            "/%2E",
            "/a/%2e/b",
            "/a/%2E%2E/b",
            "/a/.%2e/b",
            "/a/%2e./b",
            "/a/%2E%2e",
            "/a/.%2E/",
        ] {
            assert_eq!(get(target), Err(R::DotSegment), "{target}");
        }
    }

    #[test]
    fn empty_segments_are_rejected() {
        for target in ["//", "//a", "/a//b", "/a//", "/a/b//", "///"] {
            assert_eq!(get(target), Err(R::EmptySegment), "{target}");
        }
    }

    #[test]
    fn semicolons_are_rejected() {
        assert_eq!(get("/a;b"), Err(R::Semicolon));
        assert_eq!(get("/a/b;jsessionid=1"), Err(R::Semicolon));
        assert_eq!(get("/a%3Bb"), Err(R::Semicolon));
        assert_eq!(get("/a%3bb"), Err(R::Semicolon));
    }

    #[test]
    fn control_characters_are_rejected_raw_or_encoded() {
        for target in [
            "/a\0b", "/a\x01", "/a\tb", "/a\nb", "/a\rb", "/a\x1f", "/a\x7f",
        ] {
            assert_eq!(get(target), Err(R::ControlCharacter), "{target:?}");
        }
        for target in [
            "/a%00b", "/a%01", "/a%09", "/a%0a", "/a%0D", "/a%1F", "/a%1f", "/a%7F", "/a%7f",
        ] {
            assert_eq!(get(target), Err(R::ControlCharacter), "{target}");
        }
    }

    #[test]
    fn raw_space_and_non_ascii_are_rejected() {
        assert_eq!(get("/a b"), Err(R::Space));
        assert_eq!(get("/caf\u{e9}"), Err(R::NonAscii));
        assert_eq!(get("/\u{2215}"), Err(R::NonAscii));
    }

    #[test]
    fn fragments_are_rejected() {
        assert_eq!(get("/a#b"), Err(R::Fragment));
        assert_eq!(get("/a#"), Err(R::Fragment));
    }

    #[test]
    fn invalid_percent_encoding_is_rejected() {
        for target in [
            "/%", "/a%", "/a%4", "/%G1", "/%g1", "/%1G", "/%%41", "/a%-1", "/%4 ",
        ] {
            assert_eq!(get(target), Err(R::InvalidPercentEncoding), "{target}");
        }
    }

    #[test]
    fn encoded_bytes_must_be_utf8() {
        // Overlong encodings of `.` and `/`, which lenient decoders turn into traversal.
        assert_eq!(get("/%C0%AE%C0%AE/x"), Err(R::InvalidUtf8));
        assert_eq!(get("/a%c0%afb"), Err(R::InvalidUtf8));
        assert_eq!(get("/a%E9"), Err(R::InvalidUtf8));
        assert_eq!(get("/a%C3"), Err(R::InvalidUtf8), "a truncated sequence");
        assert_eq!(
            get("/a%C3a%A9"),
            Err(R::InvalidUtf8),
            "a sequence split by an ASCII byte"
        );
        assert_eq!(path("/%E2%88%95"), "/%E2%88%95");
    }

    #[test]
    fn only_origin_form_and_options_asterisk_are_accepted() {
        assert_eq!(get(""), Err(R::Empty));
        assert_eq!(get("http://host/x"), Err(R::NotOriginForm));
        assert_eq!(get("https://host"), Err(R::NotOriginForm));
        assert_eq!(get("host:443"), Err(R::NotOriginForm));
        assert_eq!(get("a/b"), Err(R::NotOriginForm));
        assert_eq!(get("?a"), Err(R::NotOriginForm));
        assert_eq!(get("*"), Err(R::AsteriskForm));
        assert_eq!(
            canonicalize("options", "*"),
            Err(R::AsteriskForm),
            "methods are case-sensitive"
        );
        let star = canonicalize("OPTIONS", "*").unwrap();
        assert_eq!((star.path.as_str(), star.query.as_deref()), ("*", None));
        assert_eq!(star.path_and_query(), "*");
        assert_eq!(canonicalize("OPTIONS", "*?a"), Err(R::NotOriginForm));
        assert_eq!(canonicalize("OPTIONS", "/a").unwrap().path, "/a");
    }

    #[test]
    fn long_paths_are_rejected() {
        let limit = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(path(&limit).len(), MAX_PATH_LEN);
        assert_eq!(get(&format!("{limit}a")), Err(R::TooLong));
        // Encoding raw `{` grows the path; the canonical form must fit too.
        let grows = format!("/{}", "{".repeat(3000));
        assert_eq!(get(&grows), Err(R::TooLong));
        let long_query = format!("/a?{}", "q".repeat(3 * MAX_PATH_LEN));
        assert!(get(&long_query).is_ok(), "the limit is on the path");
    }

    #[test]
    fn rejections_say_what_was_rejected() {
        assert_eq!(R::EncodedSlash.to_string(), "encoded slash (%2F) in path");
        assert_eq!(
            R::MethodOverride("X-HTTP-Method").to_string(),
            "method-override header X-HTTP-Method is not allowed"
        );
        assert_eq!(
            R::TargetOverride("X-Original-URL").to_string(),
            "target-override header X-Original-URL is not allowed"
        );
        assert_eq!(R::DotSegment.kind(), "dot_segment");
        // CONNECT is refused whatever its target, origin-form included.
        for target in ["gw.test:443", "/client/v4/zones", "*"] {
            assert_eq!(canonicalize("CONNECT", target), Err(R::Connect), "{target}");
        }
    }

    #[test]
    fn method_and_target_override_headers_are_rejected_in_any_spelling() {
        for name in [
            "x-http-method-override",
            "X-HTTP-Method-Override",
            "x_http_method_override",
            "X-Http_Method-Override",
            "x-http-method",
            "x_http_method",
            "x-method-override",
            "X_METHOD_OVERRIDE",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("accept", "*/*".parse().unwrap());
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "DELETE".parse().unwrap(),
            );
            assert!(
                matches!(reject_override_headers(&headers), Err(R::MethodOverride(_))),
                "{name}"
            );
        }
        for (name, family) in [
            ("x-original-url", "X-Original-URL"),
            ("X-Original-URL", "X-Original-URL"),
            ("x_original_url", "X-Original-URL"),
            ("X_ORIGINAL-URL", "X-Original-URL"),
            ("x-rewrite-url", "X-Rewrite-URL"),
            ("X_Rewrite_Url", "X-Rewrite-URL"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("accept", "*/*".parse().unwrap());
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "/client/v4/zones/zone-2/dns_records".parse().unwrap(),
            );
            assert_eq!(
                reject_override_headers(&headers),
                Err(R::TargetOverride(family)),
                "{name}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method-overrides", "DELETE".parse().unwrap());
        headers.insert("x-method", "DELETE".parse().unwrap());
        headers.insert("x-original-urls", "/x".parse().unwrap());
        headers.insert("x-original-uri", "/x".parse().unwrap());
        headers.insert("authorization", "Bearer x".parse().unwrap());
        assert_eq!(reject_override_headers(&headers), Ok(()));
        assert_eq!(reject_override_headers(&HeaderMap::new()), Ok(()));
    }

    /// Targets built from the interesting pieces, so that many are accepted and many rejected.
    fn target_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%2F".to_string()),
            Just("%5c".to_string()),
            Just("%3B".to_string()),
            Just(";".to_string()),
            Just("\\".to_string()),
            Just("%41".to_string()),
            Just("%7e".to_string()),
            Just("%3a".to_string()),
            Just("%c3%a9".to_string()),
            Just("%C0%AE".to_string()),
            Just("%".to_string()),
            Just("{".to_string()),
            Just("?".to_string()),
            Just("#".to_string()),
            Just("%00".to_string()),
            "[a-zA-Z0-9._~:@!$&'()*+,=-]{1,4}",
            "[ -~]{1,3}",
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        #[test]
        fn canonicalisation_is_idempotent(target in target_strategy()) {
            if let Ok(canonical) = get(&target) {
                prop_assert_eq!(get(&canonical.path_and_query()), Ok(canonical.clone()));
            }
        }

        #[test]
        fn canonical_paths_hold_nothing_ambiguous(target in target_strategy()) {
            if let Ok(canonical) = get(&target) {
                prop_assert!(!canonical.path.contains("//"));
                let path = format!("{}/", canonical.path);
                for bad in ["/./", "/../", "%2F", "%2f", "%5C", "%5c", ";", "\\", "#", "?", " "] {
                    prop_assert!(!path.contains(bad), "{:?} holds {:?}", canonical.path, bad);
                }
                prop_assert!(canonical.path.starts_with('/'));
                prop_assert!(canonical.path.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn a_request_target_is_canonical_but_for_segments_holding_an_encoded_slash(target in target_strategy()) {
            if let Ok(kept) = canonicalize_request("GET", &target) {
                prop_assert_eq!(canonicalize_request("GET", &kept.path_and_query()), Ok(kept.clone()));
                prop_assert_eq!(kept.encoded_slash, has_encoded_slash(&kept.path));
                if !kept.encoded_slash {
                    prop_assert_eq!(get(&target), Ok(kept.clone()));
                }
                for segment in kept.path.split('/') {
                    if has_encoded_slash(segment) {
                        prop_assert!(check_encoded_slash_segment(segment).is_ok());
                    } else {
                        let canonical = canonical_path(segment);
                        prop_assert_eq!(canonical.as_deref(), Ok(segment), "{:?}", kept.path);
                    }
                }
            } else {
                prop_assert!(get(&target).is_err(), "{:?}: accepted strictly, refused for a request", target);
            }
        }

        #[test]
        fn arbitrary_input_never_panics_and_accepted_output_is_a_fixed_point(target in "\\PC{0,40}") {
            if let Ok(canonical) = get(&target) {
                prop_assert_eq!(get(&canonical.path_and_query()), Ok(canonical.clone()));
            }
        }
    }
}
