//! Config names of buttons and axes (the same snake_case the robot config uses).

use intervened_robot::{Axis, Button};

pub const ALL_AXES: [Axis; 8] = [
    Axis::LeftStickX,
    Axis::LeftStickY,
    Axis::RightStickX,
    Axis::RightStickY,
    Axis::LeftTrigger,
    Axis::RightTrigger,
    Axis::DpadX,
    Axis::DpadY,
];

pub const ALL_BUTTONS: [Button; 17] = [
    Button::South,
    Button::East,
    Button::North,
    Button::West,
    Button::LeftBumper,
    Button::RightBumper,
    Button::LeftTrigger,
    Button::RightTrigger,
    Button::Select,
    Button::Start,
    Button::Mode,
    Button::LeftThumb,
    Button::RightThumb,
    Button::DpadUp,
    Button::DpadDown,
    Button::DpadLeft,
    Button::DpadRight,
];

pub fn axis_name(a: Axis) -> &'static str {
    match a {
        Axis::LeftStickX => "left_stick_x",
        Axis::LeftStickY => "left_stick_y",
        Axis::RightStickX => "right_stick_x",
        Axis::RightStickY => "right_stick_y",
        Axis::LeftTrigger => "left_trigger",
        Axis::RightTrigger => "right_trigger",
        Axis::DpadX => "dpad_x",
        Axis::DpadY => "dpad_y",
    }
}

pub fn button_name(b: Button) -> &'static str {
    match b {
        Button::South => "south",
        Button::East => "east",
        Button::North => "north",
        Button::West => "west",
        Button::LeftBumper => "left_bumper",
        Button::RightBumper => "right_bumper",
        Button::LeftTrigger => "left_trigger",
        Button::RightTrigger => "right_trigger",
        Button::Select => "select",
        Button::Start => "start",
        Button::Mode => "mode",
        Button::LeftThumb => "left_thumb",
        Button::RightThumb => "right_thumb",
        Button::DpadUp => "dpad_up",
        Button::DpadDown => "dpad_down",
        Button::DpadLeft => "dpad_left",
        Button::DpadRight => "dpad_right",
    }
}

/// Index of an axis in [`ALL_AXES`] (for fixed-size state arrays).
pub(crate) fn axis_index(a: Axis) -> usize {
    match a {
        Axis::LeftStickX => 0,
        Axis::LeftStickY => 1,
        Axis::RightStickX => 2,
        Axis::RightStickY => 3,
        Axis::LeftTrigger => 4,
        Axis::RightTrigger => 5,
        Axis::DpadX => 6,
        Axis::DpadY => 7,
    }
}

/// The other axis of the same stick, for the radial deadzone.
pub(crate) fn stick_partner(a: Axis) -> Option<Axis> {
    match a {
        Axis::LeftStickX => Some(Axis::LeftStickY),
        Axis::LeftStickY => Some(Axis::LeftStickX),
        Axis::RightStickX => Some(Axis::RightStickY),
        Axis::RightStickY => Some(Axis::RightStickX),
        _ => None,
    }
}
