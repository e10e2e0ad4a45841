//! The real parts behind the loop's small traits: the Dynamixel arm, the gamepad (gilrs or
//! virtual) with the teleop controller, and the tch policy runner.

use intervened_dxl::{Arm, ArmReading, ServoFault};
use intervened_policy::PolicyRunner;
use intervened_teleop::names::{ALL_AXES, ALL_BUTTONS};
use intervened_teleop::{
    GamepadEventKind, GamepadSource, Intent, RumblePattern, TeleopController, TickOutput,
};
use tracing::{info, warn};

use crate::control::PolicyDriver;
use crate::fault::{ArmFault, PolicyFault};
use crate::hardware::{ArmIo, ArmState};
use crate::safety::SafeGoal;
use crate::teleop::{GamepadInput, PadTick};

/// The Dynamixel arm (real bus or the emulator's pty).
pub struct DxlArm {
    arm: Arm,
    reading: ArmReading,
    /// Ticks since the port went away; a reconnect is tried every `RECONNECT_EVERY` ticks so
    /// a missing adapter never costs more than one open attempt per interval.
    gone_ticks: u64,
}

const RECONNECT_EVERY: u64 = 25;

impl DxlArm {
    pub fn new(arm: Arm) -> Self {
        let reading = arm.new_reading();
        Self {
            arm,
            reading,
            gone_ticks: 0,
        }
    }

    pub fn arm_mut(&mut self) -> &mut Arm {
        &mut self.arm
    }
}

impl ArmIo for DxlArm {
    fn read(&mut self, tick: u64, out: &mut ArmState) -> Result<(), ArmFault> {
        if self.gone_ticks > 0 {
            self.gone_ticks += 1;
            if !self.gone_ticks.is_multiple_of(RECONNECT_EVERY) {
                return Err(ArmFault::PortGone);
            }
            match self.arm.reconnect() {
                Ok(()) => {
                    info!("bus reconnected");
                    self.gone_ticks = 0;
                }
                Err(e) => return Err(ArmFault::reconnect(e)),
            }
        }
        self.arm.read_into(tick, &mut self.reading);
        let r = &self.reading;
        let mut failed = 0;
        let mut first_err = None;
        for (i, st) in r.status.iter().enumerate() {
            match st {
                Ok(()) => {
                    if let (Some(o), Some(q), Some(v)) =
                        (out.alerts.get_mut(i), out.q.get_mut(i), r.q.get(i))
                    {
                        *o = None;
                        *q = *v;
                    }
                }
                Err(ServoFault::HardwareAlert(bits)) => {
                    if let (Some(o), Some(q), Some(v)) =
                        (out.alerts.get_mut(i), out.q.get_mut(i), r.q.get(i))
                    {
                        *o = Some((*bits).max(1));
                        *q = *v;
                    }
                }
                Err(ServoFault::PortGone) => {
                    self.gone_ticks = 1;
                    return Err(ArmFault::PortGone);
                }
                Err(e) => {
                    failed += 1;
                    first_err.get_or_insert((self.arm.ids().get(i).copied().unwrap_or(0), *e));
                }
            }
        }
        // zip, not copy_from_slice: a length mismatch must not panic on the robot.
        if let Some(qd) = &r.qd {
            out.qd.iter_mut().zip(qd).for_each(|(o, v)| *o = *v);
        }
        if let Some(c) = &r.current {
            out.current.iter_mut().zip(c).for_each(|(o, v)| *o = *v);
        }
        match first_err {
            // One silent servo fails the tick: a joint we cannot see is a joint we cannot hold safely.
            Some((id, e)) => Err(ArmFault::servos(failed, id, e)),
            None => Ok(()),
        }
    }

    fn write(&mut self, goals: &SafeGoal) -> Result<(), ArmFault> {
        if self.gone_ticks > 0 {
            return Err(ArmFault::PortGone);
        }
        self.arm.write_goals(goals).map_err(ArmFault::bus)
    }

    fn set_torque(&mut self, on: bool) -> Result<(), ArmFault> {
        self.arm.set_torque(on).map_err(ArmFault::bus)
    }

    fn bus_wait(&self) -> std::time::Duration {
        self.arm.bus().reply_wait()
    }

    fn barrier(&mut self) -> Result<(), ArmFault> {
        // A ping is answered only after every byte before it was handled: a barrier.
        let id = self.arm.ids().first().copied().unwrap_or(1);
        self.arm
            .bus_mut()
            .ping(id)
            .map(|_| ())
            .map_err(ArmFault::bus)
    }
}

/// The gamepad (gilrs or virtual) with takeover, mapping and integration.
pub struct Pad {
    ctl: TeleopController,
    source: Box<dyn GamepadSource>,
    events: Vec<intervened_teleop::GamepadEvent>,
    /// Reused every tick (see `TeleopController::tick_into`).
    out: TickOutput,
}

impl Pad {
    pub fn new(ctl: TeleopController, source: Box<dyn GamepadSource>) -> Self {
        Self {
            ctl,
            source,
            events: Vec::with_capacity(64),
            out: TickOutput::default(),
        }
    }
}

impl GamepadInput for Pad {
    fn tick(&mut self, measured: &[f64], dt: f64, out: &mut PadTick) {
        self.events.clear();
        self.events.extend(self.source.events().try_iter());
        let last_press = self
            .events
            .iter()
            .rev()
            .find(|e| matches!(e.kind, GamepadEventKind::ButtonPressed(_)))
            .map(|e| e.time);
        self.ctl
            .tick_into(self.events.drain(..), measured, dt, &mut self.out);
        let t = &self.out;
        out.takeover_event = if t.intents.contains(&Intent::Takeover) {
            last_press
        } else {
            None
        };
        for r in &t.rumbles {
            self.source.rumble(*r);
        }
        if let Some(e) = &t.goal_error {
            warn!("teleop goal unavailable: {e}");
        }
        let pad = self.ctl.takeover().pad();
        out.intents.clear();
        out.intents.extend_from_slice(&t.intents);
        out.human_goal.clear();
        if let Some(g) = &t.human_goal {
            out.human_goal.extend_from_slice(g);
        }
        out.axes.clear();
        out.axes.extend(ALL_AXES.iter().map(|a| pad.axis(*a)));
        out.buttons = ALL_BUTTONS
            .iter()
            .enumerate()
            .filter(|(_, b)| pad.is_pressed(**b))
            .fold(0u32, |m, (i, _)| m | (1 << i));
    }

    fn connected(&self) -> bool {
        self.ctl.takeover().pad().any_connected()
    }

    fn count(&self) -> usize {
        self.ctl.takeover().pad().connected_count()
    }

    fn set_demo(&mut self, on: bool) {
        if let Some(i) = self.ctl.takeover_mut().set_demo(on) {
            self.ctl.note_intent(i);
        }
        if !on {
            // The demonstration is over and the loop is Idle: nobody needs to be latched out,
            // so the next episode starts from a clean owner (a lost pad still latches Hold).
            if let Ok(Some(i)) = self.ctl.takeover_mut().release_hold() {
                self.ctl.note_intent(i);
            }
        }
    }

    fn release_hold(&mut self) {
        match self.ctl.takeover_mut().release_hold() {
            Ok(Some(i)) => self.ctl.note_intent(i),
            Ok(None) => {}
            Err(e) => warn!("gamepad hold not released: {e}"),
        }
    }

    fn latch_estop(&mut self) {
        if let Some(i) = self.ctl.takeover_mut().latch_estop() {
            self.ctl.note_intent(i);
        }
    }

    fn clear_estop(&mut self) {
        self.ctl.takeover_mut().clear_estop();
    }

    fn rumble_help(&mut self) {
        self.source.rumble(RumblePattern::HelpRequested);
    }

    fn rumble_fault(&mut self) {
        self.source.rumble(RumblePattern::Fault);
    }
}

/// The tch policy runner.
pub struct TchPolicy {
    runner: PolicyRunner,
    version: String,
    errors_seen: u64,
    /// Config indices of the cameras an image policy reads, in its `forward` order.
    cameras: Vec<usize>,
    /// Observation values the model takes: the loop's observation starts with the joints, and
    /// an image policy may take those alone.
    obs_dim: usize,
}

impl TchPolicy {
    pub fn new(runner: PolicyRunner, version: String, cameras: Vec<usize>, obs_dim: usize) -> Self {
        Self {
            runner,
            version,
            errors_seen: 0,
            cameras,
            obs_dim,
        }
    }

    fn check_errors(&mut self, ready: bool) -> Result<bool, PolicyFault> {
        // Counters only: nothing here allocates unless there is an error to report.
        let errors = self.runner.error_count();
        if errors > self.errors_seen {
            self.errors_seen = errors;
            return Err(PolicyFault::Inference(
                self.runner
                    .last_error()
                    .unwrap_or("policy error")
                    .to_string(),
            ));
        }
        Ok(ready)
    }
}

impl PolicyDriver for TchPolicy {
    fn step(
        &mut self,
        tick: u64,
        obs: &[f64],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> Result<bool, PolicyFault> {
        self.step_images(tick, obs, &[], measured_q, out)
    }
    fn cameras(&self) -> &[usize] {
        &self.cameras
    }
    fn step_images(
        &mut self,
        tick: u64,
        obs: &[f64],
        images: &[&[u8]],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> Result<bool, PolicyFault> {
        let obs = obs.get(..self.obs_dim).unwrap_or(obs);
        let ready = self
            .runner
            .step_images_into(tick, obs, images, measured_q, out);
        self.check_errors(ready)
    }
    fn starved(&mut self, tick: u64) -> Option<std::time::Duration> {
        self.runner.starved(tick)
    }
    fn newest_obs_tick(&self) -> Option<u64> {
        self.runner.newest_chunk_obs_tick()
    }
    fn reset(&mut self) {
        self.runner.reset();
    }
    fn doubt(&self) -> Option<f64> {
        self.runner.last_doubt().map(f64::from)
    }
    fn version(&self) -> &str {
        &self.version
    }
}
