//! Pad state -> per-joint velocity commands (rad/s), and the printable mapping table.

use std::fmt;

use intervened_robot::{Axis, Button, TakeoverMode, TeleopConfig};

use crate::error::TeleopError;
use crate::names::{axis_name, button_name};
use crate::state::PadState;

/// One resolved axis mapping: the axis drives joint `joint` (index) at `rad_per_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResolvedAxis {
    pub axis: Axis,
    pub joint: usize,
    pub rad_per_s: f64,
}

/// The gamepad mapping of one arm, resolved against its joint order.
#[derive(Debug, Clone)]
pub struct Mapping {
    joints: Vec<String>,
    axes: Vec<ResolvedAxis>,
    cfg: TeleopConfig,
}

impl Mapping {
    /// Resolves `cfg.axes` against the arm's joints (config order).
    pub fn new(cfg: &TeleopConfig, joint_names: &[String]) -> Result<Self, TeleopError> {
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if !finite_pos(cfg.speed_scale) || !finite_pos(cfg.fine_scale) {
            return Err(TeleopError::Config(format!(
                "speed_scale ({}) and fine_scale ({}) must be positive numbers",
                cfg.speed_scale, cfg.fine_scale
            )));
        }
        if !(cfg.deadzone.is_finite() && (0.0..1.0).contains(&cfg.deadzone)) {
            return Err(TeleopError::Config(format!(
                "deadzone {} is outside [0, 1)",
                cfg.deadzone
            )));
        }
        let mut axes = Vec::with_capacity(cfg.axes.len());
        for m in &cfg.axes {
            let joint = joint_names
                .iter()
                .position(|j| *j == m.joint)
                .ok_or_else(|| TeleopError::UnknownJoint {
                    axis: axis_name(m.axis),
                    joint: m.joint.clone(),
                    known: joint_names.to_vec(),
                })?;
            if !m.rad_per_s.is_finite() {
                return Err(TeleopError::Config(format!(
                    "axis {} has a non-finite speed",
                    axis_name(m.axis)
                )));
            }
            axes.push(ResolvedAxis {
                axis: m.axis,
                joint,
                rad_per_s: m.rad_per_s,
            });
        }
        Ok(Self {
            joints: joint_names.to_vec(),
            axes,
            cfg: cfg.clone(),
        })
    }

    pub fn joint_count(&self) -> usize {
        self.joints.len()
    }

    pub fn axes(&self) -> &[ResolvedAxis] {
        &self.axes
    }

    pub fn config(&self) -> &TeleopConfig {
        &self.cfg
    }

    /// The speed multiplier in effect: `speed_scale`, times `fine_scale` while the fine
    /// button is held.
    pub fn scale(&self, pad: &PadState) -> f64 {
        let fine = if pad.is_pressed(self.cfg.fine_button) {
            self.cfg.fine_scale
        } else {
            1.0
        };
        self.cfg.speed_scale * fine
    }

    /// Joint velocities (rad/s, config order) the pad asks for. Axes driving the same joint
    /// add up (e.g. right trigger opens, left trigger closes the gripper).
    pub fn velocities(&self, pad: &PadState) -> Vec<f64> {
        let mut out = vec![0.0; self.joints.len()];
        self.velocities_into(pad, &mut out);
        out
    }

    /// As [`Mapping::velocities`], into a caller's buffer (no allocation on the tick path).
    /// Joints beyond the buffer's length are skipped.
    pub fn velocities_into(&self, pad: &PadState, out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        let scale = self.scale(pad);
        for m in &self.axes {
            let v = pad.axis_deadzoned(m.axis, self.cfg.deadzone);
            if let Some(slot) = out.get_mut(m.joint) {
                *slot += v * m.rad_per_s * scale;
            }
        }
    }
}

fn mode_text(m: TakeoverMode) -> &'static str {
    match m {
        TakeoverMode::Hold => "hold to drive, release to hand back",
        TakeoverMode::Toggle => "press to take over, press again to hand back",
    }
}

impl fmt::Display for Mapping {
    /// A table for `intervened doctor` and the startup log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cfg;
        writeln!(f, "{:<16} {:<16} {:>8}", "axis", "joint", "rad/s")?;
        for m in &self.axes {
            let joint = self.joints.get(m.joint).map_or("?", String::as_str);
            writeln!(
                f,
                "{:<16} {:<16} {:>+8.2}",
                axis_name(m.axis),
                joint,
                m.rad_per_s * c.speed_scale
            )?;
        }
        writeln!(
            f,
            "(deadzone {:.2}, radial on sticks; speed_scale {:.2} included)",
            c.deadzone, c.speed_scale
        )?;
        writeln!(f)?;
        writeln!(f, "{:<16} action", "button")?;
        let b = &c.buttons;
        let row = |f: &mut fmt::Formatter<'_>, btn: Button, what: String| {
            writeln!(f, "{:<16} {}", button_name(btn), what)
        };
        row(
            f,
            c.takeover_button,
            format!("takeover ({})", mode_text(c.takeover)),
        )?;
        row(
            f,
            c.fine_button,
            format!("fine mode while held (speeds x{:.2})", c.fine_scale),
        )?;
        row(f, b.start_episode, "start episode".into())?;
        row(f, b.success, "end episode: success".into())?;
        row(f, b.failure, "end episode: failure".into())?;
        row(f, b.discard, "discard episode".into())?;
        row(f, b.estop, "e-stop (latches)".into())?;
        writeln!(
            f,
            "{:<16} clear e-stop: hold {}, then press {}",
            format!("{}+{}", button_name(b.estop), button_name(b.clear_estop)),
            button_name(b.estop),
            button_name(b.clear_estop)
        )
    }
}
