//! [`BusError`]: why a bus operation failed (connection, subscription, request, encoding).
//!
//! Wraps the NATS client's errors as text with their context; the bus never panics on what a
//! peer sent, it counts and drops it.

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The URL tried.
        url: String,
        /// The client's reason.
        message: String,
    },
    /// A subscription could not be made.
    #[error("cannot subscribe to {subject}: {message}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's reason.
        message: String,
    },
    /// A publish or flush failed (the connection is gone).
    #[error("cannot publish on {subject}: {message}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's reason.
        message: String,
    },
    /// Nobody answers this request subject (no engine owns the race, or no engine is up).
    #[error("no responder on {0}")]
    NoResponders(String),
    /// The responder did not answer in time.
    #[error("request on {0} timed out")]
    Timeout(String),
    /// A request failed for another reason.
    #[error("request on {subject} failed: {message}")]
    Request {
        /// The subject.
        subject: String,
        /// The client's reason.
        message: String,
    },
    /// A race id that cannot be a NATS subject token (empty, or with `.`, `*`, `>` or spaces).
    #[error("race id {0:?} cannot be used in a NATS subject")]
    BadRaceId(String),
    /// A payload could not be encoded or decoded.
    #[error("bad payload on {subject}: {message}")]
    Payload {
        /// The subject.
        subject: String,
        /// What was wrong.
        message: String,
    },
    /// The remote side answered with an error.
    #[error("remote error: {0}")]
    Remote(String),
}
