//! Loading a TorchScript policy and running it.
//!
//! # Model I/O contract
//!
//! - Input: one float32 tensor `[B, obs_dim]`, columns in the sidecar's `observation_names`
//!   order, in the robot's units (radians for joints). Normalisation lives inside the graph.
//!   An image policy (sidecar `cameras`) takes, after it, one uint8 tensor `[B, H, W, 3]` per
//!   camera in the sidecar's order: `forward(state, front, wrist)`.
//! - Output: one float32 tensor `[B, K, chunk, act_dim]`: `K = ensemble_size` members (1 without
//!   an ensemble), `chunk = chunk_size` future steps (step 0 = the tick the observation was
//!   taken), `act_dim` columns in `action_names` order. With `action_kind = "delta"` each action
//!   is an offset from the joint positions measured with the observation.
//! - The runtime calls it with `B = 1`, under `no_grad`, on the CPU with one intra-op thread.
//!
//! `crates/policy/CONTRACT.md` shows how to export such a model from Python.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tch::{CModule, Kind, Tensor};
use tracing::{debug, info};

use crate::error::PolicyError;
use crate::sidecar::{
    policy_paths, sha256_file, ActionKind, ImageInput, PolicySidecar, MODEL_FILE,
};

/// Forward passes run at load time: TorchScript's profiling executor specialises the graph
/// during the first calls, so the first ones are slow and only later ones tell the real cost.
pub const WARMUP_RUNS: usize = 5;

/// What the robot this policy is loaded on provides, checked against the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyExpectations {
    pub robot_type: String,
    pub observation_names: Vec<String>,
    pub action_names: Vec<String>,
    pub fps: f64,
    /// The cameras the robot has (an image policy may read any of them, at their size).
    pub cameras: Vec<ImageInput>,
}

impl PolicyExpectations {
    /// The convention for a robot config: observations are `<joint>.pos` for every joint in
    /// config order followed by `extra_observations` (sensor features such as `block.x`);
    /// actions are `<joint>.pos` goals; fps is the control rate.
    pub fn for_robot(
        config: &intervened_robot::RobotConfig,
        extra_observations: &[String],
    ) -> Self {
        let joints: Vec<String> = config
            .joints
            .iter()
            .map(|j| format!("{}.pos", j.name))
            .collect();
        let mut observation_names = joints.clone();
        observation_names.extend(extra_observations.iter().cloned());
        PolicyExpectations {
            robot_type: config.robot.robot_type.clone(),
            observation_names,
            action_names: joints,
            fps: config.control.rate_hz,
            cameras: config
                .cameras
                .iter()
                .map(|c| ImageInput {
                    name: c.name.clone(),
                    width: c.width,
                    height: c.height,
                })
                .collect(),
        }
    }
}

/// One inference result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    /// `chunk_size x act_dim`: the ensemble mean, still delta if the policy is delta.
    pub chunk: Vec<Vec<f32>>,
    /// Sum over actions of the members' variance (population, divide by K) at step 0: the trace
    /// of the ensemble covariance, as HG-DAgger logs it. None without an ensemble.
    pub doubt: Option<f32>,
}

/// A loaded, checked policy.
pub struct Policy {
    module: CModule,
    sidecar: PolicySidecar,
    pt_path: PathBuf,
    sidecar_path: PathBuf,
    obs_dim: usize,
    act_dim: usize,
    /// Bytes per image, per camera (`H * W * 3`), in the sidecar's order.
    image_lens: Vec<usize>,
    /// Raw model output, reused across calls: `K * chunk * act_dim`.
    out_buf: Vec<f32>,
    warmup_latency: Duration,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("pt_path", &self.pt_path)
            .field("version", &self.sidecar.version)
            .field("obs_dim", &self.obs_dim)
            .field("act_dim", &self.act_dim)
            .field("chunk_size", &self.sidecar.chunk_size)
            .field("ensemble_size", &self.sidecar.ensemble_size)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads `<dir>/policy.pt` + `<dir>/policy.json`, or `x.pt` + `x.json`, and checks it
    /// against `expected`, the file hash, and the output shape (by warm-up forward passes).
    /// On error nothing is kept: a caller's previous policy stays as it was.
    pub fn load(
        dir_or_pt: impl AsRef<Path>,
        expected: &PolicyExpectations,
    ) -> Result<Policy, PolicyError> {
        let (pt_path, sidecar_path) = policy_paths(dir_or_pt.as_ref());
        if !pt_path.is_file() {
            return Err(PolicyError::MissingFile {
                path: pt_path,
                what: "TorchScript model",
                fix: format!(
                    "point at a policy directory holding {MODEL_FILE} and policy.json (e.g. <registry>/current), or export one (crates/policy/CONTRACT.md)"
                ),
            });
        }
        let sidecar = PolicySidecar::read(&sidecar_path)?;
        check_expectations(&sidecar_path, &sidecar, expected)?;

        let actual = sha256_file(&pt_path)?;
        if !actual.eq_ignore_ascii_case(&sidecar.sha256) {
            return Err(PolicyError::field(
                &sidecar_path,
                "sha256",
                format!(
                    "is {} but {} hashes to {actual}",
                    sidecar.sha256,
                    pt_path.display()
                ),
                "the model and sidecar are from different exports or the copy is damaged: copy the policy directory again, or re-export both files together",
            ));
        }

        // Inference wants one intra-op thread: the control loop and the worker each own a core,
        // and a thread pool only adds wake-up jitter for batch-1 MLPs.
        tch::set_num_threads(1);
        let _guard = tch::no_grad_guard();
        let mut module = CModule::load(&pt_path).map_err(|e| PolicyError::load(&pt_path, &e))?;
        module.set_eval();

        let obs_dim = sidecar.observation_names.len();
        let act_dim = sidecar.action_names.len();
        let out_len = sidecar.ensemble_size * sidecar.chunk_size * act_dim;
        let image_lens = sidecar
            .cameras
            .iter()
            .map(|c| c.width as usize * c.height as usize * 3)
            .collect();
        let mut policy = Policy {
            image_lens,
            module,
            sidecar,
            pt_path,
            sidecar_path,
            obs_dim,
            act_dim,
            out_buf: vec![0.0; out_len],
            warmup_latency: Duration::ZERO,
        };
        policy.warm_up()?;
        info!(
            policy = %policy.pt_path.display(),
            version = %policy.sidecar.version,
            obs_dim,
            act_dim,
            chunk = policy.sidecar.chunk_size,
            ensemble = policy.sidecar.ensemble_size,
            warmup_us = policy.warmup_latency.as_micros() as u64,
            "policy loaded"
        );
        Ok(policy)
    }

    /// Runs the model on zeros a few times, checking shape, dtype and finiteness, and
    /// measures the settled latency.
    fn warm_up(&mut self) -> Result<(), PolicyError> {
        let zeros = vec![0.0f32; self.obs_dim];
        let black: Vec<Vec<u8>> = self.image_lens.iter().map(|&n| vec![0u8; n]).collect();
        let images: Vec<&[u8]> = black.iter().map(Vec::as_slice).collect();
        let mut times = Vec::with_capacity(WARMUP_RUNS);
        for run in 0..WARMUP_RUNS {
            let t0 = Instant::now();
            let out = self.forward(&zeros, &images)?;
            self.check_output(&out)?;
            self.copy_out(&out)?;
            self.check_finite()?;
            times.push(t0.elapsed());
            debug!(run, us = t0.elapsed().as_micros() as u64, "warm-up forward");
        }
        // The last two runs are past the profiling executor's specialisation.
        self.warmup_latency = times
            .iter()
            .rev()
            .take(2)
            .max()
            .copied()
            .unwrap_or_default();
        Ok(())
    }

    /// `images` holds one `H * W * 3` RGB buffer per sidecar camera (checked by the caller).
    fn forward(&self, obs: &[f32], images: &[&[u8]]) -> Result<Tensor, PolicyError> {
        let fwd = |e: tch::TchError| PolicyError::forward(&self.pt_path, &e);
        let input = Tensor::f_from_slice(obs)
            .and_then(|t| t.f_reshape([1, self.obs_dim as i64]))
            .map_err(fwd)?;
        if self.sidecar.cameras.is_empty() {
            return self.module.forward_ts(&[input]).map_err(fwd);
        }
        let mut inputs = Vec::with_capacity(1 + images.len());
        inputs.push(input);
        for (cam, img) in self.sidecar.cameras.iter().zip(images) {
            let t = Tensor::f_from_slice(img)
                .and_then(|t| t.f_reshape([1, i64::from(cam.height), i64::from(cam.width), 3]))
                .map_err(fwd)?;
            inputs.push(t);
        }
        self.module.forward_ts(&inputs).map_err(fwd)
    }

    fn check_output(&self, out: &Tensor) -> Result<(), PolicyError> {
        let s = &self.sidecar;
        let want = [
            1,
            s.ensemble_size as i64,
            s.chunk_size as i64,
            self.act_dim as i64,
        ];
        let got = out.size();
        if got != want {
            return Err(PolicyError::field(
                &self.pt_path,
                "output shape",
                format!(
                    "the model returns {got:?} for a [1, {}] input; the sidecar {} says [B, K = ensemble_size, chunk_size, len(action_names)] = {want:?}",
                    self.obs_dim,
                    self.sidecar_path.display()
                ),
                "make forward() return [B, K, chunk, act_dim] (e.g. `y.reshape(B, K, chunk, act_dim)`; `unsqueeze(1)` for a single model) or correct ensemble_size/chunk_size/action_names in the sidecar",
            ));
        }
        let kind = out
            .f_kind()
            .map_err(|e| PolicyError::forward(&self.pt_path, &e))?;
        if kind != Kind::Float {
            return Err(PolicyError::field(
                &self.pt_path,
                "output dtype",
                format!("the model returns {kind:?}, the contract is float32"),
                "end forward() with `.float()` or export the model in float32",
            ));
        }
        Ok(())
    }

    fn copy_out(&mut self, out: &Tensor) -> Result<(), PolicyError> {
        let n = self.out_buf.len();
        out.f_copy_data(&mut self.out_buf, n)
            .map_err(|e| PolicyError::forward(&self.pt_path, &e))
    }

    fn check_finite(&self) -> Result<(), PolicyError> {
        let Some(idx) = self.out_buf.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let per_member = self.sidecar.chunk_size * self.act_dim;
        let member = idx / per_member.max(1);
        let rest = idx % per_member.max(1);
        let action = self
            .sidecar
            .action_names
            .get(rest % self.act_dim.max(1))
            .cloned()
            .unwrap_or_default();
        Err(PolicyError::NonFinite {
            path: self.pt_path.clone(),
            value: self.out_buf.get(idx).copied().unwrap_or(f32::NAN),
            member,
            step: rest / self.act_dim.max(1),
            action,
        })
    }

    /// Runs one forward pass on `obs` (`obs_dim` values, `observation_names` order).
    pub fn infer(&mut self, obs: &[f32]) -> Result<Prediction, PolicyError> {
        let mut p = Prediction::default();
        self.infer_into(obs, &mut p)?;
        Ok(p)
    }

    /// Like [`infer`](Self::infer), reusing `out`'s buffers: no allocation on the Rust side
    /// once `out` has the right shape. A state-only policy.
    pub fn infer_into(&mut self, obs: &[f32], out: &mut Prediction) -> Result<(), PolicyError> {
        self.infer_images_into(obs, &[], out)
    }

    /// One forward pass of an image policy: `images` holds one RGB buffer (`H * W * 3` bytes,
    /// row-major) per camera of [`cameras`](Self::cameras), in that order. A state-only policy
    /// takes `&[]`.
    pub fn infer_images_into(
        &mut self,
        obs: &[f32],
        images: &[&[u8]],
        out: &mut Prediction,
    ) -> Result<(), PolicyError> {
        self.check_inputs(obs.len(), images)?;
        let _guard = tch::no_grad_guard();
        let t = self.forward(obs, images)?;
        // Shape is fixed by warm-up for B = 1; recheck cheaply since a scripted model may
        // branch on its input.
        self.check_output(&t)?;
        self.copy_out(&t)?;
        self.check_finite()?;
        self.reduce(out);
        Ok(())
    }

    /// Checks the observation width and, for an image policy, one buffer of the right size
    /// per camera.
    pub fn check_inputs(&self, obs_len: usize, images: &[&[u8]]) -> Result<(), PolicyError> {
        let width = |what, got, expected| PolicyError::InputWidth {
            path: self.pt_path.clone(),
            what,
            got,
            expected,
        };
        if obs_len != self.obs_dim {
            return Err(width("observation", obs_len, self.obs_dim));
        }
        if images.len() != self.image_lens.len() {
            return Err(width(
                "images (one per camera)",
                images.len(),
                self.image_lens.len(),
            ));
        }
        match images
            .iter()
            .zip(&self.image_lens)
            .find(|(i, n)| i.len() != **n)
        {
            Some((img, &n)) => Err(width("image bytes (H * W * 3)", img.len(), n)),
            None => Ok(()),
        }
    }

    /// The cameras an image policy reads, in `forward`'s order (empty for a state policy).
    pub fn cameras(&self) -> &[ImageInput] {
        &self.sidecar.cameras
    }

    /// Ensemble mean and doubt from `out_buf`.
    fn reduce(&self, out: &mut Prediction) {
        let k = self.sidecar.ensemble_size;
        let chunk = self.sidecar.chunk_size;
        let a = self.act_dim;
        out.chunk.resize_with(chunk, Vec::new);
        let per_member = chunk * a;
        for (s, row) in out.chunk.iter_mut().enumerate() {
            row.resize(a, 0.0);
            for (j, v) in row.iter_mut().enumerate() {
                let sum: f64 = (0..k)
                    .filter_map(|m| self.out_buf.get(m * per_member + s * a + j))
                    .map(|&x| f64::from(x))
                    .sum();
                *v = (sum / k as f64) as f32;
            }
        }
        out.doubt = ensemble_doubt(&self.out_buf, k, chunk, a);
    }

    pub fn sidecar(&self) -> &PolicySidecar {
        &self.sidecar
    }

    pub fn pt_path(&self) -> &Path {
        &self.pt_path
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    pub fn chunk_size(&self) -> usize {
        self.sidecar.chunk_size
    }

    pub fn ensemble_size(&self) -> usize {
        self.sidecar.ensemble_size
    }

    pub fn action_kind(&self) -> ActionKind {
        self.sidecar.action_kind
    }

    /// The settled forward latency measured while loading.
    pub fn warmup_latency(&self) -> Duration {
        self.warmup_latency
    }
}

fn check_expectations(
    path: &Path,
    s: &PolicySidecar,
    want: &PolicyExpectations,
) -> Result<(), PolicyError> {
    if s.robot_type != want.robot_type {
        return Err(PolicyError::field(
            path,
            "robot_type",
            format!(
                "the policy was trained for `{}`, this robot is `{}`",
                s.robot_type, want.robot_type
            ),
            "load a policy trained on this robot type (policies do not transfer between arms)",
        ));
    }
    // An image policy may observe the joints alone: the sensor features that follow them are
    // the simulator's privileged state, which a camera replaces.
    let joints_only = !s.cameras.is_empty()
        && s.observation_names.len() == want.action_names.len()
        && want.observation_names.starts_with(&s.observation_names);
    if !joints_only {
        compare_names(
            path,
            "observation_names",
            &s.observation_names,
            &want.observation_names,
        )?;
    }
    for cam in &s.cameras {
        match want.cameras.iter().find(|c| c.name == cam.name) {
            None => {
                return Err(PolicyError::field(
                    path,
                    "cameras",
                    format!(
                        "the policy reads camera `{}`, which this robot's config does not have (it has: {})",
                        cam.name,
                        if want.cameras.is_empty() {
                            "none".to_string()
                        } else {
                            want.cameras.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                        }
                    ),
                    format!(
                        "add a [[cameras]] table named \"{}\" ({}x{}) to the robot config, or load a policy trained on this robot's cameras",
                        cam.name, cam.width, cam.height
                    ),
                ))
            }
            Some(c) if (c.width, c.height) != (cam.width, cam.height) => {
                return Err(PolicyError::field(
                    path,
                    "cameras",
                    format!(
                        "the policy reads `{}` at {}x{}, the robot's camera delivers {}x{} (images are not rescaled)",
                        cam.name, cam.width, cam.height, c.width, c.height
                    ),
                    format!(
                        "set the camera's width = {} and height = {} in the robot config, or retrain at {}x{}",
                        cam.width, cam.height, c.width, c.height
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    compare_names(path, "action_names", &s.action_names, &want.action_names)?;
    // fps is a ratio of small integers in practice; allow float noise only.
    if (s.fps - want.fps).abs() > 1e-6 * want.fps.abs().max(1.0) {
        return Err(PolicyError::field(
            path,
            "fps",
            format!(
                "the policy was trained at {} Hz, the control loop runs at {} Hz (chunk steps would be replayed at the wrong speed)",
                s.fps, want.fps
            ),
            format!(
                "set [control] rate_hz = {} in the robot config, or retrain at {} Hz",
                s.fps, want.fps
            ),
        ));
    }
    Ok(())
}

fn compare_names(
    path: &Path,
    field: &'static str,
    policy: &[String],
    robot: &[String],
) -> Result<(), PolicyError> {
    if policy == robot {
        return Ok(());
    }
    let problem = match policy.iter().zip(robot).position(|(a, b)| a != b) {
        Some(i) => {
            let (p, r) = (policy.get(i), robot.get(i));
            let moved = p.is_some_and(|p| robot.contains(p));
            format!(
                "position {i} is `{}` in the policy but `{}` on this robot{}",
                p.map(String::as_str).unwrap_or(""),
                r.map(String::as_str).unwrap_or(""),
                if moved {
                    " (same names, different order)"
                } else {
                    ""
                }
            )
        }
        None => format!(
            "the policy has {} names, this robot {} (policy: {:?}, robot: {:?})",
            policy.len(),
            robot.len(),
            policy,
            robot
        ),
    };
    Err(PolicyError::field(
        path,
        field,
        problem,
        format!("use a policy exported with this robot's {field} in this order: {robot:?} (retrain on data recorded with this config)"),
    ))
}

/// Forward-pass latency summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Summarises samples in microseconds (sorted in place). All zero when empty.
    pub fn from_samples_us(samples: &mut [f64]) -> Latency {
        if samples.is_empty() {
            return Latency {
                p50_us: 0.0,
                p99_us: 0.0,
                mean_us: 0.0,
                max_us: 0.0,
            };
        }
        samples.sort_by(f64::total_cmp);
        let mean_us = samples.iter().sum::<f64>() / samples.len() as f64;
        Latency {
            p50_us: percentile(samples, 0.50),
            p99_us: percentile(samples, 0.99),
            mean_us,
            max_us: samples.last().copied().unwrap_or(0.0),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(0.0)
}

/// Doubt of one prediction `[K, chunk, act_dim]` (flat, member-major): the trace of the
/// ensemble's covariance (the sum over joints of the members' variance), as HG-DAgger logs
/// it, averaged over the chunk's steps. With chunk 1 that is HG-DAgger's number. With absolute
/// chunks the first step is always near the measured position, where every member agrees;
/// members disagree about where to go next, so the whole chunk is what shows doubt. `None` for
/// a single model (K < 2) or a short buffer.
pub fn ensemble_doubt(out: &[f32], k: usize, chunk: usize, act_dim: usize) -> Option<f32> {
    let per_member = chunk * act_dim;
    if k < 2 || chunk == 0 || out.len() < k * per_member {
        return None;
    }
    let mut trace = 0.0f64;
    for i in 0..per_member {
        let xs = (0..k).filter_map(|m| out.get(m * per_member + i));
        let mean = xs.clone().map(|&x| f64::from(x)).sum::<f64>() / k as f64;
        let var = xs.map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / k as f64;
        trace += var;
    }
    Some((trace / chunk as f64) as f32)
}

/// Times `iters` forward passes (including the ensemble reduction) on a zero observation, for
/// `intervened bench infer`.
pub fn bench_infer(policy: &mut Policy, iters: usize) -> Result<Latency, PolicyError> {
    let obs = vec![0.0f32; policy.obs_dim()];
    // Mid-grey images: an image policy's cost does not depend on the pixels.
    let grey: Vec<Vec<u8>> = policy.image_lens.iter().map(|&n| vec![128u8; n]).collect();
    let images: Vec<&[u8]> = grey.iter().map(Vec::as_slice).collect();
    let mut pred = Prediction::default();
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        policy.infer_images_into(&obs, &images, &mut pred)?;
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Latency::from_samples_us(&mut samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        s.reverse();
        let l = Latency::from_samples_us(&mut s);
        assert_eq!(l.p50_us, 50.0);
        assert_eq!(l.p99_us, 99.0);
        assert_eq!(l.mean_us, 50.5);
        assert_eq!(Latency::from_samples_us(&mut []).p99_us, 0.0);
    }

    #[test]
    fn name_mismatch_says_where_and_whether_it_is_order() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = compare_names(
            Path::new("/x/policy.json"),
            "observation_names",
            &p(&["a.pos", "b.pos"]),
            &p(&["b.pos", "a.pos"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("position 0") && e.contains("different order"),
            "{e}"
        );
        assert!(e.starts_with("/x/policy.json: `observation_names`"), "{e}");
        let e = compare_names(
            Path::new("p.json"),
            "action_names",
            &p(&["a.pos"]),
            &p(&["a.pos", "b.pos"]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1 names, this robot 2"), "{e}");
    }
}
