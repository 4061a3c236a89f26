//! Integration tests of the `flevum` binary, one target: its command line, crash recovery under
//! SIGKILL, a delayed race's public status, and the NATS scale-out (split roles, JetStream
//! failover). They run the built binary as a user would; `support` holds what they share.

mod cli;
mod crash;
mod delayed;
mod nats_failover;
mod nats_split;
mod support;
mod tokens;
