//! What `intervened retrain` passes in, and the checks on it.

use std::path::PathBuf;

use intervened_robot::RobotConfig;
use serde::Serialize;
use tch::Device;

use crate::dataset::Weighting;
use crate::error::TrainError;

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when `tch::Cuda::is_available()`, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, TrainError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(TrainError::InvalidOption {
                name: "device",
                message:
                    "CUDA was asked for but libtorch sees no CUDA device; use --device cpu or auto"
                        .into(),
            }),
        }
    }
}

/// Chunk length of the default recipe: 20 future goals (0.4 s at 50 Hz), executed with
/// temporal ensembling. `bench recipes` compares it with the alternatives (docs/recipes.md).
pub const DEFAULT_CHUNK: usize = 20;

/// Fewest optimiser steps per member of the default recipe.
pub const DEFAULT_MIN_STEPS: usize = 2000;

/// What `intervened retrain` passes in.
#[derive(Debug, Clone)]
pub struct RetrainOptions {
    /// The data root (holding `sessions/`).
    pub data: PathBuf,
    /// The policy registry directory.
    pub registry: PathBuf,
    /// When given: only episodes of this robot type and joint list are used, and the fps
    /// must match its control rate.
    pub robot: Option<RobotConfig>,
    pub weighting: Weighting,
    /// Action chunk length k (1 = no chunking).
    pub chunk: usize,
    /// Predict goals as deltas from the measured joint positions (see [`Dataset::into_delta`]).
    pub delta: bool,
    /// Bootstrap ensemble members K (1 = no ensemble).
    pub ensemble: usize,
    /// See [`TrainConfig::bootstrap`].
    pub bootstrap: bool,
    /// Passes over the (weighted) training set; an epoch is ceil(trainable frames / batch) steps.
    pub epochs: usize,
    /// Lower bound on optimiser steps per member: a few demonstrations make short epochs, and
    /// `docs/recipes.md` shows 100 of them undertrain (early stopping still applies).
    pub min_steps: usize,
    /// Upper bound on optimiser steps per member, whatever `epochs` says.
    pub max_steps: Option<usize>,
    pub batch: usize,
    pub seed: u64,
    /// Validation evaluations without improvement before stopping (0: never stop early).
    pub patience: usize,
    /// Fraction of episodes held out for validation (whole episodes).
    pub val_fraction: f64,
    /// Sirius pre-intervention window in frames.
    pub pre_intervention_window: usize,
    pub lr: f64,
    /// Width of the two hidden layers.
    pub hidden: usize,
    /// For an ensemble: the share of held-out frames on which the suggested doubt threshold
    /// would ask for help (ThriftyDAgger's target rate).
    pub ask_rate: f64,
    /// See [`TrainConfig::normalize_obs`].
    pub normalize_obs: bool,
    /// See [`TrainConfig::obs_noise`].
    pub obs_noise: f64,
    /// Cameras an image policy reads, in `forward`'s order (empty: a state policy). An image
    /// policy observes the joints only: the task features (`block.*`) are dropped.
    pub cameras: Vec<String>,
    /// Random-shift augmentation of the images (see [`TrainConfig::image_shift`]).
    pub image_shift: bool,
    /// No progress bar.
    pub quiet: bool,
    pub device: DeviceChoice,
}

impl RetrainOptions {
    pub fn new(data: impl Into<PathBuf>, registry: impl Into<PathBuf>) -> Self {
        RetrainOptions {
            data: data.into(),
            registry: registry.into(),
            robot: None,
            weighting: Weighting::HgDagger,
            chunk: DEFAULT_CHUNK,
            delta: false,
            ensemble: 1,
            bootstrap: true,
            epochs: 100,
            min_steps: DEFAULT_MIN_STEPS,
            max_steps: Some(20_000),
            batch: 256,
            seed: 0,
            patience: 10,
            val_fraction: 0.2,
            pre_intervention_window: 15,
            lr: 3e-4,
            hidden: 256,
            ask_rate: 0.01,
            normalize_obs: true,
            obs_noise: 0.0,
            cameras: Vec::new(),
            image_shift: true,
            quiet: false,
            device: DeviceChoice::Auto,
        }
    }
}

pub(super) fn check_options(opts: &RetrainOptions) -> Result<(), TrainError> {
    let bad = |name, message: &str| {
        Err(TrainError::InvalidOption {
            name,
            message: message.to_string(),
        })
    };
    if opts.chunk == 0 {
        return bad("chunk", "must be at least 1");
    }
    if opts.ensemble == 0 {
        return bad("ensemble", "must be at least 1");
    }
    if opts.batch == 0 {
        return bad("batch", "must be at least 1");
    }
    if opts.epochs == 0 || opts.max_steps == Some(0) {
        return bad("epochs/max_steps", "must be at least 1");
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return bad("val_fraction", "must be in [0, 1)");
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return bad("lr", "must be a positive number");
    }
    if !(opts.ask_rate > 0.0 && opts.ask_rate < 1.0) {
        return bad("ask_rate", "must be in (0, 1)");
    }
    if opts.hidden == 0 {
        return bad("hidden", "must be at least 1");
    }
    if !(opts.obs_noise.is_finite() && opts.obs_noise >= 0.0) {
        return bad("obs_noise", "must be a non-negative standard deviation");
    }
    for (i, c) in opts.cameras.iter().enumerate() {
        if c.is_empty() || opts.cameras[..i].contains(c) {
            return bad("cameras", &format!("`{c}` is empty or listed twice"));
        }
    }
    Ok(())
}
