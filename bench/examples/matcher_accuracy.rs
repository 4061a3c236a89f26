//! Prints the matcher's accuracy on synthetic riders over every real course: share of fixes within
//! 20 m of the true distance, wrong-leg fixes, off-course detection latency and false alarms.
//!
//! Run: `cargo run --release -p flevum-bench --example matcher_accuracy`

use anyhow::Result;
use flevum_bench::real_course;
use flevum_engine::core::MatcherConfig;
use flevum_engine::testkit::{
    Excursion, SyntheticConfig, clear_excursion_start, score_track, synthetic_track,
};

const COURSES: [&str; 4] = [
    "course_ragbrai_day4_gravel_128km.gpx",
    "course_gaia_tahoe_169km_cptr006.gpx",
    "course_rwgps_old_la_honda_skyline_48km_cptr003.gpx",
    "course_strava_route_seattle_4_5km_out_and_back.gpx",
];
const RIDERS: u64 = 20;

fn main() -> Result<()> {
    let config = MatcherConfig::default();
    println!(
        "Synthetic riders: {RIDERS} per course and noise level, 1-10 s sampling, 1 % dropout chance per fix (30-120 s), per-axis Gaussian noise."
    );
    println!(
        "{:<52} {:>6} {:>9} {:>12} {:>10} {:>8}",
        "course", "noise", "fixes", "within 20 m", "wrong leg", "false"
    );
    for file in COURSES {
        let index = real_course(file)?;
        for noise in [5.0, 10.0, 20.0] {
            let (mut within, mut on, mut wrong, mut false_alarms) = (0, 0, 0, 0);
            for seed in 0..RIDERS {
                let cfg = SyntheticConfig {
                    noise_m: noise,
                    ..SyntheticConfig::default()
                };
                let s = score_track(&index, &config, &synthetic_track(&index, &cfg, 1000 + seed));
                within += s.within_20m;
                on += s.on_course_fixes;
                wrong += s.wrong_leg;
                false_alarms += s.false_alarms;
            }
            println!(
                "{:<52} {:>4} m {:>9} {:>11.2}% {:>10} {:>8}",
                file,
                noise,
                on,
                100.0 * within as f64 / on as f64,
                wrong,
                false_alarms
            );
        }
        let mut latencies = Vec::new();
        let mut missed = 0;
        let mut false_alarms = 0;
        if let Some(at_m) = clear_excursion_start(&index, 200.0) {
            for seed in 0..RIDERS {
                let cfg = SyntheticConfig {
                    noise_m: 10.0,
                    excursion: Some(Excursion {
                        at_m,
                        offset_m: 200.0,
                        hold_s: 120.0,
                    }),
                    ..SyntheticConfig::default()
                };
                let s = score_track(&index, &config, &synthetic_track(&index, &cfg, 2000 + seed));
                match s.off_course_latency_s {
                    Some(l) => latencies.push(l),
                    None => missed += 1,
                }
                false_alarms += s.false_alarms;
            }
        }
        latencies.sort_by(f64::total_cmp);
        let median = latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or(f64::NAN);
        let max = latencies.last().copied().unwrap_or(f64::NAN);
        println!(
            "{file}: off-course (200 m, 10 m noise, {RIDERS} riders): detected {}, missed {missed}, latency median {median:.0} s, max {max:.0} s (from crossing 75 m; minimum duration 20 s), false alarms {false_alarms}",
            latencies.len()
        );
    }
    Ok(())
}
