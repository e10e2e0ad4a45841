//! The simulated camera: renderer limits, geometry against the pinhole model, the world's
//! scene, determinism, and the camera on its capture thread.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use intervened_camera::sim::render::{Primitive, Shape};
use intervened_camera::sim::world::{arm_points, fill_scene, scene_from_world};
use intervened_camera::{
    scene_channel, CameraConfig, CameraError, CaptureThread, Image, Latest, Renderer, Scene,
    SimCamera, SimCameraPose,
};
use intervened_robot::RobotConfig;
use intervened_world::World;

fn world() -> World {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    World::new(&RobotConfig::load(&p).unwrap()).unwrap()
}

fn render(pose: &SimCameraPose, w: u32, h: u32, scene: &Scene) -> Image {
    let mut r = Renderer::new(pose, w, h).unwrap();
    let mut img = Image::new(w, h);
    r.render(scene, &mut img);
    img
}

/// Centroid (pixel centres) and count of the pixels `is` accepts.
fn centroid(img: &Image, is: impl Fn([u8; 3]) -> bool) -> ([f64; 2], usize) {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
    for y in 0..img.height {
        for x in 0..img.width {
            if is(img.pixel(x, y)) {
                sx += f64::from(x) + 0.5;
                sy += f64::from(y) + 0.5;
                n += 1;
            }
        }
    }
    ([sx / n.max(1) as f64, sy / n.max(1) as f64], n)
}

fn red(p: [u8; 3]) -> bool {
    p[0] > 60 && u16::from(p[0]) > 2 * u16::from(p[1]) && u16::from(p[0]) > 2 * u16::from(p[2])
}

fn green(p: [u8; 3]) -> bool {
    p[1] > 60 && u16::from(p[1]) > 2 * u16::from(p[0]) && u16::from(p[1]) > 2 * u16::from(p[2])
}

/// The arm at zero, turned away from `+y` (the block's side in these tests).
fn arm_away(w: &World) -> Vec<f64> {
    let mut q = vec![0.0; w.arm().joint_count()];
    q[w.arm().index().shoulder_pan] = -1.2;
    q
}

#[test]
fn sizes_outside_96_to_224_are_rejected_clearly() {
    let pose = SimCameraPose::default();
    for (w, h) in [(95, 96), (96, 225), (640, 480), (0, 0)] {
        let err = Renderer::new(&pose, w, h).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, CameraError::BadSize { .. }), "{msg}");
        assert!(
            msg.contains(&format!("{w}x{h}")) && msg.contains("96..=224"),
            "{msg}"
        );
    }
    for (w, h) in [(96, 96), (224, 224), (160, 120)] {
        Renderer::new(&pose, w, h).unwrap();
    }
    let cfg = CameraConfig {
        name: "overhead".into(),
        device: "sim".into(),
        width: 300,
        height: 300,
        fps: 30,
        max_age_ms: None,
        pose: None,
    };
    let (_p, sub) = scene_channel(&Scene::default());
    let msg = SimCamera::from_config(&cfg, sub).unwrap_err().to_string();
    assert!(msg.contains("overhead") && msg.contains("300x300"), "{msg}");
}

#[test]
fn a_sphere_lands_where_the_pinhole_model_projects_its_centre() {
    for (pose, w, h) in [
        (SimCameraPose::default(), 224, 224),
        (SimCameraPose::default(), 160, 96),
        (
            // Straight down: the degenerate "up" case.
            SimCameraPose {
                position: [0.1, 0.0, 0.5],
                look_at: [0.1, 0.0, 0.0],
                vfov_deg: 40.0,
            },
            128,
            128,
        ),
    ] {
        for c in [
            [0.10f32, 0.05, 0.02],
            [0.15, -0.08, 0.06],
            [0.05, 0.0, 0.12],
        ] {
            let scene = Scene {
                primitives: vec![Primitive {
                    shape: Shape::Capsule {
                        a: c,
                        b: c,
                        radius: 0.012,
                    },
                    color: [30, 220, 40],
                }],
                ..Scene::default()
            };
            let img = render(&pose, w, h, &scene);
            let ([x, y], n) = centroid(&img, green);
            let r = Renderer::new(&pose, w, h).unwrap();
            let [px, py] = r
                .camera()
                .project([f64::from(c[0]), f64::from(c[1]), f64::from(c[2])])
                .unwrap();
            assert!(n > 10, "sphere at {c:?} covers {n} pixels");
            // A sphere's image is an ellipse centred slightly off the projected centre away
            // from the optical axis; at these fields of view a small fraction of a pixel.
            assert!(
                (x - px).abs() < 0.3 && (y - py).abs() < 0.3,
                "{w}x{h} {pose:?}: centroid ({x:.2}, {y:.2}) vs projection ({px:.2}, {py:.2})"
            );
        }
    }
}

#[test]
fn the_block_appears_at_the_projection_of_its_centre() {
    let mut w = world();
    let q = arm_away(&w);
    for (bx, by) in [(0.12, 0.05), (0.15, 0.08), (0.10, -0.02)] {
        w.place_block(bx, by);
        let scene = scene_from_world(&w, &q).unwrap();
        for side in [96u32, 224] {
            let pose = SimCameraPose::default();
            let img = render(&pose, side, side, &scene);
            let r = Renderer::new(&pose, side, side).unwrap();
            let [px, py] = r.camera().project(w.block()).unwrap();
            let ([x, y], n) = centroid(&img, red);
            assert!(n > 4, "block covers {n} pixels");
            // The visible faces of a cube (top and front) are not symmetric about its centre:
            // allow half a pixel.
            assert!(
                (x - px).abs() < 0.5 && (y - py).abs() < 0.5,
                "{side}px block at ({bx}, {by}): red centroid ({x:.2}, {y:.2}) vs projection ({px:.2}, {py:.2})"
            );
            assert!(
                red(img.pixel(px as u32, py as u32)),
                "pixel at the projection is red"
            );
        }
    }
}

#[test]
fn the_image_changes_when_the_block_moves_and_when_any_joint_moves() {
    let mut w = world();
    w.place_block(0.12, 0.03);
    let pose = SimCameraPose::default();
    let q0 = {
        let mut q = vec![0.0; w.arm().joint_count()];
        q[w.arm().index().gripper] = 0.8;
        q
    };
    let base = render(&pose, 128, 128, &scene_from_world(&w, &q0).unwrap());

    let mut moved = w.clone();
    moved.place_block(0.12, 0.05);
    let img = render(&pose, 128, 128, &scene_from_world(&moved, &q0).unwrap());
    let changed = base
        .data
        .iter()
        .zip(&img.data)
        .filter(|(a, b)| a != b)
        .count();
    assert!(changed > 30, "block move changed {changed} bytes");

    let idx = w.arm().index();
    let joints = [
        ("shoulder_pan", idx.shoulder_pan),
        ("shoulder_lift", idx.shoulder_lift),
        ("elbow_flex", idx.elbow_flex),
        ("wrist_flex", idx.wrist_flex),
        ("wrist_roll", idx.wrist_roll.unwrap()),
        ("gripper", idx.gripper),
    ];
    for (name, j) in joints {
        let mut q = q0.clone();
        q[j] += 0.3;
        let img = render(&pose, 128, 128, &scene_from_world(&w, &q).unwrap());
        let changed = base
            .data
            .iter()
            .zip(&img.data)
            .filter(|(a, b)| a != b)
            .count();
        assert!(changed > 10, "{name} +0.3 rad changed only {changed} bytes");
    }
}

#[test]
fn rendering_is_deterministic() {
    let mut w = world();
    w.reset(3);
    let mut q = vec![0.1; w.arm().joint_count()];
    q[w.arm().index().gripper] = 1.0;
    let a = scene_from_world(&w, &q).unwrap();
    let b = scene_from_world(&w, &q).unwrap();
    assert_eq!(a, b);
    let pose = SimCameraPose::default();
    let one = render(&pose, 224, 224, &a);
    // A renderer that has drawn other scenes first (its scratch buffers are in use) gives the
    // same bytes.
    let mut r = Renderer::new(&pose, 224, 224).unwrap();
    let mut img = Image::new(224, 224);
    let mut other = w.clone();
    other.place_block(0.15, -0.05);
    r.render(&scene_from_world(&other, &arm_away(&w)).unwrap(), &mut img);
    r.render(&Scene::default(), &mut img);
    r.render(&b, &mut img);
    assert_eq!(one, img);
    // fill_scene into a used scene equals a fresh one.
    let mut reused = scene_from_world(&other, &arm_away(&w)).unwrap();
    fill_scene(&w, &q, &mut reused).unwrap();
    assert_eq!(reused, a);
}

#[test]
fn drawn_arm_matches_the_world_kinematics() {
    let w = world();
    let arm = w.arm();
    let mut q = vec![0.0; arm.joint_count()];
    let idx = arm.index();
    for (pan, lift, elbow, wrist, roll, grip) in [
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (0.4, 0.3, -0.5, 0.6, 1.0, 1.2),
        (-0.7, -0.2, 0.4, -0.3, -2.0, 0.5),
    ] {
        q[idx.shoulder_pan] = pan;
        q[idx.shoulder_lift] = lift;
        q[idx.elbow_flex] = elbow;
        q[idx.wrist_flex] = wrist;
        q[idx.wrist_roll.unwrap()] = roll;
        q[idx.gripper] = grip;
        let p = arm_points(arm, &q).unwrap();
        let tip = arm.fk(&q).unwrap().pos;
        for (a, b) in p.tip.iter().zip(tip) {
            assert!((a - b).abs() < 1e-12);
        }
        let d = |a: [f64; 3], b: [f64; 3]| {
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
        };
        let [h0, l1, l2, l3] = arm.links();
        assert!((p.shoulder[2] - h0).abs() < 1e-12);
        assert!((d(p.shoulder, p.elbow) - l1).abs() < 1e-12);
        assert!((d(p.elbow, p.wrist) - l2).abs() < 1e-12);
        assert!((d(p.wrist, p.tip) - l3).abs() < 1e-12);
        assert!((d(p.jaw_tips[0], p.jaw_tips[1]) - arm.jaw_gap(grip)).abs() < 1e-12);
    }
    // Bad input is a typed error, not a panic.
    assert!(matches!(
        arm_points(arm, &[0.0; 2]),
        Err(CameraError::BadScene { .. })
    ));
}

#[test]
fn sim_camera_on_its_thread_renders_the_latest_published_scene() {
    let mut w = world();
    w.place_block(0.12, 0.0);
    let q = arm_away(&w);
    let a = scene_from_world(&w, &q).unwrap();
    w.place_block(0.14, 0.06);
    let b = scene_from_world(&w, &q).unwrap();
    let cfg = CameraConfig {
        name: "overhead".into(),
        device: "sim".into(),
        width: 96,
        height: 96,
        fps: 100,
        max_age_ms: Some(1000),
        pose: None,
    };
    cfg.validate(0).unwrap();
    let want_a = render(&cfg.sim_pose(), 96, 96, &a);
    let want_b = render(&cfg.sim_pose(), 96, 96, &b);
    let (mut publisher, subscriber) = scene_channel(&a);
    let cam = SimCamera::from_config(&cfg, subscriber).unwrap();
    let (thread, mut reader) = CaptureThread::spawn(cam, cfg.max_age()).unwrap();
    let wait_for = |reader: &mut intervened_camera::FrameReader, want: &Image| {
        let t0 = Instant::now();
        loop {
            if let Latest::Fresh { frame, .. } = reader.latest() {
                if &frame.image == want {
                    return frame.sequence;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "no matching frame");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let s_a = wait_for(&mut reader, &want_a);
    publisher.publish(&b);
    let s_b = wait_for(&mut reader, &want_b);
    assert!(s_b > s_a);
    // Paced at 100 fps: timestamps 10 ms apart per frame.
    let t0 = Instant::now();
    let mut stamps = Vec::new();
    while stamps.len() < 5 && t0.elapsed() < Duration::from_secs(5) {
        if let Some(f) = reader.latest().fresh() {
            if stamps.last().map(|(s, _)| *s) != Some(f.sequence) {
                stamps.push((f.sequence, f.timestamp_ns));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (s0, t_first) = stamps[0];
    let (s1, t_last) = *stamps.last().unwrap();
    let per_frame_ms = (t_last - t_first) as f64 / (s1 - s0) as f64 / 1e6;
    // About the rate (unpaced it would be well under 1 ms per frame): a late first stamp can
    // shorten the mean by a few ms, skipped deadlines on a loaded machine lengthen it; hence
    // the generous bounds.
    assert!(
        (7.0..=40.0).contains(&per_frame_ms),
        "paced at {per_frame_ms:.2} ms per frame, expected about 10"
    );
    assert_eq!(thread.stop(), None);
}
