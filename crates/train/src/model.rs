//! The seed MLP (obs -> 256 -> ReLU -> 256 -> ReLU -> act * chunk), an ensemble of them, the
//! normalisation statistics, and the TorchScript graph that bakes both in.
//!
//! The exported graph's contract (the daemon's): input float32 `[B, obs_dim]`, output float32
//! `[B, K, chunk, act_dim]`, absolute joint goals in radians, normalisation inside.

use std::path::Path;

use tch::{nn, nn::Module, CModule, Device, Kind, Tensor};

use crate::dataset::Sample;
use crate::error::TrainError;

/// Sizes of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub chunk: usize,
    pub hidden: usize,
}

impl ModelSpec {
    pub fn out_dim(&self) -> usize {
        self.act_dim * self.chunk
    }
}

/// Smallest standard deviation used for scaling: a constant feature (say `block.grasped`
/// never set) must not divide by zero.
const MIN_STD: f32 = 1e-3;

/// Mean and standard deviation of observations and actions (per joint, shared by the chunk).
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    pub obs_mean: Vec<f32>,
    pub obs_std: Vec<f32>,
    pub act_mean: Vec<f32>,
    pub act_std: Vec<f32>,
}

impl Normalizer {
    /// Statistics over the given samples (unweighted).
    pub fn fit(samples: &[&Sample], obs_dim: usize, act_dim: usize) -> Self {
        let (obs_mean, obs_std) = mean_std(samples.iter().map(|s| s.obs.as_slice()), obs_dim);
        // Each chunk holds `chunk` goals per joint; they all describe the same joint.
        let goals = samples
            .iter()
            .flat_map(|s| s.action_chunk.chunks_exact(act_dim.max(1)));
        let (act_mean, act_std) = mean_std(goals, act_dim);
        Normalizer {
            obs_mean,
            obs_std,
            act_mean,
            act_std,
        }
    }

    pub fn identity(obs_dim: usize, act_dim: usize) -> Self {
        Normalizer {
            obs_mean: vec![0.0; obs_dim],
            obs_std: vec![1.0; obs_dim],
            act_mean: vec![0.0; act_dim],
            act_std: vec![1.0; act_dim],
        }
    }

    /// `[N, obs_dim]` observations, normalised.
    pub(crate) fn obs_tensor(&self, rows: &[&[f32]], device: Device) -> Tensor {
        normalise_rows(rows, &self.obs_mean, &self.obs_std, device)
    }

    /// `[N, chunk * act_dim]` action chunks, normalised per joint.
    pub(crate) fn act_tensor(&self, rows: &[&[f32]], chunk: usize, device: Device) -> Tensor {
        let mean: Vec<f32> = self.act_mean.repeat(chunk);
        let std: Vec<f32> = self.act_std.repeat(chunk);
        normalise_rows(rows, &mean, &std, device)
    }
}

fn mean_std<'a>(rows: impl Iterator<Item = &'a [f32]>, dim: usize) -> (Vec<f32>, Vec<f32>) {
    // f64 accumulators: a large dataset of f32 would lose precision.
    let mut sum = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    let mut n = 0usize;
    for r in rows {
        for ((s, q), &v) in sum.iter_mut().zip(sq.iter_mut()).zip(r) {
            *s += f64::from(v);
            *q += f64::from(v) * f64::from(v);
        }
        n += 1;
    }
    if n == 0 {
        return (vec![0.0; dim], vec![1.0; dim]);
    }
    let nf = n as f64;
    let mean: Vec<f32> = sum.iter().map(|s| (s / nf) as f32).collect();
    let std = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| {
            let m = s / nf;
            let var = (q / nf - m * m).max(0.0);
            (var.sqrt() as f32).max(MIN_STD)
        })
        .collect();
    (mean, std)
}

fn normalise_rows(rows: &[&[f32]], mean: &[f32], std: &[f32], device: Device) -> Tensor {
    let dim = mean.len();
    let mut flat = Vec::with_capacity(rows.len() * dim);
    for r in rows {
        flat.extend(
            r.iter()
                .zip(mean.iter().zip(std))
                .map(|(v, (m, s))| (v - m) / s),
        );
    }
    Tensor::from_slice(&flat)
        .view([rows.len() as i64, dim as i64])
        .to_device(device)
}

/// One trainable MLP on its own VarStore.
pub struct Mlp {
    pub(crate) vs: nn::VarStore,
    layers: Vec<nn::Linear>,
}

impl Mlp {
    /// Initialises from torch's global generator: call `tch::manual_seed` first for determinism.
    pub fn new(spec: &ModelSpec, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let dims = [spec.obs_dim, spec.hidden, spec.hidden, spec.out_dim()];
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (a, b) = match w {
                    [a, b] => (*a as i64, *b as i64),
                    _ => (0, 0),
                };
                nn::linear(&root / format!("l{i}"), a, b, Default::default())
            })
            .collect();
        Mlp { vs, layers }
    }

    /// Normalised observation `[B, obs]` -> normalised action chunk `[B, chunk * act]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.layers.len().saturating_sub(1);
        let mut h = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// Detached CPU copies of the weights, in layer order.
    fn frozen(&self) -> Vec<(Tensor, Option<Tensor>)> {
        self.layers
            .iter()
            .map(|l| {
                (
                    l.ws.detach().to_device(Device::Cpu).copy(),
                    l.bs.as_ref()
                        .map(|b| b.detach().to_device(Device::Cpu).copy()),
                )
            })
            .collect()
    }

    /// A snapshot of every variable, for early stopping's "restore best".
    pub(crate) fn snapshot(&self) -> Vec<Tensor> {
        self.vs
            .trainable_variables()
            .iter()
            .map(|t| t.detach().copy())
            .collect()
    }

    pub(crate) fn restore(&mut self, snap: &[Tensor]) {
        tch::no_grad(|| {
            for (mut v, s) in self.vs.trainable_variables().into_iter().zip(snap) {
                v.copy_(s);
            }
        });
    }
}

/// A trained ensemble of K >= 1 members with its normalisation, frozen on the CPU: exactly
/// the computation that is exported.
pub struct TrainedPolicy {
    pub spec: ModelSpec,
    pub norm: Normalizer,
    members: Vec<Vec<(Tensor, Option<Tensor>)>>,
    obs_mean: Tensor,
    obs_std: Tensor,
    act_mean: Tensor,
    act_std: Tensor,
}

impl TrainedPolicy {
    pub fn new(spec: ModelSpec, norm: Normalizer, members: &[Mlp]) -> Self {
        let t = |v: &[f32]| Tensor::from_slice(v);
        TrainedPolicy {
            obs_mean: t(&norm.obs_mean),
            obs_std: t(&norm.obs_std),
            act_mean: t(&norm.act_mean),
            act_std: t(&norm.act_std),
            members: members.iter().map(Mlp::frozen).collect(),
            spec,
            norm,
        }
    }

    pub fn ensemble_size(&self) -> usize {
        self.members.len()
    }

    /// Raw observations float32 `[B, obs_dim]` (CPU) -> goals `[B, K, chunk, act_dim]`.
    pub fn forward(&self, obs: &Tensor) -> Tensor {
        let x = (obs - &self.obs_mean) / &self.obs_std;
        let outs: Vec<Tensor> = self
            .members
            .iter()
            .map(|layers| {
                let last = layers.len().saturating_sub(1);
                let mut h = x.shallow_clone();
                for (i, (w, b)) in layers.iter().enumerate() {
                    h = h.linear(w, b.as_ref());
                    if i < last {
                        h = h.relu();
                    }
                }
                h.view([-1, 1, self.spec.chunk as i64, self.spec.act_dim as i64])
            })
            .collect();
        Tensor::cat(&outs, 1) * &self.act_std + &self.act_mean
    }

    /// Runs the policy on plain rows (each `obs_dim` long).
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, TrainError> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let x = Tensor::from_slice(&flat).view([rows.len() as i64, self.spec.obs_dim as i64]);
        let y = tch::no_grad(|| self.forward(&x));
        Ok(Vec::<f32>::try_from(y.flatten(0, -1))?)
    }

    /// Every weight, flattened, for reproducibility checks.
    pub fn weights(&self) -> Result<Vec<f32>, TrainError> {
        let mut out = Vec::new();
        for layers in &self.members {
            for (w, b) in layers {
                out.extend(Vec::<f32>::try_from(w.flatten(0, -1))?);
                if let Some(b) = b {
                    out.extend(Vec::<f32>::try_from(b.flatten(0, -1))?);
                }
            }
        }
        Ok(out)
    }

    /// Traces the forward pass into a TorchScript module and saves it (loadable with
    /// `torch.jit.load` in Python, and `tch::CModule::load`).
    pub fn export(&self, path: &Path) -> Result<(), TrainError> {
        let example = Tensor::zeros([2, self.spec.obs_dim as i64], (Kind::Float, Device::Cpu));
        let module = tch::no_grad(|| {
            CModule::create_by_tracing("IntervenedPolicy", "forward", &[example], &mut |xs| {
                xs.first()
                    .map(|x| vec![self.forward(x)])
                    .unwrap_or_default()
            })
        })?;
        module.save(path)?;
        Ok(())
    }
}
