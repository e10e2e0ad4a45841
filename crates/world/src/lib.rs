//! The simulated arm-and-block world for intervened: everything the imitation-learning loop
//! needs to run with no hardware, deterministically and faster than real time.
//!
//! - [`arm`]: Koch v1.1 follower kinematics (zero pose and signs documented there), analytic
//!   FK and IK.
//! - [`world`]: a 3 cm block on the table, grasp / release / success, task features, and the
//!   [`WorldSensor`] the daemon reads like any other observation source.
//! - [`expert`]: the scripted pick-and-lift expert (a pure function of state, so it can label
//!   any visited state).
//! - [`human`]: the simulated human, who demonstrates or supervises through the gamepad mapping.
//! - [`sim_loop`]: first-order servos, for closed-loop tests and offline rollouts.
//!
//! This crate never talks to servos: the daemon hands it measured joint angles (radians,
//! config order) and the time step each tick.

pub mod arm;
pub mod error;
pub mod expert;
pub mod human;
pub mod sim_loop;
pub mod world;

pub use arm::{ArmModel, JointIndex, TipPose, ARM_JOINTS, FINGER_M, PITCH_DOWN};
pub use error::{IkError, WorldError};
pub use expert::{Expert, ExpertParams, Phase, Plan};
pub use human::{AskStats, Gate, HumanCommand, HumanParams, SimulatedHuman, MISS_WINDOW_S};
pub use sim_loop::FirstOrderServos;
pub use world::{EpisodeTrace, StepEvents, World, WorldParams, WorldSensor, FEATURE_NAMES};
