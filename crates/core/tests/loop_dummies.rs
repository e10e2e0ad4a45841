//! The real control loop on the dummy ports: thousands of ticks in simulated time (the lockstep
//! pacer never sleeps), no bus, no pty, no model. Each test scripts the arm, the pad and the
//! policy by tick and checks what the loop did from the recorder's and the arm's side.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use intervened_core::clock::LockstepPacer;
use intervened_core::control::{
    ControlLoop, LoopOptions, LoopParts, LoopReport, PolicyDriver, SessionPlan,
};
use intervened_core::dummy::{ArmLog, ConstantPolicy, DummyArm, DummyPad, MemorySink, Recorded};
use intervened_core::fault::FaultKind;
use intervened_core::recording::{ControlSource, EpisodeOutcome};
use intervened_core::status::Status;
use intervened_robot::RobotConfig;
use intervened_teleop::Intent;

fn config() -> RobotConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    let mut cfg = RobotConfig::load(&p).unwrap();
    cfg.teleop.require_gamepad = false;
    cfg
}

fn limits(cfg: &RobotConfig) -> Vec<[f64; 2]> {
    cfg.joints.iter().map(|j| j.limits).collect()
}

/// A pose at fraction `f` of each joint's range.
fn pose(cfg: &RobotConfig, f: f64) -> Vec<f64> {
    limits(cfg)
        .iter()
        .map(|[lo, hi]| lo + f * (hi - lo))
        .collect()
}

struct Run {
    report: LoopReport,
    rec: Recorded,
    arm: ArmLog,
    status: Status,
    rumbles: Vec<&'static str>,
}

fn run(
    cfg: &RobotConfig,
    arm: DummyArm,
    pad: DummyPad,
    policy: Option<ConstantPolicy>,
    demo: bool,
    max_ticks: u64,
) -> Run {
    let sink = MemorySink::new();
    let (rec, arm_log, rumbles) = (sink.recorded(), arm.log(), pad.rumbles());
    let status = Arc::new(Mutex::new(Status::new("dummy", "toggle", "RB", 50.0)));
    let (_cmd_tx, commands) = crossbeam_channel::bounded(1);
    let (_pol_tx, policy_updates) = crossbeam_channel::bounded(1);
    let parts = LoopParts {
        cfg: cfg.clone(),
        limits: limits(cfg),
        arm: Box::new(arm),
        sensors: Vec::new(),
        pad: Box::new(pad),
        policy: policy.map(|p| Box::new(p) as Box<dyn PolicyDriver>),
        policy_updates,
        sink: Box::new(sink),
        pacer: Box::new(LockstepPacer::new(cfg.period_s())),
        hook: None,
        commands,
        status: status.clone(),
        stop: Arc::new(AtomicBool::new(false)),
        opts: LoopOptions {
            plan: Some(SessionPlan { episodes: 1, demo }),
            max_ticks: Some(max_ticks),
            task: "test".into(),
        },
        cameras: intervened_core::cameras::LoopCameras::none(),
    };
    let report = ControlLoop::new(parts).run();
    let rec = rec.lock().unwrap().clone();
    let arm = arm_log.lock().unwrap().clone();
    let status = status.lock().unwrap().clone();
    let rumbles = rumbles.lock().unwrap().clone();
    Run {
        report,
        rec,
        arm,
        status,
        rumbles,
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn source_at(r: &Run, tick: u64) -> ControlSource {
    r.rec
        .frames
        .iter()
        .find(|f| f.tick == tick)
        .map(|f| f.source)
        .unwrap()
}

fn writes_in(r: &Run, ticks: std::ops::Range<u64>) -> Vec<&Vec<f64>> {
    r.arm
        .writes
        .iter()
        .filter(|(t, _)| ticks.contains(t))
        .map(|(_, g)| g)
        .collect()
}

#[test]
fn takeover_and_handback_label_frames_and_never_jump() {
    let cfg = config();
    let (robot, human) = (pose(&cfg, 0.7), pose(&cfg, 0.3));
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5);
    let pad = DummyPad::new(vec![
        (1000, Intent::Takeover),
        (1500, Intent::Handback),
        (3000, Intent::Success),
    ])
    .human_goal(human.clone());
    let r = run(
        &cfg,
        arm,
        pad,
        Some(ConstantPolicy::new(robot.clone())),
        false,
        5000,
    );

    assert_eq!(r.report.episodes, vec![EpisodeOutcome::Success]);
    assert_eq!(r.report.ticks, 3001, "the plan ends with its one episode");
    assert_eq!(r.report.takeovers, 1);
    assert_eq!(r.rec.frames.len(), 3000, "one frame per episode tick");
    // Labels follow who had the arm, from the very tick control changed hands.
    assert_eq!(source_at(&r, 999), ControlSource::Robot);
    assert_eq!(source_at(&r, 1000), ControlSource::Intervention);
    assert_eq!(source_at(&r, 1499), ControlSource::Intervention);
    assert_eq!(source_at(&r, 1500), ControlSource::Robot);
    // The human's proposals are recorded beside their goals; the policy's beside its own.
    assert!(r.rec.frames.iter().all(|f| f.proposal.is_some()));
    // Takeover starts from the measured position, handback from the previous goal.
    assert_eq!(r.report.max_takeover_jump, 0.0);
    assert_eq!(r.report.max_handback_jump, 0.0);
    // The goals reached the arm: it went where each controller sent it.
    let at = |t: u64| &r.rec.frames.iter().find(|f| f.tick == t).unwrap().q;
    assert!(max_diff(at(999), &robot) < 1e-6, "{:?}", at(999));
    assert!(max_diff(at(1499), &human) < 1e-6, "{:?}", at(1499));
    assert!(max_diff(at(2999), &robot) < 1e-6, "{:?}", at(2999));
    assert_eq!(r.report.holds_entered, 0);
    assert!(r.status.faults.is_empty(), "{:?}", r.status.faults);
}

#[test]
fn a_bus_fault_holds_until_a_person_acts_and_clears_when_the_bus_answers() {
    let cfg = config();
    assert_eq!(cfg.safety.fault_ticks, 5);
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5).fail_reads(800..820);
    let pad = DummyPad::new(vec![
        (1200, Intent::Takeover),
        (1400, Intent::Handback),
        (2000, Intent::Success),
    ]);
    let r = run(
        &cfg,
        arm,
        pad,
        Some(ConstantPolicy::new(pose(&cfg, 0.6))),
        false,
        5000,
    );

    assert_eq!(r.report.bus_errors, 20);
    // The fifth failed read in a row is a bus fault, and the arm holds.
    assert_eq!(r.rec.faults, vec![(804, FaultKind::Bus)]);
    let hold = r
        .rec
        .events
        .iter()
        .find(|(_, e)| e.starts_with("autonomous -> hold"))
        .unwrap();
    assert_eq!(hold.0, 804);
    assert!(hold.1.contains("bus: 1 servo(s) failed"), "{hold:?}");
    assert!(r
        .rec
        .events
        .iter()
        .any(|(t, e)| *t == 820 && e == "bus recovered"));
    // The policy never got the arm back by itself: only the takeover left Hold.
    assert!(!r
        .rec
        .events
        .iter()
        .any(|(_, e)| e.starts_with("hold -> autonomous")));
    assert!(r
        .rec
        .events
        .iter()
        .any(|(t, e)| *t == 1200 && e.starts_with("hold -> intervening")));
    assert_eq!((r.report.holds_entered, r.report.holds_left), (1, 1));
    assert_eq!(r.rumbles, vec!["fault"]);
    // While it held, the last goal kept being written, unchanged, failed reads included.
    let held = writes_in(&r, 805..1200);
    assert_eq!(held.len(), 395);
    assert!(held.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(r.report.episodes, vec![EpisodeOutcome::Success]);
    assert!(
        r.status.faults.is_empty() && r.status.healthy,
        "{:?}",
        r.status
    );
}

#[test]
fn a_servo_alert_is_a_bus_fault_named_after_its_joint() {
    let cfg = config();
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5).alert(300..5000, 1, 0x20);
    let pad = DummyPad::new(vec![]);
    let r = run(
        &cfg,
        arm,
        pad,
        Some(ConstantPolicy::new(pose(&cfg, 0.6))),
        false,
        600,
    );
    assert_eq!(r.rec.faults.first(), Some(&(300, FaultKind::Bus)));
    let joint = &cfg.joints[1].name;
    let msg = format!("servo {joint} hardware alert 0x20");
    assert!(
        r.rec.events.iter().any(|(t, e)| *t == 300 && *e == msg),
        "{:?}",
        r.rec.events
    );
    // Still alerted at the end: status shows the bus fault, and the loop is not healthy.
    assert_eq!(r.status.faults.len(), 1, "{:?}", r.status.faults);
    assert_eq!(r.status.faults[0].kind, FaultKind::Bus);
    assert_eq!(r.status.faults[0].message, msg);
    assert!(!r.status.healthy);
}

#[test]
fn a_policy_failure_holds() {
    let cfg = config();
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5);
    let pad = DummyPad::new(vec![(1500, Intent::Failure)]);
    let policy = ConstantPolicy::new(pose(&cfg, 0.8)).fail_at(vec![700]);
    let r = run(&cfg, arm, pad, Some(policy), false, 5000);
    assert_eq!(r.rec.faults, vec![(700, FaultKind::Policy)]);
    assert!(r
        .rec
        .events
        .iter()
        .any(|(t, e)| *t == 700 && e == "autonomous -> hold: policy: injected failure"));
    assert_eq!(r.rumbles, vec!["fault"]);
    // Held still from the failing tick on, although the policy answers again.
    let held = writes_in(&r, 700..1500);
    assert!(held.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(r.report.holds_entered, 1);
    assert_eq!(r.report.episodes, vec![EpisodeOutcome::Failure]);
}

#[test]
fn a_starved_policy_holds() {
    let cfg = config();
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5);
    let pad = DummyPad::new(vec![(1000, Intent::Discard)]);
    let policy = ConstantPolicy::new(pose(&cfg, 0.8)).silent(600..2000, 10);
    let r = run(&cfg, arm, pad, Some(policy), false, 5000);
    assert_eq!(r.report.policy_starvations, 1);
    assert_eq!(r.rec.faults, vec![(609, FaultKind::Policy)]);
    assert!(r
        .rec
        .events
        .iter()
        .any(|(t, e)| *t == 609 && e.contains("policy: no usable action for 200 ms")));
    assert_eq!(r.report.episodes, vec![EpisodeOutcome::Discarded]);
}

#[test]
fn goals_are_clamped_to_the_limits_and_the_step() {
    let cfg = config();
    let lim = limits(&cfg);
    let max_step = cfg.safety.max_step_rad;
    // A policy that asks for far beyond every upper limit; the arm follows exactly.
    let beyond: Vec<f64> = lim.iter().map(|[_, hi]| hi + 1.0).collect();
    let arm = DummyArm::new(pose(&cfg, 0.0), 1.0);
    let pad = DummyPad::new(vec![(2000, Intent::Success)]);
    let r = run(
        &cfg,
        arm,
        pad,
        Some(ConstantPolicy::new(beyond)),
        false,
        5000,
    );
    assert!(r.report.clamps > 0);
    let writes = &r.arm.writes;
    assert!(writes.len() > 1900);
    for (_, g) in writes {
        for (v, [lo, hi]) in g.iter().zip(&lim) {
            assert!(v >= lo && v <= hi, "{v} outside [{lo}, {hi}]");
        }
    }
    for w in writes.windows(2) {
        assert!(max_diff(&w[0].1, &w[1].1) <= max_step + 1e-12);
    }
    let upper: Vec<f64> = lim.iter().map(|l| l[1]).collect();
    assert_eq!(writes.last().unwrap().1, upper);
}

#[test]
fn a_demonstration_is_labelled_demo_and_driven_by_the_human() {
    let cfg = config();
    let human = pose(&cfg, 0.25);
    let arm = DummyArm::new(pose(&cfg, 0.5), 0.5);
    let pad = DummyPad::new(vec![(1000, Intent::Success)]).human_goal(human.clone());
    let r = run(&cfg, arm, pad, None, true, 5000);
    assert_eq!(r.rec.episodes, vec![(0, true)]);
    assert_eq!(r.rec.frames.len(), 1000);
    assert!(r
        .rec
        .frames
        .iter()
        .all(|f| f.source == ControlSource::Demo && f.proposal.is_none()));
    assert!(max_diff(&r.rec.frames[999].q, &human) < 1e-6);
    assert_eq!(r.report.policy_actions, 0);
}
