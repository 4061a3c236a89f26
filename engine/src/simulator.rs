//! A race simulator with ground truth: a peloton on any course, an attack that forms a breakaway,
//! a crash, a rider off course, dropped riders, device dropouts with backfill, and GPS noise.
//!
//! Owns the riders' true motion (one-second physics, speed from gradient and ability) and the fixes
//! their devices would send, with delivery times. Feeds tests (which score the engine against the
//! truth), `flevum simulate`, the demo and the load tests. Does not judge the race: the core does.

use std::collections::BTreeMap;

use flevum_protocol::{PositionRecord, RecordFlags};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::core::race::{RaceConfig, RiderConfig};
use crate::core::{CourseIndex, Millis};
use crate::testkit::gaussian;

/// The scripted story of a simulated race.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Riders in the race.
    pub riders: u32,
    /// Seed of the motion, noise and names.
    pub seed: u64,
    /// Seed of delivery jitter only (changing it reorders arrivals, not the race).
    pub delivery_seed: u64,
    /// Race start, ms since the Unix epoch.
    pub start_ms: Millis,
    /// Device reporting interval, ms.
    pub fix_interval_ms: Millis,
    /// Per-axis GPS noise, metres.
    pub noise_m: f64,
    /// Largest delivery delay of a live fix, ms (keep below the race's reorder window).
    pub max_delivery_ms: Millis,
    /// Flat-road speed of the peloton, m/s.
    pub base_speed_mps: f64,
    /// Riders in the breakaway (0 = none).
    pub breakaway_riders: u32,
    /// Fraction of the course where the attack goes.
    pub attack_at: f64,
    /// Riders who crash together (0 = no crash).
    pub crash_riders: u32,
    /// Fraction of the course where the crash happens.
    pub crash_at: f64,
    /// How long crashed riders stand still, seconds.
    pub crash_stop_s: i64,
    /// Fraction of the course where one rider goes off course (None = nobody).
    pub off_course_at: Option<f64>,
    /// Riders whose device drops out for three minutes and backfills afterwards.
    pub dropouts: u32,
    /// Riders dropped by the peloton on the road.
    pub dropped_riders: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            riders: 150,
            seed: 7,
            delivery_seed: 1,
            start_ms: 1_751_360_400_000,
            fix_interval_ms: 5_000,
            noise_m: 5.0,
            max_delivery_ms: 1_500,
            base_speed_mps: 11.5,
            breakaway_riders: 5,
            attack_at: 0.15,
            crash_riders: 3,
            crash_at: 0.45,
            crash_stop_s: 240,
            off_course_at: Some(0.3),
            dropouts: 4,
            dropped_riders: 3,
        }
    }
}

/// One fix as delivered to the engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimEvent {
    /// When it reaches the engine.
    pub deliver_ms: Millis,
    /// Whose device sent it.
    pub rider_id: u32,
    /// The fix.
    pub record: PositionRecord,
}

/// What a simulated rider is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// In the bunch, at an offset behind its head.
    Peloton,
    /// Away in front.
    Breakaway,
    /// Riding alone at a fraction of the peloton's pace.
    Alone(f64),
    /// Standing still until a time, then alone.
    Crashed(Millis),
    /// Off the road until a time (progress paused), then alone.
    OffCourse(Millis),
    /// Across the line.
    Finished,
}

/// The scripted roles, for tests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimRoles {
    /// Riders of the breakaway.
    pub breakaway: Vec<u32>,
    /// Riders who crash.
    pub crashed: Vec<u32>,
    /// The rider who goes off course.
    pub off_course: Option<u32>,
    /// Riders with a device dropout.
    pub dropouts: Vec<u32>,
    /// Riders dropped by the peloton.
    pub dropped: Vec<u32>,
}

/// One simulated rider.
#[derive(Debug, Clone)]
struct SimRider {
    /// Rider id (1-based).
    id: u32,
    /// Relative strength.
    ability: f64,
    /// Distance along the course, metres.
    d: f64,
    /// Offset behind the peloton's head, metres.
    slot: f64,
    /// The offset the rider drifts back to (riders keep their place in a bunch).
    home: f64,
    /// Activity.
    mode: Mode,
    /// Lateral offset from the course (off-course excursion), metres.
    lateral: f64,
    /// Phase of the device's reporting, ms.
    phase: Millis,
    /// Next sequence number.
    seq: u32,
    /// Battery percent.
    battery: f64,
    /// Battery drain per hour.
    drain: f64,
    /// Device dropout window (fixes inside are delivered at its end).
    dropout: Option<(Millis, Millis)>,
    /// True distance at every second since the start.
    truth: Vec<f64>,
    /// Finish time.
    finish_ms: Option<Millis>,
}

/// A simulated race, stepped forward in one-second steps.
pub struct Simulation {
    /// The course.
    index: CourseIndex,
    /// The story.
    config: SimConfig,
    /// Motion and noise randomness.
    rng: StdRng,
    /// Delivery jitter randomness.
    delivery_rng: StdRng,
    /// Riders by index (id - 1).
    riders: Vec<SimRider>,
    /// Distance of the peloton's head.
    peloton_d: f64,
    /// Distance of the breakaway's head.
    breakaway_d: f64,
    /// Current simulated time.
    now: Millis,
    /// Fixes made but not yet delivered, by delivery time.
    outbox: BTreeMap<(Millis, u32, u32), SimEvent>,
    /// Scripted roles.
    roles: SimRoles,
    /// The attack has gone.
    attacked: bool,
    /// The crash has happened.
    crashed: bool,
    /// The off-course excursion has started.
    wandered: bool,
    /// Riders were dropped.
    dropped: bool,
}

const FIRST: [&str; 16] = [
    "Anna", "Bram", "Chiara", "Dries", "Elif", "Femke", "Gijs", "Hana", "Ivo", "Jana", "Kees",
    "Lotte", "Mats", "Noor", "Olaf", "Pia",
];
const LAST: [&str; 16] = [
    "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "de Boer", "Bos", "Vos",
    "Peters", "Hendriks", "Dekker", "Brouwer", "de Wit", "Dijkstra",
];
const TEAMS: [&str; 8] = [
    "Polder Pro",
    "Dijk Racing",
    "Wind Cycling",
    "Zuiderzee",
    "Flevo Velo",
    "Lelystad CC",
    "Kreek Team",
    "Tulip Works",
];

/// Removes `count` random ids from `pool`.
fn take(pool: &mut Vec<u32>, count: u32, rng: &mut StdRng) -> Vec<u32> {
    let mut out = Vec::new();
    for _ in 0..count {
        if pool.is_empty() {
            break;
        }
        out.push(pool.remove(rng.random_range(0..pool.len())));
    }
    out
}

impl Simulation {
    /// A race on `index` following `config`.
    pub fn new(index: CourseIndex, config: SimConfig) -> Simulation {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let n = config.riders.max(1);
        let mut riders: Vec<SimRider> = (1..=n)
            .map(|id| SimRider {
                id,
                ability: (1.0 + 0.03 * gaussian(&mut rng)).clamp(0.9, 1.1),
                d: 0.0,
                slot: f64::from(id - 1) * 1.2 + rng.random::<f64>(),
                home: f64::from(id - 1) * 1.2,
                mode: Mode::Peloton,
                lateral: 0.0,
                phase: rng.random_range(0..config.fix_interval_ms.max(1)),
                seq: 1,
                battery: 60.0 + 40.0 * rng.random::<f64>(),
                drain: 5.0 + 25.0 * rng.random::<f64>(),
                dropout: None,
                truth: vec![0.0],
                finish_ms: None,
            })
            .collect();
        // Roles: the strongest riders attack; others are picked deterministically from the seed.
        let mut by_ability: Vec<usize> = (0..riders.len()).collect();
        by_ability.sort_by(|&a, &b| {
            riders[b]
                .ability
                .total_cmp(&riders[a].ability)
                .then(a.cmp(&b))
        });
        let mut roles = SimRoles {
            breakaway: by_ability
                .iter()
                .take(config.breakaway_riders as usize)
                .map(|&i| riders[i].id)
                .collect(),
            ..SimRoles::default()
        };
        let mut pool: Vec<u32> = by_ability
            .iter()
            .skip(config.breakaway_riders as usize)
            .map(|&i| riders[i].id)
            .collect();
        // Crashed riders: one random rider and the next ids, who ride side by side in the bunch.
        roles.crashed = take(&mut pool, config.crash_riders.min(1), &mut rng);
        if let Some(&first) = roles.crashed.first() {
            for k in 1..config.crash_riders {
                let id = first + k;
                if id <= n && !roles.breakaway.contains(&id) {
                    roles.crashed.push(id);
                }
            }
        }
        roles.crashed.sort_unstable();
        pool.retain(|id| !roles.crashed.contains(id));
        roles.off_course = config
            .off_course_at
            .and_then(|_| take(&mut pool, 1, &mut rng).first().copied());
        roles.dropouts = take(&mut pool, config.dropouts, &mut rng);
        roles.dropped = take(&mut pool, config.dropped_riders, &mut rng);
        for (k, id) in roles.dropouts.iter().enumerate() {
            let start = config.start_ms + 1_200_000 + k as Millis * 600_000;
            riders[*id as usize - 1].dropout = Some((start, start + 180_000));
        }
        for (k, id) in roles.crashed.iter().enumerate() {
            let anchor = riders[roles.crashed[0] as usize - 1].slot;
            riders[*id as usize - 1].slot = anchor + k as f64 * 0.8;
        }
        let delivery_rng = StdRng::seed_from_u64(config.delivery_seed);
        Simulation {
            index,
            now: config.start_ms,
            config,
            rng,
            delivery_rng,
            riders,
            peloton_d: 0.0,
            breakaway_d: 0.0,
            outbox: BTreeMap::new(),
            roles,
            attacked: false,
            crashed: false,
            wandered: false,
            dropped: false,
        }
    }

    /// The scripted roles.
    pub fn roles(&self) -> &SimRoles {
        &self.roles
    }

    /// The course.
    pub fn course(&self) -> &CourseIndex {
        &self.index
    }

    /// A race config for the simulated field (ids 1..=N, bibs, names, teams, device ids).
    pub fn race_config(&self, id: &str, name: &str) -> RaceConfig {
        let riders = self
            .riders
            .iter()
            .map(|r| {
                let i = r.id as usize - 1;
                RiderConfig {
                    id: r.id,
                    bib: r.id.to_string(),
                    name: format!("{} {}", FIRST[i % 16], LAST[(i / 16 + i * 7) % 16]),
                    team: TEAMS[i % 8].to_string(),
                    device_id: format!("sim-{}", r.id),
                    device_token_sha256: None,
                }
            })
            .collect();
        let mut cfg = RaceConfig::new(id, name, self.config.start_ms, riders);
        cfg.report_interval_ms = self.config.fix_interval_ms as u32;
        cfg
    }

    /// Peloton speed at a course distance: slower uphill, faster downhill.
    fn pace(&self, d: f64) -> f64 {
        let course = self.index.course();
        let grade = match (course.elevation_at(d), course.elevation_at(d + 100.0)) {
            (Some(a), Some(b)) => (b - a) / 100.0,
            _ => 0.0,
        };
        let v = self.config.base_speed_mps
            * if grade > 0.0 {
                1.0 / (1.0 + 12.0 * grade)
            } else {
                1.0 + 2.5 * (-grade).min(0.06)
            };
        v.clamp(3.0, 19.0)
    }

    /// True once every rider has finished and their devices have reported for a minute after.
    pub fn finished(&self) -> bool {
        self.riders
            .iter()
            .all(|r| r.finish_ms.is_some_and(|f| self.now >= f + 60_000))
    }

    /// True finish time of a rider.
    pub fn finish_time(&self, rider_id: u32) -> Option<Millis> {
        self.riders.get(rider_id as usize - 1)?.finish_ms
    }

    /// True finishing order.
    pub fn finish_order(&self) -> Vec<u32> {
        let mut f: Vec<(Millis, u32)> = self
            .riders
            .iter()
            .filter_map(|r| Some((r.finish_ms?, r.id)))
            .collect();
        f.sort_unstable();
        f.into_iter().map(|(_, id)| id).collect()
    }

    /// True distance of a rider at time `t` (interpolated between seconds).
    pub fn truth_distance(&self, rider_id: u32, t: Millis) -> Option<f64> {
        let r = self.riders.get(rider_id as usize - 1)?;
        let s = (t - self.config.start_ms) as f64 / 1000.0;
        if s < 0.0 {
            return Some(0.0);
        }
        let i = s.floor() as usize;
        let a = *r.truth.get(i)?;
        let b = r.truth.get(i + 1).copied().unwrap_or(a);
        Some(a + (b - a) * (s - i as f64))
    }

    /// When a rider truly passed distance `d` (interpolated), if they have.
    pub fn truth_passage(&self, rider_id: u32, d: f64) -> Option<Millis> {
        let r = self.riders.get(rider_id as usize - 1)?;
        let i = r.truth.partition_point(|&x| x < d);
        if i >= r.truth.len() {
            return None;
        }
        if i == 0 {
            return Some(self.config.start_ms);
        }
        let (a, b) = (r.truth[i - 1], r.truth[i]);
        let f = if b > a { (d - a) / (b - a) } else { 1.0 };
        Some(self.config.start_ms + ((i as f64 - 1.0 + f) * 1000.0) as Millis)
    }

    /// Advances to `t` and returns every fix delivered by then, in delivery order.
    pub fn step_until(&mut self, t: Millis) -> Vec<SimEvent> {
        while self.now + 1000 <= t && !self.finished() {
            self.now += 1000;
            self.step_second();
        }
        let mut out = Vec::new();
        while let Some(entry) = self.outbox.first_entry() {
            if entry.key().0 > t {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    /// All remaining fixes (after the race), in delivery order.
    pub fn drain(&mut self) -> Vec<SimEvent> {
        std::mem::take(&mut self.outbox).into_values().collect()
    }

    fn step_second(&mut self) {
        let length = self.index.course().length_m();
        let now = self.now;
        let pace = self.pace(self.peloton_d);
        self.peloton_d += pace;
        // The story.
        let progress = self.peloton_d / length;
        if !self.attacked && progress >= self.config.attack_at {
            self.attacked = true;
            self.breakaway_d = self.peloton_d + 5.0;
            for (k, id) in self.roles.breakaway.iter().enumerate() {
                let r = &mut self.riders[*id as usize - 1];
                r.mode = Mode::Breakaway;
                r.home = k as f64 * 2.0;
            }
        }
        if !self.dropped && progress >= 0.25 {
            self.dropped = true;
            for id in &self.roles.dropped {
                self.riders[*id as usize - 1].mode = Mode::Alone(0.9);
            }
        }
        if !self.wandered
            && let (Some(at), Some(id)) = (self.config.off_course_at, self.roles.off_course)
            && progress >= at
        {
            self.wandered = true;
            self.riders[id as usize - 1].mode = Mode::OffCourse(now + 150_000);
        }
        if !self.crashed && progress >= self.config.crash_at {
            self.crashed = true;
            for id in &self.roles.crashed {
                self.riders[*id as usize - 1].mode =
                    Mode::Crashed(now + self.config.crash_stop_s * 1000);
            }
        }
        if self.attacked {
            // The breakaway pulls away until about four minutes clear, then holds the gap.
            let v = self.pace(self.breakaway_d);
            let gap_s = (self.breakaway_d - self.peloton_d) / pace.max(1.0);
            self.breakaway_d += v * if gap_s < 240.0 { 1.08 } else { 1.0 };
        }
        let (peloton_d, breakaway_d) = (self.peloton_d, self.breakaway_d);
        for i in 0..self.riders.len() {
            let mode = self.riders[i].mode;
            let d = self.riders[i].d;
            let v_here = self.pace(d);
            let r = &mut self.riders[i];
            match mode {
                Mode::Peloton => {
                    r.slot += 0.05 * (r.home - r.slot) + 0.3 * gaussian(&mut self.rng);
                    r.slot = r.slot.clamp(0.0, 400.0);
                    r.d = (peloton_d - r.slot).max(r.d);
                }
                Mode::Breakaway => {
                    // Bridge to the group, then ride in line; the last 3 km are a sprint.
                    let to_go = length - r.d;
                    if to_go < 3000.0 {
                        r.d += v_here * (1.0 + 2.0 * (r.ability - 1.0)) * 1.02;
                    } else {
                        let target = breakaway_d - r.home;
                        r.d = (r.d + v_here * 1.4).min(target.max(r.d));
                    }
                }
                Mode::Alone(f) => r.d += v_here * f * r.ability.min(1.0),
                Mode::Crashed(until) => {
                    if now >= until {
                        r.mode = Mode::Alone(0.95);
                    }
                }
                Mode::OffCourse(until) => {
                    let left = until - now;
                    r.lateral = if left > 130_000 {
                        250.0 * (150_000 - left) as f64 / 20_000.0
                    } else if left > 20_000 {
                        250.0
                    } else {
                        250.0 * left.max(0) as f64 / 20_000.0
                    };
                    if now >= until {
                        r.lateral = 0.0;
                        r.mode = Mode::Alone(0.97);
                    }
                }
                Mode::Finished => {}
            }
            if r.d >= length && r.mode != Mode::Finished {
                r.d = length;
                r.finish_ms = Some(now);
                r.mode = Mode::Finished;
            }
            r.truth.push(r.d);
        }
        for i in 0..self.riders.len() {
            self.emit(i, now);
        }
    }

    /// Makes rider `i`'s fix for second `now` if its reporting phase falls in it.
    fn emit(&mut self, i: usize, now: Millis) {
        let interval = self.config.fix_interval_ms.max(1000);
        let r = &self.riders[i];
        let since = now - self.config.start_ms - r.phase;
        if since < 0 || since % interval >= 1000 {
            return;
        }
        // Finished riders report for one more minute, then stop.
        if r.finish_ms.is_some_and(|f| now > f + 60_000) {
            return;
        }
        let course = self.index.course();
        let (lat, lon) = course.position_at(r.d);
        let bearing = course.bearing_at(r.d).to_radians();
        let prev = r.truth.len().checked_sub(2).map_or(r.d, |k| r.truth[k]);
        let speed = (r.d - prev).max(0.0);
        let (dropout, lateral, id) = (r.dropout, r.lateral, r.id);
        let east = -bearing.cos() * lateral + self.config.noise_m * gaussian(&mut self.rng);
        let north = bearing.sin() * lateral + self.config.noise_m * gaussian(&mut self.rng);
        let hours = (now - self.config.start_ms) as f64 / 3_600_000.0;
        let r = &mut self.riders[i];
        let battery = (r.battery - r.drain * hours).max(1.0);
        let mut record = PositionRecord::from_degrees(
            r.seq,
            now,
            lat + north / 111_132.0,
            lon + east / (111_320.0 * lat.to_radians().cos()),
            course.elevation_at(r.d),
            Some(speed),
            Some(bearing.to_degrees().rem_euclid(360.0)),
            Some(self.config.noise_m.max(3.0)),
        );
        record.battery_pct = battery.round() as u8;
        r.seq += 1;
        let deliver_ms = match dropout {
            Some((from, to)) if now >= from && now < to => {
                record.flags |= RecordFlags::BACKFILL;
                to + 2_000
            }
            _ => {
                now + self
                    .delivery_rng
                    .random_range(100..self.config.max_delivery_ms.max(101))
            }
        };
        self.outbox.insert(
            (deliver_ms, id, record.seq),
            SimEvent {
                deliver_ms,
                rider_id: id,
                record,
            },
        );
    }
}

/// A simulated race replayed through the core, with what it produced and how it scored.
pub struct OfflineRun {
    /// The engine's race state at the end.
    pub race: crate::core::Race,
    /// The simulation (ground truth).
    pub sim: Simulation,
    /// Every output of the core, in order.
    pub outputs: Vec<crate::core::RaceOutput>,
    /// (engine gap, true gap) to the road leader in ms, sampled every minute per racing rider.
    pub gap_samples: Vec<(i64, i64)>,
    /// Fixes fed to the core.
    pub fixes: usize,
}

/// Runs a simulation through a fresh race core, ticking every `tick_ms`, until every rider has
/// finished (or six hours have passed) and the reorder window has drained.
pub fn run_offline(
    mut sim: Simulation,
    race_id: &str,
    race_name: &str,
    tick_ms: Millis,
) -> Result<OfflineRun, crate::core::race::RaceError> {
    use crate::core::{Race, RaceOutput};
    let config = sim.race_config(race_id, race_name);
    let start = config.start_ms;
    let mut race = Race::new(config, sim.course().clone(), 1)?;
    race.set_tick_interval(tick_ms);
    let mut outputs = Vec::new();
    let mut gap_samples = Vec::new();
    let mut fixes = 0;
    let mut t = start - 60_000;
    let end_limit = start + 6 * 3_600_000;
    let mut after_finish = 0;
    while t < end_limit && after_finish < 120_000 {
        t += tick_ms;
        let mut events = sim.step_until(t);
        if sim.finished() {
            events.extend(sim.drain());
            after_finish += tick_ms;
        }
        for e in events {
            fixes += 1;
            // Rejections are counted inside the race.
            let _ = race.handle_fix(e.deliver_ms.max(t - tick_ms), e.rider_id, &e.record);
        }
        race.handle_tick(t);
        while let Some(out) = race.poll_output() {
            outputs.push(out);
        }
        if (t - start) % 60_000 == 0 && t > start {
            sample_gaps(&race, &sim, &mut gap_samples);
        }
    }
    // Outputs are RaceOutput values; keep the type visible for callers.
    let _: Option<&RaceOutput> = outputs.first();
    Ok(OfflineRun {
        race,
        sim,
        outputs,
        gap_samples,
        fixes,
    })
}

/// Compares each racing rider's published gap to the leader with the truth at the same moment.
fn sample_gaps(race: &crate::core::Race, sim: &Simulation, samples: &mut Vec<(i64, i64)>) {
    use flevum_protocol::RiderStatus;
    for view in race.views() {
        let (Some(gap), RiderStatus::Racing) = (view.gap_to_leader_ms, view.status) else {
            continue;
        };
        let Some((_, t)) = race.last_passage(view.rider_id) else {
            continue;
        };
        let Some(d) = sim.truth_distance(view.rider_id, t) else {
            continue;
        };
        // The true road leader at t: the farthest rider not yet finished.
        let leader = sim
            .riders
            .iter()
            .filter(|r| r.finish_ms.is_none_or(|f| f > t))
            .filter_map(|r| Some((sim.truth_distance(r.id, t)?, r.id)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, leader)) = leader else { continue };
        if let Some(passed) = sim.truth_passage(leader, d) {
            samples.push((gap, t - passed));
        }
    }
}

impl OfflineRun {
    /// Share of gap samples within `tolerance_ms` of the truth.
    pub fn gap_accuracy(&self, tolerance_ms: i64) -> f64 {
        if self.gap_samples.is_empty() {
            return 0.0;
        }
        let ok = self
            .gap_samples
            .iter()
            .filter(|(e, t)| (e - t).abs() <= tolerance_ms)
            .count();
        ok as f64 / self.gap_samples.len() as f64
    }

    /// Every alert the core raised, in order.
    pub fn alerts(&self) -> Vec<&flevum_protocol::Alert> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                crate::core::RaceOutput::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }
}

impl std::fmt::Display for OfflineRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use flevum_protocol::{AlertKind, Severity};
        let cfg = self.race.config();
        let course = self.race.course().course();
        let name = |id: u32| {
            cfg.riders
                .iter()
                .find(|r| r.id == id)
                .map_or(format!("#{id}"), |r| {
                    format!("{} ({}, {})", r.name, r.bib, r.team)
                })
        };
        let clock = |ms: i64| {
            let (sign, s) = if ms < 0 {
                ("-", -ms / 1000)
            } else {
                ("", ms / 1000)
            };
            format!("{sign}{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        };
        writeln!(
            f,
            "{} — {} ({:.1} km, {:.0} m ascent), {} riders",
            cfg.name,
            course.name(),
            course.length_m() / 1000.0,
            course.ascent_m(),
            cfg.riders.len()
        )?;
        let rejected: Vec<String> = self
            .race
            .rejections()
            .iter()
            .map(|(why, n)| format!("{n} {}", why.as_str().replace('_', " ")))
            .collect();
        writeln!(
            f,
            "{} fixes fed to the engine; rejected: {}",
            self.fixes,
            if rejected.is_empty() {
                "none".to_string()
            } else {
                rejected.join(", ")
            }
        )?;
        writeln!(f, "\nResult")?;
        for (i, (id, t)) in self.race.finish_order().iter().take(10).enumerate() {
            let truth = self
                .sim
                .finish_time(*id)
                .map_or(String::from("?"), |tt| clock(tt - cfg.start_ms));
            writeln!(
                f,
                "  {:>2}. {:<40} {}   (true {})",
                i + 1,
                name(*id),
                clock(t - cfg.start_ms),
                truth
            )?;
        }
        let truth_top: Vec<u32> = self.sim.finish_order().into_iter().take(5).collect();
        writeln!(f, "  true top five: {truth_top:?}")?;
        writeln!(f, "\nStory (notable and critical alerts)")?;
        for a in self
            .alerts()
            .iter()
            .filter(|a| a.severity >= Severity::Notable)
        {
            let who = || {
                a.riders
                    .iter()
                    .map(|&id| name(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let ids = || format!("{:?}", a.riders);
            // A time gap: seconds under a minute, else minutes and seconds.
            let gap = |ms: i64| {
                let s = (ms + 500).div_euclid(1000);
                if s < 60 {
                    format!("{s} s")
                } else {
                    format!("{}:{:02}", s / 60, s % 60)
                }
            };
            let what = match &a.kind {
                AlertKind::RaceStarted => "race started".to_string(),
                AlertKind::BreakawayFormed { gap_ms, .. } => {
                    format!("breakaway formed, {} clear: {}", gap(*gap_ms), ids())
                }
                AlertKind::BreakawayCaught { .. } => format!("breakaway caught: {}", ids()),
                AlertKind::GroupSplit { .. } => format!("group split, ahead: {}", ids()),
                AlertKind::GapChanged {
                    threshold_ms,
                    gap_ms,
                    growing,
                    ..
                } => format!(
                    "breakaway gap {} {} ({} now)",
                    if *growing { "passes" } else { "falls below" },
                    gap(*threshold_ms),
                    gap(*gap_ms)
                ),
                AlertKind::LeaderChanged { .. } => format!("new leader: {}", who()),
                AlertKind::RiderStopped => format!("stopped: {}", who()),
                AlertKind::PossibleCrash => {
                    format!("POSSIBLE CRASH: riders {} stopped together", ids())
                }
                AlertKind::DroppedFromGroup { .. } => format!("dropped: {}", who()),
                AlertKind::OffCourse { offset_m } => {
                    format!("off course, {offset_m:.0} m from it: {}", who())
                }
                AlertKind::BackOnCourse => format!("back on course: {}", who()),
                AlertKind::SignalLost => format!("signal lost: {}", who()),
                AlertKind::SignalRegained => format!("signal back: {}", who()),
                AlertKind::LowBattery { battery_pct } => {
                    format!("battery at {battery_pct} %: {}", who())
                }
                AlertKind::CheckpointLeader { checkpoint } => {
                    format!("{checkpoint}: first over, {}", who())
                }
                AlertKind::Finisher {
                    position,
                    race_time_ms,
                } => format!(
                    "finisher #{position} in {}: {}",
                    clock(*race_time_ms),
                    who()
                ),
                AlertKind::Sos => format!("SOS from {}", who()),
                AlertKind::RiderAbandoned { finish_position } => match finish_position {
                    Some(p) => format!("out of the race, was finisher #{p}: {}", who()),
                    None => format!("out of the race: {}", who()),
                },
                AlertKind::RiderReinstated { finish_position } => match finish_position {
                    Some(p) => format!("back in the race, finisher #{p}: {}", who()),
                    None => format!("back in the race: {}", who()),
                },
            };
            writeln!(
                f,
                "  {} km {:>6.1}  {what}",
                clock(a.race_time_ms),
                a.course_km
            )?;
        }
        let roles = self.sim.roles();
        writeln!(
            f,
            "\nScripted: breakaway {:?}, crash {:?}, off course {}, dropouts {:?}",
            roles.breakaway,
            roles.crashed,
            roles
                .off_course
                .map_or("none".to_string(), |id| format!("[{id}]")),
            roles.dropouts
        )?;
        writeln!(
            f,
            "Gap accuracy: {:.1} % of {} samples within 1 s of the truth ({:.1} % within 3 s)",
            100.0 * self.gap_accuracy(1000),
            self.gap_samples.len(),
            100.0 * self.gap_accuracy(3000)
        )
    }
}
