//! Closed-loop harness shared by the integration tests: the world, first-order servos (the
//! emulator's dynamics) and, for the human, the daemon's teleop path from pad to goals.
#![allow(dead_code)]

use std::path::Path;

use intervened_robot::{Axis, Button, RobotConfig};
use intervened_teleop::{GamepadSource, Mapping, PadState, TeleopIntegrator, VirtualGamepad};
use intervened_world::{Expert, FirstOrderServos, HumanParams, SimulatedHuman, World};

pub fn config() -> RobotConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    RobotConfig::load(&p).unwrap()
}

pub fn dt(cfg: &RobotConfig) -> f64 {
    cfg.period_s()
}

/// Keeps the measured gripper at the block once the jaws meet it, like a real block does.
pub fn block_stops_jaws(world: &World, q: &mut [f64]) {
    if let Some(stop) = world.gripper_stop() {
        let g = world.arm().index().gripper;
        q[g] = q[g].max(stop);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub success: bool,
    pub ticks: u64,
    /// Every measured q and feature vector, for bit-for-bit comparisons.
    pub trace: Vec<f64>,
    pub takeovers: u32,
    pub handbacks: u32,
    pub ticks_intervened: u64,
    pub success_pressed_at: Option<u64>,
    pub success_at: Option<u64>,
    pub start_pressed: u32,
    pub takeover_pressed_while_not_intervening: bool,
    pub first_takeover_at: Option<u64>,
    pub first_handback_at: Option<u64>,
    /// Every deflection was in its axis's range and every mapped axis came exactly once.
    pub axes_well_formed: bool,
}

/// Safety filter like the daemon's: each goal moves at most `max_step` from the last one.
pub fn limit_step(goal: &mut [f64], last: &[f64], max_step: Option<f64>) {
    if let Some(m) = max_step {
        for (g, l) in goal.iter_mut().zip(last) {
            *g = g.clamp(l - m, l + m);
        }
    }
}

/// The expert drives the servos directly until success or time out.
pub fn run_expert(cfg: &RobotConfig, seed: u64, q0: &[f64], max_step: Option<f64>) -> Outcome {
    let mut world = World::new(cfg).unwrap();
    world.reset(seed);
    let expert = Expert::new(world.arm());
    run_policy_loop(cfg, &mut world, q0, max_step, |q, f, _| {
        expert.act(q, f).unwrap()
    })
}

/// Any policy `(q, features, tick) -> goals` driving the servos.
pub fn run_policy_loop(
    cfg: &RobotConfig,
    world: &mut World,
    q0: &[f64],
    max_step: Option<f64>,
    mut policy: impl FnMut(&[f64], &[f64], u64) -> Vec<f64>,
) -> Outcome {
    let servos = FirstOrderServos::from_config(cfg);
    let dt = dt(cfg);
    let mut q = q0.to_vec();
    let mut last = q.clone();
    let mut out = Outcome::default();
    loop {
        world.step(&q, dt).unwrap();
        let f = world.features();
        out.trace.extend_from_slice(&q);
        out.trace.extend_from_slice(&f);
        if world.success() && out.success_at.is_none() {
            out.success_at = Some(world.ticks());
        }
        if world.done() {
            break;
        }
        let mut goal = policy(&q, &f, world.ticks());
        for (g, [lo, hi]) in goal.iter_mut().zip(world.arm().limits()) {
            assert!(*g >= *lo && *g <= *hi, "goal {g} outside [{lo}, {hi}]");
        }
        limit_step(&mut goal, &last, max_step);
        last.clone_from(&goal);
        servos.step(&mut q, &goal, dt);
        block_stops_jaws(world, &mut q);
    }
    out.success = world.success();
    out.ticks = world.ticks();
    out
}

/// The teleop path as the daemon runs it: pad events into the pad state, the mapping to joint
/// velocities, the integrator into goals.
pub struct Teleop {
    pad: VirtualGamepad,
    state: PadState,
    mapping: Mapping,
    integrator: TeleopIntegrator,
    velocities: Vec<f64>,
}

impl Teleop {
    pub fn new(cfg: &RobotConfig) -> Self {
        let pad = VirtualGamepad::new();
        pad.connect();
        Self {
            pad,
            state: PadState::new(),
            mapping: Mapping::new(&cfg.teleop, &cfg.joint_names()).unwrap(),
            integrator: TeleopIntegrator::new(cfg.joints.iter().map(|j| j.limits).collect())
                .unwrap(),
            velocities: vec![0.0; cfg.joints.len()],
        }
    }

    /// Starts integrating from the measured joints (at takeover).
    pub fn begin(&mut self, q: &[f64]) {
        self.integrator.reset_to(q).unwrap();
    }

    /// One tick of the human's deflections and buttons; the new goals.
    pub fn apply(&mut self, axes: &[(Axis, f64)], pressed: &[Button], dt: f64) -> Vec<f64> {
        self.pad.apply_state(axes, pressed);
        for ev in self.pad.events().try_iter() {
            self.state.apply(&ev);
        }
        self.mapping
            .velocities_into(&self.state, &mut self.velocities);
        self.integrator.step(&self.velocities, dt).unwrap().to_vec()
    }
}

/// A policy under supervision: `(q, features, tick) -> goals`.
pub type Policy<'a> = dyn FnMut(&[f64], &[f64], u64) -> Vec<f64> + 'a;

/// The simulated human in the loop. `policy = None`: demonstrate; `Some`: supervise that policy.
pub fn run_human(
    cfg: &RobotConfig,
    seed: u64,
    params: HumanParams,
    mut policy: Option<&mut Policy<'_>>,
) -> Outcome {
    let mut world = World::new(cfg).unwrap();
    world.reset(seed);
    let mut human = SimulatedHuman::new(cfg, HumanParams { seed, ..params }).unwrap();
    let servos = FirstOrderServos::from_config(cfg);
    let mut teleop = Teleop::new(cfg);
    let dt = dt(cfg);
    let mut q = vec![0.0; cfg.joints.len()];
    let mut out = Outcome {
        axes_well_formed: true,
        ..Outcome::default()
    };
    let mut holding = false;
    let supervise = policy.is_some();
    if !supervise {
        teleop.begin(&q);
    }
    let succ_btn = cfg.teleop.buttons.success;
    let start_btn = cfg.teleop.buttons.start_episode;
    let take_btn = cfg.teleop.takeover_button;
    loop {
        world.step(&q, dt).unwrap();
        let f = world.features();
        out.trace.extend_from_slice(&q);
        out.trace.extend_from_slice(&f);
        if world.success() && out.success_at.is_none() {
            out.success_at = Some(world.ticks());
        }
        let cmd = human.step(&q, &f, supervise).unwrap();
        out.trace.extend(cmd.axes.iter().map(|(_, d)| *d));
        if cmd.pressed.contains(&succ_btn) && out.success_pressed_at.is_none() {
            out.success_pressed_at = Some(world.ticks());
        }
        if cmd.pressed.contains(&start_btn) {
            out.start_pressed += 1;
        }
        let now_holding = cmd.pressed.contains(&take_btn);
        if now_holding && !holding && out.first_takeover_at.is_none() {
            out.first_takeover_at = Some(world.ticks());
        }
        if !now_holding && holding && out.first_handback_at.is_none() {
            out.first_handback_at = Some(world.ticks());
        }
        if !axes_ok(cfg, &cmd.axes) {
            out.axes_well_formed = false;
        }
        if now_holding != human.intervening() {
            out.takeover_pressed_while_not_intervening = true;
        }
        // Stop after success once the human has pressed the button (the daemon ends there).
        if world.timed_out() || (world.success() && out.success_pressed_at.is_some()) {
            break;
        }
        let goal: Vec<f64> = match policy.as_mut() {
            None => teleop.apply(&cmd.axes, &cmd.pressed, dt),
            Some(pol) => {
                if now_holding && !holding {
                    teleop.begin(&q);
                }
                if now_holding {
                    teleop.apply(&cmd.axes, &cmd.pressed, dt)
                } else {
                    pol(&q, &f, world.ticks())
                }
            }
        };
        holding = now_holding;
        servos.step(&mut q, &goal, dt);
        block_stops_jaws(&world, &mut q);
    }
    out.success = world.success();
    out.ticks = world.ticks();
    out.takeovers = human.takeovers();
    out.handbacks = human.handbacks();
    out.ticks_intervened = human.ticks_intervened();
    out
}

/// Each mapped axis exactly once, sticks in [-1, 1], triggers in [0, 1], D-pad in {-1, 0, 1}.
pub fn axes_ok(cfg: &RobotConfig, axes: &[(Axis, f64)]) -> bool {
    let mut mapped: Vec<Axis> = cfg.teleop.axes.iter().map(|m| m.axis).collect();
    mapped.sort();
    mapped.dedup();
    let mut got: Vec<Axis> = axes.iter().map(|(a, _)| *a).collect();
    got.sort();
    if got != mapped {
        return false;
    }
    axes.iter().all(|(a, d)| match a {
        Axis::LeftTrigger | Axis::RightTrigger => (0.0..=1.0).contains(d),
        Axis::DpadX | Axis::DpadY => *d == -1.0 || *d == 0.0 || *d == 1.0,
        _ => (-1.0..=1.0).contains(d),
    })
}
