//! Shared set-up for Flevum's benchmarks and reports: locating real data and building workloads.
//!
//! Owns only what the benches and examples have in common (paths, course loading, synthetic fix
//! sets); the measurements themselves live in `benches/` and `examples/`.

#![deny(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use flevum_engine::core::{Course, CourseIndex, Fix};
use flevum_engine::testkit::{SyntheticConfig, synthetic_track};

/// Path of a file in `../shared/data/real/` relative to the repository root.
pub fn real_data(file: &str) -> Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/real")
        .join(file);
    anyhow::ensure!(
        path.is_file(),
        "{} not found: the benchmarks need ../shared/data/real beside the repository",
        path.display()
    );
    Ok(path)
}

/// Loads and indexes a real course.
pub fn real_course(file: &str) -> Result<CourseIndex> {
    let path = real_data(file)?;
    let course = Course::from_gpx_file(&path).with_context(|| format!("loading {file}"))?;
    Ok(CourseIndex::new(course))
}

/// One synthetic rider's fixes per entry, for `riders` riders with `noise_m` metres of noise.
pub fn synthetic_fixes(index: &CourseIndex, riders: u64, noise_m: f64) -> Vec<Vec<Fix>> {
    (0..riders)
        .map(|seed| {
            let cfg = SyntheticConfig {
                noise_m,
                ..SyntheticConfig::default()
            };
            synthetic_track(index, &cfg, seed)
                .into_iter()
                .map(|t| t.fix)
                .collect()
        })
        .collect()
}
