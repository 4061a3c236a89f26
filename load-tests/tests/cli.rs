//! The `flevum-load` command line as `load-tests/smoke.sh` (the CI load smoke) uses it: the
//! `--assert` flag exists on every measuring scenario, and a run that cannot reach its server
//! exits non-zero. Being an integration test also makes `cargo test --workspace` build the
//! binary that CI's smoke step runs (no second cargo build).

use std::process::Command;

fn load() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flevum-load"))
}

#[test]
fn assert_flag_on_every_measuring_scenario() {
    for scenario in ["devices", "fans", "e2e"] {
        let out = load().args([scenario, "--help"]).output().unwrap();
        assert!(out.status.success(), "{scenario} --help failed");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--assert"),
            "{scenario} has no --assert:\n{help}"
        );
    }
}

#[test]
fn a_run_without_its_server_fails() {
    // A loopback port that nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let course = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/courses/flevum_demo.gpx"
    );
    let out = load()
        .args([
            "e2e",
            "--assert",
            "--riders",
            "3",
            "--fans",
            "3",
            "--duration-s",
            "1",
        ])
        .args([
            "--gateway",
            &format!("127.0.0.1:{port}"),
            "--course",
            course,
        ])
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exited 0 without a server:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("connecting to 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn devices_share_endpoints_and_the_blip_is_a_cut_by_default() {
    let out = load().args(["devices", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--devices-per-endpoint"), "{help}");
    assert!(help.contains("[default: 64]"), "{help}");
    assert!(help.contains("--blip-mode"), "{help}");
    assert!(help.contains("[default: cut]"), "{help}");
    for scenario in ["e2e", "fans", "saturate"] {
        let out = load().args([scenario, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--devices-per-endpoint"),
            "{scenario}:\n{help}"
        );
    }
    // Zero devices per endpoint is refused before anything connects.
    let out = load()
        .args(["devices", "--devices-per-endpoint", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = load()
        .args(["devices", "--blip-mode", "sideways"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
