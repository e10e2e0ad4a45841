//! `intervened`: the robot-side daemon for teleoperation and human intervention, and its tools.

mod bench;
mod camera_doctor;
mod commands;
mod dagger;
mod loopbench;
mod recipes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "intervened",
    version,
    about = "Robot-side teleoperation and human intervention (HG-DAgger) for Dynamixel arms"
)]
struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info`, `debug`, `intervened_daemon=debug`. Default:
    /// `info` for the daemon's commands (run, sim, doctor, calibrate, ctl); `warn` for the long
    /// batch commands (retrain, export, bench), which show their own progress instead.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: read the gamepad and the servos, run the policy, record episodes.
    Run(commands::RunArgs),
    /// Serve an emulated servo chain on a pseudo-terminal (prints its path first) until killed.
    Sim(commands::SimArgs),
    /// Check the adapter, every servo, the calibration, the gamepad and the policy.
    Doctor(commands::DoctorArgs),
    /// Calibrate the arm interactively (middle pose, then sweep every joint).
    Calibrate(commands::CalibrateArgs),
    /// Aggregate every session (DAgger), train the next policy and publish it.
    Retrain(commands::RetrainArgs),
    /// Inspect recorded sessions, or export them as a LeRobotDataset v3.0.
    Export(commands::ExportArgs),
    /// Repair episode files cut short by a crash, so that every MCAP reader opens them.
    Recover(commands::RecoverArgs),
    /// Measure the bus, the loop, inference, training, recording, or the whole DAgger loop.
    Bench(bench::BenchArgs),
    /// Talk to a running daemon over its control socket.
    Ctl(commands::CtlArgs),
}

/// Common flags.
#[derive(clap::Args, Clone, Debug)]
pub struct ConfigArg {
    /// The robot config (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Overrides the config's bus port (a device path, or `sim`).
    #[arg(long, value_name = "PATH")]
    pub port: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.cmd {
        Cmd::Retrain(_) | Cmd::Export(_) | Cmd::Bench(_) => "warn",
        // It prints what it did to every file itself.
        Cmd::Recover(_) => "error",
        _ => "info",
    };
    let filter = match &cli.log {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Run(a) => commands::run(a),
        Cmd::Sim(a) => commands::sim(a),
        Cmd::Doctor(a) => commands::doctor(a),
        Cmd::Calibrate(a) => commands::calibrate(a),
        Cmd::Retrain(a) => commands::retrain(a),
        Cmd::Export(a) => commands::export(a),
        Cmd::Recover(a) => commands::recover(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Ctl(a) => commands::ctl(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
