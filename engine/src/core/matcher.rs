//! Course-constrained map matching of one rider's fixes.
//!
//! Owns the choice of a position along the course for each fix and the off-course judgement: a
//! forward filter whose transition model is one-dimensional (expected progress = speed × elapsed
//! time, a small allowed backtrack) plus a heading term, so out-and-back legs and laps resolve
//! without routing; the R-tree is consulted only to acquire or re-acquire a rider. Does not rank
//! riders or compute gaps; the race state does.

use std::sync::OnceLock;

use super::course::Segment;
use super::geodesy::planar_len;
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
            lat: r.lat_deg(),
            lon: r.lon_deg(),
            accuracy_m: r.accuracy_m(),
            speed_mps: r.speed_mps(),
            heading_deg: r.heading_deg(),
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
    /// How long a rider must stay beyond the exit threshold to be off course (and within the
    /// re-entry threshold to be back), ms.
    pub off_course_min_ms: Millis,
    /// Fixes with worse accuracy than this are not used for the off-course judgement, metres.
    pub max_accuracy_for_off_course_m: f64,
    /// Farthest a fix may lie from the course and still move the rider's progress, metres.
    pub search_radius_m: f64,
    /// Fastest plausible progress along the course, m/s (bounds the transition window).
    pub max_speed_mps: f64,
    /// How far progress may move backwards between fixes (GPS noise), metres.
    pub backtrack_m: f64,
    /// Assumed accuracy when a fix carries none, metres.
    pub default_accuracy_m: f64,
    /// Consecutive unmatched fixes after which the matcher searches the whole course again.
    pub research_after: u32,
    /// Gap between fixes after which the matcher searches the whole course again, ms.
    pub research_after_gap_ms: Millis,
    /// Weight of the heading term (cost of riding exactly against a segment's direction).
    pub heading_weight: f64,
    /// Standard deviation of the rider's acceleration along the course, m/s² (process noise of
    /// the progress filter).
    pub accel_noise_mps2: f64,
    /// Standard deviation of a device's Doppler speed, m/s.
    pub speed_noise_mps: f64,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        MatcherConfig {
            off_course_exit_m: 75.0,
            off_course_reentry_m: 40.0,
            off_course_min_ms: 20_000,
            max_accuracy_for_off_course_m: 50.0,
            search_radius_m: 150.0,
            max_speed_mps: 30.0,
            backtrack_m: 30.0,
            default_accuracy_m: 10.0,
            research_after: 3,
            research_after_gap_ms: 15 * 60 * 1000,
            heading_weight: 6.0,
            accel_noise_mps2: 0.5,
            speed_noise_mps: 0.5,
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
    /// False when the fix was too far from any plausible course position; `distance_m` is then
    /// carried over from the last match.
    pub matched: bool,
}

/// The progress filter: a constant-velocity Kalman filter on (distance along course, speed),
/// the prior of the transition model.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Progress {
    /// Event time of the last update.
    time_ms: Millis,
    /// Filtered distance along the course, metres.
    distance_m: f64,
    /// Filtered speed along the course, m/s.
    speed_mps: f64,
    /// Covariance of (distance, speed).
    cov: [[f64; 2]; 2],
    /// Segment of the last match.
    segment: usize,
}

impl Progress {
    /// Starts a filter at a measured distance.
    fn start(
        time_ms: Millis,
        distance_m: f64,
        speed_mps: f64,
        sigma_m: f64,
        segment: usize,
    ) -> Self {
        Progress {
            time_ms,
            distance_m,
            speed_mps,
            cov: [[sigma_m * sigma_m, 0.0], [0.0, 9.0]],
            segment,
        }
    }

    /// The state predicted at `time_ms`: (distance, speed, covariance).
    fn predict(&self, time_ms: Millis, accel_sigma: f64) -> (f64, f64, [[f64; 2]; 2]) {
        let dt = ((time_ms - self.time_ms) as f64 / 1000.0).max(0.0);
        let q = accel_sigma * accel_sigma;
        let p = self.cov;
        let p00 = p[0][0] + dt * (p[1][0] + p[0][1]) + dt * dt * p[1][1] + q * dt.powi(3) / 3.0;
        let p01 = p[0][1] + dt * p[1][1] + q * dt * dt / 2.0;
        let p11 = p[1][1] + q * dt;
        (
            self.distance_m + self.speed_mps * dt,
            self.speed_mps,
            [[p00, p01], [p01, p11]],
        )
    }

    /// Takes the prediction to `time_ms` (`prior`, from [`Progress::predict`]), then fuses a
    /// distance measurement and optionally a speed one.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        time_ms: Millis,
        prior: (f64, f64, [[f64; 2]; 2]),
        measured_m: f64,
        sigma_m: f64,
        speed: Option<(f64, f64)>,
        max_speed: f64,
        segment: usize,
    ) {
        let (mut d, mut v, mut p) = prior;
        // Distance measurement: H = [1, 0].
        let s = p[0][0] + sigma_m * sigma_m;
        let (k0, k1) = (p[0][0] / s, p[1][0] / s);
        let innovation = measured_m - d;
        d += k0 * innovation;
        v += k1 * innovation;
        p = [
            [(1.0 - k0) * p[0][0], (1.0 - k0) * p[0][1]],
            [p[1][0] - k1 * p[0][0], p[1][1] - k1 * p[0][1]],
        ];
        // Speed measurement: H = [0, 1].
        if let Some((measured_v, sigma_v)) = speed {
            let s = p[1][1] + sigma_v * sigma_v;
            let (k0, k1) = (p[0][1] / s, p[1][1] / s);
            let innovation = measured_v - v;
            d += k0 * innovation;
            v += k1 * innovation;
            p = [
                [p[0][0] - k0 * p[1][0], p[0][1] - k0 * p[1][1]],
                [(1.0 - k1) * p[1][0], (1.0 - k1) * p[1][1]],
            ];
        }
        self.time_ms = time_ms;
        self.distance_m = d;
        self.speed_mps = v.clamp(0.0, max_speed);
        self.cov = p;
        self.segment = segment;
    }
}

/// The best candidate of one search.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Choice {
    /// Segment index.
    segment: usize,
    /// Distance along the course, metres.
    distance_m: f64,
    /// Lateral offset, metres.
    lateral_m: f64,
    /// Total cost (lower is better).
    cost: f64,
    /// Cost of the best candidate on another part of the course, for the confidence.
    runner_up: f64,
}

/// A matcher: its tuning and one rider's matching state, for callers that match one track.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Tuning.
    config: MatcherConfig,
    /// The rider's state.
    state: MatchState,
    /// Last output, returned by [`Matcher::last`].
    last: Option<MatchedFix>,
}

impl Matcher {
    /// A matcher with no history.
    pub fn new(config: MatcherConfig) -> Self {
        Matcher {
            config,
            state: MatchState::default(),
            last: None,
        }
    }

    /// The last match, if any.
    pub fn last(&self) -> Option<&MatchedFix> {
        self.last.as_ref()
    }

    /// Smoothed progress speed along the course, m/s.
    pub fn speed_mps(&self) -> f64 {
        self.state.speed_mps()
    }

    /// Matches one fix, in event-time order.
    pub fn match_fix(&mut self, index: &CourseIndex, fix: &Fix) -> MatchedFix {
        let out = self.state.match_fix(&self.config, index, fix);
        self.last = Some(out);
        out
    }
}

/// One rider's matching state without its tuning, which the caller passes to every call: a race
/// keeps one [`MatcherConfig`] for all its riders instead of a copy in each rider (and in each of
/// their saved states). Cheap to clone so callers can keep checkpoints for late-fix replays.
#[derive(Debug, Clone, Default)]
pub struct MatchState {
    /// The progress filter (the transition prior); None until the rider is acquired.
    progress: Option<Progress>,
    /// Previous fix time and local position, to derive a heading when the fix has none.
    prev_fix: Option<(Millis, f64, f64)>,
    /// Consecutive fixes that matched nothing.
    unmatched_run: u32,
    /// Whether the rider is currently judged off course.
    off_course: bool,
    /// Since when the rider has been beyond the exit (or, while off, within the re-entry) threshold.
    threshold_since: Option<Millis>,
    /// Distance reported to consumers (held against small backward noise).
    reported_m: f64,
    /// Consecutive fixes whose raw progress lay well behind the reported one.
    behind_run: u32,
    /// A fix has been matched (or found unmatched) before: the first one sets the reported
    /// distance whatever it is.
    matched_any: bool,
}

impl MatchState {
    /// Smoothed progress speed along the course, m/s.
    pub fn speed_mps(&self) -> f64 {
        self.progress.map_or(0.0, |p| p.speed_mps)
    }

    /// Reads a word from every part of the state (a meaningless checksum), so that a caller about
    /// to update many riders can have their cold states loaded in parallel first.
    pub(crate) fn warm(&self) -> u64 {
        let progress = self
            .progress
            .map_or(0, |p| p.time_ms as u64 ^ p.cov[1][1].to_bits());
        let prev = self.prev_fix.map_or(0, |p| p.0 as u64);
        progress
            ^ prev
            ^ u64::from(self.unmatched_run)
            ^ self.reported_m.to_bits()
            ^ self.threshold_since.map_or(0, |t| t as u64)
    }

    /// Matches one fix, in event-time order, with the tuning `config` (the same for every call).
    pub fn match_fix(
        &mut self,
        config: &MatcherConfig,
        index: &CourseIndex,
        fix: &Fix,
    ) -> MatchedFix {
        let course = index.course();
        let (x, y) = course.project(fix.lat, fix.lon);
        let accuracy = fix
            .accuracy_m
            .unwrap_or(config.default_accuracy_m)
            .clamp(3.0, 200.0);
        let heading = fix
            .heading_deg
            .filter(|_| fix.speed_mps.is_none_or(|s| s > 1.5))
            .or_else(|| {
                let (t0, x0, y0) = self.prev_fix?;
                let moved = planar_len(x - x0, y - y0);
                (moved > 8.0 && fix.time_ms - t0 <= 30_000)
                    .then(|| (x - x0).atan2(y - y0).to_degrees().rem_euclid(360.0))
            });
        self.prev_fix = Some((fix.time_ms, x, y));
        let heading = heading.map(heading_unit);

        let windowed = self.progress.filter(|a| {
            self.unmatched_run < config.research_after
                && fix.time_ms - a.time_ms <= config.research_after_gap_ms
        });
        // The prior at the fix's time: the window search and the filter update both use it.
        let prior = windowed.map(|a| a.predict(fix.time_ms, config.accel_noise_mps2));
        let choice = match (windowed, prior) {
            (Some(anchor), Some(prior)) => {
                self.search_window(config, index, anchor, prior, fix, x, y, accuracy, heading)
            }
            _ => self.search_global(config, index, fix, x, y, accuracy, heading),
        };

        let matched =
            choice.is_some_and(|c| c.lateral_m <= config.search_radius_m.max(3.0 * accuracy));
        let lateral_m = match choice {
            Some(c) if windowed.is_some() => c.lateral_m,
            _ => self.lateral_near_progress(config, index, fix, x, y),
        };
        self.judge_off_course(config, fix.time_ms, lateral_m, accuracy);

        let out = match choice.filter(|_| matched) {
            Some(c) => {
                // A match far from the fix (a parallel road after a long gap, or a rider drifting
                // off course) moves progress but counts towards a global re-search.
                if c.lateral_m <= (3.0 * accuracy).max(40.0) {
                    self.unmatched_run = 0;
                } else {
                    self.unmatched_run = self.unmatched_run.saturating_add(1);
                }
                // Beyond the exit threshold the projection says little about progress.
                let sigma_m = if c.lateral_m > config.off_course_exit_m {
                    accuracy.max(5.0) + c.lateral_m
                } else {
                    accuracy.max(5.0)
                };
                let doppler = fix
                    .speed_mps
                    .map(|v| (v.min(config.max_speed_mps), config.speed_noise_mps));
                match (&mut self.progress, prior) {
                    (Some(p), Some(prior)) => p.update(
                        fix.time_ms,
                        prior,
                        c.distance_m,
                        sigma_m,
                        doppler,
                        config.max_speed_mps,
                        c.segment,
                    ),
                    (progress, _) => {
                        let speed = doppler
                            .map_or_else(|| progress.map_or(0.0, |p| p.speed_mps), |(v, _)| v);
                        *progress = Some(Progress::start(
                            fix.time_ms,
                            c.distance_m,
                            speed,
                            sigma_m,
                            c.segment,
                        ));
                    }
                }
                let filtered = self.progress.map_or(c.distance_m, |p| p.distance_m);
                self.report(config, filtered, accuracy);
                let fit = (-0.5 * (c.lateral_m / accuracy.max(5.0)).powi(2)).exp();
                let margin = ((c.runner_up - c.cost) / 4.0).clamp(0.0, 1.0);
                MatchedFix {
                    time_ms: fix.time_ms,
                    distance_m: self.reported_m,
                    lateral_m: c.lateral_m,
                    segment: c.segment,
                    confidence: (fit.max(0.05) * (0.5 + 0.5 * margin)) as f32,
                    off_course: self.off_course,
                    matched: true,
                }
            }
            None => {
                self.unmatched_run = self.unmatched_run.saturating_add(1);
                MatchedFix {
                    time_ms: fix.time_ms,
                    distance_m: self.reported_m,
                    lateral_m,
                    segment: self.progress.map_or(0, |a| a.segment),
                    confidence: 0.0,
                    off_course: self.off_course,
                    matched: false,
                }
            }
        };
        self.matched_any = true;
        out
    }

    /// Holds the reported distance against backward noise; follows a sustained backtrack.
    fn report(&mut self, config: &MatcherConfig, raw_m: f64, accuracy: f64) {
        let noise = (2.0 * accuracy).clamp(config.backtrack_m, 100.0);
        if raw_m >= self.reported_m || !self.matched_any {
            self.reported_m = raw_m;
            self.behind_run = 0;
        } else if self.reported_m - raw_m > noise {
            self.behind_run += 1;
            if self.behind_run >= 3 {
                self.reported_m = raw_m;
                self.behind_run = 0;
            }
        } else {
            self.behind_run = 0;
        }
    }

    /// Off course needs `off_course_min_ms` beyond the exit threshold; back needs the same time
    /// within the re-entry threshold. Fixes with poor accuracy neither start nor end either state.
    fn judge_off_course(
        &mut self,
        config: &MatcherConfig,
        now: Millis,
        lateral_m: f64,
        accuracy: f64,
    ) {
        if accuracy > config.max_accuracy_for_off_course_m {
            return;
        }
        let beyond = if self.off_course {
            lateral_m < config.off_course_reentry_m
        } else {
            lateral_m > config.off_course_exit_m
        };
        if !beyond {
            self.threshold_since = None;
            return;
        }
        let since = *self.threshold_since.get_or_insert(now);
        // A rider coming back is believed sooner than one leaving: half the minimum duration.
        let needed = if self.off_course {
            config.off_course_min_ms / 2
        } else {
            config.off_course_min_ms
        };
        if now - since >= needed {
            self.off_course = !self.off_course;
            self.threshold_since = None;
        }
    }

    /// Distance from the fix to the part of the course the rider can plausibly be on (the whole
    /// course before the rider is acquired), for the off-course judgement.
    fn lateral_near_progress(
        &self,
        config: &MatcherConfig,
        index: &CourseIndex,
        fix: &Fix,
        x: f64,
        y: f64,
    ) -> f64 {
        let nearest = || index.nearest(x, y).map_or(f64::INFINITY, |c| c.lateral_m);
        let Some(p) = self.progress else {
            return nearest();
        };
        let course = index.course();
        let dt = ((fix.time_ms - p.time_ms) as f64 / 1000.0).max(0.0);
        let first = course.segment_at(p.distance_m - 500.0);
        let last = course.segment_at(p.distance_m + config.max_speed_mps * dt + 500.0);
        if last - first > 4096 {
            return nearest();
        }
        course.segments()[first..=last]
            .iter()
            .map(|seg| seg.project(x, y).1)
            .fold(f64::INFINITY, f64::min)
    }

    /// Heading cost of riding along `seg` in direction `heading` (a unit vector east, north): 0
    /// aligned, `2 × weight` opposite.
    #[inline]
    fn heading_cost(config: &MatcherConfig, seg: &Segment, heading: Option<(f64, f64)>) -> f64 {
        match heading {
            Some((hx, hy)) if seg.plane_len > 0.0 => {
                config.heading_weight * (1.0 - (hx * seg.ux + hy * seg.uy))
            }
            _ => 0.0,
        }
    }

    /// Forward search within the progress window allowed by the transition model. `prior` is
    /// the anchor's prediction at the fix's time.
    #[allow(clippy::too_many_arguments)]
    fn search_window(
        &self,
        config: &MatcherConfig,
        index: &CourseIndex,
        anchor: Progress,
        prior: (f64, f64, [[f64; 2]; 2]),
        fix: &Fix,
        x: f64,
        y: f64,
        accuracy: f64,
        heading: Option<(f64, f64)>,
    ) -> Option<Choice> {
        let course = index.course();
        let dt = ((fix.time_ms - anchor.time_ms) as f64 / 1000.0).max(0.0);
        let (expected, _, cov) = prior;
        let lo = anchor.distance_m - config.backtrack_m - accuracy;
        let hi = anchor.distance_m + config.max_speed_mps * dt + 2.0 * accuracy + 20.0;
        let sigma_p = 10.0 + cov[0][0].max(0.0).sqrt() + accuracy;
        let sigma_l = accuracy.max(5.0);
        let mut best: Option<Choice> = None;
        let mut consider = |segment: usize, seg: &Segment| {
            let (d, lateral) = seg.project(x, y);
            let d = d.clamp(lo, hi);
            let cost = (lateral / sigma_l).powi(2)
                + ((d - expected) / sigma_p).powi(2)
                + Self::heading_cost(config, seg, heading);
            match &mut best {
                Some(b) if cost >= b.cost => b.runner_up = b.runner_up.min(cost),
                _ => {
                    let runner_up = best.map_or(f64::INFINITY, |b| b.cost);
                    best = Some(Choice {
                        segment,
                        distance_m: d,
                        lateral_m: lateral,
                        cost,
                        runner_up,
                    });
                }
            }
        };
        let segments = course.segments();
        // Walk from the last matched segment instead of binary-searching the window's ends.
        let mut first = anchor.segment.min(segments.len() - 1);
        while first > 0 && segments[first].start_m > lo {
            first -= 1;
        }
        let span = hi - segments[first].start_m;
        if span <= 256.0 * 50.0 {
            for (i, seg) in segments.iter().enumerate().skip(first) {
                if seg.start_m > hi {
                    break;
                }
                consider(i, seg);
            }
        } else {
            // A long gap: only segments near the fix can win, so ask the R-tree for them.
            let radius = config.search_radius_m.max(3.0 * accuracy);
            index.for_each_candidate(x, y, radius, |c| {
                if (lo..=hi).contains(&c.distance_m) {
                    consider(c.segment, &segments[c.segment]);
                }
            });
        }
        best
    }

    /// Acquisition (first fix, or after losing the rider): the R-tree's candidates near the fix,
    /// chosen by lateral offset and heading, with a soft preference for plausible progress.
    #[allow(clippy::too_many_arguments)]
    fn search_global(
        &self,
        config: &MatcherConfig,
        index: &CourseIndex,
        fix: &Fix,
        x: f64,
        y: f64,
        accuracy: f64,
        heading: Option<(f64, f64)>,
    ) -> Option<Choice> {
        let course = index.course();
        let segments = course.segments();
        let radius = (3.0 * accuracy + 30.0).clamp(60.0, config.search_radius_m.max(60.0));
        let sigma_l = accuracy.max(5.0);
        let length = course.length_m().max(1.0);
        let mut best: Option<Choice> = None;
        index.for_each_candidate(x, y, radius, |c| {
            let seg = &segments[c.segment];
            let (prior, outside) = match self.progress {
                Some(a) => {
                    let dt = ((fix.time_ms - a.time_ms) as f64 / 1000.0).max(0.0);
                    let lo = a.distance_m - config.backtrack_m - accuracy;
                    let hi = a.distance_m + config.max_speed_mps * dt + 100.0;
                    if c.distance_m < lo {
                        (2.0 + (lo - c.distance_m) / 500.0, true)
                    } else if c.distance_m > hi {
                        (2.0 + (c.distance_m - hi) / 500.0, true)
                    } else {
                        (0.0, false)
                    }
                }
                // No history: a rider is more likely early in the course than late.
                None => (c.distance_m / length, false),
            };
            // Far from where the rider can be, only a close fit may re-acquire (a rider cutting a
            // switchback is not on the later hairpin).
            if outside && c.lateral_m > 2.0 * sigma_l {
                return;
            }
            let cost =
                (c.lateral_m / sigma_l).powi(2) + Self::heading_cost(config, seg, heading) + prior;
            match &mut best {
                Some(b) if cost >= b.cost => {
                    if (c.distance_m - b.distance_m).abs() > 50.0 {
                        b.runner_up = b.runner_up.min(cost);
                    }
                }
                _ => {
                    let runner_up = best
                        .filter(|b| (c.distance_m - b.distance_m).abs() > 50.0)
                        .map_or(f64::INFINITY, |b| b.cost);
                    best = Some(Choice {
                        segment: c.segment,
                        distance_m: c.distance_m,
                        lateral_m: c.lateral_m,
                        cost,
                        runner_up,
                    });
                }
            }
        });
        best
    }
}

/// The heading (degrees clockwise from north) as a unit vector (east, north):
/// `h.to_radians().sin_cos()`. Device headings come in whole centidegrees, so those are read
/// from a table of the same values computed once; any other heading is computed.
fn heading_unit(h: f64) -> (f64, f64) {
    /// `(k / 100).to_radians().sin_cos()` for every centidegree `k` in 0..=36000.
    static TABLE: OnceLock<Box<[(f64, f64)]>> = OnceLock::new();
    let k = (h * 100.0 + 0.5) as usize;
    if k <= 36_000 && (k as f64 / 100.0).to_bits() == h.to_bits() {
        let table = TABLE.get_or_init(|| {
            (0..=36_000u32)
                .map(|k| (f64::from(k) / 100.0).to_radians().sin_cos())
                .collect()
        });
        return table[k];
    }
    h.to_radians().sin_cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Course;

    /// A 2 km north-bound leg and back on a parallel road 8 m east.
    fn out_and_back() -> CourseIndex {
        let pts = [
            (45.0, 7.0, None),
            (45.018, 7.0, None),
            (45.018, 7.0001, None),
            (45.0, 7.0001, None),
        ];
        CourseIndex::new(Course::from_points("oab", &pts).unwrap())
    }

    fn fix(t_s: i64, lat: f64, lon: f64, heading: f64) -> Fix {
        Fix {
            time_ms: 1_700_000_000_000 + t_s * 1000,
            lat,
            lon,
            accuracy_m: Some(5.0),
            speed_mps: Some(8.0),
            heading_deg: Some(heading),
        }
    }

    #[test]
    fn heading_table_gives_the_computed_unit_vectors() {
        let bits = |(s, c): (f64, f64)| (s.to_bits(), c.to_bits());
        // Every heading a device can send within a turn, as the record decodes it.
        for cdeg in 0..=36_000u16 {
            let mut record = PositionRecord::from_degrees(1, 0, 45.0, 7.0, None, None, None, None);
            record.heading_cdeg = cdeg;
            let h = Fix::from(&record).heading_deg.unwrap();
            assert_eq!(bits(heading_unit(h)), bits(h.to_radians().sin_cos()), "{h}");
        }
        // Headings that are not whole centidegrees (derived from movement), beyond a turn, or odd.
        for h in [
            -0.0,
            0.001,
            12.345_678,
            359.995,
            360.01,
            655.34,
            -12.5,
            f64::NAN,
            f64::INFINITY,
        ] {
            let (got, want) = (heading_unit(h), h.to_radians().sin_cos());
            assert!(
                bits(got) == bits(want) || (got.0.is_nan() && want.0.is_nan()),
                "{h}: {got:?} != {want:?}"
            );
        }
    }

    #[test]
    fn return_leg_is_matched_to_the_return_leg() {
        let index = out_and_back();
        let mut m = Matcher::new(MatcherConfig::default());
        let up = m.match_fix(&index, &fix(0, 45.009, 7.00002, 0.0));
        assert!(up.distance_m < 2000.0, "{up:?}");
        let down = m.match_fix(&index, &fix(260, 45.009, 7.00008, 180.0));
        assert!(down.distance_m > 2000.0, "{down:?}");
        assert!(
            (down.distance_m - (2000.0 + 8.0 + 1000.0)).abs() < 30.0,
            "{down:?}"
        );
    }

    #[test]
    fn a_single_far_jump_does_not_move_progress() {
        let index = out_and_back();
        let mut m = Matcher::new(MatcherConfig::default());
        let a = m.match_fix(&index, &fix(0, 45.005, 7.0, 0.0));
        let jump = m.match_fix(&index, &fix(5, 45.015, 7.01, 0.0));
        assert!(!jump.matched);
        assert_eq!(jump.distance_m, a.distance_m);
        assert!(!jump.off_course);
    }

    #[test]
    fn off_course_needs_the_minimum_duration_and_comes_back() {
        let index = out_and_back();
        let mut m = Matcher::new(MatcherConfig::default());
        m.match_fix(&index, &fix(0, 45.001, 7.0, 0.0));
        // 200 m west of the road for 30 s.
        let mut flagged_at = None;
        for t in 1..=30 {
            let r = m.match_fix(&index, &fix(t, 45.001 + t as f64 * 1e-5, 6.99745, 0.0));
            if r.off_course && flagged_at.is_none() {
                flagged_at = Some(t);
            }
        }
        assert_eq!(flagged_at, Some(21));
        let mut back_at = None;
        for t in 31..=60 {
            let r = m.match_fix(&index, &fix(t, 45.001 + t as f64 * 1e-5, 7.0, 0.0));
            if !r.off_course && back_at.is_none() {
                back_at = Some(t);
            }
        }
        assert_eq!(back_at, Some(41));
    }
}
