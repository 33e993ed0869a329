//! The upstream's own credential (`upstream.auth`): a bearer token the gateway holds for the upstream and
//! sets as `Authorization: Bearer …` on every request it authorized and forwards, in place of whatever
//! credential the client sent.
//!
//! This is what lets permgate hand out narrow tokens in front of an API whose own tokens are broad: clients
//! hold permgate tokens scoped to one DNS record or one Worker, and only the gateway holds the upstream's.
//! The secret is read from a file (a trailing newline trimmed) or an environment variable when the gateway
//! starts and whenever a reload applies; it is never shown: the value is a sensitive `HeaderValue`, `Debug`
//! prints `<redacted>`, and errors name the file or the variable, never what it holds.

use std::fmt;
use std::path::PathBuf;

use http::HeaderValue;

use crate::config::gateway::UpstreamAuth;

/// The upstream's bearer token, ready to send: `Bearer <token>` as a sensitive header value.
#[derive(Clone)]
pub struct UpstreamCredential {
    /// Where it was read from (shown in `Debug`; the value never is).
    source: UpstreamAuth,
    authorization: HeaderValue,
}

/// Why the upstream credential could not be read. Names the source, never its content.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamAuthError {
    #[error("upstream.auth.bearer_file {}: cannot read it: {kind}", path.display())]
    Unreadable {
        path: PathBuf,
        /// The I/O error's kind only (its message could in principle quote the path, never the content).
        kind: std::io::ErrorKind,
    },
    #[error(
        "upstream.auth.bearer_env {0}: the environment variable is not set, or not valid UTF-8"
    )]
    MissingVariable(String),
    #[error("upstream.auth ({0}): the token is empty")]
    Empty(String),
    #[error(
        "upstream.auth ({0}): the token holds a character a bearer token cannot (only visible ASCII, no \
         spaces)"
    )]
    Malformed(String),
}

// === impl UpstreamCredential ===

impl UpstreamCredential {
    /// Reads the credential from its source: the file's content or the variable's value, with trailing
    /// newlines (`\n`, `\r\n`) trimmed; it must then be a non-empty token of visible ASCII.
    pub fn read(source: &UpstreamAuth) -> Result<Self, UpstreamAuthError> {
        let text = match source {
            UpstreamAuth::BearerFile(path) => {
                std::fs::read_to_string(path).map_err(|error| UpstreamAuthError::Unreadable {
                    path: path.clone(),
                    kind: error.kind(),
                })?
            }
            UpstreamAuth::BearerEnv(name) => {
                std::env::var(name).map_err(|_| UpstreamAuthError::MissingVariable(name.clone()))?
            }
        };
        Self::from_token(source.clone(), &text)
    }

    /// The credential for `token` as read from `source` (trailing newlines trimmed, then checked).
    fn from_token(source: UpstreamAuth, token: &str) -> Result<Self, UpstreamAuthError> {
        let token = token.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            return Err(UpstreamAuthError::Empty(describe(&source)));
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(UpstreamAuthError::Malformed(describe(&source)));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| UpstreamAuthError::Malformed(describe(&source)))?;
        // Never logged by hyper, and never indexed by an HTTP/2 header table.
        authorization.set_sensitive(true);
        Ok(Self {
            source,
            authorization,
        })
    }

    /// The `Authorization` value to send upstream.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// Where the credential was read from.
    pub fn source(&self) -> &UpstreamAuth {
        &self.source
    }
}

impl fmt::Debug for UpstreamCredential {
    /// The source only: the token is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCredential")
            .field("source", &self.source)
            .field("authorization", &"<redacted>")
            .finish()
    }
}

/// The source in words, for errors: `bearer_file /run/secrets/cf`, `bearer_env CLOUDFLARE_API_TOKEN`.
fn describe(source: &UpstreamAuth) -> String {
    match source {
        UpstreamAuth::BearerFile(path) => format!("bearer_file {}", path.display()),
        UpstreamAuth::BearerEnv(name) => format!("bearer_env {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "cf-upstream-secret-0123456789";

    #[test]
    fn a_token_file_is_read_with_its_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        for content in [
            SECRET.to_string(),
            format!("{SECRET}\n"),
            format!("{SECRET}\r\n"),
        ] {
            let path = dir.path().join("token");
            std::fs::write(&path, &content).unwrap();
            let credential = UpstreamCredential::read(&UpstreamAuth::BearerFile(path)).unwrap();
            assert_eq!(
                credential.authorization().to_str().unwrap(),
                format!("Bearer {SECRET}")
            );
            assert!(credential.authorization().is_sensitive());
        }
    }

    #[test]
    fn nothing_shows_the_secret() {
        let credential =
            UpstreamCredential::from_token(UpstreamAuth::BearerEnv("CF_TOKEN".to_string()), SECRET)
                .unwrap();
        let shown = format!("{credential:?} {credential:#?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("CF_TOKEN") && shown.contains("<redacted>"));
        assert!(!format!("{:?}", credential.authorization()).contains(SECRET));
    }

    #[test]
    fn a_bad_token_or_source_is_an_error_naming_the_source_only() {
        let env = || UpstreamAuth::BearerEnv("CF_TOKEN".to_string());
        for (token, kind) in [
            ("", "empty"),
            ("\n", "empty"),
            ("secret with-space", "character"),
            ("secret\tx", "character"),
            ("caf\u{e9}", "character"),
        ] {
            let error = UpstreamCredential::from_token(env(), token).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(kind), "{message}");
            assert!(message.contains("CF_TOKEN"), "{message}");
            if !token.trim().is_empty() {
                assert!(!message.contains(token), "{message}");
            }
        }
        let missing = UpstreamCredential::read(&UpstreamAuth::BearerFile(PathBuf::from(
            "/nonexistent/permgate/token",
        )))
        .unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/permgate/token"),
            "{missing}"
        );
        let unset = UpstreamCredential::read(&UpstreamAuth::BearerEnv(
            "PERMGATE_TEST_SURELY_UNSET_VARIABLE".to_string(),
        ))
        .unwrap_err();
        assert!(matches!(unset, UpstreamAuthError::MissingVariable(_)));
    }
}
