//! Typed race configuration (`configs/races/*.toml`) and its validation.
//!
//! Owns the race's static facts: name, sport, start, course file, checkpoints, riders, group and
//! alert thresholds, publish delay and privacy zones. Validation reports every mistake at once.
//! Does not read files: the binary loads the TOML and the course.

use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// One rider as registered by the organiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiderConfig {
    /// Engine-wide rider id, unique in the race.
    pub id: u32,
    /// Race number.
    pub bib: String,
    /// Display name.
    pub name: String,
    /// Team, empty if none.
    #[serde(default)]
    pub team: String,
    /// Identifier of the rider's tracker (device tokens are bound to it).
    pub device_id: String,
    /// SHA-256 (hex) of the device token the organiser handed out for this rider, so a config
    /// can grant a device without holding the secret (`printf %s TOKEN | sha256sum`). Tokens can
    /// also be issued through the organiser API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token_sha256: Option<String>,
}

/// A checkpoint given in the config: a distance along the course or a coordinate to snap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Name shown to fans.
    pub name: String,
    /// Distance along the course, km.
    #[serde(default)]
    pub km: Option<f64>,
    /// Latitude to snap onto the course.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude to snap onto the course.
    #[serde(default)]
    pub lon: Option<f64>,
}

/// A circle in which positions are never published (a rider's home, a team hotel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyZone {
    /// Centre latitude.
    pub lat: f64,
    /// Centre longitude.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
}

/// Thresholds of the alerts feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertThresholds {
    /// Smallest gap of a group ahead of the peloton to count as a breakaway, seconds.
    pub breakaway_min_gap_s: f64,
    /// How long a breakaway must hold before it is announced, seconds.
    pub breakaway_confirm_s: f64,
    /// Gaps (seconds) whose crossing is announced, growing or shrinking.
    pub gap_thresholds_s: Vec<f64>,
    /// A rider slower than this counts as not moving, m/s.
    pub stopped_speed_mps: f64,
    /// How long a rider must not move to be announced stopped, seconds.
    pub stopped_after_s: f64,
    /// Riders stopped within this distance of each other, metres, may have crashed together.
    pub crash_radius_m: f64,
    /// ... and within this time of each other, seconds.
    pub crash_window_s: f64,
    /// A device is lost after this many of its reporting intervals without a fix.
    pub signal_lost_intervals: f64,
    /// Battery percent at or below which a low-battery alert is raised.
    pub low_battery_pct: u8,
    /// Shortest time between two alerts of the same kind about the same subject, seconds.
    pub cooldown_s: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            breakaway_min_gap_s: 10.0,
            breakaway_confirm_s: 30.0,
            gap_thresholds_s: vec![60.0, 120.0, 300.0],
            stopped_speed_mps: 1.0,
            stopped_after_s: 30.0,
            crash_radius_m: 100.0,
            crash_window_s: 30.0,
            signal_lost_intervals: 4.0,
            low_battery_pct: 15,
            cooldown_s: 60.0,
        }
    }
}

/// Sport of the race (decides speed limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sport {
    /// Road cycling.
    RoadCycling,
    /// Gravel and mountain biking.
    Gravel,
    /// Running and trail running.
    Running,
    /// Triathlon.
    Triathlon,
}

impl Sport {
    /// Fastest plausible speed, m/s; faster implied motion between two fixes is rejected.
    pub fn max_speed_mps(self) -> f64 {
        match self {
            Sport::RoadCycling => 35.0,
            Sport::Gravel => 30.0,
            Sport::Running => 12.0,
            Sport::Triathlon => 35.0,
        }
    }
}

/// Who may watch the public feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone.
    Public,
    /// Viewer token or share link needed.
    Private,
}

/// A race.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaceConfig {
    /// Race id (URL and journal folder): `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Sport.
    pub sport: Sport,
    /// Start time, ms since the Unix epoch.
    pub start_ms: i64,
    /// Course file (GPX or GeoJSON), relative to the race config file.
    pub course: String,
    /// Checkpoints besides the finish.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointConfig>,
    /// Riders.
    pub riders: Vec<RiderConfig>,
    /// Riders closer than this (time gap) form a group, seconds. UCI: 1 s; 3 s on some finishes.
    #[serde(default = "default_group_gap_s")]
    pub group_gap_s: f64,
    /// Delay of the public feed, seconds (0 = live).
    #[serde(default)]
    pub publish_delay_s: u32,
    /// Circles in which positions are never published.
    #[serde(default)]
    pub privacy_zones: Vec<PrivacyZone>,
    /// Whether fans and commentators see each device's battery level (in the riders' states and
    /// as low-battery alerts). Off when the devices are the riders' own phones and the organiser
    /// does not want their battery published.
    #[serde(default = "default_publish_battery")]
    pub publish_battery: bool,
    /// Who may watch.
    #[serde(default = "default_visibility")]
    pub visibility: Visibility,
    /// How often devices should report, ms.
    #[serde(default = "default_report_interval_ms")]
    pub report_interval_ms: u32,
    /// Fixes are applied once the clock is this far past their time, so arrival order within the
    /// window never changes the output, ms.
    #[serde(default = "default_reorder_window_ms")]
    pub reorder_window_ms: i64,
    /// Alert thresholds.
    #[serde(default)]
    pub alerts: AlertThresholds,
    /// Threads that apply a tick's due fixes, with the statuses and road order of their riders
    /// (riders are independent there; the output is the same for any count). 1 applies them on
    /// the tick's own thread. A tick uses more only when it has enough due fixes to share (see
    /// `Race::MIN_DUE_PER_APPLY_THREAD`), so small races never start a thread.
    #[serde(default = "default_apply_threads")]
    pub apply_threads: NonZeroUsize,
}

fn default_group_gap_s() -> f64 {
    1.0
}
fn default_publish_battery() -> bool {
    true
}
fn default_visibility() -> Visibility {
    Visibility::Public
}
fn default_report_interval_ms() -> u32 {
    5_000
}
fn default_reorder_window_ms() -> i64 {
    2_000
}
/// Two: a 5,000-rider race at 1 Hz spends about two thirds of its tick applying fixes, which a
/// second core halves (bench/TICK.md, third pass); races with fewer than 512 due fixes a tick
/// stay on one thread whatever this says.
fn default_apply_threads() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN)
}

/// One problem in a race config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RaceConfigError {
    /// Which field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl RaceConfig {
    /// A minimal config for tests and the simulator.
    pub fn new(id: &str, name: &str, start_ms: i64, riders: Vec<RiderConfig>) -> RaceConfig {
        RaceConfig {
            id: id.to_string(),
            name: name.to_string(),
            sport: Sport::RoadCycling,
            start_ms,
            course: String::new(),
            checkpoints: Vec::new(),
            riders,
            group_gap_s: default_group_gap_s(),
            publish_delay_s: 0,
            privacy_zones: Vec::new(),
            publish_battery: default_publish_battery(),
            visibility: Visibility::Public,
            report_interval_ms: default_report_interval_ms(),
            reorder_window_ms: default_reorder_window_ms(),
            alerts: AlertThresholds::default(),
            apply_threads: default_apply_threads(),
        }
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<RaceConfig, RaceConfigError> {
        toml::from_str(text).map_err(|e| RaceConfigError {
            field: "(file)".to_string(),
            message: e.to_string(),
        })
    }

    /// Checks every field; returns all problems at once.
    pub fn validate(&self) -> Result<(), Vec<RaceConfigError>> {
        let mut errors = Vec::new();
        let mut err = |field: &str, message: String| {
            errors.push(RaceConfigError {
                field: field.to_string(),
                message,
            })
        };
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            err(
                "id",
                format!("{:?} must be 1-64 of A-Z a-z 0-9 - _", self.id),
            );
        }
        if self.name.trim().is_empty() {
            err("name", "must not be empty".into());
        }
        if self.riders.is_empty() {
            err("riders", "at least one rider is needed".into());
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut bibs = std::collections::BTreeSet::new();
        let mut devices = std::collections::BTreeSet::new();
        for (i, r) in self.riders.iter().enumerate() {
            if !ids.insert(r.id) {
                err(
                    &format!("riders[{i}].id"),
                    format!("duplicate rider id {}", r.id),
                );
            }
            if !bibs.insert(r.bib.as_str()) {
                err(
                    &format!("riders[{i}].bib"),
                    format!("duplicate bib {:?}", r.bib),
                );
            }
            if let Some(h) = &r.device_token_sha256
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                err(
                    &format!("riders[{i}].device_token_sha256"),
                    "must be 64 hex digits (the SHA-256 of the token)".to_string(),
                );
            }
            if r.device_id.is_empty() || !devices.insert(r.device_id.as_str()) {
                err(
                    &format!("riders[{i}].device_id"),
                    format!("empty or duplicate device id {:?}", r.device_id),
                );
            }
        }
        if !(0.1..=60.0).contains(&self.group_gap_s) {
            err(
                "group_gap_s",
                format!("{} is not in 0.1..=60 s", self.group_gap_s),
            );
        }
        if !(500..=600_000).contains(&self.report_interval_ms) {
            err(
                "report_interval_ms",
                format!("{} is not in 500..=600000", self.report_interval_ms),
            );
        }
        if !(0..=60_000).contains(&self.reorder_window_ms) {
            err(
                "reorder_window_ms",
                format!("{} is not in 0..=60000", self.reorder_window_ms),
            );
        }
        for (i, c) in self.checkpoints.iter().enumerate() {
            let by_coord = c.lat.is_some() && c.lon.is_some();
            if c.km.is_some() == by_coord {
                err(
                    &format!("checkpoints[{i}]"),
                    format!("{:?}: give either km or lat and lon", c.name),
                );
            }
            if c.km.is_some_and(|k| !(k >= 0.0 && k.is_finite())) {
                err(
                    &format!("checkpoints[{i}].km"),
                    "must be a positive number".into(),
                );
            }
        }
        for (i, z) in self.privacy_zones.iter().enumerate() {
            if z.lat.abs() > 90.0
                || z.lon.abs() > 180.0
                || !(z.radius_m > 0.0 && z.radius_m <= 50_000.0)
            {
                err(
                    &format!("privacy_zones[{i}]"),
                    "needs a valid centre and a radius in 0..50 km".into(),
                );
            }
        }
        if self.apply_threads.get() > 64 {
            err(
                "apply_threads",
                format!("{} is not in 1..=64", self.apply_threads),
            );
        }
        // 2000-01-01 to 2200-01-01: later arithmetic on race times stays far from overflow.
        if !(946_684_800_000..=7_258_118_400_000).contains(&self.start_ms) {
            err(
                "start_ms",
                format!("{} is not a time between 2000 and 2200", self.start_ms),
            );
        }
        if self.publish_delay_s > 3_600 {
            err(
                "publish_delay_s",
                format!("{} is not in 0..=3600 s", self.publish_delay_s),
            );
        }
        let a = &self.alerts;
        // Every threshold is a finite number in a range that keeps the alert arithmetic (in
        // integer milliseconds) far from overflow; `open` says whether 0 is allowed.
        let mut in_range = |field: &str, v: f64, open: bool, max: f64, unit: &str| {
            let low_ok = if open { v > 0.0 } else { v >= 0.0 };
            if !(v.is_finite() && low_ok && v <= max) {
                let low = if open { "above 0" } else { "0 or more" };
                err(
                    &format!("alerts.{field}"),
                    format!("{v:?} is not {low} and at most {max} {unit}"),
                );
            }
        };
        in_range(
            "breakaway_min_gap_s",
            a.breakaway_min_gap_s,
            true,
            3_600.0,
            "s",
        );
        in_range(
            "breakaway_confirm_s",
            a.breakaway_confirm_s,
            false,
            3_600.0,
            "s",
        );
        for (i, g) in a.gap_thresholds_s.iter().enumerate() {
            in_range(&format!("gap_thresholds_s[{i}]"), *g, true, 86_400.0, "s");
        }
        in_range("stopped_speed_mps", a.stopped_speed_mps, false, 50.0, "m/s");
        in_range("stopped_after_s", a.stopped_after_s, true, 3_600.0, "s");
        in_range("crash_radius_m", a.crash_radius_m, true, 10_000.0, "m");
        in_range("crash_window_s", a.crash_window_s, false, 3_600.0, "s");
        in_range(
            "signal_lost_intervals",
            a.signal_lost_intervals,
            true,
            1_000.0,
            "",
        );
        in_range("cooldown_s", a.cooldown_s, false, 86_400.0, "s");
        if a.low_battery_pct > 100 {
            err(
                "alerts.low_battery_pct",
                format!("{} is not in 0..=100 %", a.low_battery_pct),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rider(id: u32, bib: &str, dev: &str) -> RiderConfig {
        RiderConfig {
            id,
            bib: bib.into(),
            name: format!("Rider {id}"),
            team: String::new(),
            device_id: dev.into(),
            device_token_sha256: None,
        }
    }

    #[test]
    fn every_mistake_is_reported() {
        let mut c = RaceConfig::new(
            "bad id!",
            "x",
            0,
            vec![rider(1, "1", "a"), rider(1, "1", "a")],
        );
        c.group_gap_s = 0.0;
        c.publish_delay_s = 100_000;
        // Values that would overflow the alerts' millisecond arithmetic.
        c.alerts.gap_thresholds_s = vec![60.0, f64::INFINITY];
        c.alerts.crash_window_s = -1e300;
        c.alerts.low_battery_pct = 250;
        let errors = c.validate().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "id",
                "riders[1].id",
                "riders[1].bib",
                "riders[1].device_id",
                "group_gap_s",
                "start_ms",
                "publish_delay_s",
                "alerts.gap_thresholds_s[1]",
                "alerts.crash_window_s",
                "alerts.low_battery_pct",
            ]
        );
        assert!(
            errors[8].message.contains("-1e300"),
            "{}",
            errors[8].message
        );
    }

    #[test]
    fn toml_round_trip() {
        let text = r#"
            id = "polder"
            name = "Polder Classic"
            sport = "road_cycling"
            start_ms = 1750000000000
            course = "../courses/flevum_demo.gpx"
            group_gap_s = 3.0
            [[riders]]
            id = 1
            bib = "1"
            name = "A"
            device_id = "dev-1"
            [[checkpoints]]
            name = "Sprint"
            km = 10.0
        "#;
        let mut c = RaceConfig::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.group_gap_s, 3.0);
        assert_eq!(c.alerts, AlertThresholds::default());
        assert_eq!(c.apply_threads.get(), 2);
        // Written out (as `flevum simulate` uploads it) and read back, it is the same race.
        c.apply_threads = NonZeroUsize::MIN;
        let again = RaceConfig::from_toml(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let zero = text.replace("group_gap_s = 3.0", "group_gap_s = 3.0\napply_threads = 0");
        assert!(RaceConfig::from_toml(&zero).is_err());
    }
}
