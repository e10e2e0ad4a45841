//! `intervened bench ...`: numbers measured on this machine, printed with the machine named.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use intervened_daemon::runtime::{self, RunOptions};
use intervened_daemon::sim_rig::SimBus;
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
    /// The real-time loop on the simulator (policy, recording, gamepad and a takeover every 3 s
    /// on) beside a bare sleep loop with the same scheduling, at each rate: period error
    /// p50/p99/p99.9/max, overruns and what caused each, time per phase, the slowest ticks, and
    /// takeover latency. Writes loop-results.{md,json} and a latency histogram (SVG) to --out.
    Loop {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        /// Control rates to run, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "500,1000")]
        rates: Vec<f64>,
        /// Seconds per rate (the README's figures are 600).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Seconds of the bare sleep loop per rate (default: --seconds, at most 120).
        #[arg(long)]
        bare_seconds: Option<f64>,
        /// Policy directory (default: trains a small one first).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// SCHED_FIFO priority for the control thread, the emulator thread and the bare loop;
        /// also locks memory and prefaults the control thread's stack.
        #[arg(long)]
        priority: Option<u8>,
        /// Pin the control thread (and the bare loop) to this CPU; the emulator goes to another.
        #[arg(long)]
        cpu: Option<usize>,
        #[arg(long, default_value = "bench-out/loop")]
        out: PathBuf,
    },
    /// A fault soak in real time: the simulated human supervises policy episodes with the
    /// recorder on while the emulator corrupts 1% and drops 1% of replies, unplugs and replugs
    /// the adapter once and silences one servo for a while; then every recorded goal is checked
    /// against the joint limits and every file is opened by our reader and the official one.
    Soak {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        /// Policy directory (default: trains a small one first).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Keep the recordings here (default: a temporary directory, removed afterwards).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Policy forward latency: the seed MLP and a chunked model (trained on a short demo set).
    Infer {
        #[arg(long, default_value = "robot-configs/sim-koch.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 5000)]
        iters: usize,
    },
    /// The recorder at a fixed rate (default 500 Hz for 10 minutes, with two synthetic cameras
    /// at 640x480 and 30 fps): drops, latency, CPU use.
    Record {
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        #[arg(long, default_value_t = 600.0)]
        seconds: f64,
        /// Synthetic cameras fed from their own threads (0: joints only).
        #[arg(long, default_value_t = 2)]
        cameras: usize,
        /// Camera image size, WIDTHxHEIGHT.
        #[arg(long, default_value = "640x480")]
        camera_size: String,
        #[arg(long, default_value_t = 30.0)]
        camera_fps: f64,
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
        /// A short version (one seed, two rounds, 20 rollouts per point, 1,000 training steps,
        /// neither the more-demonstrations nor the robot-gated arm): the README's first command.
        #[arg(long)]
        quick: bool,
        /// The experiment from pixels: every policy observes the joints and the simulated
        /// camera only (no `block.*`). Uses the config's `[[cameras]]` (rendered ones), or adds
        /// a 96x96 `front` camera. Defaults change: 2 seeds, batch 32, at most 3,000 steps per
        /// training, no robot-gated arm; it then measures the image policy's inference and camera-to-goal
        /// latency.
        #[arg(long)]
        vision: bool,
        /// Results, recordings and policies [default: bench-out/dagger, or
        /// bench-out/dagger-vision with --vision].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Seeds run side by side, each on its own thread; a seed's numbers do not depend on it
        /// [default: 1; with --vision, one per seed up to the CPU count].
        #[arg(long)]
        jobs: Option<usize>,
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
        /// Run the BC-with-more-demonstrations arm [default: true; quick false].
        #[arg(long)]
        more_demos: Option<bool>,
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

/// Optimiser steps per member in `bench dagger --quick` (the full run uses retrain's).
const QUICK_MAX_STEPS: usize = 1000;
/// `bench dagger --vision`: the most steps per training (early stopping still applies); the
/// batch is `retrain --cameras`' default.
const VISION_MAX_STEPS: usize = 3000;
const VISION_QUICK_MAX_STEPS: usize = 500;
/// Forward passes for the image policy's inference latency, and real-time episodes for its
/// camera-to-goal latency.
const VISION_INFER_ITERS: usize = 500;
const VISION_LATENCY_EPISODES: u64 = 3;

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
    /// Samples per optimiser step [default: retrain's; 32 with --vision].
    #[arg(long)]
    batch: Option<usize>,
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
        if let Some(b) = self.batch {
            anyhow::ensure!(b >= 1, "--batch must be at least 1");
            o.batch = b;
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
    let images = if o.cameras.is_empty() {
        String::new()
    } else {
        format!(
            ", image policy on camera(s) {} (joints + pixels, no block.*), batch {}, at most {} steps",
            o.cameras.join(", "),
            o.batch,
            o.max_steps.map_or("unlimited".into(), |m| m.to_string())
        )
    };
    format!(
        "{} goals, chunk {}{ensemble}{images}",
        if o.delta { "delta" } else { "absolute" },
        o.chunk
    )
}

/// The machine, for every printed number.
pub use intervened_train::machine;

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
            rates,
            seconds,
            bare_seconds,
            policy,
            priority,
            cpu,
            out,
        } => {
            let cfg = RobotConfig::load(&config)?;
            if rates
                .iter()
                .any(|r| !(r.is_finite() && *r > 0.0 && *r <= 2000.0))
            {
                anyhow::bail!("--rates {rates:?}: every rate must be in (0, 2000] Hz");
            }
            if !(seconds.is_finite() && seconds > 0.0) {
                anyhow::bail!("--seconds {seconds}: must be positive");
            }
            let policy = match policy {
                Some(p) => p,
                None => small_policy(&cfg, 10)?,
            };
            crate::loopbench::run(
                crate::loopbench::LoopBench {
                    config,
                    rates,
                    seconds,
                    bare_seconds: bare_seconds.unwrap_or(seconds.min(120.0)),
                    policy,
                    priority,
                    cpu,
                    out,
                },
                &machine(),
            )?;
        }
        What::Soak {
            config,
            seconds,
            policy,
            out,
        } => return soak(&config, seconds, policy, out),
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
        What::Record {
            rate,
            seconds,
            cameras,
            camera_size,
            camera_fps,
            out,
        } => {
            let (w, h) = camera_size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .filter(|&(w, h)| w >= 16 && h >= 16)
                .ok_or_else(|| {
                    anyhow::anyhow!("--camera-size {camera_size}: expected WIDTHxHEIGHT, e.g. 640x480 (at least 16x16)")
                })?;
            if cameras > intervened_episodes::MAX_CAMERAS {
                anyhow::bail!(
                    "--cameras {cameras}: at most {} cameras",
                    intervened_episodes::MAX_CAMERAS
                );
            }
            if !(camera_fps.is_finite() && camera_fps > 0.0) {
                anyhow::bail!("--camera-fps {camera_fps}: must be positive");
            }
            let dir = match &out {
                Some(d) => d.clone(),
                None => tempdir("record")?,
            };
            let mut o = intervened_episodes::BenchRecordOptions::new(&dir);
            o.rate_hz = rate;
            o.duration = Duration::from_secs_f64(seconds);
            o.cameras = intervened_episodes::BenchRecordOptions::cameras(cameras, w, h, camera_fps);
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
            if let Some(c) = &r.cameras {
                println!(
                    "record cameras: {} x {}x{} at {:.0} fps: {} images sent, {} dropped {:?}, {} written, {} lost; record_image max {:.0} us; JPEG mean {:.1} kB; the recorder CPU above includes their JPEG encoding",
                    c.cameras,
                    c.width,
                    c.height,
                    c.fps,
                    c.images_sent,
                    c.images_dropped,
                    c.dropped_per_camera,
                    c.images_written,
                    c.images_lost,
                    c.max_record_image_us,
                    c.mean_jpeg_bytes / 1000.0
                );
            }
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
            vision,
            out,
            jobs,
            seeds,
            rounds,
            demos,
            episodes,
            eval,
            more_demos,
            gated_ensemble,
            gated_bootstrap,
            recipe,
        } => {
            let mut cfg = RobotConfig::load(&config)?;
            let mut train = recipe.options()?;
            if vision {
                train.cameras = dagger::with_sim_camera(&mut cfg)
                    .with_context(|| format!("{}: --vision", config.display()))?;
                if recipe.batch.is_none() {
                    train.batch = crate::commands::IMAGE_BATCH;
                }
                if recipe.max_steps.is_none() {
                    train.max_steps = Some(if quick {
                        VISION_QUICK_MAX_STEPS
                    } else {
                        VISION_MAX_STEPS
                    });
                }
                train.min_steps = train.min_steps.min(train.max_steps.unwrap_or(usize::MAX));
            }
            let out = out.unwrap_or_else(|| {
                PathBuf::from(if vision {
                    "bench-out/dagger-vision"
                } else {
                    "bench-out/dagger"
                })
            });
            dagger::catch_interrupts()?;
            let plan = if quick {
                // Short training keeps the README's first command under half a minute.
                if recipe.max_steps.is_none() && !vision {
                    train.max_steps = Some(QUICK_MAX_STEPS);
                }
                DaggerPlan {
                    demos: demos.unwrap_or(10),
                    rounds: rounds.unwrap_or(2),
                    dagger_episodes: episodes.unwrap_or(10),
                    eval: eval.unwrap_or(20),
                    seeds: (0..seeds.unwrap_or(1)).collect(),
                    train,
                    more_demos: more_demos.unwrap_or(false),
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
                    seeds: (0..seeds.unwrap_or(if vision { 2 } else { 3 })).collect(),
                    train,
                    more_demos: more_demos.unwrap_or(true),
                    gated_ensemble: gated_ensemble.unwrap_or(if vision { 0 } else { 5 }),
                    gated_bootstrap,
                    out,
                }
            };
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let jobs = jobs
                .unwrap_or(if vision { cores } else { 1 })
                .clamp(1, plan.seeds.len().max(1));
            println!(
                "plan: {} seed(s), {jobs} at a time; {} demonstrations; {} round(s) of {} supervised episodes; {} held-out rollouts per point; recipe: {}",
                plan.seeds.len(),
                plan.demos,
                plan.rounds,
                plan.dagger_episodes,
                plan.eval,
                recipe_name(&plan.train)
            );
            let t0 = std::time::Instant::now();
            let progress = dagger::Progress::new(&plan);
            let results = dagger::run_seeds(&cfg, &plan, jobs, &progress)?;
            progress.finish();
            let mut tables = dagger::report(&results, &plan);
            if vision {
                let first = plan.seeds.first().copied().unwrap_or(0);
                let root = std::path::absolute(plan.out.join(format!("seed-{first}")))?;
                eprintln!("measuring the image policy: inference at batch 1, then {VISION_LATENCY_EPISODES} real-time episodes");
                let costs = dagger::vision_costs(
                    &cfg,
                    &root.join("policies"),
                    &root.join("latency-data"),
                    VISION_INFER_ITERS,
                    VISION_LATENCY_EPISODES,
                    first,
                )?;
                tables.push('\n');
                tables.push_str(&dagger::vision_report(&costs, &results));
                std::fs::create_dir_all(&plan.out)?;
                std::fs::write(
                    plan.out.join("vision-costs.json"),
                    serde_json::to_string_pretty(&costs)?,
                )?;
            }
            let wall = t0.elapsed().as_secs_f64();
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

/// The soak's faults for a run of `seconds`: 1% corrupted and 1% dropped replies throughout,
/// the adapter unplugged at 30% of the run and a servo silent at 60%, each for 1% of the run
/// (at least 1 s, at most 5 s).
pub fn soak_faults(cfg: &RobotConfig, seconds: f64) -> intervened_robot::SimFaults {
    let outage = (seconds * 0.01).clamp(1.0, 5.0);
    // A joint in the middle of the chain: the arm cannot be held safely without it.
    let silent = cfg
        .joints
        .iter()
        .filter(|j| !j.gripper)
        .nth(2)
        .or_else(|| cfg.joints.first())
        .map(|j| j.id);
    intervened_robot::SimFaults {
        corrupt_crc_rate: 0.01,
        drop_reply_rate: 0.01,
        seed: 1,
        unplug_at_s: Some(seconds * 0.3),
        unplug_for_s: outage,
        silent_servo: silent,
        silent_at_s: silent.map(|_| seconds * 0.6),
        silent_for_s: outage,
        ..Default::default()
    }
}

/// What the soak found in the recorded files.
#[derive(Debug, Default)]
struct SoakFiles {
    files: usize,
    read_ok: usize,
    read_errors: Vec<String>,
    goals: u64,
    goals_outside: u64,
    worst_excess_rad: f64,
    holds_entered: u64,
    holds_left: u64,
}

fn soak_check_files(cfg: &RobotConfig, paths: &[PathBuf]) -> SoakFiles {
    let mut r = SoakFiles {
        files: paths.len(),
        ..Default::default()
    };
    for p in paths {
        let ep = match intervened_episodes::read_episode(p) {
            Ok(ep) => ep,
            Err(e) => {
                r.read_errors.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        r.read_ok += 1;
        for f in &ep.frames {
            for (g, j) in f.goal.iter().zip(&cfg.joints) {
                r.goals += 1;
                let excess = if g.is_finite() {
                    (j.limits[0] - g).max(g - j.limits[1])
                } else {
                    f64::INFINITY
                };
                // Goals are clamped to the limits exactly; 1e-9 rad absorbs float printing.
                if excess > 1e-9 {
                    r.goals_outside += 1;
                    r.worst_excess_rad = r.worst_excess_rad.max(excess);
                }
            }
        }
        for e in &ep.events {
            if let intervened_episodes::types::Event::ModeChange { from, to, .. } = &e.event {
                r.holds_entered += u64::from(to == "hold");
                r.holds_left += u64::from(from == "hold");
            }
        }
    }
    r
}

/// Opens the files with the official Python `mcap` package (`.venv/bin/python` with
/// `crates/episodes/tests/fixtures/mcap_strict.py`): Ok(files that have a summary, read
/// without error and hold their statistics' message count), or Err(why not checked).
fn soak_official_reader(paths: &[PathBuf]) -> std::result::Result<(usize, Vec<String>), String> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(".venv/bin/python");
    let script = repo.join("crates/episodes/tests/fixtures/mcap_strict.py");
    if !python.exists() || !script.exists() {
        return Err(format!(
            "{} is missing (scripts/setup.sh --test installs it)",
            python.display()
        ));
    }
    let mut ok = 0;
    let mut bad = Vec::new();
    // A few hundred paths per call keeps the command line short.
    for batch in paths.chunks(200) {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args(batch)
            .output()
            .map_err(|e| format!("running {}: {e}", python.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "the Python reader did not run ({})",
                err.lines().last().unwrap_or("no output")
            ));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("the Python reader's output: {e}"))?;
        for p in batch {
            let r = &v[p.to_string_lossy().as_ref()];
            let good = r["summary"] == serde_json::Value::Bool(true)
                && r["error"].is_null()
                && r["footer"] == serde_json::Value::Bool(true)
                && r["stats"].as_u64() == r["messages"].as_u64();
            if good {
                ok += 1;
            } else {
                bad.push(format!("{}: {r}", p.display()));
            }
        }
    }
    Ok((ok, bad))
}

fn soak(
    config: &std::path::Path,
    seconds: f64,
    policy: Option<PathBuf>,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    anyhow::ensure!(
        seconds.is_finite() && seconds >= 5.0,
        "--seconds {seconds}: the soak needs at least 5 s to fit its faults"
    );
    let mut cfg = RobotConfig::load(config)?;
    cfg.teleop.require_gamepad = false;
    let rate = cfg.control.rate_hz;
    let (policy, trained) = match policy {
        Some(p) => (p, None),
        None => {
            let p = small_policy(&cfg, 1)?;
            (p, Some(tempdir("policy-1")?))
        }
    };
    cfg.sim.faults = soak_faults(&cfg, seconds);
    let data = match &out {
        Some(d) => d.clone(),
        None => tempdir("soak")?,
    };
    println!(
        "soak: {seconds:.0} s in real time at {rate} Hz; policy episodes supervised by the simulated human; recorder on; faults: {}",
        crate::commands::describe_faults(&cfg.sim.faults)
    );
    let r = runtime::run(
        cfg.clone(),
        RunOptions {
            realtime: true,
            policy: Some(policy),
            data: Some(data.clone()),
            episodes: Some(u64::MAX),
            sim_human: true,
            max_ticks: Some((rate * seconds).round() as u64),
            ..RunOptions::default()
        },
    )?;
    let lr = &r.loop_report;
    let mut paths = Vec::new();
    if let Some(s) = &r.session_id {
        let dir = intervened_episodes::session_dir(&r.data_root, s);
        for (_, p) in intervened_episodes::layout::episode_files(&dir)? {
            paths.push(p);
        }
    }
    let files = soak_check_files(&cfg, &paths);
    let official = soak_official_reader(&paths);

    if let Some(st) = &r.sim_stats {
        println!(
            "emulator: {} replies sent, {} corrupted, {} dropped; {} unplug(s), {} replug(s); {} servo(s) silenced",
            st.replies, st.corrupted, st.dropped, st.unplugs, st.replugs, st.silenced
        );
    }
    println!(
        "loop: {} ticks in {:.1} s, {} episode(s), {} bus error(s), {} takeover(s), {} overrun(s)",
        lr.ticks,
        r.wall_s,
        lr.episodes.len(),
        lr.bus_errors,
        lr.takeovers,
        lr.timing.overruns
    );
    println!(
        "holds: {} entered, {} left ({} by a takeover, resume or e-stop, {} when the episode ended); recorded in the files: {} entered, {} left (a Hold that lasts until the episode ends is left after its file is closed)",
        lr.holds_entered,
        lr.holds_left,
        lr.holds_left.saturating_sub(lr.holds_ended_with_episode),
        lr.holds_ended_with_episode,
        files.holds_entered,
        files.holds_left
    );
    println!(
        "frames: {} dropped (queue full), {} lost (not written), {} lost episode(s)",
        lr.dropped_frames, lr.lost_frames, lr.lost_episodes
    );
    println!(
        "goals outside the joint limits: {} of {} recorded (worst excess {:.2e} rad)",
        files.goals_outside, files.goals, files.worst_excess_rad
    );
    let official_line = match &official {
        Ok((ok, _)) => format!(
            "{ok} of {} open with the official Python mcap reader",
            files.files
        ),
        Err(why) => format!("official Python mcap reader: not checked ({why})"),
    };
    println!(
        "files: {} of {} read by our reader; {official_line}",
        files.read_ok, files.files
    );
    for e in &files.read_errors {
        eprintln!("  our reader: {e}");
    }
    if let Ok((_, bad)) = &official {
        for b in bad {
            eprintln!("  official reader: {b}");
        }
    }
    match &out {
        Some(d) => println!("recordings kept in {}", d.display()),
        None => {
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    if let Some(d) = trained {
        let _ = std::fs::remove_dir_all(d);
    }
    let official_bad = official
        .as_ref()
        .map(|(ok, _)| *ok != files.files)
        .unwrap_or(false);
    if files.goals_outside > 0 || files.read_ok != files.files || official_bad {
        eprintln!(
            "error: the soak failed (goals outside the limits or unreadable files; see above)"
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
