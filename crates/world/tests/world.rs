// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use intervened_robot::SensorSource;
use intervened_world::{Expert, World, WorldError, WorldSensor, FEATURE_NAMES, PITCH_DOWN};

/// Joint vector with the tip at `p` (tool down) and the gripper at `grip`.
fn pose(world: &World, p: [f64; 3], grip: f64) -> Vec<f64> {
    let arm = world.arm();
    let a = arm.ik(p, PITCH_DOWN).unwrap();
    arm.compose(a, 0.0, grip, &vec![0.0; arm.joint_count()])
}

#[test]
fn reset_places_the_block_in_the_spawn_region_deterministically() {
    let cfg = config();
    let mut w = World::new(&cfg).unwrap();
    let p = w.params().clone();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..1000 {
        w.reset(seed);
        let [x, y, z] = w.block();
        let r = x.hypot(y);
        let yaw = y.atan2(x);
        assert!(
            r >= p.spawn_radius_m[0] && r <= p.spawn_radius_m[1],
            "r {r}"
        );
        assert!(
            yaw >= p.spawn_yaw_rad[0] && yaw <= p.spawn_yaw_rad[1],
            "yaw {yaw}"
        );
        assert_eq!(z, p.rest_z());
        assert!(!w.grasped() && !w.success() && w.elapsed() == 0.0);
        seen.insert(x.to_bits());
    }
    assert!(seen.len() > 990, "seeds must spread the block");
    w.reset(42);
    let a = w.block();
    w.reset(43);
    w.reset(42);
    assert_eq!(a.map(f64::to_bits), w.block().map(f64::to_bits));
    // World::new uses [sim] seed.
    let mut fresh = World::new(&cfg).unwrap();
    let b = fresh.block();
    fresh.reset(cfg.sim.seed);
    assert_eq!(b, fresh.block());
}

#[test]
fn grasp_lift_success_and_drop() {
    let cfg = config();
    let dt = cfg.period_s();
    let mut w = World::new(&cfg).unwrap();
    w.place_block(0.13, 0.03);
    let b = w.block();
    let contact = w.contact_opening();
    // Open jaws around the block: armed, not grasped.
    let open = pose(&w, b, 1.4);
    assert!(w.gripper_stop().is_none());
    w.step(&open, dt).unwrap();
    assert!(!w.grasped());
    assert_eq!(w.gripper_stop(), Some(contact));
    // Close onto it.
    let ev = w.step(&pose(&w, b, contact), dt).unwrap();
    assert!(ev.grasped && w.grasped());
    assert_eq!(w.features()[3], 1.0);
    // Lift 3 cm: follows, not yet a success.
    let ev = w
        .step(&pose(&w, [b[0], b[1], b[2] + 0.03], contact), dt)
        .unwrap();
    assert!(!ev.succeeded && !w.success());
    assert!((w.block()[2] - (b[2] + 0.03)).abs() < 1e-9);
    // Squeezing further (servo not stopped) keeps the grip.
    let ev = w
        .step(&pose(&w, [b[0] - 0.01, b[1], b[2] + 0.06], 0.2), dt)
        .unwrap();
    assert!(ev.succeeded && w.success());
    assert!(
        (w.block()[0] - (b[0] - 0.01)).abs() < 1e-9,
        "block follows the tip sideways"
    );
    // Slightly relaxing the grip is not a release (hysteresis) ...
    w.step(&pose(&w, [b[0], b[1], b[2] + 0.06], contact + 0.1), dt)
        .unwrap();
    assert!(w.grasped());
    // ... opening is: it drops straight onto the table.
    let ev = w
        .step(&pose(&w, [b[0], b[1], b[2] + 0.06], 1.4), dt)
        .unwrap();
    assert!(ev.released && !w.grasped());
    assert_eq!(w.block()[2], w.params().rest_z());
    assert!((w.block()[0] - b[0]).abs() < 1e-9);
    assert!(w.success(), "success is latched");
}

#[test]
fn no_grasp_without_open_jaws_around_the_block() {
    let cfg = config();
    let dt = cfg.period_s();
    let mut w = World::new(&cfg).unwrap();
    w.place_block(0.12, -0.02);
    let b = w.block();
    // Descending on closed jaws.
    for z in [0.06, 0.04, 0.02, b[2]] {
        w.step(&pose(&w, [b[0], b[1], z], 0.0), dt).unwrap();
    }
    w.step(&pose(&w, [b[0], b[1], b[2]], 0.0), dt).unwrap();
    assert!(!w.grasped());
    assert!(
        w.gripper_stop().is_none(),
        "closed jaws are not stopped by the block"
    );
    // Closing 2 cm to the side.
    w.step(&pose(&w, [b[0] + 0.02, b[1], b[2]], 1.4), dt)
        .unwrap();
    w.step(&pose(&w, [b[0] + 0.02, b[1], b[2]], 0.3), dt)
        .unwrap();
    assert!(!w.grasped());
    // Closing 2 cm above.
    w.step(&pose(&w, [b[0], b[1], b[2] + 0.02], 1.4), dt)
        .unwrap();
    w.step(&pose(&w, [b[0], b[1], b[2] + 0.02], 0.3), dt)
        .unwrap();
    assert!(!w.grasped());
    // Closed jaws dragged onto the block then "closing" further: still nothing.
    w.step(&pose(&w, [b[0], b[1], b[2]], 0.3), dt).unwrap();
    w.step(&pose(&w, [b[0], b[1], b[2]], 0.1), dt).unwrap();
    assert!(!w.grasped());
    assert_eq!(w.block(), b, "an ungrasped block does not move");
    // Within tolerance (8 mm off) it works.
    w.step(&pose(&w, [b[0] + 0.008, b[1], b[2] + 0.005], 1.4), dt)
        .unwrap();
    w.step(&pose(&w, [b[0] + 0.008, b[1], b[2] + 0.005], 0.5), dt)
        .unwrap();
    assert!(w.grasped());
}

#[test]
fn success_only_counts_within_the_time_limit() {
    let cfg = config();
    let dt = cfg.period_s();
    let mut w = World::new(&cfg).unwrap();
    w.place_block(0.12, 0.0);
    let b = w.block();
    let rest = pose(&w, [0.1, 0.0, 0.06], 1.4);
    let n = (cfg.sim.episode_seconds / dt).round() as u64;
    for _ in 0..n - 1 {
        w.step(&rest, dt).unwrap();
        assert!(!w.timed_out());
    }
    w.step(&rest, dt).unwrap();
    assert!(
        w.timed_out() && w.done(),
        "times out at exactly episode_seconds ({} s)",
        w.elapsed()
    );
    w.step(&pose(&w, b, 1.4), dt).unwrap();
    w.step(&pose(&w, b, 0.3), dt).unwrap();
    w.step(&pose(&w, [b[0], b[1], 0.1], 0.3), dt).unwrap();
    assert!(
        w.grasped() && !w.success(),
        "a lift after the time limit is no success"
    );
}

#[test]
fn world_rejects_bad_input() {
    let cfg = config();
    let mut w = World::new(&cfg).unwrap();
    let q = vec![0.0; cfg.joints.len()];
    assert!(matches!(
        w.step(&q[..3], 0.02),
        Err(WorldError::JointCount {
            expected: 6,
            got: 3
        })
    ));
    assert!(matches!(
        w.step(&q, 0.0),
        Err(WorldError::BadTimeStep { .. })
    ));
    assert!(matches!(
        w.step(&q, f64::NAN),
        Err(WorldError::BadTimeStep { .. })
    ));
    let mut bad = q.clone();
    bad[2] = f64::INFINITY;
    assert!(matches!(
        w.step(&bad, 0.02),
        Err(WorldError::NonFinite { .. })
    ));
    assert_eq!(w.ticks(), 0, "rejected steps do not advance the clock");
    let small = intervened_world::WorldParams {
        block_size_m: 0.2,
        ..Default::default()
    };
    assert!(World::with_params(&cfg, small).is_err());
}

#[test]
fn world_sensor_reads_the_shared_world() {
    let cfg = config();
    let world = Arc::new(Mutex::new(World::new(&cfg).unwrap()));
    let mut sensor = WorldSensor::new(world.clone());
    assert_eq!(sensor.names(), FEATURE_NAMES.map(String::from).as_slice());
    assert_eq!(World::feature_names(), FEATURE_NAMES);
    let mut out = [0.0; 4];
    sensor.read(&mut out).unwrap();
    assert_eq!(out, world.lock().unwrap().features());
    world.lock().unwrap().place_block(0.11, 0.05);
    sensor.read(&mut out).unwrap();
    assert_eq!(out[..2], [0.11, 0.05]);
    assert!(sensor.read(&mut [0.0; 3]).is_err());
    // The sensor is usable as a boxed trait object, as the daemon holds it.
    let mut boxed: Box<dyn SensorSource> = Box::new(sensor);
    boxed.read(&mut out).unwrap();
}

#[test]
fn ten_second_episode_at_50_hz_runs_far_faster_than_real_time() {
    let cfg = config();
    let dt = cfg.period_s();
    let mut w = World::new(&cfg).unwrap();
    let expert = Expert::new(w.arm());
    let servos = intervened_world::FirstOrderServos::from_config(&cfg);
    let n = (cfg.sim.episode_seconds / dt).round() as usize;
    let start = Instant::now();
    let mut q = vec![0.0; cfg.joints.len()];
    // The full 500 ticks, not stopping at success: world + expert + servos.
    for _ in 0..n {
        w.step(&q, dt).unwrap();
        let goal = expert.act(&q, &w.features()).unwrap();
        servos.step(&mut q, &goal, dt);
        block_stops_jaws(&w, &mut q);
    }
    let wall = start.elapsed();
    eprintln!("{n} ticks in {wall:?}");
    assert!(w.success() && w.timed_out());
    assert!(wall.as_secs_f64() < 0.5, "{wall:?}");
}
