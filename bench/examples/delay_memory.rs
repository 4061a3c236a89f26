//! The memory a publish delay holds: a 1 Hz race's deltas for `delay` seconds, in the shard's
//! delay queue (packed rider states) and, for comparison, as the outputs themselves. Reads the
//! process's resident memory (`/proc/self/status`) before and after filling each.
//!
//! `cargo run --release -p flevum-bench --example delay_memory -- 5000 3600 packed` (riders,
//! delay in seconds, `packed` or `whole`; the deltas of one minute of the race repeat to fill
//! it). Run each way in its own process: memory freed by one would be reused by the other.
//! Only large queues (hundreds of MB) measure anything: a small one fits in memory the process
//! already holds (200 riders for 60 s read 0.7 bytes a state).

use std::collections::VecDeque;

use anyhow::{Context, bail};
use flevum_bench::RaceWindow;
use flevum_engine::core::RaceOutput;
use flevum_engine::shard::DelayedQueue;

/// Resident memory of this process, bytes.
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?;
    Ok(kb * 1024)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let riders: u32 = args.first().map_or(Ok(5000), |a| a.parse())?;
    let delay_s: usize = args.get(1).map_or(Ok(3600), |a| a.parse())?;
    let packed = match args.get(2).map_or("packed", String::as_str) {
        "packed" => true,
        "whole" => false,
        other => bail!("the third argument is `packed` or `whole`, not {other:?}"),
    };
    eprintln!("simulating {riders} riders to 20 min…");
    let mut w = RaceWindow::new(riders, 1000, 1200, 60)?;
    let deltas = w.deltas(60);
    if deltas.is_empty() {
        bail!("the race made no deltas");
    }
    let states: usize = (0..delay_s)
        .map(|i| match &deltas[i % deltas.len()] {
            RaceOutput::Delta(d) => d.states.len(),
            RaceOutput::Alert(_) => 0,
        })
        .sum();
    // The race stays alive: what it frees would be reused and hide the queue's growth.
    let before = resident_bytes()?;
    let started = std::time::Instant::now();
    let mut queue = DelayedQueue::new();
    let mut whole: VecDeque<(i64, RaceOutput)> = VecDeque::new();
    for i in 0..delay_s {
        let out = deltas[i % deltas.len()].clone();
        if packed {
            queue.push(i as i64, out);
        } else {
            whole.push_back((i as i64, out));
        }
        if i % 600 == 599 {
            eprintln!("  {} of {delay_s} s held", i + 1);
        }
    }
    let held = resident_bytes()?.saturating_sub(before);
    let elapsed = started.elapsed();
    std::hint::black_box((&queue, &whole, &w));
    println!(
        "{riders} riders at 1 Hz, {delay_s} s delay, {}: {states} rider states, {:.2} GiB, \
         {:.1} bytes a state (filled in {:.2} s)",
        if packed {
            "delay queue (packed)"
        } else {
            "the outputs as they are"
        },
        held as f64 / (1u64 << 30) as f64,
        held as f64 / states as f64,
        elapsed.as_secs_f64()
    );
    Ok(())
}
