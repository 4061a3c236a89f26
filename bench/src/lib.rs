//! Shared set-up for Flevum's benchmarks and reports: locating real data and building workloads.
//!
//! Owns only what the benches and examples have in common (paths, course loading, synthetic fix
//! sets); the measurements themselves live in `benches/` and `examples/`.

#![deny(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use flevum_engine::core::{Course, CourseIndex, Fix};
use flevum_engine::testkit::{SyntheticConfig, synthetic_track};

/// Path of a file in `../shared/data/real/` relative to the repository root.
pub fn real_data(file: &str) -> Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/real")
        .join(file);
    anyhow::ensure!(
        path.is_file(),
        "{} not found: the benchmarks need ../shared/data/real beside the repository",
        path.display()
    );
    Ok(path)
}

/// Loads and indexes a real course.
pub fn real_course(file: &str) -> Result<CourseIndex> {
    let path = real_data(file)?;
    let course = Course::from_gpx_file(&path).with_context(|| format!("loading {file}"))?;
    Ok(CourseIndex::new(course))
}

/// One synthetic rider's fixes per entry, for `riders` riders with `noise_m` metres of noise.
pub fn synthetic_fixes(index: &CourseIndex, riders: u64, noise_m: f64) -> Vec<Vec<Fix>> {
    (0..riders)
        .map(|seed| {
            let cfg = SyntheticConfig {
                noise_m,
                ..SyntheticConfig::default()
            };
            synthetic_track(index, &cfg, seed)
                .into_iter()
                .map(|t| t.fix)
                .collect()
        })
        .collect()
}

/// A race fed by a simulated field of `riders` devices reporting every `fix_interval_ms`, ticked
/// once a second for `warmup_s` seconds past the start on the RAGBRAI gravel course; returns the
/// race, the simulation and the time of the last tick, for the race-tick bench and profiles.
pub fn mid_race(
    riders: u32,
    fix_interval_ms: i64,
    warmup_s: i64,
) -> Result<(
    flevum_engine::core::Race,
    flevum_engine::simulator::Simulation,
    i64,
)> {
    use flevum_engine::core::Race;
    use flevum_engine::simulator::{SimConfig, Simulation};
    let index = real_course("course_ragbrai_day4_gravel_128km.gpx")?;
    let mut sim = Simulation::new(
        index,
        SimConfig {
            riders,
            fix_interval_ms,
            ..SimConfig::default()
        },
    );
    let config = sim.race_config("bench", "Bench");
    let start = config.start_ms;
    let mut race = Race::new(config, sim.course().clone(), 1)?;
    let mut t = start;
    while t < start + warmup_s * 1000 {
        t += 1000;
        feed_until(&mut race, &mut sim, t);
        race.handle_tick(t);
        while race.poll_output().is_some() {}
    }
    Ok((race, sim, t))
}

/// A mid-race state and the fixes of the seconds after it, replayed again and again from a copy
/// of that state: a benchmark can run as many one-second ticks as it likes without the race
/// running out (or changing character) under it.
pub struct RaceWindow {
    /// The race at the start of the window.
    start_race: flevum_engine::core::Race,
    /// Time of the last tick before the window.
    start_ms: i64,
    /// Fixes delivered in each second of the window.
    seconds: Vec<Vec<flevum_engine::simulator::SimEvent>>,
    /// The race being ticked.
    pub race: flevum_engine::core::Race,
    /// Seconds of the window used so far.
    next: usize,
}

impl RaceWindow {
    /// `riders` devices reporting every `fix_interval_ms`, `warmup_s` seconds into the race, with
    /// `window_s` seconds of fixes after that.
    pub fn new(riders: u32, fix_interval_ms: i64, warmup_s: i64, window_s: usize) -> Result<Self> {
        let (race, mut sim, start_ms) = mid_race(riders, fix_interval_ms, warmup_s)?;
        let seconds = (1..=window_s as i64)
            .map(|k| sim.step_until(start_ms + k * 1000))
            .collect();
        Ok(RaceWindow {
            start_race: race.clone(),
            start_ms,
            seconds,
            race,
            next: 0,
        })
    }

    /// Sets the race's apply threads, for the rest of the window and its restarts.
    pub fn set_apply_threads(&mut self, threads: std::num::NonZeroUsize) {
        self.start_race.set_apply_threads(threads);
        self.race.set_apply_threads(threads);
    }

    /// Delivers the next second's fixes (back to the window's start when it is used up, which
    /// costs a copy of the race: call it outside the timed part); returns the time to tick at.
    pub fn next_second(&mut self) -> i64 {
        self.deliver_next().0
    }

    /// [`RaceWindow::next_second`], also returning how many fixes were delivered and how long
    /// `handle_fix` took for them (the copy at the window's end is not counted).
    pub fn deliver_next(&mut self) -> (i64, usize, std::time::Duration) {
        if self.next == self.seconds.len() {
            self.race = self.start_race.clone();
            self.next = 0;
        }
        let events = &self.seconds[self.next];
        self.next += 1;
        let started = std::time::Instant::now();
        for e in events {
            let _ = self.race.handle_fix(e.deliver_ms, e.rider_id, &e.record);
        }
        let spent = started.elapsed();
        (self.start_ms + self.next as i64 * 1000, events.len(), spent)
    }

    /// The deltas of the next `ticks` whole-second ticks (the outputs a shard would publish or
    /// hold behind a publish delay); alerts are left out.
    pub fn deltas(&mut self, ticks: usize) -> Vec<flevum_engine::core::RaceOutput> {
        let mut deltas = Vec::new();
        for _ in 0..ticks {
            let t = self.next_second();
            self.race.handle_tick(t);
            while let Some(out) = self.race.poll_output() {
                if matches!(out, flevum_engine::core::RaceOutput::Delta(_)) {
                    deltas.push(out);
                }
            }
        }
        deltas
    }
}

/// Delivers every simulated fix due by `t` to the race; returns how many were delivered.
pub fn feed_until(
    race: &mut flevum_engine::core::Race,
    sim: &mut flevum_engine::simulator::Simulation,
    t: i64,
) -> usize {
    let events = sim.step_until(t);
    for e in &events {
        let _ = race.handle_fix(e.deliver_ms, e.rider_id, &e.record);
    }
    events.len()
}
