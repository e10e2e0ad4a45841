//! The gamepad as the control loop sees it.

/// What the gamepad asks of the loop this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadIntent {
    Takeover,
    Handback,
    StartEpisode,
    Success,
    Failure,
    Discard,
    EStop,
    ClearEStop,
    Lost,
}

/// One tick of gamepad input.
#[derive(Debug, Clone, Default)]
pub struct PadTick {
    pub intents: Vec<PadIntent>,
    /// The human's absolute goal (rad) while they drive; on the takeover tick exactly the
    /// measured position.
    pub human_goal: Option<Vec<f64>>,
    pub axes: Vec<f64>,
    pub buttons: u32,
}

pub trait GamepadInput: Send {
    /// Drains the events of this tick.
    fn tick(&mut self, measured: &[f64], dt: f64) -> PadTick;
    fn connected(&self) -> bool;
    fn count(&self) -> usize;
    fn set_demo(&mut self, on: bool);
    fn release_hold(&mut self);
    fn latch_estop(&mut self);
    fn clear_estop(&mut self);
    fn rumble_help(&mut self);
}
