//! The access model compiled into indexed structures, and the pure decision over it (no I/O, no clock).

pub mod actions;
pub mod decision;
pub mod evaluate;
pub mod id_index;
pub mod keys;
pub mod model;

pub use decision::{Denial, Outcome, PolicySource};
pub use evaluate::{
    AccessRequest, Decision, KeyVerdict, Known, Presented, Required, Target, TokenOwner,
};
pub use keys::{KeyId, KeyInterner, KeyPattern, KeySet};
pub use model::{
    PolicySet, Principal, PrincipalKind, ResourceKind, ResourceRef, Token, TokenFileRecord,
    Warning, WarningKind,
};
