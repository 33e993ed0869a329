//! The access model compiled into indexed structures, and the pure decision over it (no I/O, no clock).

pub mod keys;
