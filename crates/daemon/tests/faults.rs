//! The daemon on the simulated robot in real time, driven through its control socket while a
//! test injects faults into the emulated servo chain and presses buttons on the virtual pad.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::python_policy_with;
use intervened_daemon::runtime::{self, RunOptions, SimHandles};
use intervened_robot::{Button, RobotConfig};

fn config() -> RobotConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    RobotConfig::load(&p).unwrap()
}

struct Daemon {
    sock: PathBuf,
    handles: SimHandles,
    _thread: std::thread::JoinHandle<runtime::RunReport>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(cfg: RobotConfig, policy: Option<PathBuf>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ctl.sock");
        let (tx, rx) = crossbeam_channel::bounded(1);
        let opts = RunOptions {
            socket: Some(sock.clone()),
            data: Some(dir.path().join("data")),
            realtime: true,
            policy,
            sim_handles: Some(tx),
            // A safety net: the test process ends long before, taking the loop thread with it.
            max_ticks: Some(50 * 60),
            ..RunOptions::default()
        };
        let thread = std::thread::spawn(move || runtime::run(cfg, opts).unwrap());
        let handles = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let t0 = Instant::now();
        while !sock.exists() {
            assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            sock,
            handles,
            _thread: thread,
            _dir: dir,
        }
    }

    fn ask(&self, line: &str) -> serde_json::Value {
        let s = UnixStream::connect(&self.sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    }

    fn status(&self) -> serde_json::Value {
        self.ask(r#"{"cmd":"status"}"#)["status"].clone()
    }

    /// Polls status until `pred` holds (the loop runs at 50 Hz; give it a few seconds).
    fn wait_for(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn lost_gamepad_while_driving_holds_and_only_a_fresh_takeover_drives_again() {
    let mut cfg = config();
    cfg.teleop.require_gamepad = false;
    let d = Daemon::start(cfg, None);
    let pad = d.handles.pad.clone();
    pad.connect();
    d.wait_for("the pad", |s| {
        s["gamepads"] == 1 && s["tick"].as_u64() > Some(5)
    });
    let v = d.ask(r#"{"cmd":"start_episode","demo":true}"#);
    assert_eq!(v["ok"], true, "{v}");
    d.wait_for("intervening", |s| s["mode"] == "intervening");
    pad.disconnect();
    d.wait_for("hold after the pad is lost", |s| s["mode"] == "hold");
    // Reconnecting alone does not give the arm back.
    pad.connect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.status()["mode"], "hold");
    // A fresh takeover press does.
    pad.press(Button::RightBumper);
    d.wait_for("a fresh takeover", |s| s["mode"] == "intervening");
    pad.release(Button::RightBumper);
    drop(d);
}

#[test]
fn servo_fault_holds_until_fixed_and_resumed() {
    let mut cfg = config();
    cfg.teleop.require_gamepad = false;
    let d = Daemon::start(cfg, None);
    let pad = d.handles.pad.clone();
    pad.connect();
    d.wait_for("ticking", |s| {
        s["tick"].as_u64() > Some(5) && s["gamepads"] == 1
    });
    assert_eq!(d.ask(r#"{"cmd":"start_episode","demo":true}"#)["ok"], true);
    d.wait_for("intervening", |s| s["mode"] == "intervening");
    d.handles.chain.lock().unwrap().set_responding(4, false);
    let s = d.wait_for("hold on a silent servo", |s| s["mode"] == "hold");
    assert!(
        s["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "bus"),
        "{s}"
    );
    assert!(s["bus_errors"].as_u64().unwrap() >= 5, "{s}");
    // While the fault lasts, resume is refused with the reason.
    let v = d.ask(r#"{"cmd":"resume"}"#);
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("bus"), "{v}");
    // The servo answers again: the fault clears, but the arm stays held until resumed.
    d.handles.chain.lock().unwrap().set_responding(4, true);
    let s = d.wait_for("the fault to clear", |s| {
        s["faults"].as_array().unwrap().is_empty()
    });
    assert_eq!(s["mode"], "hold");
    let v = d.ask(r#"{"cmd":"resume"}"#);
    assert_eq!(v["ok"], true, "{v}");
    d.wait_for("the demonstration to resume", |s| {
        s["mode"] == "intervening"
    });
    drop(d);
}

fn python_policy(out: &Path, version: &str, step: f64) {
    python_policy_with(out, version, step, 1, 0);
}

/// Points `<registry>/current` at `version` atomically, as the retrain job does.
fn set_current(registry: &Path, version: &str) {
    let tmp = registry.join("current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, registry.join("current")).unwrap();
}

#[test]
fn a_policy_exported_from_python_runs_and_stays_inside_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("py");
    python_policy(&pol, "py-1", 0.01);
    let mut cfg = config();
    cfg.teleop.require_gamepad = false;
    let data = dir.path().join("data");
    let r = runtime::run(
        cfg.clone(),
        RunOptions {
            policy: Some(pol),
            episodes: Some(1),
            data: Some(data.clone()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.policy_version.as_deref(), Some("py-1"));
    let session = std::fs::read_dir(data.join("sessions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let ep = intervened_episodes::read_episode(&session.join("episode-000000.mcap")).unwrap();
    assert_eq!(ep.meta.policy_version.as_deref(), Some("py-1"));
    assert!(ep
        .frames
        .iter()
        .all(|f| f.source == intervened_episodes::ControlSource::Robot));
    // The policy pushes shoulder_pan by 0.01 rad a tick; the safety filter stops it at 1.8.
    let pan: Vec<f64> = ep.frames.iter().map(|f| f.goal[0]).collect();
    assert!(
        pan.windows(2).all(|w| w[1] >= w[0]),
        "pan goal must only grow"
    );
    assert!(pan.iter().all(|g| *g <= 1.8), "a goal left the limit");
    assert!(
        (pan.last().unwrap() - 1.8).abs() < 1e-9,
        "the pan never reached its limit: {:?}",
        pan.last()
    );
    assert!(ep.frames.iter().all(|f| f.proposal.is_some()));
    assert!(r.loop_report.clamps > 0);
}

#[test]
fn a_new_current_policy_takes_over_between_episodes_only() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("policies");
    python_policy(&reg.join("v0001"), "v0001", 0.0);
    python_policy(&reg.join("v0002"), "v0002", 0.0);
    set_current(&reg, "v0001");
    let mut cfg = config();
    cfg.teleop.require_gamepad = false;
    cfg.policy.registry = reg.clone();
    let d = Daemon::start(cfg, None);
    d.wait_for("v0001", |s| {
        s["policy_version"] == "v0001" && s["tick"].as_u64() > Some(5)
    });
    assert_eq!(d.ask(r#"{"cmd":"start_episode"}"#)["ok"], true);
    d.wait_for("autonomous", |s| s["mode"] == "autonomous");
    set_current(&reg, "v0002");
    // The registry is polled every second; give it two, mid-episode.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        d.status()["policy_version"],
        "v0001",
        "a policy changed mid-episode"
    );
    assert_eq!(
        d.ask(r#"{"cmd":"stop_episode","outcome":"failure"}"#)["ok"],
        true
    );
    assert_eq!(d.ask(r#"{"cmd":"start_episode"}"#)["ok"], true);
    d.wait_for("v0002 in the next episode", |s| {
        s["policy_version"] == "v0002" && s["mode"] == "autonomous"
    });
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for s in std::fs::read_dir(dir.join("sessions")).unwrap() {
        let s = s.unwrap().path();
        for e in std::fs::read_dir(&s).unwrap() {
            let p = e.unwrap().path();
            v.push((
                p.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    v.sort();
    v
}

/// Lockstep: the same seed gives byte-identical episode files (MCAP and manifests), and a
/// 10 s episode runs in well under a second of wall time.
#[test]
fn lockstep_is_repeatable_to_the_byte_and_faster_than_real_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for run in 0..2 {
        let data = dir.path().join(format!("run{run}"));
        let r = runtime::run(
            config(),
            RunOptions {
                demo: true,
                sim_human: true,
                episodes: Some(3),
                seed: Some(42),
                session_id: Some("same".into()),
                data: Some(data.clone()),
                ..RunOptions::default()
            },
        )
        .unwrap();
        assert_eq!(r.loop_report.episodes.len(), 3);
        outputs.push(files(&data));
    }
    assert_eq!(outputs[0].len(), 6, "3 MCAP files and 3 manifests");
    for (a, b) in outputs[0].iter().zip(&outputs[1]) {
        assert_eq!(a.0, b.0);
        assert!(
            a.1 == b.1,
            "{} differs between two runs of the same seed",
            a.0
        );
    }

    // A policy that holds still never succeeds: the episode runs its whole 10 s.
    let pol = dir.path().join("hold");
    python_policy(&pol, "hold", 0.0);
    let mut cfg = config();
    cfg.teleop.require_gamepad = false;
    let t0 = Instant::now();
    let r = runtime::run(
        cfg,
        RunOptions {
            policy: Some(pol),
            episodes: Some(1),
            record: false,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let wall = t0.elapsed();
    assert!(r.loop_report.ticks >= 500, "{} ticks", r.loop_report.ticks);
    // Lockstep is not paced by the wall clock. Typically well under 1 s; the bound only says
    // "not real time", so that a loaded 2-core CI host cannot fail it (speed is a benchmark's
    // job, not a test's).
    assert!(
        wall < Duration::from_secs(5),
        "a 10 s episode took {wall:?} of wall time: is lockstep pacing by the clock?"
    );
}

/// A policy far slower than the control period (every forward pass is hundreds of matmuls)
/// runs on the worker thread in real time and still acts, at chunk 1 (where every result
/// arrives after the one tick it was for) and at chunk 10, before and after a Hold and resume.
#[test]
fn a_slow_policy_keeps_acting_at_chunk_1_and_10_across_hold_and_resume() {
    for chunk in [1, 10] {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("slow");
        python_policy_with(&pol, "slow", 0.0, chunk, 40);
        let mut cfg = config();
        cfg.teleop.require_gamepad = false;
        // Generous: a loaded CI machine may take a few hundred ms per pass; this test is about
        // acting at all, the next one about the timeout.
        cfg.policy.action_timeout_ms = 5000;
        // Nor may the simulated world end the episode (10 s) while a loaded host is slow.
        cfg.sim.episode_seconds = 300.0;
        let d = Daemon::start(cfg, Some(pol));
        d.wait_for("ticking", |s| s["tick"].as_u64() > Some(5));
        assert_eq!(d.ask(r#"{"cmd":"start_episode"}"#)["ok"], true);
        let s = d.wait_for("the slow policy to act", |s| {
            s["policy_actions"].as_u64() >= Some(3)
        });
        assert_eq!(s["mode"], "autonomous", "chunk {chunk}: {s}");
        let v = d.ask(r#"{"cmd":"hold"}"#);
        assert_eq!(v["ok"], true, "{v}");
        let before = d.status()["policy_actions"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(d.ask(r#"{"cmd":"resume"}"#)["ok"], true);
        let s = d.wait_for("the policy to act again after resume", |s| {
            s["policy_actions"].as_u64() >= Some(before + 3)
        });
        assert_eq!(s["mode"], "autonomous", "chunk {chunk}: {s}");
        assert_eq!(s["policy_starvations"], 0, "chunk {chunk}: {s}");
        assert!(s["faults"].as_array().unwrap().is_empty(), "{s}");
    }
}

/// A policy that produces no usable action for `policy.action_timeout_ms` is a fault: the
/// arm holds, status names it and counts it, and the pad rumbles. After a resume the same
/// rule applies again.
#[test]
fn a_policy_without_actions_for_the_timeout_holds_with_a_fault_and_a_rumble() {
    for chunk in [1, 10] {
        let dir = tempfile::tempdir().unwrap();
        let pol = dir.path().join("slow");
        python_policy_with(&pol, "slow", 0.0, chunk, 40);
        let mut cfg = config();
        cfg.teleop.require_gamepad = false;
        // Two periods at 50 Hz; 40 matmuls of 400x400 take far longer on any CPU.
        cfg.policy.action_timeout_ms = 40;
        let d = Daemon::start(cfg, Some(pol));
        let pad = d.handles.pad.clone();
        pad.connect();
        d.wait_for("ticking", |s| s["tick"].as_u64() > Some(5));
        pad.take_rumbles();
        assert_eq!(d.ask(r#"{"cmd":"start_episode"}"#)["ok"], true);
        let s = d.wait_for("hold on a starved policy", |s| s["mode"] == "hold");
        assert!(s["policy_starvations"].as_u64() >= Some(1), "{s}");
        let faults = s["faults"].as_array().unwrap();
        assert!(
            faults.iter().any(|f| f["kind"] == "policy"
                && f["message"].as_str().unwrap().contains("no usable action")),
            "{s}"
        );
        let t0 = Instant::now();
        while !pad
            .rumbles()
            .contains(&intervened_teleop::RumblePattern::Fault)
        {
            assert!(t0.elapsed() < Duration::from_secs(5), "no fault rumble");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Resume: the policy gets its full timeout again, then holds again.
        assert_eq!(d.ask(r#"{"cmd":"resume"}"#)["ok"], true, "chunk {chunk}");
        d.wait_for("a second starvation", |s| {
            s["mode"] == "hold" && s["policy_starvations"].as_u64() >= Some(2)
        });
    }
}
