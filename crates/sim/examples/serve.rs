//! Serve an emulated servo chain on a pty for any host to open.
//!
//! ```text
//! cargo run -p intervened-sim --example serve -- [ROBOT_CONFIG.toml] [--link-dir DIR]
//! ```
//!
//! Without a config it serves the Koch v1.1 follower (IDs 1-2 XL430-W250, 3-6 XL330-M288).
//! The first stdout line is the port path (a stable symlink). Dynamics advance by wall clock.
//! It serves until stdin closes (or the process is killed).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use intervened_robot::{RobotConfig, ServoModel, SimConfig};
use intervened_sim::{specs_from_config, Chain, Dynamics, PtyServer, ServerOptions, ServoSpec};

fn koch() -> Vec<ServoSpec> {
    (1..=6)
        .map(|id| {
            let model = if id <= 2 {
                ServoModel::Xl430W250
            } else {
                ServoModel::Xl330M288
            };
            ServoSpec {
                id,
                model,
                firmware: model.min_firmware(),
            }
        })
        .collect()
}

fn run() -> Result<(), String> {
    let mut config = None;
    let mut link_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--link-dir" => {
                link_dir = Some(PathBuf::from(
                    args.next().ok_or("--link-dir needs a directory")?,
                ))
            }
            "-h" | "--help" => {
                println!("usage: serve [ROBOT_CONFIG.toml] [--link-dir DIR]");
                return Ok(());
            }
            other => config = Some(PathBuf::from(other)),
        }
    }
    let (specs, dynamics) = match &config {
        Some(p) => {
            let cfg = RobotConfig::load(Path::new(p)).map_err(|e| e.to_string())?;
            (specs_from_config(&cfg), Dynamics::from(&cfg.sim))
        }
        None => (koch(), Dynamics::from(&SimConfig::default())),
    };
    let chain = Chain::new(specs, dynamics).shared();
    let server = PtyServer::start(
        chain,
        ServerOptions {
            realtime: true,
            link_dir,
            ..Default::default()
        },
    )
    .map_err(|e| format!("cannot open a pty: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.path().display()).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);

    // Serve until stdin reaches EOF.
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    let st = server.stats();
    eprintln!(
        "served {} packets, {} replies, {} bad CRC received",
        st.packets, st.replies, st.bad_crc_received
    );
    server.stop();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            ExitCode::FAILURE
        }
    }
}
