//! The subcommands other than `bench`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use intervened_daemon::protocol::{Request, StopOutcome};
use intervened_daemon::runtime::{self, load_calibration, RunOptions};
use intervened_dxl::{Arm, CalibrationState, Calibrator, DoctorOptions};
use intervened_robot::{Calibration, RobotConfig};
use intervened_sim::{ServerOptions, SimBus};

use crate::ConfigArg;

/// Loads a config, applying `--port`.
pub fn load_config(c: &ConfigArg) -> Result<RobotConfig> {
    let mut cfg = RobotConfig::load(&c.config)?;
    if let Some(p) = &c.port {
        cfg.bus.port = p.clone();
    }
    Ok(cfg)
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub cfg: ConfigArg,
    /// Data root for recordings (default: the config's recording.root).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Serve the control socket here (`intervened ctl` talks to it).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Run this policy directory instead of the registry's `current`.
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// Run a session of N episodes, started automatically, then exit.
    #[arg(long, value_name = "N")]
    pub episodes: Option<u64>,
    /// Demonstration mode: the human teleoperates whole episodes (frames labelled `demo`).
    #[arg(long)]
    pub demo: bool,
    /// Simulated bus only: a simulated human drives the virtual gamepad (demonstrates in demo
    /// episodes, supervises and takes over in policy episodes).
    #[arg(long)]
    pub sim_human: bool,
    /// Simulated bus only: run in real time instead of lockstep.
    #[arg(long)]
    pub realtime: bool,
    /// Do not record episodes.
    #[arg(long)]
    pub no_record: bool,
    /// Seed of the simulated world (default: the config's sim.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Name the recorded session (default: its UTC start time).
    #[arg(long)]
    pub session_id: Option<String>,
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.cfg)?;
    let opts = RunOptions {
        data: a.data,
        socket: a.socket,
        policy: a.policy,
        episodes: a.episodes,
        demo: a.demo,
        sim_human: a.sim_human,
        realtime: a.realtime,
        record: !a.no_record,
        seed: a.seed,
        session_id: a.session_id,
        ..RunOptions::default()
    };
    let r = runtime::run(cfg, opts)?;
    let lr = &r.loop_report;
    let ok = lr
        .episodes
        .iter()
        .filter(|o| matches!(o, intervened_daemon::recording::EpisodeOutcome::Success))
        .count();
    println!(
        "ran {} ticks in {:.1} s: {} episode(s), {} success, {} takeover(s), {} clamp(s), {} bus error(s)",
        lr.ticks,
        r.wall_s,
        lr.episodes.len(),
        ok,
        lr.takeovers,
        lr.clamps,
        lr.bus_errors,
    );
    if r.policy_version.is_some() {
        println!(
            "policy {}: {} action(s), {} starvation(s) (no action for policy.action_timeout_ms: Hold)",
            r.policy_version.as_deref().unwrap_or("?"),
            lr.policy_actions,
            lr.policy_starvations
        );
        let c = &lr.camera_to_goal;
        if c.count > 0 {
            println!(
                "camera to goal (image capture -> first goal acting on it, {}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} observations",
                if r.lockstep { "simulated time" } else { "monotonic clock" },
                c.p50_us / 1e3,
                c.p99_us / 1e3,
                c.max_us / 1e3,
                c.count
            );
            let a = &lr.image_age;
            println!(
                "  of which the image's age when the tick read it: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                a.p50_us / 1e3,
                a.p99_us / 1e3,
                a.max_us / 1e3
            );
        }
    }
    println!(
        "recording: {} dropped frame(s) or camera image(s) (queue full), {} lost frame(s) (not written), {} lost episode(s)",
        lr.dropped_frames, lr.lost_frames, lr.lost_episodes
    );
    if let Some(s) = &r.session_id {
        println!("session {s} recorded under {}", r.data_root.display());
    }
    if lr.dropped_frames + lr.lost_frames + lr.lost_episodes > 0 {
        eprintln!("error: some recorded data did not reach the disk (see above and the log)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub cfg: ConfigArg,
    /// Directory for the stable link to the pty (default: a private temporary directory).
    #[arg(long, value_name = "DIR")]
    pub link_dir: Option<PathBuf>,
    /// Fraction of replies sent with a broken CRC (overrides sim.faults.corrupt_crc_rate).
    #[arg(long, value_name = "P")]
    pub corrupt_crc_rate: Option<f64>,
    /// Fraction of replies never sent (overrides sim.faults.drop_reply_rate).
    #[arg(long, value_name = "P")]
    pub drop_reply_rate: Option<f64>,
    /// Fraction of replies sent late (overrides sim.faults.late_reply_rate).
    #[arg(long, value_name = "P")]
    pub late_reply_rate: Option<f64>,
    /// Unplug the adapter this many seconds after start (overrides sim.faults.unplug_at_s).
    #[arg(long, value_name = "SECONDS")]
    pub unplug_at: Option<f64>,
}

pub fn sim(a: SimArgs) -> Result<ExitCode> {
    let mut cfg = load_config(&a.cfg)?;
    let f = &mut cfg.sim.faults;
    for (flag, value, slot) in [
        (
            "--corrupt-crc-rate",
            a.corrupt_crc_rate,
            &mut f.corrupt_crc_rate,
        ),
        (
            "--drop-reply-rate",
            a.drop_reply_rate,
            &mut f.drop_reply_rate,
        ),
        (
            "--late-reply-rate",
            a.late_reply_rate,
            &mut f.late_reply_rate,
        ),
    ] {
        if let Some(p) = value {
            if !(0.0..=1.0).contains(&p) {
                bail!("{flag} {p} is not a probability in [0, 1] (e.g. 0.01 for 1% of replies)");
            }
            *slot = p;
        }
    }
    if let Some(t) = a.unplug_at {
        if !(t.is_finite() && t >= 0.0) {
            bail!("--unplug-at {t} is not a time in seconds >= 0");
        }
        f.unplug_at_s = Some(t);
    }
    let faults = cfg.sim.faults.clone();
    let SimBus { server, .. } = SimBus::start_with(
        &cfg,
        ServerOptions {
            realtime: true,
            link_dir: a.link_dir,
            ..Default::default()
        }
        .with_faults(&faults),
    )
    .context("starting the emulator's pty")?;
    // The first line of stdout is the path, for scripts.
    println!("{}", server.path().display());
    std::io::stdout().flush()?;
    eprintln!(
        "serving {} emulated servos at {} baud; Ctrl-C to stop",
        cfg.joints.len(),
        cfg.bus.baud
    );
    if faults.any() {
        eprintln!("injecting faults: {}", describe_faults(&faults));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `[sim.faults]` in one line.
pub fn describe_faults(f: &intervened_robot::SimFaults) -> String {
    let mut parts = vec![format!(
        "{:.2}% corrupted, {:.2}% dropped, {:.2}% late ({} ms) replies (seed {})",
        f.corrupt_crc_rate * 100.0,
        f.drop_reply_rate * 100.0,
        f.late_reply_rate * 100.0,
        f.late_reply_ms,
        f.seed
    )];
    if let Some(t) = f.unplug_at_s {
        parts.push(format!("unplug at {t:.1} s for {:.1} s", f.unplug_for_s));
    }
    if let (Some(id), Some(t)) = (f.silent_servo, f.silent_at_s) {
        parts.push(format!(
            "servo {id} silent at {t:.1} s for {:.1} s",
            f.silent_for_s
        ));
    }
    parts.join("; ")
}

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub cfg: ConfigArg,
    /// Do not change an FTDI latency timer (only report it).
    #[arg(long)]
    pub no_fix: bool,
}

pub fn doctor(a: DoctorArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.cfg)?;
    // The calibration exactly as `run` takes it (loaded, checked against the config, limits
    // intersected): whatever `run` refuses, the doctor fails, simulated bus or not.
    let cal_result = load_calibration(&cfg).and_then(|(c, path)| {
        c.joint_limits(&cfg, &path)?;
        Ok(c)
    });
    let cal_error = cal_result.as_ref().err().map(|e| format!("{e:#}"));
    let cal = cal_result.ok();
    let mut failed = cal_error.is_some();
    // For `port = "sim"` the doctor checks the in-process emulator over its pty, configured as
    // the daemon would.
    let sim = if cfg.bus.is_sim() {
        // Without `[sim.faults]`: injected faults would fail checks of a sound configuration.
        let SimBus { server, .. } =
            SimBus::start_with(&cfg, ServerOptions::default()).context("starting the emulator")?;
        let c = cal.clone().unwrap_or_else(|| Calibration::identity(&cfg));
        drop(Arm::open(&cfg, c, &server.path()).context("configuring the emulated chain")?);
        Some(server)
    } else {
        None
    };
    let port = match &sim {
        Some(s) => s.path(),
        None => PathBuf::from(&cfg.bus.port),
    };
    let opts = DoctorOptions {
        fix_latency: !a.no_fix,
        ..DoctorOptions::default()
    };
    let default_fix = format!(
        "run `intervened calibrate --config {}`, or set `calibration` in the config to a valid file",
        a.cfg.config.display()
    );
    let calibration = match (&cal, &cal_error) {
        (Some(c), _) => CalibrationState::Loaded(c),
        (None, Some(msg)) => {
            let (problem, fix) = msg
                .split_once("\n  fix: ")
                .unwrap_or((msg.as_str(), default_fix.as_str()));
            CalibrationState::Broken { problem, fix }
        }
        (None, None) => CalibrationState::NotGiven,
    };
    let report = intervened_dxl::doctor_checks(&cfg, calibration, &port, &opts);
    println!("{report}");
    failed |= report.has_failures();

    // Gamepads and the mapping.
    match intervened_teleop::list_gamepads() {
        Ok(p) if p.is_empty() => {
            // FAIL only where it fails the doctor: on the simulated bus, `--sim-human` drives
            // a virtual gamepad, so a missing physical one is a warning there.
            let (level, fails) = match (cfg.teleop.require_gamepad, cfg.bus.is_sim()) {
                (false, _) => ("ok  ", false),
                (true, true) => ("warn", false),
                (true, false) => ("FAIL", true),
            };
            println!(
                "gamepad  {level} none connected{}",
                if cfg.teleop.require_gamepad {
                    " (teleop.require_gamepad = true: autonomous mode is refused without one; on the simulated bus --sim-human provides a virtual one)\n  fix: plug in a gamepad, or add the user to the `input` group"
                } else {
                    ""
                }
            );
            failed |= fails;
        }
        Ok(pads) => {
            for p in pads {
                println!("gamepad  ok   {p}");
            }
        }
        Err(e) => println!("gamepad  warn {e}"),
    }
    match intervened_teleop::TeleopController::from_robot_config(&cfg) {
        Ok(c) => println!(
            "mapping in use ({:?} to take over with {:?}):\n{}",
            cfg.teleop.takeover,
            cfg.teleop.takeover_button,
            c.mapping()
        ),
        Err(e) => {
            println!("mapping  FAIL {e}");
            failed = true;
        }
    }
    // Cameras: opened as `run` opens them, and run for a second to measure their rate.
    failed |= crate::camera_doctor::check_cameras(&cfg, std::time::Duration::from_secs(1));
    // The policy, if the registry has one.
    let registry = cfg.resolve(&cfg.policy.registry);
    match intervened_daemon::service::registry_current(&registry) {
        None => println!(
            "policy   ok   none in {} yet (demonstrations only)",
            registry.display()
        ),
        Some(dir) => {
            let features: Vec<String> = if cfg.bus.is_sim() {
                intervened_world::FEATURE_NAMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            match runtime::load_policy(&cfg, &dir, &features, false) {
                // What loading checked; runtime failures (real observations out of the
                // training range, inference overrunning the control period) it cannot see.
                Ok(p) => println!(
                    "policy   ok   {}: loads; sidecar matches this robot (type, joints, features, fps) and the model's sha256; \
                     a forward pass on a zero observation gives the expected output shape, float32, finite \
                     (not checked: outputs on real observations, inference time at the control rate)",
                    p.version()
                ),
                Err(e) => {
                    println!("policy   FAIL {e:#}");
                    failed = true;
                }
            }
        }
    }
    // Real-time hygiene: what would take effect if the daemon asked for it now. Warnings,
    // not failures: the loop runs without them, with weaker timing guarantees.
    let asked = cfg.control.realtime_priority;
    for (ok, line) in intervened_daemon::rt::capabilities(asked) {
        let level = if ok { "ok  " } else { "warn" };
        println!(
            "realtime {level} {line}{}",
            if asked.is_none() {
                " (control.realtime_priority is not set: not asked for)"
            } else {
                ""
            }
        );
    }
    match intervened_daemon::rt::unit_limits() {
        Some((unit, lines)) => println!("realtime ok   {}: {}", unit.display(), lines.join(", ")),
        None => println!(
            "realtime warn no installed intervened.service found; systemd/intervened.service sets LimitRTPRIO=99 and LimitMEMLOCK=infinity"
        ),
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub cfg: ConfigArg,
    /// Where to write the calibration (default: the file the config names).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn calibrate(a: CalibrateArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.cfg)?;
    if cfg.bus.is_sim() {
        bail!("calibrate needs an arm: run `intervened sim --config ...` and pass its path with --port");
    }
    let out = a.out.clone().or_else(|| cfg.calibration_path()).context(
        "the config names no calibration file; pass --out FILE (and add calibration = \"FILE\" to the config)",
    )?;
    let mut arm = Arm::open(&cfg, Calibration::identity(&cfg), Path::new(&cfg.bus.port))?;
    let mut cal = Calibrator::new(&cfg);
    cal.begin(&mut arm)?;
    let stdin = std::io::stdin();
    let mut line = String::new();
    println!(
        "Torque is off. Move the arm to its middle pose (every joint centred), then press Enter."
    );
    stdin.lock().read_line(&mut line)?;
    cal.record_middle(&mut arm)?;
    println!("Now sweep every joint through its whole range. Press Enter when done.");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = std::io::stdin().lock().read_line(&mut l);
        let _ = tx.send(());
    });
    let mut last = std::time::Instant::now();
    while rx.try_recv().is_err() {
        let progress = cal.sample(&mut arm)?;
        if last.elapsed() > Duration::from_millis(500) {
            let line: Vec<String> = progress
                .joints
                .iter()
                .map(|j| {
                    format!(
                        "{} {}..{}{}",
                        j.joint,
                        j.min,
                        j.max,
                        if j.enough { " ok" } else { "" }
                    )
                })
                .collect();
            eprint!("\r{}   ", line.join(" | "));
            last = std::time::Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!();
    let calibration = cal.finish()?;
    calibration.save(&out)?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// What a policy's actions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionArg {
    /// Joint goals in radians (ACT's choice): the chunk says where to go.
    Absolute,
    /// Goals minus the measured positions at prediction time.
    Delta,
}

/// The frame weighting scheme (`intervened_train::Weighting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightingArg {
    #[value(name = "hg-dagger", alias = "hgdagger")]
    HgDagger,
    Iwr,
    Sirius,
}

impl From<WeightingArg> for intervened_train::Weighting {
    fn from(w: WeightingArg) -> Self {
        match w {
            WeightingArg::HgDagger => Self::HgDagger,
            WeightingArg::Iwr => Self::Iwr,
            WeightingArg::Sirius => Self::Sirius,
        }
    }
}

#[derive(Args)]
pub struct RetrainArgs {
    /// Data root holding sessions/.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The policy registry.
    #[arg(long, value_name = "REGISTRY")]
    pub out: PathBuf,
    /// Only use episodes of this robot (type, joints, fps).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// hg-dagger (demos + interventions), iwr (interventions 50/50), sirius (class shares).
    #[arg(long, value_enum, default_value_t = WeightingArg::HgDagger)]
    pub weighting: WeightingArg,
    /// Predict the next k goals, executed with temporal ensembling [default: 20].
    #[arg(long, value_name = "K")]
    pub chunk: Option<usize>,
    /// What the policy predicts: absolute joint goals, or deltas from the measured positions
    /// [default: absolute].
    #[arg(long, value_enum)]
    pub action: Option<ActionArg>,
    /// Bootstrap ensemble members (doubt needs >= 2).
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
    /// Ensemble members all train on every episode (differing by initialisation and sampling
    /// order) instead of on bootstrap resamples.
    #[arg(long)]
    pub no_bootstrap: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Passes over the training set [default: 100]; capped by --max-steps.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Lower bound on optimiser steps per member, whatever --epochs gives [default: 2000].
    #[arg(long)]
    pub min_steps: Option<usize>,
    /// Upper bound on optimiser steps per member [default: 20000].
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Validation checks without improvement before stopping early; 0 never stops early
    /// [default: 10].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Width of the two hidden layers [default: 256].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Gaussian noise (in standard deviations) added to training observations [default: 0].
    #[arg(long)]
    pub obs_noise: Option<f64>,
    /// Feed observations unscaled (by default they are scaled by their mean and spread).
    #[arg(long)]
    pub no_obs_norm: bool,
    /// Image policies: no random-shift augmentation (by default each training image is
    /// shifted by up to 4 pixels).
    #[arg(long)]
    pub no_image_shift: bool,
    /// Train an image policy on these cameras (in this order), observing the joints only.
    #[arg(long, value_name = "NAME[,NAME]", value_delimiter = ',')]
    pub cameras: Vec<String>,
    /// Samples per optimiser step [default: 256; 32 with --cameras, where a 96x96 step takes
    /// about 60 ms on this 2-core machine].
    #[arg(long)]
    pub batch: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the full report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// List the registry's policies instead of training.
    #[arg(long)]
    pub list: bool,
    /// Point `current` back at VERSION (or the previous one) instead of training.
    #[arg(long, value_name = "VERSION", num_args = 0..=1, default_missing_value = "")]
    pub rollback: Option<String>,
}

/// `retrain --cameras`' (and `bench dagger --vision`'s) default batch: image steps cost ~100x
/// an MLP's on the CPU, and on this 2-core machine 32 images a step train more samples a second
/// than 64 (`cargo run -p intervened-train --example vision_timing`).
pub const IMAGE_BATCH: usize = 32;

pub fn retrain(a: RetrainArgs) -> Result<ExitCode> {
    use intervened_train::registry;
    if a.list {
        for p in registry::list_policies(&a.out)? {
            let mark = if p.current { "*" } else { " " };
            let metrics = p
                .sidecar
                .as_ref()
                .and_then(|s| s.get("provenance"))
                .and_then(|p| p.get("metrics"));
            println!(
                "{mark} {}  {}  {}",
                p.version,
                p.path.display(),
                metrics.map(|m| m.to_string()).unwrap_or_default()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(to) = a.rollback {
        let v = registry::rollback(
            &a.out,
            if to.is_empty() {
                None
            } else {
                Some(to.as_str())
            },
        )?;
        println!("current -> {v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut opts = intervened_train::RetrainOptions::new(&a.data, &a.out);
    if let Some(c) = &a.config {
        opts.robot = Some(RobotConfig::load(c)?);
    }
    opts.weighting = a.weighting.into();
    if let Some(k) = a.chunk {
        opts.chunk = k;
    }
    if let Some(action) = a.action {
        opts.delta = action == ActionArg::Delta;
    }
    opts.ensemble = a.ensemble;
    opts.bootstrap = !a.no_bootstrap;
    opts.seed = a.seed;
    if let Some(e) = a.epochs {
        opts.epochs = e;
    }
    if let Some(m) = a.min_steps {
        opts.min_steps = m;
    }
    match a.batch {
        Some(b) => opts.batch = b,
        None if !a.cameras.is_empty() => opts.batch = IMAGE_BATCH,
        None => {}
    }
    if a.max_steps.is_some() {
        opts.max_steps = a.max_steps;
    }
    if let Some(p) = a.patience {
        opts.patience = p;
    }
    if let Some(h) = a.hidden {
        opts.hidden = h;
    }
    if let Some(n) = a.obs_noise {
        opts.obs_noise = n;
    }
    opts.normalize_obs = !a.no_obs_norm;
    opts.image_shift = !a.no_image_shift;
    opts.cameras = a.cameras;
    opts.quiet = a.quiet;
    repair_cut_episodes(&a.data);
    let r = intervened_train::retrain(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportWhat,
}

#[derive(Subcommand)]
pub enum ExportWhat {
    /// Write a LeRobotDataset v3.0 from every recorded session.
    Lerobot {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace an existing dataset at --out.
        #[arg(long)]
        overwrite: bool,
        /// Print what was written as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// List sessions: episodes, frames, intervention rate, success.
    Sessions {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Print the listing as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn export(a: ExportArgs) -> Result<ExitCode> {
    match a.what {
        ExportWhat::Lerobot {
            data,
            out,
            overwrite,
            json,
        } => {
            let opts = intervened_episodes::ExportOptions {
                overwrite,
                ..Default::default()
            };
            repair_cut_episodes(&data);
            let s = intervened_episodes::export_lerobot(&data, &out, &opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_export(&s);
            }
        }
        ExportWhat::Sessions { data, json } => {
            let s = intervened_episodes::list_sessions(&data)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("{s}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A few lines a person reads: what went where, and how to open it.
fn print_export(s: &intervened_episodes::ExportSummary) {
    let interventions: u64 = s.episodes.iter().map(|e| e.intervention_steps).sum();
    let ok = s
        .episodes
        .iter()
        .filter(|e| matches!(e.outcome, intervened_episodes::Outcome::Success))
        .count();
    let sessions: std::collections::BTreeSet<&str> =
        s.episodes.iter().map(|e| e.session_id.as_str()).collect();
    println!(
        "exported {} episode(s) from {} session(s): {} frames, {} of them interventions; {} success(es)",
        s.episodes.len(),
        sessions.len(),
        s.total_frames,
        interventions,
        ok
    );
    if s.truncated_included > 0 {
        println!(
            "{} episode(s) were cut short by a crash and are included up to their last intact frame",
            s.truncated_included
        );
    }
    for (p, why) in &s.skipped {
        println!("skipped {}: {why}", p.display());
    }
    if !s.video_keys.is_empty() {
        println!("video (H.264 MP4): {}", s.video_keys.join(", "));
    }
    if s.frames_without_image > 0 {
        println!(
            "{} frame(s) had no image of a camera at all and show black",
            s.frames_without_image
        );
    }
    println!("LeRobotDataset v3.0 written to {}", s.out_dir.display());
    println!("load it in Python:");
    println!("  from lerobot.datasets.lerobot_dataset import LeRobotDataset");
    println!(
        "  ds = LeRobotDataset(\"local/intervened\", root=\"{}\")",
        s.out_dir.display()
    );
}

/// Before data is used (retrain, export): repair episode files cut short by a crash the
/// daemon has not restarted after, so that what is exported next to them opens in every
/// reader. Never fatal: the readers read cut files in memory anyway.
fn repair_cut_episodes(data: &Path) {
    if !data.join("sessions").is_dir() {
        return;
    }
    match intervened_episodes::recover_all(data) {
        Ok(r) => {
            let n = r.repaired().count();
            if n > 0 {
                eprintln!(
                    "repaired {n} episode file(s) under {} cut short by a crash: rewritten complete with every intact message, marked truncated",
                    data.display()
                );
            }
        }
        Err(e) => tracing::warn!("crash recovery under {}: {e:#}", data.display()),
    }
}

#[derive(Args)]
pub struct RecoverArgs {
    /// A data root (the folder holding `sessions/`) or one session folder.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Print the full report as JSON instead of one line per file.
    #[arg(long)]
    pub json: bool,
}

/// Repairs every cut-short episode under a data root or in one session folder: the file is
/// rewritten as a complete MCAP file with every intact message (the torn tail dropped), then
/// its manifest is written. Whole files are left byte for byte as they are; a file a running
/// daemon is recording is left alone. The daemon does the same at every start.
pub fn recover(a: RecoverArgs) -> Result<ExitCode> {
    use intervened_episodes::{RecoveryAction, RecoveryReport};
    let dir = &a.dir;
    if !dir.is_dir() {
        bail!(
            "{}: no such folder\n  fix: give the data root (recording.root, e.g. `data`) or one of its sessions/<id> folders",
            dir.display()
        );
    }
    let report: RecoveryReport = if dir.join("sessions").is_dir() {
        intervened_episodes::recover_all(dir)?
    } else {
        let has_episodes = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("episode-") && name.ends_with(".mcap")
            });
        if !has_episodes {
            bail!(
                "{}: neither a data root (no sessions/ folder) nor a session folder (no episode-NNNNNN.mcap files)\n  fix: give the data root (recording.root, e.g. `data`) or one of its sessions/<id> folders",
                dir.display()
            );
        }
        intervened_episodes::recover_session_dir(dir)?
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut counts = [0usize; 5];
        for f in &report.files {
            let shown = f.path.strip_prefix(dir).unwrap_or(&f.path).display();
            let what = match (f.action, &f.repair) {
                (RecoveryAction::Intact, _) => {
                    counts[0] += 1;
                    "intact".to_string()
                }
                (RecoveryAction::ManifestWritten, _) => {
                    counts[1] += 1;
                    "intact (its manifest was missing; written)".to_string()
                }
                (RecoveryAction::Repaired, Some(r)) => {
                    counts[2] += 1;
                    format!(
                        "repaired: {} messages kept ({} frames{}), {} bytes dropped, {:.3} s of messages lost in them",
                        r.messages,
                        r.frames,
                        r.kept_until_s
                            .map(|t| format!(", up to t = {t:.3} s"))
                            .unwrap_or_default(),
                        r.bytes_dropped,
                        r.lost_span_s
                    )
                }
                (RecoveryAction::Repaired, None) => {
                    counts[2] += 1;
                    "repaired".to_string()
                }
                (RecoveryAction::Busy, _) => {
                    counts[3] += 1;
                    "being recorded by a running daemon; left alone".to_string()
                }
                (RecoveryAction::Failed, _) => {
                    counts[4] += 1;
                    format!("FAILED: {}", f.error.as_deref().unwrap_or("unknown error"))
                }
            };
            println!("{shown}: {what}");
        }
        for p in &report.removed_tmp {
            println!(
                "{}: removed (an interrupted write)",
                p.strip_prefix(dir).unwrap_or(p).display()
            );
        }
        println!(
            "{} episode file(s): {} repaired, {} intact, {} manifest(s) written, {} busy, {} failed",
            report.files.len(),
            counts[2],
            counts[0],
            counts[1],
            counts[3],
            counts[4]
        );
        if counts[2] > 0 {
            println!(
                "(frames not yet flushed when the process died never reached the disk: at most one flush interval, recording.flush_ms)"
            );
        }
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Args)]
pub struct CtlArgs {
    /// The daemon's control socket.
    #[arg(long, default_value = "/run/intervened/control.sock")]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

#[derive(Subcommand)]
pub enum CtlCmd {
    Status,
    /// Start an episode (policy, or --demo for a demonstration).
    Start {
        #[arg(long)]
        demo: bool,
    },
    /// End the episode: success, failure or discard.
    Stop {
        #[arg(value_enum)]
        outcome: OutcomeArg,
    },
    Hold,
    Resume,
    Estop,
    ClearEstop,
    /// Install the registry's current policy now (between episodes).
    Reload,
    /// Send one raw JSON line.
    Raw {
        json: String,
    },
}

/// How `ctl stop` ends an episode (`StopOutcome` on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutcomeArg {
    Success,
    Failure,
    Discard,
}

impl From<OutcomeArg> for StopOutcome {
    fn from(o: OutcomeArg) -> Self {
        match o {
            OutcomeArg::Success => Self::Success,
            OutcomeArg::Failure => Self::Failure,
            OutcomeArg::Discard => Self::Discard,
        }
    }
}

pub fn ctl(a: CtlArgs) -> Result<ExitCode> {
    let request = match a.cmd {
        CtlCmd::Status => Request::Status {},
        CtlCmd::Start { demo } => Request::StartEpisode { demo },
        CtlCmd::Stop { outcome } => Request::StopEpisode {
            outcome: outcome.into(),
        },
        CtlCmd::Hold => Request::Hold {},
        CtlCmd::Resume => Request::Resume {},
        CtlCmd::Estop => Request::Estop {},
        CtlCmd::ClearEstop => Request::ClearEstop {},
        CtlCmd::Reload => Request::Reload {},
        CtlCmd::Raw { json } => return send_line(&a.socket, &json),
    };
    send_line(&a.socket, &serde_json::to_string(&request)?)
}

/// Sends one request line and prints the reply; succeeds when the daemon says `ok`.
fn send_line(socket: &Path, line: &str) -> Result<ExitCode> {
    let mut s = UnixStream::connect(socket).with_context(|| {
        format!(
            "connecting to {} (is the daemon running with --socket? are you in its group?)",
            socket.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(line.as_bytes())?;
    s.write_all(b"\n")?;
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply)?;
    let v: serde_json::Value =
        serde_json::from_str(&reply).context("the daemon's reply is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(if v["ok"] == serde_json::Value::Bool(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
