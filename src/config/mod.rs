//! Configuration: the raw serde mirror of the files, and loading them into one compiled snapshot.

pub mod error;
pub mod gateway;
pub mod load;
pub mod parallel;
pub mod raw;
pub mod source;

pub use error::{ConfigError, ConfigErrors};
pub use load::{ConfigSet, PolicyFile, compile, content_hash, load, read};
pub use source::SourceFile;
