//! NATS subject names of the bus, in one place: `race.<id>.frames` (snapshots and deltas,
//! rkyv binary `FanFrame`), `race.<id>.alerts` (alert frames), `race.<id>.snapshot`
//! (request/reply) and `flevum.ctl.<method>` (gateway → engine control, JSON).
//!
//! Also checks that a race id is a valid single subject token.

use crate::BusError;

/// Prefix of the control request subjects.
pub const CONTROL_PREFIX: &str = "flevum.ctl";

/// Queue group the engines answer control requests in (one engine answers each request).
pub const CONTROL_QUEUE: &str = "flevum-engines";

/// Checks that `race_id` can be one subject token.
pub fn check_race_id(race_id: &str) -> Result<(), BusError> {
    let bad = race_id.is_empty()
        || race_id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control());
    if bad {
        Err(BusError::BadRaceId(race_id.to_string()))
    } else {
        Ok(())
    }
}

/// Snapshots and deltas of a race.
pub fn frames(race_id: &str) -> String {
    format!("race.{race_id}.frames")
}

/// Alerts of a race.
pub fn alerts(race_id: &str) -> String {
    format!("race.{race_id}.alerts")
}

/// Snapshot requests of a race.
pub fn snapshot(race_id: &str) -> String {
    format!("race.{race_id}.snapshot")
}

/// Prefix of the per-race control subjects, answered by the race's owner: `race.<id>.ctl`.
pub fn race_control_prefix(race_id: &str) -> String {
    format!("race.{race_id}.ctl")
}

/// A per-race control method's subject.
pub fn race_control(race_id: &str, method: &str) -> String {
    format!("race.{race_id}.ctl.{method}")
}

/// A control method's subject.
pub fn control(method: &str) -> String {
    format!("{CONTROL_PREFIX}.{method}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn race_ids_that_would_break_subjects_are_refused() {
        assert!(check_race_id("polder-classic_2026").is_ok());
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb"] {
            assert!(check_race_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(frames("r1"), "race.r1.frames");
        assert_eq!(control("races"), "flevum.ctl.races");
        assert_eq!(race_control("r1", "ingest"), "race.r1.ctl.ingest");
    }
}
