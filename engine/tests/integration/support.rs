//! Shared helpers for the engine's integration tests: locating the real data in `../shared`.
//!
//! Does not generate data; each test module builds its own fixtures.

#![allow(dead_code)]

use std::path::PathBuf;

/// Path of a file in `../shared/data/real/` (relative to the repository root), or `None` with a
/// visible SKIP line when it is missing. Under `FLEVUM_REQUIRE_SHARED_DATA=1` a missing file fails
/// the test instead.
pub fn real_data(file: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("../shared/data/real").join(file);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("FLEVUM_REQUIRE_SHARED_DATA").as_deref() == Ok("1") {
        panic!(
            "required real data file {} is missing (FLEVUM_REQUIRE_SHARED_DATA=1)",
            path.display()
        );
    }
    eprintln!(
        "SKIP: {file} not found ({} missing); this test needs ../shared/data/real beside the repository",
        path.display()
    );
    None
}
