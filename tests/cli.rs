//! The binary's edges: help, bad configs, and the doctor against the emulator.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_intervened"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[test]
fn help_lists_the_built_subcommands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "run",
        "sim",
        "doctor",
        "calibrate",
        "retrain",
        "export",
        "bench",
        "ctl",
    ] {
        assert!(
            text.contains(&format!("  {cmd} ")),
            "{cmd} missing from:\n{text}"
        );
    }
}

#[test]
fn bad_config_names_file_and_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("robot-configs/sim-koch.toml")).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("rate_hz = 50", "rate_hz = 5000")).unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("control.rate_hz"),
        "{err}"
    );
}

#[test]
fn doctor_passes_on_the_simulated_arm() {
    let out = bin()
        .args(["doctor", "--config"])
        .arg(repo().join("robot-configs/sim-koch.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "doctor failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("shoulder_pan") && text.contains("mapping in use"),
        "{text}"
    );
}

#[test]
fn doctor_names_a_wrong_servo_model() {
    // Serve the real Koch chain, then check it against a config that expects another model.
    let mut sim = bin()
        .args(["sim", "--config"])
        .arg(repo().join("robot-configs/sim-koch.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sim.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pty = line.trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("robot-configs/sim-koch.toml")).unwrap();
    let cfg = dir.path().join("wrong.toml");
    // Joint 3 (elbow_flex) is an XL330-M288 on the chain; say it is an XL430-W250.
    let text = text
        .replacen("model = \"XL330-M288\"", "model = \"XL430-W250\"", 1)
        .replace(
            "calibration = \"../calibration/sim-koch.json\"",
            &format!(
                "calibration = \"{}\"",
                repo().join("calibration/sim-koch.json").display()
            ),
        );
    std::fs::write(&cfg, text).unwrap();
    let out = bin()
        .args(["doctor", "--no-fix", "--config"])
        .arg(&cfg)
        .args(["--port", &pty])
        .output()
        .unwrap();
    let _ = sim.kill();
    let _ = sim.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("elbow_flex") && text.contains("fix"),
        "{text}"
    );
}
