//! The control thread: one fixed-rate loop that reads the arm, decides who is in control,
//! filters the command and writes it, and records the frame.
//!
//! It is a plain OS thread, never a tokio task. Nothing it calls blocks on disk or network:
//! the recorder is fed through a bounded queue with `try_send`, the service shell through
//! `try_lock`ed status and a command queue it drains without waiting.
//!
//! What the loop does when something fails:
//! - **bus or servo**: a failed read keeps the last measured position; after
//!   `safety.fault_ticks` consecutive failures (or any servo hardware alert) the arm goes to
//!   Hold. The last goal keeps being written so a servo that comes back holds still. Hold lasts
//!   until a person takes over or resumes.
//! - **gamepad lost**: Hold (never back to the policy by itself).
//! - **policy**: no action ready (slow model) holds the last goal; no usable action for
//!   `policy.action_timeout_ms` (a model slower than that, a dead worker), an error or a
//!   non-finite output goes to Hold, with the fault in status and a rumble.
//! - **command**: the safety filter clamps it to the joint limits and the step limit; a
//!   non-finite command holds and goes to Hold.
//! - **recorder / disk**: the frame is dropped and counted, the fault is shown in status;
//!   control goes on.
//! - **camera**: see [`crate::cameras`]: a camera the running policy reads that stops or
//!   delivers frames older than its `max_age_ms` sends the arm to Hold (a policy fault naming
//!   the camera); the recording marks every gap.
//! - **e-stop**: latched; torque off where `safety.on_estop = "off"`.
//! - **no known position** (the first read has not succeeded): no goal is written at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Receiver;
use intervened_robot::{RobotConfig, SensorSource, TorquePolicy};
use tracing::{error, info, warn};

use crate::arbiter::{Arbiter, Mode, Transition, Trigger};
use crate::cameras::{CameraHealth, LoopCameras, MAX_CAMERAS};
use crate::clock::Pacer;
use crate::fault::{ActiveFault, ArmFault, Fault, FaultKind, HoldReason, PolicyFault};
use crate::hardware::{ArmIo, ArmState};
use crate::protocol::Command;
use crate::protocol::{Reply, Request, StopOutcome};
use crate::recording::{
    ControlSource, EpisodeOutcome, FailureMode, FrameRecord, FrameSink, LoopEvent,
};
use crate::safety::{SafeGoal, SafetyFilter};
use crate::stats::{
    involuntary_switches, thread_cpu_time, LoopTiming, Phase, PhaseClock, SlowTick,
};
use crate::status::Status;
use crate::teleop::{GamepadInput, PadTick};
use intervened_teleop::Intent;

/// A policy the loop can run: the tch runner behind a small trait so the loop is testable.
pub trait PolicyDriver: Send {
    /// Writes the goal for this tick into `out` and returns true, or returns false when no
    /// action is ready (the loop holds).
    fn step(
        &mut self,
        tick: u64,
        obs: &[f64],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> Result<bool, PolicyFault>;
    /// The cameras this policy reads, as indices into the robot config's `[[cameras]]`, in the
    /// order its `forward` takes them (empty for a state policy).
    fn cameras(&self) -> &[usize] {
        &[]
    }
    /// [`step`](Self::step) with this tick's image of each camera of
    /// [`cameras`](Self::cameras), in that order.
    fn step_images(
        &mut self,
        tick: u64,
        obs: &[f64],
        _images: &[&[u8]],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> Result<bool, PolicyFault> {
        self.step(tick, obs, measured_q, out)
    }
    /// The tick whose observation produced the newest prediction in use, if the driver knows
    /// (for the camera-to-goal latency; None leaves it unmeasured).
    fn newest_obs_tick(&self) -> Option<u64> {
        None
    }
    /// Forget buffered predictions (control changed hands).
    fn reset(&mut self);
    /// How long the policy has gone without a usable action, once that exceeds its limit
    /// (`policy.action_timeout_ms`); None while it keeps up. Called only while it has the arm.
    fn starved(&mut self, _tick: u64) -> Option<std::time::Duration> {
        None
    }
    fn doubt(&self) -> Option<f64>;
    fn version(&self) -> &str;
}

/// Whatever must move in step with the loop beside the robot, plugged in from outside the core
/// (the simulated world of `intervened-sim-rig`: it advances the world after the goals are
/// written, lets the simulated human act, and judges the episode). Absent on a real robot.
pub trait TickHook: Send {
    /// Resets for an episode (the simulator puts the arm back at its start pose; the loop then
    /// re-seeds its goal from the next read).
    fn prepare_episode(&mut self, index: u64);
    /// Called once per tick after the goals are written, the frame recorded and status
    /// published, with the arm (a lockstep simulator waits on `ArmIo::barrier` before it
    /// advances). A verdict ends the episode on the next tick.
    fn after_tick(&mut self, arm: &mut dyn ArmIo, info: &TickInfo) -> Option<EpisodeOutcome>;
    /// Why the episode now ending failed, when the environment can tell (asked only for
    /// failures, before `prepare_episode` resets it).
    fn failure_mode(&self) -> Option<FailureMode> {
        None
    }
}

/// What the hook is told each tick.
#[derive(Debug, Clone, Copy)]
pub struct TickInfo {
    pub tick: u64,
    pub mode: Mode,
    pub in_episode: bool,
    pub demo: bool,
    /// Seconds since the episode started.
    pub episode_time: f64,
}

/// A run of episodes the loop starts by itself (sessions, benchmarks, the simulator).
#[derive(Debug, Clone, Copy)]
pub struct SessionPlan {
    pub episodes: u64,
    pub demo: bool,
}

pub struct LoopOptions {
    pub plan: Option<SessionPlan>,
    /// Stop after this many ticks (benchmarks); None runs until stopped.
    pub max_ticks: Option<u64>,
    pub task: String,
}

/// What a finished loop reports.
#[derive(Debug, Clone, Default)]
pub struct LoopReport {
    pub episodes: Vec<EpisodeOutcome>,
    pub ticks: u64,
    pub timing: crate::stats::LoopTimingSummary,
    /// Every tick's wake-up lateness (for plots).
    pub period_error_histogram: crate::stats::LatencyHistogram,
    pub clamps: u64,
    pub bus_errors: u64,
    pub dropped_frames: u64,
    /// Frames that reached the recorder but not the disk.
    pub lost_frames: u64,
    /// Episodes of which nothing readable was written.
    pub lost_episodes: u64,
    pub takeovers: u64,
    /// Times the arm entered Hold, and left it (takeover, resume, episode end, e-stop).
    pub holds_entered: u64,
    pub holds_left: u64,
    /// Of `holds_left`: Holds that ended with the episode (Hold -> Idle), not by a person.
    pub holds_ended_with_episode: u64,
    /// Ticks on which the policy produced a usable action.
    pub policy_actions: u64,
    /// Times the policy went `policy.action_timeout_ms` without an action (each a Hold).
    pub policy_starvations: u64,
    /// Largest |first human goal - measured position| at a takeover (rad): zero by design.
    pub max_takeover_jump: f64,
    /// Largest |goal - previous goal| on a handback tick (rad): zero by design.
    pub max_handback_jump: f64,
    /// From the takeover button press (the pad's event time) to the first human goal
    /// written: includes waiting for the next tick to read it (up to one period).
    pub takeover_latency: crate::stats::Summary,
    /// From the start of the tick that read the press to the first human goal written.
    pub takeover_read_latency: crate::stats::Summary,
    /// Takeovers whose press came without a time (not in `takeover_latency`).
    pub takeovers_untimed: u64,
    /// Image policies: from the capture of the oldest image an observation held to the first
    /// goal written that acted on it (capture-to-tick age, inference, and any wait for the
    /// worker). In lockstep it is in simulated time; on the monotonic clock otherwise.
    pub camera_to_goal: crate::stats::Summary,
    /// Image policies: the age of the oldest image handed to the policy, when the tick read it
    /// (the first part of `camera_to_goal`).
    pub image_age: crate::stats::Summary,
}

/// Ticks of image capture times the loop remembers for the camera-to-goal latency: more than
/// any policy worker lags behind (a chunk older than the action timeout is dropped anyway).
const ORIGINS: usize = 256;

pub struct ControlLoop {
    cfg: RobotConfig,
    arm: Box<dyn ArmIo>,
    sensors: Vec<Box<dyn SensorSource>>,
    pad: Box<dyn GamepadInput>,
    policy: Option<Box<dyn PolicyDriver>>,
    policy_updates: Receiver<Box<dyn PolicyDriver>>,
    sink: Box<dyn FrameSink>,
    pacer: Box<dyn Pacer>,
    hook: Option<Box<dyn TickHook>>,
    commands: Receiver<Command>,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    opts: LoopOptions,
    cameras: LoopCameras,

    arbiter: Arbiter,
    filter: SafetyFilter,
    state: ArmState,
    features: Vec<f64>,
    obs: Vec<f64>,
    /// The command before the safety filter.
    cmd: Vec<f64>,
    /// The policy's proposal this tick (valid when the policy said it was ready).
    proposal: Vec<f64>,
    pad_out: PadTick,
    /// The filtered goal written this tick.
    goal: SafeGoal,
    last_goal: SafeGoal,
    /// Ticks of handback blending left, and its length.
    ramp_left: u32,
    ramp_ticks: u32,
    takeover_tick: Option<u64>,
    max_handback_jump: f64,
    timing_takeover: crate::stats::LatencyHistogram,
    timing_takeover_read: crate::stats::LatencyHistogram,
    /// A takeover waiting for its first human goal on the wire: when its button press
    /// happened (None when the pad gave no time) and when the tick that read it started.
    takeover_pending: Option<(Option<Instant>, Instant)>,
    takeovers_untimed: u64,
    timing_camera_to_goal: crate::stats::LatencyHistogram,
    timing_image_age: crate::stats::LatencyHistogram,
    /// Per recent tick (by `tick % ORIGINS`): the tick, and the capture time of the oldest
    /// image the policy was given then; a fixed ring, so the tick never allocates.
    image_origins: [(u64, u64); ORIGINS],
    /// The policy's newest observation tick already counted in `timing_camera_to_goal`.
    counted_obs_tick: Option<u64>,
    /// Set when the measured position must re-seed the goal (start, after torque off, after a
    /// simulated reset); no goal is written until a read succeeds.
    reseed: bool,
    known_position: bool,
    bus_fail_streak: u32,
    /// The bus fault that holds the arm, as status shows it, until the bus answers cleanly.
    bus_fault: Option<ActiveFault>,
    torque_off: bool,
    timing: LoopTiming,
    /// This tick's time per phase.
    phase: PhaseClock,
    episode_index: u64,
    episode_start_tick: u64,
    outcomes: Vec<EpisodeOutcome>,
    help_requested: bool,
    pending_outcome: Option<EpisodeOutcome>,
    bus_errors: u64,
    takeovers: u64,
    holds_entered: u64,
    holds_left: u64,
    holds_ended_with_episode: u64,
    max_takeover_jump: f64,
    policy_actions: u64,
    policy_starvations: u64,
    /// The policy fault that put the arm in Hold, shown in status until the arm leaves Hold.
    policy_fault: Option<ActiveFault>,
    /// The tick since which the policy has waited for a camera's first frame.
    camera_wait_since: Option<u64>,
}

/// Everything the loop is built from.
pub struct LoopParts {
    pub cfg: RobotConfig,
    /// Per-joint limits: calibration range intersected with the config.
    pub limits: Vec<[f64; 2]>,
    pub arm: Box<dyn ArmIo>,
    pub sensors: Vec<Box<dyn SensorSource>>,
    pub pad: Box<dyn GamepadInput>,
    pub policy: Option<Box<dyn PolicyDriver>>,
    pub policy_updates: Receiver<Box<dyn PolicyDriver>>,
    pub sink: Box<dyn FrameSink>,
    pub pacer: Box<dyn Pacer>,
    pub hook: Option<Box<dyn TickHook>>,
    pub commands: Receiver<Command>,
    pub status: Arc<Mutex<Status>>,
    pub stop: Arc<AtomicBool>,
    pub opts: LoopOptions,
    /// The `[[cameras]]`, config order ([`LoopCameras::none`] without).
    pub cameras: LoopCameras,
}

impl ControlLoop {
    pub fn new(p: LoopParts) -> Self {
        let n = p.cfg.joints.len();
        let nf: usize = p.sensors.iter().map(|s| s.names().len()).sum();
        let filter = SafetyFilter::new(p.limits, p.cfg.safety.max_step_rad);
        let (goal, last_goal) = (filter.new_goal(), filter.new_goal());
        Self {
            arbiter: Arbiter::new(),
            filter,
            state: ArmState::new(n),
            features: vec![0.0; nf],
            obs: Vec::with_capacity(n + nf),
            cmd: vec![0.0; n],
            proposal: vec![0.0; n],
            pad_out: PadTick::default(),
            goal,
            ramp_left: 0,
            // A quarter second of blending at handback.
            ramp_ticks: (p.cfg.control.rate_hz * 0.25).round().max(1.0) as u32,
            takeover_tick: None,
            max_handback_jump: 0.0,
            timing_takeover: crate::stats::LatencyHistogram::new(),
            timing_takeover_read: crate::stats::LatencyHistogram::new(),
            takeover_pending: None,
            takeovers_untimed: 0,
            timing_camera_to_goal: crate::stats::LatencyHistogram::new(),
            timing_image_age: crate::stats::LatencyHistogram::new(),
            image_origins: [(u64::MAX, 0); ORIGINS],
            counted_obs_tick: None,
            last_goal,
            reseed: true,
            known_position: false,
            bus_fail_streak: 0,
            bus_fault: None,
            torque_off: false,
            timing: LoopTiming::default(),
            phase: PhaseClock::start(),
            episode_index: 0,
            episode_start_tick: 0,
            outcomes: Vec::new(),
            help_requested: false,
            pending_outcome: None,
            bus_errors: 0,
            takeovers: 0,
            holds_entered: 0,
            holds_left: 0,
            holds_ended_with_episode: 0,
            max_takeover_jump: 0.0,
            policy_actions: 0,
            policy_starvations: 0,
            policy_fault: None,
            camera_wait_since: None,
            cfg: p.cfg,
            arm: p.arm,
            sensors: p.sensors,
            pad: p.pad,
            policy: p.policy,
            policy_updates: p.policy_updates,
            sink: p.sink,
            pacer: p.pacer,
            hook: p.hook,
            commands: p.commands,
            status: p.status,
            stop: p.stop,
            opts: p.opts,
            cameras: p.cameras,
        }
    }

    /// The names of the observation vector the policy sees: joint positions then task features.
    pub fn observation_names(cfg: &RobotConfig, sensors: &[Box<dyn SensorSource>]) -> Vec<String> {
        let mut names: Vec<String> = cfg
            .joints
            .iter()
            .map(|j| format!("{}.pos", j.name))
            .collect();
        for s in sensors {
            names.extend(s.names().iter().cloned());
        }
        names
    }

    /// Runs until stopped (SIGTERM), the plan is done, or `max_ticks`.
    pub fn run(mut self) -> LoopReport {
        if let Some(hook) = self.hook.as_mut() {
            hook.prepare_episode(0);
        }
        let mut tick: u64 = 0;
        // The tick before the current wait: an overrun is that tick running past the deadline.
        let mut previous: Option<SlowTick> = None;
        loop {
            let wake = self.pacer.wait_for_tick(tick);
            self.phase = PhaseClock::start();
            let switches = involuntary_switches();
            // A failed CPU clock reads as zero: the tick then looks off the CPU, never ours.
            let cpu_before = thread_cpu_time().unwrap_or_default();
            if tick > 0 {
                self.timing.period_error.record_s(wake.late_s);
                if wake.overrun {
                    match previous {
                        Some(p) => self.timing.count_overrun(p, self.pacer.period() * 1e6),
                        None => self.timing.overruns += 1,
                    }
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.tick(tick);
            self.timing.ticks += 1;
            let work = self.phase.started().elapsed();
            let cpu_us = thread_cpu_time()
                .unwrap_or_default()
                .saturating_sub(cpu_before)
                .as_secs_f64()
                * 1e6;
            let preempted = involuntary_switches().saturating_sub(switches) as u32;
            previous = Some(self.timing.record_tick(
                tick,
                wake.late_s * 1e6,
                work,
                cpu_us,
                &self.phase,
                preempted,
            ));
            tick += 1;
            if self.opts.max_ticks.is_some_and(|m| tick >= m) {
                break;
            }
            if let Some(plan) = self.opts.plan {
                if self.outcomes.len() as u64 >= plan.episodes && !self.arbiter.in_episode() {
                    break;
                }
            }
        }
        self.shutdown(tick)
    }

    fn tick(&mut self, tick: u64) {
        let period = self.pacer.period();
        // 1. Measure.
        let waited_before = self.arm.bus_wait();
        let read = self.arm.read(tick, &mut self.state);
        self.phase.mark(Phase::BusRead);
        self.phase.move_time(
            Phase::BusRead,
            Phase::BusWait,
            self.arm.bus_wait().saturating_sub(waited_before),
        );
        match read {
            Ok(()) => {
                self.bus_fail_streak = 0;
                if self.bus_fault.is_some() && self.state.alerts.iter().all(|a| a.is_none()) {
                    self.bus_fault = None;
                    info!(
                        "bus answers again; staying in {:?} until a person resumes",
                        self.arbiter.mode()
                    );
                    self.sink
                        .event(tick, LoopEvent::Note("bus recovered".into()));
                }
                if self.reseed {
                    self.filter.seed(&self.state.q, &mut self.last_goal);
                    self.reseed = false;
                    self.known_position = true;
                }
                if let Some((i, bits)) = self
                    .state
                    .alerts
                    .iter()
                    .enumerate()
                    .find_map(|(i, a)| a.map(|b| (i, b)))
                {
                    let (id, joint) = self
                        .cfg
                        .joints
                        .get(i)
                        .map(|j| (j.id, j.name.clone().into()))
                        .unwrap_or((0, "?".into()));
                    self.fault(
                        tick,
                        Fault::Arm(ArmFault::Servo {
                            id,
                            joint,
                            alert: bits,
                        }),
                    );
                }
            }
            Err(e) => {
                self.bus_fail_streak += 1;
                self.bus_errors += 1;
                if self.bus_fail_streak == 1 {
                    warn!(tick, "bus read failed: {e}");
                }
                if self.bus_fail_streak == self.cfg.safety.fault_ticks {
                    self.fault(tick, Fault::Arm(e));
                }
            }
        }
        // 2. Task features from every sensor source.
        let mut off = 0;
        for s in self.sensors.iter_mut() {
            let n = s.names().len();
            if let Some(slot) = self.features.get_mut(off..off + n) {
                if let Err(e) = s.read(slot) {
                    warn!("sensor read failed: {e}");
                }
            }
            off += n;
        }
        // 3. Gamepad.
        self.pad.tick(&self.state.q, period, &mut self.pad_out);
        // Taken and put back so the buffer keeps its allocation.
        let intents = std::mem::take(&mut self.pad_out.intents);
        for intent in intents.iter().copied() {
            self.on_intent(tick, intent);
        }
        self.pad_out.intents = intents;
        // 4. Control socket.
        while let Ok(cmd) = self.commands.try_recv() {
            let reply = self.on_request(tick, cmd.request);
            let _ = cmd.reply.send(reply);
        }
        // 5. The environment's verdict from the last tick.
        if let Some(outcome) = self.pending_outcome.take() {
            self.end_episode(tick, outcome);
        }
        // 6. Start the next planned episode.
        self.maybe_start_planned(tick);
        // 6b. The newest frame of each camera, taken after the episode started (a simulated reset
        // redraws the scene); every gap is marked in the recording.
        if !self.cameras.is_empty() {
            let sink = &mut self.sink;
            let mut gaps = [None; MAX_CAMERAS];
            self.cameras.poll(tick, |c| {
                if let Some(slot) = gaps.get_mut(c.camera) {
                    *slot = Some(c);
                }
            });
            // The first frame of an episode uses images taken before it began: record them.
            if self.arbiter.in_episode() && tick == self.episode_start_tick {
                for c in 0..self.cameras.len() {
                    if let Some(f) = self.cameras.frame(c) {
                        sink.episode_image(c, f);
                    }
                }
            }
            for c in gaps.iter().flatten() {
                let name = self.cameras.name(c.camera);
                match c.to {
                    CameraHealth::Stale | CameraHealth::Stopped => {
                        warn!(camera = name, health = c.to.name(), "camera gap starts");
                        sink.event(
                            tick,
                            LoopEvent::CameraGap {
                                camera: c.camera,
                                stopped: c.to == CameraHealth::Stopped,
                            },
                        );
                    }
                    CameraHealth::Fresh if c.from != CameraHealth::Waiting => {
                        info!(camera = name, "camera gap ends");
                        sink.event(tick, LoopEvent::Note(format!("camera {name}: fresh again")));
                    }
                    _ => {}
                }
            }
        }
        self.phase.mark(Phase::Inputs);
        // 7. Decide the goal.
        self.obs.clear();
        self.obs.extend_from_slice(&self.state.q);
        self.obs.extend_from_slice(&self.features);
        let mode = self.arbiter.mode();
        let mut has_proposal = false;
        let run_policy = self.arbiter.in_episode()
            && !self.arbiter.is_demo()
            && matches!(mode, Mode::Autonomous | Mode::Intervening);
        if run_policy {
            let mut failed = None;
            let mut starved = None;
            if let Some(p) = self.policy.as_mut() {
                // An image policy runs only on fresh images of every camera it reads.
                let mut images: [&[u8]; MAX_CAMERAS] = [&[]; MAX_CAMERAS];
                let mut unusable = None;
                let wanted = p.cameras();
                for (slot, &c) in images.iter_mut().zip(wanted) {
                    match self.cameras.image(c) {
                        Some(img) => *slot = img,
                        None => unusable = unusable.or(self.cameras.first_unusable(&[c])),
                    }
                }
                let n = wanted.len().min(MAX_CAMERAS);
                let waiting_too_long = |since: u64| {
                    (tick.saturating_sub(since)) as f64 * period * 1e3
                        > self.cfg.policy.action_timeout_ms as f64
                };
                let stepped = match unusable {
                    // No first frame yet (a camera starting up): hold still, as for an action
                    // not ready yet, until the action timeout.
                    Some((_, CameraHealth::Waiting, _))
                        if !waiting_too_long(*self.camera_wait_since.get_or_insert(tick)) =>
                    {
                        Ok(false)
                    }
                    // While a person drives, the proposal is only recorded: skip it, with no
                    // fault to build (this runs every tick of a long gap).
                    Some(_) if mode != Mode::Autonomous => Ok(false),
                    Some((c, health, age)) => {
                        let max_ms = self
                            .cfg
                            .cameras
                            .get(c)
                            .map(|cc| cc.max_age().as_millis())
                            .unwrap_or(0);
                        Err(PolicyFault::Camera {
                            camera: self.cameras.name(c).to_string(),
                            health: health.name(),
                            age_ms: age.map(|a| a / 1_000_000),
                            max_age_ms: max_ms,
                        })
                    }
                    None => {
                        self.camera_wait_since = None;
                        if n > 0 {
                            let oldest = wanted
                                .iter()
                                .filter_map(|&c| self.cameras.seen_ns().get(c).copied())
                                .min()
                                .unwrap_or(0);
                            if let Some(slot) =
                                self.image_origins.get_mut((tick % ORIGINS as u64) as usize)
                            {
                                *slot = (tick, oldest);
                            }
                            let age = self.cameras.now_ns(tick).saturating_sub(oldest);
                            self.timing_image_age.record_s(age as f64 * 1e-9);
                        }
                        p.step_images(
                            tick,
                            &self.obs,
                            images.get(..n).unwrap_or_default(),
                            &self.state.q,
                            &mut self.proposal,
                        )
                    }
                };
                match stepped {
                    Ok(ready) => {
                        has_proposal = ready;
                        // Only while the policy has the arm does silence matter; while the
                        // human drives, its proposals are recorded for comparison only.
                        if !ready && mode == Mode::Autonomous {
                            starved = p.starved(tick);
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if has_proposal {
                self.policy_actions += 1;
            }
            if mode == Mode::Autonomous {
                if let Some(e) = failed {
                    self.fault(tick, Fault::Policy(e));
                } else if let Some(waited) = starved {
                    self.policy_starvations += 1;
                    self.fault(
                        tick,
                        Fault::Policy(PolicyFault::Starved {
                            waited_ms: waited.as_millis(),
                            limit_ms: self.cfg.policy.action_timeout_ms,
                        }),
                    );
                }
            }
        }
        self.phase.mark(Phase::Policy);
        let doubt = self.policy.as_ref().and_then(|p| p.doubt());
        self.update_help(doubt);
        let source;
        match self.arbiter.mode() {
            Mode::Autonomous => {
                source = ControlSource::Robot;
                if has_proposal {
                    self.cmd.copy_from_slice(&self.proposal);
                } else {
                    self.cmd.copy_from_slice(&self.last_goal);
                }
            }
            Mode::Intervening => {
                source = if self.arbiter.is_demo() {
                    ControlSource::Demo
                } else {
                    ControlSource::Intervention
                };
                match self.pad_out.human_goal() {
                    Some(g) if g.len() == self.cmd.len() => self.cmd.copy_from_slice(g),
                    _ => self.cmd.copy_from_slice(&self.last_goal),
                }
            }
            _ => {
                source = ControlSource::Robot;
                self.cmd.copy_from_slice(&self.last_goal);
            }
        }
        // Handback: blend from the last goal to the policy over a short ramp, so the handback
        // tick itself commands exactly the previous goal.
        if self.arbiter.mode() == Mode::Autonomous && self.ramp_left > 0 {
            // alpha runs 0 (the handback tick: exactly the previous goal) up towards 1.
            let alpha = 1.0 - self.ramp_left as f64 / self.ramp_ticks.max(1) as f64;
            for (g, l) in self.cmd.iter_mut().zip(self.last_goal.iter()) {
                *g = l + alpha * (*g - l);
            }
            if self.ramp_left == self.ramp_ticks {
                let jump = self
                    .cmd
                    .iter()
                    .zip(self.last_goal.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                self.max_handback_jump = self.max_handback_jump.max(jump);
            }
            self.ramp_left -= 1;
        }
        if self.arbiter.mode() == Mode::Intervening
            && self.takeover_tick == Some(tick)
            && self.pad_out.human_goal().is_some()
        {
            let jump = self
                .cmd
                .iter()
                .zip(&self.state.q)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            self.max_takeover_jump = self.max_takeover_jump.max(jump);
        }
        // 8. Filter and write. Every goal the arm receives passes here.
        let outcome = self
            .filter
            .apply(&self.cmd, &self.last_goal, &self.state.q, &mut self.goal);
        if outcome.non_finite {
            self.fault(tick, Fault::NonFiniteCommand);
        }
        if outcome.clamped() {
            self.sink.event(
                tick,
                LoopEvent::Clamp {
                    limit: outcome.limit_clamps,
                    step: outcome.step_clamps,
                },
            );
        }
        self.phase.mark(Phase::Safety);
        // While a re-seed is pending (the arm was reset or went limp) the old goal is stale:
        // write nothing until the next read says where the arm is.
        if self.known_position && !self.torque_off && !self.reseed {
            if let Err(e) = self.arm.write(&self.goal) {
                self.bus_errors += 1;
                warn!("goal write failed: {e}");
            }
            self.last_goal.copy_from(&self.goal);
            if has_proposal && self.arbiter.mode() == Mode::Autonomous {
                self.count_camera_to_goal(tick);
            }
            // Takeover latency: the button press -> the first human goal on the wire, and the
            // tick that read the press -> that goal.
            if self.arbiter.mode() == Mode::Intervening {
                if let Some((pressed, read)) = self.takeover_pending.take() {
                    match pressed {
                        Some(p) => self.timing_takeover.record_s(p.elapsed().as_secs_f64()),
                        None => self.takeovers_untimed += 1,
                    }
                    self.timing_takeover_read
                        .record_s(read.elapsed().as_secs_f64());
                }
            }
        }
        self.phase.mark(Phase::BusWrite);
        // 9. Record.
        if self.arbiter.in_episode() {
            self.sink.frame(FrameRecord {
                tick,
                t: (tick - self.episode_start_tick) as f64 * period,
                state: &self.state,
                goal: &self.goal,
                source,
                proposal: has_proposal.then_some(self.proposal.as_slice()),
                doubt,
                pad_axes: &self.pad_out.axes,
                pad_buttons: self.pad_out.buttons,
                task: &self.features,
                image_capture_ns: self.cameras.seen_ns(),
            });
        }
        self.phase.mark(Phase::Record);
        // 10. Status for the shell (never waits on it).
        self.publish(tick, doubt);
        self.phase.mark(Phase::Status);
        // 11. The tick hook, where there is one (the simulated world and human move).
        let info = TickInfo {
            tick,
            mode: self.arbiter.mode(),
            in_episode: self.arbiter.in_episode(),
            demo: self.arbiter.is_demo(),
            episode_time: (tick.saturating_sub(self.episode_start_tick)) as f64 * period,
        };
        if let Some(hook) = self.hook.as_mut() {
            if let Some(o) = hook.after_tick(self.arm.as_mut(), &info) {
                if self.arbiter.in_episode() {
                    self.pending_outcome = Some(o);
                }
            }
            self.phase.mark(Phase::Sim);
        }
    }

    fn transition(&mut self, tick: u64, trig: Trigger) -> Option<Transition> {
        let t = self.arbiter.apply(&trig)?;
        info!(from = ?t.from, to = ?t.to, reason = %t.reason, "mode change");
        if t.to != Mode::Hold {
            self.policy_fault = None;
        }
        if t.to == Mode::Hold {
            self.holds_entered += 1;
        }
        if t.from == Mode::Hold {
            self.holds_left += 1;
            self.holds_ended_with_episode += u64::from(t.to == Mode::Idle);
        }
        self.sink.event(tick, LoopEvent::Mode(t.clone()));
        match t.to {
            Mode::Intervening => {
                // The human starts from the measured position (the teleop integrator re-arms
                // on the takeover intent); the policy forgets its chunks.
                if let Some(p) = self.policy.as_mut() {
                    p.reset();
                }
                if t.from != Mode::Idle {
                    self.takeovers += 1;
                    self.takeover_tick = Some(tick);
                    self.takeover_pending =
                        Some((self.pad_out.takeover_event.take(), self.phase.started()));
                }
            }
            Mode::Autonomous => {
                // Handback: the policy resumes from the measured state with an empty buffer;
                // the step limit rate-limits its first outputs.
                if let Some(p) = self.policy.as_mut() {
                    p.reset();
                }
                if t.from == Mode::Intervening {
                    self.ramp_left = self.ramp_ticks;
                }
            }
            Mode::EStop if self.cfg.safety.on_estop == TorquePolicy::Off => {
                match self.arm.set_torque(false) {
                    Ok(()) => self.torque_off = true,
                    Err(e) => error!("e-stop: torque off failed: {e}"),
                }
            }
            _ => {}
        }
        if t.from == Mode::EStop && self.torque_off {
            // The arm may have been moved by hand while limp: hold where it is now.
            if self.arm.set_torque(true).is_ok() {
                self.torque_off = false;
                self.reseed = true;
            }
        }
        Some(t)
    }

    /// After a policy goal was written: if it is the first to act on a newer observation and
    /// that observation held images, counts the time from their capture to now.
    fn count_camera_to_goal(&mut self, tick: u64) {
        let Some(obs_tick) = self.policy.as_ref().and_then(|p| p.newest_obs_tick()) else {
            return;
        };
        if self.counted_obs_tick == Some(obs_tick) {
            return;
        }
        self.counted_obs_tick = Some(obs_tick);
        // An observation older than the ring is not measured (its slot was reused).
        if let Some(&(t, captured)) = self.image_origins.get((obs_tick % ORIGINS as u64) as usize) {
            if t == obs_tick && captured != 0 {
                let now = self.cameras.now_ns(tick);
                self.timing_camera_to_goal
                    .record_s(now.saturating_sub(captured) as f64 * 1e-9);
            }
        }
    }

    fn fault(&mut self, tick: u64, fault: Fault) {
        let active = matches!(self.arbiter.mode(), Mode::Autonomous | Mode::Intervening);
        if active {
            warn!("fault: {fault}; holding");
        }
        let shown = || {
            Some(ActiveFault {
                kind: fault.kind(),
                message: fault.to_string(),
            })
        };
        match fault.kind() {
            FaultKind::Bus => self.bus_fault = shown(),
            FaultKind::Policy if active => self.policy_fault = shown(),
            _ => {}
        }
        self.sink.event(tick, LoopEvent::Fault(fault.clone()));
        if self
            .transition(tick, Trigger::Hold(HoldReason::Fault(fault)))
            .is_some()
        {
            // The person holding the pad must know the arm stopped by itself.
            self.pad.rumble_fault();
        }
    }

    fn on_intent(&mut self, tick: u64, intent: Intent) {
        match intent {
            Intent::Takeover => {
                self.transition(tick, Trigger::Takeover);
            }
            Intent::Handback => {
                self.transition(tick, Trigger::Handback);
            }
            Intent::StartEpisode => {
                let demo = self
                    .opts
                    .plan
                    .map(|p| p.demo)
                    .unwrap_or(self.policy.is_none());
                if let Err(e) = self.start_episode(tick, demo) {
                    warn!("start episode refused: {e}");
                }
            }
            Intent::Success => self.end_episode(tick, EpisodeOutcome::Success),
            Intent::Failure => self.end_episode(tick, EpisodeOutcome::Failure),
            Intent::Discard => self.end_episode(tick, EpisodeOutcome::Discarded),
            Intent::EStop => {
                self.transition(tick, Trigger::EStop("gamepad e-stop".into()));
            }
            Intent::ClearEStop => {
                self.transition(tick, Trigger::ClearEStop);
            }
            Intent::GamepadLost => {
                if matches!(self.arbiter.mode(), Mode::Autonomous | Mode::Intervening) {
                    self.fault(tick, Fault::GamepadLost);
                }
            }
            Intent::GamepadConnected(pad) => info!(%pad, "gamepad connected"),
        }
    }

    fn on_request(&mut self, tick: u64, req: Request) -> Reply {
        let result: Result<(), String> = match req {
            Request::Status {} => Ok(()),
            Request::StartEpisode { demo } => self.start_episode(tick, demo),
            Request::StopEpisode { outcome } => {
                if self.arbiter.in_episode() {
                    self.end_episode(
                        tick,
                        match outcome {
                            StopOutcome::Success => EpisodeOutcome::Success,
                            StopOutcome::Failure => EpisodeOutcome::Failure,
                            StopOutcome::Discard => EpisodeOutcome::Discarded,
                        },
                    );
                    Ok(())
                } else {
                    Err("no episode is running".into())
                }
            }
            Request::Hold {} => self
                .transition(tick, Trigger::Hold(HoldReason::Operator))
                .map(|_| ())
                .ok_or_else(|| format!("cannot hold from {:?}", self.arbiter.mode())),
            Request::Resume {} => {
                if self.bus_fault.is_some() {
                    Err("the bus fault is still active; fix it first (see status.faults)".into())
                } else if !self.arbiter.is_demo() && self.policy.is_none() {
                    Err("no policy is loaded".into())
                } else if self.cfg.teleop.require_gamepad && !self.pad.connected() {
                    Err("no gamepad is connected and teleop.require_gamepad = true: nobody could take over".into())
                } else {
                    self.pad.release_hold();
                    self.transition(tick, Trigger::Resume)
                        .map(|_| ())
                        .ok_or_else(|| {
                            format!("resume only leaves Hold; mode is {:?}", self.arbiter.mode())
                        })
                }
            }
            Request::Estop {} => {
                self.pad.latch_estop();
                self.transition(tick, Trigger::EStop("operator e-stop".into()));
                Ok(())
            }
            Request::ClearEstop {} => {
                self.pad.clear_estop();
                self.transition(tick, Trigger::ClearEStop)
                    .map(|_| ())
                    .ok_or_else(|| "not in e-stop".to_string())
            }
            Request::Reload {} => {
                if self.arbiter.in_episode() {
                    Err("reload happens between episodes; stop the episode first".into())
                } else {
                    match self.policy_updates.try_recv() {
                        Ok(p) => {
                            self.install_policy(tick, p);
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            }
        };
        match result {
            Ok(()) => {
                self.publish(tick, None);
                match self.status.lock() {
                    Ok(s) => Reply::ok(s.clone()),
                    Err(_) => Reply::err("status unavailable"),
                }
            }
            Err(e) => Reply::err(e),
        }
    }

    fn install_policy(&mut self, tick: u64, p: Box<dyn PolicyDriver>) {
        info!(version = p.version(), "policy loaded");
        self.sink
            .event(tick, LoopEvent::PolicyLoaded(p.version().to_string()));
        self.policy = Some(p);
    }

    fn start_episode(&mut self, tick: u64, demo: bool) -> Result<(), String> {
        if self.arbiter.in_episode() {
            return Err("an episode is already running".into());
        }
        if self.arbiter.mode() != Mode::Idle {
            return Err(format!(
                "cannot start an episode in {:?}",
                self.arbiter.mode()
            ));
        }
        if !self.known_position {
            return Err("the arm's position is not known yet (no successful bus read)".into());
        }
        if !demo {
            if self.policy.is_none() {
                return Err(
                    "no policy is loaded; record demonstrations first (demo episodes)".into(),
                );
            }
            if self.cfg.teleop.require_gamepad && !self.pad.connected() {
                return Err(
                    "no gamepad is connected: autonomous mode needs a human who can take over \
                     (or set teleop.require_gamepad = false)"
                        .into(),
                );
            }
        }
        // A new policy waiting in the registry is installed between episodes.
        if let Ok(p) = self.policy_updates.try_recv() {
            self.install_policy(tick, p);
        }
        let version = if demo {
            None
        } else {
            self.policy.as_ref().map(|p| p.version().to_string())
        };
        if let Err(e) =
            self.sink
                .begin_episode(tick, self.episode_index, demo, version, &self.opts.task)
        {
            // Recording is the point of an episode, but control must go on: report loudly.
            error!("recording could not start: {e}");
        }
        self.episode_start_tick = tick;
        self.pad.set_demo(demo);
        self.transition(tick, Trigger::StartEpisode { demo });
        Ok(())
    }

    fn end_episode(&mut self, tick: u64, outcome: EpisodeOutcome) {
        if !self.arbiter.in_episode() {
            return;
        }
        let failure = match outcome {
            EpisodeOutcome::Failure => self.hook.as_ref().and_then(|h| h.failure_mode()),
            _ => None,
        };
        self.sink.end_episode(tick, outcome, failure);
        self.transition(tick, Trigger::EndEpisode);
        self.pad.set_demo(false);
        self.outcomes.push(outcome);
        self.episode_index += 1;
        if let Some(hook) = self.hook.as_mut() {
            hook.prepare_episode(self.episode_index);
            self.reseed = true;
        }
    }

    fn maybe_start_planned(&mut self, tick: u64) {
        let Some(plan) = self.opts.plan else { return };
        if self.arbiter.mode() == Mode::Idle
            && !self.reseed
            && (self.outcomes.len() as u64) < plan.episodes
        {
            if let Err(e) = self.start_episode(tick, plan.demo) {
                warn!("planned episode could not start: {e}");
                self.stop.store(true, Ordering::Relaxed);
            }
        }
    }

    fn update_help(&mut self, doubt: Option<f64>) {
        let Some(th) = self.cfg.policy.doubt_threshold else {
            return;
        };
        let want = doubt.is_some_and(|d| d > th) && self.arbiter.mode() == Mode::Autonomous;
        if want && !self.help_requested {
            self.pad.rumble_help();
        }
        self.help_requested = want;
    }

    fn publish(&mut self, tick: u64, doubt: Option<f64>) {
        let Ok(mut s) = self.status.try_lock() else {
            return;
        };
        s.mode = self.arbiter.mode();
        s.in_episode = self.arbiter.in_episode();
        s.demo = self.arbiter.is_demo();
        s.episodes_done = self.outcomes.len() as u64;
        s.tick = tick;
        s.gamepads = self.pad.count();
        if doubt.is_some() {
            s.doubt = doubt;
        }
        s.help_requested = self.help_requested;
        s.bus_errors = self.bus_errors;
        s.clamps = self.filter.clamp_counts.iter().sum();
        s.dropped_frames = self.sink.dropped();
        (s.lost_frames, s.lost_episodes) = self.sink.lost();
        s.overruns = self.timing.overruns;
        s.q.clone_from(&self.state.q);
        s.healthy = self.known_position && self.bus_fault.is_none() && self.bus_fail_streak == 0;
        let policy_version = self.policy.as_ref().map(|p| p.version());
        if s.policy_version.as_deref() != policy_version {
            s.policy_version = policy_version.map(str::to_string);
        }
        // Compared first and rebuilt only when a fault appears, goes or changes.
        let rec = self.sink.fault().map(|r| ActiveFault {
            kind: FaultKind::Recorder,
            message: format!("recording: {r}"),
        });
        let want = [&self.bus_fault, &self.policy_fault, &rec];
        if !s.faults.iter().eq(want.iter().filter_map(|f| f.as_ref())) {
            s.faults.clear();
            s.faults
                .extend(want.iter().filter_map(|f| f.as_ref()).cloned());
        }
        s.policy_actions = self.policy_actions;
        s.policy_starvations = self.policy_starvations;
        if tick.is_multiple_of(64) {
            s.period_error_p99_us = self.timing.period_error.summary().p99_us;
        }
    }

    /// SIGTERM or end of plan: hold, close the episode, apply the exit torque policy.
    fn shutdown(mut self, tick: u64) -> LoopReport {
        if self.arbiter.in_episode() {
            self.sink.end_episode(tick, EpisodeOutcome::Aborted, None);
            self.transition(tick, Trigger::EndEpisode);
        }
        if self.known_position && !self.torque_off {
            // Hold: the last filtered goal once more.
            let _ = self.arm.write(&self.last_goal);
        }
        if self.cfg.safety.on_exit == TorquePolicy::Off {
            if let Err(e) = self.arm.set_torque(false) {
                warn!("exit: torque off failed: {e}");
            }
        }
        self.sink.close();
        self.publish(tick, None);
        let (lost_frames, lost_episodes) = self.sink.lost();
        LoopReport {
            episodes: self.outcomes,
            ticks: self.timing.ticks,
            timing: self.timing.summary(),
            period_error_histogram: self.timing.period_error.clone(),
            clamps: self.filter.clamp_counts.iter().sum(),
            bus_errors: self.bus_errors,
            dropped_frames: self.sink.dropped(),
            lost_frames,
            lost_episodes,
            takeovers: self.takeovers,
            holds_entered: self.holds_entered,
            holds_left: self.holds_left,
            holds_ended_with_episode: self.holds_ended_with_episode,
            policy_actions: self.policy_actions,
            policy_starvations: self.policy_starvations,
            max_takeover_jump: self.max_takeover_jump,
            max_handback_jump: self.max_handback_jump,
            takeover_latency: self.timing_takeover.summary(),
            camera_to_goal: self.timing_camera_to_goal.summary(),
            image_age: self.timing_image_age.summary(),
            takeover_read_latency: self.timing_takeover_read.summary(),
            takeovers_untimed: self.takeovers_untimed,
        }
    }
}
