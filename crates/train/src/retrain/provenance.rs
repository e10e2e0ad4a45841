//! The provenance written into `policy.json`: where the data came from and how it trained.

use super::{RetrainOptions, RetrainReport};

pub(super) fn provenance(report: &RetrainReport, opts: &RetrainOptions) -> serde_json::Value {
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
            "model": if report.cameras.is_empty() {
                format!("mlp obs-{h}-relu-{h}-relu-act*chunk, normalisation in graph", h = opts.hidden)
            } else {
                format!(
                    "per camera conv {} (relu), 1x1 to {kp} keypoints, spatial softmax; with the joints, mlp {h}-relu-{h}-relu-act*chunk; uint8 images scaled in graph",
                    crate::vision::conv_description(),
                    kp = crate::vision::FEATURES_PER_CAMERA / 2,
                    h = opts.hidden
                )
            },
            "cameras": report.cameras,
            "image_augmentation": if report.cameras.is_empty() { None } else { Some(format!("random shift, pad {} px replicate", crate::vision::SHIFT_PAD)) },
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
