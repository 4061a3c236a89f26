//! Flevum binary.
fn main() {}
