//! Loading what the daemon runs with: the policy, the calibration, the data root's lock.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use intervened_policy::{Policy, PolicyExpectations, PolicyRunner, RunnerOptions};
use intervened_robot::{Calibration, RobotConfig};

use crate::adapters::TchPolicy;
use crate::control::PolicyDriver;
use crate::service::{lock_pid_file, LockError};

/// Loads a policy for this robot and wraps it for the loop.
///
/// With `lockstep = true` inference always runs inline: simulated time stands still while the
/// model thinks, so a worker thread would only make runs unrepeatable.
pub fn load_policy(
    cfg: &RobotConfig,
    dir: &Path,
    feature_names: &[String],
    lockstep: bool,
) -> Result<Box<dyn PolicyDriver>> {
    let expect = PolicyExpectations::for_robot(cfg, feature_names);
    let policy =
        Policy::load(dir, &expect).with_context(|| format!("loading policy {}", dir.display()))?;
    let version = policy.sidecar().version.clone();
    // Loading checked that the robot has every camera the policy reads.
    let cameras = policy
        .cameras()
        .iter()
        .filter_map(|c| cfg.cameras.iter().position(|cc| cc.name == c.name))
        .collect();
    let obs_dim = policy.obs_dim();
    let mut ro = RunnerOptions::from_config(cfg);
    if lockstep {
        ro.inline_budget = 1e6;
        ro.start_on_worker = false;
    }
    let runner = PolicyRunner::new(policy, ro);
    Ok(Box::new(TchPolicy::new(runner, version, cameras, obs_dim)))
}

/// The config's calibration, checked against it; the identity calibration where the config
/// names none and the bus is simulated.
pub fn load_calibration(cfg: &RobotConfig) -> Result<(Calibration, PathBuf)> {
    match cfg.calibration_path() {
        Some(p) => Ok((Calibration::load(&p, cfg)?, p)),
        None if cfg.bus.is_sim() => Ok((Calibration::identity(cfg), PathBuf::from("<identity>"))),
        None => bail!(
            "{}: no `calibration` file is named; run `intervened calibrate --config {0}` and add calibration = \"...\"",
            cfg.source.as_deref().unwrap_or(Path::new("config")).display()
        ),
    }
}

/// One daemon per data root: an flock on `<root>/intervened.lock`, held until the process
/// ends. Two daemons recording into one root would write the same episode files.
pub fn lock_data_root(root: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the data root {}", root.display()))?;
    let path = root.join("intervened.lock");
    match lock_pid_file(&path) {
        Ok(f) => Ok(f),
        Err(LockError::Held(pid)) => bail!(
            "data root {} is in use by another intervened{}\n  fix: stop that daemon first, or record into another --data",
            root.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(LockError::Io(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}
