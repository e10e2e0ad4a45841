//! How to run the daemon, and what a run reports.

use std::path::PathBuf;
#[cfg(feature = "sim")]
use std::sync::{Arc, Mutex};

#[cfg(feature = "sim")]
use crossbeam_channel::Sender;
#[cfg(feature = "sim")]
use intervened_world::HumanParams;

use crate::control::LoopReport;
#[cfg(feature = "sim")]
use crate::status::Status;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Overrides the config's bus port.
    pub port: Option<String>,
    /// Overrides the config's data root.
    pub data: Option<PathBuf>,
    /// The control socket; none serves no socket.
    pub socket: Option<PathBuf>,
    /// A policy directory (policy.pt + policy.json); default: the registry's `current`.
    pub policy: Option<PathBuf>,
    /// Start this many episodes by itself, then exit.
    pub episodes: Option<u64>,
    /// Episodes are teleoperated demonstrations.
    pub demo: bool,
    /// The simulated human drives the virtual gamepad (simulated bus only).
    #[cfg(feature = "sim")]
    pub sim_human: bool,
    #[cfg(feature = "sim")]
    pub human: HumanParams,
    /// Run the simulator in real time instead of lockstep.
    pub realtime: bool,
    /// Record episodes (on by default).
    pub record: bool,
    pub max_ticks: Option<u64>,
    pub task: String,
    /// Seed override for the simulated world.
    pub seed: Option<u64>,
    /// Simulated bus only: receives handles to the emulated chain and the virtual gamepad
    /// before the loop starts, so tests can inject faults and press buttons.
    #[cfg(feature = "sim")]
    pub sim_handles: Option<Sender<SimHandles>>,
    /// Name the session instead of using the UTC start time.
    pub session_id: Option<String>,
    /// Overrides `policy.inference`. In lockstep inference otherwise runs inline (repeatable
    /// runs); setting this keeps the real-time arrangement there too (tests of the control
    /// thread itself).
    pub inference: Option<intervened_robot::InferenceMode>,
}

/// What a test can reach inside a simulated run.
#[cfg(feature = "sim")]
#[derive(Clone)]
pub struct SimHandles {
    pub chain: intervened_sim::SharedChain,
    pub pad: intervened_teleop::VirtualGamepad,
    /// The loop's status, as the control socket serves it.
    pub status: Arc<Mutex<Status>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            port: None,
            data: None,
            socket: None,
            policy: None,
            episodes: None,
            demo: false,
            #[cfg(feature = "sim")]
            sim_human: false,
            #[cfg(feature = "sim")]
            human: HumanParams::default(),
            realtime: false,
            record: true,
            max_ticks: None,
            task: "pick up the block".into(),
            seed: None,
            #[cfg(feature = "sim")]
            sim_handles: None,
            session_id: None,
            inference: None,
        }
    }
}

/// What a run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub loop_report: LoopReport,
    pub session_id: Option<String>,
    pub data_root: PathBuf,
    pub policy_version: Option<String>,
    pub wall_s: f64,
    /// The simulator ran in lockstep (latencies are in simulated time).
    pub lockstep: bool,
    /// On the simulator with a robot-gated human: how well the robot asked for help.
    #[cfg(feature = "sim")]
    pub asks: Option<intervened_world::AskStats>,
    /// On the simulated bus: the emulator's counters (injected faults included).
    #[cfg(feature = "sim")]
    pub sim_stats: Option<intervened_sim::ServerStats>,
}
