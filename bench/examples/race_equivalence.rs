//! Equivalence check for changes to the race core: replays a few simulated races (the golden
//! 150-rider race, a 400-rider 1 Hz race with checkpoints, a privacy zone, organiser commands and
//! uneven ticks, and the first 40 minutes of a 2,000-rider mass start) and prints one line per
//! tick with a hash of everything the core emitted and of its query answers. Build it on two
//! versions of the core and `diff` the outputs: any difference is the first tick that changed.
//!
//! Usage: `race_equivalence [scenario]` (golden, mixed, mass; all by default); set
//! `FLEVUM_EQ_DUMP=<tick>` to print that tick's outputs in full, and `FLEVUM_EQ_APPLY_THREADS=<n>`
//! to apply each tick's fixes on `n` threads (the output must not change).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

use flevum_bench::real_course;
use flevum_engine::core::race::{AdminCommand, CheckpointConfig, PrivacyZone};
use flevum_engine::core::{Race, RaceOutput};
use flevum_engine::simulator::{SimConfig, Simulation};
use flevum_protocol::{FanFrame, encode_frame_json};

/// One scenario's shape.
struct Scenario {
    /// Name on the command line and in the output.
    name: &'static str,
    /// The simulated field.
    sim: SimConfig,
    /// Stop after this many seconds of race (None: until everybody finished).
    limit_s: Option<i64>,
    /// Add checkpoints, a privacy zone and organiser commands.
    extras: bool,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "golden",
            sim: SimConfig {
                riders: 150,
                seed: 7,
                delivery_seed: 1,
                ..SimConfig::default()
            },
            limit_s: None,
            extras: false,
        },
        Scenario {
            name: "mixed",
            sim: SimConfig {
                riders: 400,
                seed: 11,
                delivery_seed: 3,
                fix_interval_ms: 1000,
                breakaway_riders: 8,
                crash_riders: 6,
                dropouts: 25,
                dropped_riders: 12,
                ..SimConfig::default()
            },
            limit_s: None,
            extras: true,
        },
        Scenario {
            name: "mass",
            sim: SimConfig {
                riders: 2000,
                seed: 5,
                delivery_seed: 2,
                fix_interval_ms: 1000,
                ..SimConfig::default()
            },
            limit_s: Some(2400),
            extras: false,
        },
    ]
}

fn hash_of(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn run(s: &Scenario, dump: Option<u64>, threads: Option<NonZeroUsize>) -> anyhow::Result<()> {
    let index = real_course("course_ragbrai_day4_gravel_128km.gpx")?;
    let mut sim = Simulation::new(index, s.sim.clone());
    let mut config = sim.race_config(s.name, s.name);
    if let Some(n) = threads {
        config.apply_threads = n;
    }
    if s.extras {
        for (name, km) in [("km20", 20.0), ("km50", 50.0), ("km90", 90.0)] {
            config.checkpoints.push(CheckpointConfig {
                name: name.into(),
                km: Some(km),
                lat: None,
                lon: None,
            });
        }
        let (lat, lon) = sim.course().course().position_at(38_400.0);
        config.privacy_zones.push(PrivacyZone {
            lat,
            lon,
            radius_m: 500.0,
        });
    }
    let start = config.start_ms;
    let mut race = Race::new(config, sim.course().clone(), 1)?;
    let mut t = start - 60_000;
    let mut tick = 0u64;
    let mut after_finish = 0;
    let mut total = DefaultHasher::new();
    while t < start + 6 * 3_600_000 && after_finish < 120_000 {
        tick += 1;
        // Mostly whole seconds; some half-second ticks and a few long pauses in the mixed race.
        let step = if s.extras {
            match tick % 97 {
                13 => 500,
                14 => 500,
                50 => 3_000,
                _ => 1_000,
            }
        } else {
            1_000
        };
        let prev = t;
        t += step;
        if s.limit_s.is_some_and(|l| t > start + l * 1000) {
            break;
        }
        let mut events = sim.step_until(t - t.rem_euclid(1000));
        if sim.finished() {
            events.extend(sim.drain());
            after_finish += step;
        }
        let mut lines: Vec<String> = Vec::new();
        for e in events {
            match race.handle_fix(e.deliver_ms.max(prev), e.rider_id, &e.record) {
                Ok(a) => lines.push(format!("ok {} {}", e.rider_id, a.applies_at_ms)),
                Err(r) => lines.push(format!("rej {} {r:?}", e.rider_id)),
            }
        }
        if s.extras {
            let race_s = (t - start) / 1000;
            let cmd = match race_s {
                -30 => Some(AdminCommand::Start),
                1800 => Some(AdminCommand::Abandon { rider_id: 5 }),
                2400 => Some(AdminCommand::Reinstate { rider_id: 5 }),
                2000 => Some(AdminCommand::Abandon { rider_id: 10 }),
                3000 => Some(AdminCommand::MoveCheckpoint {
                    name: "km50".into(),
                    distance_m: 55_000.0,
                }),
                3600 => Some(AdminCommand::MoveCheckpoint {
                    name: "km35".into(),
                    distance_m: 35_000.0,
                }),
                _ => None,
            };
            if let Some(cmd) = cmd
                && (t - start) % 1000 == 0
            {
                lines.push(format!(
                    "admin {cmd:?} {:?}",
                    race.handle_admin(t, cmd.clone())
                ));
            }
        }
        race.handle_tick(t);
        while let Some(out) = race.poll_output() {
            let frame = match out {
                RaceOutput::Delta(d) => FanFrame::Delta(d),
                RaceOutput::Alert(a) => FanFrame::Alert(a),
            };
            lines.push(String::from_utf8_lossy(&encode_frame_json(&frame)).into_owned());
        }
        if tick.is_multiple_of(120) {
            let snap = FanFrame::Snapshot(race.snapshot());
            lines.push(String::from_utf8_lossy(&encode_frame_json(&snap)).into_owned());
            lines.push(format!("{:?}", race.splits()));
            lines.push(format!("{:?}", race.finish_order()));
            lines.push(format!("{:?}", race.rejections()));
            lines.push(format!("{:?}", race.alerts_since(0).len()));
            for id in [1, 3, 7, 42] {
                lines.push(format!(
                    "{:?} {:?} {:?}",
                    race.etas(id),
                    race.last_passage(id),
                    race.track(id).map(|t| t.len())
                ));
            }
        }
        let text = lines.join("\n");
        if dump == Some(tick) {
            eprintln!("{text}");
        }
        text.hash(&mut total);
        println!("{} {tick} {t} {:016x}", s.name, hash_of(&text));
    }
    println!("{} total {:016x}", s.name, total.finish());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let only = std::env::args().nth(1);
    let dump = std::env::var("FLEVUM_EQ_DUMP")
        .ok()
        .and_then(|v| v.parse().ok());
    let threads = std::env::var("FLEVUM_EQ_APPLY_THREADS")
        .ok()
        .map(|v| v.parse::<NonZeroUsize>())
        .transpose()?;
    for s in scenarios() {
        if only.as_deref().is_none_or(|o| o == s.name) {
            run(&s, dump, threads)?;
        }
    }
    Ok(())
}
