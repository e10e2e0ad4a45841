//! `intervened bench train`: training throughput of the seed MLP (Adam steps on synthetic data).

use std::time::Instant;

use serde::Serialize;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use intervened_policy::ImageInput;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::TrainError;
use crate::model::{Mlp, ModelSpec, Net};
use crate::vision::VisionNet;

/// Sizes of the benchmark problem: a 6-joint arm with 4 task features, no chunking.
const OBS_DIM: usize = 10;
const ACT_DIM: usize = 6;
const DATA_ROWS: i64 = 8192;
const WARMUP_STEPS: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct BenchTrain {
    pub batch: usize,
    pub steps: usize,
    pub repeats: usize,
    pub device: String,
    /// Median over repeats.
    pub samples_per_s: f64,
    /// Median time of one optimiser step.
    pub step_ms: f64,
    /// Samples/s of each repeat, in run order.
    pub runs: Vec<f64>,
}

/// Times `repeats` runs of `steps` Adam steps at `batch` on one thread, CPU or CUDA (auto).
pub fn bench_train(batch: usize, steps: usize, repeats: usize) -> Result<BenchTrain, TrainError> {
    bench_train_on(batch, steps, repeats, Device::cuda_if_available())
}

pub fn bench_train_on(
    batch: usize,
    steps: usize,
    repeats: usize,
    device: Device,
) -> Result<BenchTrain, TrainError> {
    if batch == 0 || steps == 0 || repeats == 0 {
        return Err(TrainError::InvalidOption {
            name: "bench",
            message: "batch, steps and repeats must each be at least 1".into(),
        });
    }
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let spec = ModelSpec {
        obs_dim: OBS_DIM,
        act_dim: ACT_DIM,
        chunk: 1,
        hidden: 256,
    };
    let x = Tensor::randn([DATA_ROWS, OBS_DIM as i64], (Kind::Float, device));
    let y = Tensor::randn([DATA_ROWS, ACT_DIM as i64], (Kind::Float, device));
    let mlp = Mlp::new(&spec, device);
    let mut opt = nn::Adam::default().build(&mlp.vs, 3e-4)?;
    let mut step = |_: usize| -> Result<(), TrainError> {
        let idx = Tensor::randint(DATA_ROWS, [batch as i64], (Kind::Int64, device));
        let loss = mlp
            .forward(&x.index_select(0, &idx))
            .mse_loss(&y.index_select(0, &idx), tch::Reduction::Mean);
        opt.backward_step(&loss);
        // Reading the loss back synchronises CUDA, as a real training loop does.
        f64::try_from(&loss)?;
        Ok(())
    };
    for i in 0..WARMUP_STEPS {
        step(i)?;
    }
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        for i in 0..steps {
            step(i)?;
        }
        let s = t0.elapsed().as_secs_f64().max(1e-9);
        runs.push((batch * steps) as f64 / s);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let samples_per_s = median(&sorted);
    Ok(BenchTrain {
        batch,
        steps,
        repeats,
        device: format!("{device:?}"),
        samples_per_s,
        step_ms: 1e3 * batch as f64 / samples_per_s.max(1e-9),
        runs,
    })
}

/// Image rows the vision benchmark samples from.
const IMAGE_ROWS: i64 = 256;

/// Training throughput of the image policy: one `side` x `side` camera, 6 joints, chunk 20,
/// random-shift augmentation on, one thread, as `retrain --cameras` trains it.
pub fn bench_vision_train(
    side: u32,
    batch: usize,
    steps: usize,
    repeats: usize,
    device: Device,
) -> Result<BenchTrain, TrainError> {
    if batch == 0 || steps == 0 || repeats == 0 || side < 16 {
        return Err(TrainError::InvalidOption {
            name: "bench",
            message: "batch, steps and repeats must each be at least 1, the side at least 16"
                .into(),
        });
    }
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let spec = ModelSpec {
        obs_dim: ACT_DIM,
        act_dim: ACT_DIM,
        chunk: 20,
        hidden: 256,
    };
    let cam = ImageInput {
        name: "front".into(),
        width: side,
        height: side,
    };
    let s = i64::from(side);
    let images = Tensor::randint(256, [IMAGE_ROWS, s, s, 3], (Kind::Uint8, device));
    let x = Tensor::randn([IMAGE_ROWS, ACT_DIM as i64], (Kind::Float, device));
    let y = Tensor::randn([IMAGE_ROWS, spec.out_dim() as i64], (Kind::Float, device));
    let net = VisionNet::new(&spec, &[cam], device);
    let mut opt = nn::Adam::default().build(&net.vs, 3e-4)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut step = || -> Result<(), TrainError> {
        let idx = Tensor::randint(IMAGE_ROWS, [batch as i64], (Kind::Int64, device));
        let imgs = [images.index_select(0, &idx)];
        let pred = net.forward_t(&x.index_select(0, &idx), &imgs, Some(&mut rng));
        let loss = pred.mse_loss(&y.index_select(0, &idx), tch::Reduction::Mean);
        opt.backward_step(&loss);
        f64::try_from(&loss)?;
        Ok(())
    };
    step()?;
    let mut runs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t0 = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        runs.push((batch * steps) as f64 / secs);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let samples_per_s = median(&sorted);
    Ok(BenchTrain {
        batch,
        steps,
        repeats,
        device: format!("{device:?}"),
        samples_per_s,
        step_ms: 1e3 * batch as f64 / samples_per_s.max(1e-9),
        runs,
    })
}

/// The CPU model and core count, so every printed number names its machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match (sorted.get(n / 2), n % 2) {
        (Some(&m), 1) => m,
        (Some(&hi), _) => sorted
            .get(n / 2 - 1)
            .map(|&lo| (lo + hi) / 2.0)
            .unwrap_or(hi),
        (None, _) => f64::NAN,
    }
}
