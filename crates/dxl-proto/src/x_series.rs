//! The X-series control table (Protocol 2.0): XL330, XL430, XM430 and XM540 share this
//! layout for every item modelled here. Indirect addressing (168 and up) is left out.

use crate::control_table::Block;

/// Extended-position range of Goal_Position (operating modes 4 and 5).
pub const EXTENDED_GOAL_RANGE: i64 = 1_048_575;

crate::control_table! {
    MODEL_NUMBER = 0: u16, R, "Model_Number";
    MODEL_INFORMATION = 2: u32, R, "Model_Information";
    FIRMWARE_VERSION = 6: u8, R, "Firmware_Version";
    ID = 7: u8, RW(0, 252), "ID";
    BAUD_RATE = 8: u8, RW(0, 7), "Baud_Rate";
    RETURN_DELAY_TIME = 9: u8, RW(0, 254), "Return_Delay_Time";
    DRIVE_MODE = 10: u8, RW(0, 13), "Drive_Mode";
    OPERATING_MODE = 11: u8, RW(0, 16), "Operating_Mode";
    SECONDARY_ID = 12: u8, RW(0, 255), "Secondary_ID";
    PROTOCOL_TYPE = 13: u8, RW(1, 2), "Protocol_Type";
    HOMING_OFFSET = 20: i32, RW(-1_044_479, 1_044_479), "Homing_Offset";
    MOVING_THRESHOLD = 24: u32, RW(0, 1023), "Moving_Threshold";
    TEMPERATURE_LIMIT = 31: u8, RW(0, 100), "Temperature_Limit";
    MAX_VOLTAGE_LIMIT = 32: u16, RW(31, 160), "Max_Voltage_Limit";
    MIN_VOLTAGE_LIMIT = 34: u16, RW(31, 160), "Min_Voltage_Limit";
    PWM_LIMIT = 36: u16, RW(0, 885), "PWM_Limit";
    CURRENT_LIMIT = 38: u16, RW(0, 2047), "Current_Limit";
    VELOCITY_LIMIT = 44: u32, RW(0, 2047), "Velocity_Limit";
    MAX_POSITION_LIMIT = 48: u32, RW(0, 4095), "Max_Position_Limit";
    MIN_POSITION_LIMIT = 52: u32, RW(0, 4095), "Min_Position_Limit";
    STARTUP_CONFIGURATION = 60: u8, RW(0, 3), "Startup_Configuration";
    SHUTDOWN = 63: u8, RW(0, 255), "Shutdown";
    TORQUE_ENABLE = 64: u8, RW(0, 1), "Torque_Enable";
    LED = 65: u8, RW(0, 1), "LED";
    STATUS_RETURN_LEVEL = 68: u8, RW(0, 2), "Status_Return_Level";
    REGISTERED_INSTRUCTION = 69: u8, R, "Registered_Instruction";
    HARDWARE_ERROR_STATUS = 70: u8, R, "Hardware_Error_Status";
    VELOCITY_I_GAIN = 76: u16, RW(0, 16383), "Velocity_I_Gain";
    VELOCITY_P_GAIN = 78: u16, RW(0, 16383), "Velocity_P_Gain";
    POSITION_D_GAIN = 80: u16, RW(0, 16383), "Position_D_Gain";
    POSITION_I_GAIN = 82: u16, RW(0, 16383), "Position_I_Gain";
    POSITION_P_GAIN = 84: u16, RW(0, 16383), "Position_P_Gain";
    FEEDFORWARD_2ND_GAIN = 88: u16, RW(0, 16383), "Feedforward_2nd_Gain";
    FEEDFORWARD_1ST_GAIN = 90: u16, RW(0, 16383), "Feedforward_1st_Gain";
    BUS_WATCHDOG = 98: u8, RW(0, 127), "Bus_Watchdog";
    GOAL_PWM = 100: i16, RW(-885, 885), "Goal_PWM";
    GOAL_CURRENT = 102: i16, RW(-2047, 2047), "Goal_Current";
    GOAL_VELOCITY = 104: i32, RW(-2047, 2047), "Goal_Velocity";
    PROFILE_ACCELERATION = 108: u32, RW(0, 32767), "Profile_Acceleration";
    PROFILE_VELOCITY = 112: u32, RW(0, 32767), "Profile_Velocity";
    GOAL_POSITION = 116: i32, RW(-EXTENDED_GOAL_RANGE, EXTENDED_GOAL_RANGE), "Goal_Position";
    REALTIME_TICK = 120: u16, R, "Realtime_Tick";
    MOVING = 122: u8, R, "Moving";
    MOVING_STATUS = 123: u8, R, "Moving_Status";
    PRESENT_PWM = 124: i16, R, "Present_PWM";
    PRESENT_CURRENT = 126: i16, R, "Present_Current";
    PRESENT_VELOCITY = 128: i32, R, "Present_Velocity";
    PRESENT_POSITION = 132: i32, R, "Present_Position";
    VELOCITY_TRAJECTORY = 136: i32, R, "Velocity_Trajectory";
    POSITION_TRAJECTORY = 140: i32, R, "Position_Trajectory";
    PRESENT_INPUT_VOLTAGE = 144: u16, R, "Present_Input_Voltage";
    PRESENT_TEMPERATURE = 146: u8, R, "Present_Temperature";
    BACKUP_READY = 147: u8, R, "Backup_Ready";
}

/// Addresses below this are EEPROM: writable only while torque is off.
pub const EEPROM_END: u16 = TORQUE_ENABLE.addr();

/// Bytes from Model_Number to the end of Backup_Ready: the table without indirect addressing.
pub const TABLE_LEN: usize = BACKUP_READY.reg.end() as usize;

/// Present_Current, Present_Velocity and Present_Position: the per-tick read.
pub const MOTION_BLOCK: Block = Block::spanning(PRESENT_CURRENT.reg, PRESENT_POSITION.reg);

/// Present_Input_Voltage and Present_Temperature: the health read.
pub const POWER_BLOCK: Block = Block::spanning(PRESENT_INPUT_VOLTAGE.reg, PRESENT_TEMPERATURE.reg);

/// Hardware_Error_Status bits (X-series e-manual).
pub mod hardware_error {
    pub const INPUT_VOLTAGE: u8 = 1 << 0;
    pub const OVERHEATING: u8 = 1 << 2;
    pub const MOTOR_ENCODER: u8 = 1 << 3;
    pub const ELECTRICAL_SHOCK: u8 = 1 << 4;
    pub const OVERLOAD: u8 = 1 << 5;

    /// Human-readable names of the set bits.
    pub fn names(bits: u8) -> String {
        let names = [
            (INPUT_VOLTAGE, "input voltage"),
            (OVERHEATING, "overheating"),
            (MOTOR_ENCODER, "motor encoder"),
            (ELECTRICAL_SHOCK, "electrical shock"),
            (OVERLOAD, "overload"),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_table::Access;

    #[test]
    fn table_is_sorted_and_does_not_overlap() {
        for w in REGISTERS.windows(2) {
            assert!(
                w[0].end() <= w[1].addr,
                "{} overlaps {}",
                w[0].name,
                w[1].name
            );
        }
        assert_eq!(TABLE_LEN, 148);
        assert_eq!(EEPROM_END, 64);
    }

    #[test]
    fn blocks_match_the_e_manual() {
        assert_eq!((MOTION_BLOCK.addr, MOTION_BLOCK.len), (126, 10));
        assert_eq!((POWER_BLOCK.addr, POWER_BLOCK.len), (144, 3));
    }

    #[test]
    fn typed_registers_carry_width_sign_and_range() {
        assert_eq!((GOAL_POSITION.size(), GOAL_POSITION.reg.signed), (4, true));
        assert_eq!(GOAL_POSITION.reg.min, -EXTENDED_GOAL_RANGE);
        assert_eq!(PRESENT_CURRENT.reg.access, Access::ReadOnly);
        assert_eq!(register_at(134).map(|r| r.name), Some("Present_Position"));
        assert_eq!(register_at(150), None);
        assert_eq!(addr::GOAL_POSITION, 116);
    }

    #[test]
    fn decodes_inside_a_block() {
        // Present_Current -2, Present_Velocity 300, Present_Position -131073.
        let mut b = Vec::new();
        b.extend_from_slice(&(-2i16).to_le_bytes());
        b.extend_from_slice(&300i32.to_le_bytes());
        b.extend_from_slice(&(-131_073i32).to_le_bytes());
        let at = MOTION_BLOCK.addr;
        assert_eq!(PRESENT_CURRENT.decode_in(&b, at), Some(-2));
        assert_eq!(PRESENT_VELOCITY.decode_in(&b, at), Some(300));
        assert_eq!(PRESENT_POSITION.decode_in(&b, at), Some(-131_073));
        assert_eq!(PRESENT_POSITION.decode_in(&b[..9], at), None);
        assert_eq!(PRESENT_POSITION.decode_in(&b, 140), None);
        assert_eq!(GOAL_POSITION.encode(512), vec![0, 2, 0, 0]);
    }

    #[test]
    fn untyped_get_and_put_sign_extend() {
        let mut t = [0u8; TABLE_LEN];
        PRESENT_CURRENT.reg.put(&mut t, -5);
        assert_eq!(PRESENT_CURRENT.reg.get(&t), -5);
        PRESENT_INPUT_VOLTAGE.reg.put(&mut t, 0xFFFF);
        assert_eq!(PRESENT_INPUT_VOLTAGE.reg.get(&t), 0xFFFF);
    }

    #[test]
    fn hardware_error_names_read_well() {
        assert_eq!(hardware_error::names(0), "none");
        assert_eq!(
            hardware_error::names(hardware_error::OVERHEATING | hardware_error::OVERLOAD),
            "overheating, overload"
        );
        assert_eq!(hardware_error::names(0x40), "unknown bits 0x40");
    }
}
