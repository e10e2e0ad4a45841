//! The binary's edges: help, bad configs, and the doctor against the emulator.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        "recover",
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

/// A copy of the sim config in `dir`, pointing at `calibration` (absolute).
fn sim_config_with_calibration(dir: &Path, calibration: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("robot-configs/sim-koch.toml")).unwrap();
    let text = text.replace(
        "calibration = \"../calibration/sim-koch.json\"",
        &format!("calibration = \"{}\"", calibration.display()),
    );
    assert!(text.contains(&calibration.display().to_string()));
    let cfg = dir.join("sim.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn doctor_fails_on_a_broken_calibration_like_run_does() {
    let dir = tempfile::tempdir().unwrap();
    // elbow_flex is servo id 3 in the config; the calibration says 9.
    let good = std::fs::read_to_string(repo().join("calibration/sim-koch.json")).unwrap();
    let broken = good.replacen("\"id\": 3,", "\"id\": 9,", 1);
    assert_ne!(broken, good);
    let cal = dir.path().join("broken-cal.json");
    std::fs::write(&cal, broken).unwrap();
    let cfg = sim_config_with_calibration(dir.path(), &cal);

    let out = bin()
        .args(["doctor", "--no-fix", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "doctor passed a broken calibration:\n{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("calibration"))
        .unwrap_or_else(|| panic!("no failing calibration row in:\n{text}"));
    assert!(
        row.contains("broken-cal.json")
            && row.contains("elbow_flex.id")
            && row.contains("recalibrate"),
        "{row}"
    );
    assert!(!text.contains("no calibration given"), "{text}");

    // `run` refuses the same file for the same reason.
    let out = bin()
        .args([
            "run",
            "--demo",
            "--sim-human",
            "--episodes",
            "1",
            "--no-record",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "run accepted it: {err}");
    assert!(err.contains("elbow_flex.id"), "{err}");
}

#[test]
fn doctor_fails_on_a_missing_calibration_with_one_error_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sim_config_with_calibration(dir.path(), &dir.path().join("nowhere.json"));
    let out = bin()
        .args(["doctor", "--no-fix", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("calibration"))
        .unwrap_or_else(|| panic!("no failing calibration row in:\n{text}"));
    assert!(row.contains("nowhere.json"), "{row}");
    assert_eq!(row.matches("os error").count(), 1, "{row}");
    assert!(row.contains("intervened calibrate --config"), "{row}");
}

/// The binary finds every shared library it links, and needs none of libtorch's CUDA stack
/// beyond the two runtime libraries `scripts/setup.sh` installs (cudart, cupti): the demo's
/// install is torch without its dependency tree, and this is what would break first.
#[test]
fn the_binary_links_every_shared_library_without_the_cuda_stack() {
    let out = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_intervened"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("not found"), "missing libraries:\n{text}");
    assert!(text.contains("libtorch_cpu.so"), "{text}");
    for heavy in ["libtorch_cuda", "libcudnn", "libcublas", "libnccl"] {
        assert!(!text.contains(heavy), "{heavy} is linked:\n{text}");
    }
}

/// `intervened recover DIR` repairs a cut file and says what it kept and dropped, then finds
/// nothing to do; it takes a data root or a session folder, and names a wrong folder's fix.
#[test]
fn recover_repairs_a_cut_file_and_reports_it() {
    use intervened_episodes::{ControlSource, EpisodeMeta, EpisodeWriter, Frame};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let meta = EpisodeMeta {
        session_id: "s1".into(),
        episode_index: 0,
        robot_name: "arm".into(),
        robot_type: "koch_v1.1".into(),
        joint_names: vec!["a".into(), "b".into()],
        task_feature_names: Vec::new(),
        fps: 50.0,
        policy_version: None,
        task: "t".into(),
        demo: true,
        started_at: 1_700_000_000_000_000_000,
        cameras: Vec::new(),
        monotonic_start_ns: None,
    };
    let mut w = EpisodeWriter::create(&data, &meta).unwrap();
    let mut flushed = 0;
    for i in 0..40u64 {
        w.write_frame(&Frame {
            tick: i,
            t: i as f64 / 50.0,
            q: vec![0.0, 1.0],
            qd: Vec::new(),
            current: Vec::new(),
            goal: vec![0.0, 1.0],
            source: ControlSource::Demo,
            proposal: None,
            doubt: None,
            pad_axes: Vec::new(),
            pad_buttons: 0,
            task: Vec::new(),
        })
        .unwrap();
        if i == 29 {
            w.flush().unwrap();
            flushed = w.file_len().unwrap();
        }
    }
    let path = w.path().to_path_buf();
    w.finish(intervened_episodes::Outcome::Success, 0, 0)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..flushed as usize + 100]).unwrap();
    std::fs::remove_file(path.with_extension("json")).unwrap();

    let out = bin().arg("recover").arg(&data).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sessions/s1/episode-000000.mcap: repaired: 91 messages kept (30 frames, up to t = 0.580 s), 100 bytes dropped"),
        "{text}"
    );
    assert!(text.contains("1 episode file(s): 1 repaired"), "{text}");
    let m = intervened_episodes::Manifest::load(&path.with_extension("json")).unwrap();
    assert!(m.truncated && m.recovered && m.frames == 30);

    let session = data.join("sessions/s1");
    let out = bin()
        .args(["recover", "--json"])
        .arg(&session)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["action"], "intact", "{v}");

    let out = bin()
        .arg("recover")
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no such folder") && err.contains("fix:"),
        "{err}"
    );
}

#[test]
fn doctor_measures_a_simulated_camera_and_fails_a_missing_one_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sim_config_with_calibration(dir.path(), &repo().join("calibration/sim-koch.json"));
    let base = std::fs::read_to_string(&cfg).unwrap();
    let sim_cam =
        "\n[[cameras]]\nname = \"front\"\ndevice = \"sim\"\nwidth = 96\nheight = 96\nfps = 30\n";
    std::fs::write(&cfg, format!("{base}{sim_cam}")).unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("camera front"))
        .unwrap_or_else(|| panic!("no camera line in:\n{text}"));
    assert!(line.contains(" ok ") && line.contains("96x96"), "{line}");
    // The rate is measured, not echoed: "measured N fps" with N near the configured 30.
    let fps: f64 = line
        .split("measured ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no measured rate in {line}"));
    assert!((20.0..=31.0).contains(&fps), "{line}");

    // A V4L2 camera that is not there fails the doctor, naming the camera, the device and a fix.
    let gone = "\n[[cameras]]\nname = \"wrist\"\ndevice = \"/dev/video-none-here\"\nwidth = 640\nheight = 480\nfps = 30\n";
    std::fs::write(&cfg, format!("{base}{sim_cam}{gone}")).unwrap();
    let out = bin()
        .args(["doctor", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("camera wrist"))
        .unwrap_or_else(|| panic!("no camera line in:\n{text}"));
    assert!(
        line.contains("FAIL") && line.contains("/dev/video-none-here"),
        "{line}"
    );
    assert!(text.contains("fix:"), "{text}");
}
