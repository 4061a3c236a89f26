//! What the `flevum` binary's integration tests share: child processes of the built binary,
//! free loopback ports, a minimal HTTP/1.1 client, race files with config-granted device tokens
//! and the simulated peloton on the demo course.
//!
//! Holds no assertions of its own; each test module says what it checks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flevum_engine::core::{Course, CourseIndex};
use flevum_engine::ingest::TokenStore;
use flevum_engine::shard::wall_ms;
use flevum_engine::simulator::{SimConfig, Simulation};
use flevum_protocol::PositionRecord;
use flevum_protocol::client::DeviceClient;

/// Tests that start whole servers and device swarms run one at a time: on a 2-core CI machine
/// two of them side by side would only test the scheduler.
pub static SERVERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The built `flevum` binary as a command.
pub fn flevum() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flevum"))
}

/// A child process of the `flevum` binary, killed (SIGKILL) on drop; its stderr is appended to
/// a log file that the test prints when it fails.
pub struct Proc(pub Child);

impl Proc {
    /// Starts `flevum ARGS…` with its stderr appended to `log`.
    pub fn spawn(args: &[&str], log: &Path) -> Proc {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = flevum()
            .args(args)
            .env("FLEVUM_LOG", "info,async_nats=warn")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Proc(child)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free on loopback right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// A UDP port free on loopback right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`): status and body, chunked
/// bodies joined; None if nothing answers in time.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&str>,
) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        req += &format!("Authorization: Bearer {token}\r\n");
    }
    if let Some(body) = json {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    req += "\r\n";
    req += json.unwrap_or_default();
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((status, body.to_string()));
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(tail.get(..n)?);
        rest = tail.get(n + 2..)?;
    }
    Some((status, out))
}

/// `GET path` (blocking).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, None, None)
}

/// `GET path` from async tests (the blocking client on the blocking pool).
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || http_get(port, &path))
        .await
        .ok()?
}

/// `POST path` with an organiser token and a JSON body, from async tests.
pub async fn post_json(port: u16, path: &str, token: &str, json: &str) -> Option<(u16, String)> {
    let (path, token, json) = (path.to_string(), token.to_string(), json.to_string());
    tokio::task::spawn_blocking(move || http(port, "POST", &path, Some(&token), Some(&json)))
        .await
        .ok()?
}

/// The project's own demo course (`configs/courses/flevum_demo.gpx`).
pub fn demo_course() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/courses/flevum_demo.gpx")
}

/// A public race file on the demo course: riders 1..=`riders`, rider i on device `dev-i`
/// granted by the hash of token `token-i`.
pub fn race_toml(
    id: &str,
    name: &str,
    start_ms: i64,
    report_interval_ms: u32,
    riders: u32,
) -> String {
    let mut race = format!(
        "id = \"{id}\"\nname = \"{name}\"\nsport = \"road_cycling\"\nstart_ms = {start_ms}\n\
         course = {:?}\nvisibility = \"public\"\nreport_interval_ms = {report_interval_ms}\n",
        demo_course().display().to_string()
    );
    for i in 1..=riders {
        race += &format!(
            "\n[[riders]]\nid = {i}\nbib = \"{i}\"\nname = \"Rider {i}\"\nteam = \"T\"\n\
             device_id = \"dev-{i}\"\ndevice_token_sha256 = \"{}\"\n",
            TokenStore::sha256_hex(&format!("token-{i}"))
        );
    }
    race
}

/// A steady simulated peloton of `riders` on the demo course, reporting every second from
/// `start_ms`: no dropouts, crashes or detours (the tests count fixes, not race events).
pub fn demo_peloton(riders: u32, start_ms: i64) -> Simulation {
    let course = Course::from_gpx_file(demo_course()).unwrap();
    Simulation::new(
        CourseIndex::new(course),
        SimConfig {
            riders,
            start_ms,
            fix_interval_ms: 1000,
            max_delivery_ms: 0,
            dropouts: 0,
            off_course_at: None,
            crash_riders: 0,
            ..SimConfig::default()
        },
    )
}

/// Steps `sim` to the wall clock and hands every new fix, in sequence order per rider, to that
/// rider's device client; returns `(rider, record)` of each fix a client took (a client refuses
/// none unless its buffer is full).
pub fn push_due(
    sim: &mut Simulation,
    clients: &BTreeMap<u32, DeviceClient>,
) -> Vec<(u32, PositionRecord)> {
    let mut events = sim.step_until(wall_ms());
    events.sort_by_key(|e| (e.rider_id, e.record.seq));
    events
        .into_iter()
        .filter(|e| {
            let c = &clients[&e.rider_id];
            e.record.seq >= c.next_seq() && c.push(e.record).is_ok()
        })
        .map(|e| (e.rider_id, e.record))
        .collect()
}

/// The fix times of `rider` as race `race` has them (`/track`, through the gateway on `port`).
pub fn track_times(port: u16, race: &str, rider: u32) -> Option<Vec<i64>> {
    let path = format!("/v1/races/{race}/riders/{rider}/track?format=geojson");
    let (status, body) = http_get(port, &path)?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        json["properties"]["timesMs"]
            .as_array()?
            .iter()
            .filter_map(|t| t.as_i64())
            .collect(),
    )
}

/// Per rider, how many of the fix times pushed for it the race does not have (riders missing
/// none are left out). Panics on a fix the race has twice.
pub fn missing_fixes(
    port: u16,
    race: &str,
    pushed: &BTreeMap<u32, BTreeSet<i64>>,
) -> BTreeMap<u32, usize> {
    let mut missing = BTreeMap::new();
    for (rider, times) in pushed {
        let got = track_times(port, race, *rider).unwrap_or_default();
        let unique: BTreeSet<i64> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "rider {rider}: a fix is duplicated"
        );
        let lost = times.difference(&unique).count();
        if lost > 0 {
            missing.insert(*rider, lost);
        }
    }
    missing
}

/// The organiser token of the servers [`setup_server`] configures.
pub const ADMIN_TOKEN: &str = "it-admin-token-0123456789";

/// Starts `flevum serve` on `config` (logs off).
pub fn start_server(config: &Path) -> Child {
    flevum()
        .args(["serve", "--config"])
        .arg(config)
        .env("FLEVUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flevum starts")
}

/// Waits up to 60 s for `/readyz` to answer 200.
pub fn wait_ready(http: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = http_get(http, "/readyz") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not become ready");
}

/// Writes the server config (admin token [`ADMIN_TOKEN`], data under `dir/data`), the race
/// `race_id` ([`race_toml`]'s riders with config-granted tokens) and a TLS certificate that
/// survives restarts; returns (config path, pin).
pub fn setup_server(
    dir: &Path,
    http: u16,
    quic: u16,
    start_ms: i64,
    race_id: &str,
    riders: u32,
) -> (PathBuf, String) {
    std::fs::create_dir_all(dir.join("races")).unwrap();
    let race = race_toml(race_id, "Test race", start_ms, 1000, riders);
    std::fs::write(dir.join(format!("races/{race_id}.toml")), race).unwrap();
    let pin = flevum_engine::ingest::write_self_signed(
        &["localhost".to_string()],
        &dir.join("cert.pem"),
        &dir.join("key.pem"),
    )
    .unwrap();
    let config = format!(
        "[ingest]\nlisten = \"127.0.0.1:{quic}\"\ntls_cert = {:?}\ntls_key = {:?}\n\
         [gateway]\nlisten = \"127.0.0.1:{http}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
         [engine]\ntick_ms = 200\nraces_dir = {:?}\n\
         [journal]\ndir = {:?}\n",
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
        dir.join("races").display().to_string(),
        dir.join("data/journal").display().to_string(),
    );
    let path = dir.join("flevum.toml");
    std::fs::write(&path, config).unwrap();
    (path, pin)
}
