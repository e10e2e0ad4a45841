//! The gamepad as the control loop sees it.

use intervened_teleop::Intent;

/// One tick of gamepad input. The loop keeps one and lets [`GamepadInput::tick`] refill it, so
/// no tick allocates for it once its buffers have grown.
#[derive(Debug, Clone, Default)]
pub struct PadTick {
    pub intents: Vec<Intent>,
    /// The human's absolute goal (rad) while they drive; on the takeover tick exactly the
    /// measured position. Empty when the human is not driving.
    pub human_goal: Vec<f64>,
    pub axes: Vec<f64>,
    pub buttons: u32,
    /// When the button press behind this tick's takeover was read (for takeover latency).
    pub takeover_event: Option<std::time::Instant>,
}

impl PadTick {
    pub fn human_goal(&self) -> Option<&[f64]> {
        (!self.human_goal.is_empty()).then_some(self.human_goal.as_slice())
    }
}

pub trait GamepadInput: Send {
    /// Drains the events of this tick into `out`.
    fn tick(&mut self, measured: &[f64], dt: f64, out: &mut PadTick);
    fn connected(&self) -> bool;
    fn count(&self) -> usize;
    fn set_demo(&mut self, on: bool);
    fn release_hold(&mut self);
    fn latch_estop(&mut self);
    fn clear_estop(&mut self);
    fn rumble_help(&mut self);
    /// A fault put the arm in Hold by itself.
    fn rumble_fault(&mut self);
}
