//! The project's own gamepad events. gilrs types stop at the gilrs thread; everything
//! downstream (takeover, mapping, recording, the virtual pad) speaks these.

use std::fmt;
use std::time::Instant;

use intervened_robot::{Axis, Button};

/// A gamepad's identity for as long as this process runs. gilrs reuses an id when the same
/// pad (same UUID) reconnects, and so does the virtual pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PadId(pub u32);

impl fmt::Display for PadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pad{}", self.0)
    }
}

/// What happened on a pad.
#[derive(Debug, Clone, PartialEq)]
pub enum GamepadEventKind {
    Connected {
        name: String,
    },
    Disconnected,
    ButtonPressed(Button),
    ButtonReleased(Button),
    /// Raw value (no deadzone): sticks -1..1 with up/right positive, triggers 0..1,
    /// D-pad -1, 0 or 1.
    AxisChanged(Axis, f64),
}

/// One event with the monotonic time it was read (or scripted).
#[derive(Debug, Clone, PartialEq)]
pub struct GamepadEvent {
    pub pad: PadId,
    pub time: Instant,
    pub kind: GamepadEventKind,
}

impl GamepadEvent {
    pub fn new(pad: PadId, kind: GamepadEventKind) -> Self {
        Self {
            pad,
            time: Instant::now(),
            kind,
        }
    }
}

/// A connected gamepad as `intervened doctor` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PadInfo {
    pub id: PadId,
    pub name: String,
    /// The OS name (may differ from the SDL mapping's name).
    pub os_name: String,
    pub uuid: [u8; 16],
    pub vendor_id: Option<u16>,
    pub product_id: Option<u16>,
    /// Whether the pad can rumble.
    pub force_feedback: bool,
    /// Where its button layout comes from: `sdl-db` (bundled or SDL_GAMECONTROLLERCONFIG),
    /// `driver` (the kernel's own layout), or `none` (buttons may be mislabelled).
    pub mapping: &'static str,
}

impl fmt::Display for PadInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = |v: Option<u16>| v.map_or_else(|| "????".to_string(), |v| format!("{v:04x}"));
        write!(
            f,
            "{} {:?} (os: {:?}, usb {}:{}, mapping: {}, rumble: {})",
            self.id,
            self.name,
            self.os_name,
            hex(self.vendor_id),
            hex(self.product_id),
            self.mapping,
            if self.force_feedback { "yes" } else { "no" }
        )
    }
}
