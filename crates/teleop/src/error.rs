//! Errors of the teleop crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TeleopError {
    /// An axis mapping names a joint the arm does not have.
    #[error(
        "teleop axis {axis} drives joint {joint:?}, which is not one of the arm's joints {known:?}"
    )]
    UnknownJoint {
        axis: &'static str,
        joint: String,
        known: Vec<String>,
    },
    /// A vector had the wrong number of joints.
    #[error("{what} has {got} values but the arm has {expected} joints")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A measured position was NaN or infinite.
    #[error("{what} for joint {joint} is not finite ({value})")]
    NonFinite {
        what: &'static str,
        joint: usize,
        value: f64,
    },
    /// A joint limit is not an interval.
    #[error("joint {joint} limits [{lo}, {hi}] are not an interval with min < max")]
    BadLimits { joint: usize, lo: f64, hi: f64 },
    /// The gamepad backend could not start (no gamepad will be available).
    #[error(
        "gamepad input unavailable: {0} (is the user in the `input` group and /dev/input present?)"
    )]
    GamepadInit(String),
    /// The teleop config is unusable.
    #[error("teleop config: {0}")]
    Config(String),
    /// The integrator was stepped before it was reset to measured positions.
    #[error("teleop integrator stepped before reset_to(measured)")]
    NotArmed,
    /// gilrs has no backend for this platform.
    #[error("gamepad input is not supported on this platform")]
    Unsupported,
    /// The action is refused while the e-stop is latched.
    #[error(
        "the e-stop is latched; clear it first (hold the e-stop button, press the clear button)"
    )]
    EStopLatched,
    /// An action needs a connected gamepad and there is none.
    #[error("no gamepad is connected")]
    NoGamepad,
    /// The gamepad thread could not be spawned.
    #[error("could not start the gamepad thread: {0}")]
    Thread(#[from] std::io::Error),
}
