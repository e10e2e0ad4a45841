//! Shared test fixtures: a small arm and deterministic frames.
#![allow(dead_code)]

use intervened_episodes::{ControlSource, EpisodeMeta, Frame};

pub const JOINTS: [&str; 3] = ["shoulder_pan", "elbow_flex", "gripper"];

pub fn meta(session: &str, idx: u32) -> EpisodeMeta {
    EpisodeMeta {
        session_id: session.to_string(),
        episode_index: idx,
        robot_name: "test-arm".into(),
        robot_type: "koch_v1.1".into(),
        joint_names: JOINTS.iter().map(|s| s.to_string()).collect(),
        task_feature_names: vec!["block.x".into(), "block.y".into()],
        fps: 50.0,
        policy_version: Some("v3".into()),
        task: "pick up the block".into(),
        demo: false,
        started_at: 1_700_000_000_000_000_000,
        cameras: Vec::new(),
        monotonic_start_ns: None,
    }
}

/// A frame whose every value is derived from `i`, so a read-back can be checked exactly.
pub fn frame(i: u64, source: ControlSource) -> Frame {
    let x = i as f64;
    Frame {
        tick: 1000 + i,
        t: x / 50.0,
        q: vec![x * 0.01, -x * 0.02, 0.5],
        qd: vec![0.1, 0.2, 0.3],
        current: vec![10.0 + x, 20.0, 30.0],
        goal: vec![x * 0.01 + 0.001, -x * 0.02, 0.4],
        source,
        proposal: if i % 4 == 3 {
            None
        } else {
            Some(vec![x, x + 1.0, x + 2.0])
        },
        doubt: if i.is_multiple_of(2) {
            Some(x / 100.0)
        } else {
            None
        },
        pad_axes: vec![0.0, (x / 100.0).min(1.0)],
        pad_buttons: (i % 8) as u32,
        task: vec![0.2 + x * 1e-3, -0.1],
    }
}

/// The control-source pattern used across tests: robot, takeover, robot, takeover, robot.
pub fn source_at(i: u64) -> ControlSource {
    match i {
        20..=29 => ControlSource::Intervention,
        45..=49 => ControlSource::Intervention,
        _ => ControlSource::Robot,
    }
}

pub fn frames(n: u64) -> Vec<Frame> {
    (0..n).map(|i| frame(i, source_at(i))).collect()
}

/// A temp dir on tmpfs when there is one: the recorder fsyncs a lot, and on a busy shared
/// disk each fsync costs milliseconds that say nothing about the code under test.
pub fn tmp() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// A deterministic test image: a colour gradient with a white square that moves with `i`, so
/// consecutive images differ and a wrong frame is caught by PSNR.
pub fn synthetic_image(i: u64, width: u32, height: u32) -> intervened_camera::Image {
    let mut img = intervened_camera::Image::new(width, height);
    let side = (width.min(height) / 4).max(2);
    let sx = (i as u32 * 7) % (width - side);
    let sy = (i as u32 * 3) % (height - side);
    for y in 0..height {
        for x in 0..width {
            let k = ((y * width + x) * 3) as usize;
            let bg = [
                (x * 255 / width) as f64,
                (y * 255 / height) as f64,
                ((i * 9) % 200) as f64 + 30.0,
            ];
            // A soft edge (3 px), as a real lens gives: a hard one-pixel edge on a tiny image
            // is all that 4:2:0 chroma subsampling loses, in JPEG and in video alike.
            let (x, y) = (x as f64, y as f64);
            let (x0, y0, s) = (sx as f64, sy as f64, side as f64);
            let d = (x - x0)
                .min(x0 + s - 1.0 - x)
                .min(y - y0)
                .min(y0 + s - 1.0 - y);
            let a = ((d + 1.0) / 3.0).clamp(0.0, 1.0);
            for (c, v) in bg.iter().enumerate() {
                img.data[k + c] = (v * (1.0 - a) + 255.0 * a).round() as u8;
            }
        }
    }
    img
}

/// Test cameras: `front` 64x48 and `wrist` 32x32, both 25 fps.
pub fn cameras() -> Vec<intervened_episodes::CameraInfo> {
    vec![
        intervened_episodes::CameraInfo::new("front", 64, 48, 25.0),
        intervened_episodes::CameraInfo::new("wrist", 32, 32, 25.0),
    ]
}

/// Monotonic time of `t = 0` in test episodes with cameras.
pub const MONO0: u64 = 5_000_000_000;

/// Capture time of image `k` of a 25 fps test camera.
pub fn image_ns(k: u64) -> u64 {
    MONO0 + k * 40_000_000
}

/// Writes episode `session`/`idx` with [`cameras`]: `n` frames at 50 fps, one image per
/// camera every other frame (written before the frame that uses it; frame i uses image i / 2,
/// which is [`synthetic_image`]`(i / 2 + 100 c)` for camera c), a flush every `flush_every`
/// frames. Returns the episode's meta.
pub fn write_with_images(
    root: &std::path::Path,
    session: &str,
    idx: u32,
    n: u64,
    flush_every: u64,
) -> EpisodeMeta {
    let mut m = meta(session, idx);
    m.cameras = cameras();
    m.monotonic_start_ns = Some(MONO0);
    let mut w = intervened_episodes::EpisodeWriter::create(root, &m).unwrap();
    for (i, f) in frames(n).iter().enumerate() {
        let i = i as u64;
        let k = i / 2;
        if i.is_multiple_of(2) {
            for (c, cam) in m.cameras.iter().enumerate() {
                let img = synthetic_image(k + c as u64 * 100, cam.width, cam.height);
                let jpeg = intervened_camera::encode_jpeg(&img, 95).unwrap();
                w.write_jpeg(c, image_ns(k), None, &jpeg).unwrap();
            }
        }
        // Camera 1 has no image for the first frame.
        let wrist = if i == 0 { 0 } else { image_ns(k) };
        w.write_frame_with_images(f, &[image_ns(k), wrist]).unwrap();
        if i % flush_every == flush_every - 1 {
            w.flush().unwrap();
        }
    }
    w.finish(intervened_episodes::Outcome::Success, 0, 0)
        .unwrap();
    m
}
