//! Talking to a running `flevum serve` before the load starts: a tiny HTTP/1.1 client for the
//! organiser API (create a race with N riders on a GPX course, issue device tokens), the
//! Prometheus scrape, and synthetic motion along the course.
//!
//! Does not start the server (the driver script does) and speaks only to loopback addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use flevum_engine::core::Course;
use flevum_protocol::PositionRecord;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Where the server is and how to reach it as organiser.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Gateway (HTTP/WebSocket) address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub gateway: SocketAddr,
    /// QUIC ingest address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub ingest: SocketAddr,
    /// Organiser bearer token.
    #[arg(long, env = "FLEVUM_ADMIN_TOKEN", default_value = "")]
    pub admin_token: String,
    /// Ingest certificate SHA-256 (hex), as printed by the server.
    #[arg(long, default_value = "")]
    pub fingerprint: String,
    /// The server's stderr log to read the fingerprint from (`certificate sha256 <hex>`).
    #[arg(long)]
    pub server_log: Option<PathBuf>,
    /// Server process id, for memory figures from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl ServerArgs {
    /// Refuses non-loopback targets: the tool is for this machine only.
    pub fn check_loopback(&self) -> anyhow::Result<()> {
        for a in [self.gateway, self.ingest] {
            if !a.ip().is_loopback() {
                bail!("{a} is not a loopback address; flevum-load only talks to loopback");
            }
        }
        Ok(())
    }

    /// The ingest fingerprint, from the flag or the server log.
    pub fn fingerprint(&self) -> anyhow::Result<String> {
        if !self.fingerprint.is_empty() {
            return Ok(self.fingerprint.clone());
        }
        let Some(log) = &self.server_log else {
            bail!("give --fingerprint or --server-log");
        };
        let text = std::fs::read_to_string(log).with_context(|| log.display().to_string())?;
        text.lines()
            .rev()
            .find_map(|l| {
                l.split_once("certificate sha256 ")
                    .map(|(_, h)| h.trim().to_string())
            })
            .context("no `certificate sha256` line in the server log")
    }
}

/// The race a scenario drives.
#[derive(Debug, Clone, Args)]
pub struct RaceArgs {
    /// Race id (created with `--riders` riders unless `--existing`).
    #[arg(long, default_value = "load")]
    pub race: String,
    /// The race exists already; do not create it.
    #[arg(long)]
    pub existing: bool,
    /// GPX course file.
    #[arg(
        long,
        default_value = "../shared/data/real/course_ragbrai_day4_gravel_128km.gpx"
    )]
    pub course: PathBuf,
    /// Engine reorder window of the created race, ms (the engine default is 2000).
    #[arg(long)]
    pub reorder_window_ms: Option<i64>,
}

/// A minimal HTTP/1.1 keep-alive connection (loopback only).
pub struct Http {
    /// Buffered stream.
    stream: BufReader<TcpStream>,
    /// Host header value.
    host: String,
}

impl Http {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Http> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(s),
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the response (Content-Length or chunked bodies).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(t) = bearer {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse::<usize>().ok();
                } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
                let mut chunk = vec![0u8; n + 2];
                self.stream.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = len {
            out.resize(n, 0);
            self.stream.read_exact(&mut out).await?;
        }
        Ok((status, out))
    }
}

/// A course loaded for synthetic motion.
pub struct CourseMotion {
    /// The course geometry.
    pub course: Course,
    /// GPX text, for race creation.
    pub gpx: String,
}

impl CourseMotion {
    /// Loads a GPX course.
    pub fn load(path: &Path) -> anyhow::Result<Arc<CourseMotion>> {
        let gpx = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let course = Course::from_gpx_str(&gpx).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Arc::new(CourseMotion { course, gpx }))
    }

    /// Fix `seq` of rider `rider` at `time_ms`: riders move at 7–12 m/s from staggered
    /// positions, wrapping around the course.
    pub fn fix(&self, rider: u32, seq: u32, time_ms: i64, start_ms: i64) -> PositionRecord {
        let len = self.course.length_m().max(1.0);
        let speed = 7.0 + f64::from(rider % 50) * 0.1;
        let offset = f64::from(rider % 997) * 3.0;
        let d = (offset + speed * (time_ms - start_ms).max(0) as f64 / 1000.0) % len;
        let (lat, lon) = self.course.position_at(d);
        let ele = self.course.elevation_at(d);
        PositionRecord::from_degrees(
            seq,
            time_ms,
            lat,
            lon,
            ele,
            Some(speed),
            Some(self.course.bearing_at(d)),
            Some(4.0),
        )
    }
}

/// Race config TOML with `riders` riders that started a minute ago.
pub fn race_toml(id: &str, riders: u32, report_interval_ms: u32, reorder: Option<i64>) -> String {
    let start = crate::report::wall_us() / 1000 - 60_000;
    let mut s = format!(
        "id = \"{id}\"\nname = \"Load test {id}\"\nsport = \"road_cycling\"\nstart_ms = {start}\n\
         course = \"course.gpx\"\npublish_delay_s = 0\nvisibility = \"public\"\n\
         report_interval_ms = {report_interval_ms}\n"
    );
    if let Some(r) = reorder {
        s.push_str(&format!("reorder_window_ms = {r}\n"));
    }
    // A race needs a rider; `riders = 0` makes one that never reports (idle fan tests).
    for i in 1..=riders.max(1) {
        s.push_str(&format!(
            "\n[[riders]]\nid = {i}\nbib = \"{i}\"\nname = \"Rider {i}\"\ndevice_id = \"load-{id}-{i}\"\n"
        ));
    }
    s
}

/// Creates the race (unless it exists and `existing`) and issues one device token per rider.
pub async fn prepare_race(
    server: &ServerArgs,
    race: &RaceArgs,
    motion: &CourseMotion,
    riders: u32,
    report_interval_ms: u32,
) -> anyhow::Result<Vec<(u32, String)>> {
    let mut http = Http::connect(server.gateway).await?;
    let bearer = Some(server.admin_token.as_str());
    if !race.existing {
        let body = serde_json::json!({
            "action": "create_race",
            "config_toml": race_toml(&race.race, riders, report_interval_ms, race.reorder_window_ms),
            "gpx": motion.gpx,
        });
        let (status, resp) = http
            .request(
                "POST",
                "/v1/admin/races",
                bearer,
                Some(&serde_json::to_vec(&body)?),
            )
            .await?;
        if status != 200 {
            bail!(
                "creating race {}: HTTP {status} {}",
                race.race,
                String::from_utf8_lossy(&resp)
            );
        }
    }
    if riders == 0 {
        return Ok(Vec::new());
    }
    let mut tokens = Vec::with_capacity(riders as usize);
    let path = format!("/v1/admin/races/{}/tokens", race.race);
    for rider in 1..=riders {
        let body = format!("{{\"rider_id\":{rider}}}");
        let (status, resp) = http
            .request("POST", &path, bearer, Some(body.as_bytes()))
            .await?;
        if status != 200 {
            bail!(
                "issuing a token for rider {rider}: HTTP {status} {}",
                String::from_utf8_lossy(&resp)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&resp)?;
        let token = v["token"]
            .as_str()
            .context("no token in the response")?
            .to_string();
        tokens.push((rider, token));
    }
    Ok(tokens)
}

/// Prometheus lines of the ingest's submit-latency histogram (engine-side durability latency).
pub async fn scrape_metrics(gateway: SocketAddr, prefix: &str) -> Vec<String> {
    let Ok(mut http) = Http::connect(gateway).await else {
        return Vec::new();
    };
    match http.request("GET", "/metrics", None, None).await {
        Ok((200, body)) => String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Quantiles of a Prometheus histogram or summary from scraped lines, in ms (seconds × 1000).
pub fn prometheus_quantiles(lines: &[String], name: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for l in lines {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let Some((key, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if let Some(q) = key
            .split("quantile=\"")
            .nth(1)
            .and_then(|q| q.split('"').next())
        {
            out.insert(format!("q{q}_ms"), serde_json::json!(v * 1000.0));
        } else if key == "_count" {
            out.insert("count".into(), serde_json::json!(v));
        } else if key == "_sum" {
            out.insert("sum_s".into(), serde_json::json!(v));
        }
    }
    serde_json::Value::Object(out)
}
