//! `flevum`: the one binary. Wires the engine, the ingest and the gateway together from config.
//!
//! Holds no race logic: it parses the command line and config files, sets up logging, and hands
//! typed `*Config` structs to the libraries.

#![deny(unsafe_code)]

mod config;

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
    },
    /// Run only the engine role, joined to gateways by NATS.
    Engine {
        /// NATS URL of the bus.
        #[arg(long)]
        bus: Option<String>,
    },
    /// Run only the gateway role, joined to engines by NATS.
    Gateway {
        /// NATS URL of the bus.
        #[arg(long)]
        bus: Option<String>,
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
        Command::Engine { .. } | Command::Gateway { .. } => not_yet(
            "the split engine/gateway roles need the NATS bus (issue 9), which has not landed; \
             use `flevum serve`",
        ),
        Command::Serve { .. } => {
            not_yet("serve lands with the QUIC ingest and gateway (issues 5, 6)")
        }
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

/// Says that a subcommand is not available yet and fails.
fn not_yet(what: &str) -> ExitCode {
    eprintln!("flevum: not available yet: {what}");
    ExitCode::from(2)
}

/// `flevum check-config PATH`.
fn check_config(path: &std::path::Path) -> ExitCode {
    match ServerConfig::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
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
