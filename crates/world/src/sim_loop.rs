//! A minimal stand-in for the servos around the world, for closed-loop tests and fast offline
//! rollouts without the daemon: first-order servos (the emulator's dynamics). The gamepad
//! path is the teleop crate's own (`Mapping`, `TeleopIntegrator`), not a stand-in.

use intervened_robot::RobotConfig;

/// First-order position servos with a velocity limit: each tick every joint moves
/// `(goal - q) (1 - exp(-dt / tau))`, capped at `max_velocity * dt`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstOrderServos {
    pub time_constant_s: f64,
    pub max_velocity: f64,
}

impl FirstOrderServos {
    /// `[sim] servo_time_constant_s` and `servo_max_velocity`.
    pub fn from_config(cfg: &RobotConfig) -> Self {
        Self {
            time_constant_s: cfg.sim.servo_time_constant_s,
            max_velocity: cfg.sim.servo_max_velocity,
        }
    }

    /// Advances `q` towards `goal` by `dt` seconds (joints beyond the shorter slice are left).
    pub fn step(&self, q: &mut [f64], goal: &[f64], dt: f64) {
        let frac = if self.time_constant_s > 0.0 {
            1.0 - (-dt / self.time_constant_s).exp()
        } else {
            1.0
        };
        let cap = self.max_velocity * dt;
        for (qi, gi) in q.iter_mut().zip(goal) {
            *qi += ((gi - *qi) * frac).clamp(-cap, cap);
        }
    }
}
