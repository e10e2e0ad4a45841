//! Each instruction and each status error, driven through `Chain::handle`.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{koch_chain, rd, transact, wr};
use intervened_sim::packet::{encode_instruction, inst, status_error as se, BROADCAST_ID};
use intervened_sim::table::addr;

fn status(chain: &mut intervened_sim::Chain, id: u8, ins: u8, params: &[u8]) -> u8 {
    let r = transact(chain, id, ins, params);
    assert_eq!(r.len(), 1, "expected exactly one status from id {id}");
    assert_eq!(r[0].id, id);
    assert_eq!(r[0].instruction, inst::STATUS);
    r[0].status_error().unwrap()
}

#[test]
fn ping_unicast_and_broadcast_in_id_order() {
    let mut chain = koch_chain();
    let r = transact(&mut chain, 3, inst::PING, &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status_data(), &[0xB0, 0x04, 45]); // 1200, fw 45

    assert!(transact(&mut chain, 9, inst::PING, &[]).is_empty());

    // Give servo 1 the ID 10 so that chain order and ID order differ (it answers as ID 1).
    assert_eq!(status(&mut chain, 1, inst::WRITE, &wr(addr::ID, &[10])), 0);
    assert!(transact(&mut chain, 1, inst::PING, &[]).is_empty());
    let r = transact(&mut chain, BROADCAST_ID, inst::PING, &[]);
    let ids: Vec<u8> = r.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![2, 3, 4, 5, 6, 10]);
    assert_eq!(r[5].status_data(), &[0x24, 0x04, 41]);
}

#[test]
fn read_model_firmware_and_present_values() {
    let mut chain = koch_chain();
    chain.set_present_position(2, 3000);
    let r = transact(&mut chain, 2, inst::READ, &rd(0, 8));
    let d = r[0].status_data();
    assert_eq!(u16::from_le_bytes([d[0], d[1]]), 1060);
    assert_eq!(d[6], 41); // Firmware_Version
    assert_eq!(d[7], 2); // ID
    let r = transact(&mut chain, 2, inst::READ, &rd(addr::PRESENT_POSITION, 4));
    assert_eq!(r[0].status_data(), &3000i32.to_le_bytes());
    // Voltage: XL430 runs at 12 V, XL330 at 5 V (0.1 V units); temperature in C.
    let v = transact(
        &mut chain,
        2,
        inst::READ,
        &rd(addr::PRESENT_INPUT_VOLTAGE, 3),
    );
    let d = v[0].status_data();
    assert_eq!(u16::from_le_bytes([d[0], d[1]]), 120);
    assert!((20..=40).contains(&d[2]));
    let v = transact(
        &mut chain,
        4,
        inst::READ,
        &rd(addr::PRESENT_INPUT_VOLTAGE, 2),
    );
    assert_eq!(v[0].status_data(), &50u16.to_le_bytes());
}

#[test]
fn read_past_table_is_access_error() {
    let mut chain = koch_chain();
    assert_eq!(status(&mut chain, 1, inst::READ, &rd(146, 10)), se::ACCESS);
    assert_eq!(
        status(&mut chain, 1, inst::READ, &rd(0, 0)),
        se::DATA_LENGTH
    );
    assert_eq!(
        status(&mut chain, 1, inst::READ, &[0x84, 0x00]),
        se::DATA_LENGTH
    );
    // Broadcast read gets no reply.
    assert!(transact(&mut chain, BROADCAST_ID, inst::READ, &rd(132, 4)).is_empty());
}

#[test]
fn write_errors() {
    let mut chain = koch_chain();
    // Read-only register.
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::PRESENT_POSITION, &[0, 0, 0, 0])
        ),
        se::ACCESS
    );
    assert_eq!(
        status(&mut chain, 1, inst::WRITE, &wr(addr::MODEL_NUMBER, &[1, 2])),
        se::ACCESS
    );
    // Undefined gap (addresses 14..20 hold nothing).
    assert_eq!(
        status(&mut chain, 1, inst::WRITE, &wr(15, &[1])),
        se::ACCESS
    );
    // Half of a 4-byte register.
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::GOAL_POSITION, &[1, 2])
        ),
        se::DATA_LENGTH
    );
    // Out of range values.
    assert_eq!(
        status(&mut chain, 1, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[2])),
        se::DATA_RANGE
    );
    assert_eq!(
        status(&mut chain, 1, inst::WRITE, &wr(addr::OPERATING_MODE, &[2])),
        se::DATA_RANGE
    );
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::STATUS_RETURN_LEVEL, &[3])
        ),
        se::DATA_RANGE
    );
    // Goal outside the position limits in position mode.
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::MAX_POSITION_LIMIT, &3000i32.to_le_bytes())
        ),
        0
    );
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::GOAL_POSITION, &3001i32.to_le_bytes())
        ),
        se::DATA_RANGE
    );
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::GOAL_POSITION, &3000i32.to_le_bytes())
        ),
        0
    );
    // The same goal is fine in extended position mode.
    assert_eq!(
        status(&mut chain, 1, inst::WRITE, &wr(addr::OPERATING_MODE, &[4])),
        0
    );
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::WRITE,
            &wr(addr::GOAL_POSITION, &5000i32.to_le_bytes())
        ),
        0
    );
    assert_eq!(chain.goal_position(1), Some(5000));
    // A refused write changes nothing.
    assert_eq!(chain.register(1, addr::TORQUE_ENABLE, 1), Some(vec![0]));
}

#[test]
fn eeprom_locked_while_torque_on() {
    let mut chain = koch_chain();
    assert_eq!(
        status(&mut chain, 5, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[1])),
        0
    );
    assert_eq!(chain.torque_enabled(5), Some(true));
    assert_eq!(
        status(&mut chain, 5, inst::WRITE, &wr(addr::OPERATING_MODE, &[4])),
        se::ACCESS
    );
    assert_eq!(
        status(
            &mut chain,
            5,
            inst::WRITE,
            &wr(addr::HOMING_OFFSET, &100i32.to_le_bytes())
        ),
        se::ACCESS
    );
    assert_eq!(
        status(&mut chain, 5, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[0])),
        0
    );
    assert_eq!(
        status(&mut chain, 5, inst::WRITE, &wr(addr::OPERATING_MODE, &[4])),
        0
    );
    assert_eq!(chain.register(5, addr::OPERATING_MODE, 1), Some(vec![4]));
}

#[test]
fn multi_register_write_and_homing_offset() {
    let mut chain = koch_chain();
    chain.set_present_position(3, 1000);
    // Homing offset shifts what the host reads.
    assert_eq!(
        status(
            &mut chain,
            3,
            inst::WRITE,
            &wr(addr::HOMING_OFFSET, &(-200i32).to_le_bytes())
        ),
        0
    );
    assert_eq!(chain.present_position(3), Some(800));
    // Profile_Velocity and Goal_Position in one write (112..120).
    let mut data = 50i32.to_le_bytes().to_vec();
    data.extend_from_slice(&1234i32.to_le_bytes());
    assert_eq!(
        status(
            &mut chain,
            3,
            inst::WRITE,
            &wr(addr::PROFILE_VELOCITY, &data)
        ),
        0
    );
    assert_eq!(chain.goal_position(3), Some(1234));
    assert_eq!(
        chain.register(3, addr::PROFILE_VELOCITY, 4),
        Some(data[..4].to_vec())
    );
}

#[test]
fn unknown_instruction_is_instruction_error() {
    let mut chain = koch_chain();
    assert_eq!(status(&mut chain, 2, 0x77, &[]), se::INSTRUCTION);
    assert!(transact(&mut chain, BROADCAST_ID, 0x77, &[]).is_empty());
}

#[test]
fn bad_crc_gets_crc_error_from_the_addressed_servo() {
    let mut chain = koch_chain();
    let mut pkt = encode_instruction(4, inst::READ, &rd(132, 4));
    let n = pkt.len();
    pkt[n - 1] ^= 0xFF;
    let r: Vec<_> = chain
        .handle(&pkt)
        .iter()
        .map(|raw| intervened_sim::packet::decode(raw).unwrap())
        .collect();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].id, r[0].status_error()), (4, Some(se::CRC)));
    assert!(r[0].status_data().is_empty());
    // A corrupted write must not be executed.
    let mut w = encode_instruction(
        4,
        inst::WRITE,
        &wr(addr::GOAL_POSITION, &100i32.to_le_bytes()),
    );
    let n = w.len();
    w[n - 2] ^= 0x01;
    chain.handle(&w);
    assert_ne!(chain.goal_position(4), Some(100));
}

#[test]
fn reg_write_then_action() {
    let mut chain = koch_chain();
    // Action with nothing registered is an instruction error.
    assert_eq!(status(&mut chain, 1, inst::ACTION, &[]), se::INSTRUCTION);
    let goal = 1500i32.to_le_bytes();
    assert_eq!(
        status(
            &mut chain,
            1,
            inst::REG_WRITE,
            &wr(addr::GOAL_POSITION, &goal)
        ),
        0
    );
    assert_eq!(
        status(
            &mut chain,
            2,
            inst::REG_WRITE,
            &wr(addr::GOAL_POSITION, &goal)
        ),
        0
    );
    assert_eq!(
        chain.register(1, addr::REGISTERED_INSTRUCTION, 1),
        Some(vec![1])
    );
    assert_ne!(chain.goal_position(1), Some(1500));
    // Reg write validates like write.
    assert_eq!(
        status(
            &mut chain,
            3,
            inst::REG_WRITE,
            &wr(addr::PRESENT_POSITION, &goal)
        ),
        se::ACCESS
    );
    // Broadcast action: no reply, both apply.
    assert!(transact(&mut chain, BROADCAST_ID, inst::ACTION, &[]).is_empty());
    assert_eq!(chain.goal_position(1), Some(1500));
    assert_eq!(chain.goal_position(2), Some(1500));
    assert_eq!(
        chain.register(1, addr::REGISTERED_INSTRUCTION, 1),
        Some(vec![0])
    );
}

#[test]
fn reboot_clears_ram_and_hardware_error() {
    let mut chain = koch_chain();
    assert_eq!(
        status(&mut chain, 6, inst::WRITE, &wr(addr::OPERATING_MODE, &[5])),
        0
    );
    assert_eq!(
        status(&mut chain, 6, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[1])),
        0
    );
    chain.set_hardware_error(6, 0x20);
    assert_eq!(chain.torque_enabled(6), Some(false));
    // Every status now carries the alert bit; torque cannot come back before reboot.
    let r = transact(
        &mut chain,
        6,
        inst::READ,
        &rd(addr::HARDWARE_ERROR_STATUS, 1),
    );
    assert_eq!(r[0].status_error(), Some(se::ALERT));
    assert_eq!(r[0].status_data(), &[0x20]);
    assert_eq!(
        status(&mut chain, 6, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[1])),
        se::ALERT | se::RESULT_FAIL
    );
    assert_eq!(status(&mut chain, 6, inst::REBOOT, &[]), se::ALERT);
    let r = transact(
        &mut chain,
        6,
        inst::READ,
        &rd(addr::HARDWARE_ERROR_STATUS, 1),
    );
    assert_eq!(
        (r[0].status_error(), r[0].status_data()),
        (Some(0), &[0u8][..])
    );
    // EEPROM (operating mode) survives the reboot; RAM is back to power-on values.
    assert_eq!(chain.register(6, addr::OPERATING_MODE, 1), Some(vec![5]));
    assert_eq!(
        status(&mut chain, 6, inst::WRITE, &wr(addr::TORQUE_ENABLE, &[1])),
        0
    );
}

#[test]
fn factory_reset_and_clear() {
    let mut chain = koch_chain();
    assert_eq!(
        status(&mut chain, 4, inst::WRITE, &wr(addr::OPERATING_MODE, &[4])),
        0
    );
    assert_eq!(status(&mut chain, 4, inst::FACTORY_RESET, &[0x02]), 0);
    assert_eq!(chain.register(4, addr::OPERATING_MODE, 1), Some(vec![3]));
    // Clear multi-turn brings the position back within one turn.
    chain.set_present_position(4, 3 * 4096 + 100);
    assert_eq!(
        status(&mut chain, 4, inst::CLEAR, &[1, 2, 3, 4, 5]),
        se::DATA_RANGE
    );
    assert_eq!(
        status(&mut chain, 4, inst::CLEAR, &[0x01, 0x44, 0x58, 0x4C, 0x22]),
        0
    );
    assert_eq!(chain.present_position(4), Some(100));
}

#[test]
fn sync_read_replies_in_listed_order_and_skips_silent_servos() {
    let mut chain = koch_chain();
    for id in 1..=6u8 {
        chain.set_present_position(id, 100 * i32::from(id));
    }
    chain.set_responding(4, false);
    let mut params = rd(addr::PRESENT_POSITION, 4);
    params.extend_from_slice(&[6, 2, 4, 1]);
    let r = transact(&mut chain, BROADCAST_ID, inst::SYNC_READ, &params);
    let got: Vec<(u8, i32)> = r
        .iter()
        .map(|p| {
            (
                p.id,
                i32::from_le_bytes(p.status_data().try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(got, vec![(6, 600), (2, 200), (1, 100)]);
    // Sync read must be broadcast: addressed to one servo it is an instruction error.
    assert_eq!(
        status(&mut chain, 1, inst::SYNC_READ, &params),
        se::INSTRUCTION
    );
    // A silent servo also ignores pings and writes.
    assert!(transact(&mut chain, 4, inst::PING, &[]).is_empty());
    chain.set_responding(4, true);
    assert_eq!(transact(&mut chain, 4, inst::PING, &[]).len(), 1);
}

#[test]
fn fast_sync_read_packs_every_servo_in_one_packet() {
    let mut chain = koch_chain();
    for id in 1..=3u8 {
        chain.set_present_position(id, 1000 + i32::from(id));
    }
    let mut params = rd(addr::PRESENT_POSITION, 4);
    params.extend_from_slice(&[1, 2, 3]);
    let raw = chain.handle(&encode_instruction(
        BROADCAST_ID,
        inst::FAST_SYNC_READ,
        &params,
    ));
    assert_eq!(raw.len(), 1);
    let p = intervened_sim::packet::decode(&raw[0]).unwrap();
    assert_eq!(p.id, BROADCAST_ID);
    // ERR ID DATA(4) CRC(2) for the first two, ERR ID DATA(4) for the last.
    assert_eq!(p.params.len(), 3 * 6 + 2 * 2);
    for (k, id) in (1..=3u8).enumerate() {
        let at = k * 8;
        assert_eq!(p.params[at], 0);
        assert_eq!(p.params[at + 1], id);
        let v = i32::from_le_bytes(p.params[at + 2..at + 6].try_into().unwrap());
        assert_eq!(v, 1000 + i32::from(id));
    }
}

#[test]
fn sync_write_and_bulk_write() {
    let mut chain = koch_chain();
    let mut params = wr(addr::GOAL_POSITION, &4u16.to_le_bytes());
    for id in [1u8, 3, 5] {
        params.push(id);
        params.extend_from_slice(&(2000 + i32::from(id)).to_le_bytes());
    }
    assert!(transact(&mut chain, BROADCAST_ID, inst::SYNC_WRITE, &params).is_empty());
    assert_eq!(chain.goal_position(1), Some(2001));
    assert_eq!(chain.goal_position(3), Some(2003));
    assert_eq!(chain.goal_position(5), Some(2005));
    assert_eq!(chain.goal_position(2), Some(2048));

    // Bulk write: different addresses and lengths per servo.
    let mut params = vec![2];
    params.extend_from_slice(&rd(addr::GOAL_POSITION, 4));
    params.extend_from_slice(&1111i32.to_le_bytes());
    params.push(6);
    params.extend_from_slice(&rd(addr::TORQUE_ENABLE, 1));
    params.push(1);
    assert!(transact(&mut chain, BROADCAST_ID, inst::BULK_WRITE, &params).is_empty());
    assert_eq!(chain.goal_position(2), Some(1111));
    assert_eq!(chain.torque_enabled(6), Some(true));
}

#[test]
fn bulk_read_each_servo_its_own_range() {
    let mut chain = koch_chain();
    chain.set_present_position(5, 777);
    let mut params = vec![5];
    params.extend_from_slice(&rd(addr::PRESENT_POSITION, 4));
    params.push(1);
    params.extend_from_slice(&rd(addr::MODEL_NUMBER, 2));
    let r = transact(&mut chain, BROADCAST_ID, inst::BULK_READ, &params);
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].id, r[0].status_data()),
        (5, &777i32.to_le_bytes()[..])
    );
    assert_eq!(
        (r[1].id, r[1].status_data()),
        (1, &1060u16.to_le_bytes()[..])
    );
}

#[test]
fn status_return_level() {
    let mut chain = koch_chain();
    // Level 1: ping and reads answer, writes do not (the write that sets it is still answered).
    assert_eq!(
        status(
            &mut chain,
            2,
            inst::WRITE,
            &wr(addr::STATUS_RETURN_LEVEL, &[1])
        ),
        0
    );
    assert!(transact(&mut chain, 2, inst::WRITE, &wr(addr::LED, &[1])).is_empty());
    assert_eq!(chain.register(2, addr::LED, 1), Some(vec![1]));
    assert_eq!(
        transact(&mut chain, 2, inst::READ, &rd(addr::LED, 1)).len(),
        1
    );
    // Level 0: ping only.
    assert!(transact(
        &mut chain,
        2,
        inst::WRITE,
        &wr(addr::STATUS_RETURN_LEVEL, &[0])
    )
    .is_empty());
    assert!(transact(&mut chain, 2, inst::READ, &rd(addr::LED, 1)).is_empty());
    let mut params = rd(addr::LED, 1);
    params.extend_from_slice(&[1, 2, 3]);
    let ids: Vec<u8> = transact(&mut chain, BROADCAST_ID, inst::SYNC_READ, &params)
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(transact(&mut chain, 2, inst::PING, &[]).len(), 1);
    // Broadcast writes never answer, even at level 2.
    assert!(transact(&mut chain, BROADCAST_ID, inst::WRITE, &wr(addr::LED, &[0])).is_empty());
    assert_eq!(chain.register(1, addr::LED, 1), Some(vec![0]));
}

#[test]
fn specs_from_the_koch_config() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../robot-configs/koch-v1.1.toml"
    );
    let cfg = intervened_robot::RobotConfig::load(std::path::Path::new(path)).unwrap();
    let specs = intervened_sim::specs_from_config(&cfg);
    assert_eq!(specs.len(), cfg.joints.len());
    for (s, j) in specs.iter().zip(&cfg.joints) {
        assert_eq!((s.id, s.model), (j.id, j.model));
        assert!(s.firmware >= j.model.min_firmware());
    }
}
