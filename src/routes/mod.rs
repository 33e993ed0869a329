//! Routes: canonical request targets and the matchit route tables (pure: no I/O).
