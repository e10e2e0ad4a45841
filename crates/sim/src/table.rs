//! The emulated servos' control table: factory and power-on values, and per-model facts.

use intervened_robot::ServoModel;

// The map itself (addresses, widths, access, write ranges) is declared once, in
// `intervened-dxl-proto`; this module adds the emulator's defaults and physics facts.
pub use intervened_dxl_proto::control_table::{decode_le, Access, Register};
use intervened_dxl_proto::x_series as x;
pub use intervened_dxl_proto::x_series::{
    addr, register_at, EEPROM_END, EXTENDED_GOAL_RANGE, REGISTERS, TABLE_LEN,
};

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

/// The table as the servo comes out of the box (EEPROM) after power-on (RAM).
/// Departures from factory values, for a ready-to-use emulated arm: Baud_Rate 3 (1 Mbps)
/// and Return_Delay_Time 0, as a configured arm has them.
pub fn factory_table(id: u8, model: ServoModel, firmware: u8) -> [u8; TABLE_LEN] {
    let f = model_facts(model);
    let mut t = [0u8; TABLE_LEN];
    x::MODEL_NUMBER.reg.put(&mut t, i64::from(model.number()));
    x::FIRMWARE_VERSION.reg.put(&mut t, i64::from(firmware));
    x::ID.reg.put(&mut t, i64::from(id));
    x::BAUD_RATE.reg.put(&mut t, 3);
    x::RETURN_DELAY_TIME.reg.put(&mut t, 0);
    x::OPERATING_MODE.reg.put(&mut t, 3);
    x::SECONDARY_ID.reg.put(&mut t, 255);
    x::PROTOCOL_TYPE.reg.put(&mut t, 2);
    x::MOVING_THRESHOLD.reg.put(&mut t, 10);
    x::TEMPERATURE_LIMIT
        .reg
        .put(&mut t, i64::from(f.temperature_limit));
    x::MAX_VOLTAGE_LIMIT
        .reg
        .put(&mut t, i64::from(f.max_voltage));
    x::MIN_VOLTAGE_LIMIT
        .reg
        .put(&mut t, i64::from(f.min_voltage));
    x::PWM_LIMIT.reg.put(&mut t, 885);
    x::CURRENT_LIMIT.reg.put(&mut t, i64::from(f.current_limit));
    x::VELOCITY_LIMIT
        .reg
        .put(&mut t, i64::from(f.velocity_limit));
    x::MAX_POSITION_LIMIT.reg.put(&mut t, 4095);
    x::MIN_POSITION_LIMIT.reg.put(&mut t, 0);
    x::SHUTDOWN.reg.put(&mut t, 52);
    reset_ram(&mut t, model);
    t
}

/// Power-on values of the RAM area (addresses 64 and up); Goal_Position is set by the caller.
pub fn reset_ram(t: &mut [u8; TABLE_LEN], model: ServoModel) {
    let f = model_facts(model);
    for b in t.iter_mut().skip(usize::from(EEPROM_END)) {
        *b = 0;
    }
    x::STATUS_RETURN_LEVEL.reg.put(t, 2);
    x::VELOCITY_I_GAIN.reg.put(t, 1000);
    x::VELOCITY_P_GAIN.reg.put(t, 100);
    x::POSITION_P_GAIN.reg.put(t, i64::from(f.position_p_gain));
    x::GOAL_PWM.reg.put(t, 885);
    x::GOAL_CURRENT.reg.put(t, i64::from(f.current_limit));
    x::PRESENT_INPUT_VOLTAGE
        .reg
        .put(t, i64::from(f.voltage_decivolt));
    x::PRESENT_TEMPERATURE.reg.put(t, 28);
}
