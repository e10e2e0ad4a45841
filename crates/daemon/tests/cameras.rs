//! Cameras in the loop: a rendered camera on the simulated robot feeds an image policy, in
//! lockstep, and a policy that needs a camera the robot lacks is refused at start.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod common;

use common::python_image_policy;
use intervened_daemon::runtime::{self, RunOptions};
use intervened_robot::RobotConfig;

fn config_with_camera(extra: &str) -> RobotConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let cam = format!(
        "\n[[cameras]]\nname = \"front\"\ndevice = \"sim\"\nwidth = 96\nheight = 96\nfps = 30\n{extra}"
    );
    let mut cfg = RobotConfig::parse(&format!("{text}{cam}"), &p).unwrap();
    cfg.source = Some(p);
    cfg.teleop.require_gamepad = false;
    cfg
}

#[test]
fn a_rendered_camera_drives_an_image_policy_in_lockstep() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("pixels");
    python_image_policy(&policy, "pixels", "front", 96, 96);
    let mut cfg = config_with_camera("");
    cfg.sim.episode_seconds = 2.0;
    let run = |data: &Path| {
        runtime::run(
            cfg.clone(),
            RunOptions {
                data: Some(data.to_path_buf()),
                policy: Some(policy.clone()),
                episodes: Some(1),
                seed: Some(3),
                ..RunOptions::default()
            },
        )
        .unwrap()
    };
    let r = run(&dir.path().join("a"));
    let lr = &r.loop_report;
    assert_eq!(lr.episodes.len(), 1);
    // Every tick of the episode had a fresh image and an action: no Hold, no starvation.
    assert_eq!(lr.holds_entered, 0, "a Hold during the episode");
    assert!(lr.policy_actions >= 99, "{} actions", lr.policy_actions);
    // The images were not black: shoulder_pan crept forward by 0.01 rad x brightness a tick.
    let session = intervened_episodes::layout::session_dir(
        &dir.path().join("a"),
        r.session_id.as_ref().unwrap(),
    );
    let files = intervened_episodes::layout::episode_files(&session).unwrap();
    assert_eq!(files.len(), 1);
    let ep = intervened_episodes::read_episode(&files[0].1).unwrap();
    // The rendered images are in the file, 30 fps in simulated time, and every frame names
    // the image its policy step saw.
    assert_eq!(ep.meta.cameras.len(), 1);
    assert_eq!(ep.images.len(), 1);
    let imgs = &ep.images[0].images;
    let secs = ep.frames.len() as f64 / 50.0;
    assert!(
        (imgs.len() as f64 - 30.0 * secs).abs() <= 2.0,
        "{} images in {secs} s",
        imgs.len()
    );
    assert_eq!(ep.image_capture_ns.len(), ep.frames.len());
    for (i, stamps) in ep.image_capture_ns.iter().enumerate() {
        let ns = stamps[0];
        assert!(ns > 0, "frame {i} saw no image");
        assert!(
            imgs.iter().any(|im| im.capture_ns == ns),
            "frame {i}'s image ({ns}) is not in the file"
        );
    }
    // An image is never from the future of the frame that used it (log times on one timeline).
    let first = ep.frames.first().unwrap().goal[0];
    let last = ep.frames.last().unwrap().goal[0];
    assert!(last - first > 0.05, "shoulder_pan moved {first} -> {last}");
    // Lockstep: the same seed renders the same images and gives the same run.
    let r2 = run(&dir.path().join("b"));
    assert_eq!(r2.loop_report.policy_actions, lr.policy_actions);
}

#[test]
fn an_image_policy_is_refused_without_its_camera() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("pixels");
    python_image_policy(&policy, "pixels", "wrist", 96, 96);
    let cfg = config_with_camera("");
    let err = runtime::run(
        cfg,
        RunOptions {
            data: Some(dir.path().join("data")),
            policy: Some(policy),
            episodes: Some(1),
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("wrist") && msg.contains("[[cameras]]"),
        "{msg}"
    );
}
