//! Servo dynamics: first-order tracking, velocity cap, torque off, limits, obstacles.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{koch_specs, transact, wr};
use intervened_sim::packet::inst;
use intervened_sim::table::addr;
use intervened_sim::{Chain, Dynamics};

fn chain(tau: f64, vmax: f64) -> Chain {
    Chain::new(
        koch_specs(),
        Dynamics {
            time_constant_s: tau,
            max_velocity_rad_s: vmax,
        },
    )
}

fn torque(c: &mut Chain, id: u8, on: bool) {
    let r = transact(
        c,
        id,
        inst::WRITE,
        &wr(addr::TORQUE_ENABLE, &[u8::from(on)]),
    );
    assert_eq!(r[0].status_error(), Some(0));
}

fn goal(c: &mut Chain, id: u8, g: i32) -> u8 {
    let r = transact(
        c,
        id,
        inst::WRITE,
        &wr(addr::GOAL_POSITION, &g.to_le_bytes()),
    );
    r[0].status_error().unwrap()
}

fn run(c: &mut Chain, seconds: f64, dt: f64) {
    for _ in 0..(seconds / dt).round() as usize {
        c.advance(dt);
    }
}

#[test]
fn first_order_response_with_time_constant() {
    // Fast velocity cap so only the time constant shapes the response.
    let mut c = chain(0.1, 1000.0);
    c.set_present_position(1, 1000);
    torque(&mut c, 1, true);
    // Torque-on holds where the shaft is.
    assert_eq!(c.goal_position(1), Some(1000));
    assert_eq!(goal(&mut c, 1, 2000), 0);
    run(&mut c, 0.1, 0.001);
    // After one time constant: 1 - 1/e = 63.2 % of the step.
    let p = c.present_position(1).unwrap();
    assert!((1625..=1640).contains(&p), "after tau: {p}");
    run(&mut c, 0.5, 0.001);
    assert!((c.present_position(1).unwrap() - 2000).abs() <= 2);
    // The result does not depend on the step size.
    let mut c2 = chain(0.1, 1000.0);
    c2.set_present_position(1, 1000);
    torque(&mut c2, 1, true);
    goal(&mut c2, 1, 2000);
    run(&mut c2, 0.1, 0.02);
    assert!((c2.present_position(1).unwrap() - 1632).abs() <= 2);
}

#[test]
fn velocity_cap_and_reported_velocity() {
    // 1 rad/s = 651.9 ticks/s, = 1/(2 pi) turn/s = 9.549 rpm = 41.7 units of 0.229 rpm.
    let mut c = chain(0.001, 1.0);
    c.set_present_position(3, 0);
    torque(&mut c, 3, true);
    goal(&mut c, 3, 4000);
    run(&mut c, 1.0, 0.01);
    let p = c.present_position(3).unwrap();
    assert!((645..=658).contains(&p), "capped travel in 1 s: {p}");
    let v = c.present_velocity(3).unwrap();
    assert!((41..=42).contains(&v), "velocity units: {v}");
    assert_eq!(c.register(3, addr::MOVING, 1), Some(vec![1]));
    // Profile_Velocity caps it further (20 units = 4.58 rpm = 312.6 ticks/s).
    transact(
        &mut c,
        3,
        inst::WRITE,
        &wr(addr::PROFILE_VELOCITY, &20i32.to_le_bytes()),
    );
    let before = c.present_position(3).unwrap();
    run(&mut c, 1.0, 0.01);
    let moved = c.present_position(3).unwrap() - before;
    assert!(
        (305..=320).contains(&moved),
        "profile-limited travel: {moved}"
    );
    assert_eq!(c.present_velocity(3), Some(20));
}

#[test]
fn torque_off_means_no_motion_but_hands_can_move_it() {
    let mut c = chain(0.03, 6.0);
    c.set_present_position(2, 1500);
    assert_eq!(goal(&mut c, 2, 2500), 0);
    run(&mut c, 1.0, 0.01);
    assert_eq!(c.present_position(2), Some(1500));
    assert_eq!(c.present_velocity(2), Some(0));
    c.set_present_position(2, 1700);
    run(&mut c, 0.1, 0.01);
    assert_eq!(c.present_position(2), Some(1700));
    // With torque on, a push is undone: the servo returns to its goal.
    torque(&mut c, 2, true);
    goal(&mut c, 2, 1700);
    c.set_present_position(2, 1900);
    run(&mut c, 1.0, 0.01);
    assert!((c.present_position(2).unwrap() - 1700).abs() <= 1);
}

#[test]
fn position_limits_hold_in_position_mode() {
    let mut c = chain(0.01, 20.0);
    c.set_present_position(4, 2000);
    transact(
        &mut c,
        4,
        inst::WRITE,
        &wr(addr::MAX_POSITION_LIMIT, &2500i32.to_le_bytes()),
    );
    torque(&mut c, 4, true);
    assert_eq!(
        goal(&mut c, 4, 3000),
        intervened_sim::packet::status_error::DATA_RANGE
    );
    assert_eq!(goal(&mut c, 4, 2500), 0);
    run(&mut c, 1.0, 0.01);
    assert!(c.present_position(4).unwrap() <= 2500);
}

#[test]
fn obstacle_stalls_the_gripper_at_the_current_limit() {
    let mut c = chain(0.03, 6.0);
    let id = 6;
    c.set_present_position(id, 2000);
    // Current-based position mode with a 300-unit current cap, as a gripper runs.
    transact(&mut c, id, inst::WRITE, &wr(addr::OPERATING_MODE, &[5]));
    transact(
        &mut c,
        id,
        inst::WRITE,
        &wr(addr::GOAL_CURRENT, &300i16.to_le_bytes()),
    );
    torque(&mut c, id, true);
    c.set_obstacle(id, Some(2400));
    goal(&mut c, id, 2800);
    run(&mut c, 1.0, 0.01);
    assert_eq!(c.present_position(id), Some(2400));
    assert_eq!(c.present_velocity(id), Some(0));
    assert_eq!(c.present_current(id), Some(300));
    // Opening away from the block is free; clearing the obstacle lets it close fully.
    c.set_obstacle(id, None);
    run(&mut c, 1.0, 0.01);
    assert!((c.present_position(id).unwrap() - 2800).abs() <= 1);
    assert!(c.present_current(id).unwrap().abs() < 50);
}

#[test]
fn temperature_rises_under_sustained_stall() {
    let mut c = chain(0.03, 6.0);
    c.set_present_position(1, 2000);
    torque(&mut c, 1, true);
    c.set_obstacle(1, Some(2100));
    goal(&mut c, 1, 3000);
    let t0 = c.register(1, addr::PRESENT_TEMPERATURE, 1).unwrap()[0];
    run(&mut c, 120.0, 0.1);
    let t1 = c.register(1, addr::PRESENT_TEMPERATURE, 1).unwrap()[0];
    assert!(t1 >= t0 + 10, "{t0} -> {t1}");
    // Voltage sags under load but stays plausible.
    let v = c.register(1, addr::PRESENT_INPUT_VOLTAGE, 2).unwrap();
    let v = u16::from_le_bytes([v[0], v[1]]);
    assert!((110..120).contains(&v), "{v}");
}

#[test]
fn velocity_mode_follows_goal_velocity() {
    let mut c = chain(0.03, 6.0);
    c.set_present_position(5, 0);
    transact(&mut c, 5, inst::WRITE, &wr(addr::OPERATING_MODE, &[1]));
    transact(
        &mut c,
        5,
        inst::WRITE,
        &wr(addr::GOAL_VELOCITY, &(-50i32).to_le_bytes()),
    );
    torque(&mut c, 5, true);
    run(&mut c, 1.0, 0.01);
    // -50 units = -11.45 rpm = -781.6 ticks/s.
    let p = c.present_position(5).unwrap();
    assert!((-790..=-775).contains(&p), "{p}");
    assert_eq!(c.present_velocity(5), Some(-50));
}

#[test]
fn bus_watchdog_stops_a_servo_the_host_forgot() {
    let mut c = chain(0.03, 6.0);
    c.set_present_position(2, 1000);
    torque(&mut c, 2, true);
    // 5 x 20 ms = 100 ms without a packet trips it.
    transact(&mut c, 2, inst::WRITE, &wr(addr::BUS_WATCHDOG, &[5]));
    goal(&mut c, 2, 3000);
    // Traffic every 50 ms keeps it fed (any packet on the line counts).
    for _ in 0..20 {
        run(&mut c, 0.05, 0.01);
        transact(&mut c, 4, inst::PING, &[]);
    }
    assert_eq!(c.register(2, addr::BUS_WATCHDOG, 1), Some(vec![5]));
    assert!((c.present_position(2).unwrap() - 3000).abs() <= 1);
    assert_eq!(goal(&mut c, 2, 1000), 0);
    // Silence: it trips, holds where it is and refuses new goals.
    run(&mut c, 0.12, 0.01);
    assert_eq!(c.register(2, addr::BUS_WATCHDOG, 1), Some(vec![0xFF]));
    let held = c.present_position(2).unwrap();
    assert!(held > 1000 && held < 3000, "{held}");
    assert_eq!(
        goal(&mut c, 2, 1000),
        intervened_sim::packet::status_error::DATA_RANGE
    );
    run(&mut c, 0.5, 0.01);
    assert!((c.present_position(2).unwrap() - held).abs() <= 1);
    // Writing 0 clears it; goals work again.
    transact(&mut c, 2, inst::WRITE, &wr(addr::BUS_WATCHDOG, &[0]));
    assert_eq!(goal(&mut c, 2, 1000), 0);
    run(&mut c, 1.0, 0.01);
    assert!((c.present_position(2).unwrap() - 1000).abs() <= 1);
}
