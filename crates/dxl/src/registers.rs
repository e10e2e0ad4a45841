//! X-series control table addresses (Protocol 2.0) that this crate touches. The map is
//! declared once, in `intervened-dxl-proto`; these are its plain addresses and blocks, under
//! the names the bus code uses.

pub use intervened_dxl_proto::x_series::addr::*;
pub use intervened_dxl_proto::x_series::hardware_error::{
    names as hardware_error_names, ELECTRICAL_SHOCK as HW_ELECTRICAL_SHOCK,
    INPUT_VOLTAGE as HW_INPUT_VOLTAGE, MOTOR_ENCODER as HW_MOTOR_ENCODER,
    OVERHEATING as HW_OVERHEATING, OVERLOAD as HW_OVERLOAD,
};
pub use intervened_dxl_proto::x_series::{MOTION_BLOCK, POWER_BLOCK};

/// Name of a Protocol 2.0 status error number (the low 7 bits of the error byte).
pub use intervened_dxl_proto::packet::status_error::name as servo_error_name;
