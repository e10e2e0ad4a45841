//! Cameras end to end through the binary, on the simulated robot: demonstrations recorded with
//! a rendered camera, `retrain --cameras` training a pixels-only policy on them (joints plus the
//! image, no block position), the daemon running it, and the recording's image channel read by
//! the official Python `mcap` reader and exported to LeRobot video.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_intervened"))
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The shipped simulated Koch with one rendered 96x96 camera, beside the shipped configs so
/// that its relative paths (calibration, registry) resolve the same way.
fn camera_config(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("robot-configs/sim-koch.toml")).unwrap();
    let text = text.replace(
        "calibration = \"../calibration/sim-koch.json\"",
        &format!(
            "calibration = \"{}\"",
            root.join("calibration/sim-koch.json").display()
        ),
    );
    let p = dir.join("sim-koch-camera.toml");
    std::fs::write(
        &p,
        format!("{text}\n[[cameras]]\nname = \"front\"\ndevice = \"sim\"\nwidth = 96\nheight = 96\nfps = 30\n"),
    )
    .unwrap();
    p
}

#[test]
fn a_pixels_only_policy_is_recorded_trained_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = camera_config(dir.path());
    let data = dir.path().join("data");
    let reg = dir.path().join("policies");
    ok(bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "2",
            "--seed",
            "5",
            "--config",
        ])
        .arg(&cfg)
        .arg("--data")
        .arg(&data));
    // A few optimiser steps: this checks the plumbing, not the skill (bench dagger --vision
    // measures that).
    let out = ok(bin()
        .args([
            "retrain",
            "--cameras",
            "front",
            "--max-steps",
            "3",
            "--batch",
            "16",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&reg)
        .arg("--config")
        .arg(&cfg));
    assert!(out.contains("front"), "{out}");
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reg.join("current/policy.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["cameras"][0]["name"], "front");
    let obs: Vec<String> = serde_json::from_value(sidecar["observation_names"].clone()).unwrap();
    assert!(
        obs.iter().all(|n| n.ends_with(".pos")),
        "privileged features: {obs:?}"
    );

    // The daemon runs it: every step reads a fresh image.
    let eval = dir.path().join("eval");
    let out = ok(bin()
        .args(["run", "--episodes", "1", "--seed", "1000001", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&eval)
        .arg("--policy")
        .arg(reg.join("current")));
    assert!(!out.contains("camera front is"), "camera fault:\n{out}");
    let session = std::fs::read_dir(eval.join("sessions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mcap = std::fs::read_dir(&session)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "mcap"))
        .unwrap();
    let ep = intervened_episodes::read_episode(&mcap).unwrap();
    assert_eq!(
        ep.meta.policy_version.as_deref(),
        sidecar["version"].as_str()
    );
    assert!(
        ep.frames.iter().any(|f| f.proposal.is_some()),
        "the policy never acted"
    );
    assert!(!ep.images[0].images.is_empty());

    // The official reader sees foxglove.CompressedImage on /camera/front.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    let script = "import sys\nfrom mcap.reader import make_reader\nr = make_reader(open(sys.argv[1], 'rb'))\ns = r.get_summary()\nch = [c for c in s.channels.values() if c.topic == '/camera/front']\nassert len(ch) == 1, [c.topic for c in s.channels.values()]\nprint(s.schemas[ch[0].schema_id].name, s.statistics.channel_message_counts[ch[0].id])\n";
    let out = ok(Command::new(py).arg("-c").arg(script).arg(&mcap));
    let line = out.lines().next().unwrap_or_default().to_string();
    assert!(line.starts_with("foxglove.CompressedImage "), "{out}");
    let n: usize = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(n, ep.images[0].images.len());
}
