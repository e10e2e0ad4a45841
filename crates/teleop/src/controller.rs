//! Everything the control thread needs from the gamepad in one call per tick: events in,
//! intents, rumble requests and (while the human drives) absolute goals out.

use intervened_robot::{RobotConfig, TeleopConfig};
use tracing::warn;

use crate::error::TeleopError;
use crate::event::GamepadEvent;
use crate::integrator::TeleopIntegrator;
use crate::mapping::Mapping;
use crate::rumble::RumblePattern;
use crate::source::GamepadSource;
use crate::takeover::{ControlOwner, Intent, Takeover};

/// The result of one tick.
#[derive(Debug, Default)]
pub struct TickOutput {
    /// In the order they happened.
    pub intents: Vec<Intent>,
    /// Acknowledgements to play (already sent when using [`TeleopController::tick_source`]).
    pub rumbles: Vec<RumblePattern>,
    pub owner: ControlOwner,
    /// The goal to command while the human drives. On the takeover tick it is exactly the
    /// measured position.
    pub human_goal: Option<Vec<f64>>,
    /// What the pad asks for now (rad/s), also when the human is not driving (for recording).
    pub velocities: Vec<f64>,
    /// Set when the owner is Human but no goal could be made (bad measured positions):
    /// the daemon must hold.
    pub goal_error: Option<TeleopError>,
}

/// The acknowledgement rumble of an intent, if any.
pub fn ack_for(intent: Intent) -> Option<RumblePattern> {
    match intent {
        Intent::Takeover => Some(RumblePattern::TakeoverAck),
        Intent::Handback => Some(RumblePattern::HandbackAck),
        Intent::EStop => Some(RumblePattern::EStop),
        Intent::ClearEStop => Some(RumblePattern::EStopCleared),
        Intent::StartEpisode | Intent::Success | Intent::Failure | Intent::Discard => {
            Some(RumblePattern::EpisodeMark)
        }
        Intent::GamepadConnected(_) => Some(RumblePattern::Connected),
        // The lost pad cannot feel it.
        Intent::GamepadLost => None,
    }
}

/// Takeover machine + mapping + integrator.
#[derive(Debug, Clone)]
pub struct TeleopController {
    takeover: Takeover,
    mapping: Mapping,
    integrator: TeleopIntegrator,
    velocities: Vec<f64>,
    /// The human-goal buffer between goals (see `tick_into`).
    spare_goal: Option<Vec<f64>>,
}

impl TeleopController {
    /// `joints` are `(name, [min, max])` in config order.
    pub fn new(cfg: &TeleopConfig, joints: &[(String, [f64; 2])]) -> Result<Self, TeleopError> {
        let names: Vec<String> = joints.iter().map(|(n, _)| n.clone()).collect();
        let mapping = Mapping::new(cfg, &names)?;
        let integrator = TeleopIntegrator::new(joints.iter().map(|(_, l)| *l).collect())?;
        Ok(Self {
            takeover: Takeover::new(cfg),
            mapping,
            integrator,
            velocities: vec![0.0; joints.len()],
            spare_goal: Some(Vec::with_capacity(joints.len())),
        })
    }

    pub fn from_robot_config(cfg: &RobotConfig) -> Result<Self, TeleopError> {
        let joints: Vec<(String, [f64; 2])> = cfg
            .joints
            .iter()
            .map(|j| (j.name.clone(), j.limits))
            .collect();
        Self::new(&cfg.teleop, &joints)
    }

    pub fn takeover(&self) -> &Takeover {
        &self.takeover
    }

    /// For explicit operator actions ([`Takeover::release_hold`], [`Takeover::latch_estop`],
    /// [`Takeover::set_demo`]). An intent they return should be passed to
    /// [`TeleopController::note_intent`] so the integrator follows.
    pub fn takeover_mut(&mut self) -> &mut Takeover {
        &mut self.takeover
    }

    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    pub fn owner(&self) -> ControlOwner {
        self.takeover.owner()
    }

    /// Makes the integrator follow an intent produced outside `tick`: after a Takeover the
    /// next tick starts again from the measured position.
    pub fn note_intent(&mut self, intent: Intent) {
        if intent == Intent::Takeover {
            self.integrator.disarm();
        }
    }

    /// One control tick: applies `events`, then computes the human goal from `measured`
    /// (rad, config order) over `dt` seconds.
    pub fn tick<I>(&mut self, events: I, measured: &[f64], dt: f64) -> TickOutput
    where
        I: IntoIterator<Item = GamepadEvent>,
    {
        let mut out = TickOutput::default();
        self.tick_into(events, measured, dt, &mut out);
        out
    }

    /// As [`TeleopController::tick`], refilling a caller-owned `out`: once its buffers have
    /// grown, a tick allocates nothing (the control thread calls this).
    pub fn tick_into<I>(&mut self, events: I, measured: &[f64], dt: f64, out: &mut TickOutput)
    where
        I: IntoIterator<Item = GamepadEvent>,
    {
        out.intents.clear();
        for ev in events {
            self.takeover.handle(&ev, &mut out.intents);
        }
        // A takeover this tick (even after a handback in the same tick) restarts from the
        // measured position.
        if out.intents.contains(&Intent::Takeover) {
            self.integrator.disarm();
        }
        self.mapping
            .velocities_into(self.takeover.pad(), &mut self.velocities);

        // The goal buffer is parked in `spare_goal` while there is no goal, so it is reused.
        if let Some(g) = out.human_goal.take() {
            self.spare_goal = Some(g);
        }
        out.goal_error = None;
        if self.takeover.owner() == ControlOwner::Human {
            let r = if self.integrator.is_armed() {
                self.integrator.step(&self.velocities, dt)
            } else {
                self.integrator.reset_to(measured)
            };
            match r {
                Ok(g) => {
                    let mut buf = self.spare_goal.take().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(g);
                    out.human_goal = Some(buf);
                }
                Err(e) => {
                    warn!(error = %e, "no teleop goal this tick");
                    // Start again from the measured position once it is valid.
                    self.integrator.disarm();
                    out.goal_error = Some(e);
                }
            }
        } else {
            self.integrator.disarm();
        }
        out.rumbles.clear();
        out.rumbles
            .extend(out.intents.iter().filter_map(|i| ack_for(*i)));
        out.owner = self.takeover.owner();
        out.velocities.clear();
        out.velocities.extend_from_slice(&self.velocities);
    }

    /// As [`TeleopController::tick`], draining the source's pending events without blocking
    /// and sending the acknowledgement rumbles to it.
    pub fn tick_source(
        &mut self,
        source: &dyn GamepadSource,
        measured: &[f64],
        dt: f64,
    ) -> TickOutput {
        let events: Vec<GamepadEvent> = source.events().try_iter().collect();
        let out = self.tick(events, measured, dt);
        for r in &out.rumbles {
            source.rumble(*r);
        }
        out
    }
}
