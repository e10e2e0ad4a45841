// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use intervened_train::{
    split_by_episode, train, verify_export, Dataset, EpisodeData, TrainConfig, Weighting,
};

fn dataset(chunk: usize) -> Dataset {
    let set = common::small_set();
    let data: Vec<EpisodeData> = set.episodes.iter().map(|e| e.data.clone()).collect();
    Dataset::from_episodes(&data, chunk).unwrap()
}

fn cfg(seed: u64, steps: usize) -> TrainConfig {
    TrainConfig {
        weighting: Weighting::HgDagger,
        steps,
        batch: 32,
        seed,
        patience: 0,
        quiet: true,
        ..TrainConfig::default()
    }
}

#[test]
fn same_seed_gives_bit_identical_models() {
    let ds = dataset(2);
    let (train_eps, val_eps) = split_by_episode(ds.episodes.len(), 0.25, 1);
    let mut c = cfg(42, 40);
    c.ensemble = 2;
    let a = train(&ds, &train_eps, &val_eps, &c).unwrap();
    let b = train(&ds, &train_eps, &val_eps, &c).unwrap();
    let wa = a.policy.weights().unwrap();
    assert_eq!(wa, b.policy.weights().unwrap());
    let inputs: Vec<Vec<f32>> = ds.samples.iter().take(16).map(|s| s.obs.clone()).collect();
    let ya = a.policy.predict(&inputs).unwrap();
    assert_eq!(ya, b.policy.predict(&inputs).unwrap());
    assert_eq!(ya.len(), 16 * 2 * 2 * 3);

    let other = train(&ds, &train_eps, &val_eps, &cfg(43, 40)).unwrap();
    assert_ne!(other.policy.weights().unwrap()[..100], wa[..100]);
}

#[test]
fn the_model_learns_a_simple_mapping() {
    let data: Vec<EpisodeData> = (0..8)
        .map(|i| common::episode("s", i, vec![intervened_train::Label::Demo; 100], i as u64).data)
        .collect();
    let ds = Dataset::from_episodes(&data, 1).unwrap();
    let (train_eps, val_eps) = split_by_episode(ds.episodes.len(), 0.25, 0);
    let mut c = cfg(0, 1500);
    c.batch = 64;
    c.lr = 1e-3;
    let out = train(&ds, &train_eps, &val_eps, &c).unwrap();
    let m = &out.members[0];
    assert!(
        m.final_train_loss < 0.05 * m.initial_loss,
        "train loss {} -> {}",
        m.initial_loss,
        m.final_train_loss
    );
    let first_val = m.curve[0].val.unwrap();
    let best = m.best_val_loss.unwrap();
    assert!(best < 0.1 * first_val, "val loss {first_val} -> {best}");

    // Predictions in radians (denormalised) match the mapping on held-out frames.
    let held: Vec<_> = ds.subset(&val_eps);
    let inputs: Vec<Vec<f32>> = held.iter().map(|s| s.obs.clone()).collect();
    let pred = out.policy.predict(&inputs).unwrap();
    let mut sq = 0.0f32;
    for (i, s) in held.iter().enumerate() {
        let want = common::target(&s.obs);
        for j in 0..3 {
            sq += (pred[i * 3 + j] - want[j]).powi(2);
        }
    }
    let rmse = (sq / (held.len() * 3) as f32).sqrt();
    // The targets spread over about +-1.5 rad; a model that had not learned is off by ~0.7.
    assert!(rmse < 0.1, "held-out RMSE {rmse} rad");
}

#[test]
fn early_stopping_stops_and_restores_the_best() {
    let ds = dataset(1);
    let (train_eps, val_eps) = split_by_episode(ds.episodes.len(), 0.25, 0);
    let mut c = cfg(0, 3000);
    c.patience = 2;
    c.eval_every = 5;
    c.lr = 3e-2; // large: validation loss soon stops improving
    let out = train(&ds, &train_eps, &val_eps, &c).unwrap();
    let m = &out.members[0];
    assert!(m.stopped_early && m.steps_run < 3000, "{m:?}");
    let min_val = m
        .curve
        .iter()
        .filter_map(|p| p.val)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(m.best_val_loss, Some(min_val));
}

fn python() -> PathBuf {
    // Canonicalise the repository root but not the interpreter: the venv's python is a
    // symlink, and Python finds its venv from the path it was started by.
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
fn exported_policy_loads_in_python_with_the_same_outputs() {
    let ds = dataset(3);
    let (train_eps, val_eps) = split_by_episode(ds.episodes.len(), 0.25, 2);
    let mut c = cfg(5, 30);
    c.ensemble = 3;
    let out = train(&ds, &train_eps, &val_eps, &c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("policy.pt");
    out.policy.export(&pt).unwrap();

    let inputs: Vec<Vec<f32>> = ds
        .subset(&val_eps)
        .iter()
        .take(8)
        .map(|s| s.obs.clone())
        .collect();
    let diff = verify_export(&out.policy, &pt, &inputs).unwrap();
    assert!(diff < 1e-5, "{diff}");
    let rust = out.policy.predict(&inputs).unwrap();

    let script = r#"
import json, sys, torch
m = torch.jit.load(sys.argv[1])
x = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float32)
with torch.no_grad():
    y = m(x)
print(json.dumps({"shape": list(y.shape), "values": y.flatten().tolist()}))
"#;
    let output = Command::new(python())
        .args(["-c", script])
        .arg(&pt)
        .arg(serde_json::to_string(&inputs).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let shape: Vec<i64> = serde_json::from_value(v["shape"].clone()).unwrap();
    assert_eq!(shape, vec![inputs.len() as i64, 3, 3, 3]);
    let py: Vec<f32> = serde_json::from_value(v["values"].clone()).unwrap();
    assert_eq!(py.len(), rust.len());
    let max = py
        .iter()
        .zip(&rust)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-5, "python and rust differ by {max}");
}

#[test]
fn verification_rejects_a_wrong_or_damaged_export() {
    let ds = dataset(1);
    let eps: Vec<usize> = (0..ds.episodes.len()).collect();
    let a = train(&ds, &eps, &[], &cfg(1, 10)).unwrap();
    let b = train(&ds, &eps, &[], &cfg(2, 10)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("policy.pt");
    b.policy.export(&pt).unwrap();
    let inputs: Vec<Vec<f32>> = ds.samples.iter().take(8).map(|s| s.obs.clone()).collect();
    let e = verify_export(&a.policy, &pt, &inputs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs"), "{e}");
    std::fs::write(&pt, b"not a torchscript file").unwrap();
    let e = verify_export(&a.policy, &pt, &inputs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("failed verification"), "{e}");
}

#[test]
fn bench_reports_throughput() {
    let b = intervened_train::bench_train_on(32, 5, 3, tch::Device::Cpu).unwrap();
    assert_eq!(b.runs.len(), 3);
    assert!(b.runs.iter().all(|r| r.is_finite() && *r > 0.0));
    let mut sorted = b.runs.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(b.samples_per_s, sorted[1]);
    assert!((b.step_ms - 1e3 * 32.0 / b.samples_per_s).abs() < 1e-9);
    assert!(intervened_train::bench_train_on(0, 5, 3, tch::Device::Cpu).is_err());
}
