//! Arbitration: who commands the arm. A small state machine fed by the gamepad, the control
//! socket and faults.
//!
//! ```text
//!            start(policy)            takeover
//!   Idle ───────────────▶ Autonomous ─────────▶ Intervening
//!    ▲   start(demo) ─────────────────────────▶ (demo: human all episode)
//!    │                       ▲      handback        │
//!    │ end episode           └──────────────────────┘
//!    │
//!   any ── fault / gamepad lost / hold ──▶ Hold ── takeover ──▶ Intervening
//!                                           └──── resume (socket) ──▶ Autonomous
//!   any ── e-stop ──▶ EStop (latched) ── clear ──▶ Hold (or Idle without an episode)
//! ```
//!
//! Hold never ends by itself: a person must take over or resume. That is what makes a lost
//! gamepad or a bus fault safe: the policy never gets the arm back silently.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::fault::HoldReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No episode: the arm holds its position.
    Idle,
    /// The policy drives.
    Autonomous,
    /// The human drives through the gamepad.
    Intervening,
    /// Nobody drives: the arm holds its last goal until a person acts.
    Hold,
    /// Latched emergency stop.
    EStop,
}

/// What can ask for a change of control.
#[derive(Debug, Clone)]
pub enum Trigger {
    StartEpisode {
        demo: bool,
    },
    EndEpisode,
    Takeover,
    Handback,
    /// Resume the policy from Hold (control socket).
    Resume,
    /// Hold for a reason: bus fault, lost gamepad, policy failure, operator request.
    Hold(HoldReason),
    EStop(String),
    ClearEStop,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: Mode,
    pub to: Mode,
    /// Static for everything but faults, so ordinary changes of hands allocate nothing.
    pub reason: Cow<'static, str>,
}

#[derive(Debug, Clone)]
pub struct Arbiter {
    mode: Mode,
    episode: bool,
    demo: bool,
}

impl Default for Arbiter {
    fn default() -> Self {
        Self::new()
    }
}

impl Mode {
    /// The name written to recordings and logs.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Autonomous => "autonomous",
            Mode::Intervening => "intervening",
            Mode::Hold => "hold",
            Mode::EStop => "estop",
        }
    }
}

impl Arbiter {
    pub fn new() -> Self {
        Self {
            mode: Mode::Idle,
            episode: false,
            demo: false,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn in_episode(&self) -> bool {
        self.episode
    }
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// Applies a trigger; returns the transition if the mode changed. Triggers that make no
    /// sense in the current mode are ignored (and return None), never half-applied.
    pub fn apply(&mut self, t: &Trigger) -> Option<Transition> {
        use Mode::*;
        let from = self.mode;
        let (to, reason) = match (from, t) {
            (EStop, Trigger::ClearEStop) => (
                if self.episode { Hold } else { Idle },
                Cow::Borrowed("e-stop cleared"),
            ),
            (EStop, _) => return None,
            (_, Trigger::EStop(why)) => (EStop, Cow::Owned(why.clone())),
            (Idle, Trigger::StartEpisode { demo }) => {
                self.episode = true;
                self.demo = *demo;
                (
                    if *demo { Intervening } else { Autonomous },
                    Cow::Borrowed("episode started"),
                )
            }
            (_, Trigger::StartEpisode { .. }) => return None,
            (Idle, _) => return None,
            (_, Trigger::EndEpisode) => {
                self.episode = false;
                self.demo = false;
                (Idle, Cow::Borrowed("episode ended"))
            }
            (Autonomous | Hold, Trigger::Takeover) => (Intervening, Cow::Borrowed("takeover")),
            // In a demonstration the human drives the whole episode: no handback.
            (Intervening, Trigger::Handback) if !self.demo => {
                (Autonomous, Cow::Borrowed("handback"))
            }
            (Hold, Trigger::Resume) if !self.demo => (Autonomous, Cow::Borrowed("resumed")),
            (Hold, Trigger::Resume) => (Intervening, Cow::Borrowed("resumed demonstration")),
            (Autonomous | Intervening, Trigger::Hold(why)) => (Hold, Cow::Owned(why.to_string())),
            _ => return None,
        };
        if to == from {
            return None;
        }
        self.mode = to;
        Some(Transition { from, to, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn policy_episode_takeover_and_handback() {
        let mut a = Arbiter::new();
        assert_eq!(
            a.apply(&Trigger::Takeover),
            None,
            "no takeover without an episode"
        );
        assert_eq!(
            a.apply(&Trigger::StartEpisode { demo: false }).unwrap().to,
            Mode::Autonomous
        );
        assert_eq!(a.apply(&Trigger::Takeover).unwrap().to, Mode::Intervening);
        assert_eq!(a.apply(&Trigger::Handback).unwrap().to, Mode::Autonomous);
        assert_eq!(a.apply(&Trigger::EndEpisode).unwrap().to, Mode::Idle);
        assert!(!a.in_episode());
    }

    #[test]
    fn demo_episode_cannot_hand_back() {
        let mut a = Arbiter::new();
        assert_eq!(
            a.apply(&Trigger::StartEpisode { demo: true }).unwrap().to,
            Mode::Intervening
        );
        assert_eq!(a.apply(&Trigger::Handback), None);
        assert_eq!(a.mode(), Mode::Intervening);
    }

    #[test]
    fn hold_is_sticky_until_a_person_acts() {
        let mut a = Arbiter::new();
        a.apply(&Trigger::StartEpisode { demo: false });
        a.apply(&Trigger::Takeover);
        assert_eq!(
            a.apply(&Trigger::Hold(HoldReason::Fault(Fault::GamepadLost)))
                .unwrap()
                .to,
            Mode::Hold
        );
        // Nothing but a takeover or an explicit resume leaves Hold.
        assert_eq!(a.apply(&Trigger::Handback), None);
        assert_eq!(a.mode(), Mode::Hold);
        assert_eq!(a.apply(&Trigger::Resume).unwrap().to, Mode::Autonomous);
    }

    #[test]
    fn estop_latches_until_cleared() {
        let mut a = Arbiter::new();
        a.apply(&Trigger::StartEpisode { demo: false });
        assert_eq!(
            a.apply(&Trigger::EStop("button".into())).unwrap().to,
            Mode::EStop
        );
        for t in [
            Trigger::Takeover,
            Trigger::Resume,
            Trigger::Handback,
            Trigger::EndEpisode,
            Trigger::StartEpisode { demo: false },
        ] {
            assert_eq!(a.apply(&t), None, "{t:?} must not leave EStop");
        }
        assert_eq!(a.apply(&Trigger::ClearEStop).unwrap().to, Mode::Hold);
    }
}
