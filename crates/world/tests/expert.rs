// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use intervened_world::{Expert, Phase, World};
use rand::{Rng, SeedableRng};

#[test]
fn expert_succeeds_on_at_least_95_of_100_seeds() {
    let cfg = config();
    let q0 = vec![0.0; cfg.joints.len()];
    let mut ok = 0;
    let mut ticks = Vec::new();
    for seed in 0..100 {
        let o = run_expert(&cfg, seed, &q0, None);
        if o.success {
            ok += 1;
            ticks.push(o.ticks);
        } else {
            eprintln!("seed {seed} failed");
        }
    }
    let mean = ticks.iter().sum::<u64>() as f64 / ticks.len().max(1) as f64;
    eprintln!("expert: {ok}/100 succeeded, mean {mean:.1} ticks to success");
    assert!(ok >= 95, "expert succeeded on only {ok}/100 seeds");
}

#[test]
fn expert_succeeds_through_the_daemon_step_limit() {
    // The daemon's safety filter caps each goal step (0.05 rad per tick in sim-koch.toml).
    let cfg = config();
    let q0 = vec![0.0; cfg.joints.len()];
    let ok = (0..100)
        .filter(|s| run_expert(&cfg, *s, &q0, Some(cfg.safety.max_step_rad)).success)
        .count();
    eprintln!("expert with step limit: {ok}/100");
    assert!(ok >= 95, "{ok}/100");
}

#[test]
fn expert_succeeds_from_random_start_poses() {
    // It is a function of state, so it must finish from states it would never visit itself.
    let cfg = config();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut ok = 0;
    for seed in 0..50 {
        let q0: Vec<f64> = cfg
            .joints
            .iter()
            .map(|j| {
                let [lo, hi] = j.limits;
                rng.gen_range(lo * 0.4..hi * 0.4)
            })
            .collect();
        if run_expert(&cfg, 1000 + seed, &q0, None).success {
            ok += 1;
        }
    }
    eprintln!("expert from random poses: {ok}/50");
    assert!(ok >= 45, "{ok}/50");
}

#[test]
fn expert_is_deterministic_bit_for_bit() {
    let cfg = config();
    let q0 = vec![0.0; cfg.joints.len()];
    for seed in [3, 17, 99] {
        let a = run_expert(&cfg, seed, &q0, None);
        let b = run_expert(&cfg, seed, &q0, None);
        assert!(!a.trace.is_empty());
        let ab: Vec<u64> = a.trace.iter().map(|v| v.to_bits()).collect();
        let bb: Vec<u64> = b.trace.iter().map(|v| v.to_bits()).collect();
        assert_eq!(ab, bb, "seed {seed} differs between runs");
    }
    let a = run_expert(&cfg, 1, &q0, None);
    let b = run_expert(&cfg, 2, &q0, None);
    assert_ne!(
        a.trace, b.trace,
        "different seeds must give different episodes"
    );
}

#[test]
fn expert_regrasps_after_a_drop() {
    let cfg = config();
    let mut world = World::new(&cfg).unwrap();
    world.reset(5);
    let expert = Expert::new(world.arm());
    let g = world.arm().index().gripper;
    let mut grasped_at = None;
    let mut dropped = false;
    let q0 = vec![0.0; cfg.joints.len()];
    let o = run_policy_loop(&cfg, &mut world, &q0, None, |q, f, tick| {
        let mut t = expert.act(q, f).unwrap();
        if f[3] > 0.5 && grasped_at.is_none() {
            grasped_at = Some(tick);
        }
        // A nudge opens the jaws for 10 ticks just after the grasp.
        if let Some(t0) = grasped_at {
            if tick >= t0 + 5 && tick < t0 + 15 {
                t[g] = 1.5;
                if f[3] < 0.5 {
                    dropped = true;
                }
            }
        }
        t
    });
    assert!(grasped_at.is_some());
    assert!(dropped, "the nudge must have dropped the block");
    assert!(o.success, "the expert must regrasp and lift");
}

#[test]
fn expert_phases_follow_the_state() {
    let cfg = config();
    let world = World::new(&cfg).unwrap();
    let arm = world.arm().clone();
    let expert = Expert::new(&arm);
    let b = [0.13, 0.02, 0.015];
    let at = |z: f64, grip: f64| {
        let a = arm
            .ik([b[0], b[1], z], intervened_world::PITCH_DOWN)
            .unwrap();
        arm.compose(a, 0.0, grip, &vec![0.0; cfg.joints.len()])
    };
    let f = [b[0], b[1], b[2], 0.0];
    let p = expert.plan(&at(0.08, 0.0), &f).unwrap();
    assert_eq!(
        p.phase,
        Phase::Approach,
        "closed jaws above the block: open first"
    );
    let p = expert.plan(&at(0.06, 1.4), &f).unwrap();
    assert_eq!(p.phase, Phase::Descend);
    assert!(p.target[g_idx(&arm)] > 1.3);
    let p = expert.plan(&at(0.016, 1.4), &f).unwrap();
    assert_eq!(p.phase, Phase::Close);
    assert!(p.target[g_idx(&arm)] < 0.5);
    let p = expert
        .plan(&at(0.016, 1.4), &[b[0], b[1], b[2], 1.0])
        .unwrap();
    assert_eq!(p.phase, Phase::Lift);
    assert!(p.goal[2] > 0.09);
    // Closed without a grasp at the block: a missed grasp, reopen.
    let p = expert.plan(&at(0.016, 0.2), &f).unwrap();
    assert_eq!(p.phase, Phase::Approach);
    assert!(p.target[g_idx(&arm)] > 1.3);
    // Bad input is an error, not a panic.
    assert!(expert.act(&[0.0; 3], &f).is_err());
    assert!(expert.act(&at(0.05, 1.0), &[0.0; 3]).is_err());
}

fn g_idx(arm: &intervened_world::ArmModel) -> usize {
    arm.index().gripper
}
