//! `flevum-load recovery`: writes a journal of N fixes (riders moving along a real course) and
//! measures (1) the raw journal replay and (2) a full engine recovery — `open_race`, which
//! replays the journal into the race core (matching, standings) before the shard starts.
//!
//! Runs the engine library in this process (no server); the journal lives in a throwaway
//! directory that is removed afterwards unless `--keep`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use flevum_engine::core::race::config::RiderConfig;
use flevum_engine::core::{CourseIndex, RaceConfig};
use flevum_engine::journal::{Journal, JournalConfig, JournalEntry, replay};
use flevum_engine::shard::{FramePublisher, ShardConfig, open_race};
use flevum_protocol::{Alert, Delta, Snapshot};
use serde_json::json;

use crate::report::{Report, wall_us};
use crate::setup::CourseMotion;

/// Options of `recovery`.
#[derive(Debug, Clone, Args)]
pub struct RecoveryArgs {
    /// Fix entries in the journal (≤ 50,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub fixes: u64,
    /// Riders the fixes belong to.
    #[arg(long, default_value_t = 200)]
    pub riders: u32,
    /// GPX course.
    #[arg(
        long,
        default_value = "../shared/data/real/course_ragbrai_day4_gravel_128km.gpx"
    )]
    pub course: PathBuf,
    /// Parent directory for the throwaway journal.
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Also run the full engine recovery (`open_race`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub engine: bool,
    /// Keep the journal directory.
    #[arg(long)]
    pub keep: bool,
    /// JSON report file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Drops frames: recovery is measured without a gateway.
struct NoPublisher;

impl FramePublisher for NoPublisher {
    fn snapshot(&self, _: Snapshot) {}
    fn delta(&self, _: Delta) {}
    fn alert(&self, _: &str, _: Alert) {}
}

/// Runs the scenario.
pub async fn run(a: RecoveryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.fixes <= 50_000_000, "--fixes ≤ 50,000,000");
    anyhow::ensure!(a.riders >= 1 && a.riders <= 20_000, "--riders 1..=20000");
    let motion = CourseMotion::load(&a.course)?;
    let root = a
        .dir
        .join(format!("flevum-load-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let cfg = JournalConfig {
        dir: root.join("journal"),
        segment_bytes: 64 * 1024 * 1024,
        commit_interval: Duration::from_millis(2),
        fsync: true,
    };
    let race_id = "recovery";
    // Fixes at 1 Hz per rider, ending now (so they pass the engine's time checks).
    let per_rider = a.fixes.div_ceil(u64::from(a.riders));
    let now_ms = wall_us() / 1000;
    let start_ms = now_ms - per_rider as i64 * 1000 - 60_000;
    let write_started = Instant::now();
    {
        let (j, _) = Journal::open(&cfg, race_id)?;
        let chunk = 65_536u64;
        let mut written = 0u64;
        let mut last_print = Instant::now();
        while written < a.fixes {
            let k = chunk.min(a.fixes - written);
            let entries = (written..written + k)
                .map(|i| {
                    let rider = (i % u64::from(a.riders)) as u32 + 1;
                    let seq = (i / u64::from(a.riders)) as u32 + 1;
                    let t = start_ms + i64::from(seq) * 1000;
                    JournalEntry::Fix {
                        arrival_ms: t + 150,
                        rider_id: rider,
                        record: motion.fix(rider, seq, t, start_ms),
                    }
                })
                .collect();
            j.append(entries).await?;
            written += k;
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                eprintln!("[recovery] writing journal {written}/{}", a.fixes);
            }
        }
    }
    let write_s = write_started.elapsed().as_secs_f64();
    let bytes: u64 = std::fs::read_dir(cfg.dir.join(race_id))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);

    let mut r = Report::new(
        "recovery",
        json!({"fixes": a.fixes, "riders": a.riders, "course": a.course, "fsync": true}),
    );
    r.set("journal_bytes", bytes);
    r.set("write_s", (write_s * 100.0).round() / 100.0);
    let mut best = 0.0f64;
    for pass in 1..=2 {
        let t = Instant::now();
        let mut n = 0u64;
        let mut check = 0i64;
        let st = replay(&cfg, race_id, |e| {
            n += 1;
            if let JournalEntry::Fix { record, .. } = e {
                check = check.wrapping_add(i64::from(record.lat_e7));
            }
        })?;
        let secs = t.elapsed().as_secs_f64();
        let rate = st.entries as f64 / secs;
        best = best.max(rate);
        eprintln!(
            "[recovery] journal replay pass {pass}: {} entries in {secs:.2} s = {rate:.0}/s",
            st.entries
        );
        r.set(
            &format!("journal_replay_pass{pass}_s"),
            (secs * 1000.0).round() / 1000.0,
        );
        r.set(
            &format!("journal_replay_pass{pass}_fixes_per_s"),
            rate.round(),
        );
    }
    r.target(
        "journal replay (decode + checksum, page cache warm)",
        "≥ 1,000,000 fixes/s",
        format!("{best:.0} fixes/s"),
        best >= 1_000_000.0,
    );
    if a.engine {
        let riders = (1..=a.riders)
            .map(|i| RiderConfig {
                id: i,
                bib: i.to_string(),
                name: format!("Rider {i}"),
                team: String::new(),
                device_id: format!("dev-{i}"),
                device_token_sha256: None,
            })
            .collect();
        let race = RaceConfig::new(race_id, "Recovery", start_ms, riders);
        let shard = ShardConfig {
            journal: cfg.clone(),
            tick_interval: Duration::from_millis(1000),
            command_queue: 4096,
            clock: Default::default(),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let t = Instant::now();
        let (_handle, report, task) = open_race(
            &shard,
            race,
            CourseIndex::new(motion.course.clone()),
            Arc::new(NoPublisher),
            async move {
                let _ = stop_rx.await;
            },
        )?;
        let secs = t.elapsed().as_secs_f64();
        let rate = report.fixes as f64 / secs;
        eprintln!(
            "[recovery] engine open_race: {} fixes in {secs:.2} s = {rate:.0}/s",
            report.fixes
        );
        r.set("engine_recovery_s", (secs * 1000.0).round() / 1000.0);
        r.set("engine_recovery_fixes", report.fixes);
        r.set("engine_recovery_fixes_per_s", rate.round());
        r.target(
            "engine recovery (open_race: replay into the race core)",
            "≥ 1,000,000 fixes/s",
            format!("{rate:.0} fixes/s"),
            rate >= 1_000_000.0,
        );
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    r.notes.push(
        "journal written with fsync on in 65,536-entry appends; replay runs right after, so the \
         segments are in the page cache (cold-cache replay needs root to drop caches)"
            .into(),
    );
    if !a.keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    r.finish(a.out.as_deref())
}
