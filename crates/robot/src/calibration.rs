//! Calibration: per joint a homing offset, a drive mode and a range, in LeRobot's JSON format
//! (`{motor: {id, drive_mode, homing_offset, range_min, range_max}}`), read unchanged.
//!
//! Conventions (the same as LeRobot's Dynamixel calibration):
//! - `raw` is what the servo reports in Present_Position with its own Homing_Offset register at 0.
//!   The daemon keeps that register at 0 and applies the offset here, so a swapped servo needs
//!   only the file.
//! - calibrated ticks `c = raw + homing_offset`; the middle pose reads 2048 (half a turn).
//! - joint angle `q = s * (c - 2048) * 2π / 4096`, with `s = +1` for drive mode 0 and `-1` for
//!   drive mode 1 (a reversed joint).
//! - `range_min`/`range_max` are calibrated ticks (`c`), as LeRobot records them.
//!
//! `raw -> q -> raw` is exact for every integer tick.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{OperatingMode, RobotConfig};
use crate::error::CalibrationError;

/// Encoder ticks in one turn on every X-series servo.
pub const TICKS_PER_TURN: i32 = 4096;
/// Calibrated tick value of the middle pose (joint angle 0).
pub const CENTER_TICKS: i32 = 2048;
/// The Homing_Offset register's range on X-series servos.
pub const MAX_HOMING_OFFSET: i32 = 1_044_479;
/// Extended position mode counts up to +-256 turns.
pub const MAX_EXTENDED_TICKS: i32 = 1_048_575;

const RAD_PER_TICK: f64 = 2.0 * PI / TICKS_PER_TURN as f64;

/// One joint's calibration, exactly LeRobot's fields.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JointCalibration {
    pub id: u8,
    pub drive_mode: u8,
    pub homing_offset: i32,
    pub range_min: i32,
    pub range_max: i32,
}

impl JointCalibration {
    /// A calibration that maps raw ticks 2048 to 0 rad over the full turn.
    pub fn identity(id: u8) -> Self {
        Self {
            id,
            drive_mode: 0,
            homing_offset: 0,
            range_min: 0,
            range_max: TICKS_PER_TURN - 1,
        }
    }

    fn sign(&self) -> f64 {
        if self.drive_mode == 1 {
            -1.0
        } else {
            1.0
        }
    }

    /// Raw servo ticks to joint radians.
    pub fn ticks_to_rad(&self, raw: i32) -> f64 {
        let c = raw as i64 + self.homing_offset as i64 - CENTER_TICKS as i64;
        self.sign() * c as f64 * RAD_PER_TICK
    }

    /// Joint radians to the nearest raw servo tick.
    pub fn rad_to_ticks(&self, q: f64) -> i32 {
        let c = (self.sign() * q / RAD_PER_TICK).round() as i64;
        (c + CENTER_TICKS as i64 - self.homing_offset as i64) as i32
    }

    /// A velocity in servo units (0.229 rev/min per unit) to rad/s, honouring the drive mode.
    pub fn velocity_to_rad_s(&self, units: i32) -> f64 {
        self.sign() * units as f64 * 0.229 * 2.0 * PI / 60.0
    }

    /// The calibrated range as a joint interval in radians, `[min, max]`.
    pub fn range_rad(&self) -> [f64; 2] {
        let a = self.sign() * (self.range_min - CENTER_TICKS) as f64 * RAD_PER_TICK;
        let b = self.sign() * (self.range_max - CENTER_TICKS) as f64 * RAD_PER_TICK;
        [a.min(b), a.max(b)]
    }
}

/// Calibration for every joint of an arm, in the config's joint order.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub joints: Vec<(String, JointCalibration)>,
}

impl Calibration {
    /// Reads a LeRobot-format calibration file and checks it against the config.
    pub fn load(path: &Path, config: &RobotConfig) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let config_file = config
                .source
                .as_deref()
                .unwrap_or(Path::new("CONFIG"))
                .display()
                .to_string();
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "run `intervened calibrate --config {config_file}` to create it, or set \
                     `calibration` in {config_file} to the file's path (relative to the config's directory)"
                )
            } else {
                "make the file readable by the user running intervened".to_string()
            };
            CalibrationError::Io {
                file: path.to_path_buf(),
                error: e,
                fix,
            }
        })?;
        Self::parse(&text, path, config)
    }

    /// Parses calibration JSON; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path, config: &RobotConfig) -> Result<Self, CalibrationError> {
        let map: BTreeMap<String, JointCalibration> =
            serde_json::from_str(text).map_err(|e| CalibrationError::Parse {
                file: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Self::from_map(map, path, config)
    }

    fn from_map(
        mut map: BTreeMap<String, JointCalibration>,
        path: &Path,
        config: &RobotConfig,
    ) -> Result<Self, CalibrationError> {
        let invalid = |key: String, problem: String, fix: String| CalibrationError::Invalid {
            file: path.to_path_buf(),
            key,
            problem,
            fix,
        };
        let mut joints = Vec::with_capacity(config.joints.len());
        for j in &config.joints {
            let Some(cal) = map.remove(&j.name) else {
                return Err(invalid(
                    j.name.clone(),
                    "is missing".into(),
                    format!(
                        "run `intervened calibrate --config {}` or add an entry for joint {:?}",
                        config
                            .source
                            .as_deref()
                            .unwrap_or(Path::new("CONFIG"))
                            .display(),
                        j.name
                    ),
                ));
            };
            if cal.id != j.id {
                return Err(invalid(
                    format!("{}.id", j.name),
                    format!(
                        "is {}, but the config gives joint {:?} servo id {}",
                        cal.id, j.name, j.id
                    ),
                    "recalibrate, or correct the id in the file or the config".into(),
                ));
            }
            if cal.drive_mode > 1 {
                return Err(invalid(
                    format!("{}.drive_mode", j.name),
                    format!("is {}", cal.drive_mode),
                    "use 0 (normal) or 1 (reversed)".into(),
                ));
            }
            if cal.homing_offset.abs() > MAX_HOMING_OFFSET {
                return Err(invalid(
                    format!("{}.homing_offset", j.name),
                    format!("{} is outside +-{MAX_HOMING_OFFSET}", cal.homing_offset),
                    "recalibrate this joint".into(),
                ));
            }
            let (lo, hi) = match j.mode {
                OperatingMode::ExtendedPosition => (-MAX_EXTENDED_TICKS, MAX_EXTENDED_TICKS),
                _ => (0, TICKS_PER_TURN - 1),
            };
            for (field, v) in [("range_min", cal.range_min), ("range_max", cal.range_max)] {
                if v < lo || v > hi {
                    return Err(invalid(
                        format!("{}.{field}", j.name),
                        format!("{v} is outside {lo}..={hi} for {:?} mode", j.mode),
                        "recalibrate this joint, sweeping it through its real range".into(),
                    ));
                }
            }
            if cal.range_min >= cal.range_max {
                return Err(invalid(
                    format!("{}.range_min", j.name),
                    format!("{} is not below range_max {}", cal.range_min, cal.range_max),
                    "recalibrate this joint, sweeping it through its whole range".into(),
                ));
            }
            joints.push((j.name.clone(), cal));
        }
        if let Some(extra) = map.keys().next() {
            return Err(invalid(
                extra.clone(),
                "is not a joint of this config".into(),
                format!(
                    "the config's joints are {:?}; remove the entry or fix its name",
                    config.joint_names()
                ),
            ));
        }
        Ok(Self { joints })
    }

    /// The identity calibration for a config (for arms assembled at the factory's zero).
    pub fn identity(config: &RobotConfig) -> Self {
        Self {
            joints: config
                .joints
                .iter()
                .map(|j| (j.name.clone(), JointCalibration::identity(j.id)))
                .collect(),
        }
    }

    /// Per-joint limits: the calibrated range intersected with the config's limits.
    /// An empty intersection is an error that names the joint.
    pub fn joint_limits(
        &self,
        config: &RobotConfig,
        path: &Path,
    ) -> Result<Vec<[f64; 2]>, CalibrationError> {
        config
            .joints
            .iter()
            .zip(&self.joints)
            .map(|(j, (_, cal))| {
                let [a, b] = cal.range_rad();
                let lo = a.max(j.limits[0]);
                let hi = b.min(j.limits[1]);
                if lo >= hi {
                    Err(CalibrationError::Invalid {
                        file: path.to_path_buf(),
                        key: j.name.clone(),
                        problem: format!(
                            "calibrated range [{a:.3}, {b:.3}] rad does not overlap the config's limits {:?}",
                            j.limits
                        ),
                        fix: "recalibrate, or widen the limits in the config".into(),
                    })
                } else {
                    Ok([lo, hi])
                }
            })
            .collect()
    }

    /// The LeRobot JSON text for this calibration.
    pub fn to_json(&self) -> String {
        let map: BTreeMap<&str, &JointCalibration> =
            self.joints.iter().map(|(n, c)| (n.as_str(), c)).collect();
        // Serialising a map of plain structs cannot fail.
        serde_json::to_string_pretty(&map).unwrap_or_default() + "\n"
    }

    /// Writes the file atomically (a temporary file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        let io = |e| CalibrationError::Write {
            file: path.to_path_buf(),
            error: e,
        };
        let tmp: PathBuf = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn get(&self, joint: &str) -> Option<&JointCalibration> {
        self.joints.iter().find(|(n, _)| n == joint).map(|(_, c)| c)
    }
}
