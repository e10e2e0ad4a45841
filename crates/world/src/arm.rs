//! Koch v1.1 follower kinematics.
//!
//! # Frame, zero pose and signs
//!
//! World frame: origin on the table under the base, `x` forward, `y` to the left, `z` up;
//! the table is the plane `z = 0`. Link lengths come from `SimConfig::links_m` =
//! `[h0 base height, l1 upper arm, l2 forearm, l3 wrist-to-fingertip]`.
//!
//! **Zero pose (`q = 0`)**: the upper arm points straight up, the forearm points straight
//! forward (horizontal, along `+x`) and the wrist-to-fingertip link hangs straight down. The
//! fingertip centre is then at `(l2, 0, h0 + l1 - l3)` (10 cm forward, 5.8 cm above the table
//! with the Koch lengths) with the tool pointing at the table. This "L with a hanging wrist"
//! keeps every pose of the pick task (block 9-17 cm out, lifted 10 cm) within about half of
//! each joint's range, whereas a straight-up zero pushes `wrist_flex` past its 1.8 rad limit
//! when lifting.
//!
//! **Signs** (right-hand rule):
//! - `shoulder_pan`: yaw about `+z`; positive turns the arm from `+x` towards `+y` (left).
//! - `shoulder_lift`, `elbow_flex`, `wrist_flex`: pitches about the arm plane's normal
//!   (`+y` at pan 0). Positive tilts the upper arm forward and the forearm down; all three
//!   share that sense, so the tool's angle is their sum.
//! - `wrist_roll`: roll about the last link; it turns the jaws but does not move the tip.
//! - `gripper`: jaw opening angle, 0 = closed, larger = open.
//!
//! **Tool pitch** ([`TipPose::pitch`]): the angle of the wrist-to-fingertip link below the
//! horizontal, `pitch = q_lift + q_elbow + q_wrist + pi/2`; [`PITCH_DOWN`] (`pi/2`) is pointing
//! straight down, 0 is pointing straight forward.
//!
//! **Jaws**: each jaw is a [`FINGER_M`] long finger hinged at the wrist; the gap between the
//! fingertips is `2 FINGER_M sin(opening / 2)` (5.4 cm fully open at 1.5 rad).

use std::f64::consts::{FRAC_PI_2, PI};

use intervened_robot::RobotConfig;

use crate::error::{IkError, WorldError};

/// Tool pitch of a tool pointing straight down at the table.
pub const PITCH_DOWN: f64 = FRAC_PI_2;

/// Length of one gripper jaw (hinge to fingertip), metres.
pub const FINGER_M: f64 = 0.04;

/// Names of the four joints that place the tip, in [`ArmModel::ik`] output order.
pub const ARM_JOINTS: [&str; 4] = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex"];

/// The fingertip centre and the tool pitch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TipPose {
    /// Fingertip centre (midway between the jaw tips), metres, world frame.
    pub pos: [f64; 3],
    /// Tool angle below the horizontal, rad ([`PITCH_DOWN`] = pointing straight down).
    pub pitch: f64,
}

/// Where each modelled joint sits in the config's joint order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JointIndex {
    pub shoulder_pan: usize,
    pub shoulder_lift: usize,
    pub elbow_flex: usize,
    pub wrist_flex: usize,
    /// Optional: an arm without wrist roll works the same.
    pub wrist_roll: Option<usize>,
    pub gripper: usize,
}

impl JointIndex {
    /// The four tip-placing joints in [`ARM_JOINTS`] order.
    pub fn arm(&self) -> [usize; 4] {
        [
            self.shoulder_pan,
            self.shoulder_lift,
            self.elbow_flex,
            self.wrist_flex,
        ]
    }
}

/// Analytic kinematics of the Koch follower, bound to one config's joint order and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmModel {
    links: [f64; 4],
    index: JointIndex,
    limits: Vec<[f64; 2]>,
}

fn find(cfg: &RobotConfig, name: &'static str) -> Result<usize, WorldError> {
    cfg.joints
        .iter()
        .position(|j| j.name == name)
        .ok_or(WorldError::MissingJoint { name })
}

/// Wraps an angle into (-pi, pi].
fn wrap(a: f64) -> f64 {
    let mut a = a % (2.0 * PI);
    if a <= -PI {
        a += 2.0 * PI;
    } else if a > PI {
        a -= 2.0 * PI;
    }
    a
}

impl ArmModel {
    /// Binds the model to a config: finds the joints by name (the gripper by its `gripper`
    /// flag, else by name) and takes the link lengths from `[sim] links_m`.
    pub fn from_config(cfg: &RobotConfig) -> Result<Self, WorldError> {
        let gripper = match cfg.joints.iter().position(|j| j.gripper) {
            Some(i) => i,
            None => find(cfg, "gripper")?,
        };
        let index = JointIndex {
            shoulder_pan: find(cfg, "shoulder_pan")?,
            shoulder_lift: find(cfg, "shoulder_lift")?,
            elbow_flex: find(cfg, "elbow_flex")?,
            wrist_flex: find(cfg, "wrist_flex")?,
            wrist_roll: cfg.joints.iter().position(|j| j.name == "wrist_roll"),
            gripper,
        };
        let links = cfg.sim.links_m;
        if links.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(WorldError::BadParam {
                name: "sim.links_m",
                problem: format!("{links:?} must all be positive"),
            });
        }
        Ok(Self {
            links,
            index,
            limits: cfg.joints.iter().map(|j| j.limits).collect(),
        })
    }

    /// `[h0, l1, l2, l3]` in metres.
    pub fn links(&self) -> [f64; 4] {
        self.links
    }

    pub fn index(&self) -> JointIndex {
        self.index
    }

    /// Number of joints in the config (length of every `q`).
    pub fn joint_count(&self) -> usize {
        self.limits.len()
    }

    /// Joint limits `[min, max]` in config order.
    pub fn limits(&self) -> &[[f64; 2]] {
        &self.limits
    }

    /// Checks length and finiteness of a config-order joint vector.
    pub fn check(&self, q: &[f64]) -> Result<(), WorldError> {
        if q.len() != self.limits.len() {
            return Err(WorldError::JointCount {
                expected: self.limits.len(),
                got: q.len(),
            });
        }
        if q.iter().any(|v| !v.is_finite()) {
            return Err(WorldError::NonFinite {
                what: "joint position",
            });
        }
        Ok(())
    }

    /// The four tip-placing joint angles out of a config-order vector.
    pub fn arm_angles(&self, q: &[f64]) -> Result<[f64; 4], WorldError> {
        self.check(q)?;
        let mut out = [0.0; 4];
        for (o, i) in out.iter_mut().zip(self.index.arm()) {
            *o = q.get(i).copied().unwrap_or(0.0);
        }
        Ok(out)
    }

    /// The gripper opening out of a config-order vector.
    pub fn gripper(&self, q: &[f64]) -> Result<f64, WorldError> {
        self.check(q)?;
        Ok(q.get(self.index.gripper).copied().unwrap_or(0.0))
    }

    /// Forward kinematics of the four tip-placing joints.
    pub fn fk_arm(&self, a: &[f64; 4]) -> TipPose {
        let [h0, l1, l2, l3] = self.links;
        let [pan, q1, q2, q3] = *a;
        let s12 = q1 + q2;
        let s123 = s12 + q3;
        let r = l1 * q1.sin() + l2 * s12.cos() - l3 * s123.sin();
        let z = h0 + l1 * q1.cos() - l2 * s12.sin() - l3 * s123.cos();
        TipPose {
            pos: [r * pan.cos(), r * pan.sin(), z],
            pitch: s123 + FRAC_PI_2,
        }
    }

    /// Forward kinematics of a config-order joint vector.
    pub fn fk(&self, q: &[f64]) -> Result<TipPose, WorldError> {
        Ok(self.fk_arm(&self.arm_angles(q)?))
    }

    /// Analytic inverse kinematics for the fingertip centre at `target` with the tool at
    /// `pitch` (see [`TipPose::pitch`]); elbow-up solution. Returns the four tip-placing
    /// joints in [`ARM_JOINTS`] order, checked against the config's limits.
    pub fn ik(&self, target: [f64; 3], pitch: f64) -> Result<[f64; 4], IkError> {
        if target.iter().any(|v| !v.is_finite()) || !pitch.is_finite() {
            return Err(IkError::NonFinite);
        }
        let [h0, l1, l2, l3] = self.links;
        let [x, y, z] = target;
        let r = x.hypot(y);
        // Straight above the base the yaw is free: keep it at 0.
        let pan = if r < 1e-12 { 0.0 } else { y.atan2(x) };
        // Wrist point in the arm plane, relative to the shoulder.
        let a = r - l3 * pitch.cos();
        let b = z + l3 * pitch.sin() - h0;
        let d2 = a * a + b * b;
        let c = (d2 - l1 * l1 - l2 * l2) / (2.0 * l1 * l2);
        if !(-1.0 - 1e-12..=1.0 + 1e-12).contains(&c) {
            return Err(IkError::OutOfReach {
                distance_m: d2.sqrt(),
                min_m: (l1 - l2).abs(),
                max_m: l1 + l2,
            });
        }
        // gamma: forearm direction relative to the upper arm, positive = elbow up.
        let gamma = c.clamp(-1.0, 1.0).acos();
        let theta1 = a.atan2(b) - (l2 * gamma.sin()).atan2(l1 + l2 * gamma.cos());
        let q1 = wrap(theta1);
        let q2 = gamma - FRAC_PI_2;
        let q3 = wrap(pitch - FRAC_PI_2 - q1 - q2);
        let out = [pan, q1, q2, q3];
        for ((v, i), name) in out.iter().zip(self.index.arm()).zip(ARM_JOINTS) {
            if let Some([lo, hi]) = self.limits.get(i).copied() {
                if *v < lo || *v > hi {
                    return Err(IkError::JointLimit {
                        joint: name,
                        value: *v,
                        min: lo,
                        max: hi,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A config-order vector: the four arm joints, wrist roll and gripper set, every other
    /// joint copied from `rest` (missing entries become 0); clamped to the limits.
    pub fn compose(&self, arm: [f64; 4], wrist_roll: f64, gripper: f64, rest: &[f64]) -> Vec<f64> {
        let mut q: Vec<f64> = (0..self.limits.len())
            .map(|i| rest.get(i).copied().unwrap_or(0.0))
            .collect();
        for (v, i) in arm.iter().zip(self.index.arm()) {
            if let Some(slot) = q.get_mut(i) {
                *slot = *v;
            }
        }
        if let Some(slot) = self.index.wrist_roll.and_then(|i| q.get_mut(i)) {
            *slot = wrist_roll;
        }
        if let Some(slot) = q.get_mut(self.index.gripper) {
            *slot = gripper;
        }
        self.clamp(&mut q);
        q
    }

    /// Clamps a config-order vector into the joint limits.
    pub fn clamp(&self, q: &mut [f64]) {
        for (v, [lo, hi]) in q.iter_mut().zip(self.limits.iter()) {
            *v = v.clamp(*lo, *hi);
        }
    }

    /// The gripper's opening limits `[min, max]`.
    pub fn gripper_limits(&self) -> [f64; 2] {
        self.limits
            .get(self.index.gripper)
            .copied()
            .unwrap_or([0.0, 1.5])
    }

    /// Gap between the fingertips at a gripper opening, metres.
    pub fn jaw_gap(&self, opening: f64) -> f64 {
        2.0 * FINGER_M * (opening.max(0.0) / 2.0).sin()
    }

    /// The opening at which closing jaws meet an object of this width, or `None` when it
    /// does not fit between fully opened jaws.
    pub fn contact_opening(&self, width_m: f64) -> Option<f64> {
        let s = width_m / (2.0 * FINGER_M);
        if !(0.0..1.0).contains(&s) {
            return None;
        }
        let g = 2.0 * s.asin();
        (g < self.gripper_limits()[1]).then_some(g)
    }
}
