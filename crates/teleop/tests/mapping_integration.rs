// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{joint, koch, koch_controller, tick, DT};
use intervened_robot::{Axis, Button};
use intervened_teleop::{
    ControlOwner, GamepadEvent, GamepadEventKind, Intent, Mapping, PadId, PadState,
    TeleopController, TeleopError, TeleopIntegrator, VirtualGamepad,
};

const TOL: f64 = 1e-12;

#[test]
fn takeover_starts_at_measured_exactly_then_moves_at_mapped_speed() {
    let cfg = koch();
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    pad.connect();
    // Deflect a stick *before* taking over: it must not move anything on the takeover tick.
    pad.set_axis(Axis::LeftStickX, 1.0);
    let q = [0.123_456_789, -0.4, 1.1, -0.7, 0.25, 0.6];
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.owner, ControlOwner::Policy);
    assert!(out.human_goal.is_none());

    pad.press(Button::RightBumper);
    // The measured position at the takeover tick differs from the one before: the goal
    // must follow what the arm reads *now*.
    let q_take = [0.2, -0.41, 1.05, -0.69, 0.3, 0.55];
    let out = tick(&mut c, &pad, &q_take);
    assert_eq!(out.intents, vec![Intent::Takeover]);
    assert_eq!(out.human_goal.as_deref(), Some(&q_take[..]), "zero jump");

    // Then shoulder_pan moves at 1.0 rad/s (koch mapping), the rest stays.
    let pan = joint(&cfg, "shoulder_pan");
    let mut expect = q_take;
    for k in 1..=10 {
        // The arm lags behind; goals integrate from the goal, not the noisy measurement.
        let out = tick(&mut c, &pad, &q);
        expect[pan] += 1.0 * DT;
        let g = out.human_goal.unwrap();
        for (j, (&gj, &ej)) in g.iter().zip(&expect).enumerate() {
            assert!((gj - ej).abs() < TOL, "tick {k} joint {j}: {gj} vs {ej}");
        }
    }
    assert!((expect[pan] - (0.2 + 10.0 * DT)).abs() < TOL);

    // Release: handback, no more human goals; a second takeover starts from the new
    // measurement, not from the old goal.
    pad.release(Button::RightBumper);
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.intents, vec![Intent::Handback]);
    assert!(out.human_goal.is_none());
    let q2 = [-0.5, 0.5, -0.5, 0.5, -0.5, 0.5];
    pad.press(Button::RightBumper);
    let out = tick(&mut c, &pad, &q2);
    assert_eq!(out.human_goal.as_deref(), Some(&q2[..]));
}

#[test]
fn goals_clamp_at_joint_limits_and_never_jump_from_outside() {
    let mut integ = TeleopIntegrator::new(vec![[-1.0, 1.0], [0.0, 1.5]]).unwrap();
    assert!(integ.goal().is_none());
    assert!(matches!(
        integ.step(&[1.0, 1.0], DT),
        Err(TeleopError::NotArmed)
    ));
    // Joint 1 measured outside its range: the goal starts there (no snap).
    assert_eq!(integ.reset_to(&[0.99, 1.6]).unwrap(), &[0.99, 1.6]);
    let g = integ.step(&[1.0, 1.0], 0.1).unwrap().to_vec();
    assert_eq!(g[0], 1.0, "clamped at max");
    assert_eq!(g[1], 1.6, "cannot move further outside");
    let g = integ.step(&[-1.0, -1.0], 0.05).unwrap().to_vec();
    assert!((g[0] - 0.95).abs() < TOL);
    assert!((g[1] - 1.55).abs() < TOL, "may move back towards the range");
    // NaN velocity does not move; bad lengths and NaN positions are errors.
    let g = integ.step(&[f64::NAN, 0.0], 0.1).unwrap().to_vec();
    assert!((g[0] - 0.95).abs() < TOL);
    assert!(integ.step(&[0.0], 0.1).is_err());
    assert!(integ.reset_to(&[0.0, f64::NAN]).is_err());
    assert!(TeleopIntegrator::new(vec![[1.0, -1.0]]).is_err());
}

#[test]
fn deadzone_is_radial_on_sticks_and_rescaled() {
    let cfg = koch();
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    let q = [0.0; 6];
    let (pan, lift) = (joint(&cfg, "shoulder_pan"), joint(&cfg, "shoulder_lift"));
    pad.connect();
    pad.press(Button::RightBumper);
    tick(&mut c, &pad, &q);

    // Inside the 0.1 circle: nothing moves, and goals stay put.
    pad.apply_state(
        &[(Axis::LeftStickX, 0.07), (Axis::LeftStickY, 0.07)],
        &[Button::RightBumper],
    );
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.velocities[pan], 0.0);
    assert_eq!(out.velocities[lift], 0.0);
    assert_eq!(out.human_goal.as_deref(), Some(&q[..]));

    // Each axis alone is within 0.1 but the stick is out of the circle: radial moves.
    pad.apply_state(
        &[(Axis::LeftStickX, 0.09), (Axis::LeftStickY, 0.09)],
        &[Button::RightBumper],
    );
    let out = tick(&mut c, &pad, &q);
    assert!(out.velocities[pan] > 0.0 && out.velocities[lift] > 0.0);
    // Direction kept (45 degrees) and the magnitude rescaled from 0.1..1 to 0..1.
    let m = 0.09f64.hypot(0.09);
    let want = (m - 0.1) / 0.9 / m * 0.09;
    assert!((out.velocities[pan] - want).abs() < TOL);
    assert!((out.velocities[lift] - want).abs() < TOL);

    // Full deflection reads full speed.
    pad.apply_state(&[(Axis::LeftStickX, -1.0)], &[Button::RightBumper]);
    let out = tick(&mut c, &pad, &q);
    assert!((out.velocities[pan] + 1.0).abs() < TOL);
    assert_eq!(out.velocities[lift], 0.0);

    // Triggers: a resting trigger reading 0.05 does not creep the gripper.
    let grip = joint(&cfg, "gripper");
    pad.apply_state(&[(Axis::RightTrigger, 0.05)], &[Button::RightBumper]);
    assert_eq!(tick(&mut c, &pad, &q).velocities[grip], 0.0);
}

#[test]
fn fine_mode_scales_speeds() {
    let cfg = koch();
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    let q = [0.0; 6];
    let elbow = joint(&cfg, "elbow_flex");
    pad.connect();
    pad.apply_state(&[(Axis::RightStickY, 1.0)], &[Button::RightBumper]);
    tick(&mut c, &pad, &q);
    let fast = tick(&mut c, &pad, &q);
    assert!((fast.velocities[elbow] - 1.2).abs() < TOL);
    let g0 = fast.human_goal.unwrap()[elbow];

    pad.apply_state(
        &[(Axis::RightStickY, 1.0)],
        &[Button::RightBumper, Button::LeftBumper],
    );
    let fine = tick(&mut c, &pad, &q);
    assert!((fine.velocities[elbow] - 1.2 * 0.25).abs() < TOL);
    let g1 = fine.human_goal.unwrap()[elbow];
    assert!((g1 - g0 - 1.2 * 0.25 * DT).abs() < TOL);
}

#[test]
fn two_triggers_drive_the_gripper_and_dpad_drives_the_wrist() {
    let cfg = koch();
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    let q = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5];
    let (grip, wrist) = (joint(&cfg, "gripper"), joint(&cfg, "wrist_flex"));
    pad.connect();
    pad.apply_state(&[(Axis::RightTrigger, 1.0)], &[Button::RightBumper]);
    assert!((tick(&mut c, &pad, &q).velocities[grip] - 2.0).abs() < TOL);
    pad.apply_state(
        &[(Axis::RightTrigger, 1.0), (Axis::LeftTrigger, 1.0)],
        &[Button::RightBumper],
    );
    assert_eq!(tick(&mut c, &pad, &q).velocities[grip], 0.0);
    pad.apply_state(&[(Axis::LeftTrigger, 0.55)], &[Button::RightBumper]);
    let v = tick(&mut c, &pad, &q).velocities[grip];
    assert!((v - (-2.0 * (0.55 - 0.1) / 0.9)).abs() < TOL, "{v}");
    pad.apply_state(&[(Axis::DpadY, -1.0)], &[Button::RightBumper]);
    assert!((tick(&mut c, &pad, &q).velocities[wrist] + 1.0).abs() < TOL);
}

#[test]
fn speed_scale_applies_and_unknown_joints_are_refused() {
    let mut cfg = koch();
    cfg.teleop.speed_scale = 2.0;
    let names = cfg.joint_names();
    let m = Mapping::new(&cfg.teleop, &names).unwrap();
    let mut st = PadState::new();
    let ev = |k| GamepadEvent::new(PadId(3), k);
    st.apply(&ev(GamepadEventKind::Connected { name: "x".into() }));
    st.apply(&ev(GamepadEventKind::AxisChanged(Axis::RightStickX, 1.0)));
    let v = m.velocities(&st);
    assert!((v[joint(&cfg, "wrist_roll")] - 3.0).abs() < TOL);

    cfg.teleop.axes[0].joint = "elbow".into();
    let err = Mapping::new(&cfg.teleop, &names).unwrap_err();
    assert!(err.to_string().contains("elbow"), "{err}");
}

#[test]
fn mapping_table_lists_axes_and_buttons() {
    let c: TeleopController = koch_controller();
    let table = c.mapping().to_string();
    for needle in [
        "left_stick_x     shoulder_pan        +1.00",
        "left_trigger     gripper             -2.00",
        "right_bumper     takeover (hold to drive",
        "left_bumper      fine mode while held (speeds x0.25)",
        "start            start episode",
        "select+north     clear e-stop: hold select, then press north",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
}

#[test]
fn bad_measurement_while_driving_yields_no_goal_and_recovers() {
    let mut c = koch_controller();
    let pad = VirtualGamepad::new();
    pad.connect();
    pad.press(Button::RightBumper);
    let out = tick(&mut c, &pad, &[0.0, f64::NAN, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(out.owner, ControlOwner::Human);
    assert!(out.human_goal.is_none());
    assert!(out.goal_error.is_some());
    let q = [0.1; 6];
    let out = tick(&mut c, &pad, &q);
    assert_eq!(out.human_goal.as_deref(), Some(&q[..]));
}
