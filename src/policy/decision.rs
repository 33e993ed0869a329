//! What a decision says: allowed, or denied with a reason a human can act on (SPEC §3.5).
//!
//! A [`Denial`] borrows its names from the compiled policy set, so deciding allocates nothing; it is turned
//! into text only when an answer or a log line needs it. It never mentions another token or another user:
//! only the caller's own credential, the resource it asked for and the policy or key that decided.

use std::fmt;
use std::net::IpAddr;

use super::keys::{KeyId, KeyInterner};
use super::model::{ResourceRef, UserGroup};

/// Which policy list a key was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The token's own policies.
    Token,
    /// The owning user's member policies in the resource's account.
    Member,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Token => "the token's policies",
            Self::Member => "the user's member policies",
        })
    }
}

/// Several keys, by name, for reasons (`a, b, c`).
#[derive(Debug, Clone)]
pub struct KeyList<'s> {
    pub names: &'s KeyInterner,
    pub ids: Box<[KeyId]>,
}

impl fmt::Display for KeyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, id) in self.ids.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            f.write_str(self.names.name(*id))?;
        }
        Ok(())
    }
}

/// Why a request was denied. Each variant maps to one status and code (see [`crate::answer`]).
#[derive(Debug, Clone)]
pub enum Denial<'s> {
    /// No token has the presented secret's hash.
    TokenUnknown,
    /// The token exists but its status is `disabled`.
    TokenDisabled { token: &'s str },
    /// The token's status is `expired`, or `expires_on` has passed.
    TokenExpired { token: &'s str, at: Option<&'s str> },
    /// `not_before` is still in the future.
    TokenNotYetValid { token: &'s str, at: &'s str },
    /// The legacy key's email is unknown, the user has no key, or the key does not match.
    LegacyKeyUnknown,
    /// The client IP is outside the token's `condition.request.ip`.
    IpOutsideCondition { token: &'s str, ip: IpAddr },
    /// The route targets a resource id the config does not know.
    UnknownResource { kind: &'static str, id: Box<str> },
    /// The user is not a member of the resource's account.
    NotMember { user: &'s str, account: &'s str },
    /// The member's API access is disabled on the resource's account.
    ApiAccessDisabled { user: &'s str, account: &'s str },
    /// An account-owned token asked for a resource of another account.
    OutsideOwnAccount { token: &'s str, account: &'s str },
    /// An account-owned token on a user-scope route.
    AccountTokenOnUserRoute { token: &'s str },
    /// A required key is not granted by `source` on the resource.
    MissingPermission {
        key: &'s str,
        resource: ResourceRef<'s>,
        source: PolicySource,
    },
    /// None of an any-of set's keys is granted on the resource.
    MissingAnyPermission {
        keys: KeyList<'s>,
        resource: ResourceRef<'s>,
        source: PolicySource,
    },
    /// A deny policy matched.
    DeniedByPolicy {
        policy: &'s str,
        key: &'s str,
        resource: ResourceRef<'s>,
        source: PolicySource,
        /// The user group the member's deny policy comes from (`None`: the token's or the member's own).
        group: Option<&'s UserGroup>,
    },
    /// A collection route (`scope: any`): no resource on which the request would be allowed.
    NoResourceAllowed {
        keys: KeyList<'s>,
        /// Accounts that were not tried because the member's API access is disabled there (may be empty).
        api_access_disabled_on: Vec<&'s str>,
    },
    /// A route that answers for tokens only (token verify) was called with a legacy key.
    NotAToken,
    /// A verify route for another owner's tokens: a user token on an account's path, another account's
    /// token, or an account token on the user path. `owner` is whom the route answers for, as the path says.
    NotVerifiableHere { token: &'s str, owner: Box<str> },
    /// The route does not accept this kind of credential (its `principals:` leave it out); `kind` says
    /// which, in words (`account-owned tokens`).
    CredentialNotAccepted { kind: &'static str },
    /// Something could not be decided: fail closed.
    Internal { what: &'static str },
}

impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenUnknown => f.write_str("no token has this secret"),
            Self::TokenDisabled { token } => write!(f, "token {token} is disabled"),
            Self::TokenExpired {
                token,
                at: Some(at),
            } => write!(f, "token {token} expired at {at}"),
            Self::TokenExpired { token, at: None } => write!(f, "token {token} has status expired"),
            Self::TokenNotYetValid { token, at } => {
                write!(f, "token {token} is not valid before {at}")
            }
            Self::LegacyKeyUnknown => f.write_str("no user has this X-Auth-Email and X-Auth-Key"),
            Self::IpOutsideCondition { token, ip } => {
                write!(
                    f,
                    "client IP {ip} is outside the request.ip condition of token {token}"
                )
            }
            Self::UnknownResource { kind, id } => write!(f, "unknown {kind} {id}"),
            Self::NotMember { user, account } => {
                write!(f, "user {user} is not a member of account {account}")
            }
            Self::ApiAccessDisabled { user, account } => {
                write!(
                    f,
                    "API access is disabled for member {user} on account {account}"
                )
            }
            Self::OutsideOwnAccount { token, account } => {
                write!(f, "account token {token} cannot act on account {account}")
            }
            Self::AccountTokenOnUserRoute { token } => {
                write!(f, "account token {token} cannot use a user-scope route")
            }
            Self::MissingPermission {
                key,
                resource,
                source,
            } => {
                write!(f, "{key} is not granted on {resource} by {source}")
            }
            Self::MissingAnyPermission {
                keys,
                resource,
                source,
            } => {
                write!(f, "none of {keys} is granted on {resource} by {source}")
            }
            Self::DeniedByPolicy {
                policy,
                key,
                resource,
                source,
                group,
            } => {
                write!(f, "deny policy {policy} of {source}")?;
                if let Some(group) = group {
                    write!(f, " (from user group {})", group.id)?;
                }
                write!(f, " matches {key} on {resource}")
            }
            Self::NoResourceAllowed {
                keys,
                api_access_disabled_on,
            } => {
                write!(f, "{keys} is not granted on any resource")?;
                if !api_access_disabled_on.is_empty() {
                    write!(
                        f,
                        " (API access is disabled on account {})",
                        api_access_disabled_on.join(", ")
                    )?;
                }
                Ok(())
            }
            Self::NotAToken => {
                f.write_str("token verification needs an API token, not a legacy API key")
            }
            Self::NotVerifiableHere { token, owner } => {
                write!(
                    f,
                    "token {token} is not owned by {owner}, whose tokens this path verifies"
                )
            }
            Self::CredentialNotAccepted { kind } => {
                write!(f, "this route does not accept {kind}")
            }
            Self::Internal { what } => write!(f, "internal error: {what}"),
        }
    }
}

/// The outcome of authorizing one request.
pub type Outcome<'s> = Result<(), Denial<'s>>;
