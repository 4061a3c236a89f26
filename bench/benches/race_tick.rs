//! Criterion benchmark: one race tick (apply the second's fixes, rank, gaps, groups, alerts, delta)
//! for a 200-rider race and a 5,000-rider mass-participation event, mid-race (20 min in) on the
//! RAGBRAI course; and the cost of accepting one fix.
//!
//! `tick_1hz`: devices report every second, so each tick applies one new fix for every rider (the
//! live case). `quiet`: a tick half a second later, when no fix has become due (nothing new).
//! `tick_5s`: devices report every 5 s (a fifth of the riders move per tick; the earlier bench).
//! `accept_1hz`: the cost per fix of accepting the fixes that `tick_1hz` applies (`handle_fix`:
//! the checks, deduplication and queueing; matching waits for the tick that applies the fix).
//! `second_1hz`: a whole second of the race on the shard's task, both together: accepting the
//! second's fixes (one per rider) and the tick that applies them (what moving work from the
//! tick to the accepts has to be judged by: bench/TICK.md, ninth pass).
//! `delay_round_trip`: what a publish delay adds to each 1 Hz tick of the 5,000-rider race:
//! holding the tick's delta in the delay queue (its rider states packed) and taking it out.
//! The 5,000-rider ticks run with the race config's default apply threads; `tick_1hz_1thread` and
//! `tick_5s_1thread` are the same ticks applied on one thread.
//! Every bench cycles through the same ten minutes of race from a copy of the state at 20 min,
//! so the number of iterations criterion picks never runs the race out.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flevum_bench::RaceWindow;
use flevum_engine::core::RaceOutput;
use flevum_engine::shard::DelayedQueue;

/// Seconds of race before measuring.
const WARMUP_S: i64 = 1200;
/// Seconds of race the measurements cycle through.
const WINDOW_S: usize = 600;

fn window(riders: u32, fix_interval_ms: i64) -> Option<RaceWindow> {
    match RaceWindow::new(riders, fix_interval_ms, WARMUP_S, WINDOW_S) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("SKIP race_tick bench: {e}");
            None
        }
    }
}

/// Ticks `iters` seconds of the window, timing the whole-second ticks (`quiet` false) or the
/// half-second ticks between them (`quiet` true).
fn run(w: &mut RaceWindow, iters: u64, quiet: bool) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = w.next_second();
        let started = Instant::now();
        w.race.handle_tick(t);
        while w.race.poll_output().is_some() {}
        if !quiet {
            total += started.elapsed();
            continue;
        }
        // Fixes carry whole-second times: half a second on, none has become due.
        let started = Instant::now();
        w.race.handle_tick(t + 500);
        while w.race.poll_output().is_some() {}
        total += started.elapsed();
    }
    total
}

/// Time per accepted fix over whole seconds of the window that together deliver at least `iters`
/// fixes (each second's tick runs untimed).
fn accept_per_fix(w: &mut RaceWindow, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let (t, fixes, spent) = w.deliver_next();
        total += spent;
        done += fixes.max(1) as u64;
        w.race.handle_tick(t);
        while w.race.poll_output().is_some() {}
    }
    total.mul_f64(iters as f64 / done as f64)
}

/// Accepts each of `iters` seconds' fixes and runs the second's tick, timing both.
fn whole_second(w: &mut RaceWindow, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let (t, _, accepting) = w.deliver_next();
        let started = Instant::now();
        w.race.handle_tick(t);
        while w.race.poll_output().is_some() {}
        total += accepting + started.elapsed();
    }
    total
}

/// Pushes each of `iters` deltas into a delay queue and takes it out again (the copy that
/// stands for the tick's output is made outside the timing).
fn delay_round_trip(deltas: &[RaceOutput], iters: u64) -> Duration {
    let mut queue = DelayedQueue::new();
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let out = deltas[i as usize % deltas.len()].clone();
        let started = Instant::now();
        queue.push(0, out);
        let back = queue.pop_due(0);
        total += started.elapsed();
        assert!(back.is_some(), "the delta comes back");
    }
    total
}

fn race_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("race_tick");
    group.sample_size(20);
    for riders in [200u32, 5000] {
        let Some(mut w) = window(riders, 1000) else {
            return;
        };
        group.bench_with_input(BenchmarkId::new("tick_1hz", riders), &riders, |b, _| {
            b.iter_custom(|iters| run(&mut w, iters, false))
        });
        group.bench_with_input(BenchmarkId::new("quiet", riders), &riders, |b, _| {
            b.iter_custom(|iters| run(&mut w, iters, true))
        });
        group.bench_with_input(BenchmarkId::new("accept_1hz", riders), &riders, |b, _| {
            b.iter_custom(|iters| accept_per_fix(&mut w, iters))
        });
        group.bench_with_input(BenchmarkId::new("second_1hz", riders), &riders, |b, _| {
            b.iter_custom(|iters| whole_second(&mut w, iters))
        });
        if riders == 5000 {
            let deltas = w.deltas(10);
            group.bench_with_input(
                BenchmarkId::new("delay_round_trip", riders),
                &riders,
                |b, _| b.iter_custom(|iters| delay_round_trip(&deltas, iters)),
            );
            // The same ticks with every fix applied on the tick's own thread.
            w.set_apply_threads(NonZeroUsize::MIN);
            group.bench_with_input(
                BenchmarkId::new("tick_1hz_1thread", riders),
                &riders,
                |b, _| b.iter_custom(|iters| run(&mut w, iters, false)),
            );
        }
    }
    let Some(mut w) = window(5000, 5000) else {
        return;
    };
    group.bench_with_input(BenchmarkId::new("tick_5s", 5000), &5000, |b, _| {
        b.iter_custom(|iters| run(&mut w, iters, false))
    });
    w.set_apply_threads(NonZeroUsize::MIN);
    group.bench_with_input(BenchmarkId::new("tick_5s_1thread", 5000), &5000, |b, _| {
        b.iter_custom(|iters| run(&mut w, iters, false))
    });
    group.finish();

    // Accepting a fix (validation, duplicate check, queueing); applying it is part of the tick.
    let Some(mut w) = window(200, 1000) else {
        return;
    };
    c.bench_function("race_fix/accept", |b| {
        b.iter_custom(|iters| accept_per_fix(&mut w, iters))
    });
}

criterion_group!(benches, race_tick);
criterion_main!(benches);
