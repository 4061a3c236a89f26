//! Criterion benchmark: one race tick (apply the second's fixes, rank, gaps, groups, alerts, delta)
//! for a 200-rider race and a 5,000-rider mass-participation event, mid-race on the RAGBRAI course;
//! and the cost of accepting one fix.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flevum_bench::real_course;
use flevum_engine::core::Race;
use flevum_engine::simulator::{SimConfig, Simulation};

/// A race and its simulation, advanced `warmup_s` seconds past the start.
fn mid_race(riders: u32, warmup_s: i64) -> Option<(Race, Simulation, i64)> {
    let index = match real_course("course_ragbrai_day4_gravel_128km.gpx") {
        Ok(i) => i,
        Err(e) => {
            eprintln!("SKIP race_tick bench: {e}");
            return None;
        }
    };
    let sim = Simulation::new(
        index,
        SimConfig {
            riders,
            ..SimConfig::default()
        },
    );
    let config = sim.race_config("bench", "Bench");
    let start = config.start_ms;
    let mut race = Race::new(config, sim.course().clone(), 1).ok()?;
    let mut sim = sim;
    let mut t = start;
    while t < start + warmup_s * 1000 {
        t += 1000;
        for e in sim.step_until(t) {
            let _ = race.handle_fix(e.deliver_ms, e.rider_id, &e.record);
        }
        race.handle_tick(t);
        while race.poll_output().is_some() {}
    }
    Some((race, sim, t))
}

fn race_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("race_tick");
    group.sample_size(20);
    for riders in [200u32, 5000] {
        let Some((mut race, mut sim, mut t)) = mid_race(riders, 1200) else {
            return;
        };
        group.bench_with_input(BenchmarkId::new("tick", riders), &riders, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    t += 1000;
                    for e in sim.step_until(t) {
                        let _ = race.handle_fix(e.deliver_ms, e.rider_id, &e.record);
                    }
                    let started = Instant::now();
                    race.handle_tick(t);
                    while race.poll_output().is_some() {}
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();

    // Accepting a fix (validation, duplicate check, queueing); applying it is part of the tick.
    let Some((mut race, mut sim, mut t)) = mid_race(200, 600) else {
        return;
    };
    c.bench_function("race_fix/accept", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                t += 1000;
                let events = sim.step_until(t);
                let started = Instant::now();
                for e in &events {
                    let _ = race.handle_fix(e.deliver_ms, e.rider_id, &e.record);
                }
                total += started.elapsed();
                done += events.len().max(1) as u64;
                race.handle_tick(t);
                while race.poll_output().is_some() {}
            }
            total.mul_f64(iters as f64 / done as f64)
        })
    });
}

criterion_group!(benches, race_tick);
criterion_main!(benches);
