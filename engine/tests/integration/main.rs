//! The engine's one integration-test target: real-data matching, race, journal and ingest tests.
//!
//! Each area has its own module; `support` holds the shared helpers (real-data paths, fixtures).

mod ingest;
mod journal;
mod matching;
mod race;
mod shard;
mod support;
