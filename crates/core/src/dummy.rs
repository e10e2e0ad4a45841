//! Dummy ports, in the style of arci's dummy clients: an arm that follows its goals with
//! first-order dynamics and fails on a script, a scripted gamepad, a constant policy, and a
//! recorder that keeps everything in memory. With them and a [`LockstepPacer`] (simulated time,
//! no sleeping) a test runs thousands of ticks of the real loop in milliseconds, without a
//! bus, a pty or a model.
//!
//! They allocate freely and are meant for tests and examples, never for a robot.
//!
//! [`LockstepPacer`]: crate::clock::LockstepPacer

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use intervened_teleop::Intent;

use crate::control::PolicyDriver;
use crate::fault::{ArmFault, PolicyFault, RecorderFault};
use crate::hardware::{ArmIo, ArmState};
use crate::recording::{
    ControlSource, EpisodeOutcome, FailureMode, FrameRecord, FrameSink, LoopEvent,
};
use crate::safety::SafeGoal;
use crate::teleop::{GamepadInput, PadTick};

/// A poisoned lock in a test double means another thread already failed the test: carry on
/// with the data as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy)]
struct NoReply;

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no reply (injected)")
    }
}

impl std::error::Error for NoReply {}

/// What a [`DummyArm`] saw, shared with the test.
#[derive(Debug, Clone, Default)]
pub struct ArmLog {
    /// Every goal written, with the tick of the read before it.
    pub writes: Vec<(u64, Vec<f64>)>,
    pub reads_failed: u64,
    pub torque: bool,
}

/// An arm whose joints move a fixed fraction of the way to their goal on each read.
pub struct DummyArm {
    q: Vec<f64>,
    goal: Option<Vec<f64>>,
    /// Fraction of the remaining distance covered per tick (0..=1).
    gain: f64,
    tick: u64,
    fail_reads: Vec<Range<u64>>,
    alerts: Vec<(Range<u64>, usize, u8)>,
    log: Arc<Mutex<ArmLog>>,
}

impl DummyArm {
    /// Starts at `q0` (rad), torque on, following goals with `gain` per tick.
    pub fn new(q0: Vec<f64>, gain: f64) -> Self {
        Self {
            q: q0,
            goal: None,
            gain,
            tick: 0,
            fail_reads: Vec::new(),
            alerts: Vec::new(),
            log: Arc::new(Mutex::new(ArmLog {
                torque: true,
                ..ArmLog::default()
            })),
        }
    }

    /// Reads in `ticks` fail (no servo answers).
    pub fn fail_reads(mut self, ticks: Range<u64>) -> Self {
        self.fail_reads.push(ticks);
        self
    }

    /// Joint `joint` reports hardware alert `bits` during `ticks`.
    pub fn alert(mut self, ticks: Range<u64>, joint: usize, bits: u8) -> Self {
        self.alerts.push((ticks, joint, bits));
        self
    }

    /// What the arm saw, readable while and after the loop runs.
    pub fn log(&self) -> Arc<Mutex<ArmLog>> {
        self.log.clone()
    }
}

impl ArmIo for DummyArm {
    fn read(&mut self, tick: u64, out: &mut ArmState) -> Result<(), ArmFault> {
        self.tick = tick;
        if let Some(g) = &self.goal {
            for ((q, g), qd) in self.q.iter_mut().zip(g).zip(out.qd.iter_mut()) {
                let step = self.gain * (g - *q);
                *q += step;
                *qd = step;
            }
        }
        if self.fail_reads.iter().any(|r| r.contains(&tick)) {
            lock(&self.log).reads_failed += 1;
            return Err(ArmFault::servos(1, 1, NoReply));
        }
        out.q.iter_mut().zip(&self.q).for_each(|(o, q)| *o = *q);
        for (i, a) in out.alerts.iter_mut().enumerate() {
            *a = self
                .alerts
                .iter()
                .find(|(r, j, _)| *j == i && r.contains(&tick))
                .map(|(_, _, bits)| *bits);
        }
        Ok(())
    }

    fn write(&mut self, goals: &SafeGoal) -> Result<(), ArmFault> {
        self.goal = Some(goals.to_vec());
        lock(&self.log).writes.push((self.tick, goals.to_vec()));
        Ok(())
    }

    fn set_torque(&mut self, on: bool) -> Result<(), ArmFault> {
        lock(&self.log).torque = on;
        if !on {
            self.goal = None;
        }
        Ok(())
    }
}

/// A gamepad that presses a script of intents and, while the human drives, commands a fixed
/// human goal (exactly the measured position on the takeover tick, as the real integrator).
pub struct DummyPad {
    script: Vec<(u64, Intent)>,
    human_goal: Option<Vec<f64>>,
    tick: u64,
    driving: bool,
    takeover_tick: bool,
    connected: bool,
    rumbles: Arc<Mutex<Vec<&'static str>>>,
}

impl DummyPad {
    /// `script`: the intents to emit, by tick (the n-th call to `tick` is tick n).
    pub fn new(script: Vec<(u64, Intent)>) -> Self {
        Self {
            script,
            human_goal: None,
            tick: 0,
            driving: false,
            takeover_tick: false,
            connected: true,
            rumbles: Arc::default(),
        }
    }

    /// Where the human steers while driving (rad); without one the human holds still.
    pub fn human_goal(mut self, goal: Vec<f64>) -> Self {
        self.human_goal = Some(goal);
        self
    }

    /// The rumbles asked for ("help", "fault"), in order.
    pub fn rumbles(&self) -> Arc<Mutex<Vec<&'static str>>> {
        self.rumbles.clone()
    }
}

impl GamepadInput for DummyPad {
    fn tick(&mut self, measured: &[f64], _dt: f64, out: &mut PadTick) {
        out.intents.clear();
        out.takeover_event = None;
        let now = self.tick;
        self.tick += 1;
        for (_, i) in self.script.iter().filter(|(t, _)| *t == now) {
            match i {
                Intent::Takeover => {
                    self.driving = true;
                    self.takeover_tick = true;
                }
                Intent::Handback => self.driving = false,
                _ => {}
            }
            out.intents.push(*i);
        }
        out.human_goal.clear();
        if self.driving {
            match (&self.human_goal, self.takeover_tick) {
                (Some(g), false) => out.human_goal.extend_from_slice(g),
                _ => out.human_goal.extend_from_slice(measured),
            }
        }
        self.takeover_tick = false;
    }
    fn connected(&self) -> bool {
        self.connected
    }
    fn count(&self) -> usize {
        usize::from(self.connected)
    }
    fn set_demo(&mut self, on: bool) {
        // A demonstration is the human's from its first tick.
        self.driving = on;
        self.takeover_tick = on;
    }
    fn release_hold(&mut self) {}
    fn latch_estop(&mut self) {}
    fn clear_estop(&mut self) {}
    fn rumble_help(&mut self) {
        lock(&self.rumbles).push("help");
    }
    fn rumble_fault(&mut self) {
        lock(&self.rumbles).push("fault");
    }
}

/// A policy that always proposes the same goal, and fails or goes silent on a script.
pub struct ConstantPolicy {
    goal: Vec<f64>,
    fail_at: Vec<u64>,
    silent: Vec<Range<u64>>,
    silent_since: Option<u64>,
    /// Ticks without an action after which `starved` reports (the loop's Hold).
    starve_after: u64,
    period: Duration,
}

impl ConstantPolicy {
    pub fn new(goal: Vec<f64>) -> Self {
        Self {
            goal,
            fail_at: Vec::new(),
            silent: Vec::new(),
            silent_since: None,
            starve_after: u64::MAX,
            period: Duration::from_millis(20),
        }
    }

    /// `step` fails on these ticks.
    pub fn fail_at(mut self, ticks: Vec<u64>) -> Self {
        self.fail_at = ticks;
        self
    }

    /// No action is ready during `ticks`; after `starve_after` such ticks in a row the policy
    /// reports itself starved.
    pub fn silent(mut self, ticks: Range<u64>, starve_after: u64) -> Self {
        self.silent.push(ticks);
        self.starve_after = starve_after;
        self
    }
}

impl PolicyDriver for ConstantPolicy {
    fn step(
        &mut self,
        tick: u64,
        _obs: &[f64],
        _measured_q: &[f64],
        out: &mut [f64],
    ) -> Result<bool, PolicyFault> {
        if self.fail_at.contains(&tick) {
            return Err(PolicyFault::Inference("injected failure".into()));
        }
        if self.silent.iter().any(|r| r.contains(&tick)) {
            self.silent_since.get_or_insert(tick);
            return Ok(false);
        }
        self.silent_since = None;
        out.iter_mut().zip(&self.goal).for_each(|(o, g)| *o = *g);
        Ok(true)
    }
    fn starved(&mut self, tick: u64) -> Option<Duration> {
        let since = self.silent_since?;
        let n = tick - since + 1;
        (n >= self.starve_after).then(|| self.period * n as u32)
    }
    fn reset(&mut self) {
        self.silent_since = None;
    }
    fn doubt(&self) -> Option<f64> {
        None
    }
    fn version(&self) -> &str {
        "constant"
    }
}

/// One recorded frame, owned.
#[derive(Debug, Clone)]
pub struct MemoryFrame {
    pub tick: u64,
    pub source: ControlSource,
    pub goal: Vec<f64>,
    pub q: Vec<f64>,
    pub proposal: Option<Vec<f64>>,
}

/// Everything a [`MemorySink`] was given.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub frames: Vec<MemoryFrame>,
    /// Faults and mode changes, as the recorder would store them.
    pub events: Vec<(u64, String)>,
    pub faults: Vec<(u64, crate::fault::FaultKind)>,
    pub episodes: Vec<(u64, bool)>,
    pub outcomes: Vec<(EpisodeOutcome, Option<FailureMode>)>,
}

/// A recorder that keeps every frame and event in memory.
#[derive(Default)]
pub struct MemorySink {
    rec: Arc<Mutex<Recorded>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn recorded(&self) -> Arc<Mutex<Recorded>> {
        self.rec.clone()
    }
}

impl FrameSink for MemorySink {
    fn begin_episode(
        &mut self,
        tick: u64,
        _index: u64,
        demo: bool,
        _policy_version: Option<String>,
        _task: &str,
    ) -> Result<(), RecorderFault> {
        lock(&self.rec).episodes.push((tick, demo));
        Ok(())
    }
    fn frame(&mut self, f: FrameRecord<'_>) {
        lock(&self.rec).frames.push(MemoryFrame {
            tick: f.tick,
            source: f.source,
            goal: f.goal.to_vec(),
            q: f.state.q.clone(),
            proposal: f.proposal.map(<[f64]>::to_vec),
        });
    }
    fn event(&mut self, tick: u64, e: LoopEvent) {
        let mut r = lock(&self.rec);
        let text = match e {
            LoopEvent::Mode(t) => format!("{} -> {}: {}", t.from.name(), t.to.name(), t.reason),
            LoopEvent::Fault(f) => {
                r.faults.push((tick, f.kind()));
                f.to_string()
            }
            LoopEvent::Clamp { limit, step } => format!("clamp limit {limit} step {step}"),
            LoopEvent::PolicyLoaded(v) => format!("policy {v}"),
            LoopEvent::Note(n) => n,
            LoopEvent::CameraGap { camera, stopped } => {
                format!(
                    "camera {camera} {}",
                    if stopped { "stopped" } else { "stale" }
                )
            }
        };
        r.events.push((tick, text));
    }
    fn end_episode(&mut self, _tick: u64, outcome: EpisodeOutcome, failure: Option<FailureMode>) {
        lock(&self.rec).outcomes.push((outcome, failure));
    }
    fn dropped(&self) -> u64 {
        0
    }
    fn fault(&self) -> Option<RecorderFault> {
        None
    }
    fn close(&mut self) {}
}
