//! Which episodes the job uses (and why the others are skipped), and the train/validation
//! split.

use std::collections::BTreeMap;

use intervened_robot::RobotConfig;
use tracing::warn;

use crate::dataset::{sample_weights, split_by_episode, Dataset, Label};
use crate::error::TrainError;
use crate::types::{Exclusion, LoadedEpisode};

use super::RetrainOptions;

pub(super) fn summarise(excluded: &[Exclusion]) -> String {
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
pub(super) fn select_episodes(
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
pub(super) fn split(ds: &Dataset, opts: &RetrainOptions) -> (Vec<usize>, Vec<usize>) {
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
