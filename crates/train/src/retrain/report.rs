//! What a successful retrain did: the report (also the provenance's source), the ensemble's
//! doubt calibration and the per-round metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::dataset::{ClassMass, Label, LabelCounts, Weighting};
use crate::dataset::{Dataset, Sample};
use crate::error::TrainError;
use crate::model::{ModelInputs, TrainedPolicy};
use crate::train::MemberReport;
use crate::types::{Exclusion, LoadedEpisode, RoundMetrics};

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
    /// An image policy's cameras, in `forward`'s order (empty for a state policy).
    pub cameras: Vec<intervened_policy::ImageInput>,
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
        if !self.cameras.is_empty() {
            let cams: Vec<String> = self
                .cameras
                .iter()
                .map(|c| format!("{} {}x{}", c.name, c.width, c.height))
                .collect();
            writeln!(f, "image policy: cameras {}, joints only", cams.join(", "))?;
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

pub(super) fn calibrate_doubt(
    policy: &TrainedPolicy,
    ds: &Dataset,
    samples: &[&Sample],
    ask_rate: f64,
) -> Result<Option<DoubtCalibration>, TrainError> {
    let (k, chunk, act) = (
        policy.ensemble_size(),
        policy.spec.chunk,
        policy.spec.act_dim,
    );
    if k < 2 || samples.is_empty() {
        return Ok(None);
    }
    let mut doubts = Vec::with_capacity(samples.len());
    // Smaller batches for an image policy: its conv activations are large.
    let batch_rows = if policy.cameras.is_empty() { 1024 } else { 128 };
    for batch in samples.chunks(batch_rows) {
        let out = policy.predict_inputs(&ModelInputs::from_samples(ds, batch))?;
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

pub(super) fn round_metrics(used: &[LoadedEpisode]) -> Vec<RoundMetrics> {
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
