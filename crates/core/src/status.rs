//! The daemon's status: what `intervened ctl status` shows and systemd's STATUS line says.

use serde::{Deserialize, Serialize};

use crate::arbiter::Mode;
use crate::fault::ActiveFault;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub robot: String,
    pub mode: Mode,
    /// `hold` (deadman: the human drives while the button is held) or `toggle`.
    pub takeover: String,
    pub takeover_button: String,
    pub in_episode: bool,
    pub demo: bool,
    pub session_id: String,
    pub episodes_done: u64,
    pub tick: u64,
    pub rate_hz: f64,
    pub policy_version: Option<String>,
    pub gamepads: usize,
    /// The policy ensemble's doubt on the last tick, when it has an ensemble.
    pub doubt: Option<f64>,
    /// The policy asks the human for help (doubt over the threshold).
    pub help_requested: bool,
    /// Faults active now (bus, servo, policy, recorder, gamepad).
    pub faults: Vec<ActiveFault>,
    pub bus_errors: u64,
    pub clamps: u64,
    pub dropped_frames: u64,
    /// Frames that reached the recorder but not the disk (write errors, uncreatable files).
    pub lost_frames: u64,
    /// Episodes of which nothing readable reached the disk.
    pub lost_episodes: u64,
    /// Ticks on which the policy produced a usable action, since the daemon started.
    pub policy_actions: u64,
    /// Times the policy went `policy.action_timeout_ms` without an action (each a Hold).
    pub policy_starvations: u64,
    pub overruns: u64,
    pub period_error_p99_us: f64,
    /// Measured joint positions, rad, config order.
    pub q: Vec<f64>,
    /// The loop is ticking and the bus answers: the systemd watchdog is fed only while true.
    pub healthy: bool,
    /// What real-time hygiene took effect on the control thread.
    #[serde(default)]
    pub realtime: crate::rt::RealtimeState,
}

impl Status {
    pub fn new(robot: &str, takeover: &str, takeover_button: &str, rate_hz: f64) -> Self {
        Self {
            robot: robot.to_string(),
            mode: Mode::Idle,
            takeover: takeover.to_string(),
            takeover_button: takeover_button.to_string(),
            in_episode: false,
            demo: false,
            session_id: String::new(),
            episodes_done: 0,
            tick: 0,
            rate_hz,
            policy_version: None,
            gamepads: 0,
            doubt: None,
            help_requested: false,
            faults: Vec::new(),
            bus_errors: 0,
            clamps: 0,
            dropped_frames: 0,
            lost_frames: 0,
            lost_episodes: 0,
            policy_actions: 0,
            policy_starvations: 0,
            overruns: 0,
            period_error_p99_us: 0.0,
            q: Vec::new(),
            healthy: false,
            realtime: Default::default(),
        }
    }

    /// One line for systemd's STATUS= and the journal.
    pub fn line(&self) -> String {
        format!(
            "{:?}{} | takeover: {} {} | episodes {} | policy {} | faults {}",
            self.mode,
            if self.demo { " (demo)" } else { "" },
            self.takeover,
            self.takeover_button,
            self.episodes_done,
            self.policy_version.as_deref().unwrap_or("none"),
            if self.faults.is_empty() {
                "none".to_string()
            } else {
                let messages: Vec<&str> = self.faults.iter().map(|f| f.message.as_str()).collect();
                messages.join(", ")
            }
        )
    }
}
