#![allow(dead_code)]

use std::path::Path;

use intervened_robot::RobotConfig;
use intervened_teleop::{GamepadSource, TeleopController, TickOutput, VirtualGamepad};

pub const KOCH: &str = include_str!("../../../../robot-configs/koch-v1.1.toml");
pub const DT: f64 = 0.02;

pub fn koch() -> RobotConfig {
    RobotConfig::parse(KOCH, Path::new("koch-v1.1.toml")).unwrap()
}

pub fn koch_controller() -> TeleopController {
    TeleopController::from_robot_config(&koch()).unwrap()
}

pub fn joint(cfg: &RobotConfig, name: &str) -> usize {
    cfg.joints.iter().position(|j| j.name == name).unwrap()
}

/// One tick against the virtual pad: drains its events, sends acks to it.
pub fn tick(c: &mut TeleopController, pad: &VirtualGamepad, q: &[f64]) -> TickOutput {
    c.tick_source(pad as &dyn GamepadSource, q, DT)
}
