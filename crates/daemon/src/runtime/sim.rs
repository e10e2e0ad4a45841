//! The simulated robot's assembly (feature `sim`): the emulator on a pty, the rig (world,
//! simulated human) as the loop's tick hook, the virtual pad.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use intervened_robot::{Calibration, RobotConfig, SensorSource};
use intervened_sim_rig::{HumanMode, SimBus, SimRig};
use intervened_teleop::VirtualGamepad;
use tracing::warn;

use super::options::RunOptions;
use crate::clock::{try_pin_cpu, try_realtime_priority};

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
    /// The loop's tick hook, once its cameras are added.
    pub rig: SimRig,
    pub pad: VirtualGamepad,
    pub asks: Arc<Mutex<intervened_world::AskStats>>,
}

pub(super) fn attach(
    cfg: &RobotConfig,
    cal: &Calibration,
    bus: &SimBus,
    opts: &RunOptions,
    lockstep: bool,
) -> Result<SimSide> {
    let mode = if opts.sim_human {
        HumanMode::On
    } else {
        HumanMode::Off
    };
    let mut human = opts.human.clone();
    // A session plan starts episodes itself; the simulated human need not press start.
    human.press_start = opts.episodes.is_none();
    let (mut rig, sensor, pad) = SimRig::new(cfg, cal.clone(), bus.chain.clone(), mode, human)
        .map_err(anyhow::Error::msg)?;
    rig.set_lockstep(lockstep);
    Ok(SimSide {
        sensor: Box::new(sensor),
        asks: rig.ask_stats(),
        rig,
        pad,
    })
}
