//! Flevum race engine: the sans-IO race core, the QUIC ingest shell, the durable journal and the
//! shard tasks that own races.
//!
//! `core` is deterministic and never reads a clock or touches IO beyond loading a course; the other
//! modules are the thin shells that feed it.

#![deny(unsafe_code)]

pub mod core;
pub mod ingest;
pub mod journal;
pub mod shard;
pub mod simulator;
pub mod testkit;
