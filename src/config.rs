//! Loading and validating the server config file (`configs/flevum.toml`) and `FLEVUM_*` overrides.
//!
//! Owns turning TOML text into typed settings while collecting EVERY mistake (unknown keys, wrong
//! types, values out of range) before reporting, so one run of `flevum check-config` lists them
//! all. Does not start anything; `main` maps these settings onto the libraries' `*Config` structs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `gateway.listen`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// QUIC ingest settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestSettings {
    /// UDP address the QUIC endpoint binds.
    pub listen: SocketAddr,
    /// Most simultaneous device connections.
    pub max_connections: usize,
    /// Sustained fixes per second allowed per device.
    pub rate_per_device: f64,
    /// Burst size of the per-device token bucket.
    pub burst_per_device: u32,
    /// QUIC keep-alive interval in seconds (keeps NAT bindings of phones open).
    pub keep_alive_s: u64,
    /// Idle timeout in seconds before a silent connection is dropped.
    pub idle_timeout_s: u64,
    /// PEM certificate chain; with `tls_key`. None = self-signed for development.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// TLS sessions kept for resumption (a few per device; 0 turns resumption off).
    pub tls_session_cache: usize,
    /// Accept 0-RTT position records from resuming devices (replay-safe: deduplicated by seq).
    pub zero_rtt: bool,
}

/// HTTP / WebSocket gateway settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// TCP address of the HTTP server.
    pub listen: SocketAddr,
    /// Bearer token for organiser endpoints (override with `FLEVUM_ADMIN_TOKEN`).
    pub admin_token: String,
    /// Key that signs the viewer links of private races (override with
    /// `FLEVUM_SHARE_SECRET`); empty = a random one per run and gateway process, so links end
    /// with the run and do not open the race on another gateway.
    pub share_secret: String,
    /// Bearer token `/metrics` requires (override with `FLEVUM_METRICS_TOKEN`); empty = open,
    /// for a scraper on a trusted network (the metrics name every race, private ones too).
    pub metrics_token: String,
    /// Allowed CORS origins (`*` for any).
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// HTTP requests per minute allowed per client IP.
    pub requests_per_minute_per_ip: u32,
    /// Concurrent WebSocket connections allowed per client IP.
    pub websockets_per_ip: u32,
    /// Bytes that may queue for one WebSocket client before it is resynced.
    pub client_byte_budget: usize,
    /// Optional raster tile URL template for the live map.
    pub tile_url: Option<String>,
}

/// Race engine settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Tick interval in milliseconds (one delta frame per race per tick).
    pub tick_ms: u64,
    /// Folder with race configs (`*.toml`) loaded at start.
    pub races_dir: PathBuf,
}

/// Journal settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalSettings {
    /// Folder of the journal segments.
    pub dir: PathBuf,
    /// Segment size in MiB before rolling over.
    pub segment_mib: u64,
    /// Longest wait in ms to batch appends into one fsync.
    pub group_commit_ms: u64,
    /// Whether to fsync (turn off only for throwaway demos).
    pub fsync: bool,
    /// Days to keep journals of finished races (0 = forever).
    pub retention_days: u64,
}

/// Where `flevum engine --bus …` journals its races.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalBackendKind {
    /// Local segment files under `[journal] dir` (one engine per race, no failover).
    Local,
    /// One JetStream stream per race, with a lease per race so another engine takes over.
    JetStream,
}

/// `[bus]`: scale-out settings of `flevum engine` (unused by `flevum serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct BusSettings {
    /// The engines' journal: local files or JetStream.
    pub journal: JournalBackendKind,
    /// Replicas of each race's stream and of the lease bucket (3 in a three-node cluster).
    pub replicas: usize,
    /// A race's lease lives this long without renewal: how soon a standby engine takes over
    /// the races of a dead one.
    pub lease_ttl_ms: u64,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// Output format.
    pub log_format: LogFormat,
    /// `tracing` filter directive (`info`, `flevum_engine=debug`, …).
    pub log_filter: String,
    /// Where `flevum engine` serves `/metrics`, `/healthz` and `/readyz` (it has no gateway to
    /// serve them); None = not served. `serve` and `gateway` serve them on the gateway's port.
    pub engine_metrics_listen: Option<SocketAddr>,
}

/// The whole server config.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `[ingest]`.
    pub ingest: IngestSettings,
    /// `[gateway]`.
    pub gateway: GatewaySettings,
    /// `[engine]`.
    pub engine: EngineSettings,
    /// `[journal]`.
    pub journal: JournalSettings,
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[bus]`.
    pub bus: BusSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            ingest: IngestSettings {
                listen: SocketAddr::from(([0, 0, 0, 0], 4433)),
                max_connections: 20_000,
                rate_per_device: 5.0,
                burst_per_device: 600,
                keep_alive_s: 10,
                idle_timeout_s: 60,
                tls_cert: None,
                tls_key: None,
                tls_session_cache: 65_536,
                zero_rtt: true,
            },
            gateway: GatewaySettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                admin_token: String::new(),
                share_secret: String::new(),
                metrics_token: String::new(),
                cors_origins: vec!["*".to_string()],
                max_body_bytes: 8 * 1024 * 1024,
                requests_per_minute_per_ip: 1200,
                websockets_per_ip: 64,
                client_byte_budget: 4 * 1024 * 1024,
                tile_url: None,
            },
            engine: EngineSettings {
                tick_ms: 1000,
                races_dir: PathBuf::from("configs/races"),
            },
            journal: JournalSettings {
                dir: PathBuf::from("data/journal"),
                segment_mib: 64,
                group_commit_ms: 2,
                fsync: true,
                retention_days: 0,
            },
            telemetry: TelemetrySettings {
                log_format: LogFormat::Pretty,
                log_filter: "info".to_string(),
                engine_metrics_listen: None,
            },
            bus: BusSettings {
                journal: JournalBackendKind::Local,
                replicas: 1,
                lease_ttl_ms: 10_000,
            },
        }
    }
}

/// Collects typed values out of a TOML table, remembering every problem.
struct Reader<'a> {
    /// Problems found so far.
    issues: &'a mut Vec<ConfigIssue>,
}

impl Reader<'_> {
    fn issue(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Reports keys of `table` not in `known`.
    fn unknown_keys(&mut self, section: &str, table: &toml::Table, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let path = if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                self.issue(
                    &path,
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn section<'t>(&mut self, root: &'t toml::Table, name: &str) -> Option<&'t toml::Table> {
        match root.get(name) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(other) => {
                self.issue(
                    name,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn string(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut String) {
        match t.get(key) {
            None => {}
            Some(toml::Value::String(s)) => *slot = s.clone(),
            Some(v) => self.issue(
                &format!("{section}.{key}"),
                format!("expected a string, found {}", v.type_str()),
            ),
        }
    }

    fn path(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut PathBuf) {
        let mut s = slot.display().to_string();
        self.string(t, section, key, &mut s);
        *slot = PathBuf::from(s);
    }

    fn opt_path(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut Option<PathBuf>) {
        if t.contains_key(key) {
            let mut p = PathBuf::new();
            self.path(t, section, key, &mut p);
            *slot = (!p.as_os_str().is_empty()).then_some(p);
        }
    }

    fn addr(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut SocketAddr) {
        if let Some(v) = t.get(key) {
            match v.as_str().map(str::parse::<SocketAddr>) {
                Some(Ok(a)) => *slot = a,
                Some(Err(e)) => self.issue(
                    &format!("{section}.{key}"),
                    format!("not a socket address like \"127.0.0.1:8080\" ({e})"),
                ),
                None => self.issue(
                    &format!("{section}.{key}"),
                    format!("expected a string \"host:port\", found {}", v.type_str()),
                ),
            }
        }
    }

    /// Reads an integer within `min..=max`.
    fn int(
        &mut self,
        t: &toml::Table,
        section: &str,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = t.get(key)?;
        let path = format!("{section}.{key}");
        match v.as_integer() {
            Some(i) if (min..=max).contains(&i) => Some(i),
            Some(i) => {
                self.issue(&path, format!("{i} is out of range ({min}..={max})"));
                None
            }
            None => {
                self.issue(
                    &path,
                    format!("expected an integer, found {}", v.type_str()),
                );
                None
            }
        }
    }

    fn float(
        &mut self,
        t: &toml::Table,
        section: &str,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f64> {
        let v = t.get(key)?;
        let path = format!("{section}.{key}");
        let f = match v {
            toml::Value::Float(f) => *f,
            toml::Value::Integer(i) => *i as f64,
            other => {
                self.issue(
                    &path,
                    format!("expected a number, found {}", other.type_str()),
                );
                return None;
            }
        };
        if f.is_finite() && (min..=max).contains(&f) {
            Some(f)
        } else {
            self.issue(&path, format!("{f} is out of range ({min}..={max})"));
            None
        }
    }

    fn boolean(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut bool) {
        match t.get(key) {
            None => {}
            Some(toml::Value::Boolean(b)) => *slot = *b,
            Some(v) => self.issue(
                &format!("{section}.{key}"),
                format!("expected true or false, found {}", v.type_str()),
            ),
        }
    }

    fn strings(&mut self, t: &toml::Table, section: &str, key: &str, slot: &mut Vec<String>) {
        let Some(v) = t.get(key) else { return };
        let path = format!("{section}.{key}");
        match v.as_array() {
            Some(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => out.push(s.to_string()),
                        None => self.issue(&format!("{path}[{i}]"), "expected a string"),
                    }
                }
                *slot = out;
            }
            None => self.issue(
                &path,
                format!("expected an array of strings, found {}", v.type_str()),
            ),
        }
    }
}

impl ServerConfig {
    /// Parses config text, applying defaults for missing keys; returns every problem found.
    pub fn from_toml(text: &str) -> Result<ServerConfig, Vec<ConfigIssue>> {
        let root: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                return Err(vec![ConfigIssue {
                    key: "(file)".to_string(),
                    message: format!("not valid TOML: {e}"),
                }]);
            }
        };
        let mut issues = Vec::new();
        let mut cfg = ServerConfig::default();
        let mut r = Reader {
            issues: &mut issues,
        };
        r.unknown_keys(
            "",
            &root,
            &["ingest", "gateway", "engine", "journal", "telemetry", "bus"],
        );

        if let Some(t) = r.section(&root, "ingest") {
            let s = "ingest";
            r.unknown_keys(
                s,
                t,
                &[
                    "listen",
                    "max_connections",
                    "rate_per_device",
                    "burst_per_device",
                    "keep_alive_s",
                    "idle_timeout_s",
                    "tls_cert",
                    "tls_key",
                    "tls_session_cache",
                    "zero_rtt",
                ],
            );
            let c = &mut cfg.ingest;
            if let Some(v) = r.int(t, s, "tls_session_cache", 0, 10_000_000) {
                c.tls_session_cache = v as usize;
            }
            r.boolean(t, s, "zero_rtt", &mut c.zero_rtt);
            r.addr(t, s, "listen", &mut c.listen);
            if let Some(v) = r.int(t, s, "max_connections", 1, 1_000_000) {
                c.max_connections = v as usize;
            }
            if let Some(v) = r.float(t, s, "rate_per_device", 0.01, 1000.0) {
                c.rate_per_device = v;
            }
            if let Some(v) = r.int(t, s, "burst_per_device", 1, 1_000_000) {
                c.burst_per_device = v as u32;
            }
            if let Some(v) = r.int(t, s, "keep_alive_s", 1, 600) {
                c.keep_alive_s = v as u64;
            }
            if let Some(v) = r.int(t, s, "idle_timeout_s", 2, 3600) {
                c.idle_timeout_s = v as u64;
            }
            r.opt_path(t, s, "tls_cert", &mut c.tls_cert);
            r.opt_path(t, s, "tls_key", &mut c.tls_key);
            if c.tls_cert.is_some() != c.tls_key.is_some() {
                r.issue(
                    "ingest.tls_cert",
                    "tls_cert and tls_key must be given together",
                );
            }
            if c.keep_alive_s >= c.idle_timeout_s {
                r.issue(
                    "ingest.keep_alive_s",
                    format!(
                        "keep-alive ({} s) must be shorter than the idle timeout ({} s)",
                        c.keep_alive_s, c.idle_timeout_s
                    ),
                );
            }
        }

        if let Some(t) = r.section(&root, "gateway") {
            let s = "gateway";
            r.unknown_keys(
                s,
                t,
                &[
                    "listen",
                    "admin_token",
                    "share_secret",
                    "metrics_token",
                    "cors_origins",
                    "max_body_bytes",
                    "requests_per_minute_per_ip",
                    "websockets_per_ip",
                    "client_byte_budget",
                    "tile_url",
                ],
            );
            let c = &mut cfg.gateway;
            r.addr(t, s, "listen", &mut c.listen);
            r.string(t, s, "admin_token", &mut c.admin_token);
            r.string(t, s, "share_secret", &mut c.share_secret);
            r.string(t, s, "metrics_token", &mut c.metrics_token);
            r.strings(t, s, "cors_origins", &mut c.cors_origins);
            if let Some(v) = r.int(t, s, "max_body_bytes", 1024, 512 * 1024 * 1024) {
                c.max_body_bytes = v as usize;
            }
            if let Some(v) = r.int(t, s, "requests_per_minute_per_ip", 1, 10_000_000) {
                c.requests_per_minute_per_ip = v as u32;
            }
            if let Some(v) = r.int(t, s, "websockets_per_ip", 1, 1_000_000) {
                c.websockets_per_ip = v as u32;
            }
            if let Some(v) = r.int(t, s, "client_byte_budget", 4096, 1 << 30) {
                c.client_byte_budget = v as usize;
            }
            let mut tile = c.tile_url.clone().unwrap_or_default();
            r.string(t, s, "tile_url", &mut tile);
            c.tile_url = (!tile.is_empty()).then_some(tile);
            if !c.admin_token.is_empty() && c.admin_token.len() < 16 {
                r.issue(
                    "gateway.admin_token",
                    "too short: use at least 16 characters (or leave empty to generate one at start)",
                );
            }
            if !c.share_secret.is_empty() && c.share_secret.len() < 16 {
                r.issue(
                    "gateway.share_secret",
                    "too short: use at least 16 characters (or leave empty for a random one per run)",
                );
            }
            if !c.metrics_token.is_empty() && c.metrics_token.len() < 16 {
                r.issue(
                    "gateway.metrics_token",
                    "too short: use at least 16 characters (or leave empty for an open endpoint)",
                );
            }
        }

        if let Some(t) = r.section(&root, "engine") {
            let s = "engine";
            r.unknown_keys(s, t, &["tick_ms", "races_dir"]);
            if let Some(v) = r.int(t, s, "tick_ms", 50, 60_000) {
                cfg.engine.tick_ms = v as u64;
            }
            r.path(t, s, "races_dir", &mut cfg.engine.races_dir);
        }

        if let Some(t) = r.section(&root, "journal") {
            let s = "journal";
            r.unknown_keys(
                s,
                t,
                &[
                    "dir",
                    "segment_mib",
                    "group_commit_ms",
                    "fsync",
                    "retention_days",
                ],
            );
            let c = &mut cfg.journal;
            r.path(t, s, "dir", &mut c.dir);
            if let Some(v) = r.int(t, s, "segment_mib", 1, 4096) {
                c.segment_mib = v as u64;
            }
            if let Some(v) = r.int(t, s, "group_commit_ms", 0, 1000) {
                c.group_commit_ms = v as u64;
            }
            r.boolean(t, s, "fsync", &mut c.fsync);
            if let Some(v) = r.int(t, s, "retention_days", 0, 36_500) {
                c.retention_days = v as u64;
            }
        }

        if let Some(t) = r.section(&root, "bus") {
            let s = "bus";
            r.unknown_keys(s, t, &["journal", "replicas", "lease_ttl_ms"]);
            let mut kind = String::new();
            r.string(t, s, "journal", &mut kind);
            match kind.as_str() {
                "" => {}
                "local" => cfg.bus.journal = JournalBackendKind::Local,
                "jetstream" => cfg.bus.journal = JournalBackendKind::JetStream,
                other => r.issue(
                    "bus.journal",
                    format!("{other:?} is not a journal (expected \"local\" or \"jetstream\")"),
                ),
            }
            if let Some(v) = r.int(t, s, "replicas", 1, 5) {
                cfg.bus.replicas = v as usize;
            }
            if let Some(v) = r.int(t, s, "lease_ttl_ms", 500, 600_000) {
                cfg.bus.lease_ttl_ms = v as u64;
            }
        }

        if let Some(t) = r.section(&root, "telemetry") {
            let s = "telemetry";
            r.unknown_keys(s, t, &["log_format", "log_filter", "engine_metrics_listen"]);
            if t.contains_key("engine_metrics_listen") {
                let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
                r.addr(t, s, "engine_metrics_listen", &mut addr);
                cfg.telemetry.engine_metrics_listen = Some(addr);
            }
            let mut fmt = String::new();
            r.string(t, s, "log_format", &mut fmt);
            match fmt.as_str() {
                "" => {}
                "pretty" => cfg.telemetry.log_format = LogFormat::Pretty,
                "json" => cfg.telemetry.log_format = LogFormat::Json,
                other => r.issue(
                    "telemetry.log_format",
                    format!("{other:?} is not a log format (expected \"pretty\" or \"json\")"),
                ),
            }
            r.string(t, s, "log_filter", &mut cfg.telemetry.log_filter);
        }

        if cfg.ingest.listen.port() != 0 && cfg.ingest.listen == cfg.gateway.listen {
            issues.push(ConfigIssue {
                key: "gateway.listen".to_string(),
                message: "same address as ingest.listen".to_string(),
            });
        }
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(issues)
        }
    }

    /// Reads a config file, then applies `FLEVUM_*` environment overrides.
    pub fn load(path: &Path) -> Result<ServerConfig, Vec<ConfigIssue>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigIssue {
                key: "(file)".to_string(),
                message: format!("cannot read {}: {e}", path.display()),
            }]
        })?;
        let mut cfg = Self::from_toml(&text)?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies overrides: `FLEVUM_ADMIN_TOKEN`, `FLEVUM_SHARE_SECRET`, `FLEVUM_METRICS_TOKEN`,
    /// `FLEVUM_GATEWAY_LISTEN`, `FLEVUM_INGEST_LISTEN`,
    /// `FLEVUM_JOURNAL_DIR`, `FLEVUM_LOG` (filter), `FLEVUM_LOG_FORMAT`.
    pub fn apply_env(
        &mut self,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let Some(v) = get("FLEVUM_ADMIN_TOKEN") {
            self.gateway.admin_token = v;
        }
        if let Some(v) = get("FLEVUM_SHARE_SECRET") {
            self.gateway.share_secret = v;
        }
        if let Some(v) = get("FLEVUM_METRICS_TOKEN") {
            self.gateway.metrics_token = v;
        }
        for (var, slot) in [
            ("FLEVUM_GATEWAY_LISTEN", &mut self.gateway.listen),
            ("FLEVUM_INGEST_LISTEN", &mut self.ingest.listen),
        ] {
            if let Some(v) = get(var) {
                match v.parse() {
                    Ok(a) => *slot = a,
                    Err(e) => issues.push(ConfigIssue {
                        key: var.to_string(),
                        message: format!("{v:?} is not a socket address ({e})"),
                    }),
                }
            }
        }
        if let Some(v) = get("FLEVUM_JOURNAL_DIR") {
            self.journal.dir = PathBuf::from(v);
        }
        if let Some(v) = get("FLEVUM_LOG") {
            self.telemetry.log_filter = v;
        }
        if let Some(v) = get("FLEVUM_LOG_FORMAT") {
            match v.as_str() {
                "pretty" => self.telemetry.log_format = LogFormat::Pretty,
                "json" => self.telemetry.log_format = LogFormat::Json,
                _ => issues.push(ConfigIssue {
                    key: "FLEVUM_LOG_FORMAT".to_string(),
                    message: format!("{v:?} is not \"pretty\" or \"json\""),
                }),
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid() {
        let text = include_str!("../configs/flevum.toml");
        let cfg = ServerConfig::from_toml(text).unwrap();
        assert_eq!(cfg.engine.tick_ms, 1000);
    }

    #[test]
    fn shipped_cluster_config_uses_the_jetstream_journal() {
        let cfg = ServerConfig::from_toml(include_str!("../configs/flevum-cluster.toml")).unwrap();
        assert_eq!(cfg.bus.journal, JournalBackendKind::JetStream);
        assert_eq!(cfg.bus.replicas, 3);
    }

    #[test]
    fn the_bus_section_selects_the_jetstream_journal() {
        let cfg = ServerConfig::from_toml(
            "[bus]\njournal = \"jetstream\"\nreplicas = 3\nlease_ttl_ms = 2000\n",
        )
        .unwrap();
        assert_eq!(cfg.bus.journal, JournalBackendKind::JetStream);
        assert_eq!((cfg.bus.replicas, cfg.bus.lease_ttl_ms), (3, 2000));
        let issues =
            ServerConfig::from_toml("[bus]\njournal = \"s3\"\nreplicas = 0\n").unwrap_err();
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["bus.journal", "bus.replicas"], "{issues:?}");
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(
            ServerConfig::from_toml("").unwrap(),
            ServerConfig::default()
        );
    }

    #[test]
    fn four_mistakes_are_all_reported() {
        let text = r#"
            [gateway]
            listen = "not-an-address"
            share_secret = "short"
            [engine]
            tick_ms = 0
            [journal]
            fsynk = true
        "#;
        let issues = ServerConfig::from_toml(text).unwrap_err();
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gateway.listen",
                "gateway.share_secret",
                "engine.tick_ms",
                "journal.fsynk"
            ],
            "{issues:?}"
        );
    }

    #[test]
    fn wrong_types_are_reported_with_the_found_type() {
        let issues = ServerConfig::from_toml("[ingest]\nmax_connections = \"many\"\n").unwrap_err();
        assert_eq!(issues.len(), 1);
        assert!(
            issues[0]
                .message
                .contains("expected an integer, found string")
        );
    }

    #[test]
    fn env_overrides_apply_and_report_errors() {
        let mut cfg = ServerConfig::default();
        cfg.apply_env(|k| (k == "FLEVUM_JOURNAL_DIR").then(|| "/tmp/j".to_string()))
            .unwrap();
        assert_eq!(cfg.journal.dir, PathBuf::from("/tmp/j"));
        let err = cfg
            .apply_env(|k| (k == "FLEVUM_GATEWAY_LISTEN").then(|| "nope".to_string()))
            .unwrap_err();
        assert_eq!(err[0].key, "FLEVUM_GATEWAY_LISTEN");
    }
}
