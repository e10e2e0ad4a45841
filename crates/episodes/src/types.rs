//! The plain data the daemon hands to the recorder, and what the readers hand back.
//!
//! Everything here is serde and self-describing: joint and task-feature names travel in
//! [`EpisodeMeta`], which is the first thing written to every episode file.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use intervened_robot::RobotConfig;
use serde::{Deserialize, Deserializer, Serialize};

/// Who produced the goal executed at a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ControlSource {
    /// Pure teleoperated demonstration (no policy in control at all in this episode).
    #[default]
    Demo,
    /// The policy drove the arm.
    Robot,
    /// The human took over from the policy (HG-DAgger correction).
    Intervention,
}

impl ControlSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Robot => "robot",
            Self::Intervention => "intervention",
        }
    }
}

impl fmt::Display for ControlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Sirius's four frame classes. Only `PreIntervention` is not recorded: it is derived at read
/// time (see [`crate::labels`]), so the window can change without touching recorded data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    Demo,
    Robot,
    Intervention,
    PreIntervention,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::Robot => "robot",
            Self::Intervention => "intervention",
            Self::PreIntervention => "pre-intervention",
        }
    }
}

impl From<ControlSource> for Label {
    fn from(s: ControlSource) -> Self {
        match s {
            ControlSource::Demo => Label::Demo,
            ControlSource::Robot => Label::Robot,
            ControlSource::Intervention => Label::Intervention,
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One control tick. Vectors are in joint order ([`EpisodeMeta::joint_names`]), radians,
/// rad/s and the servo's current units; `task` follows [`EpisodeMeta::task_feature_names`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// Control-loop tick counter (monotonic over the daemon's life; gaps mean dropped frames).
    pub tick: u64,
    /// Seconds since the episode started, by the control loop's clock.
    pub t: f64,
    /// Measured joint positions (rad).
    pub q: Vec<f64>,
    /// Measured joint velocities (rad/s).
    pub qd: Vec<f64>,
    /// Measured currents (mA).
    pub current: Vec<f64>,
    /// The goal positions actually sent to the servos, after the safety filter (rad).
    pub goal: Vec<f64>,
    /// Who produced `goal`.
    pub source: ControlSource,
    /// What the policy proposed this tick, also while the human drives.
    pub proposal: Option<Vec<f64>>,
    /// Ensemble disagreement for `proposal` (HG-DAgger "doubt"), if the policy has one.
    pub doubt: Option<f64>,
    /// Gamepad axes in [-1, 1].
    pub pad_axes: Vec<f64>,
    /// Gamepad buttons held, as a bit mask.
    pub pad_buttons: u32,
    /// Task features from sensor sources (e.g. block position), in `task_feature_names` order.
    pub task: Vec<f64>,
}

/// Everything needed to interpret an episode without its config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeMeta {
    pub session_id: String,
    pub episode_index: u32,
    pub robot_name: String,
    pub robot_type: String,
    pub joint_names: Vec<String>,
    pub task_feature_names: Vec<String>,
    /// The nominal control rate (frames per second).
    pub fps: f64,
    /// The policy version in control, none for pure demonstrations.
    pub policy_version: Option<String>,
    /// Natural-language task, e.g. "pick up the red block".
    pub task: String,
    /// True for a pure teleoperated demonstration episode.
    pub demo: bool,
    /// Wall-clock start, Unix time in nanoseconds (MCAP log times are offset from it).
    pub started_at: u64,
    /// The cameras recorded in this episode, one image channel each (`/camera/<name>`), in the
    /// order image calls and [`crate::RecorderHandle::record_frame_with_images`] index them.
    /// Absent (and not written) for episodes without cameras, so those files are unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cameras: Vec<CameraInfo>,
    /// `CLOCK_MONOTONIC` nanoseconds at the episode's `t = 0` (the clock camera capture
    /// timestamps use). An image's MCAP log time is `started_at + (capture_ns -
    /// monotonic_start_ns)`, on the same timeline as the frames' `started_at + t`; without it,
    /// images need an explicit `t` ([`crate::RecorderHandle::record_image_at`]) or are stamped
    /// with the newest log time written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monotonic_start_ns: Option<u64>,
}

/// One camera of an episode: its images go to the MCAP channel `/camera/<name>` as
/// `foxglove.CompressedImage` (JPEG), and to LeRobot as `observation.images.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// The nominal capture rate.
    pub fps: f64,
}

impl CameraInfo {
    pub fn new(name: impl Into<String>, width: u32, height: u32, fps: f64) -> Self {
        Self {
            name: name.into(),
            width,
            height,
            fps,
        }
    }

    /// The MCAP topic of this camera's images.
    pub fn topic(&self) -> String {
        format!("{}{}", crate::format::TOPIC_CAMERA_PREFIX, self.name)
    }
}

impl EpisodeMeta {
    /// Meta for a robot config: names, type, joints and fps from the config, start time now.
    pub fn for_robot(
        config: &RobotConfig,
        session_id: impl Into<String>,
        episode_index: u32,
        task: impl Into<String>,
    ) -> Self {
        Self {
            session_id: session_id.into(),
            episode_index,
            robot_name: config.robot.name.clone(),
            robot_type: config.robot.robot_type.clone(),
            joint_names: config.joints.iter().map(|j| j.name.clone()).collect(),
            task_feature_names: Vec::new(),
            fps: config.control.rate_hz,
            policy_version: None,
            task: task.into(),
            demo: false,
            started_at: unix_now_ns(),
            cameras: Vec::new(),
            monotonic_start_ns: None,
        }
    }
}

/// The current Unix time in nanoseconds (0 if the clock is before 1970).
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Things that happen during an episode, recorded on `/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The arbitration state machine changed state (e.g. autonomous -> intervening).
    ModeChange {
        from: String,
        to: String,
        reason: String,
    },
    /// Something failed: a servo alert, a bus timeout, a policy error.
    Fault {
        component: String,
        message: String,
        fatal: bool,
    },
    /// An operator or episode marker (start, success button, note).
    EpisodeMarker { marker: String },
    /// The safety filter changed a goal.
    SafetyClamp { joint: String, reason: String },
    /// A new policy version was loaded.
    PolicyLoaded { version: String },
    /// Emergency stop.
    EStop { reason: String },
    /// Free text.
    Note { message: String },
    /// A camera stopped delivering fresh images from this tick on: `reason` is `stale` (its
    /// newest image is older than the limit) or `stopped` (its capture thread ended). Images
    /// on `/camera/<camera>` are missing until it delivers again.
    CameraGap { camera: String, reason: String },
}

/// An event with the tick and episode time it happened at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub tick: u64,
    pub t: f64,
    pub event: Event,
}

/// Control-loop health over the last reporting interval, recorded on `/diagnostics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopDiagnostics {
    /// Worst wake-up lateness against the absolute deadline (us).
    pub period_error_us: f64,
    /// Worst time spent working inside one tick (us).
    pub work_us: f64,
    /// Ticks that ran past their period.
    pub overruns: u64,
    /// Goals changed by the safety filter.
    pub clamps: u64,
    /// Frames the recorder queue refused (see [`crate::RecorderHandle::dropped_frames`]).
    pub dropped_frames: u64,
}

/// Diagnostics with the tick and episode time they were taken at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsRecord {
    pub tick: u64,
    pub t: f64,
    pub diagnostics: LoopDiagnostics,
}

/// How an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// The operator threw it away; kept on disk, skipped by export.
    Discarded,
    /// Ended without a verdict (shutdown, e-stop, a new episode began).
    Aborted,
    /// Cut short by a crash or a disk fault; recovered up to its last complete chunk.
    Truncated,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Discarded => "discarded",
            Self::Aborted => "aborted",
            Self::Truncated => "truncated",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an episode that was not a success failed, as far as whoever judged it could tell.
/// The simulator tells every class apart; a real robot's failures are `TimedOut` unless the
/// operator says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// The arm ended pinned at a joint limit, or sat at one for a second or more.
    JointLimits,
    /// The block was grasped, then dropped or never lifted high enough.
    Dropped,
    /// The jaws were around the block but never closed on it.
    NoGrasp,
    /// The jaws never got around the block.
    NeverReached,
    /// Time ran out; nothing more is known.
    TimedOut,
}

impl FailureMode {
    pub const ALL: [FailureMode; 5] = [
        FailureMode::JointLimits,
        FailureMode::Dropped,
        FailureMode::NoGrasp,
        FailureMode::NeverReached,
        FailureMode::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JointLimits => "joint_limits",
            Self::Dropped => "dropped",
            Self::NoGrasp => "no_grasp",
            Self::NeverReached => "never_reached",
            Self::TimedOut => "timed_out",
        }
    }

    /// A short phrase for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Self::JointLimits => "ran into the joint limits",
            Self::Dropped => "grasped, then dropped or not lifted",
            Self::NoGrasp => "reached, never grasped",
            Self::NeverReached => "never reached",
            Self::TimedOut => "timed out",
        }
    }
}

/// Failed episodes per [`FailureMode`], plus failures recorded without one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounts {
    pub joint_limits: u64,
    pub dropped: u64,
    pub no_grasp: u64,
    pub never_reached: u64,
    pub timed_out: u64,
    /// Failures whose recording says nothing about why (older files, an operator's verdict).
    pub unexplained: u64,
}

impl FailureCounts {
    pub fn add(&mut self, mode: Option<FailureMode>) {
        *self.slot(mode) += 1;
    }

    pub fn get(&self, mode: Option<FailureMode>) -> u64 {
        let mut c = *self;
        *c.slot(mode)
    }

    fn slot(&mut self, mode: Option<FailureMode>) -> &mut u64 {
        match mode {
            Some(FailureMode::JointLimits) => &mut self.joint_limits,
            Some(FailureMode::Dropped) => &mut self.dropped,
            Some(FailureMode::NoGrasp) => &mut self.no_grasp,
            Some(FailureMode::NeverReached) => &mut self.never_reached,
            Some(FailureMode::TimedOut) => &mut self.timed_out,
            None => &mut self.unexplained,
        }
    }

    pub fn merge(&mut self, o: &FailureCounts) {
        for m in FailureMode::ALL.map(Some).into_iter().chain([None]) {
            *self.slot(m) += o.get(m);
        }
    }

    pub fn total(&self) -> u64 {
        FailureMode::ALL
            .map(Some)
            .into_iter()
            .chain([None])
            .map(|m| self.get(m))
            .sum()
    }
}

/// `never reached 3, reached, never grasped 1` (classes with no episode left out), or `-`.
impl fmt::Display for FailureCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for m in FailureMode::ALL.map(Some).into_iter().chain([None]) {
            let n = self.get(m);
            if n == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            let name = m.map_or("no detail recorded", FailureMode::describe);
            write!(f, "{name} {n}")?;
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// serde_json writes non-finite floats as `null`; read them back as NaN instead of failing.
pub(crate) fn de_f64_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v: Vec<Option<f64>> = Vec::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

pub(crate) fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v: Option<f64> = Option::deserialize(d)?;
    Ok(v.unwrap_or(f64::NAN))
}
