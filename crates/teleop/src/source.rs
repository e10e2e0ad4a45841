//! The gamepad seen by the daemon: a real one through gilrs, or a virtual one.

use crossbeam_channel::Receiver;

use crate::event::{GamepadEvent, PadInfo};
use crate::rumble::RumblePattern;

/// A source of gamepad events. Implemented by [`crate::GilrsSource`] and
/// [`crate::VirtualGamepad`].
pub trait GamepadSource: Send {
    /// The event queue. Drain it with `try_iter()` once per control tick; it never blocks.
    fn events(&self) -> &Receiver<GamepadEvent>;
    /// The pads connected now.
    fn pads(&self) -> Vec<PadInfo>;
    /// Plays a pattern on every connected pad. Never fails: problems are logged.
    fn rumble(&self, pattern: RumblePattern);
}
