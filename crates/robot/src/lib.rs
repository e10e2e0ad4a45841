//! Robot description shared by every part of intervened: the config file, servo models,
//! and the calibration that turns servo ticks into joint radians.

pub mod calibration;
pub mod camera;
pub mod config;
pub mod error;
pub mod model;
pub mod sensor;

pub use calibration::{Calibration, JointCalibration, TICKS_PER_TURN};
pub use camera::{CameraConfig, CameraConfigError, CameraDevice, SimCameraPose};
pub use config::{
    Axis, AxisMapping, BusConfig, Button, ControlConfig, EpisodeButtons, InferenceMode,
    JointConfig, OperatingMode, PolicyConfig, RecordingConfig, RobotConfig, SafetyConfig,
    SimConfig, SimFaults, TakeoverMode, TeleopConfig, TorquePolicy,
};
pub use error::{CalibrationError, ConfigError};
pub use model::ServoModel;
pub use sensor::{SensorError, SensorSource};
