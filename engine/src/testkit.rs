//! Synthetic riders with known ground truth, for accuracy tests, benchmarks and load tests.
//!
//! Owns generating noisy GPS tracks along a course (noise, irregular sampling, dropouts, an
//! optional off-course excursion) and scoring a matcher against the truth. Does not simulate a
//! race (riders interacting, groups, crashes): that is the race simulator's job.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::{CourseIndex, Fix, Matcher, MatcherConfig, Millis};

/// A leg of an excursion away from the course.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Excursion {
    /// Course distance where the rider leaves, metres.
    pub at_m: f64,
    /// Largest lateral offset reached, metres.
    pub offset_m: f64,
    /// Time spent at the largest offset, seconds.
    pub hold_s: f64,
}

/// How to generate one synthetic rider.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// Per-axis standard deviation of the position noise, metres.
    pub noise_m: f64,
    /// Shortest sampling interval, seconds.
    pub min_interval_s: f64,
    /// Longest sampling interval, seconds.
    pub max_interval_s: f64,
    /// Mean speed, m/s.
    pub speed_mps: f64,
    /// Probability per fix that a dropout (30–120 s without fixes) starts.
    pub dropout_probability: f64,
    /// Optional excursion off the course.
    pub excursion: Option<Excursion>,
    /// Start time, ms since the Unix epoch.
    pub start_ms: Millis,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            noise_m: 10.0,
            min_interval_s: 1.0,
            max_interval_s: 10.0,
            speed_mps: 9.0,
            dropout_probability: 0.01,
            excursion: None,
            start_ms: 1_750_000_000_000,
        }
    }
}

/// One generated fix with its truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthFix {
    /// What the device reports.
    pub fix: Fix,
    /// True distance along the course, metres.
    pub true_distance_m: f64,
    /// True lateral offset from the course, metres.
    pub true_offset_m: f64,
}

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Generates a rider's fixes from the start to the finish of the course.
pub fn synthetic_track(index: &CourseIndex, cfg: &SyntheticConfig, seed: u64) -> Vec<TruthFix> {
    let course = index.course();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut t = 0.0f64;
    let mut d = 0.0f64;
    // Excursion timeline (seconds): ramp out 20 s, hold, ramp back 20 s; progress pauses.
    let mut excursion_start: Option<f64> = None;
    let mut excursion_done = false;
    let speed = cfg.speed_mps * (0.9 + 0.2 * rng.random::<f64>());
    while d < course.length_m() {
        let dt =
            cfg.min_interval_s + (cfg.max_interval_s - cfg.min_interval_s) * rng.random::<f64>();
        let mut offset = 0.0;
        if let (Some(ex), false) = (cfg.excursion, excursion_done) {
            if excursion_start.is_none() && d >= ex.at_m {
                excursion_start = Some(t);
            }
            if let Some(s) = excursion_start {
                let e = t - s;
                let total = 40.0 + ex.hold_s;
                offset = if e < 20.0 {
                    ex.offset_m * e / 20.0
                } else if e < 20.0 + ex.hold_s {
                    ex.offset_m
                } else if e < total {
                    ex.offset_m * (total - e) / 20.0
                } else {
                    excursion_done = true;
                    0.0
                };
            }
        }
        let on_excursion = excursion_start.is_some() && !excursion_done;
        let (lat, lon) = course.position_at(d);
        let bearing = course.bearing_at(d).to_radians();
        // Offset to the left of the direction of travel, plus noise on each axis.
        let (east, north) = (-bearing.cos() * offset, bearing.sin() * offset);
        let east = east + cfg.noise_m * gaussian(&mut rng);
        let north = north + cfg.noise_m * gaussian(&mut rng);
        let m_per_deg_lat = 111_132.0;
        let m_per_deg_lon = 111_320.0 * lat.to_radians().cos();
        let fix = Fix {
            time_ms: cfg.start_ms + (t * 1000.0) as Millis,
            lat: lat + north / m_per_deg_lat,
            lon: lon + east / m_per_deg_lon,
            accuracy_m: Some(cfg.noise_m.max(3.0)),
            speed_mps: Some((speed + 0.3 * gaussian(&mut rng)).max(0.0)),
            heading_deg: Some((bearing.to_degrees() + 5.0 * gaussian(&mut rng)).rem_euclid(360.0)),
        };
        out.push(TruthFix {
            fix,
            true_distance_m: d,
            true_offset_m: offset,
        });
        let mut step = dt;
        if rng.random::<f64>() < cfg.dropout_probability {
            step += 30.0 + 90.0 * rng.random::<f64>();
        }
        t += step;
        if !on_excursion {
            d += speed * step;
        }
    }
    out
}

/// How well a matcher followed a synthetic rider.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TrackScore {
    /// Fixes scored.
    pub fixes: usize,
    /// Fixes (on course) whose reported distance is within 20 m of the truth.
    pub within_20m: usize,
    /// On-course fixes scored for distance.
    pub on_course_fixes: usize,
    /// Fixes placed more than 250 m from the truth (the wrong leg of a shared road).
    pub wrong_leg: usize,
    /// Seconds from the truth crossing the exit threshold to the off-course flag, if detected.
    pub off_course_latency_s: Option<f64>,
    /// Off-course flags raised while the rider was truly on course.
    pub false_alarms: usize,
}

/// Runs a fresh matcher over a synthetic track and scores it against the truth.
pub fn score_track(index: &CourseIndex, config: &MatcherConfig, track: &[TruthFix]) -> TrackScore {
    let mut matcher = Matcher::new(config.clone());
    let mut score = TrackScore::default();
    let mut crossed_at: Option<Millis> = None;
    let mut was_off = false;
    for tf in track {
        let m = matcher.match_fix(index, &tf.fix);
        score.fixes += 1;
        if tf.true_offset_m > config.off_course_exit_m && crossed_at.is_none() {
            crossed_at = Some(tf.fix.time_ms);
        }
        if m.off_course && !was_off {
            match crossed_at {
                Some(c) if tf.true_offset_m > 0.0 => {
                    score
                        .off_course_latency_s
                        .get_or_insert((tf.fix.time_ms - c) as f64 / 1000.0);
                }
                _ => score.false_alarms += 1,
            }
        }
        was_off = m.off_course;
        if tf.true_offset_m == 0.0 {
            score.on_course_fixes += 1;
            let err = (m.distance_m - tf.true_distance_m).abs();
            if err <= 20.0 {
                score.within_20m += 1;
            }
            if err > 250.0 {
                score.wrong_leg += 1;
            }
        }
    }
    score
}

/// A course distance (searched from a third of the course on, in 250 m steps) where a rider who
/// leaves the course by `offset_m` to the left is really away from every part of the course, so
/// the excursion is off course and not a shortcut onto another leg.
pub fn clear_excursion_start(index: &CourseIndex, offset_m: f64) -> Option<f64> {
    let course = index.course();
    let mut d = course.length_m() / 3.0;
    while d < course.length_m() - 1000.0 {
        let clear = (0..=4).all(|k| {
            let at = d + 20.0 * k as f64;
            let (lat, lon) = course.position_at(at);
            let (x, y) = course.project(lat, lon);
            let b = course.bearing_at(at).to_radians();
            let (ox, oy) = (x - b.cos() * offset_m, y + b.sin() * offset_m);
            index
                .nearest(ox, oy)
                .is_some_and(|c| c.lateral_m > 0.8 * offset_m)
        });
        if clear {
            return Some(d);
        }
        d += 250.0;
    }
    None
}
