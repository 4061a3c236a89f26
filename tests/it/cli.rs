//! End-to-end tests of the `flevum` binary's command line: config checking and honest refusals.
//!
//! Runs the built binary as a user would; does not start servers (the engine and gateway crates
//! test those).

use crate::support::flevum;

#[test]
fn shipped_config_checks_ok() {
    let out = flevum()
        .args(["check-config", "configs/flevum.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn config_with_three_mistakes_lists_all_three() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[gateway]\nlisten = \"nowhere\"\n[engine]\ntick_ms = 0\n[journal]\nfsynk = true\n",
    )
    .unwrap();
    let out = flevum().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problem(s)"), "{err}");
    for key in ["gateway.listen", "engine.tick_ms", "journal.fsynk"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = flevum()
        .args(["check-config", "/nonexistent/flevum.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
