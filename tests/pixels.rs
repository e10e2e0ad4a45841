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

/// Two simulated demonstrations with the camera, recorded under `data`; `run`'s output.
fn record_demos(cfg: &Path, data: &Path, seed: &str) -> String {
    ok(bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "2",
            "--seed",
            seed,
        ])
        .arg("--config")
        .arg(cfg)
        .arg("--data")
        .arg(data))
}

/// The episode files of the one session recorded under `data`, in order.
fn episode_files(data: &Path) -> Vec<PathBuf> {
    let sessions: Vec<PathBuf> = std::fs::read_dir(data.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sessions[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mcap"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_pixels_only_policy_is_recorded_trained_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = camera_config(dir.path());
    let data = dir.path().join("data");
    let reg = dir.path().join("policies");
    record_demos(&cfg, &data, "5");
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
    assert!(
        out.contains("camera to goal (image capture -> first goal acting on it, simulated time)")
            && out.contains("of which the image's age when the tick read it"),
        "no camera-to-goal latency:\n{out}"
    );
    let mcap = episode_files(&eval).remove(0);
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

/// The policies a `bench dagger` run published, per seed: (seed dir/registry/version, sha256).
fn published(out: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for seed in ["seed-0", "seed-1"] {
        for reg in ["policies", "bc-more-demos-policies"] {
            let dir = out.join(seed).join(reg);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                let side = p.join("policy.json");
                if p.is_symlink() || !side.exists() {
                    continue;
                }
                let j: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(side).unwrap()).unwrap();
                v.push((
                    format!("{seed}/{reg}/{}", p.file_name().unwrap().to_string_lossy()),
                    j["sha256"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    v.sort();
    v
}

/// `bench dagger --vision` end to end at a toy size: pixels-only policies in every arm, the
/// image policy's costs measured, and two seeds side by side (`--jobs 2`) publishing exactly the
/// policies they publish one after the other.
#[test]
fn the_experiment_from_pixels_runs_and_parallel_seeds_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |jobs: &str, out: &Path| {
        ok(bin()
            .args([
                "bench", "dagger", "--vision", "--seeds", "2", "--rounds", "1",
            ])
            .args([
                "--demos",
                "2",
                "--episodes",
                "2",
                "--eval",
                "2",
                "--max-steps",
                "4",
            ])
            .args(["--jobs", jobs, "--config"])
            .arg(root.join("robot-configs/sim-koch.toml"))
            .arg("--out")
            .arg(out))
    };
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let text = run("1", &one);
    assert!(text.contains("2 seed(s), 1 at a time"), "{text}");
    assert!(
        text.contains("image policy on camera(s) front (joints + pixels, no block.*)"),
        "{text}"
    );
    for arm in ["| bc | 0 |", "| hg-dagger | 1 |", "| bc-more-demos | 1 |"] {
        assert!(text.contains(arm), "no {arm} row:\n{text}");
    }
    assert!(text.contains("| inference at batch 1 (ms) |"), "{text}");
    assert!(
        text.contains("| camera to goal, real time (ms) |"),
        "{text}"
    );
    let costs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("vision-costs.json")).unwrap())
            .unwrap();
    let obs: Vec<String> = serde_json::from_value(costs["observation"].clone()).unwrap();
    assert!(
        !obs.is_empty() && obs.iter().all(|n| n.ends_with(".pos")),
        "privileged features: {obs:?}"
    );
    assert!(
        costs["camera_to_goal"]["count"].as_u64().unwrap() > 0,
        "{costs}"
    );
    assert!(costs["infer_p50_us"].as_f64().unwrap() > 0.0, "{costs}");
    // The image's age is part of the camera-to-goal time.
    let p50 = |k: &str| costs[k]["p50_us"].as_f64().unwrap();
    assert!(
        p50("image_age") > 0.0 && p50("image_age") <= p50("camera_to_goal"),
        "{costs}"
    );

    let text = run("2", &two);
    assert!(text.contains("2 seed(s), 2 at a time"), "{text}");
    let (a, b) = (published(&one), published(&two));
    // BC and round 1 in the main registry, one BC-more-demos policy, per seed.
    assert_eq!(a.len(), 6, "{a:?}");
    assert_eq!(a, b, "parallel seeds trained different policies");
    let side: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(two.join("seed-1/policies/current/policy.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(side["cameras"][0]["name"], "front");
}

/// A lockstep run outpaces the JPEG encoder (here a 224x224 camera and a one-image queue): the
/// camera waits for room in the recorder's queue, in simulated time, instead of
/// dropping images. `run` fails when anything was dropped.
#[test]
fn lockstep_never_drops_images_when_the_encoder_falls_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = camera_config(dir.path());
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("width = 96\nheight = 96", "width = 224\nheight = 224")
        .replace(
            "pre_intervention_window = 15\n",
            "pre_intervention_window = 15\nqueue_images = 1\n",
        );
    assert!(text.contains("queue_images = 1") && text.contains("width = 224"));
    std::fs::write(&cfg, text).unwrap();
    let data = dir.path().join("data");
    let out = record_demos(&cfg, &data, "3");
    assert!(
        out.contains("recording: 0 dropped frame(s) or camera image(s)"),
        "{out}"
    );
    let files = episode_files(&data);
    assert_eq!(files.len(), 2);
    for p in files {
        let ep = intervened_episodes::read_episode(&p).unwrap();
        // 30 fps at 50 Hz: 3 images every 5 ticks, every one kept.
        let got = ep.images[0].images.len();
        let want = ep.frames.len() * 3 / 5;
        assert!(
            got + 1 >= want,
            "{got} images for {} ticks",
            ep.frames.len()
        );
    }
}
