//! `flevum`: the one binary. Wires the engine, the ingest and the gateway together from config.
//!
//! Holds no race logic: it parses the command line and config files, sets up logging, and hands
//! typed `*Config` structs to the libraries.

#![deny(unsafe_code)]

mod config;
mod engine_metrics;
mod engine_role;
mod gateway_role;
mod host;
mod jetstream_journal;
mod organiser;
mod race_owner;
mod replay;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::ServerConfig;

/// Flevum: live race tracking.
#[derive(Debug, Parser)]
#[command(name = "flevum", version, about)]
struct Cli {
    /// Log format: pretty or json (overrides the config file).
    #[arg(long, global = true, value_parser = ["pretty", "json"])]
    log_format: Option<String>,
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run ingest, engine and gateway in one process (the embedded default).
    Serve {
        /// Server config file.
        #[arg(long, default_value = "configs/flevum.toml")]
        config: PathBuf,
        /// Also run a simulated demo race over real QUIC on loopback.
        #[arg(long)]
        demo: bool,
        /// Riders in the demo race.
        #[arg(long, default_value_t = 40)]
        demo_riders: u32,
        /// Seconds until the demo race starts.
        #[arg(long, default_value_t = 5)]
        demo_start_in: i64,
    },
    /// Run only the engine role (shards, QUIC ingest), joined to gateways by NATS.
    Engine {
        /// NATS URL(s) of the bus, comma separated.
        #[arg(long, env = "FLEVUM_BUS")]
        bus: String,
        /// Server config file (the [engine], [ingest] and [journal] sections apply).
        #[arg(long, default_value = "configs/flevum.toml")]
        config: PathBuf,
        /// Name of this process on the NATS server (monitoring).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run only the gateway role (HTTP, WebSocket fans), joined to engines by NATS.
    Gateway {
        /// NATS URL(s) of the bus, comma separated.
        #[arg(long, env = "FLEVUM_BUS")]
        bus: String,
        /// Server config file (the [gateway] and [journal] sections apply).
        #[arg(long, default_value = "configs/flevum.toml")]
        config: PathBuf,
        /// Name of this process on the NATS server (monitoring).
        #[arg(long)]
        name: Option<String>,
        /// How long the gateway keeps following a race after its last fan left, ms.
        #[arg(long, default_value_t = 30_000)]
        bus_linger_ms: u64,
    },
    /// Simulate a race on a course and print a summary (or drive a server with --connect).
    Simulate {
        /// Course file (GPX).
        #[arg(long)]
        course: PathBuf,
        /// Number of riders.
        #[arg(long, default_value_t = 150)]
        riders: u32,
        /// Seed of the simulation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Send the fixes to a running server's QUIC ingest (ADDR:PORT) instead of an
        /// in-process engine; the race is created and its tokens issued through the organiser API.
        #[arg(long, requires_all = ["pin", "gateway", "admin_token"])]
        connect: Option<std::net::SocketAddr>,
        /// SHA-256 fingerprint of the server's certificate (printed by `flevum serve`).
        #[arg(long)]
        pin: Option<String>,
        /// The server's gateway, for the organiser API (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        gateway: Option<String>,
        /// Organiser admin token of the server.
        #[arg(long, env = "FLEVUM_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Id of the race to create on the server.
        #[arg(long, default_value = "simulated")]
        race_id: String,
        /// Seconds from now until the simulated race starts.
        #[arg(long, default_value_t = 10)]
        start_in: i64,
    },
    /// Re-run a finished race from its journal.
    Replay {
        /// Race id.
        race: String,
        /// Replay speed factor.
        #[arg(long, default_value_t = 10.0)]
        speed: f64,
        /// Server config file (for the journal location).
        #[arg(long, default_value = "configs/flevum.toml")]
        config: PathBuf,
    },
    /// Validate a server config file and list every mistake.
    CheckConfig {
        /// Config file to check.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { path } => check_config(&path),
        Command::Engine { bus, config, name } => report(run_role(
            Role::Engine,
            None,
            &config,
            bus,
            name,
            cli.log_format.as_deref(),
        )),
        Command::Gateway {
            bus,
            config,
            name,
            bus_linger_ms,
        } => report(run_role(
            Role::Gateway,
            Some(std::time::Duration::from_millis(bus_linger_ms)),
            &config,
            bus,
            name,
            cli.log_format.as_deref(),
        )),
        Command::Serve {
            config,
            demo,
            demo_riders,
            demo_start_in,
        } => report(run_serve(
            &config,
            demo.then_some(serve::DemoOptions {
                riders: demo_riders,
                start_in_s: demo_start_in,
            }),
            cli.log_format.as_deref(),
        )),
        Command::Simulate {
            course,
            riders,
            seed,
            connect: None,
            ..
        } => report(simulate(&course, riders, seed)),
        Command::Simulate {
            course,
            riders,
            seed,
            connect: Some(addr),
            pin,
            gateway,
            admin_token,
            race_id,
            start_in,
        } => report(runtime().and_then(|rt| {
            rt.block_on(simulate_connected(SimulateConnected {
                course,
                riders,
                seed,
                addr,
                pin: pin.unwrap_or_default(),
                gateway: gateway.unwrap_or_default(),
                admin_token: admin_token.unwrap_or_default(),
                race_id,
                start_in,
            }))
        })),
        Command::Replay {
            race,
            speed,
            config,
        } => report(run_replay(&config, &race, speed, cli.log_format.as_deref())),
    }
}

/// What `flevum simulate --connect` needs.
struct SimulateConnected {
    /// Course file (GPX), uploaded with the race.
    course: PathBuf,
    /// Riders.
    riders: u32,
    /// Simulation seed.
    seed: u64,
    /// QUIC ingest address.
    addr: std::net::SocketAddr,
    /// Certificate pin.
    pin: String,
    /// Gateway base URL.
    gateway: String,
    /// Admin token.
    admin_token: String,
    /// Race id to create.
    race_id: String,
    /// Seconds until the start.
    start_in: i64,
}

/// `flevum simulate --connect`: creates the race on a running server, issues one token per
/// rider, and rides the simulation in real time through QUIC device clients.
async fn simulate_connected(opts: SimulateConnected) -> anyhow::Result<()> {
    use anyhow::Context;
    use flevum_engine::core::{Course, CourseIndex};
    use flevum_engine::simulator::{SimConfig, Simulation};
    let mut log = ServerConfig::default();
    log.telemetry.log_filter = "info,flevum_protocol::client=warn".into();
    init_tracing(&log);
    let gpx = std::fs::read_to_string(&opts.course)
        .with_context(|| format!("reading {}", opts.course.display()))?;
    let course = Course::from_gpx_str(&gpx).context("loading the course")?;
    let start_ms = flevum_engine::shard::wall_ms() + opts.start_in * 1000;
    let sim = Simulation::new(
        CourseIndex::new(course),
        SimConfig {
            riders: opts.riders.max(1),
            seed: opts.seed,
            start_ms,
            fix_interval_ms: 2_000,
            ..SimConfig::default()
        },
    );
    let mut race = sim.race_config(&opts.race_id, "Simulated race");
    race.course = "uploaded.gpx".into();
    let config_toml = toml::to_string(&race).context("encoding the race config")?;
    organiser::post_json(
        &opts.gateway,
        &opts.admin_token,
        "/v1/admin/races",
        &serde_json::json!({ "action": "create_race", "config_toml": config_toml, "gpx": gpx }),
    )
    .await
    .context("creating the race")?;
    let mut devices = std::collections::BTreeMap::new();
    for rider in &race.riders {
        let answer = organiser::post_json(
            &opts.gateway,
            &opts.admin_token,
            &format!("/v1/admin/races/{}", race.id),
            &serde_json::json!({ "action": "issue_token", "rider_id": rider.id }),
        )
        .await
        .with_context(|| format!("issuing the token of rider {}", rider.id))?;
        let token = answer["token"]
            .as_str()
            .context("the token answer has no token")?
            .to_string();
        devices.insert(rider.id, token);
    }
    eprintln!(
        "simulating {} riders on race {} (starts in {} s): {}/races/{}",
        race.riders.len(),
        race.id,
        opts.start_in,
        opts.gateway.trim_end_matches('/'),
        race.id
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drive = tokio::spawn(serve::drive_devices(
        sim, devices, opts.addr, opts.pin, stop_rx,
    ));
    tokio::select! {
        _ = serve::wait_for_signal() => {}
        _ = async { while !drive.is_finished() { tokio::time::sleep(std::time::Duration::from_millis(500)).await } } => {}
    }
    let _ = stop_tx.send(true);
    let _ = drive.await;
    Ok(())
}

/// Prints an error chain and fails, or succeeds.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flevum: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `flevum simulate`: a simulated race on a course, through the engine, with a summary.
fn simulate(course: &std::path::Path, riders: u32, seed: u64) -> anyhow::Result<()> {
    use anyhow::Context;
    use flevum_engine::core::{Course, CourseIndex};
    use flevum_engine::simulator::{SimConfig, Simulation, run_offline};
    let loaded = Course::from_gpx_file(course)
        .with_context(|| format!("loading course {}", course.display()))?;
    let index = CourseIndex::new(loaded);
    eprintln!(
        "simulating {riders} riders on {:.1} km (seed {seed})…",
        index.course().length_m() / 1000.0
    );
    let config = SimConfig {
        riders: riders.max(1),
        seed,
        ..SimConfig::default()
    };
    let started = std::time::Instant::now();
    let run = run_offline(
        Simulation::new(index, config),
        "simulated",
        "Simulated race",
        1000,
    )?;
    println!("{run}");
    eprintln!(
        "simulated and tracked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One of the split roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `flevum engine`.
    Engine,
    /// `flevum gateway`.
    Gateway,
}

/// `flevum engine` / `flevum gateway`: loads the config like `serve` and runs the role.
fn run_role(
    role: Role,
    linger: Option<std::time::Duration>,
    path: &std::path::Path,
    bus: String,
    name: Option<String>,
    log_format: Option<&str>,
) -> anyhow::Result<()> {
    let cfg = server_config(path, log_format)?;
    init_tracing(&cfg);
    let default_name = match role {
        Role::Engine => "flevum-engine",
        Role::Gateway => "flevum-gateway",
    };
    let mut bus = flevum_bus::BusConfig {
        name: name.unwrap_or_else(|| default_name.to_string()),
        ..flevum_bus::BusConfig::with_url(bus)
    };
    if let Some(linger) = linger {
        bus.linger = linger;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match role {
        Role::Engine => runtime.block_on(engine_role::engine(cfg, bus)),
        Role::Gateway => runtime.block_on(gateway_role::gateway(cfg, bus)),
    }
}

/// `flevum serve`: loads the config (a missing default file means built-in defaults), sets up
/// logging and runs the server on a multi-threaded runtime.
fn run_serve(
    path: &std::path::Path,
    demo: Option<serve::DemoOptions>,
    log_format: Option<&str>,
) -> anyhow::Result<()> {
    let mut cfg = server_config(path, log_format)?;
    if demo.is_some() && cfg.telemetry.log_filter == "info" {
        // Forty simulated phones connecting are not news; keep the demo's log readable.
        cfg.telemetry.log_filter =
            "info,flevum_protocol::client=warn,flevum_engine::ingest::connection=warn".into();
    }
    init_tracing(&cfg);
    runtime()?.block_on(serve::serve(cfg, demo))
}

/// `flevum replay RACE --speed N`.
fn run_replay(
    path: &std::path::Path,
    race: &str,
    speed: f64,
    log_format: Option<&str>,
) -> anyhow::Result<()> {
    let cfg = server_config(path, log_format)?;
    init_tracing(&cfg);
    runtime()?.block_on(replay::replay(cfg, race, speed))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Loads the server config (a missing default file means built-in defaults plus environment
/// overrides) and applies `--log-format`.
fn server_config(path: &std::path::Path, log_format: Option<&str>) -> anyhow::Result<ServerConfig> {
    let mut cfg = if path.exists() {
        ServerConfig::load(path).map_err(|issues| config_error(path, &issues))?
    } else if path == std::path::Path::new("configs/flevum.toml") {
        let mut cfg = ServerConfig::default();
        cfg.apply_env(|k| std::env::var(k).ok())
            .map_err(|issues| config_error(path, &issues))?;
        cfg
    } else {
        anyhow::bail!("config file {} not found", path.display());
    };
    if let Some(f) = log_format {
        cfg.telemetry.log_format = if f == "json" {
            config::LogFormat::Json
        } else {
            config::LogFormat::Pretty
        };
    }
    Ok(cfg)
}

fn config_error(path: &std::path::Path, issues: &[config::ConfigIssue]) -> anyhow::Error {
    let list: Vec<String> = issues.iter().map(|i| format!("  - {i}")).collect();
    anyhow::anyhow!(
        "{}: {} problem(s):\n{}",
        path.display(),
        issues.len(),
        list.join("\n")
    )
}

fn init_tracing(cfg: &ServerConfig) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_new(&cfg.telemetry.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.telemetry.log_format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Pretty => builder.try_init(),
    };
}

/// `flevum check-config PATH`.
fn check_config(path: &std::path::Path) -> ExitCode {
    match ServerConfig::load(path) {
        Ok(cfg) => {
            println!("{}: ok", path.display());
            // The race files the server would open, each validated with every problem listed.
            match serve::load_races(&cfg.engine.races_dir, std::path::Path::new("")) {
                Ok(races) => {
                    let mut failed = false;
                    for (race, course) in &races {
                        // Building the race checks what needs the course: checkpoints snap onto it.
                        let index = flevum_engine::core::CourseIndex::new(course.clone());
                        if let Err(e) = flevum_engine::core::Race::new(race.clone(), index, 0) {
                            eprintln!("race {}: {e}", race.id);
                            failed = true;
                            continue;
                        }
                        println!(
                            "race {}: ok ({} riders, {:.1} km course, {} checkpoints)",
                            race.id,
                            race.riders.len(),
                            course.length_m() / 1000.0,
                            course.checkpoints().len() + race.checkpoints.len()
                        );
                    }
                    if failed {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(issues) => {
            eprintln!("{}: {} problem(s):", path.display(), issues.len());
            for issue in &issues {
                eprintln!("  - {issue}");
            }
            ExitCode::FAILURE
        }
    }
}
