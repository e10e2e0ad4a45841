//! End to end on the simulated robot, through the binary: the emulated servo chain on a pty,
//! the simulated human on the virtual gamepad, the recorder, the retrain job and the daemon.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_intervened"))
}

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("robot-configs/sim-koch.toml")
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn episodes(data: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for s in std::fs::read_dir(data.join("sessions")).unwrap() {
        for e in std::fs::read_dir(s.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "mcap") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// Demonstrations, behaviour cloning, then policy episodes with the simulated human
/// supervising: takeovers start from the measured position and handbacks from the last goal.
#[test]
fn demos_retrain_and_supervised_policy_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reg = dir.path().join("policies");
    let out = ok(bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "4",
            "--seed",
            "3",
            "--config",
        ])
        .arg(config())
        .arg("--data")
        .arg(&data));
    assert!(out.contains("4 episode(s)"), "{out}");
    let eps = episodes(&data);
    assert_eq!(eps.len(), 4);
    for e in &eps {
        let ep = intervened_episodes::read_episode(e).unwrap();
        assert!(!ep.truncated);
        assert!(ep
            .frames
            .iter()
            .all(|f| f.source == intervened_episodes::ControlSource::Demo));
        assert_eq!(ep.meta.task_feature_names.len(), 4);
    }
    ok(bin()
        .args(["retrain", "--quiet", "--max-steps", "300", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&reg)
        .arg("--config")
        .arg(config()));
    assert!(reg.join("current/policy.pt").exists());

    // Same seed twice: byte-identical recordings (lockstep determinism through the real path).
    let mut cfg_text = std::fs::read_to_string(config()).unwrap();
    cfg_text = cfg_text
        .replace(
            "registry = \"../policies\"",
            &format!("registry = \"{}\"", reg.display()),
        )
        .replace(
            "calibration = \"../calibration/sim-koch.json\"",
            &format!(
                "calibration = \"{}\"",
                config()
                    .parent()
                    .unwrap()
                    .join("../calibration/sim-koch.json")
                    .display()
            ),
        );
    let cfg = dir.path().join("robot.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let rc = intervened_robot::RobotConfig::load(&cfg).unwrap();
    let cal = intervened_robot::Calibration::load(&rc.calibration_path().unwrap(), &rc).unwrap();
    let limits = cal.joint_limits(&rc, &cfg).unwrap();
    let mut digests = Vec::new();
    for run in 0..2 {
        let d = dir.path().join(format!("sup{run}"));
        let out = ok(bin()
            .args([
                "run",
                "--sim-human",
                "--episodes",
                "3",
                "--seed",
                "11",
                "--config",
            ])
            .arg(&cfg)
            .arg("--data")
            .arg(&d));
        assert!(out.contains("3 episode(s)"), "{out}");
        let mut frames = Vec::new();
        for e in episodes(&d) {
            let ep = intervened_episodes::read_episode(&e).unwrap();
            for f in &ep.frames {
                frames.push(serde_json::to_string(&(f.tick, &f.q, &f.goal, f.source)).unwrap());
            }
            // Zero jump: the first intervention goal is the measured position, and the first
            // autonomous goal after a handback is the last human goal.
            for w in ep.frames.windows(2) {
                use intervened_episodes::ControlSource::*;
                match (w[0].source, w[1].source) {
                    (Robot, Intervention) => {
                        // (A measured position a tick past a limit is held at the limit.)
                        for ((g, q), [lo, hi]) in w[1].goal.iter().zip(&w[1].q).zip(&limits) {
                            assert_eq!(
                                *g,
                                q.clamp(*lo, *hi),
                                "takeover jumped at tick {}: prev {:?}\n this {:?}",
                                w[1].tick,
                                w[0],
                                w[1]
                            );
                        }
                    }
                    (Intervention, Robot) => assert_eq!(
                        w[1].goal, w[0].goal,
                        "handback jumped at tick {}",
                        w[1].tick
                    ),
                    _ => {}
                }
            }
        }
        digests.push(frames);
    }
    assert_eq!(
        digests[0], digests[1],
        "the same seed must give the same episodes"
    );
}

/// SIGTERM mid-episode: exit 0 within a second, every file readable.
#[test]
fn sigterm_mid_episode_exits_cleanly_with_recording_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--realtime",
            "--episodes",
            "100",
            "--config",
        ])
        .arg(config())
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let t0 = Instant::now();
    unsafe_kill(child.id(), 15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    let eps = episodes(&data);
    assert!(!eps.is_empty());
    for e in eps {
        let ep = intervened_episodes::read_episode(&e).unwrap();
        assert!(e.with_extension("json").exists(), "{e:?} has no manifest");
        assert!(ep.manifest.frames > 0);
        assert!(!ep.frames.is_empty());
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Malformed socket messages get an error reply and leave the daemon running.
#[test]
fn control_socket_survives_malformed_input() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut child = bin()
        .args(["run", "--realtime", "--no-record", "--config"])
        .arg(config())
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut ask = |line: &str| -> serde_json::Value {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    };
    for bad in [
        "nonsense",
        "{",
        r#"{"cmd":"fly"}"#,
        r#"{"cmd":"status","extra":1}"#,
        &"x".repeat(10_000),
        "\u{0}\u{1}",
    ] {
        let v = ask(bad);
        assert_eq!(v["ok"], false, "{bad:?} -> {v}");
        assert!(v["error"].as_str().unwrap().len() > 5);
    }
    let mut v = ask(r#"{"cmd":"status"}"#);
    let t0 = Instant::now();
    while v["status"]["tick"].as_u64().unwrap_or(0) == 0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        v = ask(r#"{"cmd":"status"}"#);
    }
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"]["takeover"], "hold");
    assert!(
        v["status"]["tick"].as_u64().unwrap() > 0,
        "the loop is not ticking: {v}"
    );
    // No policy is loaded: an autonomous episode is refused with a reason, a demo starts.
    let v = ask(r#"{"cmd":"start_episode"}"#);
    assert_eq!(v["ok"], false, "{v}");
    let v = ask(r#"{"cmd":"estop"}"#);
    assert_eq!(v["status"]["mode"], "e_stop", "{v}");
    let v = ask(r#"{"cmd":"start_episode","demo":true}"#);
    assert_eq!(v["ok"], false, "e-stop must refuse episodes: {v}");
    let v = ask(r#"{"cmd":"clear_estop"}"#);
    assert_eq!(v["status"]["mode"], "idle", "{v}");
    unsafe_kill(child.id(), 15);
    assert!(child.wait().unwrap().success());
}

/// A failed rollout says why, in its file (end record), its manifest and `export sessions`.
#[test]
fn failed_rollouts_record_why_they_failed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let reg = dir.path().join("policies");
    ok(bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "2",
            "--config",
        ])
        .arg(config())
        .arg("--data")
        .arg(&data));
    // Five optimiser steps: a policy that cannot do the task.
    ok(bin()
        .args(["retrain", "--quiet", "--max-steps", "5", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&reg)
        .arg("--config")
        .arg(config()));
    let eval = dir.path().join("eval");
    ok(bin()
        .args(["run", "--episodes", "3", "--seed", "1000001", "--config"])
        .arg(config())
        .arg("--data")
        .arg(&eval)
        .arg("--policy")
        .arg(reg.join("current")));
    let eps = episodes(&eval);
    assert_eq!(eps.len(), 3);
    let mut failed = 0;
    for e in &eps {
        let m = intervened_episodes::read_episode(e).unwrap().manifest;
        match m.outcome {
            intervened_episodes::Outcome::Failure => {
                failed += 1;
                assert!(
                    m.failure.is_some(),
                    "{}: failure without a mode",
                    e.display()
                );
                // The end record in the file carries it too: without the manifest, the
                // reader finds it there.
                std::fs::remove_file(e.with_extension("json")).unwrap();
                let again = intervened_episodes::read_episode(e).unwrap().manifest;
                assert_eq!(again.failure, m.failure);
            }
            _ => assert_eq!(m.failure, None),
        }
    }
    assert!(failed > 0, "a five-step policy succeeded every time");
    let out = ok(bin().args(["export", "sessions", "--data"]).arg(&eval));
    assert!(out.contains("why episodes failed:"), "{out}");
}
