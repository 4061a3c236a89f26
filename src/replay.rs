//! `flevum replay RACE --speed N`: re-runs a finished race from its journal through a fresh
//! engine, on a race clock N times faster than the wall clock, and serves it to fans through the
//! gateway like a live race. Reads the journal; never writes to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flevum_engine::core::AdminCommand;
use flevum_engine::ingest::TokenStore;
use flevum_engine::journal::{self, JournalConfig, JournalEntry};
use flevum_engine::shard::{ShardClock, ShardConfig};
use flevum_gateway::LiveHub;
use flevum_protocol::PositionRecord;
use tokio::sync::watch;
use tracing::warn;

use crate::config::ServerConfig;
use crate::host::EngineHost;
use crate::serve::{load_races, start_gateway, wait_for_signal};

/// Replays `race_id` at `speed` and serves it until Ctrl-C.
pub async fn replay(cfg: ServerConfig, race_id: &str, speed: f64) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0 && speed <= 1000.0) {
        bail!("--speed must be above 0 and at most 1000, not {speed}");
    }
    let data_dir = cfg.journal.dir.parent().map_or_else(
        || std::path::PathBuf::from("."),
        std::path::Path::to_path_buf,
    );
    let (config, course) = load_races(&cfg.engine.races_dir, &data_dir.join("uploads"))?
        .into_iter()
        .find(|(c, _)| c.id == race_id)
        .with_context(|| {
            format!(
                "race {race_id} is neither in {} nor among uploaded races",
                cfg.engine.races_dir.display()
            )
        })?;
    let source = JournalConfig {
        dir: cfg.journal.dir.clone(),
        ..JournalConfig::default()
    };
    let mut entries = Vec::new();
    let stats = journal::replay(&source, race_id, |e| entries.push(e))
        .with_context(|| format!("reading the journal of {race_id}"))?;
    if entries.is_empty() {
        bail!(
            "race {race_id} has no journal entries in {}",
            cfg.journal.dir.display()
        );
    }
    let time_of = |e: &JournalEntry| match e {
        JournalEntry::Fix { arrival_ms, .. } => *arrival_ms,
        JournalEntry::Admin { at_ms, .. } => *at_ms,
    };
    let first = entries.iter().map(time_of).min().unwrap_or(config.start_ms);
    let last = entries.iter().map(time_of).max().unwrap_or(first);
    // Saturating: a damaged journal's absurd time must not panic the command.
    let origin_ms = first.min(config.start_ms).saturating_sub(10_000);
    eprintln!(
        "flevum: replaying {race_id}: {} entries over {:.0} min of race time at {speed}× (about {:.1} min)",
        stats.entries,
        last.saturating_sub(origin_ms) as f64 / 60_000.0,
        last.saturating_sub(origin_ms) as f64 / 60_000.0 / speed
    );

    let prometheus = flevum_gateway::install_prometheus().context("metrics recorder")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // The replay runs its own engine on a scratch journal: the original stays untouched.
    let scratch = tempfile::Builder::new()
        .prefix("flevum-replay-")
        .tempdir()?;
    let clock = ShardClock::Scaled {
        origin_ms,
        speed,
        since: Instant::now(),
    };
    let shard = ShardConfig {
        journal: JournalConfig {
            dir: scratch.path().join("journal"),
            fsync: false,
            ..JournalConfig::default()
        },
        tick_interval: Duration::from_millis(cfg.engine.tick_ms.max(50)),
        command_queue: 4096,
        clock,
    };
    let hub = LiveHub::new(Default::default());
    let host = Arc::new(EngineHost::new(
        shard,
        scratch.path().to_path_buf(),
        hub.clone(),
        Arc::new(TokenStore::new()),
        stop_rx.clone(),
    ));
    host.open(config, course).context("opening the replay")?;
    let (http_addr, gateway) = start_gateway(&cfg, hub, host.clone(), prometheus, &stop_rx).await?;
    eprintln!("flevum: watch the replay at http://{http_addr}/races/{race_id}");
    host.set_ready();

    let handle = host
        .race(race_id)
        .context("the replayed race is not open")?;
    let feeder = tokio::spawn(async move {
        let total = entries.len();
        let mut next = 0;
        let mut last_progress = Instant::now();
        while next < total {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = clock.now_ms();
            let mut fixes: BTreeMap<u32, Vec<PositionRecord>> = BTreeMap::new();
            while next < total && time_of(&entries[next]) <= now {
                match &entries[next] {
                    JournalEntry::Fix {
                        rider_id, record, ..
                    } => fixes.entry(*rider_id).or_default().push(*record),
                    JournalEntry::Admin { command_json, .. } => {
                        match serde_json::from_str::<AdminCommand>(command_json) {
                            Ok(cmd) => {
                                let _ = handle.admin(cmd).await;
                            }
                            Err(e) => warn!("skipping an unreadable admin entry: {e}"),
                        }
                    }
                }
                next += 1;
            }
            for (rider, records) in fixes {
                if let Err(e) = handle.submit(rider, records).await {
                    warn!("replay stopped: {e}");
                    return;
                }
            }
            if last_progress.elapsed() >= Duration::from_secs(5) {
                last_progress = Instant::now();
                eprintln!(
                    "flevum: replay {:.0} % ({next} of {total} entries)",
                    next as f64 * 100.0 / total as f64
                );
            }
        }
        eprintln!("flevum: replay complete; still serving (Ctrl-C stops)");
    });

    wait_for_signal().await;
    let _ = stop_tx.send(true);
    feeder.abort();
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    drop(host);
    Ok(())
}
