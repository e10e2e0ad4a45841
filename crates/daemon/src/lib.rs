//! The intervened daemon: the concrete adapters behind the control core's ports (the Dynamixel
//! arm, the gamepad, the tch policy, the MCAP recorder), the runtime that assembles them, and
//! the service shell (control socket, systemd, signals, the policy registry).
//!
//! The loop itself, arbitration, the safety filter and the ports live in `intervened-core`;
//! they are re-exported here under their old paths. The simulated robot (`intervened-sim-rig`)
//! is assembled only with the `sim` feature.

pub use intervened_core::{
    arbiter, cameras, clock, control, fault, hardware, protocol, recording, rt, safety, stats,
    status, teleop,
};

pub mod adapters;
pub mod episode_sink;
pub mod runtime;
pub mod service;
/// The simulated robot (feature `sim`).
#[cfg(feature = "sim")]
pub use intervened_sim_rig as sim_rig;
