//! Device tokens issued and revoked through the organiser API survive a SIGKILL and restart:
//! the server replays its token log, so issued tokens still log in and revoked ones (config
//! granted or issued) stay revoked.

use crate::support::{
    ADMIN_TOKEN, Proc, SERVERS, free_tcp_port, free_udp_port, http, setup_server, start_server,
    wait_ready,
};

/// (riderId, deviceId) of every token the race accepts, sorted, from `GET …/tokens`.
fn tokens(port: u16) -> Vec<(u64, String)> {
    let (status, body) = http(
        port,
        "GET",
        "/v1/admin/races/tok/tokens",
        Some(ADMIN_TOKEN),
        None,
    )
    .expect("the token list answers");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the token list is JSON");
    let mut list: Vec<(u64, String)> = v["tokens"]
        .as_array()
        .expect("a tokens array")
        .iter()
        .map(|t| {
            (
                t["riderId"].as_u64().expect("riderId"),
                t["deviceId"].as_str().expect("deviceId").to_string(),
            )
        })
        .collect();
    list.sort();
    list
}

fn issue(port: u16, rider: u32) {
    let body = format!("{{\"rider_id\":{rider}}}");
    let (status, text) = http(
        port,
        "POST",
        "/v1/admin/races/tok/tokens",
        Some(ADMIN_TOKEN),
        Some(&body),
    )
    .expect("issuing answers");
    assert_eq!(status, 200, "{text}");
}

#[test]
fn issued_and_revoked_tokens_survive_a_sigkill() {
    let _one_at_a_time = SERVERS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let (http_port, quic_port) = (free_tcp_port(), free_udp_port());
    let start_ms = flevum_engine::shard::wall_ms() + 3_600_000;
    // Riders 1..=4, each with a config-granted token for device dev-i.
    let (config, _pin) = setup_server(dir.path(), http_port, quic_port, start_ms, "tok", 4);
    let mut server = Proc(start_server(&config));
    wait_ready(http_port);

    for rider in [1, 2, 3, 2] {
        issue(http_port, rider);
    }
    let (status, text) = http(
        http_port,
        "DELETE",
        "/v1/admin/races/tok/tokens/dev-2",
        Some(ADMIN_TOKEN),
        None,
    )
    .expect("revoking answers");
    assert_eq!(status, 200, "{text}");
    // Issued after the revocation: must stay valid across the restart.
    issue(http_port, 2);
    issue(http_port, 4);
    // Config tokens of riders 1, 3 and 4; issued: 1 and 3 before the revocation, 2 and 4 after.
    let expected: Vec<(u64, String)> = [1, 1, 2, 3, 3, 4, 4]
        .into_iter()
        .map(|i| (i, format!("dev-{i}")))
        .collect();
    assert_eq!(tokens(http_port), expected);

    server.kill();
    let _server = Proc(start_server(&config));
    wait_ready(http_port);
    assert_eq!(tokens(http_port), expected, "after the restart");
}
