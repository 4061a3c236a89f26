//! Flevum gateway.
