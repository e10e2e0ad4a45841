//! The policy registry watcher: a new `current` policy is loaded off the control thread and
//! queued for the loop, which installs it between episodes.

use std::path::PathBuf;

use crossbeam_channel::Sender;
use intervened_robot::RobotConfig;
use tracing::{error, info};

use super::load::load_policy;
use crate::control::PolicyDriver;
use crate::service::registry_current;

pub(super) struct PolicyWatch {
    pub(super) cfg: RobotConfig,
    pub(super) registry: PathBuf,
    pub(super) current: Option<PathBuf>,
    pub(super) feature_names: Vec<String>,
    pub(super) updates: Sender<Box<dyn PolicyDriver>>,
    pub(super) watch: bool,
    pub(super) lockstep: bool,
}

impl PolicyWatch {
    /// Loads the registry's current policy if it changed, and queues it for the loop, which
    /// installs it between episodes. A policy that fails to load is reported and skipped: the
    /// running one stays.
    pub(super) async fn check(&mut self, forced: bool) {
        let now = registry_current(&self.registry);
        if now.is_none() || (now == self.current && !forced) {
            return;
        }
        let Some(dir) = now.clone() else { return };
        let (cfg, names) = (self.cfg.clone(), self.feature_names.clone());
        let lockstep = self.lockstep;
        let loaded =
            tokio::task::spawn_blocking(move || load_policy(&cfg, &dir, &names, lockstep)).await;
        match loaded {
            Ok(Ok(p)) => {
                info!(
                    version = p.version(),
                    "new policy queued; it takes over between episodes"
                );
                // Replace a policy still waiting in the queue.
                if let Err(crossbeam_channel::TrySendError::Full(p)) = self.updates.try_send(p) {
                    let _ = self.updates.try_send(p);
                }
                self.current = now;
            }
            Ok(Err(e)) => {
                error!("new policy rejected, the running one stays: {e:#}");
                self.current = now;
            }
            Err(e) => error!("policy load task failed: {e}"),
        }
    }
}
