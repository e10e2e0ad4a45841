//! The simulated human: drives a (virtual) gamepad through the same mapping a person uses.
//!
//! # What it sees
//! Each tick it is handed the measured joints and the world's features, but it reacts to the
//! observation `reaction_delay_ticks` old (a FIFO): that is its reaction time. Like a person it
//! anticipates its own commands: it adds the joint motion it commanded during the delay to the
//! stale observation (an efference copy, a Smith predictor); without that a 150 ms delay makes
//! a proportional operator oscillate, which people do not.
//!
//! # How it drives
//! It follows the scripted [`Expert`] (with a longer look-ahead, `lookahead_m`): joint velocity
//! `v = gain_per_s * (target - q_predicted)`, turned into deflections by inverting
//! `TeleopConfig::axes` (`velocity = deflection * rad_per_s * speed_scale`):
//! - sticks: `d = v / (rad_per_s * speed_scale)`; corrections below `min_deflection` of full
//!   speed are not made; it pushes past the deadzone (`d' = dz + |d| (1 - dz)`), adds Gaussian
//!   tremor (`noise_std`) to the axes it is pushing, and clamps to [-1, 1];
//! - triggers (0..1): of a pair driving one joint in opposite directions (the gripper) it pulls
//!   the one whose sign matches `v`, the same way;
//! - D-pad (-1, 0, 1): pressed while the predicted error exceeds `dpad_threshold_rad`.
//!
//! It never uses the fine-mode button.
//!
//! # Modes (chosen per tick by `policy_control`)
//! - **Demonstrate** (`policy_control = false`, no policy runs the episode): teleoperates the
//!   whole episode. It does not hold the takeover button; the daemon's demonstration mode gives
//!   the gamepad control.
//! - **Supervise** (`policy_control = true`): watches the policy and holds the config's
//!   `teleop.takeover_button` (hold mode) while it drives. It tracks the task error
//!   `e = |tip - goal| + gripper_weight_m_per_rad * |gripper - gripper goal|` for the expert's
//!   current phase, and its best (lowest) value since the phase began. It takes over when
//!   - the arm strays: `e > best + stray_threshold_m`; or
//!   - it stalls: `e` has not improved by `progress_m` for `stall_ticks`; or
//!   - the tool is badly oriented: tool pitch or wrist roll more than `pose_threshold_rad` off
//!     pointing down / 0.
//!
//!   It releases (hysteresis) once back on track, the phase having advanced or `e` having come
//!   down to `max(e at takeover - recover_m, goal_reached_m)`, with the pose fine, for
//!   `handback_ticks` in a row and after at least `min_intervention_ticks`.
//!
//! # Who gates ([`Gate`])
//! - [`Gate::Human`] (HG-DAgger): it takes over on its own judgement, as above.
//! - [`Gate::Robot`] (EnsembleDAgger / ThriftyDAgger): it takes over *only* when the robot asks
//!   (the daemon rumbles the pad when the ensemble's doubt passes its threshold; the rig hands
//!   that on with [`SimulatedHuman::hear_help`]), after the same reaction delay, and hands back
//!   by the same rule. Its own judgement still runs, unacted on, to score the asking: an ask
//!   it finds nothing wrong with when it reacts is a *false alarm*; a moment its judgement
//!   says "I would take over now" with no ask within [`MISS_WINDOW_S`] is a *miss*.
//!
//! In both modes it holds the start button for `button_hold_ticks` at the beginning (when
//! `press_start`), and holds the success button for `button_hold_ticks` once it sees the block
//! lifted; it then lets go of everything and stops supervising.
//!
//! # Defaults ([`HumanParams::default`], for 50 Hz)
//! `reaction_delay_ticks` 7 (140 ms, a typical visual reaction to an expected event),
//! `noise_std` 0.05 of full deflection, `gain_per_s` 4, `lookahead_m` 0.04, `min_deflection`
//! 0.03, `dpad_threshold_rad` 0.02, `stray_threshold_m` 0.03, `stall_ticks` 75 (1.5 s),
//! `progress_m` 0.005, `pose_threshold_rad` 0.7, `recover_m` 0.04, `goal_reached_m` 0.01,
//! `gripper_weight_m_per_rad` 0.02, `handback_ticks` 10, `min_intervention_ticks` 10,
//! `button_hold_ticks` 3, `press_start` true, `seed` 0.

use std::collections::VecDeque;

use intervened_robot::{Axis, Button, RobotConfig};
use intervened_teleop::Mapping;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::debug;

use crate::arm::{ArmModel, PITCH_DOWN};
use crate::error::WorldError;
use crate::expert::{Expert, ExpertParams, Phase};
use crate::world::{WorldParams, FEATURE_NAMES};

/// Who decides when the human takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gate {
    /// The human watches and takes over when it judges the robot is going wrong (HG-DAgger).
    #[default]
    Human,
    /// The human takes over only when the robot asks for help.
    Robot,
}

/// A need the robot does not ask about within this long counts as missed (seconds).
pub const MISS_WINDOW_S: f64 = 1.0;

/// How well the robot asked for help, as judged by the human it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct AskStats {
    /// Asks the human heard while the policy drove.
    pub asks: u64,
    /// Asks the human found nothing wrong with when it reacted.
    pub false_alarms: u64,
    /// Moments its own judgement said "take over now" while the policy drove.
    pub needs: u64,
    /// Needs with no ask within [`MISS_WINDOW_S`].
    pub misses: u64,
}

impl AskStats {
    pub fn add(&mut self, o: &AskStats) {
        self.asks += o.asks;
        self.false_alarms += o.false_alarms;
        self.needs += o.needs;
        self.misses += o.misses;
    }
}

/// The simulated human's parameters; see the module docs for their meaning and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanParams {
    pub reaction_delay_ticks: usize,
    pub noise_std: f64,
    pub gain_per_s: f64,
    pub lookahead_m: f64,
    pub min_deflection: f64,
    pub dpad_threshold_rad: f64,
    pub stray_threshold_m: f64,
    pub stall_ticks: u32,
    pub progress_m: f64,
    pub pose_threshold_rad: f64,
    pub recover_m: f64,
    pub goal_reached_m: f64,
    pub gripper_weight_m_per_rad: f64,
    pub handback_ticks: u32,
    pub min_intervention_ticks: u32,
    pub button_hold_ticks: u32,
    pub press_start: bool,
    pub seed: u64,
    pub gate: Gate,
}

impl Default for HumanParams {
    fn default() -> Self {
        Self {
            reaction_delay_ticks: 7,
            noise_std: 0.05,
            gain_per_s: 4.0,
            lookahead_m: 0.04,
            min_deflection: 0.03,
            dpad_threshold_rad: 0.02,
            stray_threshold_m: 0.03,
            stall_ticks: 75,
            progress_m: 0.005,
            pose_threshold_rad: 0.7,
            recover_m: 0.04,
            goal_reached_m: 0.01,
            gripper_weight_m_per_rad: 0.02,
            handback_ticks: 10,
            min_intervention_ticks: 10,
            button_hold_ticks: 3,
            press_start: true,
            seed: 0,
            gate: Gate::Human,
        }
    }
}

/// One tick of gamepad state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HumanCommand {
    /// Every mapped axis once, in mapping order: sticks in [-1, 1], triggers in [0, 1],
    /// D-pad -1, 0 or 1.
    pub axes: Vec<(Axis, f64)>,
    /// Buttons held down this tick.
    pub pressed: Vec<Button>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AxisKind {
    Stick,
    Trigger,
    Dpad,
}

fn kind(axis: Axis) -> AxisKind {
    match axis {
        Axis::LeftTrigger | Axis::RightTrigger => AxisKind::Trigger,
        Axis::DpadX | Axis::DpadY => AxisKind::Dpad,
        _ => AxisKind::Stick,
    }
}

/// One mapped axis: (axis, joint index, rad/s at full deflection).
type Drive = (Axis, usize, f64);

/// Why a takeover happened (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Stray,
    Stall,
    Pose,
    /// The robot asked for help.
    Asked,
}

/// The simulated human. See the module docs.
#[derive(Debug, Clone)]
pub struct SimulatedHuman {
    params: HumanParams,
    arm: ArmModel,
    expert: Expert,
    world: WorldParams,
    dt: f64,
    deadzone: f64,
    speed_scale: f64,
    takeover_button: Button,
    start_button: Button,
    success_button: Button,
    drives: Vec<Drive>,
    axes: Vec<Axis>,
    rng: ChaCha8Rng,
    /// Observations, newest at the back; the front is what the human reacts to.
    seen: VecDeque<(Vec<f64>, Vec<f64>)>,
    /// Joint velocities it commanded, newest at the back (at most the delay long).
    sent: VecDeque<Vec<f64>>,
    tick: u64,
    intervening: bool,
    done: bool,
    success_press_left: u32,
    phase: Option<Phase>,
    best: f64,
    progress_ref: f64,
    stall: u32,
    takeover_rank: u8,
    takeover_error: f64,
    on_track_ticks: u32,
    held_ticks: u32,
    takeovers: u32,
    handbacks: u32,
    ticks_intervened: u64,
    /// Robot gate: the tick an ask was heard, not yet acted on.
    ask_heard: Option<u64>,
    /// Robot gate: the tick its own judgement began saying "take over", not yet asked about.
    need_since: Option<u64>,
    /// Its own judgement said "take over" on the last tick.
    judging_bad: bool,
    ask_stats: AskStats,
}

impl SimulatedHuman {
    pub fn new(cfg: &RobotConfig, params: HumanParams) -> Result<Self, WorldError> {
        Self::with_world(cfg, params, WorldParams::default())
    }

    /// A human for a world with non-default parameters (block size, success height).
    pub fn with_world(
        cfg: &RobotConfig,
        params: HumanParams,
        world: WorldParams,
    ) -> Result<Self, WorldError> {
        let arm = ArmModel::from_config(cfg)?;
        let mut ep = ExpertParams::for_world(&arm, &world);
        if !(params.lookahead_m.is_finite() && params.lookahead_m > 0.0) {
            return Err(WorldError::BadParam {
                name: "lookahead_m",
                problem: format!("{} is not positive", params.lookahead_m),
            });
        }
        if !(params.noise_std.is_finite() && params.noise_std >= 0.0) {
            return Err(WorldError::BadParam {
                name: "noise_std",
                problem: format!("{} is not a standard deviation", params.noise_std),
            });
        }
        ep.carrot_m = params.lookahead_m;
        let expert = Expert::with_params(&arm, ep, world.clone());
        // The daemon's own mapping, so the human pushes the sticks the teleop path reads.
        let drives: Vec<Drive> = Mapping::new(&cfg.teleop, &cfg.joint_names())
            .map_err(|e| WorldError::Teleop(e.to_string()))?
            .axes()
            .iter()
            .map(|r| (r.axis, r.joint, r.rad_per_s))
            .collect();
        let mut axes: Vec<Axis> = Vec::new();
        for (a, _, _) in &drives {
            if !axes.contains(a) {
                axes.push(*a);
            }
        }
        let seed = params.seed;
        Ok(Self {
            params,
            arm,
            expert,
            world,
            dt: cfg.period_s(),
            deadzone: cfg.teleop.deadzone,
            speed_scale: cfg.teleop.speed_scale,
            takeover_button: cfg.teleop.takeover_button,
            start_button: cfg.teleop.buttons.start_episode,
            success_button: cfg.teleop.buttons.success,
            drives,
            axes,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seen: VecDeque::new(),
            sent: VecDeque::new(),
            tick: 0,
            intervening: false,
            done: false,
            success_press_left: 0,
            phase: None,
            best: f64::INFINITY,
            progress_ref: f64::INFINITY,
            stall: 0,
            takeover_rank: 0,
            takeover_error: 0.0,
            on_track_ticks: 0,
            held_ticks: 0,
            takeovers: 0,
            handbacks: 0,
            ticks_intervened: 0,
            ask_heard: None,
            need_since: None,
            judging_bad: false,
            ask_stats: AskStats::default(),
        })
    }

    /// Forgets the episode (observations, counters, buttons) and reseeds the tremor.
    pub fn reset_episode(&mut self, seed: u64) {
        self.params.seed = seed;
        self.rng = ChaCha8Rng::seed_from_u64(seed);
        self.seen.clear();
        self.sent.clear();
        self.tick = 0;
        self.intervening = false;
        self.done = false;
        self.success_press_left = 0;
        self.phase = None;
        self.best = f64::INFINITY;
        self.progress_ref = f64::INFINITY;
        self.stall = 0;
        self.on_track_ticks = 0;
        self.held_ticks = 0;
        self.takeovers = 0;
        self.handbacks = 0;
        self.ticks_intervened = 0;
        self.ask_heard = None;
        self.need_since = None;
        self.judging_bad = false;
    }

    /// The robot asked for help (the pad rumbled). Heard only while the policy drives and the
    /// human is not already driving; acted on after the reaction delay (robot gate only).
    pub fn hear_help(&mut self) {
        if self.params.gate == Gate::Robot
            && !self.intervening
            && !self.done
            && self.ask_heard.is_none()
        {
            self.ask_heard = Some(self.tick);
            self.ask_stats.asks += 1;
        }
    }

    /// Asks, false alarms, needs and misses since the human was made (all episodes).
    pub fn ask_stats(&self) -> AskStats {
        self.ask_stats
    }

    pub fn params(&self) -> &HumanParams {
        &self.params
    }

    /// Takeovers this episode.
    pub fn takeovers(&self) -> u32 {
        self.takeovers
    }

    /// Hand-backs this episode (releases of the takeover button because the arm was back on
    /// track; releasing at the end of a successful episode is not counted).
    pub fn handbacks(&self) -> u32 {
        self.handbacks
    }

    /// Ticks this episode on which it held the takeover button.
    pub fn ticks_intervened(&self) -> u64 {
        self.ticks_intervened
    }

    /// It is holding the takeover button.
    pub fn intervening(&self) -> bool {
        self.intervening
    }

    /// It has seen the block lifted and pressed success.
    pub fn saw_success(&self) -> bool {
        self.done
    }

    /// One tick: the measured joints (config order), the world's features, and whether a
    /// policy runs this episode (`true`: supervise, `false`: demonstrate).
    pub fn step(
        &mut self,
        q_measured: &[f64],
        features: &[f64],
        policy_control: bool,
    ) -> Result<HumanCommand, WorldError> {
        self.arm.check(q_measured)?;
        if features.len() != FEATURE_NAMES.len() {
            return Err(WorldError::FeatureCount {
                expected: FEATURE_NAMES.len(),
                got: features.len(),
            });
        }
        self.seen
            .push_back((q_measured.to_vec(), features.to_vec()));
        while self.seen.len() > self.params.reaction_delay_ticks + 1 {
            self.seen.pop_front();
        }
        let (q_obs, f_obs) = match self.seen.front() {
            Some((q, f)) => (q.clone(), f.clone()),
            None => (q_measured.to_vec(), features.to_vec()),
        };

        let mut pressed = Vec::new();
        if self.params.press_start && self.tick < u64::from(self.params.button_hold_ticks) {
            pressed.push(self.start_button);
        }
        let grasped = f_obs.get(3).is_some_and(|g| *g > 0.5);
        let lifted = f_obs.get(2).is_some_and(|z| self.world.lifted(*z));
        if !self.done && grasped && lifted {
            self.done = true;
            self.success_press_left = self.params.button_hold_ticks;
            if self.intervening {
                self.intervening = false;
            }
            debug!(tick = self.tick, "simulated human sees success");
        }
        if self.success_press_left > 0 {
            pressed.push(self.success_button);
            self.success_press_left -= 1;
        }

        let driving = if self.done {
            false
        } else if policy_control {
            let was = self.intervening;
            self.supervise(&q_obs, &f_obs)?;
            if self.intervening && !was {
                // Its own commands start now; the prediction starts from the observation.
                self.sent.clear();
            }
            self.intervening
        } else {
            true
        };

        let axes = if driving {
            self.drive(&q_obs, &f_obs)?
        } else {
            self.sent.clear();
            self.axes.iter().map(|a| (*a, 0.0)).collect()
        };
        if self.intervening {
            pressed.push(self.takeover_button);
            self.ticks_intervened += 1;
        }
        self.tick += 1;
        Ok(HumanCommand { axes, pressed })
    }

    /// Updates the takeover decision from the (delayed) observation.
    fn supervise(&mut self, q: &[f64], f: &[f64]) -> Result<(), WorldError> {
        let p = &self.params;
        let plan = self.expert.plan(q, f)?;
        let tip = self.arm.fk(q)?;
        let opening = self.arm.gripper(q)?;
        let roll = self
            .arm
            .index()
            .wrist_roll
            .and_then(|i| q.get(i).copied())
            .unwrap_or(0.0);
        let dist = {
            let d: f64 = tip
                .pos
                .iter()
                .zip(plan.goal)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            d.sqrt()
        };
        let e = dist + p.gripper_weight_m_per_rad * (opening - plan.gripper_goal).abs();
        let pose_bad = (tip.pitch - PITCH_DOWN).abs() > p.pose_threshold_rad
            || roll.abs() > p.pose_threshold_rad;

        if self.phase != Some(plan.phase) {
            self.phase = Some(plan.phase);
            self.best = e;
            self.progress_ref = e;
            self.stall = 0;
        } else {
            self.best = self.best.min(e);
            if e < self.progress_ref - p.progress_m {
                self.progress_ref = e;
                self.stall = 0;
            } else {
                self.stall = self.stall.saturating_add(1);
            }
        }

        if !self.intervening {
            let judged = if pose_bad {
                Some(Reason::Pose)
            } else if e > self.best + p.stray_threshold_m {
                Some(Reason::Stray)
            } else if self.stall >= p.stall_ticks {
                Some(Reason::Stall)
            } else {
                None
            };
            let reason = match p.gate {
                Gate::Human => judged,
                Gate::Robot => self.gate_on_asks(judged.is_some()),
            };
            if let Some(reason) = reason {
                self.intervening = true;
                self.takeovers += 1;
                self.takeover_rank = plan.phase.rank();
                self.takeover_error = e;
                self.on_track_ticks = 0;
                self.held_ticks = 0;
                debug!(tick = self.tick, ?reason, error = e, phase = ?plan.phase, "simulated human takes over");
            }
        } else {
            self.held_ticks = self.held_ticks.saturating_add(1);
            let back = plan.phase.rank() > self.takeover_rank
                || e <= (self.takeover_error - p.recover_m).max(p.goal_reached_m);
            if back && !pose_bad {
                self.on_track_ticks += 1;
            } else {
                self.on_track_ticks = 0;
            }
            if self.on_track_ticks >= p.handback_ticks
                && self.held_ticks >= p.min_intervention_ticks
            {
                self.intervening = false;
                self.handbacks += 1;
                // The policy gets a fresh start from here.
                self.best = e;
                self.progress_ref = e;
                self.stall = 0;
                debug!(tick = self.tick, error = e, "simulated human hands back");
            }
        }
        Ok(())
    }

    /// Robot gate: scores its own judgement (`bad`) against the asks, and takes over once the
    /// reaction delay has passed since an ask.
    fn gate_on_asks(&mut self, bad: bool) -> Option<Reason> {
        let window = (MISS_WINDOW_S / self.dt).ceil() as u64;
        if bad && !self.judging_bad && self.need_since.is_none() {
            self.need_since = Some(self.tick);
            self.ask_stats.needs += 1;
        }
        self.judging_bad = bad;
        if let Some(since) = self.need_since {
            let asked_since = self.ask_heard.is_some_and(|a| a + window >= since);
            if asked_since {
                self.need_since = None;
            } else if self.tick >= since + window {
                self.ask_stats.misses += 1;
                self.need_since = None;
            }
        }
        let heard = self.ask_heard?;
        if self.tick < heard + self.params.reaction_delay_ticks as u64 {
            return None;
        }
        self.ask_heard = None;
        if !bad && self.need_since.is_none() {
            self.ask_stats.false_alarms += 1;
        }
        Some(Reason::Asked)
    }

    /// Deflections that move the arm along the expert's target.
    fn drive(&mut self, q_obs: &[f64], f_obs: &[f64]) -> Result<Vec<(Axis, f64)>, WorldError> {
        // Smith predictor: the stale observation plus what it has commanded since.
        let mut q_pred = q_obs.to_vec();
        for v in &self.sent {
            for (qp, vi) in q_pred.iter_mut().zip(v) {
                *qp += vi * self.dt;
            }
        }
        self.arm.clamp(&mut q_pred);
        let target = self.expert.act(&q_pred, f_obs)?;
        let mut out: Vec<(Axis, f64)> = self.axes.iter().map(|a| (*a, 0.0)).collect();
        let mut vel = vec![0.0; q_pred.len()];
        for (j, (t, qp)) in target.iter().zip(&q_pred).enumerate() {
            let err = t - qp;
            let want = self.params.gain_per_s * err;
            // The first axis of this joint that can move it in the wanted direction.
            let drive = self.drives.iter().find(|(a, jj, rate)| {
                *jj == j && (kind(*a) != AxisKind::Trigger || want * rate > 0.0)
            });
            let Some((axis, _, rate)) = drive.copied() else {
                continue;
            };
            let full = rate * self.speed_scale;
            let d = want / full;
            let deflection = match kind(axis) {
                AxisKind::Dpad => {
                    if err.abs() > self.params.dpad_threshold_rad {
                        d.signum()
                    } else {
                        0.0
                    }
                }
                k => {
                    if d.abs() < self.params.min_deflection {
                        0.0
                    } else {
                        let pushed =
                            d.signum() * (self.deadzone + d.abs().min(1.0) * (1.0 - self.deadzone));
                        let noisy = pushed + self.params.noise_std * self.gaussian();
                        if k == AxisKind::Trigger {
                            noisy.clamp(0.0, 1.0)
                        } else {
                            noisy.clamp(-1.0, 1.0)
                        }
                    }
                }
            };
            if let Some(slot) = out.iter_mut().find(|(a, _)| *a == axis) {
                slot.1 = deflection;
            }
            // What it expects the arm to do: the intended speed, not the deadzone push.
            if let Some(v) = vel.get_mut(j) {
                *v = match kind(axis) {
                    AxisKind::Dpad => deflection * full,
                    _ if deflection == 0.0 => 0.0,
                    _ => want.clamp(-full.abs(), full.abs()),
                };
            }
        }
        self.sent.push_back(vel);
        while self.sent.len() > self.params.reaction_delay_ticks {
            self.sent.pop_front();
        }
        Ok(out)
    }

    /// Standard normal sample (Box-Muller; deterministic for a seed).
    fn gaussian(&mut self) -> f64 {
        let u1: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.gen_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}
