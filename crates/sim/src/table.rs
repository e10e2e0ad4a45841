//! The X-series control table: addresses, sizes, access, value ranges and per-model defaults.

use intervened_robot::ServoModel;

/// Bytes of control table the emulator holds (Model_Number .. Backup_Ready). Indirect
/// addressing (168 and up) is not emulated: reads and writes there are access errors.
pub const TABLE_LEN: usize = 148;
/// Addresses below this are EEPROM: writable only while torque is off.
pub const EEPROM_END: u16 = 64;

/// Register addresses used by the emulator itself.
pub mod addr {
    pub const MODEL_NUMBER: u16 = 0;
    pub const MODEL_INFORMATION: u16 = 2;
    pub const FIRMWARE_VERSION: u16 = 6;
    pub const ID: u16 = 7;
    pub const BAUD_RATE: u16 = 8;
    pub const RETURN_DELAY_TIME: u16 = 9;
    pub const DRIVE_MODE: u16 = 10;
    pub const OPERATING_MODE: u16 = 11;
    pub const SECONDARY_ID: u16 = 12;
    pub const PROTOCOL_TYPE: u16 = 13;
    pub const HOMING_OFFSET: u16 = 20;
    pub const MOVING_THRESHOLD: u16 = 24;
    pub const TEMPERATURE_LIMIT: u16 = 31;
    pub const MAX_VOLTAGE_LIMIT: u16 = 32;
    pub const MIN_VOLTAGE_LIMIT: u16 = 34;
    pub const PWM_LIMIT: u16 = 36;
    pub const CURRENT_LIMIT: u16 = 38;
    pub const VELOCITY_LIMIT: u16 = 44;
    pub const MAX_POSITION_LIMIT: u16 = 48;
    pub const MIN_POSITION_LIMIT: u16 = 52;
    pub const STARTUP_CONFIGURATION: u16 = 60;
    pub const SHUTDOWN: u16 = 63;
    pub const TORQUE_ENABLE: u16 = 64;
    pub const LED: u16 = 65;
    pub const STATUS_RETURN_LEVEL: u16 = 68;
    pub const REGISTERED_INSTRUCTION: u16 = 69;
    pub const HARDWARE_ERROR_STATUS: u16 = 70;
    pub const VELOCITY_I_GAIN: u16 = 76;
    pub const VELOCITY_P_GAIN: u16 = 78;
    pub const POSITION_D_GAIN: u16 = 80;
    pub const POSITION_I_GAIN: u16 = 82;
    pub const POSITION_P_GAIN: u16 = 84;
    pub const FEEDFORWARD_2ND_GAIN: u16 = 88;
    pub const FEEDFORWARD_1ST_GAIN: u16 = 90;
    pub const BUS_WATCHDOG: u16 = 98;
    pub const GOAL_PWM: u16 = 100;
    pub const GOAL_CURRENT: u16 = 102;
    pub const GOAL_VELOCITY: u16 = 104;
    pub const PROFILE_ACCELERATION: u16 = 108;
    pub const PROFILE_VELOCITY: u16 = 112;
    pub const GOAL_POSITION: u16 = 116;
    pub const REALTIME_TICK: u16 = 120;
    pub const MOVING: u16 = 122;
    pub const MOVING_STATUS: u16 = 123;
    pub const PRESENT_PWM: u16 = 124;
    pub const PRESENT_CURRENT: u16 = 126;
    pub const PRESENT_VELOCITY: u16 = 128;
    pub const PRESENT_POSITION: u16 = 132;
    pub const VELOCITY_TRAJECTORY: u16 = 136;
    pub const POSITION_TRAJECTORY: u16 = 140;
    pub const PRESENT_INPUT_VOLTAGE: u16 = 144;
    pub const PRESENT_TEMPERATURE: u16 = 146;
    pub const BACKUP_READY: u16 = 147;
}

/// Whether the host may write a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One control-table item.
#[derive(Debug, Clone, Copy)]
pub struct Register {
    pub name: &'static str,
    pub addr: u16,
    pub size: u16,
    pub access: Access,
    pub signed: bool,
    /// Accepted range for writes (inclusive).
    pub min: i64,
    pub max: i64,
}

const fn rw(name: &'static str, addr: u16, size: u16, min: i64, max: i64) -> Register {
    Register {
        name,
        addr,
        size,
        access: Access::ReadWrite,
        signed: min < 0,
        min,
        max,
    }
}

const fn ro(name: &'static str, addr: u16, size: u16, signed: bool) -> Register {
    Register {
        name,
        addr,
        size,
        access: Access::ReadOnly,
        signed,
        min: 0,
        max: 0,
    }
}

/// Extended-position range of Goal_Position (modes 4 and 5).
pub const EXTENDED_GOAL_RANGE: i64 = 1_048_575;

/// The X-series items (XL330/XL430/XM430 share this layout for everything modelled here).
pub const REGISTERS: &[Register] = &[
    ro("Model_Number", addr::MODEL_NUMBER, 2, false),
    ro("Model_Information", addr::MODEL_INFORMATION, 4, false),
    ro("Firmware_Version", addr::FIRMWARE_VERSION, 1, false),
    rw("ID", addr::ID, 1, 0, 252),
    rw("Baud_Rate", addr::BAUD_RATE, 1, 0, 7),
    rw("Return_Delay_Time", addr::RETURN_DELAY_TIME, 1, 0, 254),
    rw("Drive_Mode", addr::DRIVE_MODE, 1, 0, 13),
    rw("Operating_Mode", addr::OPERATING_MODE, 1, 0, 16),
    rw("Secondary_ID", addr::SECONDARY_ID, 1, 0, 255),
    rw("Protocol_Type", addr::PROTOCOL_TYPE, 1, 1, 2),
    rw(
        "Homing_Offset",
        addr::HOMING_OFFSET,
        4,
        -1_044_479,
        1_044_479,
    ),
    rw("Moving_Threshold", addr::MOVING_THRESHOLD, 4, 0, 1023),
    rw("Temperature_Limit", addr::TEMPERATURE_LIMIT, 1, 0, 100),
    rw("Max_Voltage_Limit", addr::MAX_VOLTAGE_LIMIT, 2, 31, 160),
    rw("Min_Voltage_Limit", addr::MIN_VOLTAGE_LIMIT, 2, 31, 160),
    rw("PWM_Limit", addr::PWM_LIMIT, 2, 0, 885),
    rw("Current_Limit", addr::CURRENT_LIMIT, 2, 0, 2047),
    rw("Velocity_Limit", addr::VELOCITY_LIMIT, 4, 0, 2047),
    rw("Max_Position_Limit", addr::MAX_POSITION_LIMIT, 4, 0, 4095),
    rw("Min_Position_Limit", addr::MIN_POSITION_LIMIT, 4, 0, 4095),
    rw(
        "Startup_Configuration",
        addr::STARTUP_CONFIGURATION,
        1,
        0,
        3,
    ),
    rw("Shutdown", addr::SHUTDOWN, 1, 0, 255),
    rw("Torque_Enable", addr::TORQUE_ENABLE, 1, 0, 1),
    rw("LED", addr::LED, 1, 0, 1),
    rw("Status_Return_Level", addr::STATUS_RETURN_LEVEL, 1, 0, 2),
    ro(
        "Registered_Instruction",
        addr::REGISTERED_INSTRUCTION,
        1,
        false,
    ),
    ro(
        "Hardware_Error_Status",
        addr::HARDWARE_ERROR_STATUS,
        1,
        false,
    ),
    rw("Velocity_I_Gain", addr::VELOCITY_I_GAIN, 2, 0, 16383),
    rw("Velocity_P_Gain", addr::VELOCITY_P_GAIN, 2, 0, 16383),
    rw("Position_D_Gain", addr::POSITION_D_GAIN, 2, 0, 16383),
    rw("Position_I_Gain", addr::POSITION_I_GAIN, 2, 0, 16383),
    rw("Position_P_Gain", addr::POSITION_P_GAIN, 2, 0, 16383),
    rw(
        "Feedforward_2nd_Gain",
        addr::FEEDFORWARD_2ND_GAIN,
        2,
        0,
        16383,
    ),
    rw(
        "Feedforward_1st_Gain",
        addr::FEEDFORWARD_1ST_GAIN,
        2,
        0,
        16383,
    ),
    rw("Bus_Watchdog", addr::BUS_WATCHDOG, 1, 0, 127),
    rw("Goal_PWM", addr::GOAL_PWM, 2, -885, 885),
    rw("Goal_Current", addr::GOAL_CURRENT, 2, -2047, 2047),
    rw("Goal_Velocity", addr::GOAL_VELOCITY, 4, -2047, 2047),
    rw(
        "Profile_Acceleration",
        addr::PROFILE_ACCELERATION,
        4,
        0,
        32767,
    ),
    rw("Profile_Velocity", addr::PROFILE_VELOCITY, 4, 0, 32767),
    rw(
        "Goal_Position",
        addr::GOAL_POSITION,
        4,
        -EXTENDED_GOAL_RANGE,
        EXTENDED_GOAL_RANGE,
    ),
    ro("Realtime_Tick", addr::REALTIME_TICK, 2, false),
    ro("Moving", addr::MOVING, 1, false),
    ro("Moving_Status", addr::MOVING_STATUS, 1, false),
    ro("Present_PWM", addr::PRESENT_PWM, 2, true),
    ro("Present_Current", addr::PRESENT_CURRENT, 2, true),
    ro("Present_Velocity", addr::PRESENT_VELOCITY, 4, true),
    ro("Present_Position", addr::PRESENT_POSITION, 4, true),
    ro("Velocity_Trajectory", addr::VELOCITY_TRAJECTORY, 4, true),
    ro("Position_Trajectory", addr::POSITION_TRAJECTORY, 4, true),
    ro(
        "Present_Input_Voltage",
        addr::PRESENT_INPUT_VOLTAGE,
        2,
        false,
    ),
    ro("Present_Temperature", addr::PRESENT_TEMPERATURE, 1, false),
    ro("Backup_Ready", addr::BACKUP_READY, 1, false),
];

/// The register that holds byte `a`, if any.
pub fn register_at(a: u16) -> Option<&'static Register> {
    REGISTERS
        .iter()
        .find(|r| a >= r.addr && a < r.addr + r.size)
}

/// Facts about a model that shape its defaults and physics.
#[derive(Debug, Clone, Copy)]
pub struct ModelFacts {
    /// Present_Input_Voltage at rest, in 0.1 V.
    pub voltage_decivolt: u16,
    pub current_limit: u16,
    /// Velocity_Limit default, in 0.229 rpm.
    pub velocity_limit: u32,
    pub temperature_limit: u8,
    pub max_voltage: u16,
    pub min_voltage: u16,
    pub position_p_gain: u16,
}

pub fn model_facts(model: ServoModel) -> ModelFacts {
    match model {
        ServoModel::Xl330M077 | ServoModel::Xl330M288 => ModelFacts {
            voltage_decivolt: 50,
            current_limit: 1750,
            velocity_limit: 445,
            temperature_limit: 70,
            max_voltage: 70,
            min_voltage: 35,
            position_p_gain: 400,
        },
        ServoModel::Xl430W250 => ModelFacts {
            voltage_decivolt: 120,
            current_limit: 1193,
            velocity_limit: 265,
            temperature_limit: 72,
            max_voltage: 140,
            min_voltage: 60,
            position_p_gain: 640,
        },
        ServoModel::Xm430W350 => ModelFacts {
            voltage_decivolt: 120,
            current_limit: 1193,
            velocity_limit: 200,
            temperature_limit: 80,
            max_voltage: 160,
            min_voltage: 95,
            position_p_gain: 800,
        },
        ServoModel::Xm540W270 => ModelFacts {
            voltage_decivolt: 120,
            current_limit: 2047,
            velocity_limit: 167,
            temperature_limit: 80,
            max_voltage: 160,
            min_voltage: 95,
            position_p_gain: 800,
        },
    }
}

/// Write a little-endian value of `size` bytes at `a` (truncating).
pub fn put(table: &mut [u8], a: u16, size: u16, value: i64) {
    let bytes = value.to_le_bytes();
    let start = usize::from(a);
    let n = usize::from(size).min(8);
    if let Some(dst) = table.get_mut(start..start + n) {
        dst.copy_from_slice(&bytes[..n]);
    }
}

/// Read a little-endian value of `size` bytes at `a`, sign-extended when `signed`.
pub fn get(table: &[u8], a: u16, size: u16, signed: bool) -> i64 {
    let start = usize::from(a);
    let n = usize::from(size).min(8);
    let Some(src) = table.get(start..start + n) else {
        return 0;
    };
    decode_le(src, signed)
}

/// Decode little-endian bytes (up to 8) as an integer.
pub fn decode_le(src: &[u8], signed: bool) -> i64 {
    let mut buf = [0u8; 8];
    let n = src.len().min(8);
    buf[..n].copy_from_slice(&src[..n]);
    if signed && n > 0 && n < 8 && src[n - 1] & 0x80 != 0 {
        for b in buf.iter_mut().skip(n) {
            *b = 0xFF;
        }
    }
    i64::from_le_bytes(buf)
}

/// The table as the servo comes out of the box (EEPROM) after power-on (RAM).
/// Departures from factory values, for a ready-to-use emulated arm: Baud_Rate 3 (1 Mbps)
/// and Return_Delay_Time 0, as a configured arm has them.
pub fn factory_table(id: u8, model: ServoModel, firmware: u8) -> [u8; TABLE_LEN] {
    let f = model_facts(model);
    let mut t = [0u8; TABLE_LEN];
    put(&mut t, addr::MODEL_NUMBER, 2, i64::from(model.number()));
    put(&mut t, addr::FIRMWARE_VERSION, 1, i64::from(firmware));
    put(&mut t, addr::ID, 1, i64::from(id));
    put(&mut t, addr::BAUD_RATE, 1, 3);
    put(&mut t, addr::RETURN_DELAY_TIME, 1, 0);
    put(&mut t, addr::OPERATING_MODE, 1, 3);
    put(&mut t, addr::SECONDARY_ID, 1, 255);
    put(&mut t, addr::PROTOCOL_TYPE, 1, 2);
    put(&mut t, addr::MOVING_THRESHOLD, 4, 10);
    put(
        &mut t,
        addr::TEMPERATURE_LIMIT,
        1,
        i64::from(f.temperature_limit),
    );
    put(&mut t, addr::MAX_VOLTAGE_LIMIT, 2, i64::from(f.max_voltage));
    put(&mut t, addr::MIN_VOLTAGE_LIMIT, 2, i64::from(f.min_voltage));
    put(&mut t, addr::PWM_LIMIT, 2, 885);
    put(&mut t, addr::CURRENT_LIMIT, 2, i64::from(f.current_limit));
    put(&mut t, addr::VELOCITY_LIMIT, 4, i64::from(f.velocity_limit));
    put(&mut t, addr::MAX_POSITION_LIMIT, 4, 4095);
    put(&mut t, addr::MIN_POSITION_LIMIT, 4, 0);
    put(&mut t, addr::SHUTDOWN, 1, 52);
    reset_ram(&mut t, model);
    t
}

/// Power-on values of the RAM area (addresses 64 and up); Goal_Position is set by the caller.
pub fn reset_ram(t: &mut [u8; TABLE_LEN], model: ServoModel) {
    let f = model_facts(model);
    for b in t.iter_mut().skip(usize::from(EEPROM_END)) {
        *b = 0;
    }
    put(t, addr::STATUS_RETURN_LEVEL, 1, 2);
    put(t, addr::VELOCITY_I_GAIN, 2, 1000);
    put(t, addr::VELOCITY_P_GAIN, 2, 100);
    put(t, addr::POSITION_P_GAIN, 2, i64::from(f.position_p_gain));
    put(t, addr::GOAL_PWM, 2, 885);
    put(t, addr::GOAL_CURRENT, 2, i64::from(f.current_limit));
    put(
        t,
        addr::PRESENT_INPUT_VOLTAGE,
        2,
        i64::from(f.voltage_decivolt),
    );
    put(t, addr::PRESENT_TEMPERATURE, 1, 28);
}
