//! The sans-IO race engine: course geometry, map matching, race state, analytics and alerts.
//!
//! Every input carries an explicit `now` (ms since the Unix epoch); nothing here reads a clock,
//! spawns a task or touches a socket, so replays are byte-identical.

pub mod course;
pub mod course_index;
pub mod geodesy;
pub mod matcher;

pub use course::{Checkpoint, Course, CourseError, CoursePoint, Segment};
pub use course_index::CourseIndex;
pub use matcher::{Fix, MatchState, MatchedFix, Matcher, MatcherConfig};

/// Milliseconds since the Unix epoch: the one time unit of the core.
pub type Millis = i64;
pub mod race;
pub use race::{AdminCommand, FixRejection, Race, RaceConfig, RaceOutput};
