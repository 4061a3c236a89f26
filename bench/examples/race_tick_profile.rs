//! A race-tick workload for profilers (perf, callgrind): a simulated field mid-race, then a number
//! of measured ticks; prints the busy ticks' median, p10, p90, p99 and slowest wall time. Under
//! callgrind, count only the ticks:
//!
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_tick*'
//!  target/release/examples/race_tick_profile 5000 1000 300 5`
//!
//! Arguments: riders, device reporting interval ms, warm-up seconds, measured ticks, and which
//! ticks go through `measured_tick` (`busy`: the whole-second ticks that apply the fixes,
//! `quiet`: the half-second ticks between them, `both`: all; the others go through `other_tick`;
//! `accept`: every `handle_fix` of the measured seconds goes through `measured_accept`, to count
//! the cost of accepting the fixes that the busy ticks apply: use
//! `--toggle-collect='*measured_accept*'`), and optionally the race's apply threads (default:
//! the race config's).

use std::time::Instant;

use anyhow::Context;
use flevum_bench::mid_race;
use flevum_engine::core::Race;
use flevum_engine::simulator::Simulation;
use flevum_protocol::PositionRecord;

/// A way of running one tick.
type TickFn = fn(&mut Race, i64);

/// One measured tick and its outputs (a symbol of its own for callgrind's `--toggle-collect`).
#[inline(never)]
fn measured_tick(race: &mut Race, t: i64) {
    race.handle_tick(t);
    let mut outputs = 0usize;
    while race.poll_output().is_some() {
        outputs += 1;
    }
    std::hint::black_box(outputs);
}

/// Accepting one fix, counted (in `accept` mode).
#[inline(never)]
fn measured_accept(race: &mut Race, now: i64, rider_id: u32, record: &PositionRecord) {
    std::hint::black_box(race.handle_fix(now, rider_id, record).is_ok());
}

/// Accepting one fix, not counted.
#[inline(never)]
fn other_accept(race: &mut Race, now: i64, rider_id: u32, record: &PositionRecord) {
    let _ = race.handle_fix(now, rider_id, record);
}

/// A way of accepting one fix.
type AcceptFn = fn(&mut Race, i64, u32, &PositionRecord);

/// Delivers every simulated fix due by `t` to the race through `accept`.
fn feed(race: &mut Race, sim: &mut Simulation, t: i64, accept: AcceptFn) -> usize {
    let events = sim.step_until(t);
    for e in &events {
        accept(race, e.deliver_ms, e.rider_id, &e.record);
    }
    events.len()
}

/// A tick that is not being counted (its body differs from `measured_tick`'s so that the
/// compiler cannot fold the two into one symbol).
#[inline(never)]
fn other_tick(race: &mut Race, t: i64) {
    race.handle_tick(t);
    while race.poll_output().is_some() {}
}

fn arg(i: usize, default: i64) -> anyhow::Result<i64> {
    std::env::args().nth(i).map_or(Ok(default), |a| {
        a.parse().with_context(|| format!("argument {i}: {a}"))
    })
}

fn main() -> anyhow::Result<()> {
    let riders = u32::try_from(arg(1, 5000)?)?;
    let interval = arg(2, 1000)?;
    let warmup = arg(3, 1200)?;
    let ticks = arg(4, 50)?;
    let which = std::env::args().nth(5).unwrap_or_else(|| "both".into());
    let (busy_fn, quiet_fn, accept_fn): (TickFn, TickFn, AcceptFn) = match which.as_str() {
        "busy" => (measured_tick, other_tick, other_accept),
        "quiet" => (other_tick, measured_tick, other_accept),
        "accept" => (other_tick, other_tick, measured_accept),
        _ => (measured_tick, measured_tick, other_accept),
    };
    let (mut race, mut sim, mut t) = mid_race(riders, interval, warmup)?;
    if let Some(threads) = std::env::args().nth(6) {
        race.set_apply_threads(threads.parse().context("argument 6: apply threads")?);
    }
    let mut busy = Vec::new();
    let mut quiet = Vec::new();
    let mut accepted = 0;
    for _ in 0..ticks {
        t += 1000;
        accepted += feed(&mut race, &mut sim, t, accept_fn);
        let started = Instant::now();
        busy_fn(&mut race, t);
        busy.push(started.elapsed());
        let started = Instant::now();
        quiet_fn(&mut race, t + 500);
        quiet.push(started.elapsed());
    }
    busy.sort();
    quiet.sort();
    // The share `q` of the sorted times (0.5 the median, 1.0 the slowest).
    let at = |times: &[std::time::Duration], q: f64| {
        let i = ((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1));
        times.get(i).copied().unwrap_or_default()
    };
    println!(
        "{riders} riders, {} apply threads, fixes every {interval} ms, {ticks} ticks after {warmup} s: tick median {:?} (p10 {:?}, p90 {:?}, p99 {:?}, max {:?}), quiet tick median {:?}, {accepted} fixes accepted",
        race.config().apply_threads,
        at(&busy, 0.5),
        at(&busy, 0.1),
        at(&busy, 0.9),
        at(&busy, 0.99),
        at(&busy, 1.0),
        at(&quiet, 0.5),
    );
    Ok(())
}
