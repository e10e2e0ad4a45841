//! The runner as the control thread uses it: delta actions, reset, and the move to a worker
//! thread when the model is too slow for the control period.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{fixtures, koch};
use intervened_policy::{Policy, PolicyRunner, RunnerMode, RunnerOptions};

fn opts(period_ms: u64, budget: f64, m: f64) -> RunnerOptions {
    RunnerOptions {
        period: Duration::from_millis(period_ms),
        inline_budget: budget,
        temporal_ensemble_m: m,
        action_timeout: Duration::from_secs(30),
        start_on_worker: false,
    }
}

/// The delta fixture's ensemble mean: 0.01 (s + 1) (j + 1) + 1.
fn delta_mean(s: usize, j: usize) -> f64 {
    f64::from(0.01f32 * (s as f32 + 1.0) * (j as f32 + 1.0) + 1.0)
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "got {got:?}\nwant {want:?}");
    }
}

#[test]
fn delta_actions_are_made_absolute_with_the_q_of_their_prediction_and_ensembled() {
    let p = Policy::load(fixtures().policy("delta"), &koch(30.0)).unwrap();
    let m = 0.4;
    let mut r = PolicyRunner::new(p, opts(33, 10.0, m));
    assert_eq!(r.mode(), RunnerMode::Inline);
    let obs = [0.0; 10];
    let q0 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    let q1 = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

    let a0 = r.step(0, &obs, &q0).unwrap();
    let want0: Vec<f64> = (0..6).map(|j| q0[j] + delta_mean(0, j)).collect();
    assert_close(&a0, &want0);
    assert!((r.last_doubt().unwrap() - 4.0).abs() < 1e-5);

    // Tick 1: the tick-0 chunk's step 1 (relative to q0, weight 1) and the tick-1 chunk's
    // step 0 (relative to q1, weight e^-m).
    let a1 = r.step(1, &obs, &q1).unwrap();
    let w = (-m).exp();
    let want1: Vec<f64> = (0..6)
        .map(|j| ((q0[j] + delta_mean(1, j)) + w * (q1[j] + delta_mean(0, j))) / (1.0 + w))
        .collect();
    assert_close(&a1, &want1);

    // After a reset (control changed hands) nothing from before blends in.
    r.reset();
    let q2 = [-0.5; 6];
    let a2 = r.step(2, &obs, &q2).unwrap();
    let want2: Vec<f64> = (0..6).map(|j| q2[j] + delta_mean(0, j)).collect();
    assert_close(&a2, &want2);
    let s = r.stats();
    assert_eq!((s.chunks_used, s.hold_steps, s.errors), (3, 0, 0));
}

#[test]
fn wrong_input_widths_hold_and_count() {
    let p = Policy::load(fixtures().policy("delta"), &koch(30.0)).unwrap();
    let mut r = PolicyRunner::new(p, opts(33, 10.0, 0.01));
    assert_eq!(r.step(0, &[0.0; 9], &[0.0; 6]), None);
    assert_eq!(r.step(1, &[0.0; 10], &[0.0; 5]), None);
    let s = r.stats();
    assert_eq!((s.errors, s.hold_steps), (2, 2));
    assert!(s.last_error.unwrap().contains("measured joint positions"));
    assert!(r.step(2, &[0.0; 10], &[0.0; 6]).is_some());
}

fn slow_obs(slow: bool) -> [f64; 10] {
    let mut o = [0.0; 10];
    o[0] = if slow { 1000.0 } else { 0.0 };
    o
}

#[test]
fn a_slow_model_moves_to_the_worker_and_the_loop_never_waits_for_it() {
    let p = Policy::load(fixtures().policy("slow"), &koch(50.0)).unwrap();
    let period = Duration::from_millis(20);
    let mut r = PolicyRunner::new(p, opts(20, 0.25, 0.01));
    let q = [0.0; 6];
    // Fast inputs: inline. The model's action at step s of a chunk is s, so with one chunk
    // pushed at tick 0, tick 0 gets 0.
    assert_eq!(r.mode(), RunnerMode::Inline);
    assert_eq!(r.step(0, &slow_obs(false), &q).unwrap(), vec![0.0; 6]);

    // A slow forward pass: this one stalls (it is what gets measured), then the runner moves.
    let t0 = Instant::now();
    assert!(r.step(1, &slow_obs(true), &q).is_some());
    let stalled = t0.elapsed();
    assert!(
        stalled > period / 4,
        "the slow path should be slow: {stalled:?}"
    );
    assert_eq!(r.mode(), RunnerMode::Worker);
    assert_eq!(r.stats().moved_to_worker_at, Some(1));

    // From now on no step waits for the model, though every forward pass takes several ticks.
    let mut worst = Duration::ZERO;
    let mut held = 0;
    let start = Instant::now();
    for tick in 2..60u64 {
        let t = Instant::now();
        let a = r.step(tick, &slow_obs(true), &q);
        worst = worst.max(t.elapsed());
        match a {
            None => held += 1,
            Some(a) => assert!(a.iter().all(|v| (0.0..8.0).contains(v)), "{a:?}"),
        }
        let deadline = start + period * (tick as u32 - 1);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    let s = r.stats();
    eprintln!("worst step {worst:?}, held {held}, stats {s:?}");
    // The bound leaves room for a preempted thread on a shared machine; the model takes
    // several times longer, so a step that waited for it could not pass.
    let bound = Duration::from_millis(25);
    assert!(worst < bound, "a step took {worst:?}; stats {s:?}");
    assert!(
        s.forward.p50_us > 2.0 * bound.as_secs_f64() * 1e6,
        "the model should be much slower than the bound for this test to mean anything: {s:?}"
    );
    assert!(s.superseded_observations > 0, "{s:?}");
    assert!(
        s.chunks_used >= 3,
        "the worker should keep producing usable chunks: {s:?}"
    );
    assert_eq!(s.hold_steps, held);

    // After a handback, nothing is ready until the worker answers: hold, without waiting.
    r.reset();
    let t = Instant::now();
    assert_eq!(r.step(60, &slow_obs(true), &q), None);
    assert!(t.elapsed() < bound);
    // The worker's chunk for this tick arrives later; asking again at the same tick gets it.
    let give_up = Instant::now() + Duration::from_secs(10);
    let a = loop {
        if let Some(a) = r.step(60, &slow_obs(true), &q) {
            break a;
        }
        assert!(
            Instant::now() < give_up,
            "the worker never answered: {:?}",
            r.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        a,
        vec![0.0; 6],
        "a fresh chunk for tick 60 starts at step 0"
    );
    r.shutdown();
}

/// Steps `r` in real time at `period` from `first` for `n` ticks; returns the actions.
fn run_realtime(
    r: &mut PolicyRunner,
    first: u64,
    n: u64,
    period: Duration,
    slow: bool,
) -> Vec<(u64, Vec<f64>)> {
    let q = [0.0; 6];
    let start = Instant::now();
    let mut got = Vec::new();
    for tick in first..first + n {
        if let Some(a) = r.step(tick, &slow_obs(slow), &q) {
            got.push((tick, a));
        }
        let deadline = start + period * (tick - first + 1) as u32;
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
    got
}

/// Chunk 1 on the worker: each result arrives at least one tick after the tick it was
/// predicted for, so a rule that drops chunks whose steps have all passed drops every one
/// and the policy never acts again. Late results are applied at the tick they arrive.
#[test]
fn a_chunk_1_model_on_the_worker_keeps_acting_and_after_a_reset_too() {
    let p = Policy::load(fixtures().policy("slow1"), &koch(50.0)).unwrap();
    let period = Duration::from_millis(20);
    // The fast path is inline; the first slow pass moves it to the worker.
    let mut r = PolicyRunner::new(p, opts(20, 0.25, 0.01));
    assert_eq!(r.mode(), RunnerMode::Inline);
    let _ = run_realtime(&mut r, 0, 2, period, true);
    assert_eq!(r.mode(), RunnerMode::Worker);
    let got = run_realtime(&mut r, 2, 100, period, true);
    let s = r.stats();
    eprintln!("{} actions in 100 ticks; {s:?}", got.len());
    assert!(
        s.forward.p50_us > period.as_secs_f64() * 1e6,
        "the model must be slower than a period for this test to mean anything: {s:?}"
    );
    assert!(
        got.len() >= 2,
        "a chunk-1 policy on the worker stopped acting: {s:?}"
    );
    assert!(s.late_chunks >= 2, "{s:?}");
    assert_eq!(s.stale_chunks, 0, "{s:?}");
    // The action is the model's (step 0 of the chunk), applied at the tick it arrived.
    assert!(got.iter().all(|(_, a)| a == &vec![0.0; 6]), "{got:?}");
    assert_eq!(r.starved(101), None);

    // A Hold and resume resets the runner; it acts again.
    r.reset();
    let got = run_realtime(&mut r, 102, 100, period, true);
    assert!(got.len() >= 2, "no action after a reset: {:?}", r.stats());
    r.shutdown();
}

/// No usable action for `action_timeout` is starvation: counted once, reported with how long
/// it has lasted, and cleared by a reset (control changed hands) or the next action.
#[test]
fn a_model_slower_than_the_action_timeout_is_starved() {
    let p = Policy::load(fixtures().policy("slow1"), &koch(50.0)).unwrap();
    let period = Duration::from_millis(20);
    let mut o = opts(20, 0.0, 0.01);
    o.action_timeout = Duration::from_millis(40);
    let mut r = PolicyRunner::new(p, o);
    assert_eq!(r.mode(), RunnerMode::Worker);
    let q = [0.0; 6];
    assert!(r.step(0, &slow_obs(true), &q).is_none());
    assert_eq!(r.starved(0), None);
    assert_eq!(r.starved(2), None, "two ticks is the timeout, not over it");
    let waited = r.starved(3).expect("three ticks without an action");
    assert_eq!(waited, period * 3);
    assert!(r.starved(4).is_some());
    assert_eq!(r.stats().starvations, 1, "one starvation, however long");
    r.reset();
    assert!(r.step(5, &slow_obs(true), &q).is_none());
    assert_eq!(r.starved(5), None, "a reset restarts the clock");
    assert!(r.starved(8).is_some());
    assert_eq!(r.stats().starvations, 2);
    // Results that come back older than the timeout are dropped, never applied.
    let _ = run_realtime(&mut r, 9, 40, period, true);
    let s = r.stats();
    assert!(s.stale_chunks >= 1, "{s:?}");
    assert_eq!(s.chunks_used, 0, "{s:?}");
    r.shutdown();
}

#[test]
fn a_model_slow_at_load_starts_on_the_worker() {
    let p = Policy::load(fixtures().policy("slow"), &koch(50.0)).unwrap();
    // A zero budget: even the fast path is over it.
    let mut r = PolicyRunner::new(p, opts(20, 0.0, 0.01));
    assert_eq!(r.mode(), RunnerMode::Worker);
    assert_eq!(r.stats().moved_to_worker_at, None);
    let q = [0.0; 6];
    let give_up = Instant::now() + Duration::from_secs(10);
    let mut tick = 0;
    let a = loop {
        if let Some(a) = r.step(tick, &slow_obs(false), &q) {
            break a;
        }
        assert!(Instant::now() < give_up, "no action: {:?}", r.stats());
        std::thread::sleep(Duration::from_millis(2));
        tick += u64::from(tick < 3);
    };
    assert!(a.iter().all(|v| (0.0..8.0).contains(v)), "{a:?}");
    r.shutdown();
}

#[test]
fn expectations_and_options_follow_the_robot_config() {
    use intervened_policy::PolicyExpectations;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs");
    let cfg = intervened_robot::RobotConfig::load(&root.join("koch-v1.1.toml")).unwrap();
    let extra: Vec<String> = ["block.x", "block.y", "block.z", "block.grasped"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let want = PolicyExpectations::for_robot(&cfg, &extra);
    assert_eq!(want.robot_type, "koch_v1.1");
    assert_eq!(want.observation_names, koch(0.0).observation_names);
    assert_eq!(want.action_names, koch(0.0).action_names);
    assert_eq!(want.fps, cfg.control.rate_hz);
    let o = RunnerOptions::from_config(&cfg);
    assert!((o.period.as_secs_f64() - 1.0 / cfg.control.rate_hz).abs() < 1e-9);
    assert_eq!(o.inline_budget, cfg.policy.inline_budget);
    assert_eq!(o.temporal_ensemble_m, cfg.policy.temporal_ensemble_m);
}

#[test]
fn an_image_policy_runs_on_the_worker_with_its_images_copied() {
    let f = fixtures();
    let mut want = koch(30.0);
    want.cameras = vec![intervened_policy::ImageInput {
        name: "front".into(),
        width: 12,
        height: 8,
    }];
    let policy = Policy::load(f.policy("pixels"), &want).unwrap();
    let (obs, out) = f.probe("pixels");
    let image: Vec<u8> = serde_json::from_value(f.report["pixels"]["image"].clone()).unwrap();
    let mut o = opts(20, 0.5, 0.0);
    o.start_on_worker = true;
    let mut r = PolicyRunner::new(policy, o);
    assert_eq!((r.mode(), r.image_count()), (RunnerMode::Worker, 1));
    let obs: Vec<f64> = obs.iter().map(|&v| f64::from(v)).collect();
    let mut goal = vec![0.0; 6];
    let t0 = Instant::now();
    let mut tick = 0;
    // The first chunk's step 0 arrives a tick or more later; wait for it, stepping.
    let mut got = false;
    while !got && t0.elapsed() < Duration::from_secs(10) {
        let mut scratch = image.clone();
        got = r.step_images_into(tick, &obs, &[&scratch], &obs, &mut goal);
        // The caller's buffer may change right after the step: the worker has its own copy.
        scratch.fill(0);
        tick += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(got, "no action within 10 s: {:?}", r.stats());
    assert_eq!(r.stats().errors, 0, "{:?}", r.stats());
    // With m = 0 the goal is the newest chunk's step for this tick: Python's step 0 or 1.
    let matches = |s: usize| {
        goal.iter()
            .zip(&out[0][s])
            .all(|(g, p)| (g - f64::from(*p)).abs() < 1e-4)
    };
    assert!(
        matches(0) || matches(1),
        "goal {goal:?} vs python {:?}",
        out[0]
    );
    // A step without the image holds and counts an error.
    assert!(!r.step_into(tick, &obs, &obs, &mut goal));
    assert_eq!(r.stats().errors, 1);
    r.shutdown();
}
