//! Tests that applying a tick's due fixes on several threads (`RaceConfig::apply_threads`) gives
//! exactly the single-threaded race: every output, in order, and every query answer.
//!
//! Covers the run cutting and the merge of the runs' outcomes (changed riders, impossible-speed
//! rejections, SOS alerts, the road order); the race logic itself is tested elsewhere.

use std::num::NonZeroUsize;

use flevum_protocol::RecordFlags;

use super::apply::cut_at_riders;
use super::{QueuedFix, Race, RaceOutput};
use crate::core::{Course, CourseIndex};
use crate::simulator::{SimConfig, Simulation};

/// A 33 km course running due north, with some climbing.
fn course() -> CourseIndex {
    let pts: Vec<_> = (0..=300)
        .map(|i| {
            let ele = 100.0 + 20.0 * (i as f64 / 25.0).sin();
            (45.0 + i as f64 * 0.001, 7.0, Some(ele))
        })
        .collect();
    CourseIndex::new(Course::from_points("north", &pts).unwrap())
}

/// Everything one race run showed: its outputs per tick and, now and then, its query answers.
#[derive(Debug, PartialEq)]
struct Transcript {
    /// Outputs in the order they were polled, with query answers between ticks.
    lines: Vec<String>,
    /// Ticks in which the due fixes were applied in more than one run.
    parallel_ticks: usize,
}

/// Runs ten minutes of a 60-rider race at 1 Hz on `threads` apply threads, splitting the due
/// fixes whenever at least one is due per thread. Riders at both ends of the field send SOS
/// fixes in the same seconds, and some send fixes that teleport them (impossible speed).
fn run(threads: usize) -> Transcript {
    let mut sim = Simulation::new(
        course(),
        SimConfig {
            riders: 60,
            fix_interval_ms: 1000,
            crash_at: 0.1,
            attack_at: 0.05,
            ..SimConfig::default()
        },
    );
    let mut config = sim.race_config("threads", "Threads");
    config.apply_threads = NonZeroUsize::new(threads).unwrap();
    let start = config.start_ms;
    let mut race = Race::new(config, sim.course().clone(), 1).unwrap();
    race.min_due_per_apply_thread = 1;
    let mut lines = Vec::new();
    let mut parallel_ticks = 0;
    let mut t = start - 30_000;
    while t < start + 600_000 {
        let prev = t;
        t += 1000;
        let second = (t - start) / 1000;
        for e in sim.step_until(t) {
            let mut record = e.record;
            // SOS from riders in the first and the last run, in the same seconds.
            if second % 50 == 7 && [2, 17, 44, 59].contains(&e.rider_id) {
                record.flags |= RecordFlags::SOS;
            }
            // A fix 5 km off: refused as impossible, in several runs in the same tick.
            if second % 40 == 9 && [3, 31, 58].contains(&e.rider_id) {
                record.lat_e7 += 450_000;
            }
            let answer = race.handle_fix(e.deliver_ms.max(prev), e.rider_id, &record);
            lines.push(format!("fix {} {answer:?}", e.rider_id));
        }
        race.handle_tick(t);
        if race.work.cuts.len() > 2 {
            parallel_ticks += 1;
        }
        while let Some(out) = race.poll_output() {
            lines.push(match out {
                RaceOutput::Delta(d) => format!("{d:?}"),
                RaceOutput::Alert(a) => format!("alert {a:?}"),
            });
        }
        if second % 60 == 0 {
            lines.push(format!("{:?}", race.snapshot()));
            lines.push(format!("{:?}", race.splits()));
            lines.push(format!("{:?}", race.rejections()));
            for id in [1, 30, 60] {
                lines.push(format!("{:?} {:?}", race.etas(id), race.track(id)));
            }
        }
    }
    Transcript {
        lines,
        parallel_ticks,
    }
}

#[test]
fn two_and_more_apply_threads_give_the_single_threaded_race() {
    let one = run(1);
    assert_eq!(one.parallel_ticks, 0);
    // The scenario must exercise what the merge has to get right.
    let text = one.lines.join("\n");
    assert!(text.matches("kind: Sos").count() >= 8, "too few SOS alerts");
    assert!(text.contains("ImpossibleSpeed: "), "no impossible fix");
    for threads in [2, 3, 7] {
        let many = run(threads);
        assert!(many.parallel_ticks > 500, "{threads} threads never split");
        for (i, (a, b)) in one.lines.iter().zip(&many.lines).enumerate() {
            assert_eq!(a, b, "line {i} differs with {threads} apply threads");
        }
        assert_eq!(one.lines.len(), many.lines.len());
    }
}

#[test]
fn runs_are_cut_between_riders_into_about_equal_parts() {
    let fix = |slot: u32| QueuedFix {
        slot,
        record: flevum_protocol::PositionRecord::from_degrees(
            1, 0, 45.0, 7.0, None, None, None, None,
        ),
    };
    // Slot 4 has five fixes due; a cut must not fall among them.
    let due: Vec<QueuedFix> = [0, 1, 2, 3, 4, 4, 4, 4, 4, 5, 6, 7]
        .into_iter()
        .map(fix)
        .collect();
    let mut cuts = Vec::new();
    cut_at_riders(&due, 1, &mut cuts);
    assert_eq!(cuts, [0, 12]);
    cut_at_riders(&due, 2, &mut cuts);
    assert_eq!(cuts, [0, 4, 12]);
    cut_at_riders(&due, 3, &mut cuts);
    assert_eq!(cuts, [0, 4, 9, 12]);
    // More parts than riders: never an empty run.
    cut_at_riders(&due, 40, &mut cuts);
    assert_eq!(cuts, [0, 1, 2, 3, 4, 9, 10, 11, 12]);
    cut_at_riders(&[], 2, &mut cuts);
    assert_eq!(cuts, [0, 0]);
}
