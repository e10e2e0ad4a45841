//! Calibration: LeRobot JSON import, tick/radian round trips in both drive modes, and rejection
//! of files that do not fit the config.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use intervened_robot::{Calibration, JointCalibration, RobotConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sim_config() -> RobotConfig {
    RobotConfig::load(&repo().join("robot-configs/sim-koch.toml")).unwrap()
}

/// A calibration file exactly as LeRobot writes it for a Koch follower.
const LEROBOT_KOCH: &str = r#"{
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1024, "range_min": 1200, "range_max": 2900},
    "shoulder_lift": {"id": 2, "drive_mode": 1, "homing_offset": 512, "range_min": 900, "range_max": 3100},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 0, "range_min": 700, "range_max": 3400},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 3072, "range_min": 900, "range_max": 3200},
    "wrist_roll": {"id": 5, "drive_mode": 1, "homing_offset": -2048, "range_min": 10, "range_max": 4080},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 100, "range_min": 2000, "range_max": 3000}
}"#;

#[test]
fn shipped_sim_calibration_loads() {
    let cfg = sim_config();
    let cal = Calibration::load(&cfg.calibration_path().unwrap(), &cfg).unwrap();
    assert_eq!(cal.joints.len(), 6);
    let limits = cal.joint_limits(&cfg, Path::new("x")).unwrap();
    for (l, j) in limits.iter().zip(&cfg.joints) {
        assert!(l[0] >= j.limits[0] && l[1] <= j.limits[1]);
    }
}

#[test]
fn lerobot_json_imports_unchanged_in_config_order() {
    let cfg = sim_config();
    let cal = Calibration::parse(LEROBOT_KOCH, Path::new("koch.json"), &cfg).unwrap();
    let names: Vec<_> = cal.joints.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, cfg.joint_names());
    assert_eq!(
        *cal.get("shoulder_lift").unwrap(),
        JointCalibration {
            id: 2,
            drive_mode: 1,
            homing_offset: 512,
            range_min: 900,
            range_max: 3100
        }
    );
    // Writing it back gives the same JSON values.
    let again = Calibration::parse(&cal.to_json(), Path::new("again.json"), &cfg).unwrap();
    assert_eq!(again, cal);
}

#[test]
fn ticks_radians_round_trip_both_drive_modes() {
    for drive_mode in [0u8, 1] {
        for offset in [-3000, -1024, 0, 77, 2048, 1_000_000] {
            let c = JointCalibration {
                id: 1,
                drive_mode,
                homing_offset: offset,
                range_min: 0,
                range_max: 4095,
            };
            for raw in (-70_000..70_000)
                .step_by(37)
                .chain([0, 2048 - offset, 4095])
            {
                let q = c.ticks_to_rad(raw);
                assert_eq!(
                    c.rad_to_ticks(q),
                    raw,
                    "mode {drive_mode} offset {offset} raw {raw}"
                );
            }
            // rad -> ticks -> rad stays within half a tick.
            for i in -300..300 {
                let q = i as f64 * 0.0131;
                let back = c.ticks_to_rad(c.rad_to_ticks(q));
                assert!((back - q).abs() <= std::f64::consts::PI / 4096.0 + 1e-12);
            }
        }
    }
}

#[test]
fn drive_mode_reverses_direction_and_offset_centres() {
    let fwd = JointCalibration {
        id: 1,
        drive_mode: 0,
        homing_offset: 100,
        range_min: 0,
        range_max: 4095,
    };
    let rev = JointCalibration {
        drive_mode: 1,
        ..fwd
    };
    // raw + offset = 2048 is the middle pose in both modes.
    assert_eq!(fwd.ticks_to_rad(1948), 0.0);
    assert_eq!(rev.ticks_to_rad(1948), 0.0);
    // A quarter turn of raw ticks is +pi/2 normally and -pi/2 reversed.
    assert!((fwd.ticks_to_rad(1948 + 1024) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    assert!((rev.ticks_to_rad(1948 + 1024) + std::f64::consts::FRAC_PI_2).abs() < 1e-12);
    // The reversed range is mirrored.
    let r = JointCalibration {
        range_min: 1024,
        range_max: 2048,
        ..rev
    }
    .range_rad();
    assert!((r[0] - 0.0).abs() < 1e-12 && (r[1] - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
}

fn rejects(from: &str, to: &str, with: &str, key: &str) {
    let cfg = sim_config();
    let edit = format!("{from} => {to}");
    let text = LEROBOT_KOCH.replacen(from, to, 1);
    assert_ne!(text, LEROBOT_KOCH, "edit {edit} did not apply");
    let err = Calibration::parse(&text, Path::new("cal.json"), &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("cal.json"), "{err}");
    assert!(err.contains(with), "{edit}: {err}");
    assert!(err.contains(key), "{edit}: {err}");
    assert!(err.contains("fix"), "{edit}: {err}");
}

#[test]
fn bad_files_are_rejected_clearly() {
    rejects(
        r#""id": 3, "#,
        r#""id": 9, "#,
        "servo id 3",
        "elbow_flex.id",
    );
    rejects(
        r#""drive_mode": 1, "homing_offset": 512"#,
        r#""drive_mode": 2, "homing_offset": 512"#,
        "is 2",
        "shoulder_lift.drive_mode",
    );
    rejects(
        r#""homing_offset": 100"#,
        r#""homing_offset": 2000000"#,
        "outside",
        "gripper.homing_offset",
    );
    rejects(
        r#""range_min": 2000, "range_max": 3000"#,
        r#""range_min": 3000, "range_max": 2000"#,
        "not below",
        "gripper.range_min",
    );
    rejects(
        r#""range_max": 3000"#,
        r#""range_max": 5000"#,
        "outside 0..=4095",
        "gripper.range_max",
    );
    rejects(
        r#""wrist_roll""#,
        r#""wrist_rol""#,
        "is missing",
        "wrist_roll",
    );
    rejects(
        r#""id": 6,"#,
        r#""id": 6, "offset": 1,"#,
        "unknown field",
        "offset",
    );
}

#[test]
fn extra_joint_is_rejected() {
    let cfg = sim_config();
    let text = LEROBOT_KOCH.replacen('{', r#"{"elbow2": {"id": 7, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 4095},"#, 1);
    let err = Calibration::parse(&text, Path::new("cal.json"), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("elbow2") && err.contains("not a joint"),
        "{err}"
    );
}

#[test]
fn save_is_atomic_and_round_trips() {
    let cfg = sim_config();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cal.json");
    let cal = Calibration::parse(LEROBOT_KOCH, Path::new("x"), &cfg).unwrap();
    cal.save(&path).unwrap();
    assert!(!dir.path().join("cal.json.tmp").exists());
    assert_eq!(Calibration::load(&path, &cfg).unwrap(), cal);
}

#[test]
fn missing_calibration_is_one_error_naming_the_file_with_a_fix() {
    let mut cfg = sim_config();
    cfg.source = Some(PathBuf::from("/etc/intervened/robot.toml"));
    let missing = Path::new("/nonexistent/cal.json");
    let err = Calibration::load(missing, &cfg).unwrap_err();
    // What `{:#}` (anyhow, the daemon's and doctor's output) prints: the message and its chain.
    let mut msg = err.to_string();
    let mut cur = std::error::Error::source(&err);
    while let Some(c) = cur {
        msg.push_str(&format!(": {c}"));
        cur = c.source();
    }
    assert!(msg.starts_with("/nonexistent/cal.json: "), "{msg}");
    assert_eq!(
        msg.matches("os error").count(),
        1,
        "OS error repeated: {msg}"
    );
    let (_, fix) = msg.split_once("\n  fix: ").expect("a fix line");
    assert!(
        fix.contains("intervened calibrate --config /etc/intervened/robot.toml")
            && fix.contains("`calibration`"),
        "{msg}"
    );
}
