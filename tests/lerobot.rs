//! A dataset exported from a simulated session loads in LeRobot's own loader (lerobot 0.4.4,
//! installed by scripts/setup.sh --test in its own venv), with matching counts.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn lerobot_loads_the_export_with_matching_counts() {
    let py = root().join(".lerobot-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh --test",
        py.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bin = env!("CARGO_BIN_EXE_intervened");
    let cfg = root().join("robot-configs/sim-koch.toml");
    run(Command::new(bin)
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "3",
            "--config",
        ])
        .arg(&cfg)
        .arg("--data")
        .arg(&data));
    let out = dir.path().join("dataset");
    run(Command::new(bin)
        .args(["export", "lerobot", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out));

    // What we recorded, by our own reader.
    let mut frames = 0usize;
    let mut first_q = None;
    let mut sessions: Vec<_> = std::fs::read_dir(data.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sessions.sort();
    for s in sessions {
        let mut eps: Vec<_> = std::fs::read_dir(&s)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "mcap"))
            .collect();
        eps.sort();
        for e in eps {
            let ep = intervened_episodes::read_episode(&e).unwrap();
            first_q.get_or_insert_with(|| ep.frames[0].q.clone());
            frames += ep.frames.len();
        }
    }

    let text = run(Command::new(&py)
        .arg(root().join("tests/fixtures/lerobot_check.py"))
        .arg(&out)
        .env("HF_HUB_OFFLINE", "1"));
    let line = text.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["episodes"], 3, "{v}");
    assert_eq!(v["frames"].as_u64().unwrap() as usize, frames, "{v}");
    assert_eq!(v["fps"], 50, "{v}");
    assert_eq!(v["state"], serde_json::json!([6]), "{v}");
    assert_eq!(v["action"], serde_json::json!([6]), "{v}");
    assert_eq!(
        v["interventions"], 0,
        "demonstrations have no interventions: {v}"
    );
    let q = first_q.unwrap();
    for (a, b) in v["state0"].as_array().unwrap().iter().zip(&q) {
        assert!(
            (a.as_f64().unwrap() - b).abs() < 1e-6,
            "state {v} vs q {q:?}"
        );
    }
}
