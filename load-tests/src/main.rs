//! Flevum load generator.
fn main() {}
