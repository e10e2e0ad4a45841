//! The intervened control daemon: the fixed-rate control thread, arbitration between the
//! policy and the human, the safety filter every goal passes, and the service shell around it.

pub mod adapters;
pub mod arbiter;
pub mod clock;
pub mod control;
pub mod episode_sink;
pub mod fault;
pub mod hardware;
pub mod protocol;
pub mod recording;
pub mod rt;
pub mod runtime;
pub mod safety;
pub mod service;
pub mod sim_rig;
pub mod stats;
pub mod status;
pub mod teleop;
