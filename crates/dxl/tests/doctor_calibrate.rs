//! Doctor and calibration against the emulator.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use intervened_dxl::adapter::Sysfs;
use intervened_dxl::{doctor_with, CalibrateError, Calibrator, CheckStatus, DoctorOptions};
use intervened_robot::{Calibration, ServoModel};
use intervened_sim::specs_from_config;

fn opts() -> DoctorOptions {
    DoctorOptions {
        sysfs: Sysfs::at("/nonexistent-sysfs"),
        fix_latency: false,
        probe_bauds: false,
    }
}

#[test]
fn doctor_on_a_configured_chain_is_all_ok() {
    let r = rig();
    // Arm::open configures the modes; doctor then has nothing to complain about.
    drop(open_arm(&r));
    let cal = Calibration::identity(&r.cfg);
    let rep = doctor_with(&r.cfg, Some(&cal), &r.server.path(), &opts());
    let text = rep.to_string();
    assert!(!rep.has_failures(), "{text}");
    assert!(!rep.has_warnings(), "{text}");
    for j in &r.cfg.joints {
        for check in [
            "ping",
            "model",
            "firmware",
            "return delay",
            "operating mode",
            "limits",
        ] {
            assert!(
                rep.rows
                    .iter()
                    .any(|row| row.check == check && row.target.contains(&j.name)),
                "no {check} row for {}:\n{text}",
                j.name
            );
        }
    }
    // The table is aligned: the detail column starts at the same place on every line.
    let header = text.lines().next().unwrap();
    let col = header.find("DETAIL").unwrap();
    assert!(text
        .lines()
        .skip(1)
        .take(rep.rows.len())
        .all(|l| l.len() >= col));
}

#[test]
fn doctor_fresh_chain_warns_about_modes() {
    let r = rig();
    let rep = doctor_with(&r.cfg, None, &r.server.path(), &opts());
    assert!(!rep.has_failures(), "{rep}");
    // Factory position mode where the config wants extended position.
    let row = rep
        .rows
        .iter()
        .find(|row| row.check == "operating mode" && row.target == "id 1 shoulder_pan")
        .unwrap();
    assert_eq!(row.status, CheckStatus::Warn);
    assert!(rep
        .rows
        .iter()
        .any(|row| row.check == "calibration" && row.status == CheckStatus::Warn));
}

#[test]
fn doctor_names_wrong_model_and_missing_servo_with_fixes() {
    let cfg = koch();
    let mut specs = specs_from_config(&cfg);
    specs[2].model = ServoModel::Xl430W250;
    let r = rig_with(specs);
    r.chain.lock().unwrap().set_responding(5, false);
    let rep = doctor_with(&r.cfg, None, &r.server.path(), &opts());
    assert!(rep.has_failures());
    let model = rep
        .rows
        .iter()
        .find(|row| row.check == "model" && row.status == CheckStatus::Fail)
        .unwrap();
    assert_eq!(model.target, "id 3 elbow_flex");
    assert!(
        model.detail.contains("XL430-W250") && model.detail.contains("XL330-M288"),
        "{}",
        model.detail
    );
    assert!(model.fix.contains("config"));
    let ping = rep
        .rows
        .iter()
        .find(|row| row.check == "ping" && row.status == CheckStatus::Fail)
        .unwrap();
    assert_eq!(ping.target, "id 5 wrist_roll");
    assert!(!ping.fix.is_empty());
    let fails: Vec<_> = rep
        .rows
        .iter()
        .filter(|r| r.status == CheckStatus::Fail)
        .collect();
    assert_eq!(fails.len(), 2, "{rep}");
    assert!(rep.to_string().contains("2 failed"));
}

#[test]
fn doctor_missing_port_fails_with_fix() {
    let cfg = koch();
    let rep = doctor_with(
        &cfg,
        None,
        std::path::Path::new("/dev/does-not-exist-dxl"),
        &opts(),
    );
    assert!(rep.has_failures());
    assert_eq!(rep.rows[0].check, "adapter");
    assert!(rep.rows[0].fix.contains("udev"));
}

#[test]
fn calibration_from_scripted_motion_round_trips() {
    let r = rig();
    let mut arm = open_arm(&r);
    arm.set_torque(true).unwrap();
    let mut cal = Calibrator::new(&r.cfg);
    cal.begin(&mut arm).unwrap();
    for j in &r.cfg.joints {
        assert_eq!(r.chain.lock().unwrap().torque_enabled(j.id), Some(false));
    }
    let mid = |id: u8| 1800 + 50 * id as i32;
    {
        let mut c = r.chain.lock().unwrap();
        for j in &r.cfg.joints {
            c.set_present_position(j.id, mid(j.id));
        }
    }
    assert!(matches!(cal.finish(), Err(CalibrateError::NoMiddle)));
    let offsets = cal.record_middle(&mut arm).unwrap();
    for (i, j) in r.cfg.joints.iter().enumerate() {
        assert_eq!(offsets[i], 2048 - mid(j.id));
    }
    // Sweep: each joint i goes from mid - 300 - 10 i to mid + 400 + 10 i, in steps.
    let lo = |id: u8| mid(id) - 300 - 10 * id as i32;
    let hi = |id: u8| mid(id) + 400 + 10 * id as i32;
    for step in 0..=20 {
        {
            let mut c = r.chain.lock().unwrap();
            for j in &r.cfg.joints {
                let t = step as f64 / 20.0;
                let pos = if step <= 10 {
                    mid(j.id) + ((lo(j.id) - mid(j.id)) as f64 * t * 2.0).round() as i32
                } else {
                    lo(j.id) + ((hi(j.id) - lo(j.id)) as f64 * (t - 0.5) * 2.0).round() as i32
                };
                c.set_present_position(j.id, pos);
            }
        }
        let p = cal.sample(&mut arm).unwrap();
        // 100 ticks of travel count as swept: joint 1 gets there at step 4.
        assert_eq!(p.all_swept(), step >= 4, "step {step}: {p:?}");
    }
    let out = cal.finish().unwrap();
    for (i, j) in r.cfg.joints.iter().enumerate() {
        let c = out.joints[i].1;
        assert_eq!(c.id, j.id);
        assert_eq!(c.homing_offset, 2048 - mid(j.id));
        assert_eq!(c.range_min, lo(j.id) + c.homing_offset);
        assert_eq!(c.range_max, hi(j.id) + c.homing_offset);
        // The middle pose reads 0 rad under the new calibration.
        assert!(c.ticks_to_rad(mid(j.id)).abs() < 1e-12);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cal.json");
    out.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(Calibration::parse(&text, &path, &r.cfg).unwrap(), out);
    // The arm takes it and reads the middle pose as ~0 at the joint that sits there.
    arm.set_calibration(out).unwrap();
}

#[test]
fn calibration_refuses_an_unswept_joint_and_a_wrap() {
    let r = rig();
    let mut arm = open_arm(&r);
    let mut cal = Calibrator::new(&r.cfg);
    cal.begin(&mut arm).unwrap();
    cal.record_middle(&mut arm).unwrap();
    {
        let mut c = r.chain.lock().unwrap();
        for id in 1..=5 {
            c.set_present_position(id, position_of(id) + 500);
        }
    }
    cal.sample(&mut arm).unwrap();
    match cal.finish() {
        Err(CalibrateError::NotSwept { joints, .. }) => {
            assert_eq!(joints, vec!["gripper".to_string()])
        }
        other => panic!("{other:?}"),
    }
    // The gripper (current-based position, one turn) jumping across the wrap point.
    r.chain.lock().unwrap().set_present_position(6, 4000);
    cal.sample(&mut arm).unwrap();
    r.chain.lock().unwrap().set_present_position(6, 10);
    cal.sample(&mut arm).unwrap();
    assert!(
        matches!(cal.finish(), Err(CalibrateError::Wraps { ref joint, .. }) if joint == "gripper")
    );
}
