//! Configuration: the raw serde mirror of the files, and loading them into one compiled snapshot.

pub mod error;
pub mod source;

pub use error::{ConfigError, ConfigErrors};
pub use source::SourceFile;
