//! Assembling and running the daemon: config -> bus, gamepad, policy, recorder, pacing ->
//! the control thread, with the tokio service shell beside it.
//!
//! By job: [`options`] (what to run, what a run reports), [`load`] (policy, calibration, data
//! root), this module (the assembly and the control thread), `shell` (tokio, socket, signals),
//! `watch` (the policy registry), `sim` (the simulated robot, feature `sim`).

mod load;
mod options;
mod shell;
#[cfg(feature = "sim")]
mod sim;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, Receiver};
use intervened_dxl::Arm;
use intervened_robot::{RobotConfig, SensorSource, TakeoverMode};
use intervened_teleop::{GamepadSource, GilrsSource, TeleopController};
use tracing::{error, info, warn};

pub use load::{load_calibration, load_policy, lock_data_root};
#[cfg(feature = "sim")]
pub use options::SimHandles;
pub use options::{RunOptions, RunReport};

use crate::adapters::{DxlArm, Pad};
use crate::cameras::{CameraClock, LoopCameras, MAX_CAMERAS};
use crate::clock::{LockstepPacer, Pacer, RealtimePacer};
use crate::control::{ControlLoop, LoopOptions, LoopParts, PolicyDriver, SessionPlan, TickHook};
use crate::episode_sink::EpisodeSink;
use crate::recording::{FrameSink, NullSink};
use crate::service::{registry_current, Command, ControlSocket};
use crate::status::Status;
use intervened_camera::config::CameraDevice;
use intervened_camera::{CaptureThread, FrameReader};
use shell::{spawn_shell, ShellParts};

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
    #[cfg(feature = "sim")]
    let mut rig: Option<intervened_sim_rig::SimRig> = None;
    if cfg.cameras.len() > MAX_CAMERAS {
        bail!(
            "{} cameras are configured; the loop reads at most {MAX_CAMERAS}\n  fix: remove [[cameras]] entries",
            cfg.cameras.len()
        );
    }
    #[cfg(feature = "sim")]
    let (mut asks, mut handles) = (None, None);
    #[cfg(feature = "sim")]
    let source: Box<dyn GamepadSource> = match &sim_bus {
        Some(b) => {
            let side = sim::attach(&cfg, &cal, b, &opts, lockstep)?;
            sensors.push(side.sensor);
            rig = Some(side.rig);
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
    let episode_sink = if opts.record {
        let s = EpisodeSink::start(
            &cfg,
            &data_root,
            feature_names.clone(),
            opts.session_id.clone(),
            lockstep,
        )?;
        session_id = Some(s.session_id().to_string());
        Some(s)
    } else {
        None
    };
    // The cameras, each frame tapped for the recorder: rendered ones from the rig, real ones
    // each on its own capture thread.
    let mut camera_readers: Vec<FrameReader> = Vec::with_capacity(cfg.cameras.len());
    let mut camera_keep: Vec<Box<dyn Send>> = Vec::new();
    for (i, cam) in cfg.cameras.iter().enumerate() {
        let tap = episode_sink.as_ref().map(|s| s.image_tap(i));
        #[cfg(feature = "sim")]
        if let (Some(r), CameraDevice::Sim) = (rig.as_mut(), cam.device()) {
            camera_readers.push(r.add_camera(cam, tap).map_err(anyhow::Error::msg)?);
            continue;
        }
        if cam.device() == CameraDevice::Sim {
            bail!(
                "camera {}: device = \"sim\" is a rendered camera, which needs the simulated robot\n  fix: set bus.port = \"sim\", or give the camera's V4L2 device (e.g. /dev/video0)",
                cam.name
            );
        }
        if lockstep {
            bail!(
                "camera {}: lockstep runs in simulated time, which a real camera does not keep\n  fix: use device = \"sim\" cameras for lockstep runs",
                cam.name
            );
        }
        let camera = intervened_camera::open_camera(cam, None).with_context(|| {
            format!(
                "opening camera {} (`intervened doctor` lists what it supports)",
                cam.name
            )
        })?;
        let (thread, reader) = CaptureThread::spawn_tapped(camera, cam.max_age(), tap)
            .with_context(|| format!("starting camera {}", cam.name))?;
        camera_keep.push(Box::new(thread));
        camera_readers.push(reader);
    }
    let camera_clock = if lockstep {
        CameraClock::Ticks {
            period_ns: (cfg.period_s() * 1e9).round() as u64,
        }
    } else {
        CameraClock::Monotonic
    };
    let cameras = LoopCameras::new(camera_readers, camera_clock, camera_keep);
    let sink: Box<dyn FrameSink> = match episode_sink {
        Some(s) => Box::new(s),
        None => Box::new(NullSink),
    };
    #[cfg(feature = "sim")]
    let hook: Option<Box<dyn TickHook>> = rig.map(|r| Box::new(r) as Box<dyn TickHook>);
    #[cfg(not(feature = "sim"))]
    let hook: Option<Box<dyn TickHook>> = None;

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
        cameras,
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
        lockstep,
        #[cfg(feature = "sim")]
        asks: asks.and_then(|a| a.lock().ok().map(|a| *a)),
        #[cfg(feature = "sim")]
        sim_stats,
    })
}

/// Ready-made receiver for tests that assemble a loop by hand.
pub fn no_policy_updates() -> Receiver<Box<dyn PolicyDriver>> {
    bounded(1).1
}
