//! Assembling and running the daemon: config -> bus, gamepad, policy, recorder, pacing ->
//! the control thread, with the tokio service shell beside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use intervened_dxl::Arm;
use intervened_policy::{Policy, PolicyExpectations, PolicyRunner, RunnerOptions};
use intervened_robot::{Calibration, RobotConfig, SensorSource, TakeoverMode};
use intervened_teleop::{GamepadSource, GilrsSource, TeleopController};
#[cfg(feature = "sim")]
use intervened_world::HumanParams;
use tracing::{error, info, warn};

use crate::adapters::{DxlArm, Pad, TchPolicy};
use crate::clock::{LockstepPacer, Pacer, RealtimePacer};
use crate::control::{
    ControlLoop, LoopOptions, LoopParts, LoopReport, PolicyDriver, SessionPlan, TickHook,
};
use crate::episode_sink::EpisodeSink;
use crate::recording::{FrameSink, NullSink};
use crate::service::{
    lock_pid_file, notify_loop, registry_current, serve_socket, Command, ControlSocket, LockError,
};
use crate::status::Status;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Overrides the config's bus port.
    pub port: Option<String>,
    /// Overrides the config's data root.
    pub data: Option<PathBuf>,
    /// The control socket; none serves no socket.
    pub socket: Option<PathBuf>,
    /// A policy directory (policy.pt + policy.json); default: the registry's `current`.
    pub policy: Option<PathBuf>,
    /// Start this many episodes by itself, then exit.
    pub episodes: Option<u64>,
    /// Episodes are teleoperated demonstrations.
    pub demo: bool,
    /// The simulated human drives the virtual gamepad (simulated bus only).
    #[cfg(feature = "sim")]
    pub sim_human: bool,
    #[cfg(feature = "sim")]
    pub human: HumanParams,
    /// Run the simulator in real time instead of lockstep.
    pub realtime: bool,
    /// Record episodes (on by default).
    pub record: bool,
    pub max_ticks: Option<u64>,
    pub task: String,
    /// Seed override for the simulated world.
    pub seed: Option<u64>,
    /// Simulated bus only: receives handles to the emulated chain and the virtual gamepad
    /// before the loop starts, so tests can inject faults and press buttons.
    #[cfg(feature = "sim")]
    pub sim_handles: Option<Sender<SimHandles>>,
    /// Name the session instead of using the UTC start time.
    pub session_id: Option<String>,
    /// Overrides `policy.inference`. In lockstep inference otherwise runs inline (repeatable
    /// runs); setting this keeps the real-time arrangement there too (tests of the control
    /// thread itself).
    pub inference: Option<intervened_robot::InferenceMode>,
}

/// What a test can reach inside a simulated run.
#[cfg(feature = "sim")]
#[derive(Clone)]
pub struct SimHandles {
    pub chain: intervened_sim::SharedChain,
    pub pad: intervened_teleop::VirtualGamepad,
    /// The loop's status, as the control socket serves it.
    pub status: Arc<Mutex<Status>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            port: None,
            data: None,
            socket: None,
            policy: None,
            episodes: None,
            demo: false,
            #[cfg(feature = "sim")]
            sim_human: false,
            #[cfg(feature = "sim")]
            human: HumanParams::default(),
            realtime: false,
            record: true,
            max_ticks: None,
            task: "pick up the block".into(),
            seed: None,
            #[cfg(feature = "sim")]
            sim_handles: None,
            session_id: None,
            inference: None,
        }
    }
}

/// What a run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub loop_report: LoopReport,
    pub session_id: Option<String>,
    pub data_root: PathBuf,
    pub policy_version: Option<String>,
    pub wall_s: f64,
    /// On the simulator with a robot-gated human: how well the robot asked for help.
    #[cfg(feature = "sim")]
    pub asks: Option<intervened_world::AskStats>,
    /// On the simulated bus: the emulator's counters (injected faults included).
    #[cfg(feature = "sim")]
    pub sim_stats: Option<intervened_sim::ServerStats>,
}

/// Loads a policy for this robot and wraps it for the loop.
///
/// With `lockstep = true` inference always runs inline: simulated time stands still while the
/// model thinks, so a worker thread would only make runs unrepeatable.
pub fn load_policy(
    cfg: &RobotConfig,
    dir: &Path,
    feature_names: &[String],
    lockstep: bool,
) -> Result<Box<dyn PolicyDriver>> {
    let expect = PolicyExpectations::for_robot(cfg, feature_names);
    let policy =
        Policy::load(dir, &expect).with_context(|| format!("loading policy {}", dir.display()))?;
    let version = policy.sidecar().version.clone();
    let mut ro = RunnerOptions::from_config(cfg);
    if lockstep {
        ro.inline_budget = 1e6;
        ro.start_on_worker = false;
    }
    let runner = PolicyRunner::new(policy, ro);
    Ok(Box::new(TchPolicy::new(runner, version)))
}

/// The config's calibration, checked against it; the identity calibration where the config
/// names none and the bus is simulated.
pub fn load_calibration(cfg: &RobotConfig) -> Result<(Calibration, PathBuf)> {
    match cfg.calibration_path() {
        Some(p) => Ok((Calibration::load(&p, cfg)?, p)),
        None if cfg.bus.is_sim() => Ok((Calibration::identity(cfg), PathBuf::from("<identity>"))),
        None => bail!(
            "{}: no `calibration` file is named; run `intervened calibrate --config {0}` and add calibration = \"...\"",
            cfg.source.as_deref().unwrap_or(Path::new("config")).display()
        ),
    }
}

/// One daemon per data root: an flock on `<root>/intervened.lock`, held until the process
/// ends. Two daemons recording into one root would write the same episode files.
pub fn lock_data_root(root: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the data root {}", root.display()))?;
    let path = root.join("intervened.lock");
    match lock_pid_file(&path) {
        Ok(f) => Ok(f),
        Err(LockError::Held(pid)) => bail!(
            "data root {} is in use by another intervened{}\n  fix: stop that daemon first, or record into another --data",
            root.display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Err(LockError::Io(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

/// Runs the daemon until SIGTERM/SIGINT, the planned episodes are done, or `max_ticks`.
pub fn run(mut cfg: RobotConfig, opts: RunOptions) -> Result<RunReport> {
    let started = std::time::Instant::now();
    if let Some(p) = &opts.port {
        cfg.bus.port = p.clone();
    }
    if let Some(seed) = opts.seed {
        cfg.sim.seed = seed;
    }
    let (cal, cal_path) = load_calibration(&cfg)?;
    let limits = cal.joint_limits(&cfg, &cal_path)?;
    let sim = cfg.bus.is_sim();
    #[cfg(not(feature = "sim"))]
    if sim {
        bail!(
            "bus.port = \"sim\" needs the simulated robot, and this build has none (feature `sim`)"
        );
    }
    #[cfg(feature = "sim")]
    if opts.sim_human && !sim {
        bail!("--sim-human needs the simulated bus (bus.port = \"sim\")");
    }
    // Claim the control socket and the data root before touching the arm, so a second daemon
    // is refused with a clear error instead of taking over either.
    let socket = match &opts.socket {
        Some(p) => Some(ControlSocket::bind(p)?),
        None => None,
    };
    let data_root = opts
        .data
        .clone()
        .unwrap_or_else(|| cfg.resolve(&cfg.recording.root));
    let _data_lock = if opts.record {
        Some(lock_data_root(&data_root)?)
    } else {
        None
    };

    // Simulated time advances tick by tick (no sleeping) unless real time is asked for.
    let lockstep = sim && cfg.sim.lockstep && !opts.realtime;
    // The bus: the emulator on a pty for "sim", else the configured device.
    #[cfg(feature = "sim")]
    let sim_bus = if sim {
        Some(sim::start_bus(&cfg, lockstep)?)
    } else {
        None
    };
    #[cfg(feature = "sim")]
    let port: PathBuf = match &sim_bus {
        Some(b) => b.server.path(),
        None => PathBuf::from(&cfg.bus.port),
    };
    #[cfg(not(feature = "sim"))]
    let port = PathBuf::from(&cfg.bus.port);
    let arm = Arm::open(&cfg, cal.clone(), &port).with_context(|| {
        format!(
            "opening the arm on {} (run `intervened doctor --config ...` for a checklist)",
            port.display()
        )
    })?;
    let mut arm = arm;
    if lockstep {
        // In lockstep simulated time stands still while the bus waits, so a generous wait costs
        // nothing, and it keeps a loaded host (the emulator thread not scheduled for a few
        // milliseconds) from turning into bus faults and unrepeatable runs.
        arm.set_read_budget(Duration::from_millis(500));
        arm.bus_mut().set_reply_margin(Duration::from_millis(200));
    }
    let mut arm = DxlArm::new(arm);
    // Torque on: the servos hold where they are (enabling torque sets goal = present, so
    // nothing moves), and the loop's first goal is the measured position.
    arm.arm_mut().set_torque(true).context("enabling torque")?;

    // The gamepad; on the simulator also the world (a task sensor and the loop's tick hook)
    // and the simulated human on a virtual pad.
    // Only the simulator fills these (a real robot has no task sensors yet).
    #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
    let mut sensors: Vec<Box<dyn SensorSource>> = Vec::new();
    #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
    let mut hook: Option<Box<dyn TickHook>> = None;
    #[cfg(feature = "sim")]
    let (mut asks, mut handles) = (None, None);
    #[cfg(feature = "sim")]
    let source: Box<dyn GamepadSource> = match &sim_bus {
        Some(b) => {
            let side = sim::attach(&cfg, &cal, b, &opts)?;
            sensors.push(side.sensor);
            hook = Some(side.hook);
            asks = Some(side.asks);
            handles = Some((b.chain.clone(), side.pad.clone()));
            Box::new(side.pad)
        }
        None => Box::new(GilrsSource::start().context("starting gamepad input")?),
    };
    #[cfg(not(feature = "sim"))]
    let source: Box<dyn GamepadSource> =
        Box::new(GilrsSource::start().context("starting gamepad input")?);
    let feature_names: Vec<String> = sensors.iter().flat_map(|s| s.names().to_vec()).collect();
    let ctl = TeleopController::from_robot_config(&cfg).context("gamepad mapping")?;
    let pad = Pad::new(ctl, source);

    if let Some(mode) = opts.inference {
        cfg.policy.inference = mode;
    }
    // Lockstep runs inference inline so the same seed gives the same run.
    let inline_inference = lockstep && opts.inference.is_none();
    // The policy: explicit, else the registry's current one, else none (demonstrations only).
    let registry = cfg.resolve(&cfg.policy.registry);
    let policy_dir = opts.policy.clone().or_else(|| registry_current(&registry));
    let policy = match &policy_dir {
        Some(d) => Some(load_policy(&cfg, d, &feature_names, inline_inference)?),
        // Policy episodes were asked for and there is nothing to run: never record
        // demonstrations in their place.
        None if opts.episodes.is_some() && !opts.demo => bail!(
            "no policy to run: {} has no `current` policy\n  fix: train one with `intervened retrain --data <data> --out {} --config <config>`, \
             pass --policy DIR, or record demonstrations with --demo",
            registry.display(),
            registry.display()
        ),
        None if opts.demo => None,
        None => {
            warn!(
                "no policy in {}: only demonstrations can be recorded until `intervened retrain` publishes one",
                registry.display()
            );
            None
        }
    };
    let policy_version = policy.as_ref().map(|p| p.version().to_string());

    // The recorder.
    let mut session_id = None;
    let sink: Box<dyn FrameSink> = if opts.record {
        let s = EpisodeSink::start(
            &cfg,
            &data_root,
            feature_names.clone(),
            opts.session_id.clone(),
            lockstep,
        )?;
        session_id = Some(s.session_id().to_string());
        Box::new(s)
    } else {
        Box::new(NullSink)
    };

    let pacer: Box<dyn Pacer> = if lockstep {
        Box::new(LockstepPacer::new(cfg.period_s()))
    } else {
        Box::new(RealtimePacer::new(
            cfg.period_s(),
            Duration::from_micros(100),
        ))
    };

    let takeover = match cfg.teleop.takeover {
        TakeoverMode::Hold => "hold",
        TakeoverMode::Toggle => "toggle",
    };
    let mut st = Status::new(
        &cfg.robot.name,
        takeover,
        &format!("{:?}", cfg.teleop.takeover_button),
        cfg.control.rate_hz,
    );
    st.session_id = session_id.clone().unwrap_or_default();
    st.policy_version = policy_version.clone();
    let status = Arc::new(Mutex::new(st));
    #[cfg(feature = "sim")]
    if let (Some(tx), Some((chain, pad))) = (&opts.sim_handles, handles) {
        let _ = tx.send(SimHandles {
            chain,
            pad,
            status: status.clone(),
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (cmd_tx, cmd_rx) = bounded::<Command>(64);
    let (pol_tx, pol_rx) = bounded::<Box<dyn PolicyDriver>>(1);

    let plan = opts.episodes.map(|n| SessionPlan {
        episodes: n,
        demo: opts.demo || policy.is_none(),
    });
    let parts = LoopParts {
        cfg: cfg.clone(),
        limits,
        arm: Box::new(arm),
        sensors,
        pad: Box::new(pad),
        policy,
        policy_updates: pol_rx,
        sink,
        pacer,
        hook,
        commands: cmd_rx,
        status: status.clone(),
        stop: stop.clone(),
        opts: LoopOptions {
            plan,
            max_ticks: opts.max_ticks,
            task: opts.task.clone(),
        },
    };

    // The service shell on its own tokio runtime thread.
    let shell = spawn_shell(ShellParts {
        cfg: cfg.clone(),
        socket,
        commands: cmd_tx,
        status: status.clone(),
        stop: stop.clone(),
        policy_updates: pol_tx,
        registry,
        current: policy_dir.clone(),
        feature_names,
        watch_registry: opts.policy.is_none(),
        lockstep: inline_inference,
    })?;

    let rt_priority = cfg.control.realtime_priority;
    let cpu = cfg.control.cpu;
    let rt_status = status.clone();
    let control = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            // Built first, so locking memory covers everything the loop touches.
            let control_loop = ControlLoop::new(parts);
            let rt = crate::rt::prepare_control_thread(rt_priority, cpu);
            for w in &rt.refused {
                warn!("{w}");
            }
            if rt_priority.is_some() {
                info!(
                    scheduler = %rt.scheduler,
                    memory_locked = %rt.memory_locked,
                    cpu = ?rt.cpu,
                    stack_prefaulted_kib = rt.stack_prefaulted_kib,
                    "control thread real-time setup"
                );
            }
            if let Ok(mut s) = rt_status.lock() {
                s.realtime = rt;
            }
            control_loop.run()
        })
        .context("spawning the control thread")?;
    let loop_report = match control.join() {
        Ok(r) => r,
        Err(_) => bail!("the control thread panicked; the arm was left holding its last goal"),
    };
    stop.store(true, Ordering::Relaxed);
    if shell.join().is_err() {
        error!("service shell panicked");
    }
    #[cfg(feature = "sim")]
    let sim_stats = sim_bus.as_ref().map(|b| b.server.stats());
    #[cfg(feature = "sim")]
    drop(sim_bus);
    Ok(RunReport {
        loop_report,
        session_id,
        data_root,
        policy_version,
        wall_s: started.elapsed().as_secs_f64(),
        #[cfg(feature = "sim")]
        asks: asks.and_then(|a| a.lock().ok().map(|a| *a)),
        #[cfg(feature = "sim")]
        sim_stats,
    })
}

struct ShellParts {
    cfg: RobotConfig,
    socket: Option<ControlSocket>,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
    policy_updates: Sender<Box<dyn PolicyDriver>>,
    registry: PathBuf,
    current: Option<PathBuf>,
    feature_names: Vec<String>,
    watch_registry: bool,
    lockstep: bool,
}

fn spawn_shell(p: ShellParts) -> Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let h = std::thread::Builder::new()
        .name("service".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                if let Some(sock) = p.socket {
                    let (c, s, st) = (p.commands.clone(), p.status.clone(), p.stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let path = sock.path().to_path_buf();
                        if let Err(e) = serve_socket(sock, c, s, st).await {
                            error!("control socket {}: {e}", path.display());
                        }
                    }));
                }
                tasks.push(tokio::spawn(notify_loop(p.status.clone(), p.stop.clone())));
                tasks.push(tokio::spawn(signals(
                    p.stop.clone(),
                    p.commands.clone(),
                    PolicyWatch {
                        cfg: p.cfg,
                        registry: p.registry,
                        current: p.current,
                        feature_names: p.feature_names,
                        updates: p.policy_updates,
                        watch: p.watch_registry,
                        lockstep: p.lockstep,
                    },
                )));
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(h)
}

struct PolicyWatch {
    cfg: RobotConfig,
    registry: PathBuf,
    current: Option<PathBuf>,
    feature_names: Vec<String>,
    updates: Sender<Box<dyn PolicyDriver>>,
    watch: bool,
    lockstep: bool,
}

impl PolicyWatch {
    /// Loads the registry's current policy if it changed, and queues it for the loop, which
    /// installs it between episodes. A policy that fails to load is reported and skipped: the
    /// running one stays.
    async fn check(&mut self, forced: bool) {
        let now = registry_current(&self.registry);
        if now.is_none() || (now == self.current && !forced) {
            return;
        }
        let Some(dir) = now.clone() else { return };
        let (cfg, names) = (self.cfg.clone(), self.feature_names.clone());
        let lockstep = self.lockstep;
        let loaded =
            tokio::task::spawn_blocking(move || load_policy(&cfg, &dir, &names, lockstep)).await;
        match loaded {
            Ok(Ok(p)) => {
                info!(
                    version = p.version(),
                    "new policy queued; it takes over between episodes"
                );
                // Replace a policy still waiting in the queue.
                if let Err(crossbeam_channel::TrySendError::Full(p)) = self.updates.try_send(p) {
                    let _ = self.updates.try_send(p);
                }
                self.current = now;
            }
            Ok(Err(e)) => {
                error!("new policy rejected, the running one stays: {e:#}");
                self.current = now;
            }
            Err(e) => error!("policy load task failed: {e}"),
        }
    }
}

async fn signals(stop: Arc<AtomicBool>, commands: Sender<Command>, mut watch: PolicyWatch) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    // Short ticks so a stop set by the control loop (end of plan) ends the shell at once; the
    // registry is looked at every 50th (once a second).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: holding, closing the recording, exiting"); stop.store(true, Ordering::Relaxed); }
            _ = int.recv() => { info!("SIGINT: holding, closing the recording, exiting"); stop.store(true, Ordering::Relaxed); }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the policy (installed between episodes)");
                watch.check(true).await;
                // Nudge the loop so an idle daemon installs it at once.
                let (tx, _rx) = tokio::sync::oneshot::channel();
                let _ = commands.try_send(Command { request: crate::protocol::Request::Reload {}, reply: tx });
            }
            _ = tick.tick() => {
                ticks += 1;
                if watch.watch && ticks.is_multiple_of(50) {
                    watch.check(false).await;
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// Ready-made receiver for tests that assemble a loop by hand.
pub fn no_policy_updates() -> Receiver<Box<dyn PolicyDriver>> {
    bounded(1).1
}

/// The simulated robot's assembly: the emulator on a pty, the rig (world, simulated human) as
/// the loop's tick hook, the virtual pad.
#[cfg(feature = "sim")]
mod sim {
    use std::sync::{Arc, Mutex};

    use anyhow::{Context, Result};
    use intervened_robot::{Calibration, RobotConfig, SensorSource};
    use intervened_sim_rig::{HumanMode, SimBus, SimRig};
    use intervened_teleop::VirtualGamepad;
    use tracing::warn;

    use super::RunOptions;
    use crate::clock::{try_pin_cpu, try_realtime_priority};
    use crate::control::TickHook;

    /// A CPU other than the control thread's for the emulator: the next one, when there are two
    /// or more and the control thread is pinned.
    fn other_cpu(control: Option<usize>) -> Option<usize> {
        let n = std::thread::available_parallelism().map(|n| n.get()).ok()?;
        control.filter(|_| n > 1).map(|c| (c + 1) % n)
    }

    pub(super) fn start_bus(cfg: &RobotConfig, lockstep: bool) -> Result<SimBus> {
        // In real time with a real-time control thread, the emulator gets the same class on
        // another core, so its own scheduling is not mistaken for the daemon's.
        let on_thread_start = match cfg.control.realtime_priority {
            Some(p) if !lockstep => {
                let cpu = other_cpu(cfg.control.cpu);
                Some(intervened_sim::ThreadStart(Arc::new(move || {
                    if let Some(c) = cpu {
                        if let Err(w) = try_pin_cpu(c) {
                            warn!("emulator: {w}");
                        }
                    }
                    if let Err(w) = try_realtime_priority(p) {
                        warn!("emulator: {w}");
                    }
                })))
            }
            _ => None,
        };
        let options = intervened_sim::ServerOptions {
            on_thread_start,
            ..Default::default()
        }
        .with_faults(&cfg.sim.faults);
        SimBus::start_with(cfg, options).context("starting the servo emulator")
    }

    pub(super) struct SimSide {
        pub sensor: Box<dyn SensorSource>,
        pub hook: Box<dyn TickHook>,
        pub pad: VirtualGamepad,
        pub asks: Arc<Mutex<intervened_world::AskStats>>,
    }

    pub(super) fn attach(
        cfg: &RobotConfig,
        cal: &Calibration,
        bus: &SimBus,
        opts: &RunOptions,
    ) -> Result<SimSide> {
        let mode = if opts.sim_human {
            HumanMode::On
        } else {
            HumanMode::Off
        };
        let mut human = opts.human.clone();
        // A session plan starts episodes itself; the simulated human need not press start.
        human.press_start = opts.episodes.is_none();
        let (rig, sensor, pad) = SimRig::new(cfg, cal.clone(), bus.chain.clone(), mode, human)
            .map_err(anyhow::Error::msg)?;
        Ok(SimSide {
            sensor: Box::new(sensor),
            asks: rig.ask_stats(),
            hook: Box::new(rig),
            pad,
        })
    }
}
