//! The credential a request presents, read from its headers (SPEC §4, §5); it never hashes, looks up or logs it.
//!
//! Exactly one kind of credential is accepted per request: `Authorization: Bearer <token>`, or the legacy
//! pair `X-Auth-Email` + `X-Auth-Key`. Anything ambiguous is a [`CredentialError`], never a guess. The
//! returned strings borrow from the headers; neither this type's `Debug` nor the error's `Display` shows a
//! secret. Pure: no I/O.

use std::fmt;

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

/// The legacy API key's email header.
pub const X_AUTH_EMAIL: HeaderName = HeaderName::from_static("x-auth-email");
/// The legacy API key header.
pub const X_AUTH_KEY: HeaderName = HeaderName::from_static("x-auth-key");

/// The length of a Cloudflare global API key: 37 lower-case hex characters. Cloudflare refuses any other
/// `X-Auth-Key` as malformed (400, 6003 with chain 6103) before looking anything up, and so does permgate.
pub const GLOBAL_API_KEY_LEN: usize = 37;

/// A credential as presented: not yet known to be valid.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// An API token (`Authorization: Bearer <token>`); any visible-ASCII string, looked up by its SHA-256.
    Token(&'a str),
    /// A legacy user API key (`X-Auth-Email` + `X-Auth-Key`).
    LegacyKey { email: &'a str, key: &'a str },
}

impl fmt::Debug for Credential<'_> {
    /// Redacted: the token and the key are secrets; the email is shown (it names the user, not a secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::LegacyKey { email, .. } => f
                .debug_struct("LegacyKey")
                .field("email", email)
                .field("key", &"<redacted>")
                .finish(),
        }
    }
}

/// Why the credential headers could not be read; each maps to one 400 answer (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// No credential header at all (9106).
    #[error("no credential: neither Authorization nor X-Auth-Email and X-Auth-Key")]
    Missing,
    /// `Authorization` is not exactly `Bearer <token>`, is empty, or is given twice (6003 + 6111).
    #[error("malformed Authorization header (expected exactly one `Bearer <token>`)")]
    MalformedAuthorization,
    /// `X-Auth-Email` missing next to `X-Auth-Key`, empty, duplicated, or not an email (6003 + 6102).
    #[error("missing or malformed X-Auth-Email header")]
    MalformedEmail,
    /// `X-Auth-Key` missing next to `X-Auth-Email`, duplicated, or not a global API key's format (37
    /// lower-case hex characters) (6003 + 6103).
    #[error("missing or malformed X-Auth-Key header")]
    MalformedKey,
    /// A bearer token and a legacy key at once: which one to check would be a guess (6003 + 6111).
    #[error("both an Authorization header and X-Auth-Email/X-Auth-Key were presented")]
    Both,
}

/// Reads the request's one credential.
///
/// The `Authorization` value must be the scheme `Bearer` (in any case) followed by exactly one space and
/// a token of visible ASCII characters (`!`..`~`): no other scheme, no extra spaces, no empty token, and
/// one `Authorization` header only. The legacy headers must both be present, once each; the email must be
/// visible ASCII without spaces and look like `local@domain`, the key must have the format of a global API
/// key ([`GLOBAL_API_KEY_LEN`] lower-case hex characters), so a malformed key is refused before any lookup,
/// as Cloudflare does. (HTTP parsers strip whitespace around a header value before it gets here.)
pub fn read_credential(headers: &HeaderMap) -> Result<Credential<'_>, CredentialError> {
    // One pass over the headers instead of three lookups: a request carries few headers, and comparing
    // names is cheaper than hashing three of them.
    let mut authorization = Single::Absent;
    let mut email = Single::Absent;
    let mut key = Single::Absent;
    for (name, value) in headers {
        let slot = if *name == AUTHORIZATION {
            &mut authorization
        } else if *name == X_AUTH_EMAIL {
            &mut email
        } else if *name == X_AUTH_KEY {
            &mut key
        } else {
            continue;
        };
        *slot = match slot {
            Single::Absent => Single::One(value),
            Single::One(_) | Single::Many => Single::Many,
        };
    }
    let legacy = !matches!(email, Single::Absent) || !matches!(key, Single::Absent);
    match authorization {
        Single::Absent if !legacy => Err(CredentialError::Missing),
        Single::Absent => read_legacy(email, key),
        _ if legacy => Err(CredentialError::Both),
        Single::Many => Err(CredentialError::MalformedAuthorization),
        Single::One(value) => read_bearer(value).ok_or(CredentialError::MalformedAuthorization),
    }
}

/// How many times a header was given.
enum Single<'a> {
    Absent,
    One(&'a HeaderValue),
    Many,
}

fn read_bearer(value: &HeaderValue) -> Option<Credential<'_>> {
    let value = visible(value.as_bytes(), true)?;
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    let token = value.get(7..)?;
    // `visible` allowed the one space after the scheme; the token itself has none.
    (!token.is_empty() && !token.contains(' ')).then_some(Credential::Token(token))
}

fn read_legacy<'a>(email: Single<'a>, key: Single<'a>) -> Result<Credential<'a>, CredentialError> {
    let email = match email {
        Single::One(value) => visible(value.as_bytes(), false),
        Single::Absent | Single::Many => None,
    }
    .filter(|email| {
        email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
    })
    .ok_or(CredentialError::MalformedEmail)?;
    let key = match key {
        Single::One(value) => global_api_key(value.as_bytes()),
        Single::Absent | Single::Many => None,
    }
    .ok_or(CredentialError::MalformedKey)?;
    Ok(Credential::LegacyKey { email, key })
}

/// The value as text when it has a global API key's format: [`GLOBAL_API_KEY_LEN`] lower-case hex digits.
fn global_api_key(bytes: &[u8]) -> Option<&str> {
    let ok = bytes.len() == GLOBAL_API_KEY_LEN
        && bytes
            .iter()
            .all(|&b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// The value as text when it is non-empty visible ASCII (`!`..`~`, and spaces only when `spaces` is set).
fn visible(bytes: &[u8], spaces: bool) -> Option<&str> {
    let ok = !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() || (spaces && b == b' '));
    if ok {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialError as E;

    /// (`HeaderValue` itself refuses control characters other than tab, so those never reach us.)
    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn read(pairs: &[(&str, &[u8])]) -> Result<Credential<'static>, CredentialError> {
        // Leak the map so the borrowed credential can be returned from a helper (tests only).
        let map: &'static HeaderMap = Box::leak(Box::new(headers(pairs)));
        read_credential(map)
    }

    #[test]
    fn a_bearer_token_is_read() {
        assert_eq!(
            read(&[("authorization", b"Bearer abc.DEF-123_~+/=")]),
            Ok(Credential::Token("abc.DEF-123_~+/="))
        );
        assert_eq!(
            read(&[("Authorization", b"bearer t")]),
            Ok(Credential::Token("t"))
        );
        assert_eq!(
            read(&[("authorization", b"BEARER t")]),
            Ok(Credential::Token("t"))
        );
        assert_eq!(
            read(&[("authorization", b"Bearer pgt_x"), ("accept", b"*/*")]),
            Ok(Credential::Token("pgt_x"))
        );
    }

    #[test]
    fn a_malformed_authorization_header_is_rejected() {
        for value in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer  token",
            b"Bearer token extra",
            b"Bearer\ttoken",
            b"Bearer tok\ten",
            b"Basic dXNlcjpwYXNz",
            b"Token abc",
            b"Bearertoken",
            b"abc",
            b"Bearer caf\xc3\xa9",
        ] {
            assert_eq!(
                read(&[("authorization", value)]),
                Err(E::MalformedAuthorization),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(
            read(&[
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer a")
            ]),
            Err(E::MalformedAuthorization),
            "two Authorization headers"
        );
    }

    #[test]
    fn a_legacy_key_is_read() {
        assert_eq!(
            read(&[
                ("x-auth-email", b"joe@example.com"),
                ("X-Auth-Key", b"c2547eb745079dac9320b638f5e225cf483cc")
            ]),
            Ok(Credential::LegacyKey {
                email: "joe@example.com",
                key: "c2547eb745079dac9320b638f5e225cf483cc",
            })
        );
    }

    #[test]
    fn a_malformed_legacy_pair_is_rejected() {
        let key: (&str, &[u8]) = ("x-auth-key", b"c2547eb745079dac9320b638f5e225cf483cc");
        let email: (&str, &[u8]) = ("x-auth-email", b"a@b.c");
        assert_eq!(read(&[key]), Err(E::MalformedEmail), "key alone");
        assert_eq!(read(&[email]), Err(E::MalformedKey), "email alone");
        for bad in [
            &b""[..],
            b"joe",
            b"@example.com",
            b"joe@",
            b"joe @example.com",
            b"j\t@x",
            b"j\xc3\xa9@x",
        ] {
            assert_eq!(
                read(&[("x-auth-email", bad), key]),
                Err(E::MalformedEmail),
                "{bad:?}"
            );
        }
        for bad in [&b""[..], b"k 1", b"k\t1", b"\xff"] {
            assert_eq!(
                read(&[email, ("x-auth-key", bad)]),
                Err(E::MalformedKey),
                "{bad:?}"
            );
        }
        assert_eq!(
            read(&[email, email, key]),
            Err(E::MalformedEmail),
            "duplicated email"
        );
        assert_eq!(
            read(&[email, key, key]),
            Err(E::MalformedKey),
            "duplicated key"
        );
    }

    /// Cloudflare checks the format of a global API key (37 lower-case hex characters) before any lookup: a
    /// key of another shape is 400 (6003, chain 6103), never 403 9103.
    #[test]
    fn a_key_not_in_the_global_api_key_format_is_malformed() {
        let email: (&str, &[u8]) = ("x-auth-email", b"a@b.c");
        for bad in [
            &b"k123"[..],
            b"legacy_demo_joe",
            b"c2547eb745079dac9320b638f5e225cf483c",
            b"c2547eb745079dac9320b638f5e225cf483ccc",
            b"C2547EB745079DAC9320B638F5E225CF483CC",
            b"c2547eb745079dac9320b638f5e225cf483cg",
            b"v1.0-c2547eb745079dac9320b638f5e225cf483cc",
            b"pgt_demo_joe_dns_read",
        ] {
            assert_eq!(
                read(&[email, ("x-auth-key", bad)]),
                Err(E::MalformedKey),
                "{bad:?}"
            );
        }
        // The only shape accepted: 37 lower-case hex characters.
        assert!(
            read(&[
                email,
                ("x-auth-key", b"0123456789abcdef0123456789abcdef01234")
            ])
            .is_ok()
        );
    }

    #[test]
    fn both_kinds_at_once_are_rejected() {
        let bearer: (&str, &[u8]) = ("authorization", b"Bearer t");
        assert_eq!(
            read(&[bearer, ("x-auth-email", b"a@b.c"), ("x-auth-key", b"k")]),
            Err(E::Both)
        );
        assert_eq!(read(&[bearer, ("x-auth-key", b"k")]), Err(E::Both));
        assert_eq!(
            read(&[("authorization", b"Basic x"), ("x-auth-email", b"a@b.c")]),
            Err(E::Both)
        );
    }

    #[test]
    fn no_credential_is_missing() {
        assert_eq!(read(&[]), Err(E::Missing));
        assert_eq!(
            read(&[("cookie", b"a=b"), ("x-api-key", b"k")]),
            Err(E::Missing)
        );
    }

    #[test]
    fn secrets_never_show() {
        let token = Credential::Token("s3cr3t-token");
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let key = Credential::LegacyKey {
            email: "joe@example.com",
            key: "s3cr3t-key",
        };
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("joe@example.com"),
            "{shown}"
        );
        for error in [
            E::Missing,
            E::MalformedAuthorization,
            E::MalformedEmail,
            E::MalformedKey,
            E::Both,
        ] {
            assert!(!error.to_string().is_empty());
        }
    }
}
