//! The hardware-free control core: the fixed-rate control loop, arbitration between the policy
//! and the human, the safety filter every goal passes, pacing, statistics, and the ports the
//! loop talks through (arm, gamepad, policy, recorder) with their typed faults.
//!
//! Nothing here knows a bus, a gamepad backend, an inference runtime or a simulator: the
//! concrete adapters live in `intervened-daemon`, the simulated robot in `intervened-sim-rig`,
//! and both plug in through the traits below.

pub mod arbiter;
pub mod cameras;
pub mod clock;
pub mod control;
pub mod dummy;
pub mod fault;
pub mod hardware;
pub mod protocol;
pub mod recording;
pub mod rt;
pub mod safety;
pub mod stats;
pub mod status;
pub mod teleop;
