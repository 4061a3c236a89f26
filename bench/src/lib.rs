//! Flevum benchmark helpers.
