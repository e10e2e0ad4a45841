//! The pick-a-block world: a cube on the table, grasp and release, success.
//!
//! The world never talks to servos: each tick the daemon hands it the measured joint angles
//! (config order, radians) and the time step. Physics is deliberately simple and exactly
//! deterministic:
//! - The block rests on the table (`z` of its centre = half its size) until grasped.
//! - **Grasp**: the jaws must first be around the block (fingertip centre within
//!   `grasp_tolerance_xy_m` horizontally and `grasp_tolerance_z_m` vertically of the block
//!   centre, with the jaws open wider than the block: "armed"), then close to within
//!   `grasp_margin_rad` of the contact opening. Closing before arriving, or descending on a
//!   closed gripper, grasps nothing. The jaw roll and tool pitch are not checked.
//! - A grasped block keeps its offset from the fingertip centre (it cannot go below the table).
//! - **Release**: opening past contact + `release_margin_rad` drops the block straight down
//!   onto the table in the same tick (hysteresis against chatter).
//! - **Success**: the grasped block's underside at least `success_lift_m` above the table
//!   within `episode_seconds`; latched for the episode.
//! - The arm itself passes through the table and the block (no collisions are modelled).

use std::sync::{Arc, Mutex};

use intervened_robot::{RobotConfig, SensorError, SensorSource};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::debug;

use crate::arm::{ArmModel, TipPose};
use crate::error::WorldError;

/// Names of [`World::features`], in order.
pub const FEATURE_NAMES: [&str; 4] = ["block.x", "block.y", "block.z", "block.grasped"];

/// Tunables of the world; [`WorldParams::default`] is what the tests and the expert assume.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldParams {
    /// Cube edge, metres (3 cm).
    pub block_size_m: f64,
    /// Spawn region, an annular sector on the table: block-centre distance from the base axis
    /// (`[0.10, 0.16]` m) ...
    pub spawn_radius_m: [f64; 2],
    /// ... and bearing from `+x` (`[-0.6, 0.6]` rad). Both sampled uniformly.
    pub spawn_yaw_rad: [f64; 2],
    /// Horizontal distance fingertip centre - block centre within which the jaws surround the
    /// block (12 mm).
    pub grasp_tolerance_xy_m: f64,
    /// Vertical distance within which the jaws surround the block (12 mm).
    pub grasp_tolerance_z_m: f64,
    /// A grasp completes when the opening falls below contact + this (0.05 rad).
    pub grasp_margin_rad: f64,
    /// A grasped block is released when the opening rises above contact + this (0.15 rad).
    pub release_margin_rad: f64,
    /// Lift of the block's underside above the table that counts as success (5 cm).
    pub success_lift_m: f64,
}

impl Default for WorldParams {
    fn default() -> Self {
        Self {
            block_size_m: 0.03,
            spawn_radius_m: [0.10, 0.16],
            spawn_yaw_rad: [-0.6, 0.6],
            grasp_tolerance_xy_m: 0.012,
            grasp_tolerance_z_m: 0.012,
            grasp_margin_rad: 0.05,
            release_margin_rad: 0.15,
            success_lift_m: 0.05,
        }
    }
}

impl WorldParams {
    /// Height of the block centre when it rests on the table.
    pub fn rest_z(&self) -> f64 {
        self.block_size_m / 2.0
    }

    /// Whether a block centre at height `z` counts as lifted.
    pub fn lifted(&self, z: f64) -> bool {
        z - self.rest_z() >= self.success_lift_m
    }
}

/// What happened during one [`World::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepEvents {
    pub grasped: bool,
    pub released: bool,
    /// Success was reached on this tick.
    pub succeeded: bool,
}

/// The simulated world. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct World {
    arm: ArmModel,
    params: WorldParams,
    episode_seconds: f64,
    contact: f64,
    episode_seed: u64,
    block: [f64; 3],
    grasped: bool,
    /// Block centre minus fingertip centre, fixed at the grasp.
    offset: [f64; 3],
    /// The open jaws surround the block (last tick).
    armed: bool,
    elapsed: f64,
    ticks: u64,
    success: bool,
    tip: Option<TipPose>,
    /// The open jaws have surrounded the block at least once this episode.
    reached: bool,
    /// The block has been grasped at least once this episode.
    ever_grasped: bool,
}

/// What happened in an episode, for telling *why* it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpisodeTrace {
    /// The jaws were around the block (within the grasp tolerances) at least once.
    pub reached: bool,
    /// The block was grasped at least once.
    pub grasped: bool,
    /// The block is held now.
    pub holding: bool,
    pub success: bool,
}

impl World {
    /// A world for this config with [`WorldParams::default`], reset with `[sim] seed`.
    pub fn new(cfg: &RobotConfig) -> Result<Self, WorldError> {
        Self::with_params(cfg, WorldParams::default())
    }

    pub fn with_params(cfg: &RobotConfig, params: WorldParams) -> Result<Self, WorldError> {
        let arm = ArmModel::from_config(cfg)?;
        let contact = arm
            .contact_opening(params.block_size_m)
            .ok_or(WorldError::BadParam {
                name: "block_size_m",
                problem: format!(
                    "a {} m block does not fit between the open jaws ({} m)",
                    params.block_size_m,
                    arm.jaw_gap(arm.gripper_limits()[1])
                ),
            })?;
        let ranges_ok = params.spawn_radius_m[0] <= params.spawn_radius_m[1]
            && params.spawn_yaw_rad[0] <= params.spawn_yaw_rad[1]
            && params.spawn_radius_m[0] > 0.0;
        if !ranges_ok {
            return Err(WorldError::BadParam {
                name: "spawn_radius_m/spawn_yaw_rad",
                problem: "ranges must be [min, max] with a positive radius".into(),
            });
        }
        if !(cfg.sim.episode_seconds.is_finite() && cfg.sim.episode_seconds > 0.0) {
            return Err(WorldError::BadParam {
                name: "sim.episode_seconds",
                problem: format!("{} is not positive", cfg.sim.episode_seconds),
            });
        }
        let mut w = Self {
            arm,
            params,
            episode_seconds: cfg.sim.episode_seconds,
            contact,
            episode_seed: cfg.sim.seed,
            block: [0.0; 3],
            grasped: false,
            offset: [0.0; 3],
            armed: false,
            elapsed: 0.0,
            ticks: 0,
            success: false,
            tip: None,
            reached: false,
            ever_grasped: false,
        };
        w.reset(cfg.sim.seed);
        Ok(w)
    }

    /// Starts a new episode: places the block at a random spot of the spawn region (ChaCha8
    /// seeded with `episode_seed`) and clears grasp, clock and success.
    pub fn reset(&mut self, episode_seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(episode_seed);
        let [r0, r1] = self.params.spawn_radius_m;
        let [y0, y1] = self.params.spawn_yaw_rad;
        let r = if r1 > r0 { rng.gen_range(r0..r1) } else { r0 };
        let yaw = if y1 > y0 { rng.gen_range(y0..y1) } else { y0 };
        self.episode_seed = episode_seed;
        self.block = [r * yaw.cos(), r * yaw.sin(), self.params.rest_z()];
        self.grasped = false;
        self.offset = [0.0; 3];
        self.armed = false;
        self.elapsed = 0.0;
        self.ticks = 0;
        self.success = false;
        self.tip = None;
        self.reached = false;
        self.ever_grasped = false;
        debug!(episode_seed, block = ?self.block, "world reset");
    }

    /// Puts the block on the table at `(x, y)`, ungrasped (tests, scripted scenes).
    pub fn place_block(&mut self, x: f64, y: f64) {
        self.block = [x, y, self.params.rest_z()];
        self.grasped = false;
        self.armed = false;
    }

    /// Advances the world by `dt` seconds with the measured joint angles (config order).
    pub fn step(&mut self, q_measured: &[f64], dt: f64) -> Result<StepEvents, WorldError> {
        if !(dt.is_finite() && dt > 0.0) {
            return Err(WorldError::BadTimeStep { dt });
        }
        let tip = self.arm.fk(q_measured)?;
        let opening = self.arm.gripper(q_measured)?;
        let mut ev = StepEvents::default();
        let p = &self.params;
        if self.grasped {
            if opening > self.contact + p.release_margin_rad {
                self.grasped = false;
                self.armed = false;
                self.block[2] = p.rest_z();
                ev.released = true;
                debug!(tick = self.ticks, block = ?self.block, "block released");
            } else {
                self.block = std::array::from_fn(|k| tip.pos[k] + self.offset[k]);
                self.block[2] = self.block[2].max(p.rest_z());
            }
        } else {
            let dx = tip.pos[0] - self.block[0];
            let dy = tip.pos[1] - self.block[1];
            let around = dx.hypot(dy) <= p.grasp_tolerance_xy_m
                && (tip.pos[2] - self.block[2]).abs() <= p.grasp_tolerance_z_m;
            let closed_on = opening <= self.contact + p.grasp_margin_rad;
            self.reached |= around;
            if around && self.armed && closed_on {
                self.grasped = true;
                self.ever_grasped = true;
                self.offset = std::array::from_fn(|k| self.block[k] - tip.pos[k]);
                ev.grasped = true;
                debug!(tick = self.ticks, block = ?self.block, "block grasped");
            }
            self.armed = around && !closed_on;
        }
        self.tip = Some(tip);
        self.elapsed += dt;
        self.ticks += 1;
        if !self.success
            && self.grasped
            && p.lifted(self.block[2])
            && !self.timed_out_at(self.elapsed - dt)
        {
            self.success = true;
            ev.succeeded = true;
            debug!(tick = self.ticks, elapsed = self.elapsed, "episode success");
        }
        Ok(ev)
    }

    fn timed_out_at(&self, t: f64) -> bool {
        // Tolerance: the clock is a sum of float steps.
        t >= self.episode_seconds - 1e-9
    }

    /// `[block.x, block.y, block.z, block.grasped (0 or 1)]`, see [`FEATURE_NAMES`].
    pub fn features(&self) -> [f64; 4] {
        [
            self.block[0],
            self.block[1],
            self.block[2],
            if self.grasped { 1.0 } else { 0.0 },
        ]
    }

    pub fn feature_names() -> [&'static str; 4] {
        FEATURE_NAMES
    }

    /// The block lifted far enough within the time limit (latched).
    pub fn success(&self) -> bool {
        self.success
    }

    /// The episode so far: reached, grasped, holding, succeeded.
    pub fn trace(&self) -> EpisodeTrace {
        EpisodeTrace {
            reached: self.reached,
            grasped: self.ever_grasped,
            holding: self.grasped,
            success: self.success,
        }
    }

    /// Seconds since the last reset.
    pub fn elapsed(&self) -> f64 {
        self.elapsed
    }

    /// Ticks since the last reset.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The episode's time limit has passed.
    pub fn timed_out(&self) -> bool {
        self.timed_out_at(self.elapsed)
    }

    /// The episode is over: success or time out.
    pub fn done(&self) -> bool {
        self.success || self.timed_out()
    }

    /// The gripper opening (rad) at which closing jaws meet the block, while the block is
    /// between open jaws or held; `None` otherwise. The daemon may stop the gripper servo here
    /// so the measured opening behaves like jaws squeezing a real block.
    pub fn gripper_stop(&self) -> Option<f64> {
        (self.armed || self.grasped).then_some(self.contact)
    }

    /// The opening at which the jaws touch the block, whether or not it is between them.
    pub fn contact_opening(&self) -> f64 {
        self.contact
    }

    pub fn block(&self) -> [f64; 3] {
        self.block
    }

    pub fn grasped(&self) -> bool {
        self.grasped
    }

    /// Fingertip pose at the last step.
    pub fn tip(&self) -> Option<TipPose> {
        self.tip
    }

    pub fn arm(&self) -> &ArmModel {
        &self.arm
    }

    pub fn params(&self) -> &WorldParams {
        &self.params
    }

    pub fn episode_seconds(&self) -> f64 {
        self.episode_seconds
    }

    pub fn episode_seed(&self) -> u64 {
        self.episode_seed
    }
}

/// The world's task features as a [`SensorSource`], sharing the world with whoever steps it.
#[derive(Debug, Clone)]
pub struct WorldSensor {
    world: Arc<Mutex<World>>,
    names: Vec<String>,
}

impl WorldSensor {
    pub fn new(world: Arc<Mutex<World>>) -> Self {
        Self {
            world,
            names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl SensorSource for WorldSensor {
    fn names(&self) -> &[String] {
        &self.names
    }

    fn read(&mut self, out: &mut [f64]) -> Result<(), SensorError> {
        if out.len() != self.names.len() {
            return Err(SensorError::Unavailable {
                name: "world".into(),
                message: format!(
                    "asked for {} values, the world has {}",
                    out.len(),
                    self.names.len()
                ),
            });
        }
        // Uncontended in practice: the world is stepped by the same control thread.
        let w = self.world.lock().map_err(|_| SensorError::Unavailable {
            name: "world".into(),
            message: "world lock poisoned by a panic elsewhere".into(),
        })?;
        out.copy_from_slice(&w.features());
        Ok(())
    }
}
