//! Integration tests of the gateway: HTTP API through the router, tracker-app ingest on the
//! real sample requests, and live/alerts feeds over real sockets.

mod http;
mod ingest;
mod sockets;
mod support;
