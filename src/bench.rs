//! `intervened bench ...`: numbers measured on this machine, printed with the machine named.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use intervened_daemon::clock::bare_sleep_jitter;
use intervened_daemon::runtime::{self, RunOptions};
use intervened_daemon::sim_rig::SimBus;
use intervened_daemon::stats::summarize_s;
use intervened_dxl::{bench_bus, Arm};
use intervened_robot::{Calibration, RobotConfig};

use crate::dagger::{self, DaggerPlan};
use crate::recipes;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Full read+write cycles per second against the emulated chain, beside the wire floor.
    Bus {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        cycles: usize,
    },
    /// The real-time loop on the simulator (policy and recording on) vs a bare sleep loop.
    Loop {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Policy directory (default: trains a small one first).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// SCHED_FIFO priority for the control thread (and the bare loop it is compared with).
        #[arg(long)]
        priority: Option<u8>,
    },
    /// Policy forward latency: the seed MLP and a chunked model (trained on a short demo set).
    Infer {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 5000)]
        iters: usize,
    },
    /// The recorder at a fixed rate (default 500 Hz for 10 minutes): drops, latency, CPU use.
    Record {
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        /// Where to write (default: a temporary directory, removed afterwards).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Training throughput of the seed MLP at batch 256 (median of several runs).
    Train {
        #[arg(long, default_value_t = 200)]
        steps: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// Behaviour cloning vs intervention-based DAgger on the simulated arm, end to end.
    Dagger {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        /// A short version (one seed, two rounds, 20 rollouts per point, no robot-gated arm):
        /// the README's first command.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "bench-out/dagger")]
        out: PathBuf,
        /// Seeds [default: 3; quick 1].
        #[arg(long)]
        seeds: Option<u64>,
        /// DAgger rounds [default: 3; quick 2].
        #[arg(long)]
        rounds: Option<usize>,
        /// Demonstrations BC starts from [default: 10].
        #[arg(long)]
        demos: Option<u64>,
        /// Supervised policy episodes per round [default: 20; quick 10].
        #[arg(long)]
        episodes: Option<u64>,
        /// Held-out evaluation rollouts per point [default: 50; quick 20].
        #[arg(long)]
        eval: Option<u64>,
        /// Ensemble members of the robot-gated arm; 0 leaves it out [default: 5; quick 0].
        #[arg(long)]
        gated_ensemble: Option<usize>,
        /// Train the robot-gated ensemble's members on bootstrap resamples of the episodes
        /// (by default every member sees every episode).
        #[arg(long)]
        gated_bootstrap: bool,
        #[command(flatten)]
        recipe: RecipeArgs,
    },
    /// Compares training recipes (action representation, chunk, normalisation, training
    /// length, early stopping, width, observation noise) on the same demonstrations.
    Recipes {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value = "bench-out/recipes")]
        out: PathBuf,
        /// Also write the table to this markdown file (docs/recipes.md is generated so).
        #[arg(long)]
        doc: Option<PathBuf>,
        /// Data seeds [default: 3; quick 1].
        #[arg(long)]
        seeds: Option<u64>,
        /// Demonstration counts to train on (repeatable) [default: 10 and 50; quick 10].
        #[arg(long)]
        demos: Vec<u64>,
        /// Held-out rollouts per recipe, seed and data size [default: 50; quick 20].
        #[arg(long)]
        eval: Option<u64>,
        /// Four recipes, one seed, 10 demonstrations.
        #[arg(long)]
        quick: bool,
    },
}

/// The training recipe of `bench dagger` (defaults: `retrain`'s).
#[derive(Args, Debug, Clone)]
pub struct RecipeArgs {
    /// Action chunk length [default: retrain's].
    #[arg(long)]
    chunk: Option<usize>,
    /// absolute or delta [default: retrain's].
    #[arg(long, value_enum)]
    action: Option<crate::commands::ActionArg>,
    /// Upper bound on optimiser steps per member [default: retrain's].
    #[arg(long)]
    max_steps: Option<usize>,
    /// Ensemble members of the BC, HG-DAgger and more-demonstrations arms, each trained on
    /// every episode (not bootstrap resamples) [default: 1].
    #[arg(long)]
    ensemble: Option<usize>,
}

impl RecipeArgs {
    fn options(&self) -> Result<intervened_train::RetrainOptions> {
        let mut o = intervened_train::RetrainOptions::new("", "");
        if let Some(k) = self.chunk {
            anyhow::ensure!(k >= 1, "--chunk must be at least 1");
            o.chunk = k;
        }
        if let Some(a) = self.action {
            o.delta = a == crate::commands::ActionArg::Delta;
        }
        if self.max_steps.is_some() {
            o.max_steps = self.max_steps;
        }
        if let Some(k) = self.ensemble {
            anyhow::ensure!(k >= 1, "--ensemble must be at least 1");
            o.ensemble = k;
            o.bootstrap = false;
        }
        Ok(o)
    }
}

/// `absolute, chunk 20` and so on.
pub fn recipe_name(o: &intervened_train::RetrainOptions) -> String {
    let ensemble = if o.ensemble > 1 {
        format!(", {}-member ensemble", o.ensemble)
    } else {
        String::new()
    };
    format!(
        "{} goals, chunk {}{ensemble}",
        if o.delta { "delta" } else { "absolute" },
        o.chunk
    )
}

/// The machine, for every printed number.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

pub fn bench(a: BenchArgs) -> Result<ExitCode> {
    println!("machine: {}", machine());
    match a.what {
        What::Bus { config, cycles } => {
            let cfg = RobotConfig::load(&config)?;
            let sim = SimBus::start(&cfg, false)?;
            let mut arm = Arm::open(&cfg, Calibration::identity(&cfg), &sim.server.path())?;
            let b = bench_bus(&mut arm, cycles)?;
            println!(
                "bus: {} servos at {} baud over a pty: {:.0} read+write cycles/s; cycle p50 {:.1} us, p99 {:.1} us, max {:.1} us; host software (CPU) time per cycle p50 {:.1} us, p99 {:.1} us; wire-time floor {:.0} us/cycle ({} bytes) = {:.0} cycles/s on a real bus; {} failed cycles",
                cfg.joints.len(),
                cfg.bus.baud,
                b.cycles_per_s,
                b.cycle_p50.as_secs_f64() * 1e6,
                b.cycle_p99.as_secs_f64() * 1e6,
                b.cycle_max.as_secs_f64() * 1e6,
                b.overhead_p50.as_secs_f64() * 1e6,
                b.overhead_p99.as_secs_f64() * 1e6,
                b.wire_floor_per_cycle.as_secs_f64() * 1e6,
                b.bytes_per_cycle,
                1.0 / b.wire_floor_per_cycle.as_secs_f64(),
                b.failed_cycles
            );
        }
        What::Loop {
            config,
            rate,
            seconds,
            policy,
            priority,
        } => {
            let mut cfg = RobotConfig::load(&config)?;
            cfg.control.rate_hz = rate;
            if priority.is_some() {
                cfg.control.realtime_priority = priority;
            }
            cfg.teleop.require_gamepad = false;
            let policy = match policy {
                Some(p) => p,
                None => small_policy(&cfg, 1)?,
            };
            // The floor is measured on a thread with the same scheduling as the control thread.
            let n = (rate * seconds.min(20.0)) as u64;
            let bare = std::thread::spawn(move || {
                if let Some(p) = priority {
                    if let Err(w) = intervened_daemon::clock::try_realtime_priority(p) {
                        eprintln!("{w}");
                    }
                }
                bare_sleep_jitter(1.0 / rate, n, Duration::from_micros(100))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the bare sleep loop panicked"))?;
            let floor = summarize_s(&bare);
            let dir = tempdir("loop")?;
            let r = runtime::run(
                cfg,
                RunOptions {
                    realtime: true,
                    policy: Some(policy),
                    data: Some(dir.clone()),
                    // Policy episodes back to back with the simulated human supervising, so
                    // takeovers (and their latency) happen during the run.
                    episodes: Some(u64::MAX),
                    sim_human: true,
                    max_ticks: Some((rate * seconds) as u64),
                    ..RunOptions::default()
                },
            )?;
            let t = r.loop_report.timing;
            println!("loop at {rate} Hz for {seconds} s (policy + recording on): period error {}; work {}; overruns {}; dropped frames {}", t.period_error, t.work, t.overruns, r.loop_report.dropped_frames);
            println!("bare sleep loop (same machine, same run): period error {floor}");
            println!(
                "p99 ratio loop/bare: {:.2}",
                t.period_error.p99_us / floor.p99_us.max(0.1)
            );
            let lr = &r.loop_report;
            println!(
                "takeovers: {} (button press read -> first human goal written: {}); largest jump at takeover {:.2e} rad, at handback {:.2e} rad; period {:.0} us",
                lr.takeovers,
                lr.takeover_latency,
                lr.max_takeover_jump,
                lr.max_handback_jump,
                1e6 / rate
            );
            println!(
                "policy: {} tick(s) with a usable action, {} starvation(s) (Hold after policy.action_timeout_ms without one)",
                lr.policy_actions, lr.policy_starvations
            );
            let _ = std::fs::remove_dir_all(dir);
        }
        What::Infer { config, iters } => {
            let cfg = RobotConfig::load(&config)?;
            let names: Vec<String> = intervened_world::FEATURE_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect();
            for chunk in [1usize, 10] {
                let dir = small_policy(&cfg, chunk)?;
                let expect = intervened_policy::PolicyExpectations::for_robot(&cfg, &names);
                let mut p = intervened_policy::Policy::load(&dir, &expect)?;
                let l = intervened_policy::bench_infer(&mut p, iters)?;
                println!("infer: seed MLP, chunk {chunk}, batch 1, 1 thread: p50 {:.1} us, p99 {:.1} us, mean {:.1} us ({iters} runs)", l.p50_us, l.p99_us, l.mean_us);
            }
        }
        What::Record { rate, seconds, out } => {
            let dir = match &out {
                Some(d) => d.clone(),
                None => tempdir("record")?,
            };
            let mut o = intervened_episodes::BenchRecordOptions::new(&dir);
            o.rate_hz = rate;
            o.duration = Duration::from_secs_f64(seconds);
            // A timer on a terminal (redrawn once a second, off the measured threads).
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
                "recording synthetic frames at {rate:.0} Hz for {seconds:.0} s"
            ));
            if let Ok(st) =
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            {
                bar.set_style(st);
            }
            bar.enable_steady_tick(Duration::from_secs(1));
            let r = intervened_episodes::bench_record(&o);
            bar.finish_and_clear();
            let r = r?;
            println!(
                "record: {:.0} Hz for {:.0} s: {} frames sent, {} dropped, {} written; try_send p99 {:.1} us, max {:.1} us; recorder CPU {} of one core; {:.0} kB/s on disk, {} flushes",
                r.rate_hz,
                r.duration_s,
                r.frames_sent,
                r.frames_dropped,
                r.frames_written,
                r.p99_try_send_us,
                r.max_try_send_us,
                r.recorder_cpu_pct.map(|c| format!("{c:.1}%")).unwrap_or_else(|| "unknown".into()),
                r.bytes_per_s / 1000.0,
                r.flushes
            );
            if out.is_none() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        What::Train { steps, repeats } => {
            let b = intervened_train::bench_train(256, steps, repeats)?;
            println!("train: seed MLP, batch {}, {}: {:.0} samples/s (median of {} runs of {} steps), {:.2} ms/step", b.batch, b.device, b.samples_per_s, b.repeats, b.steps, b.step_ms);
        }
        What::Dagger {
            config,
            quick,
            out,
            seeds,
            rounds,
            demos,
            episodes,
            eval,
            gated_ensemble,
            gated_bootstrap,
            recipe,
        } => {
            let cfg = RobotConfig::load(&config)?;
            let train = recipe.options()?;
            dagger::catch_interrupts()?;
            let plan = if quick {
                DaggerPlan {
                    demos: demos.unwrap_or(10),
                    rounds: rounds.unwrap_or(2),
                    dagger_episodes: episodes.unwrap_or(10),
                    eval: eval.unwrap_or(20),
                    seeds: (0..seeds.unwrap_or(1)).collect(),
                    train,
                    gated_ensemble: gated_ensemble.unwrap_or(0),
                    gated_bootstrap,
                    out,
                }
            } else {
                DaggerPlan {
                    demos: demos.unwrap_or(10),
                    rounds: rounds.unwrap_or(3),
                    dagger_episodes: episodes.unwrap_or(20),
                    eval: eval.unwrap_or(50),
                    seeds: (0..seeds.unwrap_or(3)).collect(),
                    train,
                    gated_ensemble: gated_ensemble.unwrap_or(5),
                    gated_bootstrap,
                    out,
                }
            };
            println!(
                "plan: {} seed(s); {} demonstrations; {} round(s) of {} supervised episodes; {} held-out rollouts per point; recipe: {}",
                plan.seeds.len(),
                plan.demos,
                plan.rounds,
                plan.dagger_episodes,
                plan.eval,
                recipe_name(&plan.train)
            );
            let t0 = std::time::Instant::now();
            let mut results = Vec::new();
            let progress = dagger::Progress::new(&plan);
            for s in &plan.seeds {
                results.push(dagger::run_seed(&cfg, &plan, *s, &progress)?);
            }
            progress.finish();
            let wall = t0.elapsed().as_secs_f64();
            let tables = dagger::report(&results, &plan);
            println!("\n{tables}");
            std::fs::create_dir_all(&plan.out)?;
            let svg = plan.out.join("dagger.svg");
            dagger::plot(&results, &svg)?;
            std::fs::write(
                plan.out.join("results.json"),
                serde_json::to_string_pretty(&results)?,
            )?;
            std::fs::write(
                plan.out.join("results.md"),
                format!(
                    "machine: {}\n\n{tables}\nwall-clock: {wall:.1} s\n",
                    machine()
                ),
            )?;
            println!(
                "wall-clock: {wall:.1} s; plot {}; tables {}; raw results {}",
                svg.display(),
                plan.out.join("results.md").display(),
                plan.out.join("results.json").display()
            );
            println!(
                "recordings and policies: {}/seed-*/ (`intervened export sessions --data {}/seed-0/data` lists them)",
                plan.out.display(),
                plan.out.display()
            );
        }
        What::Recipes {
            config,
            out,
            doc,
            seeds,
            demos,
            eval,
            quick,
        } => {
            let cfg = RobotConfig::load(&config)?;
            dagger::catch_interrupts()?;
            let plan = recipes::Plan {
                seeds: (0..seeds.unwrap_or(if quick { 1 } else { 3 })).collect(),
                demos: if demos.is_empty() {
                    if quick {
                        vec![10]
                    } else {
                        vec![10, 50]
                    }
                } else {
                    demos
                },
                eval: eval.unwrap_or(if quick { 20 } else { 50 }),
                recipes: if quick {
                    recipes::quick_recipes()
                } else {
                    recipes::recipes()
                },
                out,
            };
            let t0 = std::time::Instant::now();
            let rows = recipes::run(&cfg, &plan)?;
            let md = recipes::markdown(&rows, &plan, &machine(), t0.elapsed().as_secs_f64());
            println!("\n{md}");
            if let Some(doc) = doc {
                if let Some(dir) = doc.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&doc, &md).with_context(|| format!("writing {}", doc.display()))?;
                println!("written to {}", doc.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tempdir(tag: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("intervened-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Records a few simulated demonstrations and trains a small policy on them (chunk k).
fn small_policy(cfg: &RobotConfig, chunk: usize) -> Result<PathBuf> {
    let dir = tempdir(&format!("policy-{chunk}"))?;
    let data = dir.join("data");
    let mut c = cfg.clone();
    c.control.rate_hz = 50.0;
    runtime::run(
        c.clone(),
        RunOptions {
            data: Some(data.clone()),
            episodes: Some(3),
            demo: true,
            sim_human: true,
            ..RunOptions::default()
        },
    )?;
    let reg = dir.join("policies");
    let mut o = intervened_train::RetrainOptions::new(&data, &reg);
    o.chunk = chunk;
    o.max_steps = Some(50);
    o.quiet = true;
    // The loop benchmark runs the policy at its own rate; fps is not checked here.
    let r = intervened_train::retrain(&o).context("training the benchmark policy")?;
    let mut side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.policy_dir.join("policy.json"))?)?;
    side["fps"] = serde_json::json!(cfg.control.rate_hz);
    std::fs::write(
        r.policy_dir.join("policy.json"),
        serde_json::to_string_pretty(&side)?,
    )?;
    Ok(r.policy_dir)
}
