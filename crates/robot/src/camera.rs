//! Camera configuration: the `[[cameras]]` tables of the robot TOML. It lives here, with the
//! rest of the config, so that a config can be checked without the camera crate's codecs;
//! `intervened-camera` re-exports it as `intervened_camera::config`.
//!
//! ```toml
//! [[cameras]]
//! name = "front"          # -> observation.images.front
//! device = "/dev/video0"  # a V4L2 device, or "sim" for the rendered camera
//! width = 640
//! height = 480
//! fps = 30
//! max_age_ms = 100        # optional; default 3 frame periods
//!
//! [[cameras]]
//! name = "overhead"
//! device = "sim"
//! width = 128
//! height = 128
//! fps = 30
//! pose = { position = [0.45, 0.0, 0.35], look_at = [0.12, 0.0, 0.0], vfov_deg = 45.0 }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A camera configuration that cannot work, with the key at fault and how to fix it. The robot
/// config turns it into its own error with the file and line (`cameras[i].key`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CameraConfigError {
    #[error("cameras[{index}] ({name}): `{key}` {problem}\n  fix: {fix}")]
    Invalid {
        /// Position in the `[[cameras]]` list.
        index: usize,
        /// The camera's name as written (may itself be the fault).
        name: String,
        key: &'static str,
        problem: String,
        fix: String,
    },
}

/// Smallest and largest side of a simulated camera's image.
pub const SIM_SIZE_RANGE: [u32; 2] = [96, 224];
/// Smallest and largest side of a V4L2 camera's image.
pub const V4L2_SIZE_RANGE: [u32; 2] = [16, 4096];
/// Accepted frame rates.
pub const FPS_RANGE: [u32; 2] = [1, 120];
/// Longest accepted `max_age_ms`.
pub const MAX_AGE_LIMIT_MS: u32 = 10_000;
/// Longest accepted camera name.
pub const NAME_MAX_LEN: usize = 64;

/// One camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// An identifier (`[A-Za-z_][A-Za-z0-9_]*`): the feature is `observation.images.<name>`.
    pub name: String,
    /// A V4L2 device path (`/dev/video0`, `/dev/v4l/by-id/...`) or `sim`.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames older than this read as stale. Default: three frame periods, rounded up.
    #[serde(default)]
    pub max_age_ms: Option<u32>,
    /// Pose of a simulated camera (`device = "sim"` only); default [`SimCameraPose::default`].
    #[serde(default)]
    pub pose: Option<SimCameraPose>,
}

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraDevice {
    V4l2(PathBuf),
    Sim,
}

/// A pinhole camera at a fixed pose in the world frame (metres; `z` up): it looks from
/// `position` at `look_at`, with the image's up towards `+z` (for a camera looking straight
/// down, the image's up is `+x`, forward of the robot), and `vfov_deg` degrees of vertical
/// field of view. Square pixels, principal point at the image centre, no distortion.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCameraPose {
    pub position: [f64; 3],
    pub look_at: [f64; 3],
    pub vfov_deg: f64,
}

impl Default for SimCameraPose {
    /// In front of the arm, looking back and down at the pick region (block 10-16 cm out, up
    /// to +-0.6 rad to either side), which it keeps in view together with the arm.
    fn default() -> Self {
        Self {
            position: [0.45, 0.0, 0.30],
            look_at: [0.07, 0.0, 0.07],
            vfov_deg: 50.0,
        }
    }
}

impl SimCameraPose {
    /// A problem with this pose, if any.
    pub fn problem(&self) -> Option<String> {
        if self
            .position
            .iter()
            .chain(self.look_at.iter())
            .chain(std::iter::once(&self.vfov_deg))
            .any(|v| !v.is_finite())
        {
            return Some("has a non-finite number".into());
        }
        let d: f64 = (0..3)
            .map(|k| (self.look_at[k] - self.position[k]).powi(2))
            .sum::<f64>()
            .sqrt();
        if d < 1e-6 {
            return Some("look_at equals position: the view direction is undefined".into());
        }
        if !(10.0..=120.0).contains(&self.vfov_deg) {
            return Some(format!(
                "vfov_deg = {} is outside 10..=120 degrees",
                self.vfov_deg
            ));
        }
        None
    }
}

/// Whether `name` can follow `observation.images.`: an ASCII identifier of at most
/// [`NAME_MAX_LEN`] characters.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    name.len() <= NAME_MAX_LEN && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl CameraConfig {
    /// Where the frames come from.
    pub fn device(&self) -> CameraDevice {
        if self.device == "sim" {
            CameraDevice::Sim
        } else {
            CameraDevice::V4l2(PathBuf::from(&self.device))
        }
    }

    /// The LeRobot feature key, `observation.images.<name>`.
    pub fn feature_key(&self) -> String {
        format!("observation.images.{}", self.name)
    }

    /// One frame period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.fps.max(1)))
    }

    /// `max_age_ms`, or three frame periods rounded up to a millisecond.
    pub fn max_age(&self) -> Duration {
        match self.max_age_ms {
            Some(ms) => Duration::from_millis(u64::from(ms)),
            None => Duration::from_millis(3000u64.div_ceil(u64::from(self.fps.max(1)))),
        }
    }

    /// The simulated camera's pose (the default when none is given).
    pub fn sim_pose(&self) -> SimCameraPose {
        self.pose.unwrap_or_default()
    }

    /// Checks one camera; `index` is its place in the list (for the message).
    pub fn validate(&self, index: usize) -> Result<(), CameraConfigError> {
        let bad = |key: &'static str, problem: String, fix: &str| CameraConfigError::Invalid {
            index,
            name: self.name.clone(),
            key,
            problem,
            fix: fix.to_string(),
        };
        if !is_valid_name(&self.name) {
            return Err(bad(
                "name",
                format!(
                    "{:?} cannot follow `observation.images.`: it must be an identifier of at most {NAME_MAX_LEN} characters",
                    self.name
                ),
                "use letters, digits and `_`, starting with a letter or `_`, e.g. \"front\" or \"wrist_left\"",
            ));
        }
        let sim = self.device == "sim";
        if !sim && !self.device.starts_with('/') {
            return Err(bad(
                "device",
                format!("{:?} is neither `sim` nor an absolute device path", self.device),
                "use a V4L2 device such as \"/dev/video0\" (better: a stable \"/dev/v4l/by-id/...\" link), or \"sim\"",
            ));
        }
        let [lo, hi] = if sim { SIM_SIZE_RANGE } else { V4L2_SIZE_RANGE };
        for (key, v) in [("width", self.width), ("height", self.height)] {
            if !(lo..=hi).contains(&v) {
                return Err(bad(
                    key,
                    format!(
                        "{v} is outside {lo}..={hi} for {} camera",
                        if sim { "a simulated" } else { "a V4L2" }
                    ),
                    &format!("choose a {key} between {lo} and {hi}"),
                ));
            }
        }
        if !sim && !self.width.is_multiple_of(2) {
            return Err(bad(
                "width",
                format!("{} is odd; YUYV packs pixels in pairs", self.width),
                "use an even width, as the camera lists them",
            ));
        }
        let [flo, fhi] = FPS_RANGE;
        if !(flo..=fhi).contains(&self.fps) {
            return Err(bad(
                "fps",
                format!("{} is outside {flo}..={fhi}", self.fps),
                "use the camera's frame rate, e.g. 30",
            ));
        }
        if let Some(ms) = self.max_age_ms {
            let period_ms = 1000u32.div_ceil(self.fps);
            if ms < period_ms || ms > MAX_AGE_LIMIT_MS {
                return Err(bad(
                    "max_age_ms",
                    format!(
                        "{ms} is outside {period_ms}..={MAX_AGE_LIMIT_MS} (one frame period at {} fps up to 10 s); below a period every frame would read as stale",
                        self.fps
                    ),
                    "leave it out (three frame periods) or give a few frame periods",
                ));
            }
        }
        if let Some(pose) = &self.pose {
            if !sim {
                return Err(bad(
                    "pose",
                    "is set, but only a simulated camera (device = \"sim\") has a pose".into(),
                    "remove `pose`, or set device = \"sim\"",
                ));
            }
            if let Some(p) = pose.problem() {
                return Err(bad(
                    "pose",
                    p,
                    "give a finite position, a different look_at and 10 <= vfov_deg <= 120",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a `[[cameras]]` list: each camera, unique names, and no V4L2 device used twice.
pub fn validate_cameras(cameras: &[CameraConfig]) -> Result<(), CameraConfigError> {
    for (i, c) in cameras.iter().enumerate() {
        c.validate(i)?;
        if let Some(j) = cameras[..i].iter().position(|o| o.name == c.name) {
            return Err(CameraConfigError::Invalid {
                index: i,
                name: c.name.clone(),
                key: "name",
                problem: format!("is also the name of cameras[{j}]"),
                fix: "give each camera its own name".into(),
            });
        }
        if c.device != "sim" {
            if let Some(j) = cameras[..i].iter().position(|o| o.device == c.device) {
                return Err(CameraConfigError::Invalid {
                    index: i,
                    name: c.name.clone(),
                    key: "device",
                    problem: format!("{} is also the device of cameras[{j}]", c.device),
                    fix: "a V4L2 device streams to one reader: give each camera its own device"
                        .into(),
                });
            }
        }
    }
    Ok(())
}
