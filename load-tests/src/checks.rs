//! The correctness checks of a run, which `--assert` turns into a non-zero exit (the CI load
//! smoke): no fix lost, no device or fan failed, no healthy fan resynced or was closed.
//!
//! Only counts, never timings: a slow shared machine must not fail these, a lost fix must. The
//! scenarios measure; this module only judges what they measured.

use std::sync::atomic::Ordering;

use crate::fans::WorkerResult;
use crate::fleet::Fleet;
use crate::report::Report;

/// Checks of a device fleet of `devices` devices, after its drain: every pushed fix was
/// acknowledged (a fix still pending because the drain was cut counts as lost), every device
/// connected, nothing refused locally.
pub fn fleet(r: &mut Report, fleet: &Fleet, devices: u32) {
    let s = &fleet.stats;
    let pushed = s.pushed.load(Ordering::Relaxed);
    let acked = s.acked.load(Ordering::Relaxed);
    let given_up = s.lost.load(Ordering::Relaxed);
    r.check(
        "every pushed fix acknowledged (zero loss)",
        format!(
            "{acked} of {pushed} acked, {} unacknowledged, {given_up} given up after the drain",
            pushed.saturating_sub(acked)
        ),
        pushed > 0 && acked == pushed && given_up == 0,
    );
    let connected = fleet.handshake.percentiles().count;
    let spawn_errors = s.spawn_errors.load(Ordering::Relaxed);
    r.check(
        "every device connected",
        format!("{connected} of {devices} connected, {spawn_errors} client start failures"),
        connected == u64::from(devices) && spawn_errors == 0,
    );
    let push_errors = s.push_errors.load(Ordering::Relaxed);
    r.check(
        "no fix refused by the device client",
        format!("{push_errors} push errors"),
        push_errors == 0,
    );
}

/// Checks of a fan swarm of `fans` fans (the results of its worker processes): every fan
/// connected and still open at the end of the window, none closed by the server, none resynced,
/// each received deltas.
pub fn swarm(r: &mut Report, results: &[WorkerResult], fans: u32) {
    let sum = |f: fn(&WorkerResult) -> u64| results.iter().map(f).sum::<u64>();
    let (connected, errors) = (sum(|w| w.connected), sum(|w| w.connect_errors));
    r.check(
        "every fan connected and open at the end",
        format!("{connected} of {fans} open, {errors} failed connection attempts"),
        connected == u64::from(fans) && errors == 0,
    );
    let (closes, budget) = (sum(|w| w.closes), sum(|w| w.budget_closes));
    r.check(
        "no fan closed by the server",
        format!("{closes} closes ({budget} for the byte budget)"),
        closes == 0,
    );
    let resyncs = sum(|w| w.resyncs);
    r.check(
        "no resyncs (no healthy fan skipped ahead)",
        format!("{resyncs} resyncs"),
        resyncs == 0,
    );
    let fed = sum(|w| w.fans_with_deltas);
    r.check(
        "every fan received deltas in the window",
        format!("{fed} of {fans} fans, {} deltas", sum(|w| w.deltas)),
        fed == u64::from(fans),
    );
}
