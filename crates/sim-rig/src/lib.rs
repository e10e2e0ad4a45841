//! The simulated robot: the emulated servo chain on a pty, the arm-and-block world, and the
//! simulated human on a virtual gamepad. The daemon talks to it exactly as to a real arm:
//! Protocol 2.0 over a serial line, gamepad events through the teleop crate.
//!
//! In lockstep, each tick after the goals are written the rig advances the servos and the
//! world by one control period, then lets the simulated human look and move the sticks.
//! The same seed therefore gives the same episode, bit for bit.
//!
//! The rig sits outside the control core: it plugs into the loop as a [`TickHook`], and the
//! daemon assembles it only for `bus.port = "sim"` (its `sim` feature).

use std::sync::{Arc, Mutex};

use intervened_camera::config::CameraConfig;
use intervened_camera::sim::world::fill_scene;
use intervened_camera::{frame_channel, FramePublisher, FrameReader, FrameTap, Renderer, Scene};
use intervened_dxl_proto::{packet, x_series};
use intervened_robot::{Calibration, RobotConfig};
use intervened_sim::{Chain, SharedChain};
use intervened_teleop::{RumblePattern, VirtualGamepad};
use intervened_world::{AskStats, HumanParams, SimulatedHuman, World, WorldSensor};
use tracing::warn;

use intervened_core::arbiter::Mode;
use intervened_core::cameras::lockstep_time_ns;
use intervened_core::control::{TickHook, TickInfo};
use intervened_core::hardware::ArmIo;
use intervened_core::recording::{EpisodeOutcome, FailureMode};

/// What the simulated human does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HumanMode {
    /// Nobody at the gamepad.
    Off,
    /// Teleoperates demonstration episodes, supervises policy episodes.
    On,
}

/// The emulator and its pty, started for `port = "sim"`.
pub use intervened_sim::SimBus;

pub struct SimRig {
    cfg: RobotConfig,
    cal: Calibration,
    chain: SharedChain,
    world: Arc<Mutex<World>>,
    human: Option<SimulatedHuman>,
    pad: VirtualGamepad,
    seed: u64,
    period: f64,
    q: Vec<f64>,
    gripper: Option<(usize, u8)>,
    /// Ticks of this episode with an arm joint at its limit, and whether the last one was.
    limit_ticks: u64,
    at_limit: bool,
    /// Episodes the world judged, for reports.
    pub successes: u64,
    /// How well the robot asked for help (robot-gated human only), read after the run.
    asks: Arc<Mutex<AskStats>>,
    /// Rendered cameras (`device = "sim"`), drawn after each world step on their frame
    /// schedule, and the scene they share.
    cameras: Vec<SimCam>,
    scene: Scene,
    /// Stamp frames with simulated time (lockstep) rather than the monotonic clock.
    lockstep: bool,
    /// The tick the loop runs next (frames drawn now are stamped with it).
    next_tick: u64,
}

struct SimCam {
    publisher: FramePublisher,
    renderer: Renderer,
    fps: u32,
}

/// A measured joint this close to a config limit (rad) is "at" it: the safety filter clamps
/// goals to the limits exactly, and the servo settles within a few hundredths of a radian.
const AT_LIMIT_RAD: f64 = 0.02;

/// Time at the limits after which a failed episode counts as "ran into the joint limits".
const LIMIT_SECONDS: f64 = 1.0;

/// The arm's start pose for each episode (rad, config order): raised, gripper open.
pub fn home_pose(cfg: &RobotConfig) -> Vec<f64> {
    cfg.joints
        .iter()
        .map(|j| match j.name.as_str() {
            "shoulder_lift" => -0.3,
            "elbow_flex" => 0.6,
            "wrist_flex" => 0.9,
            _ if j.gripper => (j.limits[1] * 0.8).max(j.limits[0]),
            _ => 0.0_f64.clamp(j.limits[0], j.limits[1]),
        })
        .collect()
}

impl SimRig {
    pub fn new(
        cfg: &RobotConfig,
        cal: Calibration,
        chain: SharedChain,
        human: HumanMode,
        human_params: HumanParams,
    ) -> Result<(Self, WorldSensor, VirtualGamepad), String> {
        let world = World::new(cfg).map_err(|e| format!("sim world: {e}"))?;
        let world = Arc::new(Mutex::new(world));
        let human = match human {
            HumanMode::Off => None,
            HumanMode::On => Some(
                SimulatedHuman::new(cfg, human_params)
                    .map_err(|e| format!("simulated human: {e}"))?,
            ),
        };
        let pad = VirtualGamepad::new();
        if human.is_some() {
            pad.connect();
        }
        let gripper = cfg
            .joints
            .iter()
            .enumerate()
            .find(|(_, j)| j.gripper)
            .map(|(i, j)| (i, j.id));
        let sensor = WorldSensor::new(world.clone());
        let rig = Self {
            cfg: cfg.clone(),
            cal,
            chain,
            world,
            human,
            pad: pad.clone(),
            seed: cfg.sim.seed,
            period: cfg.period_s(),
            q: vec![0.0; cfg.joints.len()],
            gripper,
            limit_ticks: 0,
            at_limit: false,
            successes: 0,
            asks: Arc::default(),
            cameras: Vec::new(),
            scene: Scene::default(),
            lockstep: false,
            next_tick: 0,
        };
        Ok((rig, sensor, pad))
    }

    /// Frames carry simulated time (`crate::cameras::lockstep_time_ns`) from now on.
    pub fn set_lockstep(&mut self, lockstep: bool) {
        self.lockstep = lockstep;
    }

    /// A rendered camera for a `device = "sim"` entry: the loop reads it through the returned
    /// reader; `tap` gets each frame as it is drawn (the recorder's copy).
    pub fn add_camera(
        &mut self,
        cam: &CameraConfig,
        tap: Option<FrameTap>,
    ) -> Result<FrameReader, String> {
        let renderer = Renderer::new(&cam.sim_pose(), cam.width, cam.height)
            .map_err(|e| format!("camera {}: {e}", cam.name))?;
        let (publisher, reader) =
            frame_channel(&cam.name, cam.width, cam.height, cam.max_age(), tap);
        self.cameras.push(SimCam {
            publisher,
            renderer,
            fps: cam.fps,
        });
        Ok(reader)
    }

    /// Draws the cameras due at `next_tick` (each at its own frame rate, in simulated time),
    /// or all of them with `redraw` (the world was just reset).
    fn draw_cameras(&mut self, world: &World, next_tick: u64, redraw: bool) {
        if self.cameras.is_empty() {
            return;
        }
        let rate = self.cfg.control.rate_hz;
        let due = |fps: u32| {
            let frame = |t: u64| (t as f64 * f64::from(fps) / rate).floor() as u64;
            next_tick == 0 || frame(next_tick) != frame(next_tick - 1)
        };
        if !redraw && !self.cameras.iter().any(|c| due(c.fps)) {
            return;
        }
        if let Err(e) = fill_scene(world, &self.q, &mut self.scene) {
            warn!("sim camera scene: {e}");
            return;
        }
        let period_ns = (self.period * 1e9).round() as u64;
        let stamp = if self.lockstep {
            lockstep_time_ns(next_tick, period_ns)
        } else {
            intervened_camera::monotonic_now_ns()
        };
        let scene = &self.scene;
        for c in self.cameras.iter_mut().filter(|c| redraw || due(c.fps)) {
            let renderer = &mut c.renderer;
            let _ = c.publisher.publish_with(stamp, |img| {
                renderer.render(scene, img);
                Ok::<(), ()>(())
            });
        }
    }

    /// The robot-gated human's scoring of the asks, shared with whoever reads it after the run.
    pub fn ask_stats(&self) -> Arc<Mutex<AskStats>> {
        self.asks.clone()
    }

    fn read_q(cfg: &RobotConfig, cal: &Calibration, chain: &Chain, q: &mut [f64]) {
        for (i, (j, (_, c))) in cfg.joints.iter().zip(&cal.joints).enumerate() {
            if let (Some(t), Some(q)) = (chain.present_position(j.id), q.get_mut(i)) {
                *q = c.ticks_to_rad(t);
            }
        }
    }
}

impl TickHook for SimRig {
    fn prepare_episode(&mut self, index: u64) {
        let episode_seed = self.seed.wrapping_mul(1_000_003).wrapping_add(index);
        if let Ok(mut w) = self.world.lock() {
            w.reset(episode_seed);
        }
        if let Some(h) = self.human.as_mut() {
            h.reset_episode(episode_seed);
        }
        self.limit_ticks = 0;
        self.at_limit = false;
        // Put the arm back at its start pose, as a person resets the scene between episodes.
        let home = home_pose(&self.cfg);
        if let Ok(mut chain) = self.chain.lock() {
            for ((j, (_, c)), q) in self
                .cfg
                .joints
                .iter()
                .zip(self.cal.joints.iter())
                .zip(&home)
            {
                let ticks = c.rad_to_ticks(*q);
                chain.set_present_position(j.id, ticks);
                let goal = x_series::GOAL_POSITION;
                chain.handle(&packet::encode_write(
                    j.id,
                    goal.addr(),
                    &goal.encode(ticks),
                ));
            }
            if let Some((_, id)) = self.gripper {
                chain.set_obstacle(id, None);
            }
        }
        // The cameras show the reset scene from this tick on (the loop reads them after the
        // episode starts), not the last episode's end.
        self.q.clone_from(&home);
        let world_handle = self.world.clone();
        if let Ok(world) = world_handle.lock() {
            self.draw_cameras(&world, self.next_tick, true);
        };
    }

    fn after_tick(&mut self, arm: &mut dyn ArmIo, info: &TickInfo) -> Option<EpisodeOutcome> {
        // The tick's goals must have reached the emulator before it advances.
        if let Err(e) = arm.barrier() {
            warn!("bus barrier failed: {e}");
        }
        let dt = self.period;
        let Ok(mut chain) = self.chain.lock() else {
            return None;
        };
        chain.advance(dt);
        Self::read_q(&self.cfg, &self.cal, &chain, &mut self.q);
        // A second handle, so the cameras (on `self`) can be drawn while the world is locked.
        let world_handle = self.world.clone();
        let Ok(mut world) = world_handle.lock() else {
            return None;
        };
        if let Err(e) = world.step(&self.q, dt) {
            warn!("sim world step: {e}");
        }
        // A block between the jaws stops the gripper like a real one.
        if let Some((i, id)) = self.gripper {
            let stop = world
                .gripper_stop()
                .and_then(|o| self.cal.joints.get(i).map(|(_, c)| c.rad_to_ticks(o)));
            chain.set_obstacle(id, stop);
        }
        drop(chain);
        if info.in_episode {
            self.at_limit = self
                .cfg
                .joints
                .iter()
                .zip(&self.q)
                .filter(|(j, _)| !j.gripper)
                .any(|(j, q)| q - j.limits[0] < AT_LIMIT_RAD || j.limits[1] - q < AT_LIMIT_RAD);
            self.limit_ticks += u64::from(self.at_limit);
        }
        self.next_tick = info.tick + 1;
        self.draw_cameras(&world, self.next_tick, false);
        let features = world.features();
        let verdict = if info.in_episode && world.success() {
            self.successes += 1;
            Some(EpisodeOutcome::Success)
        } else if info.in_episode && world.timed_out() {
            Some(EpisodeOutcome::Failure)
        } else {
            None
        };
        drop(world);
        if let Some(h) = self.human.as_mut() {
            // The pad's rumble is how a person learns the robot wants help.
            if self
                .pad
                .take_rumbles()
                .contains(&RumblePattern::HelpRequested)
            {
                h.hear_help();
            }
            if info.in_episode && info.mode != Mode::EStop {
                match h.step(&self.q, &features, !info.demo) {
                    Ok(cmd) => {
                        self.pad.apply_state(&cmd.axes, &cmd.pressed);
                    }
                    Err(e) => warn!("simulated human: {e}"),
                }
            } else {
                self.pad.apply_state(&[], &[]);
            }
        }
        if let Some(h) = self.human.as_ref() {
            if let Ok(mut a) = self.asks.lock() {
                *a = h.ask_stats();
            }
        }
        verdict
    }

    /// Joint limits first (the arm pinned there is the runaway the policy must not have),
    /// then how far the task got.
    fn failure_mode(&self) -> Option<FailureMode> {
        let limit_ticks = (LIMIT_SECONDS / self.period).ceil() as u64;
        if self.at_limit || self.limit_ticks >= limit_ticks {
            return Some(FailureMode::JointLimits);
        }
        let trace = self.world.lock().ok()?.trace();
        Some(if trace.grasped {
            FailureMode::Dropped
        } else if trace.reached {
            FailureMode::NoGrasp
        } else {
            FailureMode::NeverReached
        })
    }
}
