//! Credentials read from request headers (pure: no I/O, no clock).

pub mod credential;
pub mod secret;

pub use credential::{Credential, CredentialError, read_credential};
pub use secret::{TOKEN_PREFIX, encode_token, looks_like_permgate_token};
