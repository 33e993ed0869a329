//! The admin listener's protection (`admin.token_file`): every admin request — `/metrics`, `/status`, the
//! probes and the console — must present the bearer token whose SHA-256 the file holds.
//!
//! The token is accepted as `Authorization: Bearer TOKEN` (curl, a Prometheus `authorization`
//! credentials file) or as the password of `Authorization: Basic` with any user name (what a browser asks for
//! when told `WWW-Authenticate: Basic`, so the console opens in a browser). The presented token is hashed
//! and the hashes are compared in constant time; the file is read at each request, so replacing it rotates
//! the token at once, and a file that cannot be read (or does not hold 64 hex digits) refuses everything:
//! fail closed. Nothing here ever prints the token, the file's content, or any part of either.

use std::path::Path;

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::gateway::read_admin_token_file;

/// Why a request may not use the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No credential, or not the right one: 401 with the challenges.
    Unauthorized,
    /// The token file cannot be read or does not hold a SHA-256: nobody gets in (503).
    TokenFileBroken,
}

impl Refused {
    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::TokenFileBroken => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer's message (names no secret).
    pub fn message(&self) -> &'static str {
        match self {
            Self::Unauthorized => {
                "the admin listener needs its bearer token (admin.token_file): Authorization: Bearer TOKEN, \
                 or Basic auth with the token as the password"
            }
            Self::TokenFileBroken => {
                "admin.token_file cannot be read or does not hold a SHA-256; the admin listener refuses \
                 every request until it does"
            }
        }
    }

    /// The `WWW-Authenticate` challenges of a 401 (Basic first: a browser then asks for the token).
    pub fn challenges() -> [HeaderValue; 2] {
        [
            HeaderValue::from_static("Basic realm=\"permgate admin\", charset=\"UTF-8\""),
            HeaderValue::from_static("Bearer realm=\"permgate admin\""),
        ]
    }
}

/// Whether `headers` carry the token of `token_file` (`None`: the listener is open).
pub fn check(token_file: Option<&Path>, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(path) = token_file else {
        return Ok(());
    };
    let expected = match read_admin_token_file(path) {
        Ok(digest) => digest,
        Err(message) => {
            tracing::warn!(%message, "admin listener: refusing every request");
            return Err(Refused::TokenFileBroken);
        }
    };
    let presented = headers
        .get_all(AUTHORIZATION)
        .iter()
        .find_map(presented_token)
        .ok_or(Refused::Unauthorized)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if bool::from(digest.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(Refused::Unauthorized)
    }
}

/// The token of one `Authorization` value: `Bearer TOKEN`, or `Basic base64(user:TOKEN)`.
fn presented_token(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (_user, password) = decoded.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "pga_admin_secret";

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_token_is_taken_as_bearer_or_as_a_basic_password_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.sha256");
        std::fs::write(&file, format!("{}\n", hex::encode(Sha256::digest(TOKEN)))).unwrap();
        let file = Some(file.as_path());
        assert_eq!(check(file, &headers(&format!("Bearer {TOKEN}"))), Ok(()));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}"));
        assert_eq!(check(file, &headers(&format!("Basic {basic}"))), Ok(()));
        for wrong in [
            String::new(),
            format!("Bearer {TOKEN}x"),
            "Bearer ".to_string(),
            format!("Token {TOKEN}"),
            format!("Basic {TOKEN}"),
            // The hash itself is not the token.
            format!("Bearer {}", hex::encode(Sha256::digest(TOKEN))),
        ] {
            let presented = if wrong.is_empty() {
                HeaderMap::new()
            } else {
                headers(&wrong)
            };
            assert_eq!(
                check(file, &presented),
                Err(Refused::Unauthorized),
                "{wrong}"
            );
        }
        assert_eq!(check(None, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn a_broken_token_file_refuses_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.sha256");
        std::fs::write(&file, "not a digest").unwrap();
        let presented = headers(&format!("Bearer {TOKEN}"));
        assert_eq!(
            check(Some(&file), &presented),
            Err(Refused::TokenFileBroken)
        );
        assert_eq!(
            check(Some(&dir.path().join("missing")), &presented),
            Err(Refused::TokenFileBroken)
        );
    }
}
