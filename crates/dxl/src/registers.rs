//! X-series control table addresses (Protocol 2.0) that this crate touches.

pub const MODEL_NUMBER: u16 = 0;
pub const FIRMWARE_VERSION: u16 = 6;
pub const BAUD_RATE: u16 = 8;
pub const RETURN_DELAY_TIME: u16 = 9;
pub const OPERATING_MODE: u16 = 11;
pub const HOMING_OFFSET: u16 = 20;
pub const MAX_POSITION_LIMIT: u16 = 48;
pub const MIN_POSITION_LIMIT: u16 = 52;
pub const TORQUE_ENABLE: u16 = 64;
pub const HARDWARE_ERROR_STATUS: u16 = 70;
pub const GOAL_POSITION: u16 = 116;
pub const PRESENT_CURRENT: u16 = 126;
pub const PRESENT_VELOCITY: u16 = 128;
pub const PRESENT_POSITION: u16 = 132;
pub const PRESENT_INPUT_VOLTAGE: u16 = 144;
pub const PRESENT_TEMPERATURE: u16 = 146;

/// Present_Current (2) + Present_Velocity (4) + Present_Position (4), contiguous from 126.
pub const MOTION_BLOCK_LEN: u16 = 10;
/// Present_Input_Voltage (2) + Present_Temperature (1), contiguous from 144.
pub const POWER_BLOCK_LEN: u16 = 3;

/// Hardware_Error_Status bits (X series e-manual).
pub const HW_INPUT_VOLTAGE: u8 = 1 << 0;
pub const HW_OVERHEATING: u8 = 1 << 2;
pub const HW_MOTOR_ENCODER: u8 = 1 << 3;
pub const HW_ELECTRICAL_SHOCK: u8 = 1 << 4;
pub const HW_OVERLOAD: u8 = 1 << 5;

/// Human-readable names of the set Hardware_Error_Status bits.
pub fn hardware_error_names(bits: u8) -> String {
    let names = [
        (HW_INPUT_VOLTAGE, "input voltage"),
        (HW_OVERHEATING, "overheating"),
        (HW_MOTOR_ENCODER, "motor encoder"),
        (HW_ELECTRICAL_SHOCK, "electrical shock"),
        (HW_OVERLOAD, "overload"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        if bits == 0 {
            "none".into()
        } else {
            format!("unknown bits {bits:#04x}")
        }
    } else {
        set.join(", ")
    }
}

/// Name of a Protocol 2.0 status error number (the low 7 bits of the error byte).
pub fn servo_error_name(n: u8) -> &'static str {
    match n {
        1 => "result fail",
        2 => "instruction error",
        3 => "CRC error",
        4 => "data range error",
        5 => "data length error",
        6 => "data limit error",
        7 => "access error",
        _ => "unknown error",
    }
}
