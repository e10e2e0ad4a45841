// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::f64::consts::FRAC_PI_2;

use common::*;
use intervened_world::{ArmModel, IkError, WorldParams, PITCH_DOWN};
use rand::{Rng, SeedableRng};

fn arm() -> (ArmModel, usize) {
    let cfg = config();
    (ArmModel::from_config(&cfg).unwrap(), cfg.joints.len())
}

#[test]
fn zero_pose_is_the_l_with_a_hanging_wrist() {
    let (arm, n) = arm();
    let [h0, l1, l2, l3] = arm.links();
    let tip = arm.fk(&vec![0.0; n]).unwrap();
    assert!((tip.pos[0] - l2).abs() < 1e-12);
    assert!(tip.pos[1].abs() < 1e-12);
    assert!((tip.pos[2] - (h0 + l1 - l3)).abs() < 1e-12);
    assert!((tip.pitch - PITCH_DOWN).abs() < 1e-12);
}

#[test]
fn joint_signs_are_as_documented() {
    let (arm, _) = arm();
    let base = arm.fk_arm(&[0.0; 4]);
    let pan = arm.fk_arm(&[0.2, 0.0, 0.0, 0.0]);
    assert!(pan.pos[1] > 0.0, "positive pan turns left (+y)");
    // Lift with the forearm and tool kept level/down: only the upper arm tilts.
    let lift = arm.fk_arm(&[0.0, 0.2, -0.2, 0.0]);
    let l1 = arm.links()[1];
    assert!(
        (lift.pos[0] - base.pos[0] - l1 * 0.2f64.sin()).abs() < 1e-12,
        "positive lift tilts the upper arm forward"
    );
    let elbow = arm.fk_arm(&[0.0, 0.0, 0.2, 0.0]);
    assert!(
        elbow.pos[2] < base.pos[2],
        "positive elbow turns the forearm down"
    );
    let wrist = arm.fk_arm(&[0.0, 0.0, 0.0, 0.2]);
    assert!(
        (wrist.pitch - (PITCH_DOWN + 0.2)).abs() < 1e-12,
        "pitch is the sum of the three"
    );
    // Wrist roll and gripper do not move the tip.
    let cfg = config();
    let idx = arm.index();
    let mut q = vec![0.1; cfg.joints.len()];
    let a = arm.fk(&q).unwrap();
    q[idx.wrist_roll.unwrap()] = 1.3;
    q[idx.gripper] = 1.2;
    assert_eq!(arm.fk(&q).unwrap(), a);
}

#[test]
fn ik_then_fk_round_trips_over_a_grid_to_1e_9() {
    let (arm, _) = arm();
    let mut solved = 0;
    let mut worst: f64 = 0.0;
    for xi in 0..=16 {
        for yi in -8..=8 {
            for zi in 0..=12 {
                for pitch in [PITCH_DOWN, PITCH_DOWN - 0.4, PITCH_DOWN + 0.3, 0.6] {
                    let t = [0.04 + xi as f64 * 0.01, yi as f64 * 0.015, zi as f64 * 0.01];
                    if let Ok(a) = arm.ik(t, pitch) {
                        let tip = arm.fk_arm(&a);
                        for (got, want) in tip.pos.iter().zip(t) {
                            worst = worst.max((got - want).abs());
                        }
                        worst = worst.max((tip.pitch - pitch).abs());
                        solved += 1;
                    }
                }
            }
        }
    }
    eprintln!("round trip: {solved} targets solved, worst error {worst:e}");
    assert!(
        solved > 2000,
        "the grid must mostly be reachable, solved {solved}"
    );
    assert!(worst < 1e-9, "worst error {worst}");
}

#[test]
fn fk_then_ik_recovers_elbow_up_joints() {
    let (arm, _) = arm();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut checked = 0;
    for _ in 0..2000 {
        let a = [
            rng.gen_range(-1.5..1.5),
            rng.gen_range(-1.2..1.2),
            rng.gen_range(-1.5..1.5),
            rng.gen_range(-1.5..1.5),
        ];
        let tip = arm.fk_arm(&a);
        // The radial coordinate must be positive for the pan to be recoverable.
        let r = tip.pos[0].hypot(tip.pos[1]);
        let planar_r = arm.links()[1] * a[1].sin() + arm.links()[2] * (a[1] + a[2]).cos()
            - arm.links()[3] * (a[1] + a[2] + a[3]).sin();
        if planar_r < 0.01 || r < 0.01 {
            continue;
        }
        let b = arm.ik(tip.pos, tip.pitch).unwrap();
        for k in 0..4 {
            assert!((a[k] - b[k]).abs() < 1e-9, "{a:?} -> {b:?}");
        }
        checked += 1;
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn task_region_is_reachable_well_inside_the_limits() {
    let (arm, _) = arm();
    let w = WorldParams::default();
    let limits = arm.limits().to_vec();
    let idx = arm.index().arm();
    let mut worst_frac: f64 = 0.0;
    for ri in 0..=6 {
        for yi in 0..=6 {
            let r =
                w.spawn_radius_m[0] + (w.spawn_radius_m[1] - w.spawn_radius_m[0]) * ri as f64 / 6.0;
            let yaw =
                w.spawn_yaw_rad[0] + (w.spawn_yaw_rad[1] - w.spawn_yaw_rad[0]) * yi as f64 / 6.0;
            // grasp height, hover height, and the lift point
            let rl = r.clamp(0.09, 0.13);
            for (rr, z) in [(r, w.rest_z()), (r, w.rest_z() + 0.045), (rl, 0.10)] {
                let a = arm
                    .ik([rr * yaw.cos(), rr * yaw.sin(), z], PITCH_DOWN)
                    .unwrap_or_else(|e| panic!("r {rr} yaw {yaw} z {z}: {e}"));
                for (v, i) in a.iter().zip(idx) {
                    let [lo, hi] = limits[i];
                    let frac = if *v >= 0.0 { v / hi } else { v / lo };
                    worst_frac = worst_frac.max(frac);
                }
            }
        }
    }
    eprintln!(
        "task region uses at most {:.0}% of a joint's range from zero",
        worst_frac * 100.0
    );
    assert!(worst_frac < 0.8, "{worst_frac}");
}

#[test]
fn ik_reports_why_it_fails() {
    let (arm, _) = arm();
    assert!(matches!(
        arm.ik([0.5, 0.0, 0.0], PITCH_DOWN),
        Err(IkError::OutOfReach { .. })
    ));
    assert!(matches!(
        arm.ik([-0.12, 0.0, 0.02], PITCH_DOWN),
        Err(IkError::JointLimit {
            joint: "shoulder_pan",
            ..
        })
    ));
    assert!(matches!(
        arm.ik([f64::NAN, 0.0, 0.0], PITCH_DOWN),
        Err(IkError::NonFinite)
    ));
    assert!(matches!(
        arm.ik([0.1, 0.0, 0.05], f64::INFINITY),
        Err(IkError::NonFinite)
    ));
    // Pointing straight forward at a low point needs a wrist beyond its limit.
    assert!(arm.ik([0.10, 0.0, 0.0], -FRAC_PI_2).is_err());
}

#[test]
fn jaw_geometry_matches_the_block() {
    let (arm, _) = arm();
    let c = arm.contact_opening(0.03).unwrap();
    assert!((arm.jaw_gap(c) - 0.03).abs() < 1e-12);
    assert!(c > 0.3 && c < 1.2, "contact {c}");
    assert!(
        arm.jaw_gap(1.4) > 0.045,
        "open jaws leave room around the block"
    );
    assert!(arm.contact_opening(0.2).is_none());
}

#[test]
fn config_without_a_needed_joint_is_refused() {
    let mut cfg = config();
    cfg.joints.retain(|j| j.name != "elbow_flex");
    cfg.teleop.axes.retain(|a| a.joint != "elbow_flex");
    let e = ArmModel::from_config(&cfg).unwrap_err();
    assert!(e.to_string().contains("elbow_flex"), "{e}");
}
