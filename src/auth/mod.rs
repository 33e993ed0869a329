//! Credentials read from request headers (pure: no I/O, no clock).
