//! `flevum`: the one binary. Wires the engine, the ingest and the gateway together from config.
//!
//! Holds no race logic: it parses the command line and config files, sets up logging, and hands
//! typed `*Config` structs to the libraries.

#![deny(unsafe_code)]

mod config;
mod engine_role;
mod gateway_role;
mod host;
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
        /// Send the fixes to a running server over QUIC instead of an in-process engine.
        #[arg(long)]
        connect: Option<String>,
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
        } => report(simulate(&course, riders, seed)),
        Command::Simulate {
            connect: Some(_), ..
        } => not_yet("--connect drives riders over QUIC, which lands with the ingest (issue 5)"),
        Command::Replay { .. } => not_yet("replay lands with the journal (issue 5)"),
    }
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
    let cfg = load_config(path, log_format)?;
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

/// The config at `path` (a missing default file means built-in defaults plus environment),
/// with the command line's log format applied.
fn load_config(path: &std::path::Path, log_format: Option<&str>) -> anyhow::Result<ServerConfig> {
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

/// `flevum serve`: loads the config (a missing default file means built-in defaults), sets up
/// logging and runs the server on a multi-threaded runtime.
fn run_serve(
    path: &std::path::Path,
    demo: Option<serve::DemoOptions>,
    log_format: Option<&str>,
) -> anyhow::Result<()> {
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
    if demo.is_some() && cfg.telemetry.log_filter == "info" {
        // Forty simulated phones connecting are not news; keep the demo's log readable.
        cfg.telemetry.log_filter =
            "info,flevum_protocol::client=warn,flevum_engine::ingest::connection=warn".into();
    }
    init_tracing(&cfg);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve::serve(cfg, demo))
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

/// Says that a subcommand is not available yet and fails.
fn not_yet(what: &str) -> ExitCode {
    eprintln!("flevum: not available yet: {what}");
    ExitCode::from(2)
}

/// `flevum check-config PATH`.
fn check_config(path: &std::path::Path) -> ExitCode {
    match ServerConfig::load(path) {
        Ok(cfg) => {
            println!("{}: ok", path.display());
            // The race files the server would open, each validated with every problem listed.
            match serve::load_races(&cfg.engine.races_dir, std::path::Path::new("")) {
                Ok(races) => {
                    for (race, course) in &races {
                        println!(
                            "race {}: ok ({} riders, {:.1} km course, {} checkpoints)",
                            race.id,
                            race.riders.len(),
                            course.length_m() / 1000.0,
                            course.checkpoints().len() + race.checkpoints.len()
                        );
                    }
                    ExitCode::SUCCESS
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
