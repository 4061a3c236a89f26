//! Flevum's half of the matcher side-by-side: matches synthetic fixes on the Tahoe course, prints
//! fixes per second (median of 7 runs), and writes the same fixes and course to CSV files that
//! `bench/peers/shapely_match.py` matches with shapely (STRtree + LineString.project).
//!
//! Run through `bash bench/peers/run_shapely.sh`, or alone:
//! `cargo run --release -p flevum-bench --example matcher_side_by_side -- OUT_DIR`

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use flevum_bench::{real_course, synthetic_fixes};
use flevum_engine::core::{Matcher, MatcherConfig};
use flevum_engine::testkit::{SyntheticConfig, synthetic_track};

fn main() -> Result<()> {
    let out_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/side_by_side".to_string());
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {out_dir}"))?;
    let index = real_course("course_gaia_tahoe_169km_cptr006.gpx")?;
    let riders = synthetic_fixes(&index, 8, 10.0);
    let total: usize = riders.iter().map(Vec::len).sum();
    // The same tracks with their truth (same seeds and config as `synthetic_fixes`), so that the
    // peers can be checked against the true distance and not only against Flevum.
    let truth: Vec<Vec<f64>> = (0..8)
        .map(|seed| {
            let cfg = SyntheticConfig {
                noise_m: 10.0,
                ..SyntheticConfig::default()
            };
            synthetic_track(&index, &cfg, seed)
                .into_iter()
                .map(|t| t.true_distance_m)
                .collect()
        })
        .collect();

    // Same inputs for the peer: the course in the local metric frame, and each fix projected.
    let mut course_csv =
        std::io::BufWriter::new(std::fs::File::create(format!("{out_dir}/course.csv"))?);
    writeln!(course_csv, "x,y,distance_m")?;
    for p in index.course().points() {
        writeln!(course_csv, "{},{},{}", p.x, p.y, p.distance_m)?;
    }
    course_csv.flush()?;
    let mut fixes_csv =
        std::io::BufWriter::new(std::fs::File::create(format!("{out_dir}/fixes.csv"))?);
    writeln!(
        fixes_csv,
        "rider,time_ms,x,y,flevum_distance_m,true_distance_m"
    )?;
    for (rider, (fixes, truth)) in riders.iter().zip(&truth).enumerate() {
        anyhow::ensure!(fixes.len() == truth.len(), "truth and fixes differ");
        let mut m = Matcher::new(MatcherConfig::default());
        for (f, t) in fixes.iter().zip(truth) {
            let (x, y) = index.course().project(f.lat, f.lon);
            let d = m.match_fix(&index, f).distance_m;
            writeln!(fixes_csv, "{rider},{},{x},{y},{d},{t}", f.time_ms)?;
        }
    }
    fixes_csv.flush()?;

    let mut rates = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let mut sum = 0.0;
        for fixes in &riders {
            let mut m = Matcher::new(MatcherConfig::default());
            for f in fixes {
                sum += m.match_fix(&index, f).distance_m;
            }
        }
        std::hint::black_box(sum);
        rates.push(total as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "flevum: {total} fixes on {} course segments, median {median:.0} fixes/s (7 runs, one core, from lat/lon incl. projection)",
        index.course().segments().len()
    );
    println!("FLEVUM_FIXES_PER_S={median:.0}");
    Ok(())
}
