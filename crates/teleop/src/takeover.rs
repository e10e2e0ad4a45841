//! Takeover semantics: who owns the arm, as the gamepad sees it, and what the daemon must do.
//!
//! # Owners
//!
//! - [`ControlOwner::Policy`]: the human is not driving (the policy may, if the daemon runs one).
//! - [`ControlOwner::Human`]: the gamepad drives; goals come from the teleop integrator.
//! - [`ControlOwner::Hold`]: nobody drives; the daemon holds position. Hold is *latched*: no
//!   timeout, reconnect or release ever leaves it. Only these explicit acts do:
//!   - a fresh press of the takeover button (a press observed after the Hold began; buttons
//!     held across a reconnect do not count because a reconnected pad starts with nothing
//!     held) -> `Human` + [`Intent::Takeover`]. From there the usual rule hands back:
//!     release (hold mode) or a second press (toggle mode) -> `Policy` + [`Intent::Handback`];
//!   - [`Takeover::release_hold`], for an operator's explicit `clear` command (needs a
//!     connected pad, so a human can still intervene) -> `Policy` + [`Intent::Handback`].
//!
//! # Transitions
//!
//! | event | hold mode (deadman) | toggle mode |
//! | --- | --- | --- |
//! | takeover pressed, owner Policy or Hold | Human, `Takeover` | Human, `Takeover` |
//! | takeover released, owner Human | Policy, `Handback` | nothing |
//! | takeover pressed, owner Human | (cannot happen) | Policy, `Handback` |
//! | active pad disconnected | Hold, `GamepadLost` | Hold, `GamepadLost` |
//! | e-stop pressed (not latched) | Hold, `EStop`, latched | same |
//! | clear chord while latched | `ClearEStop`, unlatched, owner stays Hold | same |
//!
//! A pad lost while the *policy* drives also goes to Hold: without a pad nobody can take
//! over, so autonomy would run without its safety net.
//!
//! # E-stop
//!
//! Pressing the e-stop button latches the e-stop ([`Intent::EStop`], owner Hold). While
//! latched, the takeover button and start-episode are ignored (success, failure and discard
//! still label the episode). **Clear chord**: with the e-stop button *held*, press the
//! clear button (`estop` = select, `clear_estop` = north by default). The order matters:
//! clear held first and then select pressed does nothing, so a stray press cannot clear.
//! After clearing, the owner is Hold; a fresh takeover press is needed to drive.
//!
//! # Demonstration mode
//!
//! With [`Takeover::set_demo`] on, the whole episode is teleoperated: the owner is Human
//! without holding anything, releases and toggles do not hand back (there is no policy), and
//! frames are labelled demo. A lost pad still goes to Hold; a fresh takeover press resumes.

use intervened_robot::{Button, EpisodeButtons, TakeoverMode, TeleopConfig};
use tracing::{debug, info, warn};

use crate::error::TeleopError;
use crate::event::{GamepadEvent, PadId};
use crate::state::{PadChange, PadState};

/// Who owns the arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ControlOwner {
    #[default]
    Policy,
    Human,
    Hold,
}

/// What the daemon is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// The human took control: reset goals to the measured position, reset policy ensembling.
    Takeover,
    /// The human handed control back to the policy.
    Handback,
    StartEpisode,
    Success,
    Failure,
    Discard,
    /// Latch the e-stop.
    EStop,
    /// The clear chord was pressed while latched.
    ClearEStop,
    /// The active pad went away; the owner is now Hold.
    GamepadLost,
    GamepadConnected(PadId),
}

/// The takeover state machine. It owns the [`PadState`] so that chords and fresh presses
/// are judged against exactly the events it has seen.
#[derive(Debug, Clone)]
pub struct Takeover {
    mode: TakeoverMode,
    takeover_button: Button,
    buttons: EpisodeButtons,
    owner: ControlOwner,
    estop: bool,
    demo: bool,
    pad: PadState,
}

impl Takeover {
    /// Starts with owner Policy (nobody driving), e-stop clear, demo off.
    pub fn new(cfg: &TeleopConfig) -> Self {
        Self {
            mode: cfg.takeover,
            takeover_button: cfg.takeover_button,
            buttons: cfg.buttons.clone(),
            owner: ControlOwner::Policy,
            estop: false,
            demo: false,
            pad: PadState::new(),
        }
    }

    pub fn owner(&self) -> ControlOwner {
        self.owner
    }

    /// Hold (deadman) or toggle, for the daemon's status.
    pub fn mode(&self) -> TakeoverMode {
        self.mode
    }

    pub fn is_human(&self) -> bool {
        self.owner == ControlOwner::Human
    }

    pub fn is_estopped(&self) -> bool {
        self.estop
    }

    pub fn is_demo(&self) -> bool {
        self.demo
    }

    pub fn pad(&self) -> &PadState {
        &self.pad
    }

    /// Feeds one event; appends the intents it causes to `out`.
    pub fn handle(&mut self, ev: &GamepadEvent, out: &mut Vec<Intent>) {
        match self.pad.apply(ev) {
            PadChange::None | PadChange::Axis(..) => {}
            PadChange::Connected { pad, active } => {
                info!(%pad, active, "gamepad connected");
                out.push(Intent::GamepadConnected(pad));
            }
            PadChange::Disconnected { pad, was_active } => {
                if was_active {
                    warn!(%pad, owner = ?self.owner, "active gamepad lost; holding position until an explicit takeover");
                    self.owner = ControlOwner::Hold;
                    out.push(Intent::GamepadLost);
                } else {
                    debug!(%pad, "inactive gamepad disconnected");
                }
            }
            PadChange::Pressed(b) => self.pressed(b, out),
            PadChange::Released(b) => self.released(b, out),
        }
    }

    /// Feeds several events in order; returns their intents.
    pub fn handle_all<'a>(
        &mut self,
        evs: impl IntoIterator<Item = &'a GamepadEvent>,
    ) -> Vec<Intent> {
        let mut out = Vec::new();
        for ev in evs {
            self.handle(ev, &mut out);
        }
        out
    }

    fn pressed(&mut self, b: Button, out: &mut Vec<Intent>) {
        let eb = &self.buttons;
        if b == eb.estop {
            if !self.estop {
                self.estop = true;
                self.owner = ControlOwner::Hold;
                out.push(Intent::EStop);
            }
            return;
        }
        if b == eb.clear_estop {
            // Only the ordered chord clears: e-stop already held, then clear pressed.
            if self.estop && self.pad.is_pressed(eb.estop) {
                self.estop = false;
                out.push(Intent::ClearEStop);
            }
            return;
        }
        if b == eb.start_episode {
            if self.estop {
                debug!("start-episode ignored while e-stopped");
            } else {
                out.push(Intent::StartEpisode);
            }
            return;
        }
        if b == eb.success {
            out.push(Intent::Success);
            return;
        }
        if b == eb.failure {
            out.push(Intent::Failure);
            return;
        }
        if b == eb.discard {
            out.push(Intent::Discard);
            return;
        }
        if b == self.takeover_button {
            if self.estop {
                debug!("takeover ignored while e-stopped");
                return;
            }
            match (self.owner, self.mode) {
                (ControlOwner::Policy | ControlOwner::Hold, _) => {
                    self.owner = ControlOwner::Human;
                    out.push(Intent::Takeover);
                }
                (ControlOwner::Human, TakeoverMode::Toggle) if !self.demo => {
                    self.owner = ControlOwner::Policy;
                    out.push(Intent::Handback);
                }
                (ControlOwner::Human, _) => {}
            }
        }
    }

    fn released(&mut self, b: Button, out: &mut Vec<Intent>) {
        if b == self.takeover_button
            && self.mode == TakeoverMode::Hold
            && self.owner == ControlOwner::Human
            && !self.demo
        {
            self.owner = ControlOwner::Policy;
            out.push(Intent::Handback);
        }
    }

    /// Latches the e-stop from outside the pad (control socket, fault). Returns
    /// `Some(Intent::EStop)` if it was not latched yet.
    pub fn latch_estop(&mut self) -> Option<Intent> {
        if self.estop {
            return None;
        }
        self.estop = true;
        self.owner = ControlOwner::Hold;
        Some(Intent::EStop)
    }

    /// Unlatches the e-stop on an operator's explicit command (the control socket's
    /// `clear_estop`). The owner stays Hold: a fresh takeover press or `release_hold` is still
    /// needed before anyone drives.
    pub fn clear_estop(&mut self) -> Option<Intent> {
        if !self.estop {
            return None;
        }
        self.estop = false;
        self.owner = ControlOwner::Hold;
        Some(Intent::ClearEStop)
    }

    /// Leaves Hold for Policy on an operator's explicit command. Refused while e-stopped,
    /// and without a connected pad (the human must be able to take over again).
    /// Returns `Ok(None)` when the owner is not Hold (nothing to do).
    pub fn release_hold(&mut self) -> Result<Option<Intent>, TeleopError> {
        if self.owner != ControlOwner::Hold {
            return Ok(None);
        }
        if self.estop {
            return Err(TeleopError::EStopLatched);
        }
        if !self.pad.any_connected() {
            return Err(TeleopError::NoGamepad);
        }
        self.owner = if self.demo {
            ControlOwner::Human
        } else {
            ControlOwner::Policy
        };
        Ok(Some(if self.demo {
            Intent::Takeover
        } else {
            Intent::Handback
        }))
    }

    /// Turns demonstration mode on or off. On: a Policy owner becomes Human
    /// ([`Intent::Takeover`]); Hold stays Hold (needs a fresh press). Off: a Human owner goes
    /// to Hold, never straight back to the policy.
    pub fn set_demo(&mut self, on: bool) -> Option<Intent> {
        if self.demo == on {
            return None;
        }
        self.demo = on;
        match (on, self.owner) {
            (true, ControlOwner::Policy) if !self.estop => {
                self.owner = ControlOwner::Human;
                Some(Intent::Takeover)
            }
            (false, ControlOwner::Human) => {
                self.owner = ControlOwner::Hold;
                None
            }
            _ => None,
        }
    }
}
