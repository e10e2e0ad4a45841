//! The scene of the simulated arm-and-block world (`intervened-world`).
//!
//! The conversion lives here, in the camera crate behind its `sim` feature, so that the
//! dependency points from the adapter to the simulator (camera -> world) and the world crate,
//! which the trainer and the daemon's sim rig also use, stays free of anything visual.
//!
//! The world does not store joint angles (the daemon hands it measured ones each tick), so the
//! scene is built from the world (block, arm geometry) plus the same measured angles.
//!
//! What is drawn, all from [`ArmModel`]'s kinematics (see `intervened_world::arm` for the frame
//! and signs): a base box turned with the pan; capsules for the upper arm (shoulder to elbow),
//! the forearm (elbow to wrist) and the wrist (wrist to the jaws' hinge, [`FINGER_M`] before
//! the fingertip centre); two finger capsules from the hinge to the fingertips, which sit
//! `jaw_gap / 2` either side of the fingertip centre across the jaw plane (the jaws open across
//! the arm's plane at zero wrist roll, and turn with the roll); the block as a box at its centre.

use intervened_world::{ArmModel, World, FINGER_M};

use super::render::{Primitive, Scene, Shape};
use crate::error::CameraError;

/// Colours of the world's parts.
pub mod colors {
    pub const BASE: [u8; 3] = [70, 72, 80];
    pub const UPPER_ARM: [u8; 3] = [225, 225, 220];
    pub const FOREARM: [u8; 3] = [190, 195, 205];
    pub const WRIST: [u8; 3] = [120, 125, 135];
    pub const FINGER: [u8; 3] = [45, 45, 50];
    pub const BLOCK: [u8; 3] = [210, 40, 35];
}

/// Radii of the drawn links, metres.
pub const UPPER_ARM_RADIUS_M: f32 = 0.012;
pub const FOREARM_RADIUS_M: f32 = 0.011;
pub const WRIST_RADIUS_M: f32 = 0.010;
pub const FINGER_RADIUS_M: f32 = 0.004;
/// Half the base box's footprint side, metres.
pub const BASE_HALF_M: f32 = 0.025;

/// Joint positions of the drawn arm, world frame, metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArmPoints {
    pub shoulder: [f64; 3],
    pub elbow: [f64; 3],
    pub wrist: [f64; 3],
    /// Where the jaws are hinged.
    pub hinge: [f64; 3],
    /// Fingertip centre (the world's [`intervened_world::TipPose::pos`]).
    pub tip: [f64; 3],
    /// Fingertips of the two jaws.
    pub jaw_tips: [[f64; 3]; 2],
}

fn lin(a: [f64; 3], s: f64, d: [f64; 3]) -> [f64; 3] {
    [a[0] + s * d[0], a[1] + s * d[1], a[2] + s * d[2]]
}

fn f32s(a: [f64; 3]) -> [f32; 3] {
    [a[0] as f32, a[1] as f32, a[2] as f32]
}

/// The arm's joint positions for the config-order joint vector `q`.
pub fn arm_points(arm: &ArmModel, q: &[f64]) -> Result<ArmPoints, CameraError> {
    let bad = |e: intervened_world::WorldError| CameraError::BadScene {
        device: "sim".into(),
        problem: e.to_string(),
    };
    let [pan, q1, q2, q3] = arm.arm_angles(q).map_err(bad)?;
    let opening = arm.gripper(q).map_err(bad)?;
    let roll = arm
        .index()
        .wrist_roll
        .and_then(|i| q.get(i).copied())
        .unwrap_or(0.0);
    let [h0, l1, l2, l3] = arm.links();
    let radial = [pan.cos(), pan.sin(), 0.0];
    let lateral = [-pan.sin(), pan.cos(), 0.0];
    let plane = |r: f64, up: f64| [r * radial[0], r * radial[1], up];
    let s12 = q1 + q2;
    let s123 = s12 + q3;
    let shoulder = [0.0, 0.0, h0];
    let elbow = lin(shoulder, 1.0, plane(l1 * q1.sin(), l1 * q1.cos()));
    let wrist = lin(elbow, 1.0, plane(l2 * s12.cos(), -l2 * s12.sin()));
    let tool = plane(-s123.sin(), -s123.cos());
    let tip = lin(wrist, l3, tool);
    let hinge = lin(tip, -FINGER_M.min(l3), tool);
    // The jaws open across the arm plane at zero roll; the roll turns them about the tool axis.
    // `lateral` is perpendicular to `tool` (which lies in the arm plane).
    let t_x_l = [
        tool[1] * lateral[2] - tool[2] * lateral[1],
        tool[2] * lateral[0] - tool[0] * lateral[2],
        tool[0] * lateral[1] - tool[1] * lateral[0],
    ];
    let across: [f64; 3] = std::array::from_fn(|k| lateral[k] * roll.cos() + t_x_l[k] * roll.sin());
    let half_gap = arm.jaw_gap(opening) / 2.0;
    Ok(ArmPoints {
        shoulder,
        elbow,
        wrist,
        hinge,
        tip,
        jaw_tips: [lin(tip, half_gap, across), lin(tip, -half_gap, across)],
    })
}

/// Replaces `scene.primitives` with the world's arm at `q` (config order, radians) and its
/// block; ground, sky and light are left as they are. Reuses the vector's allocation.
pub fn fill_scene(world: &World, q: &[f64], scene: &mut Scene) -> Result<(), CameraError> {
    let p = arm_points(world.arm(), q)?;
    let block = world.block();
    if block.iter().any(|v| !v.is_finite()) {
        return Err(CameraError::BadScene {
            device: "sim".into(),
            problem: format!("the block's position {block:?} is not finite"),
        });
    }
    let pan = world.arm().arm_angles(q).map(|a| a[0]).unwrap_or(0.0);
    let (s, c) = (pan.sin() as f32, pan.cos() as f32);
    let h0 = p.shoulder[2] as f32;
    let half_block = (world.params().block_size_m / 2.0) as f32;
    let prims = &mut scene.primitives;
    prims.clear();
    prims.push(Primitive {
        shape: Shape::Cuboid {
            center: [0.0, 0.0, h0 / 2.0],
            half: [BASE_HALF_M, BASE_HALF_M, h0 / 2.0],
            axes: [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]],
        },
        color: colors::BASE,
    });
    let capsule = |a: [f64; 3], b: [f64; 3], radius: f32, color: [u8; 3]| Primitive {
        shape: Shape::Capsule {
            a: f32s(a),
            b: f32s(b),
            radius,
        },
        color,
    };
    prims.push(capsule(
        p.shoulder,
        p.elbow,
        UPPER_ARM_RADIUS_M,
        colors::UPPER_ARM,
    ));
    prims.push(capsule(p.elbow, p.wrist, FOREARM_RADIUS_M, colors::FOREARM));
    prims.push(capsule(p.wrist, p.hinge, WRIST_RADIUS_M, colors::WRIST));
    for tip in p.jaw_tips {
        prims.push(capsule(p.hinge, tip, FINGER_RADIUS_M, colors::FINGER));
    }
    prims.push(Primitive {
        shape: Shape::aabb(f32s(block), [half_block; 3]),
        color: colors::BLOCK,
    });
    Ok(())
}

/// The world's scene with the arm at `q`: [`fill_scene`] into a [`Scene::default`].
pub fn scene_from_world(world: &World, q: &[f64]) -> Result<Scene, CameraError> {
    let mut scene = Scene::default();
    fill_scene(world, q, &mut scene)?;
    Ok(scene)
}
