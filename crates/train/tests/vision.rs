//! Image policies: a task only the pixels can solve, export and reload (Rust and Python), the
//! retrain pipeline with `cameras`, and the dataset's checks on images.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use intervened_policy::{
    sha256_file, write_sidecar, ActionKind, ImageInput, Policy, PolicyExpectations, PolicySidecar,
    Prediction, FORMAT_VERSION,
};
use intervened_train::{
    retrain_from_episodes, split_by_episode, train, verify_export_inputs, CameraFrames, Dataset,
    EpisodeData, EpisodeSet, Label, LoadedEpisode, ModelInputs, TrainConfig, TrainError, Weighting,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIDE: u32 = 32;
const SQUARE: usize = 4;
const CAM: &str = "front";

/// The goal the pixel task asks for, from the square's top-left corner: it depends on the
/// image only (the joints are noise).
fn pixel_goal(x: usize, y: usize) -> Vec<f32> {
    let span = (SIDE as usize - SQUARE) as f32;
    let (u, v) = (x as f32 / span * 2.0 - 1.0, y as f32 / span * 2.0 - 1.0);
    vec![u, v, 0.5 * (u - v)]
}

/// A dim noisy image with a bright square at (x, y).
fn image(x: usize, y: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = SIDE as usize;
    let mut img: Vec<u8> = (0..s * s * 3).map(|_| rng.gen_range(0..40)).collect();
    for r in y..y + SQUARE {
        for c in x..x + SQUARE {
            for ch in 0..3 {
                img[(r * s + c) * 3 + ch] = rng.gen_range(200..=255);
            }
        }
    }
    img
}

/// An episode of the pixel task: the square sits at a random place per episode and jitters by
/// up to 2 px per frame; the goal follows it. The 3 joints and 2 task features are noise.
fn pixel_episode(session: &str, index: usize, frames: usize, seed: u64) -> LoadedEpisode {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max = SIDE as usize - SQUARE;
    let (bx, by) = (rng.gen_range(2..=max - 2), rng.gen_range(2..=max - 2));
    let mut ep = common::episode(session, index, vec![Label::Demo; frames], seed);
    let mut imgs = Vec::with_capacity(frames);
    for t in 0..frames {
        let x = (bx as i64 + rng.gen_range(-2..=2)) as usize;
        let y = (by as i64 + rng.gen_range(-2..=2)) as usize;
        imgs.push(image(x, y, &mut rng));
        ep.data.goals[t] = pixel_goal(x, y);
    }
    ep.data.cameras = vec![CameraFrames {
        name: CAM.into(),
        width: SIDE,
        height: SIDE,
        frames: imgs,
    }];
    ep
}

fn pixel_set(episodes: usize, frames: usize) -> Vec<LoadedEpisode> {
    (0..episodes)
        .map(|i| pixel_episode("s1", i, frames, 7000 + i as u64))
        .collect()
}

/// The policy's view: joints only, plus the camera (or not).
fn joints_only(eps: &[LoadedEpisode], with_images: bool) -> Vec<EpisodeData> {
    eps.iter()
        .map(|e| {
            let mut d = e.data.clone();
            for o in &mut d.obs {
                o.truncate(common::JOINTS.len());
            }
            if !with_images {
                d.cameras.clear();
            }
            d
        })
        .collect()
}

fn cfg(seed: u64, steps: usize) -> TrainConfig {
    TrainConfig {
        weighting: Weighting::HgDagger,
        steps,
        batch: 32,
        seed,
        patience: 0,
        lr: 1e-3,
        quiet: true,
        ..TrainConfig::default()
    }
}

#[test]
fn an_image_policy_learns_what_only_the_pixels_show() {
    let eps = pixel_set(40, 16);
    let (train_eps, val_eps) = split_by_episode(eps.len(), 0.25, 3);
    let c = cfg(0, 500);
    let pixels = Dataset::from_episodes(&joints_only(&eps, true), 1).unwrap();
    assert_eq!(pixels.images.len(), 1);
    let state = Dataset::from_episodes(&joints_only(&eps, false), 1).unwrap();
    assert!(state.images.is_empty());

    let img = train(&pixels, &train_eps, &val_eps, &c).unwrap();
    let mlp = train(&state, &train_eps, &val_eps, &c).unwrap();
    let v_img = img.members[0].best_val_loss.unwrap();
    let v_mlp = mlp.members[0].best_val_loss.unwrap();
    eprintln!("validation MSE (normalised): image {v_img:.4}, joints-only MLP {v_mlp:.4}");
    // The joints carry nothing: the MLP can only predict the mean (about 1 in normalised
    // units). The image policy must locate the square.
    assert!(v_mlp > 0.8, "joints-only MLP validation {v_mlp}");
    assert!(
        v_img < 0.2 && v_img < 0.25 * v_mlp,
        "image policy validation {v_img} vs joints-only {v_mlp}"
    );
}

#[test]
fn same_seed_gives_bit_identical_image_policies() {
    let eps = pixel_set(6, 8);
    let ds = Dataset::from_episodes(&joints_only(&eps, true), 2).unwrap();
    let (t, v) = split_by_episode(ds.episodes.len(), 0.3, 1);
    let a = train(&ds, &t, &v, &cfg(11, 6)).unwrap();
    let b = train(&ds, &t, &v, &cfg(11, 6)).unwrap();
    assert_eq!(a.policy.weights().unwrap(), b.policy.weights().unwrap());
    let other = train(&ds, &t, &v, &cfg(12, 6)).unwrap();
    assert_ne!(a.policy.weights().unwrap(), other.policy.weights().unwrap());
}

fn joint_names() -> Vec<String> {
    common::JOINTS.iter().map(|j| format!("{j}.pos")).collect()
}

/// A small trained image policy (K = 2, chunk 2), exported with its sidecar into a temp dir.
fn exported() -> (
    intervened_train::TrainOutcome,
    ModelInputs,
    tempfile::TempDir,
) {
    let eps = pixel_set(6, 8);
    let ds = Dataset::from_episodes(&joints_only(&eps, true), 2).unwrap();
    let (t, v) = split_by_episode(ds.episodes.len(), 0.3, 1);
    let mut c = cfg(5, 20);
    c.ensemble = 2;
    let out = train(&ds, &t, &v, &c).unwrap();
    let held = ds.subset(&v);
    let inputs = ModelInputs::from_samples(&ds, &held[..6]);
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("policy.pt");
    out.policy.export(&pt).unwrap();
    let diff = verify_export_inputs(&out.policy, &pt, &inputs).unwrap();
    assert!(diff < 1e-4, "{diff}");
    let sidecar = PolicySidecar {
        format_version: FORMAT_VERSION,
        version: "v0001".into(),
        robot_type: "test_arm".into(),
        observation_names: joint_names(),
        action_names: joint_names(),
        fps: 50.0,
        chunk_size: 2,
        action_kind: ActionKind::Absolute,
        ensemble_size: 2,
        sha256: sha256_file(&pt).unwrap(),
        cameras: out.policy.cameras.clone(),
        provenance: serde_json::Value::Null,
    };
    write_sidecar(dir.path(), &sidecar).unwrap();
    (out, inputs, dir)
}

fn expectations() -> PolicyExpectations {
    let mut obs = joint_names();
    obs.extend(common::TASK.iter().map(|s| s.to_string()));
    PolicyExpectations {
        robot_type: "test_arm".into(),
        observation_names: obs,
        action_names: joint_names(),
        fps: 50.0,
        cameras: vec![ImageInput {
            name: CAM.into(),
            width: SIDE,
            height: SIDE,
        }],
    }
}

#[test]
fn exported_image_policy_loads_in_the_runtime_with_the_same_outputs() {
    let (out, inputs, dir) = exported();
    assert_eq!(
        out.policy.cameras,
        vec![ImageInput {
            name: CAM.into(),
            width: SIDE,
            height: SIDE
        }]
    );
    let mut policy = Policy::load(dir.path(), &expectations()).unwrap();
    assert_eq!(policy.cameras().len(), 1);
    let rust = out.policy.predict_inputs(&inputs).unwrap();
    let (k, chunk, act) = (2, 2, 3);
    let frame = (SIDE * SIDE * 3) as usize;
    let mut pred = Prediction::default();
    let mut max = 0.0f32;
    for (i, obs) in inputs.obs.iter().enumerate() {
        let img = &inputs.images[0][i * frame..(i + 1) * frame];
        policy.infer_images_into(obs, &[img], &mut pred).unwrap();
        assert!(pred.doubt.is_some());
        for s in 0..chunk {
            for a in 0..act {
                let mean: f32 = (0..k)
                    .map(|m| rust[((i * k + m) * chunk + s) * act + a])
                    .sum::<f32>()
                    / k as f32;
                max = max.max((pred.chunk[s][a] - mean).abs());
            }
        }
    }
    assert!(max < 1e-4, "runtime and trained policy differ by {max}");
    // The image changes the answer: the graph really reads the pixels.
    let dark = vec![0u8; frame];
    let mut other = Prediction::default();
    policy
        .infer_images_into(&inputs.obs[0], &[&dark], &mut other)
        .unwrap();
    policy
        .infer_images_into(&inputs.obs[0], &[&inputs.images[0][..frame]], &mut pred)
        .unwrap();
    assert_ne!(pred.chunk, other.chunk);
    let lat = intervened_policy::bench_infer(&mut policy, 20).unwrap();
    assert!(lat.p50_us > 0.0 && lat.p99_us >= lat.p50_us);
}

fn python() -> PathBuf {
    let root =
        std::fs::canonicalize(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    let p = root.join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --test to create the Python venv with torch",
        p.display()
    );
    p
}

#[test]
fn exported_image_policy_runs_in_python_with_the_same_outputs() {
    let (out, inputs, dir) = exported();
    let rust = out.policy.predict_inputs(&inputs).unwrap();
    let pt = dir.path().join("policy.pt");
    let script = r#"
import json, sys, torch
m = torch.jit.load(sys.argv[1])
x = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float32)
img = torch.tensor(json.loads(sys.argv[3]), dtype=torch.uint8).reshape(x.shape[0], int(sys.argv[4]), int(sys.argv[4]), 3)
with torch.no_grad():
    y = m(x, img)
print(json.dumps({"shape": list(y.shape), "dtype": str(y.dtype), "values": y.flatten().tolist()}))
"#;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(&pt)
        .arg(serde_json::to_string(&inputs.obs).unwrap())
        .arg(serde_json::to_string(&inputs.images[0]).unwrap())
        .arg(SIDE.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let shape: Vec<i64> = serde_json::from_value(v["shape"].clone()).unwrap();
    assert_eq!(shape, vec![inputs.len() as i64, 2, 2, 3]);
    assert_eq!(v["dtype"], "torch.float32");
    let py: Vec<f32> = serde_json::from_value(v["values"].clone()).unwrap();
    let max = py
        .iter()
        .zip(&rust)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-4, "python and rust differ by {max}");
}

fn pixel_episode_set(n: usize) -> EpisodeSet {
    EpisodeSet {
        episodes: pixel_set(n, 10),
        unreadable: Vec::new(),
    }
}

#[test]
fn retrain_with_cameras_publishes_a_joints_only_image_policy() {
    let reg = tempfile::tempdir().unwrap();
    let mut o = common::fast_options(reg.path().to_path_buf());
    o.cameras = vec![CAM.into()];
    o.chunk = 3;
    o.max_steps = Some(20);
    o.ensemble = 2;
    o.delta = true;
    let r = retrain_from_episodes(&o, pixel_episode_set(5)).unwrap();
    assert!(r.verify_max_abs_diff < 1e-4, "{}", r.verify_max_abs_diff);
    assert!(r.doubt.is_some());
    assert!(r.to_string().contains("cameras front 32x32"), "{r}");
    let sidecar = PolicySidecar::read(&r.policy_dir.join("policy.json")).unwrap();
    assert_eq!(sidecar.observation_names, joint_names());
    assert_eq!(
        sidecar.cameras,
        vec![ImageInput {
            name: CAM.into(),
            width: SIDE,
            height: SIDE
        }]
    );
    assert_eq!((sidecar.chunk_size, sidecar.ensemble_size), (3, 2));
    assert_eq!(sidecar.action_kind, ActionKind::Delta);
    assert_eq!(sidecar.provenance["training"]["cameras"][0]["name"], CAM);
    let policy = Policy::load(reg.path().join("current"), &expectations()).unwrap();
    assert_eq!(policy.obs_dim(), 3);

    // Without cameras the same data trains today's state policy, images ignored.
    let reg2 = tempfile::tempdir().unwrap();
    let o2 = common::fast_options(reg2.path().to_path_buf());
    let r2 = retrain_from_episodes(&o2, pixel_episode_set(5)).unwrap();
    let s2 = PolicySidecar::read(&r2.policy_dir.join("policy.json")).unwrap();
    assert!(s2.cameras.is_empty());
    assert_eq!(s2.observation_names.len(), 5);
}

#[test]
fn retrain_names_a_missing_camera_and_mismatched_sizes() {
    let reg = tempfile::tempdir().unwrap();
    let mut o = common::fast_options(reg.path().to_path_buf());
    o.cameras = vec!["wrist".into()];
    let e = retrain_from_episodes(&o, pixel_episode_set(3))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("camera `wrist`") && e.contains("`front` 32x32"),
        "{e}"
    );

    o.cameras = vec![CAM.into()];
    let mut set = pixel_episode_set(3);
    let cam = &mut set.episodes[2].data.cameras[0];
    cam.width = 16;
    cam.height = 16;
    for f in &mut cam.frames {
        f.truncate(16 * 16 * 3);
    }
    let e = retrain_from_episodes(&o, set).unwrap_err();
    assert!(matches!(e, TrainError::BadEpisode { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("front 16x16") && e.contains("front 32x32"),
        "{e}"
    );

    o.cameras = vec![CAM.into(), CAM.into()];
    let e = retrain_from_episodes(&o, pixel_episode_set(3)).unwrap_err();
    assert!(e.to_string().contains("listed twice"), "{e}");
}

#[test]
fn dataset_checks_image_counts_and_sizes() {
    let eps = pixel_set(2, 5);
    let mut data = joints_only(&eps, true);
    let ds = Dataset::from_episodes(&data, 1).unwrap();
    let frame = (SIDE * SIDE * 3) as usize;
    assert_eq!(ds.images[0].data.len(), 10 * frame);
    // Sample rows index the flat image column.
    let s = &ds.samples[7];
    assert_eq!(s.row, 7);
    assert_eq!(
        ds.images[0].frame(s.row).unwrap(),
        data[1].cameras[0].frames[2].as_slice()
    );

    data[1].cameras[0].frames.pop();
    let e = Dataset::from_episodes(&data, 1).unwrap_err().to_string();
    assert!(e.contains("4 images for 5 frames"), "{e}");
    data[1].cameras[0].frames.push(vec![0; 10]);
    let e = Dataset::from_episodes(&data, 1).unwrap_err().to_string();
    assert!(e.contains("image 4 has 10 bytes"), "{e}");
    data[1].cameras.clear();
    let e = Dataset::from_episodes(&data, 1).unwrap_err().to_string();
    assert!(e.contains("has cameras [none]"), "{e}");
}
