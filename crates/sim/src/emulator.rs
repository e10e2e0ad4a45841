//! The emulator for a robot config, started in one place for the daemon, `intervened sim`
//! and `intervened doctor`.

use intervened_robot::RobotConfig;

use crate::chain::{specs_from_config, Chain, Dynamics, SharedChain};
use crate::server::{PtyServer, ServerOptions};

/// The emulated chain of a config (one servo per joint, the config's `[sim]` dynamics) and
/// the pty it is served on.
pub struct SimBus {
    pub chain: SharedChain,
    pub server: PtyServer,
}

impl SimBus {
    /// As the daemon runs it: with the config's `[sim.faults]` (none by default).
    pub fn start(cfg: &RobotConfig, realtime: bool) -> std::io::Result<Self> {
        Self::start_with(
            cfg,
            ServerOptions {
                realtime,
                ..Default::default()
            }
            .with_faults(&cfg.sim.faults),
        )
    }

    /// With the caller's server options (faults, link directory, real time).
    pub fn start_with(cfg: &RobotConfig, options: ServerOptions) -> std::io::Result<Self> {
        let chain = Chain::new(specs_from_config(cfg), Dynamics::from(&cfg.sim)).shared();
        let server = PtyServer::start(chain.clone(), options)?;
        Ok(Self { chain, server })
    }
}
