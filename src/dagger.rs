//! `intervened bench dagger`: the weekend experiment through the real daemon path.
//!
//! Every episode runs the daemon in lockstep on the simulated robot: the servo emulator on a
//! pty, the virtual gamepad driven by the simulated human, the MCAP recorder, and the retrain
//! job on what was recorded. Per seed:
//! 1. BC: the simulated human records `demos` demonstrations; train; evaluate on `eval` fresh
//!    rollouts with nobody at the gamepad.
//! 2. DAgger rounds: `dagger_episodes` policy episodes with the simulated human supervising
//!    (taking over when the arm strays or stalls); retrain on the aggregate; evaluate.
//! 3. Baseline at equal label budget: behaviour cloning on extra demonstrations until it has as
//!    many expert-labelled frames as BC plus DAgger used; evaluate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use intervened_daemon::recording::EpisodeOutcome;
use intervened_daemon::runtime::{self, RunOptions};
use intervened_episodes::{session_dir, summarize_session};
use intervened_robot::RobotConfig;
use intervened_train::{registry, RetrainOptions};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct DaggerPlan {
    pub demos: u64,
    pub rounds: usize,
    pub dagger_episodes: u64,
    pub eval: u64,
    pub seeds: Vec<u64>,
    pub max_steps: usize,
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// "bc", "dagger-1", ..., or "bc-equal-budget".
    pub arm: String,
    pub round: usize,
    pub success_rate: f64,
    /// Expert-labelled frames in the training set (demo + intervention frames).
    pub expert_frames: u64,
    /// Expert-labelled frames this round added.
    pub frames_added: u64,
    /// Intervened steps / steps in this round's supervised episodes.
    pub intervention_rate: Option<f64>,
    /// Mean length of the policy's runs between takeovers, in frames.
    pub mean_autonomous_run: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub points: Vec<Point>,
    pub wall_s: f64,
}

/// The experiment's progress: one bar over every phase (record, train, evaluate) of every
/// seed, and one line per finished step. The bar draws only on a terminal; the lines always
/// print (stderr), so logs and CI show the same story.
pub struct Progress {
    bar: ProgressBar,
    phase_t0: std::cell::Cell<Instant>,
}

impl Progress {
    /// Phases per seed: demos, train, evaluate; then supervise, retrain, evaluate per round;
    /// then baseline demos, train, evaluate.
    pub fn new(plan: &DaggerPlan) -> Self {
        let per_seed = 3 + 3 * plan.rounds as u64 + 3;
        let bar = ProgressBar::with_draw_target(
            Some(per_seed * plan.seeds.len() as u64),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Self {
            bar,
            phase_t0: std::cell::Cell::new(Instant::now()),
        }
    }

    fn phase(&self, msg: String) {
        self.phase_t0.set(Instant::now());
        self.bar.set_message(msg);
    }

    fn step(&self) {
        self.bar.inc(1);
    }

    fn line(&self, line: String) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

struct Ctx<'a> {
    cfg: &'a RobotConfig,
    root: PathBuf,
    data: PathBuf,
    registry: PathBuf,
    plan: &'a DaggerPlan,
    seed: u64,
}

/// Statistics of the episodes one run recorded.
struct RunStats {
    successes: u64,
    episodes: u64,
    expert_frames: u64,
    frames: u64,
    intervention_steps: u64,
    runs: Vec<u64>,
}

impl Ctx<'_> {
    fn run(
        &self,
        data: &Path,
        episodes: u64,
        demo: bool,
        human: bool,
        world_seed: u64,
    ) -> Result<RunStats> {
        self.run_with(data, &self.registry, episodes, demo, human, world_seed)
    }

    /// One lockstep session. Policy sessions must run the registry's current version: the
    /// daemon refuses to start without a policy, and this checks it ran the right one.
    fn run_with(
        &self,
        data: &Path,
        registry: &Path,
        episodes: u64,
        demo: bool,
        human: bool,
        world_seed: u64,
    ) -> Result<RunStats> {
        let mut cfg = self.cfg.clone();
        cfg.policy.registry = registry.to_path_buf();
        cfg.teleop.require_gamepad = false;
        let human_params = intervened_world::HumanParams {
            seed: world_seed,
            ..Default::default()
        };
        let opts = RunOptions {
            data: Some(data.to_path_buf()),
            episodes: Some(episodes),
            demo,
            sim_human: human,
            human: human_params,
            seed: Some(world_seed),
            ..RunOptions::default()
        };
        let r = runtime::run(cfg, opts)?;
        if !demo {
            check_version(registry, r.policy_version.as_deref())?;
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
            expert_frames: 0,
            frames: 0,
            intervention_steps: 0,
            runs: Vec::new(),
        };
        if let Some(id) = &r.session_id {
            let s = summarize_session(&session_dir(data, id))
                .with_context(|| format!("reading session {id}"))?;
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
        }
        Ok(st)
    }

    /// Trains and publishes; returns the published version.
    fn retrain(&self, data: &Path, registry: &Path) -> Result<String> {
        let mut o = RetrainOptions::new(data, registry);
        o.robot = Some(self.cfg.clone());
        o.seed = self.seed;
        o.max_steps = Some(self.plan.max_steps);
        o.quiet = true;
        let r = intervened_train::retrain(&o)
            .with_context(|| format!("retraining on {}", data.display()))?;
        Ok(r.version)
    }

    fn evaluate(&self, registry: &Path, tag: &str, round: usize) -> Result<f64> {
        let mut cfg = self.cfg.clone();
        cfg.policy.registry = registry.to_path_buf();
        cfg.teleop.require_gamepad = false;
        let opts = RunOptions {
            data: Some(self.root.join("eval").join(tag)),
            episodes: Some(self.plan.eval),
            // Fresh block positions, the same for every arm of the same seed and round.
            seed: Some(self.seed * 1000 + 500 + round as u64),
            ..RunOptions::default()
        };
        let r = runtime::run(cfg, opts)?;
        check_version(registry, r.policy_version.as_deref())?;
        let ok = r
            .loop_report
            .episodes
            .iter()
            .filter(|o| **o == EpisodeOutcome::Success)
            .count();
        Ok(ok as f64 / self.plan.eval.max(1) as f64)
    }
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
        data: root.join("data"),
        registry: root.join("policies"),
        root: root.clone(),
        plan,
        seed,
    };
    let mut points = Vec::new();
    // 1. Demonstrations and behaviour cloning.
    let pct = |x: f64| format!("{:.0}%", x * 100.0);
    progress.phase(format!(
        "seed {seed}: the simulated human records {} demonstrations",
        plan.demos
    ));
    let demos = ctx.run(&ctx.data, plan.demos, true, true, seed * 1000)?;
    progress.step();
    progress.line(format!(
        "seed {seed} · demonstrations: {} recorded, {} succeeded, {} frames",
        demos.episodes, demos.successes, demos.expert_frames
    ));
    progress.phase(format!("seed {seed}: training behaviour cloning"));
    let v = ctx.retrain(&ctx.data, &ctx.registry)?;
    progress.step();
    progress.phase(format!(
        "seed {seed}: evaluating BC ({v}) on {} rollouts",
        plan.eval
    ));
    let sr = ctx.evaluate(&ctx.registry, "bc", 0)?;
    progress.step();
    progress.line(format!(
        "seed {seed} · BC: trained {v}; {} rollouts with nobody at the pad: {} success",
        plan.eval,
        pct(sr)
    ));
    let mut expert = demos.expert_frames;
    points.push(Point {
        arm: "bc".into(),
        round: 0,
        success_rate: sr,
        expert_frames: expert,
        frames_added: expert,
        intervention_rate: None,
        mean_autonomous_run: None,
    });
    // 2. DAgger rounds with the simulated human supervising.
    for round in 1..=plan.rounds {
        progress.phase(format!(
            "seed {seed}, round {round}: {} policy episodes, the simulated human supervising",
            plan.dagger_episodes
        ));
        let st = ctx.run(
            &ctx.data,
            plan.dagger_episodes,
            false,
            true,
            seed * 1000 + round as u64,
        )?;
        progress.step();
        expert += st.expert_frames;
        progress.phase(format!(
            "seed {seed}, round {round}: retraining on every session"
        ));
        let v = ctx.retrain(&ctx.data, &ctx.registry)?;
        progress.step();
        progress.phase(format!(
            "seed {seed}, round {round}: evaluating {v} on {} rollouts",
            plan.eval
        ));
        let sr = ctx.evaluate(&ctx.registry, &format!("dagger-{round}"), round)?;
        progress.step();
        let rate = (st.frames > 0).then(|| st.intervention_steps as f64 / st.frames as f64);
        progress.line(format!(
            "seed {seed} · HG-DAgger round {round}: {} supervised episodes, {} intervention frames (rate {:.2}); retrained {v}; {} rollouts: {} success",
            st.episodes,
            st.expert_frames,
            rate.unwrap_or(0.0),
            plan.eval,
            pct(sr)
        ));
        points.push(Point {
            arm: "dagger".into(),
            round,
            success_rate: sr,
            expert_frames: expert,
            frames_added: st.expert_frames,
            intervention_rate: rate,
            mean_autonomous_run: mean(&st.runs),
        });
    }
    // 3. Behaviour cloning with as many expert frames from extra demonstrations.
    let base_data = root.join("baseline-data");
    let base_reg = root.join("baseline-policies");
    copy_dir(
        &ctx.data.join("sessions"),
        &base_data.join("sessions"),
        |name| {
            // Only the demonstration session (the first one recorded).
            name == first_session(&ctx.data).as_deref().unwrap_or("")
        },
    )?;
    progress.phase(format!(
        "seed {seed}: extra demonstrations for BC at an equal label budget ({expert} frames)"
    ));
    let mut base_expert = demos.expert_frames;
    let mut batch = 0u64;
    while base_expert < expert && batch < 50 {
        let per_demo = (demos.expert_frames / demos.episodes.max(1)).max(1);
        let need = ((expert - base_expert) / per_demo + 1).min(plan.demos.max(5));
        let st = ctx.run(&base_data, need, true, true, seed * 1000 + 900 + batch)?;
        base_expert += st.expert_frames;
        batch += 1;
    }
    progress.step();
    progress.phase(format!("seed {seed}: training BC at an equal label budget"));
    let v = ctx.retrain(&base_data, &base_reg)?;
    progress.step();
    progress.phase(format!(
        "seed {seed}: evaluating BC at an equal budget ({v})"
    ));
    let sr = ctx.evaluate(&base_reg, "bc-equal-budget", plan.rounds)?;
    progress.step();
    progress.line(format!(
        "seed {seed} · BC at an equal label budget: {base_expert} expert frames; {} rollouts: {} success",
        plan.eval,
        pct(sr)
    ));
    points.push(Point {
        arm: "bc-equal-budget".into(),
        round: plan.rounds,
        success_rate: sr,
        expert_frames: base_expert,
        frames_added: base_expert - demos.expert_frames,
        intervention_rate: None,
        mean_autonomous_run: None,
    });
    let _ = registry::current_version(&ctx.registry);
    Ok(SeedResult {
        seed,
        points,
        wall_s: t0.elapsed().as_secs_f64(),
    })
}

fn first_session(data: &Path) -> Option<String> {
    let mut ids = intervened_episodes::layout::session_ids(data).ok()?;
    ids.sort();
    ids.into_iter().next()
}

fn copy_dir(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !keep(&name) {
            continue;
        }
        let dst = to.join(&name);
        std::fs::create_dir_all(&dst)?;
        for f in std::fs::read_dir(e.path())? {
            let f = f?;
            std::fs::copy(f.path(), dst.join(f.file_name()))?;
        }
    }
    Ok(())
}

/// One row of the results table: arm, round, mean success, its spread, mean expert frames,
/// mean intervention rate, mean autonomous run length.
pub type Row = (String, usize, f64, f64, f64, Option<f64>, Option<f64>);

/// Mean and spread (sample standard deviation) of each arm/round over seeds.
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
            let m = pts.iter().map(|p| p.success_rate).sum::<f64>() / n;
            let sd = if pts.len() > 1 {
                (pts.iter()
                    .map(|p| (p.success_rate - m).powi(2))
                    .sum::<f64>()
                    / (n - 1.0))
                    .sqrt()
            } else {
                0.0
            };
            let frames = pts.iter().map(|p| p.expert_frames as f64).sum::<f64>() / n;
            let rate = avg(pts.iter().filter_map(|p| p.intervention_rate));
            let run = avg(pts.iter().filter_map(|p| p.mean_autonomous_run));
            (arm, round, m, sd, frames, rate, run)
        })
        .collect()
}

fn avg(it: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = it.collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Success against round and against expert-labelled frames, both arms, as SVG.
pub fn plot(results: &[SeedResult], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let rows = table(results);
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let max_round = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    let max_frames = rows.iter().map(|r| r.4).fold(1.0, f64::max);
    let dagger: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "bc" || r.0 == "dagger")
        .collect();
    let base: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "bc" || r.0 == "bc-equal-budget")
        .collect();
    {
        let mut c = ChartBuilder::on(&left)
            .caption("success vs round", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..max_round, 0.0..1.05)?;
        c.configure_mesh()
            .x_desc("DAgger round (0 = BC)")
            .y_desc("success rate")
            .draw()?;
        c.draw_series(LineSeries::new(
            dagger.iter().map(|r| (r.1 as f64, r.2)),
            &BLUE,
        ))?
        .label("HG-DAgger")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        c.draw_series(
            dagger
                .iter()
                .map(|r| Circle::new((r.1 as f64, r.2), 4, BLUE.filled())),
        )?;
        c.draw_series(
            base.iter()
                .filter(|r| r.0 != "bc")
                .map(|r| Cross::new((r.1 as f64, r.2), 6, RED.stroke_width(2))),
        )?
        .label("BC, equal label budget")
        .legend(|(x, y)| Cross::new((x + 8, y), 5, RED.stroke_width(2)));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    {
        let mut c = ChartBuilder::on(&right)
            .caption("success vs expert-labelled frames", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..max_frames * 1.1, 0.0..1.05)?;
        c.configure_mesh()
            .x_desc("expert-labelled frames")
            .y_desc("success rate")
            .draw()?;
        c.draw_series(LineSeries::new(dagger.iter().map(|r| (r.4, r.2)), &BLUE))?
            .label("HG-DAgger")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        c.draw_series(LineSeries::new(base.iter().map(|r| (r.4, r.2)), &RED))?
            .label("BC (more demos)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
