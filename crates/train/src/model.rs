//! The seed MLP (obs -> 256 -> ReLU -> 256 -> ReLU -> act * chunk), an ensemble of them, the
//! normalisation statistics, and the TorchScript graph that bakes both in.
//!
//! The exported graph's contract (the daemon's): input float32 `[B, obs_dim]`, output float32
//! `[B, K, chunk, act_dim]`, absolute joint goals in radians, normalisation inside.

use std::path::Path;

use intervened_policy::ImageInput;
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::Module, CModule, Device, Kind, Tensor};

use crate::dataset::{Dataset, Sample};
use crate::error::TrainError;
use crate::vision::{VisionNet, VisionParams};

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
}

/// A snapshot of every variable, for early stopping's "restore best".
pub(crate) fn snapshot(vs: &nn::VarStore) -> Vec<Tensor> {
    vs.trainable_variables()
        .iter()
        .map(|t| t.detach().copy())
        .collect()
}

pub(crate) fn restore(vs: &nn::VarStore, snap: &[Tensor]) {
    tch::no_grad(|| {
        for (mut v, s) in vs.trainable_variables().into_iter().zip(snap) {
            v.copy_(s);
        }
    });
}

/// What the training loop needs of a network: the state MLP or the image network.
pub(crate) trait Net {
    fn var_store(&self) -> &nn::VarStore;
    /// Normalised observations `[B, obs]` and, for an image net, one uint8 `[B, H, W, 3]` per
    /// camera -> normalised action chunk `[B, chunk * act]`. `shift`: the seeded random-shift
    /// augmentation of training (ignored by the MLP).
    fn forward_t(&self, x: &Tensor, images: &[Tensor], shift: Option<&mut ChaCha8Rng>) -> Tensor;
    /// Detached CPU copies of the weights: what is exported.
    fn freeze(&self) -> FrozenNet;
}

impl Net for Mlp {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward_t(&self, x: &Tensor, _: &[Tensor], _: Option<&mut ChaCha8Rng>) -> Tensor {
        self.forward(x)
    }
    fn freeze(&self) -> FrozenNet {
        FrozenNet::Mlp(self.frozen())
    }
}

impl Net for VisionNet {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn forward_t(&self, x: &Tensor, images: &[Tensor], shift: Option<&mut ChaCha8Rng>) -> Tensor {
        self.params.forward(x, images, shift)
    }
    fn freeze(&self) -> FrozenNet {
        FrozenNet::Vision(
            self.params
                .map(|t| t.detach().to_device(Device::Cpu).copy()),
        )
    }
}

/// One frozen ensemble member.
pub(crate) enum FrozenNet {
    Mlp(Vec<(Tensor, Option<Tensor>)>),
    Vision(VisionParams),
}

impl FrozenNet {
    /// Normalised inputs -> normalised chunk `[B, 1, chunk, act]`.
    fn forward(&self, x: &Tensor, images: &[Tensor], spec: &ModelSpec) -> Tensor {
        let shape = [-1, 1, spec.chunk as i64, spec.act_dim as i64];
        match self {
            FrozenNet::Mlp(layers) => {
                let last = layers.len().saturating_sub(1);
                let mut h = x.shallow_clone();
                for (i, (w, b)) in layers.iter().enumerate() {
                    h = h.linear(w, b.as_ref());
                    if i < last {
                        h = h.relu();
                    }
                }
                h.view(shape)
            }
            FrozenNet::Vision(p) => p.forward(x, images, None).view(p.chunk_shape()),
        }
    }

    fn tensors(&self) -> Vec<&Tensor> {
        match self {
            FrozenNet::Mlp(layers) => layers
                .iter()
                .flat_map(|(w, b)| std::iter::once(w).chain(b.as_ref()))
                .collect(),
            FrozenNet::Vision(p) => p.tensors(),
        }
    }
}

/// Model inputs for a batch of rows: observations and, per camera, their images back to back
/// (`rows * H * W * 3` bytes each, in the policy's camera order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInputs {
    pub obs: Vec<Vec<f32>>,
    pub images: Vec<Vec<u8>>,
}

impl ModelInputs {
    /// The inputs of some samples of a dataset (their observations and images).
    pub fn from_samples(ds: &Dataset, samples: &[&Sample]) -> Self {
        ModelInputs {
            obs: samples.iter().map(|s| s.obs.clone()).collect(),
            images: ds
                .images
                .iter()
                .map(|col| {
                    samples
                        .iter()
                        .filter_map(|s| col.frame(s.row))
                        .flatten()
                        .copied()
                        .collect()
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.obs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }
}

/// A trained ensemble of K >= 1 members with its normalisation, frozen on the CPU: exactly
/// the computation that is exported.
pub struct TrainedPolicy {
    pub spec: ModelSpec,
    pub norm: Normalizer,
    /// The cameras an image policy reads, in `forward`'s order (empty: a state policy).
    pub cameras: Vec<ImageInput>,
    members: Vec<FrozenNet>,
    obs_mean: Tensor,
    obs_std: Tensor,
    act_mean: Tensor,
    act_std: Tensor,
}

impl TrainedPolicy {
    /// A state policy from trained MLPs.
    pub fn new(spec: ModelSpec, norm: Normalizer, members: &[Mlp]) -> Self {
        let frozen = members.iter().map(|m| FrozenNet::Mlp(m.frozen())).collect();
        Self::from_frozen(spec, norm, Vec::new(), frozen)
    }

    pub(crate) fn from_frozen(
        spec: ModelSpec,
        norm: Normalizer,
        cameras: Vec<ImageInput>,
        members: Vec<FrozenNet>,
    ) -> Self {
        let t = |v: &[f32]| Tensor::from_slice(v);
        TrainedPolicy {
            obs_mean: t(&norm.obs_mean),
            obs_std: t(&norm.obs_std),
            act_mean: t(&norm.act_mean),
            act_std: t(&norm.act_std),
            members,
            cameras,
            spec,
            norm,
        }
    }

    pub fn ensemble_size(&self) -> usize {
        self.members.len()
    }

    /// Raw observations float32 `[B, obs_dim]` (CPU) -> goals `[B, K, chunk, act_dim]`. A
    /// state policy.
    pub fn forward(&self, obs: &Tensor) -> Tensor {
        self.forward_images(obs, &[])
    }

    /// Like [`forward`](Self::forward), with one uint8 `[B, H, W, 3]` per camera: the
    /// exported graph's `forward(state, img_0, ..)`.
    pub fn forward_images(&self, obs: &Tensor, images: &[Tensor]) -> Tensor {
        let x = (obs - &self.obs_mean) / &self.obs_std;
        let outs: Vec<Tensor> = self
            .members
            .iter()
            .map(|m| m.forward(&x, images, &self.spec))
            .collect();
        Tensor::cat(&outs, 1) * &self.act_std + &self.act_mean
    }

    /// Runs the policy on plain rows (each `obs_dim` long). A state policy.
    pub fn predict(&self, rows: &[Vec<f32>]) -> Result<Vec<f32>, TrainError> {
        self.predict_inputs(&ModelInputs {
            obs: rows.to_vec(),
            images: Vec::new(),
        })
    }

    /// Runs the policy on rows and their images; flat `[B, K, chunk, act]` output.
    pub fn predict_inputs(&self, inputs: &ModelInputs) -> Result<Vec<f32>, TrainError> {
        let (x, imgs) = self.input_tensors(inputs)?;
        let y = tch::no_grad(|| self.forward_images(&x, &imgs));
        Ok(Vec::<f32>::try_from(y.flatten(0, -1))?)
    }

    /// The tensors `forward_images` takes, checked against the policy's sizes.
    pub fn input_tensors(&self, inputs: &ModelInputs) -> Result<(Tensor, Vec<Tensor>), TrainError> {
        let n = inputs.obs.len();
        let bad = |message: String| TrainError::InvalidOption {
            name: "model inputs",
            message,
        };
        if let Some(r) = inputs.obs.iter().find(|r| r.len() != self.spec.obs_dim) {
            return Err(bad(format!(
                "an observation row has {} values, the policy takes {}",
                r.len(),
                self.spec.obs_dim
            )));
        }
        if inputs.images.len() != self.cameras.len() {
            return Err(bad(format!(
                "{} image columns for {} cameras",
                inputs.images.len(),
                self.cameras.len()
            )));
        }
        let flat: Vec<f32> = inputs.obs.iter().flatten().copied().collect();
        let x = Tensor::from_slice(&flat).view([n as i64, self.spec.obs_dim as i64]);
        let mut imgs = Vec::with_capacity(self.cameras.len());
        for (cam, data) in self.cameras.iter().zip(&inputs.images) {
            let (h, w) = (i64::from(cam.height), i64::from(cam.width));
            if data.len() as i64 != n as i64 * h * w * 3 {
                return Err(bad(format!(
                    "camera `{}`: {} bytes for {n} rows of {w}x{h} RGB",
                    cam.name,
                    data.len()
                )));
            }
            imgs.push(Tensor::from_slice(data).view([n as i64, h, w, 3]));
        }
        Ok((x, imgs))
    }

    /// Every weight, flattened, for reproducibility checks.
    pub fn weights(&self) -> Result<Vec<f32>, TrainError> {
        let mut out = Vec::new();
        for m in &self.members {
            for t in m.tensors() {
                out.extend(Vec::<f32>::try_from(t.flatten(0, -1))?);
            }
        }
        Ok(out)
    }

    /// Traces the forward pass into a TorchScript module and saves it (loadable with
    /// `torch.jit.load` in Python, and `tch::CModule::load`). An image policy's graph takes
    /// `(state, img_0, ..)` with uint8 `[B, H, W, 3]` images.
    pub fn export(&self, path: &Path) -> Result<(), TrainError> {
        const B: i64 = 2;
        let mut example = vec![Tensor::zeros(
            [B, self.spec.obs_dim as i64],
            (Kind::Float, Device::Cpu),
        )];
        for c in &self.cameras {
            // A fixed pattern, not torch's generator: exporting must not move training's seed.
            let shape = [B, i64::from(c.height), i64::from(c.width), 3];
            let n: i64 = shape.iter().product();
            let img = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(251);
            example.push(img.to_kind(Kind::Uint8).view(shape));
        }
        let module = tch::no_grad(|| {
            CModule::create_by_tracing("IntervenedPolicy", "forward", &example, &mut |xs| match xs
                .split_first()
            {
                Some((x, imgs)) => vec![self.forward_images(x, imgs)],
                None => Vec::new(),
            })
        })?;
        module.save(path)?;
        Ok(())
    }
}
