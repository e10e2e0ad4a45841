//! The retrain job end to end: episodes -> checks -> dataset -> training -> export ->
//! verification -> publish. Any failure before the publish's final rename leaves the registry
//! (and its `current` link) as it was.
//!
//! Bad data policy:
//! - a truncated episode (crash, power cut) is used up to its last readable frame and listed
//!   in the report;
//! - an episode of another robot type, another joint list or observation layout, another
//!   frame rate, with no frames, or marked discarded is skipped and listed with the reason;
//! - without `--robot`, episodes of several robot types abort the job (which one is meant is
//!   not guessable);
//! - no episodes, or no frames the chosen weighting trains on, is an error naming the data
//!   directory and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use intervened_policy::{
    sha256_file, write_sidecar, ActionKind, Policy, PolicyExpectations, PolicySidecar,
    FORMAT_VERSION,
};
use intervened_robot::RobotConfig;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tch::{CModule, Device, Kind, Tensor};
use tracing::{info, warn};

use crate::dataset::{
    class_mass, sample_weights, split_by_episode, ClassMass, Dataset, EpisodeData, Label,
    LabelCounts, Weighting,
};
use crate::error::TrainError;
use crate::model::TrainedPolicy;
use crate::plot::plot_training;
use crate::registry::{self, LOSS_PLOT_FILE, POLICY_FILE};
use crate::train::{train, MemberReport, TrainConfig};

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
            quiet: false,
            device: DeviceChoice::Auto,
        }
    }
}

/// One episode as loaded from disk (or built by a caller), with what the job checks.
#[derive(Debug, Clone)]
pub struct LoadedEpisode {
    pub path: PathBuf,
    pub session: String,
    pub robot_type: String,
    pub joint_names: Vec<String>,
    pub task_feature_names: Vec<String>,
    pub fps: f64,
    pub policy_version: Option<String>,
    pub truncated: bool,
    /// The recorder marked it discarded (operator pressed discard).
    pub discarded: bool,
    /// Hex sha256 of the episode file: the data hash is built from these.
    pub content_sha256: String,
    pub data: EpisodeData,
}

impl LoadedEpisode {
    /// Model input names: `<joint>.pos` in order, then the task features (the policy
    /// crate's convention, see `PolicyExpectations::for_robot`).
    pub fn observation_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .joint_names
            .iter()
            .map(|j| format!("{j}.pos"))
            .collect();
        v.extend(self.task_feature_names.iter().cloned());
        v
    }
}

/// Everything found under a data root: readable episodes, and files that could not be read.
#[derive(Debug, Clone, Default)]
pub struct EpisodeSet {
    pub episodes: Vec<LoadedEpisode>,
    pub unreadable: Vec<Exclusion>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclusion {
    pub episode: String,
    pub reason: String,
}

/// Metrics of one DAgger round (a session), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundMetrics {
    pub round: String,
    pub policy_versions: Vec<String>,
    pub episodes: usize,
    pub frames: LabelCounts,
    pub takeovers: usize,
    /// Intervention frames / (robot + pre-intervention + intervention frames); None for a
    /// round without policy-driven episodes.
    pub intervention_rate: Option<f64>,
}

/// What a successful retrain did; also written (as provenance) into `policy.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RetrainReport {
    pub version: String,
    pub policy_dir: PathBuf,
    pub data_dir: PathBuf,
    pub data_sha256: String,
    pub episodes_used: usize,
    pub train_episodes: usize,
    pub val_episodes: usize,
    pub excluded: Vec<Exclusion>,
    pub truncated: Vec<String>,
    pub counts: LabelCounts,
    pub weighting: Weighting,
    pub class_mass: ClassMass,
    pub chunk: usize,
    pub ensemble: usize,
    pub seed: u64,
    pub steps_per_member: usize,
    pub device: String,
    pub rounds: Vec<RoundMetrics>,
    pub members: Vec<MemberReport>,
    /// Largest |reloaded TorchScript - trained model| over the held-out check inputs.
    pub verify_max_abs_diff: f64,
    pub duration_s: f64,
    /// For an ensemble: its doubt on held-out frames, and the threshold to ask for help at.
    pub doubt: Option<DoubtCalibration>,
}

impl std::fmt::Display for RetrainReport {
    /// A short human summary for the CLI (the full report serialises to JSON).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "published {} -> {}",
            self.version,
            self.policy_dir.display()
        )?;
        writeln!(
            f,
            "data: {} episodes used ({} train, {} validation), {} skipped, {} truncated; sha256 {}",
            self.episodes_used,
            self.train_episodes,
            self.val_episodes,
            self.excluded.len(),
            self.truncated.len(),
            self.data_sha256
        )?;
        for x in &self.excluded {
            writeln!(f, "  skipped {}: {}", x.episode, x.reason)?;
        }
        for t in &self.truncated {
            writeln!(f, "  truncated (used up to its cut) {t}")?;
        }
        let c = &self.counts;
        let m = &self.class_mass;
        writeln!(
            f,
            "frames: {} demo, {} robot, {} intervention, {} pre-intervention; {} mass {:.2}/{:.2}/{:.2}/{:.2}",
            c.demo,
            c.robot,
            c.intervention,
            c.pre_intervention,
            self.weighting,
            m.demo,
            m.robot,
            m.intervention,
            m.pre_intervention
        )?;
        for mr in &self.members {
            let val = mr
                .best_val_loss
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "n/a".into());
            writeln!(
                f,
                "member {}: {} steps{}, loss {:.4} -> {:.4}, best validation {val}",
                mr.member,
                mr.steps_run,
                if mr.stopped_early {
                    " (early stop)"
                } else {
                    ""
                },
                mr.initial_loss,
                mr.final_train_loss
            )?;
        }
        if let Some(d) = &self.doubt {
            writeln!(
                f,
                "doubt on {} held-out frames: p50 {:.2e}, p90 {:.2e}, p99 {:.2e}; to ask for help on about {:.0}% of such frames set [policy] doubt_threshold = {:.3e}",
                d.frames,
                d.p50,
                d.p90,
                d.p99,
                d.ask_rate * 100.0,
                d.threshold
            )?;
        }
        write!(
            f,
            "chunk {}, ensemble {}, device {}, export checked (max diff {:.2e}), {:.1} s",
            self.chunk, self.ensemble, self.device, self.verify_max_abs_diff, self.duration_s
        )
    }
}

/// An ensemble's doubt (see `intervened_policy::ensemble_doubt`) over held-out frames, and the
/// threshold above which the robot asks for help: ThriftyDAgger's rule, the `1 - ask_rate`
/// quantile of the held-out doubts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DoubtCalibration {
    pub frames: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub ask_rate: f64,
    pub threshold: f64,
}

fn calibrate_doubt(
    policy: &crate::model::TrainedPolicy,
    rows: &[Vec<f32>],
    ask_rate: f64,
) -> Result<Option<DoubtCalibration>, TrainError> {
    let (k, chunk, act) = (
        policy.ensemble_size(),
        policy.spec.chunk,
        policy.spec.act_dim,
    );
    if k < 2 || rows.is_empty() {
        return Ok(None);
    }
    let mut doubts = Vec::with_capacity(rows.len());
    for batch in rows.chunks(1024) {
        let out = policy.predict(batch)?;
        let per_row = k * chunk * act;
        doubts.extend(
            out.chunks_exact(per_row)
                .filter_map(|r| intervened_policy::ensemble_doubt(r, k, chunk, act))
                .map(f64::from),
        );
    }
    doubts.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = ((doubts.len() - 1) as f64 * p).round() as usize;
        doubts.get(i).copied().unwrap_or(f64::NAN)
    };
    Ok(Some(DoubtCalibration {
        frames: doubts.len(),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        ask_rate,
        threshold: q(1.0 - ask_rate),
    }))
}

/// Retrains from every session under `opts.data` and publishes the result.
pub fn retrain(opts: &RetrainOptions) -> Result<RetrainReport, TrainError> {
    let set = crate::source::load_episodes(&opts.data, opts.pre_intervention_window)?;
    retrain_from_episodes(opts, set)
}

/// Same as [`retrain`], from episodes already in memory (tests, other front ends).
pub fn retrain_from_episodes(
    opts: &RetrainOptions,
    set: EpisodeSet,
) -> Result<RetrainReport, TrainError> {
    let started = Instant::now();
    check_options(opts)?;
    let EpisodeSet {
        mut episodes,
        unreadable,
    } = set;
    if episodes.is_empty() && unreadable.is_empty() {
        return Err(TrainError::NoEpisodes {
            dir: opts.data.clone(),
        });
    }
    episodes.sort_by(|a, b| a.path.cmp(&b.path));
    let n_found = episodes.len() + unreadable.len();
    let (used, mut excluded) = select_episodes(opts, episodes)?;
    excluded.splice(0..0, unreadable);
    for x in &excluded {
        warn!(episode = %x.episode, reason = %x.reason, "episode skipped");
    }
    let reference = used
        .first()
        .cloned()
        .ok_or_else(|| TrainError::NoTrainableFrames {
            dir: opts.data.clone(),
            weighting: opts.weighting.to_string(),
            detail: format!(
                "all {n_found} episodes were skipped ({})",
                summarise(&excluded)
            ),
        })?;
    let truncated: Vec<String> = used
        .iter()
        .filter(|e| e.truncated)
        .map(|e| e.data.id.clone())
        .collect();
    for t in &truncated {
        warn!(episode = %t, "truncated episode: using its frames up to where it was cut");
    }

    let data: Vec<EpisodeData> = used.iter().map(|e| e.data.clone()).collect();
    let ds = Dataset::from_episodes(&data, opts.chunk)?;
    let ds = if opts.delta { ds.into_delta()? } else { ds };
    let labels: Vec<Label> = ds.samples.iter().map(|s| s.label).collect();
    let counts = LabelCounts::from_labels(&labels);
    let mass = class_mass(&counts, opts.weighting);
    if mass.demo + mass.robot + mass.intervention + mass.pre_intervention <= 0.0 {
        return Err(TrainError::NoTrainableFrames {
            dir: opts.data.clone(),
            weighting: opts.weighting.to_string(),
            detail: format!(
                "{} frames in {} episodes: {} demo, {} robot, {} intervention, {} pre-intervention",
                counts.total(),
                used.len(),
                counts.demo,
                counts.robot,
                counts.intervention,
                counts.pre_intervention
            ),
        });
    }

    let (train_eps, val_eps) = split(&ds, opts);
    let device = opts.device.resolve()?;
    let trainable_train = {
        let l: Vec<Label> = ds.subset(&train_eps).iter().map(|s| s.label).collect();
        sample_weights(&l, opts.weighting)
            .iter()
            .filter(|w| **w > 0.0)
            .count()
    };
    let steps_per_epoch = trainable_train.div_ceil(opts.batch).max(1);
    let steps = opts
        .epochs
        .saturating_mul(steps_per_epoch)
        .max(opts.min_steps)
        .min(opts.max_steps.unwrap_or(usize::MAX))
        .max(1);
    info!(
        episodes = used.len(),
        train = train_eps.len(),
        val = val_eps.len(),
        frames = counts.total(),
        steps,
        device = ?device,
        weighting = %opts.weighting,
        "training"
    );
    let cfg = TrainConfig {
        weighting: opts.weighting,
        ensemble: opts.ensemble,
        bootstrap: opts.bootstrap,
        steps,
        eval_every: 0,
        batch: opts.batch,
        seed: opts.seed,
        patience: opts.patience,
        lr: opts.lr,
        hidden: opts.hidden,
        normalize_obs: opts.normalize_obs,
        obs_noise: opts.obs_noise,
        quiet: opts.quiet,
        device,
    };
    let outcome = train(&ds, &train_eps, &val_eps, &cfg)?;

    // Held-out inputs for the export check: validation frames, else training frames.
    let check_eps = if val_eps.is_empty() {
        &train_eps
    } else {
        &val_eps
    };
    let check_inputs: Vec<Vec<f32>> = ds
        .subset(check_eps)
        .iter()
        .take(256)
        .map(|s| s.obs.clone())
        .collect();

    let doubt_rows: Vec<Vec<f32>> = ds.subset(check_eps).iter().map(|s| s.obs.clone()).collect();
    let doubt = calibrate_doubt(&outcome.policy, &doubt_rows, opts.ask_rate)?;
    let rounds = round_metrics(&used);
    let mut report = RetrainReport {
        version: String::new(),
        policy_dir: PathBuf::new(),
        data_dir: opts.data.clone(),
        data_sha256: data_hash(&opts.data, &used),
        episodes_used: used.len(),
        train_episodes: train_eps.len(),
        val_episodes: val_eps.len(),
        excluded,
        truncated,
        counts,
        weighting: opts.weighting,
        class_mass: mass,
        chunk: opts.chunk,
        ensemble: opts.ensemble,
        seed: opts.seed,
        steps_per_member: steps,
        device: format!("{device:?}"),
        rounds,
        members: outcome.members,
        verify_max_abs_diff: f64::NAN,
        duration_s: 0.0,
        doubt,
    };
    let fps = opts
        .robot
        .as_ref()
        .map(|r| r.control.rate_hz)
        .unwrap_or(reference.fps);
    let observation_names = reference.observation_names();
    let action_names: Vec<String> = reference
        .joint_names
        .iter()
        .map(|j| format!("{j}.pos"))
        .collect();

    let (version, dir) = registry::publish(&opts.registry, |stage, version| {
        let pt = stage.join(POLICY_FILE);
        outcome.policy.export(&pt)?;
        report.verify_max_abs_diff = verify_export(&outcome.policy, &pt, &check_inputs)?;
        plot_training(&stage.join(LOSS_PLOT_FILE), &report.members, &report.rounds)?;
        report.version = version.to_string();
        report.policy_dir = opts.registry.join(version);
        report.duration_s = started.elapsed().as_secs_f64();
        let sidecar = PolicySidecar {
            format_version: FORMAT_VERSION,
            version: version.to_string(),
            robot_type: reference.robot_type.clone(),
            observation_names: observation_names.clone(),
            action_names: action_names.clone(),
            fps,
            chunk_size: opts.chunk,
            action_kind: if opts.delta {
                ActionKind::Delta
            } else {
                ActionKind::Absolute
            },
            ensemble_size: opts.ensemble,
            sha256: sha256_file(&pt).map_err(verification)?,
            provenance: provenance(&report, opts),
        };
        write_sidecar(stage, &sidecar).map_err(verification)?;
        // Load it exactly as the daemon will: sidecar checks, hash, output shape.
        let expect = PolicyExpectations {
            robot_type: sidecar.robot_type.clone(),
            observation_names: sidecar.observation_names.clone(),
            action_names: sidecar.action_names.clone(),
            fps,
        };
        Policy::load(stage, &expect).map_err(verification)?;
        Ok(())
    })?;
    report.version = version;
    report.policy_dir = dir;
    report.duration_s = started.elapsed().as_secs_f64();
    info!(
        version = %report.version,
        dir = %report.policy_dir.display(),
        seconds = report.duration_s,
        "policy published"
    );
    Ok(report)
}

fn verification(e: impl std::fmt::Display) -> TrainError {
    TrainError::Verification {
        message: e.to_string(),
    }
}

fn check_options(opts: &RetrainOptions) -> Result<(), TrainError> {
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
    Ok(())
}

fn summarise(excluded: &[Exclusion]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for x in excluded {
        *by.entry(x.reason.as_str()).or_default() += 1;
    }
    by.iter()
        .map(|(r, n)| format!("{n} x {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Splits episodes into those to use and those to skip (with the reason).
fn select_episodes(
    opts: &RetrainOptions,
    episodes: Vec<LoadedEpisode>,
) -> Result<(Vec<LoadedEpisode>, Vec<Exclusion>), TrainError> {
    let robot_type = match &opts.robot {
        Some(r) => r.robot.robot_type.clone(),
        None => {
            let types: std::collections::BTreeSet<&str> =
                episodes.iter().map(|e| e.robot_type.as_str()).collect();
            if types.len() > 1 {
                return Err(TrainError::MixedRobotTypes {
                    dir: opts.data.clone(),
                    types: types.into_iter().collect::<Vec<_>>().join(", "),
                });
            }
            types.into_iter().next().unwrap_or_default().to_string()
        }
    };
    let joints = opts.robot.as_ref().map(RobotConfig::joint_names);
    let fps = opts.robot.as_ref().map(|r| r.control.rate_hz);

    let mut excluded = Vec::new();
    let mut kept = Vec::new();
    for e in episodes {
        let reason = if e.robot_type != robot_type {
            Some(format!("robot type `{}`, not `{robot_type}`", e.robot_type))
        } else if joints.as_ref().is_some_and(|j| *j != e.joint_names) {
            Some(format!(
                "joints [{}] differ from the robot config's",
                e.joint_names.join(", ")
            ))
        } else if fps.is_some_and(|f| (f - e.fps).abs() > 1e-6) {
            Some(format!(
                "recorded at {} Hz, robot runs at {} Hz",
                e.fps,
                fps.unwrap_or(0.0)
            ))
        } else if e.discarded {
            Some("discarded by the operator".to_string())
        } else if e.data.is_empty() {
            Some("no readable frames".to_string())
        } else {
            frame_problem(&e)
        };
        match reason {
            Some(reason) => excluded.push(Exclusion {
                episode: e.data.id.clone(),
                reason,
            }),
            None => kept.push(e),
        }
    }

    // One observation layout and rate per policy: keep the most common, skip the rest.
    let mut layouts: BTreeMap<(Vec<String>, u64), usize> = BTreeMap::new();
    for e in &kept {
        *layouts
            .entry((e.observation_names(), e.fps.to_bits()))
            .or_default() += 1;
    }
    let best = layouts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(k, _)| k.clone());
    let mut used = Vec::new();
    for e in kept {
        match &best {
            Some((names, fps)) if *names != e.observation_names() || *fps != e.fps.to_bits() => {
                excluded.push(Exclusion {
                    episode: e.data.id.clone(),
                    reason: format!(
                        "observation layout [{}] at {} Hz differs from the majority's",
                        e.observation_names().join(", "),
                        e.fps
                    ),
                })
            }
            _ => used.push(e),
        }
    }
    Ok((used, excluded))
}

/// The first frame whose sizes disagree with the episode's names, or holds a non-finite value.
fn frame_problem(e: &LoadedEpisode) -> Option<String> {
    let obs_dim = e.joint_names.len() + e.task_feature_names.len();
    let act_dim = e.joint_names.len();
    let d = &e.data;
    if d.obs.len() != d.labels.len() || d.goals.len() != d.labels.len() {
        return Some("observations, goals and labels differ in number".into());
    }
    d.obs
        .iter()
        .zip(&d.goals)
        .enumerate()
        .find_map(|(t, (o, g))| {
            if o.len() != obs_dim || g.len() != act_dim {
                Some(format!(
                "frame {t} has {} observation and {} goal values, expected {obs_dim} and {act_dim}",
                o.len(),
                g.len()
            ))
            } else if o.iter().chain(g).any(|v| !v.is_finite()) {
                Some(format!("frame {t} holds a non-finite value"))
            } else {
                None
            }
        })
}

/// The split by episode; if the training side would hold no frame the weighting trains on,
/// train on everything without validation (early stopping is then off).
fn split(ds: &Dataset, opts: &RetrainOptions) -> (Vec<usize>, Vec<usize>) {
    let (train, val) = split_by_episode(ds.episodes.len(), opts.val_fraction, opts.seed);
    let labels: Vec<Label> = ds.subset(&train).iter().map(|s| s.label).collect();
    if sample_weights(&labels, opts.weighting)
        .iter()
        .any(|w| *w > 0.0)
    {
        (train, val)
    } else {
        warn!("the validation split took every trainable episode; training on all episodes without validation");
        ((0..ds.episodes.len()).collect(), Vec::new())
    }
}

fn round_metrics(used: &[LoadedEpisode]) -> Vec<RoundMetrics> {
    let mut rounds: BTreeMap<&str, RoundMetrics> = BTreeMap::new();
    for e in used {
        let r = rounds
            .entry(e.session.as_str())
            .or_insert_with(|| RoundMetrics {
                round: e.session.clone(),
                policy_versions: Vec::new(),
                episodes: 0,
                frames: LabelCounts::default(),
                takeovers: 0,
                intervention_rate: None,
            });
        r.episodes += 1;
        r.frames.add(&LabelCounts::from_labels(&e.data.labels));
        if let Some(v) = &e.policy_version {
            if !r.policy_versions.contains(v) {
                r.policy_versions.push(v.clone());
            }
        }
        let mut prev = None;
        for &l in &e.data.labels {
            if l == Label::Intervention && prev != Some(Label::Intervention) {
                r.takeovers += 1;
            }
            prev = Some(l);
        }
    }
    rounds
        .into_values()
        .map(|mut r| {
            let autonomous = r.frames.robot + r.frames.pre_intervention + r.frames.intervention;
            r.intervention_rate =
                (autonomous > 0).then(|| r.frames.intervention as f64 / autonomous as f64);
            r
        })
        .collect()
}

/// sha256 over the used episodes (path relative to the data dir, and file hash), sorted.
fn data_hash(root: &Path, used: &[LoadedEpisode]) -> String {
    let mut rows: Vec<String> = used
        .iter()
        .map(|e| {
            let rel = e.path.strip_prefix(root).unwrap_or(&e.path);
            format!("{}\0{}\n", rel.display(), e.content_sha256)
        })
        .collect();
    rows.sort();
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.as_bytes());
    }
    hex::encode(h.finalize())
}

fn provenance(report: &RetrainReport, opts: &RetrainOptions) -> serde_json::Value {
    serde_json::json!({
        "trainer": concat!("intervened-train ", env!("CARGO_PKG_VERSION")),
        "created_unix_s": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "data": {
            "dir": report.data_dir,
            "sha256": report.data_sha256,
            "episodes_used": report.episodes_used,
            "episodes_excluded": report.excluded,
            "episodes_truncated": report.truncated,
            "frames": report.counts,
            "rounds": report.rounds,
        },
        "doubt": report.doubt,
        "weighting": {
            "scheme": report.weighting,
            "class_mass": report.class_mass,
            "pre_intervention_window": opts.pre_intervention_window,
        },
        "training": {
            "model": format!("mlp obs-{h}-relu-{h}-relu-act*chunk, normalisation in graph", h = opts.hidden),
            "normalize_obs": opts.normalize_obs,
            "obs_noise": opts.obs_noise,
            "action_kind": if opts.delta { "delta" } else { "absolute" },
            "optimizer": "adam",
            "lr": opts.lr,
            "batch": opts.batch,
            "seed": report.seed,
            "steps_per_member": report.steps_per_member,
            "ensemble": report.ensemble,
            "chunk": report.chunk,
            "device": report.device,
            "train_episodes": report.train_episodes,
            "val_episodes": report.val_episodes,
        },
        "metrics": {
            "members": report.members.iter().map(|m| serde_json::json!({
                "member": m.member,
                "initial_loss": m.initial_loss,
                "final_train_loss": m.final_train_loss,
                "best_val_loss": m.best_val_loss,
                "steps_run": m.steps_run,
                "stopped_early": m.stopped_early,
            })).collect::<Vec<_>>(),
            "verify_max_abs_diff": report.verify_max_abs_diff,
        },
    })
}

/// Reloads an exported `policy.pt` and checks it against the in-memory model on `inputs`:
/// same output shape `[B, K, chunk, act]`, finite, equal within 1e-4 (relative to scale).
/// Returns the largest absolute difference.
pub fn verify_export(
    policy: &TrainedPolicy,
    pt: &Path,
    inputs: &[Vec<f32>],
) -> Result<f64, TrainError> {
    if inputs.is_empty() {
        return Err(verification("no inputs to check the export with"));
    }
    let module = CModule::load_on_device(pt, Device::Cpu).map_err(verification)?;
    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
    let x = Tensor::from_slice(&flat).view([inputs.len() as i64, policy.spec.obs_dim as i64]);
    let (got, want) = tch::no_grad(|| -> Result<(Tensor, Tensor), TrainError> {
        Ok((
            module.forward_ts(&[&x]).map_err(verification)?,
            policy.forward(&x),
        ))
    })?;
    let shape = [
        inputs.len() as i64,
        policy.ensemble_size() as i64,
        policy.spec.chunk as i64,
        policy.spec.act_dim as i64,
    ];
    if got.size() != shape {
        return Err(verification(format!(
            "output shape {:?}, expected {shape:?}",
            got.size()
        )));
    }
    let got = got.to_kind(Kind::Float);
    let finite = bool::try_from(got.isfinite().all()).map_err(verification)?;
    if !finite {
        return Err(verification("the exported model outputs non-finite values"));
    }
    let diff = f64::try_from((&got - &want).abs().max()).map_err(verification)?;
    let scale = f64::try_from(want.abs().max()).map_err(verification)?;
    // NaN-safe: a NaN difference must fail too.
    if diff.is_nan() || diff > 1e-4 * (1.0 + scale) {
        return Err(verification(format!(
            "reloaded model differs from the trained one by {diff} (scale {scale})"
        )));
    }
    Ok(diff)
}
