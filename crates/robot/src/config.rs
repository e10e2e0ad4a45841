//! The robot config: one TOML file describes an arm, its bus, its joints, the control rate,
//! the gamepad mapping, the policy, recording and safety limits.
//!
//! Parsing rejects unknown keys (a typo must not silently fall back to a default), and
//! [`RobotConfig::validate`] checks what serde cannot: ranges, uniqueness, cross references.
//! Every error names the file, the key and the fix.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::camera::{validate_cameras, CameraConfig, CameraConfigError};
use crate::error::ConfigError;
use crate::model::ServoModel;

/// The whole robot config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    pub robot: RobotSection,
    pub bus: BusConfig,
    pub joints: Vec<JointConfig>,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub teleop: TeleopConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub recording: RecordingConfig,
    #[serde(default)]
    pub safety: SafetyConfig,
    /// Only read when `bus.port = "sim"` (or by `intervened sim`): the simulated world.
    #[serde(default)]
    pub sim: SimConfig,
    /// `[[cameras]]`: USB cameras (V4L2) or rendered ones (`device = "sim"`). None by default.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Path of the calibration file, relative to the config file's directory.
    #[serde(default)]
    pub calibration: Option<PathBuf>,
    /// Where the config was loaded from; not part of the file.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RobotSection {
    /// A name for this arm, recorded in every episode and policy sidecar.
    pub name: String,
    /// The robot type (e.g. `koch_v1.1`); policies trained on another type are refused.
    #[serde(rename = "type")]
    pub robot_type: String,
}

/// Where the bus is: a serial device path, or `sim` for the in-process emulated chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    pub port: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_protocol")]
    pub protocol: u8,
    /// How many ticks between reads of velocity and current (1 = every tick).
    #[serde(default = "one")]
    pub velocity_current_every: u32,
    /// How many ticks between reads of hardware error, temperature and voltage.
    #[serde(default = "default_health_every")]
    pub health_every: u32,
    /// How many times a failed read or write is retried within one tick.
    #[serde(default = "one")]
    pub retries: u32,
}

impl BusConfig {
    pub fn is_sim(&self) -> bool {
        self.port == "sim"
    }
}

/// The Dynamixel operating modes the daemon drives (control table address 11).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OperatingMode {
    Position,
    ExtendedPosition,
    CurrentBasedPosition,
}

impl OperatingMode {
    /// The value of the Operating_Mode register.
    pub fn register_value(self) -> u8 {
        match self {
            OperatingMode::Position => 3,
            OperatingMode::ExtendedPosition => 4,
            OperatingMode::CurrentBasedPosition => 5,
        }
    }
    pub fn from_register(v: u8) -> Option<Self> {
        match v {
            3 => Some(OperatingMode::Position),
            4 => Some(OperatingMode::ExtendedPosition),
            5 => Some(OperatingMode::CurrentBasedPosition),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JointConfig {
    pub name: String,
    pub id: u8,
    pub model: ServoModel,
    pub mode: OperatingMode,
    /// Joint limits in radians, `[min, max]`, in the calibrated frame.
    #[serde(deserialize_with = "exact_array")]
    pub limits: [f64; 2],
    #[serde(default)]
    pub gripper: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Control rate in Hz.
    #[serde(default = "default_rate")]
    pub rate_hz: f64,
    /// SCHED_FIFO priority for the control thread (1-99); none means the default scheduler.
    #[serde(default)]
    pub realtime_priority: Option<u8>,
    /// CPU core to pin the control thread to.
    #[serde(default)]
    pub cpu: Option<usize>,
}

/// Where the policy's forward passes run (see [`PolicyConfig::inference`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InferenceMode {
    /// On a worker thread from the start.
    #[default]
    Worker,
    /// Inline on the control thread until a pass exceeds `policy.inline_budget`.
    Auto,
}

/// Whether the takeover button must be held (deadman) or toggles control.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TakeoverMode {
    #[default]
    Hold,
    Toggle,
}

/// Gamepad buttons by position (SDL naming: south is A on Xbox, cross on PlayStation).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Button {
    South,
    East,
    North,
    West,
    LeftBumper,
    RightBumper,
    LeftTrigger,
    RightTrigger,
    Select,
    Start,
    Mode,
    LeftThumb,
    RightThumb,
    DpadUp,
    DpadDown,
    DpadLeft,
    DpadRight,
}

/// Gamepad axes. Sticks run -1..1 (up and right positive); triggers 0..1; the D-pad -1, 0 or 1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    LeftStickX,
    LeftStickY,
    RightStickX,
    RightStickY,
    LeftTrigger,
    RightTrigger,
    DpadX,
    DpadY,
}

/// One axis driving one joint's velocity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AxisMapping {
    pub axis: Axis,
    pub joint: String,
    /// Joint speed in rad/s at full deflection; negative reverses the direction.
    pub rad_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EpisodeButtons {
    #[serde(default = "btn_start")]
    pub start_episode: Button,
    #[serde(default = "btn_south")]
    pub success: Button,
    #[serde(default = "btn_east")]
    pub failure: Button,
    #[serde(default = "btn_west")]
    pub discard: Button,
    #[serde(default = "btn_select")]
    pub estop: Button,
    /// Clearing a latched e-stop takes this button held together with the e-stop button.
    #[serde(default = "btn_north")]
    pub clear_estop: Button,
}

impl Default for EpisodeButtons {
    fn default() -> Self {
        Self {
            start_episode: Button::Start,
            success: Button::South,
            failure: Button::East,
            discard: Button::West,
            estop: Button::Select,
            clear_estop: Button::North,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TeleopConfig {
    /// `hold` (default): control is the human's while the takeover button is held.
    /// `toggle`: each press swaps control.
    #[serde(default)]
    pub takeover: TakeoverMode,
    #[serde(default = "btn_rb")]
    pub takeover_button: Button,
    /// While held, speeds are multiplied by `fine_scale`.
    #[serde(default = "btn_lb")]
    pub fine_button: Button,
    #[serde(default = "default_fine_scale")]
    pub fine_scale: f64,
    /// Global multiplier on every axis speed.
    #[serde(default = "default_one_f")]
    pub speed_scale: f64,
    /// Stick deflections below this magnitude read as zero.
    #[serde(default = "default_deadzone")]
    pub deadzone: f64,
    /// Refuse autonomous mode when no gamepad is connected at start.
    #[serde(default = "default_true")]
    pub require_gamepad: bool,
    #[serde(default)]
    pub axes: Vec<AxisMapping>,
    #[serde(default)]
    pub buttons: EpisodeButtons,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The policy registry (`<registry>/current/policy.pt`), relative to the config's directory.
    #[serde(default = "default_registry")]
    pub registry: PathBuf,
    /// ACT temporal-ensembling decay `m` in `w_i = exp(-m i)`.
    #[serde(default = "default_ensemble_m")]
    pub temporal_ensemble_m: f64,
    /// Ensemble doubt above which the daemon asks the human for help (rumble, status).
    #[serde(default)]
    pub doubt_threshold: Option<f64>,
    /// Where forward passes run in real time: `worker` (the default) runs them on their own
    /// thread, so the control thread never enters libtorch (which allocates and can stall);
    /// `auto` runs them inline until one takes longer than `inline_budget` of a period. In
    /// lockstep simulation inference always runs inline.
    #[serde(default)]
    pub inference: InferenceMode,
    /// Fraction of a control period a forward pass may take inline (`inference = "auto"`)
    /// before inference moves to a worker thread.
    #[serde(default = "default_inline_budget")]
    pub inline_budget: f64,
    /// A policy that yields no usable action for this long while it has the arm is a fault:
    /// the arm goes to Hold (a slow model on the worker thread, a dead worker). Milliseconds.
    #[serde(default = "default_action_timeout_ms")]
    pub action_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Data root; episodes go to `<root>/sessions/<session-id>/`. Relative to the config's directory.
    #[serde(default = "default_data_root")]
    pub root: PathBuf,
    /// A chunk is closed and flushed at least this often, bounding loss on a power cut.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Frames before a takeover labelled `pre-intervention` when the data is read.
    #[serde(default = "default_pre_window")]
    pub pre_intervention_window: usize,
    /// Frames the recorder queue holds before the loop starts dropping (and counting) them.
    #[serde(default = "default_queue")]
    pub queue_frames: usize,
    /// Camera images (all cameras together) waiting for JPEG encoding before a robot's
    /// cameras start dropping (and counting) them; a lockstep simulation waits instead.
    #[serde(default = "default_queue_images")]
    pub queue_images: usize,
}

/// What the daemon does with servo torque when it e-stops or exits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TorquePolicy {
    /// Keep torque on, holding the last position (an arm under gravity does not fall).
    #[default]
    Hold,
    /// Turn torque off (the arm goes limp).
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SafetyConfig {
    /// The most any goal may move in one control tick, in rad.
    #[serde(default = "default_max_step")]
    pub max_step_rad: f64,
    /// Torque on e-stop.
    #[serde(default)]
    pub on_estop: TorquePolicy,
    /// Torque when the daemon exits (SIGTERM).
    #[serde(default)]
    pub on_exit: TorquePolicy,
    /// Consecutive failed bus ticks before the daemon holds and reports a bus fault.
    #[serde(default = "default_fault_ticks")]
    pub fault_ticks: u32,
    /// Servo temperature (deg C) at which the daemon holds.
    #[serde(default = "default_max_temp")]
    pub max_temperature_c: f64,
}

/// The simulated world, used when `bus.port = "sim"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    pub seed: u64,
    /// Lockstep: the world advances exactly one control period per tick, as fast as the CPU allows.
    pub lockstep: bool,
    /// Episode time limit in seconds.
    pub episode_seconds: f64,
    /// Link lengths in metres: base height, upper arm, forearm, wrist-to-fingertip.
    #[serde(deserialize_with = "exact_array")]
    pub links_m: [f64; 4],
    /// Servo response time constant (first-order), in seconds.
    pub servo_time_constant_s: f64,
    /// Servo velocity limit in rad/s.
    pub servo_max_velocity: f64,
    /// Faults the emulator injects on the simulated bus (`[sim.faults]`); none by default.
    #[serde(default)]
    pub faults: SimFaults,
}

/// Faults injected by the servo emulator, so the daemon's fault behaviour can be watched on
/// the simulated robot. Rates are probabilities per status packet; times are seconds since
/// the emulator started (wall clock). The defaults inject nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimFaults {
    /// Replies sent with a broken CRC, in [0, 1].
    pub corrupt_crc_rate: f64,
    /// Replies never sent (the host times out), in [0, 1].
    pub drop_reply_rate: f64,
    /// Replies sent `late_reply_ms` late, in [0, 1].
    pub late_reply_rate: f64,
    pub late_reply_ms: u64,
    /// Seed of the fault dice: the same seed and traffic give the same faults.
    pub seed: u64,
    /// Unplug the adapter this many seconds after start...
    pub unplug_at_s: Option<f64>,
    /// ...and plug it back in this long after.
    pub unplug_for_s: f64,
    /// The servo (id) that goes silent...
    pub silent_servo: Option<u8>,
    /// ...this many seconds after start...
    pub silent_at_s: Option<f64>,
    /// ...and answers again this long after.
    pub silent_for_s: f64,
}

impl Default for SimFaults {
    fn default() -> Self {
        Self {
            corrupt_crc_rate: 0.0,
            drop_reply_rate: 0.0,
            late_reply_rate: 0.0,
            late_reply_ms: 50,
            seed: 0,
            unplug_at_s: None,
            unplug_for_s: 2.0,
            silent_servo: None,
            silent_at_s: None,
            silent_for_s: 2.0,
        }
    }
}

impl SimFaults {
    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        self.corrupt_crc_rate > 0.0
            || self.drop_reply_rate > 0.0
            || self.late_reply_rate > 0.0
            || self.unplug_at_s.is_some()
            || self.silent_at_s.is_some()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            lockstep: true,
            episode_seconds: 10.0,
            // Koch v1.1 follower, approximately (LeRobot's URDF).
            links_m: [0.055, 0.108, 0.100, 0.105],
            servo_time_constant_s: 0.03,
            servo_max_velocity: 6.0,
            faults: SimFaults::default(),
        }
    }
}

/// A fixed-size array of numbers that must have exactly `N` elements. Serde's own array
/// impl reads the first `N` and, with the `toml` deserializer, silently drops the rest.
fn exact_array<'de, D, const N: usize>(d: D) -> Result<[f64; N], D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = Vec::<f64>::deserialize(d)?;
    let len = v.len();
    v.try_into().map_err(|_| {
        serde::de::Error::invalid_length(len, &format!("exactly {N} numbers").as_str())
    })
}

/// The config's fixed-size arrays, by table: (table, key, length, the fix).
/// `joints` is an array of tables; the others are plain tables.
const FIXED_ARRAYS: [(&str, &str, usize, &str); 2] = [
    (
        "joints",
        "limits",
        2,
        "write limits = [min, max] in radians, e.g. limits = [-1.8, 1.8]",
    ),
    (
        "sim",
        "links_m",
        4,
        "write links_m = [base height, upper arm, forearm, wrist-to-fingertip] in metres, \
         e.g. links_m = [0.055, 0.108, 0.100, 0.105], or remove the key for the Koch defaults",
    ),
];

/// Every fixed-size array must have exactly its length. Checked on the raw TOML before the
/// typed parse so that the error names the key (`joints[2].limits`), its line and the fix.
fn check_fixed_arrays(text: &str, path: &Path) -> Result<(), ConfigError> {
    // Text that is not TOML at all is reported by the typed parse, with its line.
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return Ok(());
    };
    for (section, key, len, fix) in FIXED_ARRAYS {
        let tables: Vec<(String, &toml::Table)> = match doc.get(section) {
            Some(toml::Value::Table(t)) => vec![(section.to_string(), t)],
            Some(toml::Value::Array(a)) => a
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.as_table().map(|t| (format!("{section}[{i}]"), t)))
                .collect(),
            _ => continue,
        };
        for (prefix, t) in tables {
            let Some(toml::Value::Array(a)) = t.get(key) else {
                continue;
            };
            if a.len() != len {
                let key = format!("{prefix}.{key}");
                return Err(ConfigError::Invalid {
                    file: path.to_path_buf(),
                    line: find_key_line(text, &key),
                    key,
                    problem: format!(
                        "has {} value{}, it takes exactly {len}",
                        a.len(),
                        if a.len() == 1 { "" } else { "s" }
                    ),
                    fix: fix.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn default_baud() -> u32 {
    1_000_000
}
fn default_protocol() -> u8 {
    2
}
fn one() -> u32 {
    1
}
fn default_health_every() -> u32 {
    50
}
fn default_rate() -> f64 {
    50.0
}
fn default_fine_scale() -> f64 {
    0.25
}
fn default_one_f() -> f64 {
    1.0
}
fn default_deadzone() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}
fn default_registry() -> PathBuf {
    PathBuf::from("policies")
}
fn default_ensemble_m() -> f64 {
    0.01
}
fn default_inline_budget() -> f64 {
    0.25
}
fn default_action_timeout_ms() -> u64 {
    250
}
fn default_data_root() -> PathBuf {
    PathBuf::from("data")
}
fn default_flush_ms() -> u64 {
    100
}
fn default_pre_window() -> usize {
    15
}
fn default_queue() -> usize {
    4096
}
fn default_queue_images() -> usize {
    32
}
fn default_max_step() -> f64 {
    0.05
}
fn default_fault_ticks() -> u32 {
    5
}
fn default_max_temp() -> f64 {
    70.0
}
fn btn_start() -> Button {
    Button::Start
}
fn btn_south() -> Button {
    Button::South
}
fn btn_east() -> Button {
    Button::East
}
fn btn_west() -> Button {
    Button::West
}
fn btn_select() -> Button {
    Button::Select
}
fn btn_north() -> Button {
    Button::North
}
fn btn_rb() -> Button {
    Button::RightBumper
}
fn btn_lb() -> Button {
    Button::LeftBumper
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            rate_hz: default_rate(),
            realtime_priority: None,
            cpu: None,
        }
    }
}

impl Default for TeleopConfig {
    fn default() -> Self {
        Self {
            takeover: TakeoverMode::Hold,
            takeover_button: Button::RightBumper,
            fine_button: Button::LeftBumper,
            fine_scale: default_fine_scale(),
            speed_scale: 1.0,
            deadzone: default_deadzone(),
            require_gamepad: true,
            axes: Vec::new(),
            buttons: EpisodeButtons::default(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            registry: default_registry(),
            temporal_ensemble_m: default_ensemble_m(),
            doubt_threshold: None,
            inference: InferenceMode::default(),
            inline_budget: default_inline_budget(),
            action_timeout_ms: default_action_timeout_ms(),
        }
    }
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            root: default_data_root(),
            flush_ms: default_flush_ms(),
            pre_intervention_window: default_pre_window(),
            queue_frames: default_queue(),
            queue_images: default_queue_images(),
        }
    }
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            max_step_rad: default_max_step(),
            on_estop: TorquePolicy::Hold,
            on_exit: TorquePolicy::Hold,
            fault_ticks: default_fault_ticks(),
            max_temperature_c: default_max_temp(),
        }
    }
}

/// The Dynamixel baud rates an X-series servo can be set to.
pub const VALID_BAUDS: [u32; 8] = [
    9_600, 57_600, 115_200, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 4_500_000,
];

impl RobotConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            fix: if e.kind() == std::io::ErrorKind::NotFound {
                "check the path given to --config (the configs that ship are in robot-configs/)"
                    .into()
            } else {
                "make the file readable by the user running intervened".into()
            },
            error: e,
        })?;
        let mut cfg = Self::parse(&text, path)?;
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        check_fixed_arrays(text, path)?;
        let cfg: RobotConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError::Parse {
                file: path.to_path_buf(),
                line,
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate(path, text)?;
        Ok(cfg)
    }

    /// Checks everything serde cannot.
    pub fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let err = |key: String, problem: String, fix: String| {
            let line = find_key_line(text, &key);
            ConfigError::Invalid {
                file: path.to_path_buf(),
                key,
                line,
                problem,
                fix,
            }
        };
        if self.robot.name.trim().is_empty() {
            return Err(err(
                "robot.name".into(),
                "is empty".into(),
                "give the arm a name, e.g. name = \"koch-follower\"".into(),
            ));
        }
        if self.bus.protocol != 2 {
            return Err(err(
                "bus.protocol".into(),
                format!(
                    "is {}, only Dynamixel Protocol 2.0 is supported",
                    self.bus.protocol
                ),
                "set protocol = 2 (X-series servos speak it)".into(),
            ));
        }
        if !VALID_BAUDS.contains(&self.bus.baud) {
            return Err(err(
                "bus.baud".into(),
                format!("{} is not a Dynamixel baud rate", self.bus.baud),
                format!("use one of {VALID_BAUDS:?} (the Koch arm uses 1000000)"),
            ));
        }
        if self.bus.port.trim().is_empty() {
            return Err(err(
                "bus.port".into(),
                "is empty".into(),
                "set it to the adapter's device (e.g. /dev/ttyUSB0) or to \"sim\"".into(),
            ));
        }
        if self.bus.velocity_current_every == 0 || self.bus.health_every == 0 {
            return Err(err(
                "bus.velocity_current_every".into(),
                "read intervals must be at least 1 tick".into(),
                "use 1 to read every tick".into(),
            ));
        }
        if self.joints.is_empty() {
            return Err(err(
                "joints".into(),
                "no joints are configured".into(),
                "add one [[joints]] table per servo".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for (i, j) in self.joints.iter().enumerate() {
            let key = |f: &str| format!("joints[{i}].{f}");
            if j.name.trim().is_empty() || j.name.contains(char::is_whitespace) {
                return Err(err(
                    key("name"),
                    format!("{:?} is not a usable joint name", j.name),
                    "use a short name without spaces, e.g. \"shoulder_pan\"".into(),
                ));
            }
            if !names.insert(j.name.as_str()) {
                return Err(err(
                    key("name"),
                    format!("joint name {:?} is used twice", j.name),
                    "give every joint a unique name".into(),
                ));
            }
            if j.id > 252 {
                return Err(err(
                    key("id"),
                    format!("servo id {} is out of range", j.id),
                    "Dynamixel ids run 0..=252 (253 and up are reserved)".into(),
                ));
            }
            if !ids.insert(j.id) {
                return Err(err(
                    key("id"),
                    format!("servo id {} is used by two joints", j.id),
                    "every servo on a bus needs its own id".into(),
                ));
            }
            let [lo, hi] = j.limits;
            if !lo.is_finite() || !hi.is_finite() || lo >= hi {
                return Err(err(
                    key("limits"),
                    format!("[{lo}, {hi}] is not an interval [min, max] with min < max"),
                    "write limits = [min, max] in radians, min below max".into(),
                ));
            }
            if j.mode == OperatingMode::Position
                && (lo < -std::f64::consts::PI || hi > std::f64::consts::PI)
            {
                return Err(err(
                    key("limits"),
                    format!("[{lo}, {hi}] exceeds one turn, which position mode cannot reach"),
                    "keep limits within [-3.14159, 3.14159] or use mode = \"extended_position\""
                        .into(),
                ));
            }
        }
        if !(self.control.rate_hz.is_finite()
            && self.control.rate_hz >= 1.0
            && self.control.rate_hz <= 2000.0)
        {
            return Err(err(
                "control.rate_hz".into(),
                format!("{} Hz is outside 1..=2000", self.control.rate_hz),
                "typical rates are 30-500 Hz".into(),
            ));
        }
        if let Some(p) = self.control.realtime_priority {
            if !(1..=99).contains(&p) {
                return Err(err(
                    "control.realtime_priority".into(),
                    format!("{p} is outside 1..=99"),
                    "SCHED_FIFO priorities run 1..=99; 50 is a good choice, or remove the key"
                        .into(),
                ));
            }
        }
        let t = &self.teleop;
        for (i, a) in t.axes.iter().enumerate() {
            if !names.contains(a.joint.as_str()) {
                return Err(err(
                    format!("teleop.axes[{i}].joint"),
                    format!("names joint {:?}, which is not configured", a.joint),
                    format!("use one of {:?}", names.iter().collect::<Vec<_>>()),
                ));
            }
            if !a.rad_per_s.is_finite() || a.rad_per_s == 0.0 || a.rad_per_s.abs() > 10.0 {
                return Err(err(
                    format!("teleop.axes[{i}].rad_per_s"),
                    format!("{} is not a usable speed", a.rad_per_s),
                    "use a non-zero speed of at most 10 rad/s (negative reverses)".into(),
                ));
            }
        }
        if !(t.deadzone >= 0.0 && t.deadzone < 1.0) {
            return Err(err(
                "teleop.deadzone".into(),
                format!("{} is outside [0, 1)", t.deadzone),
                "0.05-0.15 suits most gamepads".into(),
            ));
        }
        if !(t.fine_scale > 0.0
            && t.fine_scale <= 1.0
            && t.speed_scale > 0.0
            && t.speed_scale <= 4.0)
        {
            return Err(err(
                "teleop.fine_scale".into(),
                "fine_scale must be in (0, 1] and speed_scale in (0, 4]".into(),
                "e.g. fine_scale = 0.25, speed_scale = 1.0".into(),
            ));
        }
        let b = &t.buttons;
        let episode_buttons = [
            b.start_episode,
            b.success,
            b.failure,
            b.discard,
            b.estop,
            b.clear_estop,
        ];
        let mut seen = BTreeSet::new();
        for btn in episode_buttons
            .iter()
            .chain([&t.takeover_button, &t.fine_button])
        {
            if !seen.insert(*btn) {
                return Err(err(
                    "teleop.buttons".into(),
                    format!("button {btn:?} has two jobs"),
                    "give takeover, fine mode and each episode button its own button".into(),
                ));
            }
        }
        if !(self.policy.temporal_ensemble_m >= 0.0 && self.policy.temporal_ensemble_m.is_finite())
        {
            return Err(err(
                "policy.temporal_ensemble_m".into(),
                "must be a finite number >= 0".into(),
                "ACT uses 0.01".into(),
            ));
        }
        if !(self.policy.inline_budget > 0.0 && self.policy.inline_budget <= 1.0) {
            return Err(err(
                "policy.inline_budget".into(),
                format!("{} is outside (0, 1]", self.policy.inline_budget),
                "it is the fraction of a period inference may take inline; 0.25 is the default"
                    .into(),
            ));
        }
        let period_ms = 1000.0 / self.control.rate_hz;
        if !(self.policy.action_timeout_ms as f64 >= 2.0 * period_ms
            && self.policy.action_timeout_ms <= 10_000)
        {
            return Err(err(
                "policy.action_timeout_ms".into(),
                format!(
                    "{} ms is outside [2 control periods ({period_ms:.1} ms x 2), 10000]",
                    self.policy.action_timeout_ms
                ),
                "it is how long the policy may go without a usable action before the arm \
                 holds; 250 is the default"
                    .into(),
            ));
        }
        if self.recording.flush_ms == 0 || self.recording.flush_ms > 1000 {
            return Err(err(
                "recording.flush_ms".into(),
                format!("{} ms is outside 1..=1000", self.recording.flush_ms),
                "100 ms bounds the loss on a power cut to a tenth of a second".into(),
            ));
        }
        if self.recording.queue_frames < 16 {
            return Err(err(
                "recording.queue_frames".into(),
                "is below 16".into(),
                "use a few seconds of frames, e.g. 4096".into(),
            ));
        }
        if self.recording.queue_images == 0 {
            return Err(err(
                "recording.queue_images".into(),
                "is 0".into(),
                "use about a second of images, e.g. 32".into(),
            ));
        }
        let s = &self.safety;
        if !(s.max_step_rad > 0.0 && s.max_step_rad <= 0.5) {
            return Err(err(
                "safety.max_step_rad".into(),
                format!("{} rad per tick is outside (0, 0.5]", s.max_step_rad),
                "0.05 rad per tick is 2.5 rad/s at 50 Hz".into(),
            ));
        }
        if s.fault_ticks == 0 {
            return Err(err(
                "safety.fault_ticks".into(),
                "must be at least 1".into(),
                "5 ticks rides out a corrupted packet or two".into(),
            ));
        }
        let sim = &self.sim;
        let positive = |v: f64| v > 0.0;
        let sim_ok = positive(sim.episode_seconds)
            && sim.links_m.iter().all(|l| *l > 0.0 && *l < 2.0)
            && sim.servo_time_constant_s >= 0.0
            && positive(sim.servo_max_velocity);
        if !sim_ok {
            return Err(err(
                "sim".into(),
                "episode_seconds, links_m, servo_time_constant_s and servo_max_velocity must be positive".into(),
                "remove the [sim] table to use the Koch defaults".into(),
            ));
        }
        self.validate_faults(&err)?;
        validate_cameras(&self.cameras).map_err(|e| match e {
            CameraConfigError::Invalid {
                index,
                name,
                key,
                problem,
                fix,
            } => err(
                format!("cameras[{index}].{key}"),
                format!("({name}) {problem}"),
                fix,
            ),
        })?;
        Ok(())
    }

    /// `[sim.faults]`: rates are probabilities, times are non-negative, the silent servo is
    /// on the bus.
    fn validate_faults(
        &self,
        err: &dyn Fn(String, String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let f = &self.sim.faults;
        let key = |k: &str| format!("sim.faults.{k}");
        for (name, rate) in [
            ("corrupt_crc_rate", f.corrupt_crc_rate),
            ("drop_reply_rate", f.drop_reply_rate),
            ("late_reply_rate", f.late_reply_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(err(
                    key(name),
                    format!("{rate} is not a probability in [0, 1]"),
                    format!("{name} is the fraction of replies affected, e.g. 0.01 for 1%"),
                ));
            }
        }
        if f.late_reply_ms > 10_000 {
            return Err(err(
                key("late_reply_ms"),
                format!("{} ms is above 10000", f.late_reply_ms),
                "a late reply is a few tens of milliseconds late, e.g. 50".into(),
            ));
        }
        let seconds = [
            ("unplug_at_s", f.unplug_at_s.unwrap_or(0.0)),
            ("unplug_for_s", f.unplug_for_s),
            ("silent_at_s", f.silent_at_s.unwrap_or(0.0)),
            ("silent_for_s", f.silent_for_s),
        ];
        for (name, v) in seconds {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(
                    key(name),
                    format!("{v} is not a time in seconds >= 0"),
                    "write a number of seconds, e.g. 30.0".into(),
                ));
            }
        }
        match (f.silent_servo, f.silent_at_s) {
            (Some(id), Some(_)) if !self.joints.iter().any(|j| j.id == id) => {
                return Err(err(
                    key("silent_servo"),
                    format!("servo id {id} is not on the bus"),
                    format!(
                        "use one of the joints' ids {:?}",
                        self.joints.iter().map(|j| j.id).collect::<Vec<_>>()
                    ),
                ));
            }
            (Some(_), None) => {
                return Err(err(
                    key("silent_servo"),
                    "is set without silent_at_s".into(),
                    "add silent_at_s = <seconds after start> (and optionally silent_for_s)".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    key("silent_at_s"),
                    "is set without silent_servo".into(),
                    "add silent_servo = <servo id>".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The control period in seconds.
    pub fn period_s(&self) -> f64 {
        1.0 / self.control.rate_hz
    }

    /// The joint names in config order: the order of every state and action vector.
    pub fn joint_names(&self) -> Vec<String> {
        self.joints.iter().map(|j| j.name.clone()).collect()
    }

    /// Resolves a path from the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.source.as_ref().and_then(|s| s.parent()) {
            Some(dir) => dir.join(p),
            None => p.to_path_buf(),
        }
    }

    /// The calibration file's path, if the config names one.
    pub fn calibration_path(&self) -> Option<PathBuf> {
        self.calibration.as_ref().map(|p| self.resolve(p))
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Best-effort line of a dotted key such as `joints[2].limits` or `bus.baud`: finds the table
/// header (counting array-of-table headers) and then the key under it.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop()?;
    // Table path and optional index: "joints[2]" or "teleop.axes[0]".
    let table = parts.join(".");
    let (table_name, index) = match table.find('[') {
        Some(p) => (
            table[..p].to_string(),
            table[p + 1..].trim_end_matches(']').parse::<usize>().ok(),
        ),
        None => (table.clone(), None),
    };
    let leaf_name = leaf.split('[').next().unwrap_or(leaf);
    let mut in_table = table_name.is_empty();
    let mut count = 0usize;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            let header = l.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = false;
            if header == table_name {
                if l.starts_with("[[") {
                    in_table = index == Some(count);
                    count += 1;
                } else {
                    in_table = true;
                }
            }
            if table_name.is_empty() && header == leaf_name {
                return Some(n + 1);
            }
            continue;
        }
        if in_table {
            if let Some((k, _)) = l.split_once('=') {
                if k.trim() == leaf_name {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}
