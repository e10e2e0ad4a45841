//! `intervened bench dagger`: the experiment, through the real daemon path.
//!
//! Every episode runs the daemon in lockstep on the simulated robot: the servo emulator on a
//! pty, the virtual gamepad driven by the simulated human, the MCAP recorder, and the retrain
//! job on what was recorded. Per seed, four arms:
//! 1. **BC**: the simulated human records `demos` demonstrations; train; evaluate.
//! 2. **HG-DAgger**: per round, `dagger_episodes` policy episodes with the simulated human
//!    supervising (taking over when it judges the arm strays or stalls); retrain on the
//!    aggregate; evaluate.
//! 3. **BC, more demonstrations**: behaviour cloning on extra demonstrations until it has as
//!    many expert-labelled frames as HG-DAgger had after each round; train; evaluate. This is
//!    BC's label-efficiency curve, point for point beside HG-DAgger's.
//! 4. **Robot-gated** (EnsembleDAgger / ThriftyDAgger): an ensemble runs the episodes; the
//!    daemon rumbles when its doubt passes the threshold calibrated on held-out frames; the
//!    simulated human takes over only then.
//!
//! Every evaluation of a seed runs the same held-out blocks (a world seed no training episode
//! uses), with nobody at the gamepad, and records why each failed rollout failed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use intervened_daemon::recording::EpisodeOutcome;
use intervened_daemon::runtime::{self, RunOptions};
use intervened_episodes::{session_dir, summarize_session, FailureCounts};
use intervened_robot::RobotConfig;
use intervened_train::{registry, DoubtCalibration, RetrainOptions};
use intervened_world::{AskStats, Gate};
use serde::Serialize;

/// World seeds of evaluation rollouts start here; training episodes use `seed * 1000 + n`
/// with n < 1000, so no evaluation block was ever seen in training.
pub const EVAL_SEED_BASE: u64 = 1_000_000;

/// Set by SIGINT/SIGTERM. Each daemon run stops at its own signal handler and returns; the
/// experiment checks this between phases and stops too, instead of carrying on with the next
/// phase (the daemon's handlers stay installed, so the signal would otherwise be swallowed).
static INTERRUPTED: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();

/// Makes Ctrl-C (or SIGTERM) stop the experiment between phases. Call once, before any run.
pub fn catch_interrupts() -> Result<()> {
    let flag = INTERRUPTED.get_or_init(Default::default);
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("installing a signal handler")?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED
        .get()
        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    {
        anyhow::bail!(
            "interrupted: stopping the experiment (what was recorded so far stays on disk)"
        );
    }
    Ok(())
}

/// The success rates the label-efficiency comparison asks about.
pub const TARGET_SUCCESS: [f64; 2] = [0.8, 0.9];

#[derive(Debug, Clone)]
pub struct DaggerPlan {
    pub demos: u64,
    pub rounds: usize,
    pub dagger_episodes: u64,
    pub eval: u64,
    pub seeds: Vec<u64>,
    /// The training recipe (data and registry are set per arm).
    pub train: RetrainOptions,
    /// Run the BC-with-more-demonstrations arm.
    pub more_demos: bool,
    /// Ensemble members for the robot-gated arm; 0 leaves the arm out.
    pub gated_ensemble: usize,
    /// The robot-gated ensemble's members train on bootstrap resamples (else all see every
    /// episode).
    pub gated_bootstrap: bool,
    pub out: PathBuf,
}

impl DaggerPlan {
    fn phases_per_seed(&self) -> u64 {
        let r = self.rounds as u64;
        let gated = if self.gated_ensemble > 0 {
            2 + 3 * r
        } else {
            0
        };
        let more = if self.more_demos { 3 * r } else { 0 };
        3 + 3 * r + more + gated
    }
}

/// What one evaluation found.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Eval {
    pub successes: u64,
    pub episodes: u64,
    /// Why the failed rollouts failed.
    pub failures: FailureCounts,
    pub wall_s: f64,
}

impl Eval {
    pub fn rate(&self) -> f64 {
        self.successes as f64 / self.episodes.max(1) as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// "bc", "hg-dagger", "bc-more-demos" or "robot-gated".
    pub arm: String,
    pub round: usize,
    pub eval: Eval,
    /// Expert-labelled frames in the training set (demo + intervention frames).
    pub expert_frames: u64,
    /// Expert-labelled frames this round added.
    pub frames_added: u64,
    /// Intervened steps / steps in this round's supervised episodes.
    pub intervention_rate: Option<f64>,
    /// Mean length of the policy's runs between takeovers, in frames.
    pub mean_autonomous_run: Option<f64>,
    /// Robot-gated rounds: how well the robot asked for help.
    pub asks: Option<AskStats>,
    /// The doubt threshold the robot asked at (robot-gated rounds).
    pub doubt_threshold: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub points: Vec<Point>,
    pub wall_s: f64,
    /// Trainings this seed ran, and their wall-clock time in all.
    pub trainings: u32,
    pub train_s: f64,
}

/// The experiment's progress: one bar over every phase of every seed, and one line per
/// finished step. The bar draws only on a terminal; the lines always print (stderr), so logs
/// and CI show the same story.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(plan: &DaggerPlan) -> Self {
        Self::with_len(plan.phases_per_seed() * plan.seeds.len() as u64)
    }

    pub fn with_len(len: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self { bar }
    }

    pub fn phase(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub fn step(&self) {
        self.bar.inc(1);
    }

    pub fn line(&self, line: String) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Statistics of the episodes one recording run produced.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub successes: u64,
    pub episodes: u64,
    pub expert_frames: u64,
    pub frames: u64,
    pub intervention_steps: u64,
    pub runs: Vec<u64>,
    pub asks: Option<AskStats>,
}

/// One lockstep session on the simulated robot, recorded under `data`.
pub struct Session<'a> {
    pub cfg: &'a RobotConfig,
    pub data: &'a Path,
    /// The registry whose `current` policy runs (ignored for demonstrations).
    pub registry: &'a Path,
    pub episodes: u64,
    pub demo: bool,
    pub human: Option<Gate>,
    pub world_seed: u64,
    /// Ask for help above this doubt (robot-gated sessions).
    pub doubt_threshold: Option<f64>,
}

impl Session<'_> {
    /// Runs it. Policy sessions must run the registry's current version: the daemon refuses
    /// to start without a policy, and this checks it ran the right one.
    pub fn run(&self) -> Result<(RunStats, Eval)> {
        check_interrupted()?;
        let t0 = Instant::now();
        let mut cfg = self.cfg.clone();
        cfg.policy.registry = self.registry.to_path_buf();
        cfg.policy.doubt_threshold = self.doubt_threshold;
        cfg.teleop.require_gamepad = false;
        let human_params = intervened_world::HumanParams {
            seed: self.world_seed,
            gate: self.human.unwrap_or_default(),
            ..Default::default()
        };
        let opts = RunOptions {
            data: Some(self.data.to_path_buf()),
            episodes: Some(self.episodes),
            demo: self.demo,
            sim_human: self.human.is_some(),
            human: human_params,
            seed: Some(self.world_seed),
            ..RunOptions::default()
        };
        let r = runtime::run(cfg, opts)?;
        check_interrupted()?;
        let lr = &r.loop_report;
        anyhow::ensure!(
            lr.dropped_frames + lr.lost_frames + lr.lost_episodes == 0,
            "the recorder dropped {} frame(s) or image(s) and lost {} frame(s) and {} episode(s): refusing to train and report on incomplete data",
            lr.dropped_frames,
            lr.lost_frames,
            lr.lost_episodes
        );
        if !self.demo {
            check_version(self.registry, r.policy_version.as_deref())?;
        }
        let successes = r
            .loop_report
            .episodes
            .iter()
            .filter(|o| **o == EpisodeOutcome::Success)
            .count() as u64;
        let mut st = RunStats {
            successes,
            episodes: r.loop_report.episodes.len() as u64,
            asks: (self.human == Some(Gate::Robot))
                .then_some(r.asks)
                .flatten(),
            ..RunStats::default()
        };
        let mut ev = Eval {
            successes,
            episodes: st.episodes,
            ..Eval::default()
        };
        let id = r
            .session_id
            .as_ref()
            .context("the run recorded no session")?;
        let s = summarize_session(&session_dir(self.data, id))
            .with_context(|| format!("reading session {id}"))?;
        ev.failures = s.counts.failures;
        for m in &s.episodes {
            st.frames += m.frames;
            st.intervention_steps += m.intervention_steps;
            if m.demo {
                st.expert_frames += m.frames;
            } else {
                st.expert_frames += m.intervention_steps;
                st.runs.extend(m.autonomous_runs.iter().copied());
            }
        }
        ev.wall_s = t0.elapsed().as_secs_f64();
        Ok((st, ev))
    }
}

/// Evaluates the registry's current policy on `episodes` held-out rollouts with nobody at the
/// pad (world seed `EVAL_SEED_BASE + seed`), recorded under `data`.
pub fn evaluate(
    cfg: &RobotConfig,
    registry: &Path,
    data: &Path,
    episodes: u64,
    seed: u64,
) -> Result<Eval> {
    let (_, ev) = Session {
        cfg,
        data,
        registry,
        episodes,
        demo: false,
        human: None,
        world_seed: EVAL_SEED_BASE + seed,
        doubt_threshold: None,
    }
    .run()?;
    Ok(ev)
}

/// Trains on `data` with the recipe and publishes to `registry`.
pub fn train(
    recipe: &RetrainOptions,
    cfg: &RobotConfig,
    data: &Path,
    registry: &Path,
    seed: u64,
) -> Result<(String, Option<DoubtCalibration>)> {
    check_interrupted()?;
    let mut o = recipe.clone();
    o.data = data.to_path_buf();
    o.registry = registry.to_path_buf();
    o.robot = Some(cfg.clone());
    o.seed = seed;
    o.quiet = true;
    let r = intervened_train::retrain(&o)
        .with_context(|| format!("retraining on {}", data.display()))?;
    Ok((r.version, r.doubt))
}

/// The rollouts must have run the version the last retrain published, or every number after
/// this would measure something else.
fn check_version(registry: &Path, ran: Option<&str>) -> Result<()> {
    let want = registry::current_version(registry)?;
    match (want.as_deref(), ran) {
        (Some(w), Some(r)) if w == r => Ok(()),
        (w, r) => anyhow::bail!(
            "the rollouts ran policy {} but {} publishes {}: refusing to report numbers for the wrong policy",
            r.unwrap_or("<none>"),
            registry.display(),
            w.unwrap_or("<none>")
        ),
    }
}

fn mean(v: &[u64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<u64>() as f64 / v.len() as f64)
}

/// `0.71` -> `71%`, as every table of the experiment prints it.
pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

struct Ctx<'a> {
    cfg: &'a RobotConfig,
    root: PathBuf,
    plan: &'a DaggerPlan,
    seed: u64,
    progress: &'a Progress,
    trainings: std::cell::Cell<u32>,
    train_s: std::cell::Cell<f64>,
}

impl Ctx<'_> {
    fn eval(&self, registry: &Path, tag: &str) -> Result<Eval> {
        evaluate(
            self.cfg,
            registry,
            &self.root.join("eval").join(tag),
            self.plan.eval,
            self.seed,
        )
    }

    /// Trains with the plan's recipe; the robot-gated arm (`gated`) with its own ensemble.
    fn train(
        &self,
        data: &Path,
        registry: &Path,
        gated: bool,
    ) -> Result<(String, Option<DoubtCalibration>)> {
        let mut recipe = self.plan.train.clone();
        if gated {
            recipe.ensemble = self.plan.gated_ensemble;
            recipe.bootstrap = self.plan.gated_bootstrap;
        }
        let t0 = Instant::now();
        let r = train(&recipe, self.cfg, data, registry, self.seed)?;
        self.trainings.set(self.trainings.get() + 1);
        self.train_s
            .set(self.train_s.get() + t0.elapsed().as_secs_f64());
        Ok(r)
    }

    fn say(&self, arm: &str, round: usize, v: &str, ev: &Eval, extra: String) {
        let (lo, hi) = wilson(ev.successes, ev.episodes);
        self.progress.line(format!(
            "seed {} · {arm} {round}: {v}{extra}; {} held-out rollouts: {} success (95% CI {}–{}); failures: {}",
            self.seed,
            ev.episodes,
            pct(ev.rate()),
            pct(lo),
            pct(hi),
            ev.failures
        ));
    }
}

pub fn run_seed(
    cfg: &RobotConfig,
    plan: &DaggerPlan,
    seed: u64,
    progress: &Progress,
) -> Result<SeedResult> {
    let t0 = Instant::now();
    // Paths set on a config by code are absolute: a relative one would be read against the
    // config file's directory, not the working directory it was typed in.
    let out = std::path::absolute(&plan.out)
        .with_context(|| format!("resolving {}", plan.out.display()))?;
    let root = out.join(format!("seed-{seed}"));
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("clearing {}", root.display()))?;
    }
    let ctx = Ctx {
        cfg,
        root: root.clone(),
        plan,
        seed,
        progress,
        trainings: Default::default(),
        train_s: Default::default(),
    };
    let data = root.join("data");
    let reg = root.join("policies");
    let mut points = Vec::new();

    // 1. Demonstrations and behaviour cloning.
    progress.phase(format!(
        "seed {seed}: the simulated human records {} demonstrations",
        plan.demos
    ));
    let (demos, _) = Session {
        cfg,
        data: &data,
        registry: &reg,
        episodes: plan.demos,
        demo: true,
        human: Some(Gate::Human),
        world_seed: seed * 1000,
        doubt_threshold: None,
    }
    .run()?;
    let demo_session = first_session(&data).context("the demonstrations recorded no session")?;
    progress.step();
    progress.line(format!(
        "seed {seed} · demonstrations: {} recorded, {} succeeded, {} frames",
        demos.episodes, demos.successes, demos.expert_frames
    ));
    progress.phase(format!("seed {seed}: training behaviour cloning"));
    let (v, _) = ctx.train(&data, &reg, false)?;
    progress.step();
    progress.phase(format!("seed {seed}: evaluating BC ({v})"));
    let ev = ctx.eval(&reg, "bc")?;
    progress.step();
    ctx.say("BC", 0, &v, &ev, String::new());
    let mut expert = demos.expert_frames;
    points.push(Point {
        arm: "bc".into(),
        round: 0,
        eval: ev,
        expert_frames: expert,
        frames_added: expert,
        intervention_rate: None,
        mean_autonomous_run: None,
        asks: None,
        doubt_threshold: None,
    });

    // 2. HG-DAgger rounds with the simulated human supervising.
    let mut budgets = Vec::new();
    for round in 1..=plan.rounds {
        progress.phase(format!(
            "seed {seed}, round {round}: {} policy episodes, the simulated human supervising",
            plan.dagger_episodes
        ));
        let (st, _) = Session {
            cfg,
            data: &data,
            registry: &reg,
            episodes: plan.dagger_episodes,
            demo: false,
            human: Some(Gate::Human),
            world_seed: seed * 1000 + round as u64,
            doubt_threshold: None,
        }
        .run()?;
        progress.step();
        expert += st.expert_frames;
        budgets.push(expert);
        progress.phase(format!(
            "seed {seed}, round {round}: retraining on every session"
        ));
        let (v, _) = ctx.train(&data, &reg, false)?;
        progress.step();
        progress.phase(format!("seed {seed}, round {round}: evaluating {v}"));
        let ev = ctx.eval(&reg, &format!("hg-dagger-{round}"))?;
        progress.step();
        let rate = (st.frames > 0).then(|| st.intervention_steps as f64 / st.frames as f64);
        ctx.say(
            "HG-DAgger round",
            round,
            &v,
            &ev,
            format!(
                " after {} supervised episodes, {} intervention frames (rate {:.2})",
                st.episodes,
                st.expert_frames,
                rate.unwrap_or(0.0)
            ),
        );
        points.push(Point {
            arm: "hg-dagger".into(),
            round,
            eval: ev,
            expert_frames: expert,
            frames_added: st.expert_frames,
            intervention_rate: rate,
            mean_autonomous_run: mean(&st.runs),
            asks: None,
            doubt_threshold: None,
        });
    }

    // 3. Behaviour cloning with as many expert frames, from extra demonstrations.
    if plan.more_demos {
        let base_data = root.join("bc-more-demos-data");
        let base_reg = root.join("bc-more-demos-policies");
        copy_session(&data, &base_data, &demo_session)?;
        let per_demo = (demos.expert_frames / demos.episodes.max(1)).max(1);
        let mut base_expert = demos.expert_frames;
        let mut batch = 0u64;
        for (i, &budget) in budgets.iter().enumerate() {
            let round = i + 1;
            progress.phase(format!(
                "seed {seed}: extra demonstrations for BC at {budget} expert frames"
            ));
            while base_expert < budget && batch < 100 {
                let need = (budget - base_expert).div_ceil(per_demo).clamp(1, 50);
                let (st, _) = Session {
                    cfg,
                    data: &base_data,
                    registry: &base_reg,
                    episodes: need,
                    demo: true,
                    human: Some(Gate::Human),
                    world_seed: seed * 1000 + 900 + batch,
                    doubt_threshold: None,
                }
                .run()?;
                base_expert += st.expert_frames;
                batch += 1;
            }
            progress.step();
            progress.phase(format!(
                "seed {seed}: training BC on {base_expert} expert frames"
            ));
            let (v, _) = ctx.train(&base_data, &base_reg, false)?;
            progress.step();
            progress.phase(format!(
                "seed {seed}: evaluating BC on more demonstrations ({v})"
            ));
            let ev = ctx.eval(&base_reg, &format!("bc-more-demos-{round}"))?;
            progress.step();
            ctx.say(
                "BC with more demonstrations, budget",
                round,
                &v,
                &ev,
                format!(" on {base_expert} expert frames"),
            );
            points.push(Point {
                arm: "bc-more-demos".into(),
                round,
                eval: ev,
                expert_frames: base_expert,
                frames_added: base_expert - demos.expert_frames,
                intervention_rate: None,
                mean_autonomous_run: None,
                asks: None,
                doubt_threshold: None,
            });
        }
    }

    // 4. The robot asks for help: an ensemble, the human takes over only when asked.
    if plan.gated_ensemble > 0 {
        let k = plan.gated_ensemble;
        let g_data = root.join("robot-gated-data");
        let g_reg = root.join("robot-gated-policies");
        copy_session(&data, &g_data, &demo_session)?;
        progress.phase(format!(
            "seed {seed}: training a {k}-member ensemble on the demonstrations"
        ));
        let (v, mut cal) = ctx.train(&g_data, &g_reg, true)?;
        progress.step();
        progress.phase(format!("seed {seed}: evaluating the ensemble ({v})"));
        let ev = ctx.eval(&g_reg, "robot-gated-0")?;
        progress.step();
        ctx.say(
            "robot-gated round",
            0,
            &v,
            &ev,
            format!(" ({k}-member ensemble)"),
        );
        let mut g_expert = demos.expert_frames;
        points.push(Point {
            arm: "robot-gated".into(),
            round: 0,
            eval: ev,
            expert_frames: g_expert,
            frames_added: g_expert,
            intervention_rate: None,
            mean_autonomous_run: None,
            asks: None,
            doubt_threshold: None,
        });
        for round in 1..=plan.rounds {
            let threshold = cal.map(|c| c.threshold);
            progress.phase(format!(
                "seed {seed}, round {round}: {} ensemble episodes, the human answering asks",
                plan.dagger_episodes
            ));
            let (st, _) = Session {
                cfg,
                data: &g_data,
                registry: &g_reg,
                episodes: plan.dagger_episodes,
                demo: false,
                human: Some(Gate::Robot),
                world_seed: seed * 1000 + round as u64,
                doubt_threshold: threshold,
            }
            .run()?;
            progress.step();
            g_expert += st.expert_frames;
            progress.phase(format!(
                "seed {seed}, round {round}: retraining the ensemble"
            ));
            let (v, c) = ctx.train(&g_data, &g_reg, true)?;
            cal = c;
            progress.step();
            progress.phase(format!("seed {seed}, round {round}: evaluating {v}"));
            let ev = ctx.eval(&g_reg, &format!("robot-gated-{round}"))?;
            progress.step();
            let rate = (st.frames > 0).then(|| st.intervention_steps as f64 / st.frames as f64);
            let a = st.asks.unwrap_or_default();
            ctx.say(
                "robot-gated round",
                round,
                &v,
                &ev,
                format!(
                    " after {} episodes at doubt threshold {:.2e}: {} asks ({} false alarms), {} needs ({} missed), {} intervention frames",
                    st.episodes,
                    threshold.unwrap_or(f64::NAN),
                    a.asks,
                    a.false_alarms,
                    a.needs,
                    a.misses,
                    st.expert_frames
                ),
            );
            points.push(Point {
                arm: "robot-gated".into(),
                round,
                eval: ev,
                expert_frames: g_expert,
                frames_added: st.expert_frames,
                intervention_rate: rate,
                mean_autonomous_run: mean(&st.runs),
                asks: st.asks,
                doubt_threshold: threshold,
            });
        }
    }
    Ok(SeedResult {
        seed,
        points,
        wall_s: t0.elapsed().as_secs_f64(),
        trainings: ctx.trainings.get(),
        train_s: ctx.train_s.get(),
    })
}

/// Runs every seed of the plan, `jobs` of them side by side (each on its own thread, with its
/// own simulator, recorder and training), and returns their results in seed order. A seed's
/// numbers do not depend on `jobs`: every session runs in lockstep and every training on one
/// thread from its own seed. The first error stops the other seeds at their next phase.
pub fn run_seeds(
    cfg: &RobotConfig,
    plan: &DaggerPlan,
    jobs: usize,
    progress: &Progress,
) -> Result<Vec<SeedResult>> {
    if jobs <= 1 || plan.seeds.len() <= 1 {
        return plan
            .seeds
            .iter()
            .map(|s| run_seed(cfg, plan, *s, progress))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<SeedResult>>>> =
        plan.seeds.iter().map(|_| Default::default()).collect();
    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for j in 0..jobs.min(plan.seeds.len()) {
            let (next, slots) = (&next, &slots);
            let h = std::thread::Builder::new()
                .name(format!("dagger-job-{j}"))
                // Training and the daemon's set-up run on this thread: give it a main
                // thread's stack.
                .stack_size(8 << 20)
                .spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (Some(&seed), Some(slot)) = (plan.seeds.get(i), slots.get(i)) else {
                        break;
                    };
                    let r = run_seed(cfg, plan, seed, progress);
                    if r.is_err() {
                        // The others stop at their next phase.
                        INTERRUPTED
                            .get_or_init(Default::default)
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(r);
                    }
                })
                .context("starting a seed's thread")?;
            handles.push(h);
        }
        for h in handles {
            if h.join().is_err() {
                anyhow::bail!("a seed's thread panicked");
            }
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (slot, seed) in slots.into_iter().zip(&plan.seeds) {
        match slot.into_inner().ok().flatten() {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => errors.push(e.context(format!("seed {seed}"))),
            None => {}
        }
    }
    // A seed stopped by another's failure reports "interrupted": report the cause instead.
    let cause = errors
        .iter()
        .position(|e| !e.root_cause().to_string().starts_with("interrupted"))
        .unwrap_or(0);
    match errors.into_iter().nth(cause) {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Gives the plan a camera for `bench dagger --vision`: the config's own `[[cameras]]` (each
/// must be rendered, `device = "sim"`), or else one 96x96 `front` camera at 30 fps at the
/// default pose. Returns the camera names the image policies read.
pub fn with_sim_camera(cfg: &mut RobotConfig) -> Result<Vec<String>> {
    if cfg.cameras.is_empty() {
        cfg.cameras.push(intervened_robot::CameraConfig {
            name: "front".into(),
            device: "sim".into(),
            width: 96,
            height: 96,
            fps: 30,
            max_age_ms: None,
            pose: None,
        });
    }
    if let Some(c) = cfg.cameras.iter().find(|c| c.device != "sim") {
        anyhow::bail!(
            "camera `{}` is {}: the experiment runs on the simulated robot, whose cameras are rendered\n  fix: give it device = \"sim\", or use a config without [[cameras]] (a 96x96 `front` camera is added)",
            c.name,
            c.device
        );
    }
    Ok(cfg.cameras.iter().map(|c| c.name.clone()).collect())
}

/// What an image policy costs on this machine, measured on one trained policy.
#[derive(Debug, Clone, Serialize)]
pub struct VisionCosts {
    /// The policy measured (the last HG-DAgger policy of the first seed).
    pub policy: PathBuf,
    /// What it observes besides the images (the joints only: no `block.*`).
    pub observation: Vec<String>,
    /// `name WxH` per camera.
    pub cameras: Vec<String>,
    /// Forward passes at batch 1 (µs), in this process, one thread.
    pub infer_p50_us: f64,
    pub infer_p99_us: f64,
    pub infer_max_us: f64,
    pub infer_iters: usize,
    /// A real-time (not lockstep) run of that policy on the simulated robot, nobody at the pad.
    pub realtime_episodes: u64,
    pub realtime_successes: u64,
    /// From the capture of an image to the first goal written that acted on it (the monotonic
    /// clock of that run).
    pub camera_to_goal: intervened_daemon::stats::Summary,
    /// Of that: the image's age when the tick read it.
    pub image_age: intervened_daemon::stats::Summary,
}

/// Measures [`VisionCosts`] on the current policy of `registry`: `iters` forward passes at batch
/// 1, then `episodes` real-time episodes (recorded under `data`) for the camera-to-goal latency.
pub fn vision_costs(
    cfg: &RobotConfig,
    registry: &Path,
    data: &Path,
    iters: usize,
    episodes: u64,
    seed: u64,
) -> Result<VisionCosts> {
    check_interrupted()?;
    let version = registry::current_version(registry)?
        .with_context(|| format!("{} has no current policy", registry.display()))?;
    let dir = registry.join(&version);
    let expect = intervened_policy::PolicyExpectations::for_robot(cfg, &[]);
    let mut policy = intervened_policy::Policy::load(&dir, &expect)
        .with_context(|| format!("loading {}", dir.display()))?;
    // One intra-op thread: the trainings before this set torch's (global) count so.
    let lat = intervened_policy::bench_infer(&mut policy, iters)?;
    let side = policy.sidecar();
    let observation = side.observation_names.clone();
    let cameras = side
        .cameras
        .iter()
        .map(|c| format!("{} {}x{}", c.name, c.width, c.height))
        .collect();
    drop(policy);
    let mut run_cfg = cfg.clone();
    run_cfg.teleop.require_gamepad = false;
    let opts = RunOptions {
        data: Some(data.to_path_buf()),
        policy: Some(dir.clone()),
        episodes: Some(episodes),
        realtime: true,
        seed: Some(EVAL_SEED_BASE + seed),
        ..RunOptions::default()
    };
    let r = runtime::run(run_cfg, opts)?;
    check_interrupted()?;
    let realtime_successes = r
        .loop_report
        .episodes
        .iter()
        .filter(|o| **o == EpisodeOutcome::Success)
        .count() as u64;
    Ok(VisionCosts {
        // Relative to where the command ran, as the user typed the output folder.
        policy: std::env::current_dir()
            .ok()
            .and_then(|d| dir.strip_prefix(d).ok().map(Path::to_path_buf))
            .unwrap_or(dir),
        observation,
        cameras,
        infer_p50_us: lat.p50_us,
        infer_p99_us: lat.p99_us,
        infer_max_us: lat.max_us,
        infer_iters: iters,
        realtime_episodes: r.loop_report.episodes.len() as u64,
        realtime_successes,
        camera_to_goal: r.loop_report.camera_to_goal,
        image_age: r.loop_report.image_age,
    })
}

/// The image policy's costs as markdown.
pub fn vision_report(c: &VisionCosts, results: &[SeedResult]) -> String {
    let trainings: u32 = results.iter().map(|r| r.trainings).sum();
    let train_s: f64 = results.iter().map(|r| r.train_s).sum();
    let (g, a) = (&c.camera_to_goal, &c.image_age);
    format!(
        "Image policy ({}): observes {} and the camera(s) {}.\n\n\
         | measure | p50 | p99 | max | n |\n|---|---|---|---|---|\n\
         | inference at batch 1 (ms) | {:.2} | {:.2} | {:.2} | {} |\n\
         | camera to goal, real time (ms) | {:.1} | {:.1} | {:.1} | {} |\n\
         | of which the image's age when read (ms) | {:.1} | {:.1} | {:.1} | {} |\n\n\
         Camera to goal runs from an image's capture to the first goal written that acted on it \
         (frame age when the tick read it, inference, any wait for the worker), over {} real-time \
         episode(s) of that policy on the simulated robot ({} succeeded). \
         Training: {trainings} trainings, {:.0} s each on average (one thread each).\n",
        c.policy.display(),
        c.observation.join(", "),
        c.cameras.join(", "),
        c.infer_p50_us / 1e3,
        c.infer_p99_us / 1e3,
        c.infer_max_us / 1e3,
        c.infer_iters,
        g.p50_us / 1e3,
        g.p99_us / 1e3,
        g.max_us / 1e3,
        g.count,
        a.p50_us / 1e3,
        a.p99_us / 1e3,
        a.max_us / 1e3,
        a.count,
        c.realtime_episodes,
        c.realtime_successes,
        train_s / f64::from(trainings.max(1)),
    )
}

fn first_session(data: &Path) -> Option<String> {
    let mut ids = intervened_episodes::layout::session_ids(data).ok()?;
    ids.sort();
    ids.into_iter().next()
}

/// Copies one recorded session into another data root.
fn copy_session(from_data: &Path, to_data: &Path, id: &str) -> Result<()> {
    let src = session_dir(from_data, id);
    let dst = session_dir(to_data, id);
    std::fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
    for f in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let f = f?;
        std::fs::copy(f.path(), dst.join(f.file_name()))
            .with_context(|| format!("copying {}", f.path().display()))?;
    }
    Ok(())
}

/// The Wilson score interval for `k` successes in `n` trials at 95%.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054;
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// One arm and round, over every seed.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub arm: String,
    pub round: usize,
    /// Rollouts pooled over seeds.
    pub successes: u64,
    pub episodes: u64,
    pub rate: f64,
    /// Wilson 95% interval of the pooled rate.
    pub ci: (f64, f64),
    /// Per-seed success rates.
    pub per_seed: Vec<f64>,
    pub expert_frames: f64,
    pub intervention_rate: Option<f64>,
    pub mean_autonomous_run: Option<f64>,
    pub failures: FailureCounts,
    pub asks: Option<AskStats>,
    pub eval_wall_s: f64,
}

pub fn table(results: &[SeedResult]) -> Vec<Row> {
    let mut keys: Vec<(String, usize)> = Vec::new();
    for r in results {
        for p in &r.points {
            if !keys.contains(&(p.arm.clone(), p.round)) {
                keys.push((p.arm.clone(), p.round));
            }
        }
    }
    keys.into_iter()
        .map(|(arm, round)| {
            let pts: Vec<&Point> = results
                .iter()
                .flat_map(|r| r.points.iter())
                .filter(|p| p.arm == arm && p.round == round)
                .collect();
            let n = pts.len().max(1) as f64;
            let successes = pts.iter().map(|p| p.eval.successes).sum();
            let episodes = pts.iter().map(|p| p.eval.episodes).sum();
            let mut failures = FailureCounts::default();
            let mut asks: Option<AskStats> = None;
            for p in &pts {
                failures.merge(&p.eval.failures);
                if let Some(a) = &p.asks {
                    asks.get_or_insert_with(AskStats::default).add(a);
                }
            }
            Row {
                rate: successes as f64 / (episodes as f64).max(1.0),
                ci: wilson(successes, episodes),
                per_seed: pts.iter().map(|p| p.eval.rate()).collect(),
                expert_frames: pts.iter().map(|p| p.expert_frames as f64).sum::<f64>() / n,
                intervention_rate: avg(pts.iter().filter_map(|p| p.intervention_rate)),
                mean_autonomous_run: avg(pts.iter().filter_map(|p| p.mean_autonomous_run)),
                eval_wall_s: pts.iter().map(|p| p.eval.wall_s).sum(),
                successes,
                episodes,
                failures,
                asks,
                arm,
                round,
            }
        })
        .collect()
}

fn avg(it: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = it.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The arms as curves of (expert frames, success): every arm starts from BC.
fn curves(rows: &[Row]) -> Vec<(&'static str, Vec<&Row>)> {
    let bc: Vec<&Row> = rows.iter().filter(|r| r.arm == "bc").collect();
    let mut out = Vec::new();
    for (label, name) in [
        ("HG-DAgger", "hg-dagger"),
        ("BC, more demonstrations", "bc-more-demos"),
    ] {
        // An arm the plan left out has no curve.
        if rows.iter().any(|r| r.arm == name) {
            let mut v = bc.clone();
            v.extend(rows.iter().filter(|r| r.arm == name));
            out.push((label, v));
        }
    }
    // The robot-gated arm starts from its own ensemble (round 0), not the single BC model.
    let gated: Vec<&Row> = rows.iter().filter(|r| r.arm == "robot-gated").collect();
    if !gated.is_empty() {
        out.push(("robot-gated", gated));
    }
    out
}

/// Expert frames at which a curve first reaches `target` (linear between points), or None.
pub fn frames_to_reach(curve: &[&Row], target: f64) -> Option<f64> {
    let first = curve.first()?;
    if first.rate >= target {
        return Some(first.expert_frames);
    }
    curve.windows(2).find_map(|w| match w {
        [a, b] if a.rate < target && b.rate >= target => {
            let f = (target - a.rate) / (b.rate - a.rate);
            Some(a.expert_frames + f * (b.expert_frames - a.expert_frames))
        }
        _ => None,
    })
}

/// The tables, as markdown: results with intervals, why rollouts failed, how well the robot
/// asked, and label efficiency.
pub fn report(results: &[SeedResult], plan: &DaggerPlan) -> String {
    use std::fmt::Write;
    let rows = table(results);
    let mut s = String::new();
    let seeds = results.len();
    let _ = writeln!(
        s,
        "| arm | round | success (95% CI) | per seed | expert-labelled frames | intervention rate | mean autonomous run (frames) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in &rows {
        let _ = writeln!(
            s,
            "| {} | {} | **{}** ({}–{}) | {} | {:.0} | {} | {} |",
            r.arm,
            r.round,
            pct(r.rate),
            pct(r.ci.0),
            pct(r.ci.1),
            r.per_seed
                .iter()
                .map(|x| pct(*x))
                .collect::<Vec<_>>()
                .join(", "),
            r.expert_frames,
            r.intervention_rate
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.mean_autonomous_run
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    let _ = writeln!(
        s,
        "\n{} held-out rollouts per point per seed ({} rollouts pooled over {seeds} seed(s)); the same blocks for every arm and round of a seed.",
        plan.eval,
        plan.eval * seeds as u64
    );
    let _ = writeln!(s, "\nWhy the rollouts failed (all seeds pooled):\n");
    let _ = writeln!(
        s,
        "| arm | round | rollouts | success | ran into the joint limits | grasped, then dropped or not lifted | reached, never grasped | never reached | timed out |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let f = &r.failures;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.arm,
            r.round,
            r.episodes,
            r.successes,
            f.joint_limits,
            f.dropped,
            f.no_grasp,
            f.never_reached,
            f.timed_out + f.unexplained
        );
    }
    let gated: Vec<&Row> = rows.iter().filter(|r| r.asks.is_some()).collect();
    if !gated.is_empty() {
        let _ = writeln!(
            s,
            "\nHow well the robot asked for help (robot-gated rounds, all seeds):\n"
        );
        let _ = writeln!(
            s,
            "| round | asks | false alarms | needs (the human would have taken over) | missed (no ask within 1 s) | intervention rate |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for r in gated {
            let a = r.asks.unwrap_or_default();
            let frac = |x: u64, of: u64| {
                if of == 0 {
                    "-".to_string()
                } else {
                    format!("{x} ({})", pct(x as f64 / of as f64))
                }
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.round,
                a.asks,
                frac(a.false_alarms, a.asks),
                a.needs,
                frac(a.misses, a.needs),
                r.intervention_rate
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nExpert-labelled frames to reach a success rate (pooled over seeds, linear between rounds):\n"
    );
    let _ = writeln!(
        s,
        "| arm | {} |",
        TARGET_SUCCESS.map(|t| format!("to {}", pct(t))).join(" | ")
    );
    let _ = writeln!(s, "|---|{}", "---|".repeat(TARGET_SUCCESS.len()));
    for (name, curve) in curves(&rows) {
        let max = curve.iter().map(|r| r.expert_frames).fold(0.0, f64::max);
        let cells: Vec<String> = TARGET_SUCCESS
            .iter()
            .map(|&t| match frames_to_reach(&curve, t) {
                Some(f) => format!("{f:.0}"),
                None => format!("not reached within {max:.0}"),
            })
            .collect();
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    s
}

/// Success against round and against expert-labelled frames, every arm, with 95% intervals.
pub fn plot(results: &[SeedResult], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let rows = table(results);
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_round = rows.iter().map(|r| r.round).max().unwrap_or(1).max(1) as f64;
    let max_frames = rows.iter().map(|r| r.expert_frames).fold(1.0, f64::max);
    let colours = [BLUE, RED, GREEN];
    let series = curves(&rows);
    for (area, by_frames) in [(&left, false), (&right, true)] {
        let (caption, x_desc, x_max) = if by_frames {
            (
                "success vs expert-labelled frames",
                "expert-labelled frames",
                max_frames * 1.1,
            )
        } else {
            (
                "success vs round (95% intervals)",
                "round (0 = behaviour cloning)",
                max_round + 0.3,
            )
        };
        let mut c = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.2..x_max, 0.0..1.05)?;
        c.configure_mesh()
            .x_desc(x_desc)
            .y_desc("success rate")
            .draw()?;
        for (i, (name, curve)) in series.iter().enumerate() {
            let colour = colours[i % colours.len()];
            // Side by side, so intervals at the same round do not hide each other.
            let x = |r: &Row| {
                if by_frames {
                    r.expert_frames
                } else {
                    r.round as f64 + (i as f64 - 1.0) * 0.06
                }
            };
            c.draw_series(LineSeries::new(
                curve.iter().map(|r| (x(r), r.rate)),
                colour,
            ))?
            .label(*name)
            .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 16, py)], colour));
            c.draw_series(curve.iter().map(|r| {
                ErrorBar::new_vertical(x(r), r.ci.0, r.rate, r.ci.1, colour.filled(), 6)
            }))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_a_known_interval() {
        // 45 of 50: 0.786..0.957 (Wilson, z = 1.96).
        let (lo, hi) = wilson(45, 50);
        assert!((lo - 0.786).abs() < 0.002, "{lo}");
        assert!((hi - 0.957).abs() < 0.002, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(0, 50);
        assert!(lo.abs() < 1e-12, "{lo}");
        assert!(hi > 0.05 && hi < 0.08, "{hi}");
    }

    fn row(frames: f64, rate: f64) -> Row {
        Row {
            arm: String::new(),
            round: 0,
            successes: 0,
            episodes: 0,
            rate,
            ci: (0.0, 1.0),
            per_seed: vec![],
            expert_frames: frames,
            intervention_rate: None,
            mean_autonomous_run: None,
            failures: FailureCounts::default(),
            asks: None,
            eval_wall_s: 0.0,
        }
    }

    #[test]
    fn frames_to_reach_interpolates_and_says_when_never() {
        let a = row(1000.0, 0.6);
        let b = row(2000.0, 1.0);
        assert_eq!(frames_to_reach(&[&a, &b], 0.8), Some(1500.0));
        assert_eq!(frames_to_reach(&[&b], 0.8), Some(2000.0));
        assert_eq!(frames_to_reach(&[&a], 0.8), None);
        // A dip after reaching does not move the first crossing.
        let c = row(3000.0, 0.5);
        assert_eq!(frames_to_reach(&[&a, &b, &c], 0.8), Some(1500.0));
    }
}
