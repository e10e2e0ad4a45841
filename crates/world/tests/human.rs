// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use intervened_world::{Expert, HumanParams, SimulatedHuman, World};

#[test]
fn demonstrating_human_succeeds_on_most_seeds() {
    let cfg = config();
    let mut ok = 0;
    let mut ticks = Vec::new();
    for seed in 0..100 {
        let o = run_human(&cfg, seed, HumanParams::default(), None);
        assert!(o.axes_well_formed, "seed {seed}: malformed deflections");
        assert_eq!(
            o.takeovers, 0,
            "a demonstration never holds the takeover button"
        );
        assert!(!o.takeover_pressed_while_not_intervening);
        if o.success {
            ok += 1;
            ticks.push(o.success_at.unwrap());
        } else {
            eprintln!("seed {seed} failed");
        }
    }
    let mean = ticks.iter().sum::<u64>() as f64 / ticks.len().max(1) as f64;
    eprintln!("human demonstrations: {ok}/100 succeeded, mean {mean:.1} ticks to success");
    assert!(ok >= 80, "{ok}/100");
}

#[test]
fn demonstrating_human_also_works_with_a_sloppier_hand() {
    let cfg = config();
    let sloppy = HumanParams {
        reaction_delay_ticks: 15,
        noise_std: 0.15,
        ..HumanParams::default()
    };
    let ok = (0..40)
        .filter(|s| run_human(&cfg, *s, sloppy.clone(), None).success)
        .count();
    eprintln!("sloppy human (300 ms, noise 0.15): {ok}/40");
    assert!(ok >= 32, "{ok}/40");
}

#[test]
fn human_presses_start_then_success_after_seeing_the_lift() {
    let cfg = config();
    let p = HumanParams::default();
    let o = run_human(&cfg, 4, p.clone(), None);
    assert!(o.success);
    assert_eq!(o.start_pressed, p.button_hold_ticks);
    let seen = o.success_pressed_at.expect("success pressed");
    let happened = o.success_at.unwrap();
    // It reacts to what it saw `reaction_delay_ticks` ago.
    assert!(
        seen >= happened + p.reaction_delay_ticks as u64,
        "pressed at {seen}, success at {happened}"
    );
    assert!(seen <= happened + p.reaction_delay_ticks as u64 + 2);
}

#[test]
fn human_is_deterministic_and_its_seed_matters() {
    let cfg = config();
    let a = run_human(&cfg, 11, HumanParams::default(), None);
    let b = run_human(&cfg, 11, HumanParams::default(), None);
    let bits = |t: &[f64]| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.trace), bits(&b.trace));
    // Same block (world seed fixed by reset), different tremor.
    let mut world = World::new(&cfg).unwrap();
    world.reset(11);
    let mut h1 = SimulatedHuman::new(
        &cfg,
        HumanParams {
            seed: 1,
            ..HumanParams::default()
        },
    )
    .unwrap();
    let mut h2 = SimulatedHuman::new(
        &cfg,
        HumanParams {
            seed: 2,
            ..HumanParams::default()
        },
    )
    .unwrap();
    let q = vec![0.0; cfg.joints.len()];
    let c1 = h1.step(&q, &world.features(), false).unwrap();
    let c2 = h2.step(&q, &world.features(), false).unwrap();
    assert_ne!(c1.axes, c2.axes, "tremor must depend on the human's seed");
}

#[test]
fn human_rejects_malformed_input() {
    let cfg = config();
    let mut h = SimulatedHuman::new(&cfg, HumanParams::default()).unwrap();
    assert!(h.step(&[0.0; 3], &[0.1, 0.0, 0.015, 0.0], false).is_err());
    assert!(h.step(&vec![0.0; cfg.joints.len()], &[0.1], false).is_err());
    let mut q = vec![0.0; cfg.joints.len()];
    q[1] = f64::NAN;
    assert!(h.step(&q, &[0.1, 0.0, 0.015, 0.0], false).is_err());
    assert!(SimulatedHuman::new(
        &cfg,
        HumanParams {
            noise_std: -1.0,
            ..HumanParams::default()
        }
    )
    .is_err());
}

fn expert_policy(cfg: &intervened_robot::RobotConfig) -> Expert {
    Expert::new(&intervened_world::ArmModel::from_config(cfg).unwrap())
}

#[test]
fn supervising_a_good_policy_never_takes_over() {
    let cfg = config();
    let expert = expert_policy(&cfg);
    for seed in 0..30 {
        let mut pol = |q: &[f64], f: &[f64], _t: u64| expert.act(q, f).unwrap();
        let o = run_human(&cfg, seed, HumanParams::default(), Some(&mut pol));
        assert!(o.success, "seed {seed}");
        assert_eq!(o.takeovers, 0, "seed {seed}: false alarm");
        assert_eq!(o.ticks_intervened, 0);
        assert!(
            o.success_pressed_at.is_some(),
            "it labels the outcome in supervise mode too"
        );
    }
}

#[test]
fn supervising_a_drifting_policy_takes_over_recovers_and_hands_back() {
    let cfg = config();
    let expert = expert_policy(&cfg);
    let pan = expert.arm().index().shoulder_pan;
    let p = HumanParams::default();
    let mut ok = 0;
    for seed in 0..20 {
        // Good for 20 ticks, then swings the shoulder away at 1 rad/s until tick 60.
        let mut pol = |q: &[f64], f: &[f64], t: u64| {
            let mut target = expert.act(q, f).unwrap();
            if (20..60).contains(&t) {
                target.copy_from_slice(q);
                // Away from the block's side.
                let away = if f[1] >= 0.0 { -1.0 } else { 1.0 };
                target[pan] = (q[pan] + 0.02 * away).clamp(-1.8, 1.8);
            }
            target
        };
        let o = run_human(&cfg, seed, p.clone(), Some(&mut pol));
        assert!(o.axes_well_formed);
        assert!(!o.takeover_pressed_while_not_intervening);
        assert!(o.takeovers >= 1, "seed {seed}: no takeover");
        assert!(o.handbacks >= 1, "seed {seed}: never handed back");
        let took = o.first_takeover_at.unwrap();
        // Not before the drift is visible through the reaction delay.
        assert!(
            took > 20 + p.reaction_delay_ticks as u64,
            "seed {seed}: took over at {took}"
        );
        assert!(o.first_handback_at.unwrap() > took + u64::from(p.handback_ticks));
        assert!(o.ticks_intervened >= u64::from(p.min_intervention_ticks));
        if o.success {
            ok += 1;
        }
        eprintln!(
            "seed {seed}: takeover at {took}, handback at {:?}, {} takeovers, {} ticks intervened, success {}",
            o.first_handback_at, o.takeovers, o.ticks_intervened, o.success
        );
    }
    // After the drift ends the policy finishes the task itself.
    assert!(ok >= 18, "{ok}/20");
}

#[test]
fn supervising_a_stalled_policy_takes_over_after_the_stall_time() {
    let cfg = config();
    let p = HumanParams::default();
    let mut pol = |q: &[f64], _f: &[f64], _t: u64| q.to_vec();
    let o = run_human(&cfg, 3, p.clone(), Some(&mut pol));
    let took = o.first_takeover_at.expect("stall noticed");
    // The arm never moves, so even the stale first observations count towards the stall.
    let earliest = u64::from(p.stall_ticks);
    assert!(
        took >= earliest && took <= earliest + p.reaction_delay_ticks as u64 + 2,
        "took over at {took}"
    );
    // Each rescue moves the task on a phase; a policy that never moves keeps needing help.
    assert!(o.takeovers >= 2, "{} takeovers", o.takeovers);
    assert!(o.handbacks >= 1);
    eprintln!(
        "stalled policy: {} takeovers, {} ticks intervened, success {}",
        o.takeovers, o.ticks_intervened, o.success
    );
}

/// Robot-gated: the human never takes over on its own judgement, only after an ask and its
/// reaction delay; it scores asks it finds nothing wrong with, and needs nobody asked about.
#[test]
fn robot_gated_human_takes_over_only_when_asked_and_scores_the_asking() {
    use intervened_world::Gate;
    let cfg = config();
    let world = World::new(&cfg).unwrap();
    let features = world.features();
    // The daemon's start pose: raised, tool pointing down, gripper open.
    let q: Vec<f64> = cfg
        .joints
        .iter()
        .map(|j| match j.name.as_str() {
            "shoulder_lift" => -0.3,
            "elbow_flex" => 0.6,
            "wrist_flex" => 0.9,
            _ if j.gripper => j.limits[1] * 0.8,
            _ => 0.0,
        })
        .collect();
    let p = HumanParams {
        gate: Gate::Robot,
        ..HumanParams::default()
    };
    let delay = p.reaction_delay_ticks as u64;

    // A good policy (the expert) asks for help anyway: a false alarm, answered after the
    // reaction delay.
    let expert = expert_policy(&cfg);
    let mut good = expert.act(&q, &features).unwrap();
    let mut h = SimulatedHuman::new(&cfg, p.clone()).unwrap();
    for _ in 0..20 {
        h.step(&good, &features, true).unwrap();
        good = expert.act(&good, &features).unwrap();
    }
    assert_eq!(h.ask_stats().needs, 0, "the expert needs no help");
    h.hear_help();
    for _ in 0..delay {
        h.step(&good, &features, true).unwrap();
        good = expert.act(&good, &features).unwrap();
        assert!(!h.intervening(), "took over before its reaction delay");
    }
    h.step(&good, &features, true).unwrap();
    assert!(h.intervening(), "did not answer the ask");
    let s = h.ask_stats();
    assert_eq!((s.asks, s.false_alarms, s.needs, s.misses), (1, 1, 0, 0));

    // A stalled arm nobody asks about: its own judgement fires, it does not act, a miss.
    let mut h = SimulatedHuman::new(&cfg, p.clone()).unwrap();
    let window = (intervened_world::MISS_WINDOW_S / cfg.period_s()).ceil() as u64;
    for _ in 0..(u64::from(p.stall_ticks) + delay + window + 5) {
        h.step(&q, &features, true).unwrap();
        assert!(!h.intervening(), "took over without an ask");
    }
    let s = h.ask_stats();
    assert_eq!((s.asks, s.needs, s.misses), (0, 1, 1));
    // Asked now, with the arm still stalled: a real need, not a false alarm.
    h.hear_help();
    for _ in 0..=delay {
        h.step(&q, &features, true).unwrap();
    }
    assert!(h.intervening());
    assert_eq!(h.ask_stats().false_alarms, 0);

    // The human gate ignores asks.
    let mut h = SimulatedHuman::new(&cfg, HumanParams::default()).unwrap();
    h.hear_help();
    assert_eq!(h.ask_stats().asks, 0);
}
