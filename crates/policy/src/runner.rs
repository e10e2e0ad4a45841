//! The policy as the control thread sees it: one non-blocking-ish call per tick.
//!
//! The runner starts inline: each `step` runs a forward pass on the control thread, which is
//! cheapest for small MLPs (tens of microseconds). It times every pass. The first pass (or the
//! settled warm-up pass measured at load) that takes longer than `inline_budget * period` moves
//! the model to a worker thread for good. From then on `step` only hands the newest
//! observation to the worker (latest-observation-wins: an observation the worker has not
//! picked up yet is replaced) and collects finished chunks; it never waits for the model. When
//! no chunk covers the current tick, `step` returns None and the caller holds position.
//!
//! Freshness. A chunk predicted from the observation of tick `t0` covers `t0 .. t0+k`. A worker
//! result arrives at some later tick `T`. Steps still ahead are used as they are. When the
//! whole chunk already lies in the past (always the case for k = 1, whose one step is for `t0`),
//! the chunk is re-anchored so that its last step applies at `T`: it is late, but it is the
//! newest thing the model has said, and holding it is better than holding nothing. A result
//! older than `action_timeout` is dropped as stale. If no result is accepted for
//! `action_timeout` after the policy was asked, [`PolicyRunner::starved`] says so and the loop
//! treats it as a fault (Hold), never a silent freeze.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError, TrySendError};
use tracing::{error, info, warn};

use crate::ensemble::TemporalEnsembler;
use crate::error::PolicyError;
use crate::model::{Latency, Policy, Prediction};
use crate::sidecar::ActionKind;

/// Forward latencies kept for the p50/p99 in [`RunnerStats`].
const LATENCY_WINDOW: usize = 1024;

/// How the runner is configured; [`RunnerOptions::from_config`] reads it from a robot config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerOptions {
    /// The control period.
    pub period: Duration,
    /// Fraction of `period` a forward pass may take inline.
    pub inline_budget: f64,
    /// ACT decay `m`.
    pub temporal_ensemble_m: f64,
    /// The longest a policy may go without a usable action before it counts as starved.
    pub action_timeout: Duration,
    /// Run inference on the worker thread from the start (`policy.inference = "worker"`), so
    /// the control thread never calls into libtorch.
    pub start_on_worker: bool,
}

impl RunnerOptions {
    pub fn from_config(config: &intervened_robot::RobotConfig) -> Self {
        RunnerOptions {
            period: Duration::from_secs_f64(config.period_s()),
            inline_budget: config.policy.inline_budget,
            temporal_ensemble_m: config.policy.temporal_ensemble_m,
            action_timeout: Duration::from_millis(config.policy.action_timeout_ms),
            start_on_worker: config.policy.inference == intervened_robot::InferenceMode::Worker,
        }
    }

    /// `action_timeout` in ticks (at least 1).
    fn timeout_ticks(&self) -> u64 {
        let p = self.period.as_secs_f64();
        if p > 0.0 {
            ((self.action_timeout.as_secs_f64() / p).ceil() as u64).max(1)
        } else {
            u64::MAX
        }
    }

    fn budget(&self) -> Duration {
        let b = self.period.as_secs_f64() * self.inline_budget;
        if b.is_finite() && b > 0.0 {
            Duration::from_secs_f64(b)
        } else {
            Duration::ZERO
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerMode {
    /// Forward passes run inside `step`.
    Inline,
    /// Forward passes run on a worker thread; `step` never waits for them.
    Worker,
    /// The worker thread is gone (it panicked): every step holds.
    Failed,
}

/// Worker jobs made when inference moves to the worker thread.
const SPARE_JOBS: usize = 3;

/// Counters for status and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerStats {
    pub mode: RunnerMode,
    pub forward_passes: u64,
    /// Over the last 1024 forward passes.
    pub forward: Latency,
    pub forward_max_us: f64,
    /// Chunks that reached the ensembler.
    pub chunks_used: u64,
    /// Chunks that came back from the worker older than `action_timeout` (dropped).
    pub stale_chunks: u64,
    /// Chunks that came back after their last step had passed and were re-anchored so their
    /// last step applies at the tick they arrived (always so for chunk 1 on the worker).
    pub late_chunks: u64,
    /// Times the runner went `action_timeout` without a usable action (each is a Hold).
    pub starvations: u64,
    /// Observations replaced before the worker picked them up.
    pub superseded_observations: u64,
    /// Steps that returned None (hold).
    pub hold_steps: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Doubt of the newest chunk (None without an ensemble).
    pub last_doubt: Option<f32>,
    /// The tick at which inference moved to the worker (None if it did not, or at load).
    pub moved_to_worker_at: Option<u64>,
}

/// One unit of work for the worker; its buffers travel back and are reused.
struct Job {
    epoch: u64,
    tick: u64,
    obs: Vec<f32>,
    /// One RGB buffer per camera of an image policy (empty for a state policy).
    images: Vec<Vec<u8>>,
    q: Vec<f64>,
    pred: Prediction,
}

struct Done {
    job: Job,
    latency: Duration,
    error: Option<PolicyError>,
}

struct Worker {
    tx: Sender<Job>,
    /// A second handle on the job queue, so `step` can take back a job the worker has not
    /// started and replace it with a newer observation.
    reclaim: Receiver<Job>,
    rx: Receiver<Done>,
    handle: Option<JoinHandle<()>>,
}

enum Engine {
    Inline(Box<Policy>),
    Worker(Worker),
    Failed,
}

pub struct PolicyRunner {
    engine: Engine,
    opts: RunnerOptions,
    budget: Duration,
    kind: ActionKind,
    pt_path: std::path::PathBuf,
    obs_dim: usize,
    /// Bytes per image of each camera an image policy reads (empty for a state policy).
    image_lens: Vec<usize>,
    act_dim: usize,
    chunk: usize,
    ensembler: TemporalEnsembler,
    /// Reset generation: results from before a reset are dropped.
    epoch: u64,
    /// Inline-mode scratch.
    obs_buf: Vec<f32>,
    pred: Prediction,
    /// Worker-mode spare jobs.
    spare: Vec<Job>,
    latencies_us: Vec<f64>,
    latency_pos: usize,
    stats: RunnerStats,
    timeout_ticks: u64,
    /// The tick since which the runner has waited for a usable action: the first step after a
    /// reset, then the tick of each accepted chunk. None until the first step.
    waiting_since: Option<u64>,
    /// Set once a starvation has been counted, until the next accepted chunk or reset.
    starved: bool,
    /// The observation tick of the newest chunk the ensembler took.
    newest_obs_tick: Option<u64>,
}

impl PolicyRunner {
    /// Wraps a loaded policy. If its warm-up latency already exceeds the inline budget, it
    /// starts on the worker thread right away.
    pub fn new(policy: Policy, opts: RunnerOptions) -> Self {
        let budget = opts.budget();
        let warm = policy.warmup_latency();
        let mut runner = PolicyRunner {
            kind: policy.action_kind(),
            pt_path: policy.pt_path().to_path_buf(),
            obs_dim: policy.obs_dim(),
            image_lens: policy
                .cameras()
                .iter()
                .map(|c| c.width as usize * c.height as usize * 3)
                .collect(),
            act_dim: policy.act_dim(),
            chunk: policy.chunk_size(),
            ensembler: TemporalEnsembler::new(
                policy.chunk_size(),
                policy.act_dim(),
                opts.temporal_ensemble_m,
            ),
            obs_buf: vec![0.0; policy.obs_dim()],
            pred: Prediction::default(),
            engine: Engine::Inline(Box::new(policy)),
            opts,
            budget,
            epoch: 0,
            spare: Vec::new(),
            latencies_us: Vec::with_capacity(LATENCY_WINDOW),
            latency_pos: 0,
            timeout_ticks: opts.timeout_ticks(),
            waiting_since: None,
            starved: false,
            newest_obs_tick: None,
            stats: RunnerStats {
                mode: RunnerMode::Inline,
                forward_passes: 0,
                forward: Latency::from_samples_us(&mut []),
                forward_max_us: 0.0,
                chunks_used: 0,
                stale_chunks: 0,
                late_chunks: 0,
                starvations: 0,
                superseded_observations: 0,
                hold_steps: 0,
                errors: 0,
                last_error: None,
                last_doubt: None,
                moved_to_worker_at: None,
            },
        };
        if opts.start_on_worker {
            info!("policy inference runs on a worker thread (policy.inference = \"worker\")");
            runner.move_to_worker();
        } else if warm > budget {
            info!(
                warmup_us = warm.as_micros() as u64,
                budget_us = budget.as_micros() as u64,
                "policy slower than the inline budget at load: inference runs on a worker thread"
            );
            runner.move_to_worker();
        }
        runner
    }

    /// The ensembled goal for `tick` (absolute, `action_names` order), or None: no action is
    /// ready, hold position. `obs` is the observation in `observation_names` order and
    /// `measured_q` the measured joint positions in `action_names` order (used for delta
    /// policies). Ticks must not go backwards between resets.
    pub fn step(&mut self, tick: u64, obs: &[f64], measured_q: &[f64]) -> Option<Vec<f64>> {
        let mut out = vec![0.0; self.act_dim];
        self.step_into(tick, obs, measured_q, &mut out)
            .then_some(out)
    }

    /// Like [`step`](Self::step), writing the goal into `out` (`act_dim` long) instead of
    /// allocating; returns false to hold (then `out` is unspecified).
    pub fn step_into(
        &mut self,
        tick: u64,
        obs: &[f64],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> bool {
        self.step_images_into(tick, obs, &[], measured_q, out)
    }

    /// [`step_into`](Self::step_into) for an image policy: `images` holds the latest RGB image
    /// of each camera the policy reads, in its sidecar's order. On the worker they are copied
    /// into buffers that are reused, so a step allocates nothing once running.
    pub fn step_images_into(
        &mut self,
        tick: u64,
        obs: &[f64],
        images: &[&[u8]],
        measured_q: &[f64],
        out: &mut [f64],
    ) -> bool {
        self.waiting_since.get_or_insert(tick);
        if let Err(e) = self.check_inputs(obs, images, measured_q) {
            self.record_error(e);
            self.stats.hold_steps += 1;
            return false;
        }
        match self.engine {
            Engine::Inline(_) => self.step_inline(tick, obs, images, measured_q),
            Engine::Worker(_) => self.step_worker(tick, obs, images, measured_q),
            Engine::Failed => {}
        }
        let ready = self.ensembler.action_into(tick, out);
        if !ready {
            self.stats.hold_steps += 1;
        }
        ready
    }

    /// Whether this runs an image policy (then [`step_images_into`](Self::step_images_into)).
    pub fn image_count(&self) -> usize {
        self.image_lens.len()
    }

    fn check_inputs(&self, obs: &[f64], images: &[&[u8]], q: &[f64]) -> Result<(), PolicyError> {
        let bad_image = images
            .iter()
            .zip(&self.image_lens)
            .find(|(i, n)| i.len() != **n);
        let (what, got, expected) = if obs.len() != self.obs_dim {
            ("observation", obs.len(), self.obs_dim)
        } else if images.len() != self.image_lens.len() {
            (
                "images (one per camera)",
                images.len(),
                self.image_lens.len(),
            )
        } else if let Some((img, &n)) = bad_image {
            ("image bytes (H * W * 3)", img.len(), n)
        } else if self.kind == ActionKind::Delta && q.len() != self.act_dim {
            (
                "measured joint positions (delta policy)",
                q.len(),
                self.act_dim,
            )
        } else {
            return Ok(());
        };
        Err(PolicyError::InputWidth {
            path: self.pt_path.clone(),
            what,
            got,
            expected,
        })
    }

    fn step_inline(&mut self, tick: u64, obs: &[f64], images: &[&[u8]], q: &[f64]) {
        let Engine::Inline(policy) = &mut self.engine else {
            return;
        };
        for (d, &s) in self.obs_buf.iter_mut().zip(obs) {
            *d = s as f32;
        }
        let t0 = Instant::now();
        let result = policy.infer_images_into(&self.obs_buf, images, &mut self.pred);
        let dt = t0.elapsed();
        self.record_latency(dt);
        match result {
            Ok(()) => {
                let pred = std::mem::take(&mut self.pred);
                self.accept_at(tick, tick, tick, &pred, q);
                self.pred = pred;
            }
            Err(e) => self.record_error(e),
        }
        if dt > self.budget {
            warn!(
                tick,
                forward_us = dt.as_micros() as u64,
                budget_us = self.budget.as_micros() as u64,
                "forward pass over the inline budget: moving inference to a worker thread"
            );
            self.stats.moved_to_worker_at = Some(tick);
            self.move_to_worker();
        }
    }

    fn move_to_worker(&mut self) {
        let Engine::Inline(policy) = std::mem::replace(&mut self.engine, Engine::Failed) else {
            return;
        };
        let (tx, job_rx) = bounded::<Job>(1);
        let (done_tx, rx) = unbounded::<Done>();
        let reclaim = job_rx.clone();
        let spawned = std::thread::Builder::new()
            .name("policy-worker".into())
            .spawn(move || worker_loop(*policy, job_rx, done_tx));
        match spawned {
            Ok(handle) => {
                self.engine = Engine::Worker(Worker {
                    tx,
                    reclaim,
                    rx,
                    handle: Some(handle),
                });
                self.stats.mode = RunnerMode::Worker;
                // Jobs for every one that can be out at once (one queued, one running, one
                // finished and not yet collected), with full-size buffers: a slow worker on a
                // loaded machine never makes `step` allocate.
                while self.spare.len() < SPARE_JOBS {
                    self.spare.push(Job {
                        epoch: 0,
                        tick: 0,
                        obs: Vec::with_capacity(self.obs_dim),
                        images: self
                            .image_lens
                            .iter()
                            .map(|&n| Vec::with_capacity(n))
                            .collect(),
                        q: Vec::with_capacity(self.act_dim),
                        pred: Prediction::default(),
                    });
                }
            }
            Err(e) => {
                error!(error = %e, "cannot start the policy worker thread: holding");
                self.stats.mode = RunnerMode::Failed;
            }
        }
    }

    fn step_worker(&mut self, tick: u64, obs: &[f64], images: &[&[u8]], q: &[f64]) {
        // Collect what the worker finished since the last tick.
        loop {
            let Engine::Worker(w) = &self.engine else {
                return;
            };
            match w.rx.try_recv() {
                Ok(done) => self.finish(tick, done),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.worker_failed();
                    return;
                }
            }
        }
        let Engine::Worker(w) = &self.engine else {
            return;
        };
        // Latest observation wins: take back a job the worker has not started.
        let mut job = match w.reclaim.try_recv() {
            Ok(old) => {
                self.stats.superseded_observations += 1;
                old
            }
            Err(_) => self.spare.pop().unwrap_or_else(|| Job {
                epoch: 0,
                tick: 0,
                obs: Vec::with_capacity(self.obs_dim),
                images: Vec::new(),
                q: Vec::with_capacity(self.act_dim),
                pred: Prediction::default(),
            }),
        };
        job.epoch = self.epoch;
        job.tick = tick;
        job.obs.clear();
        job.obs.extend(obs.iter().map(|&v| v as f32));
        job.images.resize_with(images.len(), Vec::new);
        for (dst, src) in job.images.iter_mut().zip(images) {
            dst.clear();
            dst.extend_from_slice(src);
        }
        job.q.clear();
        job.q.extend_from_slice(q);
        match w.tx.try_send(job) {
            Ok(()) => {}
            // Only this thread sends and the queue was just emptied, so this cannot happen;
            // keep the buffers rather than panic.
            Err(TrySendError::Full(job)) => self.spare.push(job),
            Err(TrySendError::Disconnected(_)) => self.worker_failed(),
        }
    }

    fn finish(&mut self, tick: u64, done: Done) {
        let Done {
            job,
            latency,
            error,
        } = done;
        self.record_latency(latency);
        if job.epoch == self.epoch {
            let chunk = self.chunk as u64;
            match error {
                Some(e) => self.record_error(e),
                None if tick.saturating_sub(job.tick) > self.timeout_ticks => {
                    self.stats.stale_chunks += 1;
                }
                None if job.tick + chunk <= tick => {
                    // Every step is in the past: the last one applies now (see the module doc).
                    self.stats.late_chunks += 1;
                    self.accept_at(tick, tick + 1 - chunk, job.tick, &job.pred, &job.q);
                }
                None => self.accept_at(tick, job.tick, job.tick, &job.pred, &job.q),
            }
        }
        // A small pool suffices: at most one queued, one running, a few finished.
        if self.spare.len() < SPARE_JOBS + 1 {
            self.spare.push(job);
        }
    }

    /// Hands a chunk to the ensembler with its first step at `anchor`; `now` is the tick it
    /// became available (which restarts the starvation clock), `obs_tick` the tick whose
    /// observation it was predicted from.
    fn accept_at(&mut self, now: u64, anchor: u64, obs_tick: u64, pred: &Prediction, q: &[f64]) {
        let pushed = match self.kind {
            ActionKind::Absolute => self.ensembler.push(anchor, &pred.chunk),
            ActionKind::Delta => self.ensembler.push_delta(anchor, &pred.chunk, q),
        };
        match pushed {
            Ok(()) => {
                self.stats.chunks_used += 1;
                self.stats.last_doubt = pred.doubt;
                self.newest_obs_tick = Some(obs_tick);
                self.waiting_since = Some(now);
                self.starved = false;
            }
            Err(e) => {
                self.stats.errors += 1;
                self.stats.last_error = Some(e.to_string());
            }
        }
    }

    fn worker_failed(&mut self) {
        if let Engine::Worker(w) = &mut self.engine {
            if let Some(h) = w.handle.take() {
                if h.join().is_err() {
                    error!("policy worker thread panicked: holding until a new policy is loaded");
                }
            }
        }
        self.engine = Engine::Failed;
        self.stats.mode = RunnerMode::Failed;
    }

    fn record_latency(&mut self, dt: Duration) {
        let us = dt.as_secs_f64() * 1e6;
        if self.latencies_us.len() < LATENCY_WINDOW {
            self.latencies_us.push(us);
        } else if let Some(slot) = self.latencies_us.get_mut(self.latency_pos) {
            *slot = us;
        }
        self.latency_pos = (self.latency_pos + 1) % LATENCY_WINDOW;
        self.stats.forward_passes += 1;
        self.stats.forward_max_us = self.stats.forward_max_us.max(us);
    }

    fn record_error(&mut self, e: PolicyError) {
        self.stats.errors += 1;
        // Log the first and then every 100th: this runs at the control rate.
        if self.stats.errors == 1 || self.stats.errors.is_multiple_of(100) {
            warn!(error = %e, count = self.stats.errors, "policy step failed: holding");
        }
        self.stats.last_error = Some(e.to_string());
    }

    /// Forgets every prediction (and any in flight). Call when control changes hands.
    pub fn reset(&mut self) {
        self.ensembler.reset();
        self.epoch += 1;
        // The starvation clock restarts at the next step.
        self.waiting_since = None;
        self.starved = false;
        if let Engine::Worker(w) = &self.engine {
            if let Ok(job) = w.reclaim.try_recv() {
                self.spare.push(job);
            }
        }
    }

    /// The tick whose observation produced the newest chunk in use (None before the first):
    /// when it changes, the goal just computed is the first one to act on that observation.
    pub fn newest_chunk_obs_tick(&self) -> Option<u64> {
        self.newest_obs_tick
    }

    pub fn mode(&self) -> RunnerMode {
        self.stats.mode
    }

    /// How long the runner has gone without a usable action at `tick`, if that is longer than
    /// `action_timeout`; None otherwise. Counted once per starvation (until a chunk is accepted
    /// or the runner is reset). Allocation-free: called every tick.
    pub fn starved(&mut self, tick: u64) -> Option<Duration> {
        let since = self.waiting_since?;
        let waited = tick.saturating_sub(since);
        if waited <= self.timeout_ticks {
            return None;
        }
        if !self.starved {
            self.starved = true;
            self.stats.starvations += 1;
        }
        Some(self.opts.period.mul_f64(waited as f64))
    }

    /// Errors since the runner was made (forward failures, bad shapes); cheap to read per tick.
    pub fn error_count(&self) -> u64 {
        self.stats.errors
    }

    /// The newest error's message.
    pub fn last_error(&self) -> Option<&str> {
        self.stats.last_error.as_deref()
    }

    /// Doubt of the newest chunk accepted.
    pub fn last_doubt(&self) -> Option<f32> {
        self.stats.last_doubt
    }

    pub fn options(&self) -> RunnerOptions {
        self.opts
    }

    pub fn stats(&self) -> RunnerStats {
        let mut s = self.stats.clone();
        let mut lat = self.latencies_us.clone();
        s.forward = Latency::from_samples_us(&mut lat);
        s
    }

    /// Stops the worker (after its current forward pass) and waits for it.
    pub fn shutdown(mut self) {
        if let Engine::Worker(w) = std::mem::replace(&mut self.engine, Engine::Failed) {
            let Worker {
                tx,
                reclaim,
                rx,
                handle,
            } = w;
            drop((tx, reclaim, rx));
            if let Some(h) = handle {
                if h.join().is_err() {
                    error!("policy worker thread panicked");
                }
            }
        }
    }
}

fn worker_loop(mut policy: Policy, jobs: Receiver<Job>, done: Sender<Done>) {
    // Thread settings are per thread in libtorch's OpenMP backend.
    tch::set_num_threads(1);
    while let Ok(mut job) = jobs.recv() {
        let t0 = Instant::now();
        let images: Vec<&[u8]> = job.images.iter().map(Vec::as_slice).collect();
        let error = policy
            .infer_images_into(&job.obs, &images, &mut job.pred)
            .err();
        let latency = t0.elapsed();
        if done
            .send(Done {
                job,
                latency,
                error,
            })
            .is_err()
        {
            break;
        }
    }
}
