//! Criterion benchmark: one race tick (apply the second's fixes, rank, gaps, groups, alerts, delta)
//! for a 200-rider race and a 5,000-rider mass-participation event, mid-race (20 min in) on the
//! RAGBRAI course; and the cost of accepting one fix.
//!
//! `tick_1hz`: devices report every second, so each tick applies one new fix for every rider (the
//! live case). `quiet`: a tick half a second later, when no fix has become due (nothing new).
//! `tick_5s`: devices report every 5 s (a fifth of the riders move per tick; the earlier bench).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flevum_bench::{feed_until, mid_race};

/// Seconds of race before measuring.
const WARMUP_S: i64 = 1200;

fn race_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("race_tick");
    group.sample_size(20);
    for riders in [200u32, 5000] {
        let (mut race, mut sim, mut t) = match mid_race(riders, 1000, WARMUP_S) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("SKIP race_tick bench: {e}");
                return;
            }
        };
        group.bench_with_input(BenchmarkId::new("tick_1hz", riders), &riders, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    t += 1000;
                    feed_until(&mut race, &mut sim, t);
                    let started = Instant::now();
                    race.handle_tick(t);
                    while race.poll_output().is_some() {}
                    total += started.elapsed();
                }
                total
            })
        });
        group.bench_with_input(BenchmarkId::new("quiet", riders), &riders, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    t += 1000;
                    feed_until(&mut race, &mut sim, t);
                    race.handle_tick(t);
                    while race.poll_output().is_some() {}
                    // Fixes carry whole-second times: half a second on, none has become due.
                    let started = Instant::now();
                    race.handle_tick(t + 500);
                    while race.poll_output().is_some() {}
                    total += started.elapsed();
                }
                total
            })
        });
    }
    let (mut race, mut sim, mut t) = match mid_race(5000, 5000, WARMUP_S) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIP race_tick bench: {e}");
            return;
        }
    };
    group.bench_with_input(BenchmarkId::new("tick_5s", 5000), &5000, |b, _| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                t += 1000;
                feed_until(&mut race, &mut sim, t);
                let started = Instant::now();
                race.handle_tick(t);
                while race.poll_output().is_some() {}
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();

    // Accepting a fix (validation, duplicate check, queueing); applying it is part of the tick.
    let Ok((mut race, mut sim, mut t)) = mid_race(200, 1000, 600) else {
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
