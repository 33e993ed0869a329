//! Configuration: the raw serde mirror of the files ([`raw`]), their compilers into the model ([`mod@compile`]),
//! and loading them into one compiled snapshot ([`mod@load`]).

pub mod compile;
pub mod error;
pub mod gateway;
pub mod ledger;
pub mod load;
pub mod parallel;
pub mod raw;
pub mod source;

pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use ledger::{Inconsistency, ReadHook, ReadLedger};
pub use load::{ConfigSet, PolicyFile, compile, content_hash, load, read, read_into, read_with};
pub use source::SourceFile;
