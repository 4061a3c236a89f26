//! Reports of a load run: latency histograms (hdrhistogram, microseconds), the JSON report file
//! and the human table printed at the end, plus the once-a-second progress line.
//!
//! Owns formatting and merging only (histograms travel between worker processes as value/count
//! pairs); it does not measure anything itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency kept in a histogram: 10 minutes in microseconds (larger values saturate).
const MAX_US: u64 = 600_000_000;

/// A latency histogram in microseconds, safe to share between tasks.
pub struct Latency {
    /// The histogram; a mutex is cheap next to a network round trip per value.
    inner: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

/// Histogram contents as (value µs, count) pairs, for passing between processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistDump {
    /// Recorded values and how often each was recorded.
    pub values: Vec<(u64, u64)>,
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// 99.9th percentile, ms.
    pub p999: f64,
    /// Largest value, ms.
    pub max: f64,
    /// Mean, ms.
    pub mean: f64,
}

impl Latency {
    /// An empty histogram (1 µs .. 10 min, 3 significant digits).
    pub fn new() -> Latency {
        Latency {
            inner: Mutex::new(new_hist()),
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(MAX_US)) as u64);
    }

    /// Records one value in microseconds (clamped to the histogram's range).
    pub fn record_us(&self, us: u64) {
        let mut h = self.lock();
        h.saturating_record(us.clamp(1, MAX_US));
    }

    /// Adds the values of a dump (from another process).
    pub fn merge(&self, dump: &HistDump) {
        let mut h = self.lock();
        for &(v, n) in &dump.values {
            let _ = h.record_n(v.clamp(1, MAX_US), n);
        }
    }

    /// Current percentiles.
    pub fn percentiles(&self) -> Percentiles {
        percentiles(&self.lock())
    }

    /// The values, for another process to merge.
    pub fn dump(&self) -> HistDump {
        let h = self.lock();
        HistDump {
            values: h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Takes the values recorded so far and starts empty (for per-step figures).
    pub fn take(&self) -> Percentiles {
        let mut h = self.lock();
        let p = percentiles(&h);
        h.reset();
        p
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. MAX_US at 3 significant digits is a valid constant range.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

/// One target of the issue and whether the run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What is measured, e.g. "send→ack p99".
    pub name: String,
    /// The target as text, e.g. "≤ 20 ms".
    pub target: String,
    /// The measured value as text.
    pub measured: String,
    /// Whether the target was met.
    pub met: bool,
}

/// One correctness check of a run (loss, failures, resyncs; never a timing), enforced by
/// `--assert`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    /// What must hold, e.g. "every pushed fix acknowledged".
    pub name: String,
    /// What was seen, as text.
    pub measured: String,
    /// Whether it held.
    pub ok: bool,
}

/// The report of one scenario run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name (`devices`, `fans`, `e2e`, `saturate`, `udp-probe`, `recovery`).
    pub scenario: String,
    /// When the report was made (the end of the run), UTC, ISO 8601.
    pub date_utc: String,
    /// The command line that produced it.
    pub command: String,
    /// Parameters of the run.
    pub params: serde_json::Value,
    /// Counters and rates.
    pub results: BTreeMap<String, serde_json::Value>,
    /// Latency percentiles by name, ms.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Targets of the issue and whether they were met.
    pub targets: Vec<Target>,
    /// Correctness checks (no timings); `--assert` fails the run when one does not hold.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Caveats: what is measured exactly, what was smaller than asked.
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report for `scenario`, stamped with the time and command line.
    pub fn new(scenario: &str, params: serde_json::Value) -> Report {
        let mut results = BTreeMap::new();
        // Other work on this shared machine shows up here.
        results.insert("loadavg_at_report".to_string(), loadavg().into());
        Report {
            scenario: scenario.to_string(),
            date_utc: utc_now(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            params,
            results,
            latency_ms: BTreeMap::new(),
            targets: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Sets a result value.
    pub fn set(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.results.insert(key.to_string(), value.into());
    }

    /// Adds a target line.
    pub fn target(&mut self, name: &str, target: &str, measured: String, met: bool) {
        self.targets.push(Target {
            name: name.to_string(),
            target: target.to_string(),
            measured,
            met,
        });
    }

    /// Adds a correctness check.
    pub fn check(&mut self, name: &str, measured: String, ok: bool) {
        self.checks.push(Check {
            name: name.to_string(),
            measured,
            ok,
        });
    }

    /// The checks that did not hold, one line each.
    pub fn failed_checks(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.measured))
            .collect()
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = format!("== flevum-load {} ({}) ==\n", self.scenario, self.date_utc);
        for (k, v) in &self.results {
            s.push_str(&format!("  {k:<34} {v}\n"));
        }
        if !self.latency_ms.is_empty() {
            s.push_str(&format!(
                "  {:<30} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
            ));
            for (k, p) in &self.latency_ms {
                s.push_str(&format!(
                    "  {k:<30} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                    p.count, p.p50, p.p90, p.p99, p.p999, p.max
                ));
            }
        }
        for t in &self.targets {
            s.push_str(&format!(
                "  [{}] {}: target {}, measured {}\n",
                if t.met { "met" } else { "MISSED" },
                t.name,
                t.target,
                t.measured
            ));
        }
        for c in &self.checks {
            s.push_str(&format!(
                "  [{}] {}: {}\n",
                if c.ok { "ok" } else { "FAILED" },
                c.name,
                c.measured
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
        s
    }

    /// Prints the table to stdout and writes the JSON file when asked.
    pub fn finish(mut self, out: Option<&Path>) -> anyhow::Result<()> {
        self.set("loadavg_at_end", loadavg());
        print!("{}", self.table());
        if let Some(path) = out {
            std::fs::write(path, serde_json::to_vec_pretty(&self)?)?;
            eprintln!("report written to {}", path.display());
        }
        Ok(())
    }

    /// [`Report::finish`], then, with `assert`, an error naming every check that did not hold
    /// (the process exits non-zero). Timing targets never fail a run.
    pub fn finish_asserting(self, out: Option<&Path>, assert: bool) -> anyhow::Result<()> {
        let failed = self.failed_checks();
        let (scenario, total) = (self.scenario.clone(), self.checks.len());
        self.finish(out)?;
        if !assert {
            return Ok(());
        }
        if failed.is_empty() {
            eprintln!("flevum-load {scenario} --assert: all {total} checks held");
            return Ok(());
        }
        anyhow::bail!(
            "flevum-load {scenario} --assert: {} of {total} checks failed:\n  - {}",
            failed.len(),
            failed.join("\n  - ")
        )
    }
}

/// Wall clock in microseconds since the Unix epoch.
pub fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = wall_us() / 1_000_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Prints `line()` on stderr once a second until the returned guard is dropped.
pub fn progress(
    label: &'static str,
    mut line: impl FnMut() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!(
                "[{label} {:>5.0}s] {}",
                start.elapsed().as_secs_f64(),
                line()
            );
        }
    })
}

/// `/proc/loadavg` (1, 5 and 15 minute load averages), empty if unreadable.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads) a process has used so far, seconds, from
/// `/proc/<pid>/stat` (`None` = this process); `None` if unreadable.
pub fn process_cpu_s(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state); utime and
    // stime are fields 14 and 15.
    let mut fields = text.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_read_and_grows() {
        let before = process_cpu_s(None).expect("/proc/self/stat readable");
        // Burn a little CPU (a few tens of ms): the counter must not go backwards.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = process_cpu_s(None).expect("/proc/self/stat readable");
        assert!(before >= 0.0 && after >= before, "{before} → {after}");
        assert_eq!(process_cpu_s(Some(u32::MAX)), None);
    }

    #[test]
    fn percentiles_and_merge() {
        let a = Latency::new();
        for ms in 1..=100u64 {
            a.record(Duration::from_millis(ms));
        }
        let p = a.percentiles();
        assert_eq!(p.count, 100);
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
        let b = Latency::new();
        b.merge(&a.dump());
        b.merge(&a.dump());
        assert_eq!(b.percentiles().count, 200);
        assert!((b.percentiles().p50 - 50.0).abs() < 0.1);
        assert_eq!(a.take().count, 100);
        assert_eq!(a.percentiles().count, 0);
    }

    #[test]
    fn report_round_trips_and_dates() {
        let mut r = Report::new("devices", serde_json::json!({"n": 3}));
        r.set("acked", 3);
        r.latency_ms
            .insert("send_ack".into(), Percentiles::default());
        r.target("loss", "= 0", "0".into(), true);
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.results["acked"], 3);
        assert!(back.table().contains("[met] loss"));
        assert_eq!(back.date_utc.len(), 20);
        assert!(back.date_utc.starts_with("20"));
    }

    #[test]
    fn assert_fails_only_on_failed_checks() {
        let mut r = Report::new("devices", serde_json::json!({}));
        r.target("p99", "≤ 20 ms", "900 ms".into(), false);
        r.check("every pushed fix acknowledged", "10 of 10".into(), true);
        // A missed timing target alone does not fail an asserting run.
        assert!(r.clone().finish_asserting(None, true).is_ok());
        r.check("no resyncs", "3 resyncs".into(), false);
        assert!(r.table().contains("[FAILED] no resyncs: 3 resyncs"));
        assert!(r.clone().finish_asserting(None, false).is_ok());
        let err = r.finish_asserting(None, true).unwrap_err().to_string();
        assert!(err.contains("1 of 2 checks failed"), "{err}");
        assert!(err.contains("no resyncs: 3 resyncs"), "{err}");
        assert!(!err.contains("acknowledged"), "{err}");
    }
}
