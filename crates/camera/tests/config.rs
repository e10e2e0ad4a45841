//! `[[cameras]]` parsing and validation.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use intervened_camera::config::is_valid_name;
use intervened_camera::{validate_cameras, CameraConfig, CameraDevice, ConfigError, SimCameraPose};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Doc {
    cameras: Vec<CameraConfig>,
}

fn parse(toml_text: &str) -> Vec<CameraConfig> {
    toml::from_str::<Doc>(toml_text).unwrap().cameras
}

const GOOD: &str = r#"
[[cameras]]
name = "front"
device = "/dev/video0"
width = 640
height = 480
fps = 30

[[cameras]]
name = "overhead"
device = "sim"
width = 128
height = 96
fps = 15
max_age_ms = 250
pose = { position = [0.3, 0.0, 0.5], look_at = [0.1, 0.0, 0.0], vfov_deg = 60.0 }
"#;

#[test]
fn parses_and_validates_a_camera_list() {
    let cams = parse(GOOD);
    validate_cameras(&cams).unwrap();
    assert_eq!(cams[0].device(), CameraDevice::V4l2("/dev/video0".into()));
    assert_eq!(cams[0].feature_key(), "observation.images.front");
    // Default: three periods, rounded up to a millisecond.
    assert_eq!(cams[0].max_age(), Duration::from_millis(100));
    assert_eq!(cams[0].sim_pose(), SimCameraPose::default());
    assert_eq!(cams[1].device(), CameraDevice::Sim);
    assert_eq!(cams[1].max_age(), Duration::from_millis(250));
    assert_eq!(
        cams[1].sim_pose(),
        SimCameraPose {
            position: [0.3, 0.0, 0.5],
            look_at: [0.1, 0.0, 0.0],
            vfov_deg: 60.0
        }
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let err = toml::from_str::<Doc>(
        "[[cameras]]\nname = \"a\"\ndevice = \"sim\"\nwidth = 96\nheight = 96\nfps = 30\nfourcc = \"MJPG\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("fourcc"), "{err}");
}

fn cam() -> CameraConfig {
    parse(GOOD).remove(0)
}

fn sim() -> CameraConfig {
    parse(GOOD).remove(1)
}

fn problem(c: &CameraConfig) -> (String, String) {
    match c.validate(3).unwrap_err() {
        e @ ConfigError::Invalid { key, .. } => (key.to_string(), e.to_string()),
    }
}

#[test]
fn names_must_be_identifiers() {
    for good in ["front", "wrist_left", "_x", "Cam2"] {
        assert!(is_valid_name(good), "{good}");
    }
    for bad in [
        "",
        "front-left",
        "2cam",
        "a.b",
        "with space",
        "ü",
        &"x".repeat(65),
    ] {
        assert!(!is_valid_name(bad), "{bad}");
        let mut c = cam();
        c.name = bad.to_string();
        let (key, msg) = problem(&c);
        assert_eq!(key, "name");
        assert!(
            msg.contains("cameras[3]") && msg.contains("observation.images."),
            "{msg}"
        );
        assert!(msg.contains("fix:"), "{msg}");
    }
}

/// A change to a valid config.
type Edit = Box<dyn Fn(&mut CameraConfig)>;

#[test]
fn sizes_rates_and_ages_are_checked_with_clear_messages() {
    let cases: Vec<(Edit, bool, &str, &str)> = vec![
        (Box::new(|c| c.width = 8), false, "width", "16..=4096"),
        (Box::new(|c| c.height = 5000), false, "height", "16..=4096"),
        (Box::new(|c| c.width = 641), false, "width", "odd"),
        (Box::new(|c| c.fps = 0), false, "fps", "1..=120"),
        (Box::new(|c| c.fps = 500), false, "fps", "1..=120"),
        (
            Box::new(|c| c.max_age_ms = Some(10)),
            false,
            "max_age_ms",
            "34..=10000",
        ),
        (
            Box::new(|c| c.device = "video0".into()),
            false,
            "device",
            "absolute",
        ),
        (
            Box::new(|c| c.pose = Some(SimCameraPose::default())),
            false,
            "pose",
            "only a simulated",
        ),
        (Box::new(|c| c.width = 95), true, "width", "96..=224"),
        (Box::new(|c| c.height = 225), true, "height", "96..=224"),
        (
            Box::new(|c| {
                c.pose = Some(SimCameraPose {
                    vfov_deg: 170.0,
                    ..SimCameraPose::default()
                })
            }),
            true,
            "pose",
            "vfov_deg",
        ),
        (
            Box::new(|c| {
                c.pose = Some(SimCameraPose {
                    position: [0.1, 0.0, 0.0],
                    look_at: [0.1, 0.0, 0.0],
                    vfov_deg: 50.0,
                })
            }),
            true,
            "pose",
            "look_at equals position",
        ),
    ];
    for (edit, on_sim, want_key, want_text) in cases {
        let mut c = if on_sim { sim() } else { cam() };
        edit(&mut c);
        let (key, msg) = problem(&c);
        assert_eq!(key, want_key, "{msg}");
        assert!(msg.contains(want_text), "{msg} should mention {want_text}");
    }
    // The edges are accepted.
    let mut c = sim();
    c.width = 96;
    c.height = 224;
    c.validate(0).unwrap();
    let mut c = cam();
    c.max_age_ms = Some(34);
    c.validate(0).unwrap();
}

#[test]
fn names_and_devices_are_unique_in_a_list() {
    let mut cams = parse(GOOD);
    cams[1].name = "front".into();
    let err = validate_cameras(&cams).unwrap_err().to_string();
    assert!(
        err.contains("cameras[1]") && err.contains("also the name of cameras[0]"),
        "{err}"
    );

    let mut cams = parse(GOOD);
    let mut second = cams[0].clone();
    second.name = "side".into();
    cams.push(second);
    let err = validate_cameras(&cams).unwrap_err().to_string();
    assert!(
        err.contains("/dev/video0 is also the device of cameras[0]"),
        "{err}"
    );

    // Several simulated cameras are fine.
    let mut cams = parse(GOOD);
    let mut second = cams[1].clone();
    second.name = "overhead2".into();
    cams.push(second);
    validate_cameras(&cams).unwrap();
}
