//! Measures the journal once: append throughput with fsync at batch sizes 1, 64 and 1024 from
//! concurrent appenders, then replay speed of 10,000,000 fix entries.
//!
//! Usage: `cargo run --release -p flevum-engine --example journal_throughput [DIR] [REPLAY_N]`
//! (DIR defaults to the system temp directory; a temporary subdirectory is removed afterwards).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flevum_engine::journal::{Journal, JournalConfig, JournalEntry, replay};
use flevum_protocol::PositionRecord;

/// Concurrent appenders in the append benchmark (each awaits its append before the next).
const APPENDERS: u32 = 16;
/// How long each append measurement runs.
const APPEND_RUN: Duration = Duration::from_secs(4);

fn fix(rider_id: u32, seq: u32) -> JournalEntry {
    JournalEntry::Fix {
        arrival_ms: 1_764_082_245_000 + i64::from(seq) * 1000,
        rider_id,
        record: PositionRecord::from_degrees(
            seq,
            1_764_082_245_000 + i64::from(seq) * 1000,
            52.0 + f64::from(seq % 10_000) * 1e-5,
            5.0,
            Some(12.0),
            Some(9.0),
            Some(180.0),
            Some(3.0),
        ),
    }
}

async fn append_run(cfg: &JournalConfig, batch: u32, appenders: u32) -> Result<(), Box<dyn Error>> {
    let race = format!("append-b{batch}-a{appenders}");
    let (j, _) = Journal::open(cfg, &race)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for rider in 0..appenders {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let mut seq = 1u32;
            let mut appends = 0u64;
            while start.elapsed() < APPEND_RUN {
                let entries = (0..batch).map(|i| fix(rider, seq + i)).collect();
                j.append(entries).await?;
                seq += batch;
                appends += 1;
            }
            Ok::<u64, flevum_engine::journal::JournalError>(appends)
        }));
    }
    let mut appends = 0;
    for t in tasks {
        appends += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = j.stats();
    println!(
        "append batch={batch:>4} appenders={appenders:>2}: {:>10.0} entries/s, {:>8.0} appends/s, \
         {} commits, {} fsyncs, {:.1} appends/commit, last commit {:.2} ms",
        s.entries as f64 / secs,
        appends as f64 / secs,
        s.commits,
        s.fsyncs,
        appends as f64 / s.commits.max(1) as f64,
        s.last_commit_latency.as_secs_f64() * 1e3,
    );
    Ok(())
}

async fn fill(cfg: &JournalConfig, race: &str, n: u64) -> Result<(), Box<dyn Error>> {
    let (j, _) = Journal::open(cfg, race)?;
    let chunk = 65_536u64;
    let mut written = 0u64;
    let start = Instant::now();
    while written < n {
        let k = chunk.min(n - written);
        let entries = (0..k)
            .map(|i| fix(((written + i) % 200) as u32, (written + i) as u32 + 1))
            .collect();
        j.append(entries).await?;
        written += k;
        if written % (1 << 20) < chunk {
            print!(
                "\rwriting replay journal: {written}/{n} entries ({:.1} s)",
                start.elapsed().as_secs_f64()
            );
            std::io::stdout().flush()?;
        }
    }
    println!(
        "\rwrote {n} entries ({} bytes, {} segments) in {:.1} s            ",
        j.stats().bytes,
        j.stats().segments,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    let replay_n: u64 = args.next().map_or(Ok(10_000_000), |s| s.parse())?;
    let tmp = tempfile::tempdir_in(&base)?;
    let cfg = JournalConfig {
        dir: tmp.path().to_path_buf(),
        fsync: true,
        ..JournalConfig::default()
    };
    println!("journal in {}", tmp.path().display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        append_run(&cfg, 1, 1).await?;
        for batch in [1, 64, 1024] {
            append_run(&cfg, batch, APPENDERS).await?;
        }
        fill(&cfg, "replay", replay_n).await?;
        Ok::<(), Box<dyn Error>>(())
    })?;
    for round in 0..2 {
        let start = Instant::now();
        let mut n = 0u64;
        let mut checksum = 0i64;
        let st = replay(&cfg, "replay", |e| {
            n += 1;
            if let JournalEntry::Fix { record, .. } = e {
                checksum = checksum.wrapping_add(i64::from(record.lat_e7));
            }
            if n.is_multiple_of(2_000_000) {
                print!("\rreplaying: {n} entries");
                let _ = std::io::stdout().flush();
            }
        })?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "\rreplay {} ({}): {} entries, {} MB in {:.2} s = {:.0} entries/s ({:.0} MB/s) [checksum {checksum}]",
            round + 1,
            if round == 0 {
                "just written, in page cache"
            } else {
                "second pass"
            },
            st.entries,
            st.bytes / 1_000_000,
            secs,
            st.entries as f64 / secs,
            st.bytes as f64 / 1e6 / secs
        );
    }
    Ok(())
}
