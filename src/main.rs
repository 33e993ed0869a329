//! The `permgate` command line: thin glue over the library.

fn main() {}
