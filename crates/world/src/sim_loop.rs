//! Minimal stand-ins for the parts around the world, for closed-loop tests and fast offline
//! rollouts without the daemon: first-order servos (the emulator's dynamics) and the gamepad
//! mapping integrated into absolute joint goals (what the teleop path does).

use intervened_robot::{Axis, RobotConfig};

use crate::error::WorldError;

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

/// How the teleop path treats deflections inside the deadzone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadzoneStyle {
    /// Below the deadzone reads 0, above it passes unchanged.
    Cut,
    /// Below reads 0, above is rescaled so the output runs 0..1 continuously.
    Rescale,
}

/// Integrates gamepad deflections into absolute joint goals:
/// `goal += deflection * rad_per_s * speed_scale * dt`, starting from the measured joints at
/// [`TeleopIntegrator::begin`], clamped to the joint limits.
#[derive(Debug, Clone)]
pub struct TeleopIntegrator {
    /// (axis, joint index, rad/s at full deflection)
    map: Vec<(Axis, usize, f64)>,
    speed_scale: f64,
    deadzone: f64,
    style: DeadzoneStyle,
    limits: Vec<[f64; 2]>,
    goal: Vec<f64>,
}

impl TeleopIntegrator {
    pub fn from_config(cfg: &RobotConfig, style: DeadzoneStyle) -> Self {
        let map = cfg
            .teleop
            .axes
            .iter()
            .filter_map(|m| {
                let j = cfg.joints.iter().position(|j| j.name == m.joint)?;
                Some((m.axis, j, m.rad_per_s))
            })
            .collect();
        Self {
            map,
            speed_scale: cfg.teleop.speed_scale,
            deadzone: cfg.teleop.deadzone,
            style,
            limits: cfg.joints.iter().map(|j| j.limits).collect(),
            goal: cfg.joints.iter().map(|_| 0.0).collect(),
        }
    }

    /// Starts integrating from the measured joints (at takeover).
    pub fn begin(&mut self, q_measured: &[f64]) -> Result<(), WorldError> {
        if q_measured.len() != self.goal.len() {
            return Err(WorldError::JointCount {
                expected: self.goal.len(),
                got: q_measured.len(),
            });
        }
        self.goal.copy_from_slice(q_measured);
        Ok(())
    }

    /// Applies one tick of deflections and returns the new goals.
    pub fn apply(&mut self, axes: &[(Axis, f64)], dt: f64) -> &[f64] {
        for (axis, raw) in axes {
            let d = self.shape(*axis, *raw);
            for (a, j, rate) in &self.map {
                if a == axis {
                    if let Some(g) = self.goal.get_mut(*j) {
                        *g += d * rate * self.speed_scale * dt;
                    }
                }
            }
        }
        for (g, [lo, hi]) in self.goal.iter_mut().zip(&self.limits) {
            *g = g.clamp(*lo, *hi);
        }
        &self.goal
    }

    pub fn goal(&self) -> &[f64] {
        &self.goal
    }

    fn shape(&self, axis: Axis, raw: f64) -> f64 {
        let d = if !raw.is_finite() {
            0.0
        } else if matches!(axis, Axis::LeftTrigger | Axis::RightTrigger) {
            raw.clamp(0.0, 1.0)
        } else {
            raw.clamp(-1.0, 1.0)
        };
        if d.abs() < self.deadzone {
            return 0.0;
        }
        match self.style {
            DeadzoneStyle::Cut => d,
            DeadzoneStyle::Rescale => {
                d.signum() * (d.abs() - self.deadzone) / (1.0 - self.deadzone)
            }
        }
    }
}
