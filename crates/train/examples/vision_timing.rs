//! Image-policy costs on this machine: training time per optimiser step (one 96x96 camera,
//! batch 64 and 32, one thread) and the exported policy's inference latency at batch 1.
//!
//! `cargo run --release -p intervened-train --example vision_timing` (debug builds of this
//! workspace are optimised too, so `cargo run` without `--release` measures the same).

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use intervened_policy::{
    bench_infer, sha256_file, write_sidecar, ActionKind, Policy, PolicyExpectations, PolicySidecar,
    FORMAT_VERSION,
};
use intervened_train::{
    bench_vision_train, machine, train, CameraFrames, Dataset, EpisodeData, Label, TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIDE: u32 = 96;
const JOINTS: usize = 6;
const CHUNK: usize = 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for batch in [64, 32] {
        let b = bench_vision_train(SIDE, batch, 5, 3, tch::Device::Cpu)?;
        println!(
            "train {SIDE}x{SIDE}, 1 camera, batch {batch}: {:.0} ms per step ({:.0} samples/s; runs {:?})",
            b.step_ms, b.samples_per_s, b.runs
        );
    }

    // A policy of the real shape (6 joints, chunk 20, K = 1), barely trained: latency does
    // not depend on the weights.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let frame = (SIDE * SIDE * 3) as usize;
    let episodes: Vec<EpisodeData> = (0..2)
        .map(|e| EpisodeData {
            id: format!("e{e}"),
            round: "r".into(),
            obs: (0..8)
                .map(|_| (0..JOINTS).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect(),
            goals: (0..8)
                .map(|_| (0..JOINTS).map(|_| rng.gen_range(-1.0..1.0)).collect())
                .collect(),
            labels: vec![Label::Demo; 8],
            cameras: vec![CameraFrames {
                name: "front".into(),
                width: SIDE,
                height: SIDE,
                frames: (0..8)
                    .map(|_| (0..frame).map(|_| rng.gen()).collect())
                    .collect(),
            }],
        })
        .collect();
    let ds = Dataset::from_episodes(&episodes, CHUNK)?;
    let cfg = TrainConfig {
        steps: 2,
        batch: 8,
        quiet: true,
        ..TrainConfig::default()
    };
    let out = train(&ds, &[0, 1], &[], &cfg)?;
    let dir = tempfile::tempdir()?;
    let pt = dir.path().join("policy.pt");
    out.policy.export(&pt)?;
    let names: Vec<String> = (0..JOINTS).map(|j| format!("j{j}.pos")).collect();
    let sidecar = PolicySidecar {
        format_version: FORMAT_VERSION,
        version: "v0001".into(),
        robot_type: "bench".into(),
        observation_names: names.clone(),
        action_names: names.clone(),
        fps: 30.0,
        chunk_size: CHUNK,
        action_kind: ActionKind::Absolute,
        ensemble_size: 1,
        sha256: sha256_file(&pt)?,
        cameras: out.policy.cameras.clone(),
        provenance: serde_json::Value::Null,
    };
    write_sidecar(dir.path(), &sidecar)?;
    let expect = PolicyExpectations {
        robot_type: "bench".into(),
        observation_names: names.clone(),
        action_names: names,
        fps: 30.0,
        cameras: sidecar.cameras.clone(),
    };
    let mut policy = Policy::load(dir.path(), &expect)?;
    let lat = bench_infer(&mut policy, 500)?;
    println!(
        "infer {SIDE}x{SIDE}, 1 camera, batch 1, K = 1, chunk {CHUNK}: p50 {:.0} us, p99 {:.0} us, max {:.0} us, mean {:.0} us ({})",
        lat.p50_us, lat.p99_us, lat.max_us, lat.mean_us, machine()
    );
    Ok(())
}
