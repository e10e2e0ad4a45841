use thiserror::Error;

/// Why the world, the expert or the simulated human refused an input.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum WorldError {
    #[error("robot config has no joint named {name:?}; the simulated Koch arm needs it")]
    MissingJoint { name: &'static str },
    #[error("expected {expected} joint values (config order), got {got}")]
    JointCount { expected: usize, got: usize },
    #[error("expected {expected} task features, got {got}")]
    FeatureCount { expected: usize, got: usize },
    #[error("{what} is not finite")]
    NonFinite { what: &'static str },
    #[error("time step {dt} s is not a positive finite number")]
    BadTimeStep { dt: f64 },
    #[error("world parameter {name} is invalid: {problem}")]
    BadParam { name: &'static str, problem: String },
    #[error("gamepad mapping: {0}")]
    Teleop(String),
}

/// Why inverse kinematics has no solution.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum IkError {
    #[error("target or pitch is not finite")]
    NonFinite,
    #[error("target is out of reach: wrist point is {distance_m:.4} m from the shoulder, reach is {min_m:.4}..{max_m:.4} m")]
    OutOfReach {
        distance_m: f64,
        min_m: f64,
        max_m: f64,
    },
    #[error("joint {joint} would need {value:.4} rad, outside its limits [{min:.4}, {max:.4}]")]
    JointLimit {
        joint: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
}
