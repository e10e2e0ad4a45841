//! The job's steps in order: select, build the dataset, train, export, verify, publish.

use std::path::PathBuf;
use std::time::Instant;

use intervened_policy::{
    sha256_file, write_sidecar, ActionKind, Policy, PolicyExpectations, PolicySidecar,
    FORMAT_VERSION,
};
use tracing::{info, warn};

use crate::dataset::{class_mass, sample_weights, Dataset, EpisodeData, Label, LabelCounts};
use crate::error::TrainError;
use crate::model::ModelInputs;
use crate::plot::plot_training;
use crate::registry::{self, LOSS_PLOT_FILE, POLICY_FILE};
use crate::train::{train, TrainConfig};
use crate::types::{EpisodeSet, LoadedEpisode};

use super::hashing::data_hash;
use super::options::check_options;
use super::provenance::provenance;
use super::report::{calibrate_doubt, round_metrics};
use super::selection::{select_episodes, split, summarise};
use super::verify::{verification, verify_export_inputs};
use super::{RetrainOptions, RetrainReport};

/// Retrains from every session under `opts.data` and publishes the result.
pub fn retrain(opts: &RetrainOptions) -> Result<RetrainReport, TrainError> {
    let set =
        crate::source::load_episodes(&opts.data, opts.pre_intervention_window, &opts.cameras)?;
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

    let data: Vec<EpisodeData> = used
        .iter()
        .map(|e| policy_view(e, &opts.cameras))
        .collect::<Result<_, _>>()?;
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
        image_shift: opts.image_shift,
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
    let check_samples = ds.subset(check_eps);
    let check_inputs = ModelInputs::from_samples(
        &ds,
        &check_samples[..check_samples
            .len()
            .min(if ds.images.is_empty() { 256 } else { 32 })],
    );
    let doubt = calibrate_doubt(&outcome.policy, &ds, &check_samples, opts.ask_rate)?;
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
        cameras: outcome.policy.cameras.clone(),
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
    // An image policy observes the joints only: the camera replaces the task features.
    let observation_names = if opts.cameras.is_empty() {
        reference.observation_names()
    } else {
        reference
            .joint_names
            .iter()
            .map(|j| format!("{j}.pos"))
            .collect()
    };
    let action_names: Vec<String> = reference
        .joint_names
        .iter()
        .map(|j| format!("{j}.pos"))
        .collect();

    let (version, dir) = registry::publish(&opts.registry, |stage, version| {
        let pt = stage.join(POLICY_FILE);
        outcome.policy.export(&pt)?;
        report.verify_max_abs_diff = verify_export_inputs(&outcome.policy, &pt, &check_inputs)?;
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
            cameras: outcome.policy.cameras.clone(),
            provenance: provenance(&report, opts),
        };
        write_sidecar(stage, &sidecar).map_err(verification)?;
        // Load it exactly as the daemon will: sidecar checks, hash, output shape.
        // The robot's full observation list (joints, then task features): an image policy's
        // joints-only layout is checked as the daemon checks it. With --robot, its cameras.
        let expect = PolicyExpectations {
            robot_type: sidecar.robot_type.clone(),
            observation_names: reference.observation_names(),
            action_names: sidecar.action_names.clone(),
            fps,
            cameras: match &opts.robot {
                Some(r) => PolicyExpectations::for_robot(r, &[]).cameras,
                None => sidecar.cameras.clone(),
            },
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

/// The episode as the policy sees it: a state policy gets every observation and no images; an
/// image policy gets the joints only and the chosen cameras, in `cameras` order.
fn policy_view(e: &LoadedEpisode, cameras: &[String]) -> Result<EpisodeData, TrainError> {
    let mut d = e.data.clone();
    if cameras.is_empty() {
        d.cameras.clear();
        return Ok(d);
    }
    let n_joints = e.joint_names.len();
    for o in &mut d.obs {
        o.truncate(n_joints);
    }
    let have = std::mem::take(&mut d.cameras);
    let listed = || {
        if have.is_empty() {
            "no cameras".to_string()
        } else {
            have.iter()
                .map(|c| format!("`{}` {}x{}", c.name, c.width, c.height))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for name in cameras {
        match have.iter().find(|c| &c.name == name) {
            Some(c) => d.cameras.push(c.clone()),
            None => {
                return Err(TrainError::BadEpisode {
                    episode: d.id.clone(),
                    message: format!(
                        "has no images from camera `{name}` (it has {}); record with that camera, or pass --cameras with cameras every episode has",
                        listed()
                    ),
                })
            }
        }
    }
    Ok(d)
}
