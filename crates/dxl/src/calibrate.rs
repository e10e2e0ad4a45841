//! Calibration as a library: torque off, record the middle pose, sample while the user sweeps
//! every joint through its range, then produce an [`intervened_robot::Calibration`].
//!
//! No terminal I/O here. The CLI drives it like this:
//!
//! ```text
//! let mut arm = Arm::open(&cfg, Calibration::identity(&cfg), port)?;
//! let mut cal = Calibrator::new(&cfg);
//! cal.begin(&mut arm)?;                 // torque off
//! prompt("move the arm to the middle pose, press Enter");
//! cal.record_middle(&mut arm)?;
//! prompt("sweep each joint through its full range, press Enter when done");
//! while !enter_pressed() {              // e.g. a stdin thread and a channel
//!     let progress = cal.sample(&mut arm)?;   // every ~20 ms; show progress
//! }
//! let calibration = cal.finish()?;      // validated: it round-trips through Calibration::parse
//! calibration.save(&path)?;
//! ```
//!
//! Conventions are those of [`intervened_robot::calibration`]: `homing_offset = 2048 - raw` at
//! the middle pose, and the range is recorded in calibrated ticks (`raw + homing_offset`).

use std::path::Path;

use intervened_robot::calibration::CENTER_TICKS;
use intervened_robot::{
    Calibration, CalibrationError, JointCalibration, OperatingMode, RobotConfig,
};
use thiserror::Error;

use crate::arm::{Arm, ArmReading};
use crate::error::{BusError, ServoFault};

#[derive(Debug, Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("joint {joint} (servo id {id}) did not report its position: {fault}")]
    Read {
        joint: String,
        id: u8,
        fault: ServoFault,
    },
    #[error("the middle pose has not been recorded yet")]
    NoMiddle,
    #[error("these joints were not swept (less than {min_ticks} ticks of travel): {}\n  fix: move each of them through its whole range before finishing", joints.join(", "))]
    NotSwept { joints: Vec<String>, min_ticks: i32 },
    #[error("joint {joint} crossed the encoder's wrap point in {mode:?} mode (its position jumped by more than half a turn)\n  fix: use mode = \"extended_position\" for this joint, or remount its horn so the range does not cross the wrap")]
    Wraps { joint: String, mode: OperatingMode },
    #[error("the recorded calibration is not valid: {0}")]
    Invalid(#[from] CalibrationError),
}

/// One joint's sweep so far.
#[derive(Debug, Clone, PartialEq)]
pub struct JointSweep {
    pub joint: String,
    /// Latest raw position, if the last sample got it.
    pub raw: Option<i32>,
    /// Calibrated ticks (`raw + homing_offset`) of the extremes seen.
    pub min: i32,
    pub max: i32,
    /// Whether the travel seen is at least the minimum sweep.
    pub enough: bool,
}

/// Progress of the sweep, for the CLI to display.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepProgress {
    pub joints: Vec<JointSweep>,
    pub samples: u64,
}

impl SweepProgress {
    pub fn all_swept(&self) -> bool {
        self.joints.iter().all(|j| j.enough)
    }
}

/// The calibration flow's state.
#[derive(Debug)]
pub struct Calibrator {
    cfg: RobotConfig,
    min_sweep_ticks: i32,
    drive_modes: Vec<u8>,
    offsets: Option<Vec<i32>>,
    min: Vec<i32>,
    max: Vec<i32>,
    last: Vec<Option<i32>>,
    wrapped: Vec<bool>,
    samples: u64,
    reading: Option<ArmReading>,
}

impl Calibrator {
    /// Default minimum travel per joint for the sweep to count (about 9 degrees).
    pub const DEFAULT_MIN_SWEEP_TICKS: i32 = 100;

    pub fn new(cfg: &RobotConfig) -> Self {
        let n = cfg.joints.len();
        Self {
            cfg: cfg.clone(),
            min_sweep_ticks: Self::DEFAULT_MIN_SWEEP_TICKS,
            drive_modes: vec![0; n],
            offsets: None,
            min: vec![0; n],
            max: vec![0; n],
            last: vec![None; n],
            wrapped: vec![false; n],
            samples: 0,
            reading: None,
        }
    }

    pub fn with_min_sweep_ticks(mut self, ticks: i32) -> Self {
        self.min_sweep_ticks = ticks.max(0);
        self
    }

    /// Drive modes to record (1 = reversed joint), e.g. kept from the previous calibration.
    /// Missing entries stay 0.
    pub fn with_drive_modes(mut self, modes: &[u8]) -> Self {
        for (d, m) in self.drive_modes.iter_mut().zip(modes) {
            *d = (*m).min(1);
        }
        self
    }

    /// Turns torque off on every servo so the user can move the arm by hand.
    pub fn begin(&mut self, arm: &mut Arm) -> Result<(), CalibrateError> {
        arm.set_torque(false)?;
        Ok(())
    }

    fn read_raw(&mut self, arm: &mut Arm) -> &ArmReading {
        let r = self.reading.get_or_insert_with(|| arm.new_reading());
        arm.read_motion_only(r);
        r
    }

    /// Records the middle pose: every joint's offset becomes `2048 - raw`. Every servo must
    /// answer. Returns the offsets.
    pub fn record_middle(&mut self, arm: &mut Arm) -> Result<Vec<i32>, CalibrateError> {
        let joints = self.cfg.joints.clone();
        let r = self.read_raw(arm).clone();
        let mut offsets = Vec::with_capacity(joints.len());
        for (i, j) in joints.iter().enumerate() {
            match r.status.get(i) {
                Some(Ok(())) => {}
                Some(Err(f)) if f.data_valid() => {}
                other => {
                    return Err(CalibrateError::Read {
                        joint: j.name.clone(),
                        id: j.id,
                        fault: other.and_then(|s| s.err()).unwrap_or(ServoFault::Timeout),
                    })
                }
            }
            let raw = r.raw.get(i).copied().unwrap_or(0);
            offsets.push(CENTER_TICKS - raw);
            self.min[i] = raw;
            self.max[i] = raw;
            self.last[i] = Some(raw);
            self.wrapped[i] = false;
        }
        self.samples = 0;
        self.offsets = Some(offsets.clone());
        Ok(offsets)
    }

    /// Takes one sample of every joint's position and widens the ranges. A servo that misses
    /// a sample is skipped for that sample (shown as `raw: None`).
    pub fn sample(&mut self, arm: &mut Arm) -> Result<SweepProgress, CalibrateError> {
        if self.offsets.is_none() {
            return Err(CalibrateError::NoMiddle);
        }
        let r = self.read_raw(arm).clone();
        let n = self.cfg.joints.len();
        for i in 0..n {
            let fresh = matches!(r.status.get(i), Some(Ok(())))
                || matches!(r.status.get(i), Some(Err(f)) if f.data_valid());
            if !fresh {
                self.last[i] = None;
                continue;
            }
            let raw = r.raw.get(i).copied().unwrap_or(0);
            let extended =
                self.cfg.joints.get(i).map(|j| j.mode) == Some(OperatingMode::ExtendedPosition);
            if let Some(prev) = self.last[i] {
                if !extended && (raw - prev).abs() > CENTER_TICKS {
                    self.wrapped[i] = true;
                }
            }
            self.last[i] = Some(raw);
            self.min[i] = self.min[i].min(raw);
            self.max[i] = self.max[i].max(raw);
        }
        self.samples += 1;
        Ok(self.progress())
    }

    pub fn progress(&self) -> SweepProgress {
        let offsets = self.offsets.as_deref().unwrap_or(&[]);
        SweepProgress {
            joints: self
                .cfg
                .joints
                .iter()
                .enumerate()
                .map(|(i, j)| {
                    let off = offsets.get(i).copied().unwrap_or(0);
                    JointSweep {
                        joint: j.name.clone(),
                        raw: self.last.get(i).copied().flatten(),
                        min: self.min[i] + off,
                        max: self.max[i] + off,
                        enough: self.max[i] - self.min[i] >= self.min_sweep_ticks,
                    }
                })
                .collect(),
            samples: self.samples,
        }
    }

    /// The calibration, checked the way the daemon will load it (`Calibration::parse` against
    /// the config), so a file saved from it always loads.
    pub fn finish(&self) -> Result<Calibration, CalibrateError> {
        let offsets = self.offsets.as_ref().ok_or(CalibrateError::NoMiddle)?;
        let mut not_swept = Vec::new();
        let mut joints = Vec::with_capacity(self.cfg.joints.len());
        for (i, j) in self.cfg.joints.iter().enumerate() {
            if self.wrapped[i] {
                return Err(CalibrateError::Wraps {
                    joint: j.name.clone(),
                    mode: j.mode,
                });
            }
            if self.max[i] - self.min[i] < self.min_sweep_ticks {
                not_swept.push(j.name.clone());
            }
            let off = offsets.get(i).copied().unwrap_or(0);
            joints.push((
                j.name.clone(),
                JointCalibration {
                    id: j.id,
                    drive_mode: self.drive_modes.get(i).copied().unwrap_or(0),
                    homing_offset: off,
                    range_min: self.min[i] + off,
                    range_max: self.max[i] + off,
                },
            ));
        }
        if !not_swept.is_empty() {
            return Err(CalibrateError::NotSwept {
                joints: not_swept,
                min_ticks: self.min_sweep_ticks,
            });
        }
        let cal = Calibration { joints };
        let checked =
            Calibration::parse(&cal.to_json(), Path::new("<new calibration>"), &self.cfg)?;
        Ok(checked)
    }
}
