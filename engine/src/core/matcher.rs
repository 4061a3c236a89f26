//! Course-constrained map matching of one rider's fixes (placeholder: nearest candidate).
//!
//! Owns the choice of a position along the course for each fix and the off-course judgement. Does
//! not rank riders or compute gaps; the race state does.

use super::{CourseIndex, Millis};
use flevum_protocol::PositionRecord;

/// A GPS fix in engine units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Event time, ms since the Unix epoch.
    pub time_ms: Millis,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Horizontal accuracy (1 sigma), metres, if known.
    pub accuracy_m: Option<f64>,
    /// Ground speed, m/s, if known.
    pub speed_mps: Option<f64>,
    /// Heading, degrees clockwise from north, if known.
    pub heading_deg: Option<f64>,
}

impl From<&PositionRecord> for Fix {
    fn from(r: &PositionRecord) -> Self {
        Fix {
            time_ms: r.time_ms,
            lat: f64::from(r.lat_e7) * 1e-7,
            lon: f64::from(r.lon_e7) * 1e-7,
            accuracy_m: (r.accuracy_dm != u16::MAX).then(|| f64::from(r.accuracy_dm) / 10.0),
            speed_mps: (r.speed_cms != u16::MAX).then(|| f64::from(r.speed_cms) / 100.0),
            heading_deg: (r.heading_cdeg != u16::MAX).then(|| f64::from(r.heading_cdeg) / 100.0),
        }
    }
}

/// Tuning of the matcher.
#[derive(Debug, Clone, PartialEq)]
pub struct MatcherConfig {
    /// Lateral distance beyond which a fix counts towards leaving the course, metres.
    pub off_course_exit_m: f64,
    /// Lateral distance below which an off-course rider counts as back, metres.
    pub off_course_reentry_m: f64,
    /// How long a rider must stay beyond the exit threshold to be off course, ms.
    pub off_course_min_ms: Millis,
    /// Fixes with worse accuracy than this are not used for the off-course judgement, metres.
    pub max_accuracy_for_off_course_m: f64,
    /// Search radius for candidates, metres.
    pub search_radius_m: f64,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        MatcherConfig {
            off_course_exit_m: 100.0,
            off_course_reentry_m: 50.0,
            off_course_min_ms: 30_000,
            max_accuracy_for_off_course_m: 50.0,
            search_radius_m: 150.0,
        }
    }
}

/// Where a fix lies on the course.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchedFix {
    /// Event time of the fix.
    pub time_ms: Millis,
    /// Distance along the course, metres (never jumps back by more than GPS noise).
    pub distance_m: f64,
    /// Distance from the course, metres.
    pub lateral_m: f64,
    /// Segment index the fix was matched to.
    pub segment: usize,
    /// Confidence in 0..=1.
    pub confidence: f32,
    /// True while the rider is judged off course.
    pub off_course: bool,
    /// False when no candidate was found and `distance_m` is carried over from the last match.
    pub matched: bool,
}

/// Per-rider matching state. Cheap to clone so callers can keep checkpoints for late-fix replays.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Tuning.
    config: MatcherConfig,
    /// Last output, the prior for the next fix.
    last: Option<MatchedFix>,
}

impl Matcher {
    /// A matcher with no history.
    pub fn new(config: MatcherConfig) -> Self {
        Matcher { config, last: None }
    }

    /// The last match, if any.
    pub fn last(&self) -> Option<&MatchedFix> {
        self.last.as_ref()
    }

    /// Matches one fix, in event-time order.
    pub fn match_fix(&mut self, index: &CourseIndex, fix: &Fix) -> MatchedFix {
        let (x, y) = index.course().project(fix.lat, fix.lon);
        let best = index
            .candidates(x, y, self.config.search_radius_m)
            .into_iter()
            .min_by(|a, b| a.lateral_m.total_cmp(&b.lateral_m));
        let out = match (best, self.last) {
            (Some(c), _) => MatchedFix {
                time_ms: fix.time_ms,
                distance_m: c.distance_m,
                lateral_m: c.lateral_m,
                segment: c.segment,
                confidence: 0.5,
                off_course: c.lateral_m > self.config.off_course_exit_m,
                matched: true,
            },
            (None, Some(prev)) => MatchedFix {
                time_ms: fix.time_ms,
                matched: false,
                off_course: true,
                lateral_m: self.config.search_radius_m,
                ..prev
            },
            (None, None) => MatchedFix {
                time_ms: fix.time_ms,
                distance_m: 0.0,
                lateral_m: self.config.search_radius_m,
                segment: 0,
                confidence: 0.0,
                off_course: true,
                matched: false,
            },
        };
        self.last = Some(out);
        out
    }
}
