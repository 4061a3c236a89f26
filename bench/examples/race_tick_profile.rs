//! A race-tick workload for profilers (perf, callgrind): a simulated field mid-race, then a number
//! of measured ticks; prints each phase's median wall time. Under callgrind, count only the ticks:
//!
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_tick*'
//!  target/release/examples/race_tick_profile 5000 1000 300 5`
//!
//! Arguments: riders, device reporting interval ms, warm-up seconds, measured ticks.

use std::time::Instant;

use anyhow::Context;
use flevum_bench::{feed_until, mid_race};
use flevum_engine::core::Race;

/// One measured tick and its outputs (a symbol of its own for callgrind's `--toggle-collect`).
#[inline(never)]
fn measured_tick(race: &mut Race, t: i64) {
    race.handle_tick(t);
    while race.poll_output().is_some() {}
}

fn arg(i: usize, default: i64) -> anyhow::Result<i64> {
    std::env::args()
        .nth(i)
        .map_or(Ok(default), |a| a.parse().with_context(|| format!("argument {i}: {a}")))
}

fn main() -> anyhow::Result<()> {
    let riders = u32::try_from(arg(1, 5000)?)?;
    let interval = arg(2, 1000)?;
    let warmup = arg(3, 1200)?;
    let ticks = arg(4, 50)?;
    let (mut race, mut sim, mut t) = mid_race(riders, interval, warmup)?;
    let mut busy = Vec::new();
    let mut quiet = Vec::new();
    for _ in 0..ticks {
        t += 1000;
        feed_until(&mut race, &mut sim, t);
        let started = Instant::now();
        measured_tick(&mut race, t);
        busy.push(started.elapsed());
        let started = Instant::now();
        measured_tick(&mut race, t + 500);
        quiet.push(started.elapsed());
    }
    busy.sort();
    quiet.sort();
    let n = busy.len() / 2;
    println!(
        "{riders} riders, fixes every {interval} ms, {ticks} ticks after {warmup} s: tick median {:?}, quiet tick median {:?}",
        busy.get(n).copied().unwrap_or_default(),
        quiet.get(n).copied().unwrap_or_default()
    );
    Ok(())
}
