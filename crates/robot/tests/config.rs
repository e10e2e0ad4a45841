//! Config loading: shipped files are valid, and every validation error names file, key and fix.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use intervened_robot::{ConfigError, OperatingMode, RobotConfig, ServoModel, TakeoverMode};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sim_text() -> String {
    std::fs::read_to_string(repo().join("robot-configs/sim-koch.toml")).unwrap()
}

#[test]
fn shipped_configs_load() {
    for name in ["koch-v1.1.toml", "sim-koch.toml", "openmanipulator-x.toml"] {
        let cfg = RobotConfig::load(&repo().join("robot-configs").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cfg.joints.is_empty());
    }
    let koch = RobotConfig::load(&repo().join("robot-configs/koch-v1.1.toml")).unwrap();
    assert_eq!(koch.joints.len(), 6);
    assert_eq!(koch.bus.baud, 1_000_000);
    assert_eq!(koch.joints[0].model, ServoModel::Xl430W250);
    assert_eq!(koch.joints[1].model, ServoModel::Xl430W250);
    assert!(koch.joints[2..]
        .iter()
        .all(|j| j.model == ServoModel::Xl330M288));
    assert_eq!(koch.joints[5].mode, OperatingMode::CurrentBasedPosition);
    assert!(koch.joints[5].gripper);
    assert_eq!(koch.teleop.takeover, TakeoverMode::Hold);
    let sim = RobotConfig::load(&repo().join("robot-configs/sim-koch.toml")).unwrap();
    assert!(sim.bus.is_sim());
    assert_eq!(sim.joint_names(), koch.joint_names());
    assert!(sim
        .calibration_path()
        .unwrap()
        .ends_with("calibration/sim-koch.json"));
}

/// Applies `edit` to the sim config text and returns the error it must produce.
fn invalid(edit: impl Fn(&str) -> String) -> ConfigError {
    let text = edit(&sim_text());
    RobotConfig::parse(&text, Path::new("robot.toml")).expect_err("edited config must be rejected")
}

fn assert_names(err: &ConfigError, key: &str, fix_part: &str) {
    let msg = err.to_string();
    assert!(msg.starts_with("robot.toml"), "no file in: {msg}");
    assert!(msg.contains(key), "no key {key} in: {msg}");
    assert!(msg.contains(fix_part), "no fix {fix_part:?} in: {msg}");
}

#[test]
fn unknown_key_is_rejected_with_line() {
    let err = invalid(|t| t.replace("baud = 1000000", "baud = 1000000\nbaudrate = 57600"));
    let msg = err.to_string();
    assert!(msg.contains("baudrate"), "{msg}");
    match err {
        ConfigError::Parse { line: Some(l), .. } => {
            let text = sim_text().replace("baud = 1000000", "baud = 1000000\nbaudrate = 57600");
            assert_eq!(text.lines().nth(l - 1).unwrap().trim(), "baudrate = 57600");
        }
        other => panic!("expected a parse error with a line, got {other:?}"),
    }
}

#[test]
fn each_validation_error_names_its_key() {
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(|t: &str| t.replace("baud = 1000000", "baud = 1000")),
            "bus.baud",
            "1000000",
        ),
        (
            Box::new(|t: &str| t.replace("protocol = 2", "protocol = 1")),
            "bus.protocol",
            "protocol = 2",
        ),
        (
            Box::new(|t: &str| t.replace("port = \"sim\"", "port = \"\"")),
            "bus.port",
            "/dev/ttyUSB0",
        ),
        (
            Box::new(|t: &str| t.replacen("id = 2", "id = 1", 1)),
            "joints[1].id",
            "its own id",
        ),
        (
            Box::new(|t: &str| t.replacen("id = 2", "id = 253", 1)),
            "joints[1].id",
            "0..=252",
        ),
        (
            Box::new(|t: &str| t.replacen("name = \"elbow_flex\"", "name = \"shoulder_pan\"", 1)),
            "joints[2].name",
            "unique",
        ),
        (
            Box::new(|t: &str| t.replacen("limits = [-1.8, 1.8]", "limits = [1.8, -1.8]", 1)),
            "joints[0].limits",
            "min below max",
        ),
        (
            Box::new(|t: &str| t.replace("rate_hz = 50", "rate_hz = 0.5")),
            "control.rate_hz",
            "30-500",
        ),
        (
            Box::new(|t: &str| t.replacen("joint = \"shoulder_pan\"", "joint = \"shoulder\"", 1)),
            "teleop.axes[0].joint",
            "shoulder_pan",
        ),
        (
            Box::new(|t: &str| t.replacen("rad_per_s = 1.0", "rad_per_s = 0.0", 1)),
            "teleop.axes[0].rad_per_s",
            "non-zero",
        ),
        (
            Box::new(|t: &str| t.replace("deadzone = 0.1", "deadzone = 1.5")),
            "teleop.deadzone",
            "0.05-0.15",
        ),
        (
            Box::new(|t: &str| t.replace("success = \"south\"", "success = \"start\"")),
            "teleop.buttons",
            "its own button",
        ),
        (
            Box::new(|t: &str| t.replace("flush_ms = 100", "flush_ms = 0")),
            "recording.flush_ms",
            "100 ms",
        ),
        (
            Box::new(|t: &str| t.replace("max_step_rad = 0.05", "max_step_rad = 2.0")),
            "safety.max_step_rad",
            "0.05",
        ),
        (
            Box::new(|t: &str| t.replace("fault_ticks = 5", "fault_ticks = 0")),
            "safety.fault_ticks",
            "5 ticks",
        ),
        (
            Box::new(|t: &str| t.replace("episode_seconds = 10.0", "episode_seconds = -1.0")),
            "sim",
            "Koch defaults",
        ),
    ];
    for (edit, key, fix) in cases {
        let err = invalid(edit);
        assert!(matches!(err, ConfigError::Invalid { .. }), "{key}: {err}");
        assert_names(&err, key, fix);
    }
}

#[test]
fn invalid_error_points_at_the_line() {
    let text = sim_text().replacen("id = 2", "id = 1", 1);
    let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
    let ConfigError::Invalid { line: Some(l), .. } = err else {
        panic!("no line in {err:?}")
    };
    assert_eq!(text.lines().nth(l - 1).unwrap().trim(), "id = 1");
    // The second joint's id line, not the first's.
    let first_id_line = text.lines().position(|x| x.trim() == "id = 1").unwrap() + 1;
    assert!(l > first_id_line);
}

#[test]
fn bad_enum_values_name_the_choices() {
    let err = invalid(|t| t.replacen("model = \"XL430-W250\"", "model = \"XL999\"", 1));
    let msg = err.to_string();
    assert!(msg.contains("XL999") && msg.contains("XL430-W250"), "{msg}");
    let err = invalid(|t| t.replace("takeover = \"hold\"", "takeover = \"press\""));
    let msg = err.to_string();
    assert!(msg.contains("hold") && msg.contains("toggle"), "{msg}");
}

#[test]
fn missing_file_names_the_path() {
    let err = RobotConfig::load(Path::new("/nonexistent/robot.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/robot.toml"));
}

/// Asserts `err` is a validation error for `key`, at the line holding `line_text`, with a fix.
fn assert_invalid_at(text: &str, err: &ConfigError, key: &str, line_text: &str, fix_part: &str) {
    assert_names(err, key, fix_part);
    let msg = err.to_string();
    assert!(msg.contains("\n  fix: "), "no fix line in: {msg}");
    let ConfigError::Invalid { line: Some(l), .. } = err else {
        panic!("expected a validation error with a line, got {err:?}")
    };
    assert_eq!(text.lines().nth(l - 1).unwrap().trim(), line_text, "{msg}");
}

#[test]
fn fixed_size_arrays_must_have_exactly_their_length() {
    // joints[].limits is [min, max]: a third value used to be dropped silently.
    for (bad, count) in [
        ("limits = [-2.2, 3.0, 2.2]", "3 values"),
        ("limits = [-2.2]", "1 value,"),
        ("limits = []", "0 values"),
    ] {
        let text = sim_text().replacen("limits = [-2.2, 2.2]", bad, 1);
        let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
        assert_invalid_at(&text, &err, "joints[2].limits", bad, "limits = [min, max]");
        let msg = err.to_string();
        assert!(msg.contains(count) && msg.contains("exactly 2"), "{msg}");
    }
    // sim.links_m takes four lengths.
    for (bad, count) in [
        ("links_m = [0.055, 0.108, 0.100, 0.105, 0.2]", "5 values"),
        ("links_m = [0.055, 0.108, 0.100]", "3 values"),
    ] {
        let text = sim_text().replace("links_m = [0.055, 0.108, 0.100, 0.105]", bad);
        let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
        assert_invalid_at(&text, &err, "sim.links_m", bad, "links_m = [");
        let msg = err.to_string();
        assert!(msg.contains(count) && msg.contains("exactly 4"), "{msg}");
    }
    // The right lengths still load.
    RobotConfig::parse(&sim_text(), Path::new("robot.toml")).unwrap();
}

#[test]
fn fixed_size_arrays_are_strict_under_plain_serde_too() {
    // Even when the config is deserialized without `RobotConfig::parse`, extra values are an
    // error, never dropped.
    let text = sim_text().replacen("limits = [-2.2, 2.2]", "limits = [-2.2, 3.0, 2.2]", 1);
    let err = toml::from_str::<RobotConfig>(&text).unwrap_err();
    assert!(err.message().contains("exactly 2"), "{err}");
}

#[test]
fn unreadable_config_names_the_file_once_with_a_fix() {
    let err = RobotConfig::load(Path::new("/nonexistent/robot.toml")).unwrap_err();
    let msg = anyhow_like(&err);
    assert_eq!(msg.matches("os error 2").count(), 1, "{msg}");
    assert!(msg.contains("\n  fix: "), "{msg}");
}

/// The message and its `source()` chain, as `anyhow`'s `{:#}` prints it.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// `[sim.faults]`: absent means no faults; every key parses; bad values name their key, line
/// and fix; unknown keys are refused.
#[test]
fn sim_faults_parse_and_validate() {
    let cfg = RobotConfig::parse(&sim_text(), Path::new("robot.toml")).unwrap();
    assert_eq!(cfg.sim.faults, intervened_robot::SimFaults::default());
    assert!(!cfg.sim.faults.any());

    let faults = "\n[sim.faults]\ncorrupt_crc_rate = 0.01\ndrop_reply_rate = 0.02\n\
                  late_reply_rate = 0.005\nlate_reply_ms = 40\nseed = 3\nunplug_at_s = 30.0\n\
                  unplug_for_s = 2.5\nsilent_servo = 4\nsilent_at_s = 60.0\nsilent_for_s = 3.0\n";
    let text = format!("{}{faults}", sim_text());
    let f = RobotConfig::parse(&text, Path::new("robot.toml"))
        .unwrap()
        .sim
        .faults;
    assert!(f.any());
    assert_eq!(
        (f.corrupt_crc_rate, f.drop_reply_rate, f.late_reply_rate),
        (0.01, 0.02, 0.005)
    );
    assert_eq!((f.late_reply_ms, f.seed), (40, 3));
    assert_eq!((f.unplug_at_s, f.unplug_for_s), (Some(30.0), 2.5));
    assert_eq!(
        (f.silent_servo, f.silent_at_s, f.silent_for_s),
        (Some(4), Some(60.0), 3.0)
    );

    for (line, key, fix) in [
        (
            "corrupt_crc_rate = 1.5",
            "sim.faults.corrupt_crc_rate",
            "0.01",
        ),
        (
            "drop_reply_rate = -0.1",
            "sim.faults.drop_reply_rate",
            "0.01",
        ),
        ("late_reply_ms = 20000", "sim.faults.late_reply_ms", "50"),
        ("unplug_at_s = -1.0", "sim.faults.unplug_at_s", "seconds"),
    ] {
        let text = format!("{}\n[sim.faults]\n{line}\n", sim_text());
        let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
        assert_invalid_at(&text, &err, key, line, fix);
    }
    let text = format!(
        "{}\n[sim.faults]\nsilent_servo = 9\nsilent_at_s = 1.0\n",
        sim_text()
    );
    let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
    assert_invalid_at(
        &text,
        &err,
        "sim.faults.silent_servo",
        "silent_servo = 9",
        "ids",
    );
    let text = format!("{}\n[sim.faults]\nsilent_servo = 2\n", sim_text());
    let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
    assert_names(&err, "sim.faults.silent_servo", "silent_at_s");
    let text = format!("{}\n[sim.faults]\ncrc_rate = 0.1\n", sim_text());
    let err = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap_err();
    assert!(err.to_string().contains("crc_rate"), "{err}");
}

#[test]
fn cameras_parse_and_a_bad_one_names_its_key_and_line() {
    let cams = "\n[[cameras]]\nname = \"front\"\ndevice = \"sim\"\nwidth = 96\nheight = 96\nfps = 30\n\n[[cameras]]\nname = \"wrist\"\ndevice = \"/dev/video0\"\nwidth = 640\nheight = 480\nfps = 30\nmax_age_ms = 200\n";
    let text = format!("{}{cams}", sim_text());
    let cfg = RobotConfig::parse(&text, Path::new("robot.toml")).unwrap();
    assert_eq!(cfg.cameras.len(), 2);
    assert_eq!(cfg.cameras[0].feature_key(), "observation.images.front");
    assert_eq!(cfg.cameras[1].max_age().as_millis(), 200);
    // Without [[cameras]] there are none: nothing changes for existing configs.
    assert!(RobotConfig::parse(&sim_text(), Path::new("robot.toml"))
        .unwrap()
        .cameras
        .is_empty());

    // The second camera's fps is out of range: the error names cameras[1].fps at its line.
    let bad = text.replacen("fps = 30\nmax_age_ms", "fps = 500\nmax_age_ms", 1);
    let err = RobotConfig::parse(&bad, Path::new("robot.toml")).unwrap_err();
    assert_invalid_at(&bad, &err, "cameras[1].fps", "fps = 500", "frame rate");
    assert!(err.to_string().contains("(wrist)"), "{err}");

    // A camera typo is an unknown key, not a silent default.
    let typo = text.replacen("max_age_ms = 200", "max_age = 200", 1);
    let msg = RobotConfig::parse(&typo, Path::new("robot.toml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("max_age"), "{msg}");
}
