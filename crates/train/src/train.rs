//! The training loop: seeded weighted sampling, Adam on MSE in normalised space, validation by
//! held-out episodes, early stopping with restore-best, a bootstrap ensemble, a progress bar.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use intervened_policy::ImageInput;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};
use tracing::{debug, info};

use crate::dataset::{
    bootstrap_episodes, sample_weights, Dataset, Sample, WeightedSampler, Weighting,
};
use crate::error::TrainError;
use crate::model::{restore, snapshot, Mlp, ModelSpec, Net, Normalizer, TrainedPolicy};
use crate::vision::VisionNet;

/// How to train. `Default` gives the seed recipe: hidden 256, Adam lr 3e-4, batch 256.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub weighting: Weighting,
    pub ensemble: usize,
    /// Each ensemble member trains on a bootstrap resample of the training episodes; off, every
    /// member sees all of them and members differ only by initialisation and sampling order.
    pub bootstrap: bool,
    /// Optimiser steps per member (an upper bound when early stopping is on).
    pub steps: usize,
    /// Steps between validation evaluations; 0 picks about one epoch (at most steps / 20).
    pub eval_every: usize,
    pub batch: usize,
    pub seed: u64,
    /// Evaluations without improvement before stopping; 0 disables early stopping.
    pub patience: usize,
    pub lr: f64,
    pub hidden: usize,
    /// Scale observations by their mean and spread (inside the exported graph); off feeds
    /// them raw.
    pub normalize_obs: bool,
    /// Standard deviation of Gaussian noise added to each normalised training observation
    /// (0 = none): a cheap guard against states just off the demonstrations.
    pub obs_noise: f64,
    /// Image policies: random-shift augmentation of training images (pad 4 px, crop back).
    pub image_shift: bool,
    pub quiet: bool,
    pub device: Device,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            weighting: Weighting::HgDagger,
            ensemble: 1,
            bootstrap: true,
            steps: 1000,
            eval_every: 0,
            batch: 256,
            seed: 0,
            patience: 10,
            lr: 3e-4,
            hidden: 256,
            normalize_obs: true,
            obs_noise: 0.0,
            image_shift: true,
            quiet: false,
            device: Device::Cpu,
        }
    }
}

/// One evaluation point of the loss curve (losses are MSE in normalised units).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LossPoint {
    pub step: usize,
    pub train: f64,
    pub val: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub member: usize,
    /// Episodes in this member's (bootstrap) training set, counting repeats.
    pub train_episodes: usize,
    pub train_samples: usize,
    pub steps_run: usize,
    pub stopped_early: bool,
    /// Weighted training loss before the first step.
    pub initial_loss: f64,
    pub final_train_loss: f64,
    pub best_val_loss: Option<f64>,
    pub curve: Vec<LossPoint>,
}

pub struct TrainOutcome {
    pub policy: TrainedPolicy,
    pub members: Vec<MemberReport>,
}

/// The training pairs of one split, as tensors, with their sampling weights.
struct Tensors {
    x: Tensor,
    y: Tensor,
    /// `[N, chunk * act]`: 1 for targets to learn, 0 for steps another source produced.
    m: Tensor,
    /// `[N]` int64: each pair's row in the dataset's image tensors.
    rows: Tensor,
    /// Per camera, uint8 `[dataset rows, H, W, 3]`, shared (not copied) by every set.
    images: Vec<Tensor>,
    weights: Vec<f64>,
}

/// Mean squared error over the unmasked targets of each row `[N]`.
fn masked_row_mse(pred: &Tensor, y: &Tensor, m: &Tensor) -> Tensor {
    let err = (pred - y).square() * m;
    err.sum_dim_intlist(1, false, Kind::Float)
        / m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
}

impl Tensors {
    /// Keeps only samples with a positive weight: the rest would never be drawn.
    fn build(
        samples: &[&Sample],
        scheme: Weighting,
        norm: &Normalizer,
        chunk: usize,
        images: &[Tensor],
        device: Device,
    ) -> Option<Tensors> {
        let labels: Vec<_> = samples.iter().map(|s| s.label).collect();
        let w = sample_weights(&labels, scheme);
        let kept: Vec<(&Sample, f64)> = samples
            .iter()
            .zip(w)
            .filter(|(_, w)| *w > 0.0)
            .map(|(s, w)| (*s, w))
            .collect();
        if kept.is_empty() {
            return None;
        }
        let obs: Vec<&[f32]> = kept.iter().map(|(s, _)| s.obs.as_slice()).collect();
        let act: Vec<&[f32]> = kept
            .iter()
            .map(|(s, _)| s.action_chunk.as_slice())
            .collect();
        let act_dim = norm.act_mean.len();
        let mask: Vec<f32> = kept
            .iter()
            .flat_map(|(s, _)| {
                s.step_mask
                    .iter()
                    .flat_map(move |&v| std::iter::repeat_n(v, act_dim))
            })
            .collect();
        let m = Tensor::from_slice(&mask)
            .view([kept.len() as i64, (chunk * act_dim) as i64])
            .to_device(device);
        let rows: Vec<i64> = kept.iter().map(|(s, _)| s.row as i64).collect();
        Some(Tensors {
            x: norm.obs_tensor(&obs, device),
            y: norm.act_tensor(&act, chunk, device),
            m,
            rows: Tensor::from_slice(&rows).to_device(device),
            images: images.iter().map(Tensor::shallow_clone).collect(),
            weights: kept.iter().map(|(_, w)| *w).collect(),
        })
    }

    /// The images of the pairs at `idx` (`[n]` int64 indices into this set), one per camera.
    fn gather_images(&self, idx: &Tensor) -> Vec<Tensor> {
        if self.images.is_empty() {
            return Vec::new();
        }
        let rows = self.rows.index_select(0, idx);
        self.images
            .iter()
            .map(|t| t.index_select(0, &rows))
            .collect()
    }

    fn len(&self) -> usize {
        self.weights.len()
    }

    /// Weighted MSE over the whole set, in slices to bound memory.
    fn weighted_loss(&self, net: &dyn Net, device: Device) -> Result<f64, TrainError> {
        // Conv activations of thousands of images would not fit in memory at once.
        let slice: i64 = if self.images.is_empty() { 8192 } else { 256 };
        let n = self.len() as i64;
        let w = Tensor::from_slice(&self.weights)
            .to_kind(Kind::Float)
            .to_device(device);
        let total = tch::no_grad(|| -> Result<f64, TrainError> {
            let mut acc = 0.0;
            let mut start = 0;
            while start < n {
                let len = slice.min(n - start);
                let idx = Tensor::arange_start(start, start + len, (Kind::Int64, device));
                let imgs = self.gather_images(&idx);
                let pred = net.forward_t(&self.x.narrow(0, start, len), &imgs, None);
                let per = masked_row_mse(
                    &pred,
                    &self.y.narrow(0, start, len),
                    &self.m.narrow(0, start, len),
                );
                acc += f64::try_from((per * w.narrow(0, start, len)).sum(Kind::Double))?;
                start += len;
            }
            Ok(acc)
        })?;
        let wsum: f64 = self.weights.iter().sum();
        Ok(if wsum > 0.0 { total / wsum } else { f64::NAN })
    }
}

/// Held while a member's weights are drawn from torch's global generator.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains `cfg.ensemble` members on the training episodes (each on a bootstrap resample of them
/// when K > 1) and validates on the validation episodes.
pub fn train(
    ds: &Dataset,
    train_eps: &[usize],
    val_eps: &[usize],
    cfg: &TrainConfig,
) -> Result<TrainOutcome, TrainError> {
    if cfg.ensemble == 0 || cfg.batch == 0 || cfg.steps == 0 {
        return Err(TrainError::InvalidOption {
            name: "ensemble/batch/steps",
            message: "ensemble size, batch size and steps must each be at least 1".into(),
        });
    }
    // One thread: bit-identical results for a seed (and no fight with the control loop).
    tch::set_num_threads(1);
    let device = cfg.device;
    let spec = ModelSpec {
        obs_dim: ds.obs_dim,
        act_dim: ds.act_dim,
        chunk: ds.chunk,
        hidden: cfg.hidden,
    };

    let all_train = ds.subset(train_eps);
    let trainable: Vec<&Sample> = {
        let labels: Vec<_> = all_train.iter().map(|s| s.label).collect();
        all_train
            .iter()
            .zip(sample_weights(&labels, cfg.weighting))
            .filter(|(_, w)| *w > 0.0)
            .map(|(s, _)| *s)
            .collect()
    };
    if trainable.is_empty() {
        return Err(TrainError::InvalidOption {
            name: "training set",
            message: format!(
                "the training episodes hold no frame that `{}` trains on",
                cfg.weighting
            ),
        });
    }
    let mut norm = Normalizer::fit(&trainable, ds.obs_dim, ds.act_dim);
    if !cfg.normalize_obs {
        let id = Normalizer::identity(ds.obs_dim, ds.act_dim);
        norm.obs_mean = id.obs_mean;
        norm.obs_std = id.obs_std;
    }
    if !(cfg.obs_noise.is_finite() && cfg.obs_noise >= 0.0) {
        return Err(TrainError::InvalidOption {
            name: "obs_noise",
            message: format!("{} is not a standard deviation", cfg.obs_noise),
        });
    }
    // The dataset's images, once, as uint8 tensors every set indexes into.
    let images: Vec<Tensor> = ds
        .images
        .iter()
        .map(|c| {
            Tensor::from_slice(&c.data)
                .view([-1, i64::from(c.height), i64::from(c.width), 3])
                .to_device(device)
        })
        .collect();
    let cameras: Vec<ImageInput> = ds
        .images
        .iter()
        .map(|c| ImageInput {
            name: c.name.clone(),
            width: c.width,
            height: c.height,
        })
        .collect();
    let build = |samples: &[&Sample]| {
        Tensors::build(samples, cfg.weighting, &norm, ds.chunk, &images, device)
    };
    let val_set = build(&ds.subset(val_eps));

    let bar = progress_bar(cfg, cfg.steps as u64 * cfg.ensemble as u64);
    let mut members = Vec::with_capacity(cfg.ensemble);
    let mut reports = Vec::with_capacity(cfg.ensemble);
    for k in 0..cfg.ensemble {
        let member_seed = cfg.seed.wrapping_add(k as u64);
        let eps = if cfg.ensemble > 1 && cfg.bootstrap {
            bootstrap_episodes(train_eps, member_seed ^ 0xb007)
        } else {
            train_eps.to_vec()
        };
        let samples = ds.subset(&eps);
        // A bootstrap may miss every labelled episode; fall back to the full training set.
        let set = match build(&samples) {
            Some(s) => s,
            None => {
                debug!(
                    member = k,
                    "bootstrap resample has no trainable frame; using all training episodes"
                );
                build(&all_train).ok_or_else(|| TrainError::InvalidOption {
                    name: "training set",
                    message: "no trainable frame".into(),
                })?
            }
        };
        let net: Box<dyn Net> = {
            // Initialisation draws from torch's one global generator: seeding it and drawing
            // under a lock keeps a seed's weights the same when several trainings run side by
            // side (`bench dagger --jobs`).
            let _init = INIT_LOCK
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tch::manual_seed(member_seed as i64);
            if cameras.is_empty() {
                Box::new(Mlp::new(&spec, device))
            } else {
                Box::new(VisionNet::new(&spec, &cameras, device))
            }
        };
        let report = train_member(
            k,
            eps.len(),
            net.as_ref(),
            &set,
            val_set.as_ref(),
            cfg,
            &bar,
        )?;
        info!(
            member = k,
            steps = report.steps_run,
            initial_loss = report.initial_loss,
            final_loss = report.final_train_loss,
            best_val = ?report.best_val_loss,
            "member trained"
        );
        members.push(net.freeze());
        reports.push(report);
    }
    bar.finish_and_clear();
    Ok(TrainOutcome {
        policy: TrainedPolicy::from_frozen(spec, norm, cameras, members),
        members: reports,
    })
}

fn progress_bar(cfg: &TrainConfig, total: u64) -> ProgressBar {
    if cfg.quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} training [{bar:30}] {pos}/{len} steps {msg} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn train_member(
    k: usize,
    n_eps: usize,
    net: &dyn Net,
    set: &Tensors,
    val: Option<&Tensors>,
    cfg: &TrainConfig,
    bar: &ProgressBar,
) -> Result<MemberReport, TrainError> {
    let device = cfg.device;
    let mut opt = nn::Adam::default().build(net.var_store(), cfg.lr)?;
    let mut sampler = WeightedSampler::new(&set.weights, cfg.seed.wrapping_add(1000 + k as u64))?;
    // Its own stream: augmentation must not shift which rows are sampled.
    let mut shift_rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(2000 + k as u64));
    let steps_per_epoch = set.len().div_ceil(cfg.batch).max(1);
    let eval_every = if cfg.eval_every > 0 {
        cfg.eval_every
    } else {
        steps_per_epoch.min((cfg.steps / 20).max(1))
    };

    let initial_loss = set.weighted_loss(net, device)?;
    let val_loss = |m: &dyn Net| val.map(|v| v.weighted_loss(m, device)).transpose();
    let mut curve = vec![LossPoint {
        step: 0,
        train: initial_loss,
        val: val_loss(net)?,
    }];
    let mut best = curve
        .first()
        .and_then(|p| p.val)
        .map(|v| (v, snapshot(net.var_store())));
    let mut bad_evals = 0usize;
    let mut stopped_early = false;
    let mut running = 0.0;
    let mut running_n = 0usize;
    let mut last_train = initial_loss;
    let mut step = 0;
    while step < cfg.steps {
        let idx: Vec<i64> = sampler
            .batch(cfg.batch)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        let mut x = set.x.index_select(0, &idx);
        // The global generator: bit-exact only when no other training runs beside this one.
        if cfg.obs_noise > 0.0 {
            x = &x + x.randn_like() * cfg.obs_noise;
        }
        let y = set.y.index_select(0, &idx);
        let m = set.m.index_select(0, &idx);
        let imgs = set.gather_images(&idx);
        let shift = cfg.image_shift.then_some(&mut shift_rng);
        let loss = masked_row_mse(&net.forward_t(&x, &imgs, shift), &y, &m).mean(Kind::Float);
        opt.backward_step(&loss);
        let l = f64::try_from(&loss)?;
        step += 1;
        if !l.is_finite() {
            return Err(TrainError::Diverged { step, loss: l });
        }
        running += l;
        running_n += 1;
        bar.inc(1);

        if step % eval_every == 0 || step == cfg.steps {
            last_train = running / running_n.max(1) as f64;
            running = 0.0;
            running_n = 0;
            let v = val_loss(net)?;
            curve.push(LossPoint {
                step,
                train: last_train,
                val: v,
            });
            bar.set_message(match v {
                Some(v) => format!("member {k} loss {last_train:.4} val {v:.4}"),
                None => format!("member {k} loss {last_train:.4}"),
            });
            if let Some(v) = v {
                match &best {
                    Some((b, _)) if v >= *b => bad_evals += 1,
                    _ => {
                        best = Some((v, snapshot(net.var_store())));
                        bad_evals = 0;
                    }
                }
                if cfg.patience > 0 && bad_evals >= cfg.patience {
                    stopped_early = true;
                    bar.inc((cfg.steps - step) as u64);
                    debug!(
                        member = k,
                        step, "early stop: validation loss stopped improving"
                    );
                    break;
                }
            }
        }
    }
    let best_val_loss = best.as_ref().map(|(v, _)| *v);
    if let Some((_, snap)) = &best {
        restore(net.var_store(), snap);
    }
    Ok(MemberReport {
        member: k,
        train_episodes: n_eps,
        train_samples: set.len(),
        steps_run: step,
        stopped_early,
        initial_loss,
        final_train_loss: last_train,
        best_val_loss,
        curve,
    })
}
