//! The scripted expert: a reactive pick-and-lift controller.
//!
//! It is a pure function of the measured joints and the task features (no memory), so it can
//! label any state a learner visits (DAgger) and the simulated human can follow it. Each call
//! picks a phase from the state:
//!
//! | phase | when | tip goal | gripper |
//! | --- | --- | --- | --- |
//! | `Lift` | the block is grasped | `lift_z_m` high, radius clamped to `lift_radius_m` | closed |
//! | `Close` | fingertips within `zone_xy_m`/`zone_z_m` of the block centre, jaws not yet shut | block centre | closed |
//! | `Descend` | within `align_xy_m` horizontally, jaws at least `open_ready_rad` open | block centre | open |
//! | `Approach` | otherwise (also retries after a missed grasp) | `hover_m` above the block (within `near_xy_m`: above the block at the current height) | open |
//!
//! The joint target moves the tip along a straight line: a "carrot" at most `carrot_m` from
//! the measured tip towards the goal, solved by IK with the tool pointing straight down and
//! the wrist roll at 0. If the carrot is out of reach it aims at the goal itself, and if that
//! fails too it holds the measured arm joints.

use tracing::trace;

use crate::arm::{ArmModel, PITCH_DOWN};
use crate::error::WorldError;
use crate::world::{WorldParams, FEATURE_NAMES};

/// Expert phases, in task order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Approach,
    Descend,
    Close,
    Lift,
}

impl Phase {
    /// Position in the task: a higher rank is further along.
    pub fn rank(self) -> u8 {
        match self {
            Phase::Approach => 0,
            Phase::Descend => 1,
            Phase::Close => 2,
            Phase::Lift => 3,
        }
    }
}

/// Expert tunables; defaults in brackets.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertParams {
    /// Hover height of the fingertip centre above the block centre before descending [4.5 cm].
    pub hover_m: f64,
    /// Furthest the target leads the measured tip [5 mm]: sets the pace (through 0.03 s
    /// servos at 50 Hz a whole pick takes about 1.3 s).
    pub carrot_m: f64,
    /// Gripper target when open [1.4 rad: 5.2 cm gap for a 3 cm block].
    pub open_rad: f64,
    /// Gripper target when closing [0.3 rad, past contact so the jaws squeeze].
    pub closed_rad: f64,
    /// Descend only with the jaws at least this open [1.2 rad].
    pub open_ready_rad: f64,
    /// Descend once the tip is this close to the block horizontally [8 mm].
    pub align_xy_m: f64,
    /// Within this horizontal distance a misaligned tip corrects sideways at its current
    /// height instead of returning to the hover height [2.5 cm].
    pub near_xy_m: f64,
    /// Close once the tip is within this of the block centre horizontally [6 mm] ...
    pub zone_xy_m: f64,
    /// ... and vertically [4 mm].
    pub zone_z_m: f64,
    /// Jaws below this without a grasp mean the grasp missed: reopen [contact - 0.15 rad].
    pub missed_below_rad: f64,
    /// Fingertip height to lift to [10 cm: the block's underside ends 8.5 cm up].
    pub lift_z_m: f64,
    /// Radius range of the lift point, kept well inside the reach [9 cm, 13 cm].
    pub lift_radius_m: [f64; 2],
}

impl ExpertParams {
    /// Defaults for a world with these parameters (the block size sets the contact opening).
    pub fn for_world(arm: &ArmModel, world: &WorldParams) -> Self {
        let contact = arm.contact_opening(world.block_size_m).unwrap_or(0.8);
        Self {
            hover_m: 0.045,
            carrot_m: 0.005,
            open_rad: 1.4,
            closed_rad: 0.3,
            open_ready_rad: 1.2,
            align_xy_m: 0.008,
            near_xy_m: 0.025,
            zone_xy_m: 0.006,
            zone_z_m: 0.004,
            missed_below_rad: contact - 0.15,
            lift_z_m: 0.10,
            lift_radius_m: [0.09, 0.13],
        }
    }
}

/// One decision of the expert.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub phase: Phase,
    /// Where the phase wants the fingertip centre, metres.
    pub goal: [f64; 3],
    /// Where the phase wants the gripper, rad.
    pub gripper_goal: f64,
    /// Joint targets for this tick, config order, within limits.
    pub target: Vec<f64>,
}

/// The scripted expert. See the module docs.
#[derive(Debug, Clone)]
pub struct Expert {
    arm: ArmModel,
    params: ExpertParams,
    world: WorldParams,
}

impl Expert {
    /// The expert for the default world.
    pub fn new(arm: &ArmModel) -> Self {
        let world = WorldParams::default();
        let params = ExpertParams::for_world(arm, &world);
        Self::with_params(arm, params, world)
    }

    pub fn with_params(arm: &ArmModel, params: ExpertParams, world: WorldParams) -> Self {
        Self {
            arm: arm.clone(),
            params,
            world,
        }
    }

    pub fn params(&self) -> &ExpertParams {
        &self.params
    }

    pub fn world_params(&self) -> &WorldParams {
        &self.world
    }

    pub fn arm(&self) -> &ArmModel {
        &self.arm
    }

    /// Joint targets (config order, within limits) for the measured joints `q` and the
    /// world's features `[block.x, block.y, block.z, block.grasped]`.
    pub fn act(&self, q: &[f64], features: &[f64]) -> Result<Vec<f64>, WorldError> {
        Ok(self.plan(q, features)?.target)
    }

    /// The phase, goal and joint targets for this state.
    pub fn plan(&self, q: &[f64], features: &[f64]) -> Result<Plan, WorldError> {
        let arm_q = self.arm.arm_angles(q)?;
        let opening = self.arm.gripper(q)?;
        let (block, grasped) = match features {
            [x, y, z, g] => ([*x, *y, *z], *g > 0.5),
            _ => {
                return Err(WorldError::FeatureCount {
                    expected: FEATURE_NAMES.len(),
                    got: features.len(),
                })
            }
        };
        if block.iter().any(|v| !v.is_finite()) {
            return Err(WorldError::NonFinite {
                what: "block position",
            });
        }
        let p = &self.params;
        let tip = self.arm.fk_arm(&arm_q).pos;
        let dxy = (tip[0] - block[0]).hypot(tip[1] - block[1]);
        let dz = tip[2] - block[2];
        let (phase, goal, gripper_goal) = if grasped {
            let r = block[0].hypot(block[1]);
            let bearing = block[1].atan2(block[0]);
            let rl = r.clamp(p.lift_radius_m[0], p.lift_radius_m[1]);
            (
                Phase::Lift,
                [rl * bearing.cos(), rl * bearing.sin(), p.lift_z_m],
                p.closed_rad,
            )
        } else if dxy <= p.zone_xy_m && dz.abs() <= p.zone_z_m && opening > p.missed_below_rad {
            (Phase::Close, block, p.closed_rad)
        } else if dxy <= p.align_xy_m && opening >= p.open_ready_rad {
            (Phase::Descend, block, p.open_rad)
        } else {
            // Far away: come in at hover height. Close by: fix the horizontal error at the
            // current height (within the hover band), so a small miss does not send the tip
            // all the way up and down again.
            let hover = block[2] + p.hover_m;
            let z = if dxy <= p.near_xy_m {
                tip[2].clamp(block[2] + p.zone_z_m, hover)
            } else {
                hover
            };
            (Phase::Approach, [block[0], block[1], z], p.open_rad)
        };
        let arm_target = self.carrot_ik(tip, goal).unwrap_or(arm_q);
        let target = self.arm.compose(arm_target, 0.0, gripper_goal, q);
        trace!(?phase, ?goal, "expert plan");
        Ok(Plan {
            phase,
            goal,
            gripper_goal,
            target,
        })
    }

    /// IK of the point at most `carrot_m` from `tip` towards `goal`, else of `goal`.
    fn carrot_ik(&self, tip: [f64; 3], goal: [f64; 3]) -> Option<[f64; 4]> {
        let d = [goal[0] - tip[0], goal[1] - tip[1], goal[2] - tip[2]];
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let s = if n > self.params.carrot_m {
            self.params.carrot_m / n
        } else {
            1.0
        };
        let carrot = [tip[0] + d[0] * s, tip[1] + d[1] * s, tip[2] + d[2] * s];
        match self.arm.ik(carrot, PITCH_DOWN) {
            Ok(a) => Some(a),
            Err(e) => {
                trace!(%e, "carrot out of reach, aiming at the goal");
                self.arm.ik(goal, PITCH_DOWN).ok()
            }
        }
    }
}
