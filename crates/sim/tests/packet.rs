//! Framing checked against packets worked out from the Robotis e-manual (Protocol 2.0).

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{hex, koch_chain, rd};
use intervened_robot::ServoModel;
use intervened_sim::packet::{
    crc16, decode, encode_instruction, encode_status, inst, stuff_into, unstuff, StreamParser,
};
use intervened_sim::{Chain, Dynamics, ServoSpec};

#[test]
fn manual_ping_example() {
    // e-manual: Ping ID 1.
    let ping = hex("FF FF FD 00 01 03 00 01 19 4E");
    assert_eq!(encode_instruction(1, inst::PING, &[]), ping);
    let p = decode(&ping).unwrap();
    assert_eq!((p.id, p.instruction, p.params.len()), (1, inst::PING, 0));
    // Its reply from an XM430-W210 (model 1030 = 0x0406, firmware 38 = 0x26).
    assert_eq!(
        encode_status(1, 0, &[0x06, 0x04, 0x26]),
        hex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")
    );
}

#[test]
fn chain_answers_manual_ping() {
    let mut chain = koch_chain();
    let replies = chain.handle(&hex("FF FF FD 00 01 03 00 01 19 4E"));
    // XL430-W250 = 1060 = 0x0424, firmware 41 = 0x29; CRC worked out separately.
    assert_eq!(
        replies,
        vec![hex("FF FF FD 00 01 07 00 55 00 24 04 29 EF 5F")]
    );
}

#[test]
fn manual_read_and_write_examples() {
    // Read Present_Position (132, 4 bytes) of ID 1, and its reply with position 166.
    assert_eq!(
        encode_instruction(1, inst::READ, &rd(132, 4)),
        hex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15")
    );
    let mut chain = koch_chain();
    chain.set_present_position(1, 166);
    let replies = chain.handle(&hex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"));
    assert_eq!(
        replies,
        vec![hex("FF FF FD 00 01 08 00 55 00 A6 00 00 00 8C C0")]
    );

    // Write 512 to Goal_Position (116) of ID 1, and the empty status back.
    let write = hex("FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89");
    assert_eq!(
        encode_instruction(1, inst::WRITE, &[0x74, 0, 0, 2, 0, 0]),
        write
    );
    let replies = chain.handle(&write);
    assert_eq!(replies, vec![hex("FF FF FD 00 01 04 00 55 00 A1 0C")]);
    assert_eq!(chain.goal_position(1), Some(512));
}

#[test]
fn stuffing_in_both_directions() {
    // Extended position mode allows -131073 = 0xFFFDFFFF, whose LE bytes FF FF FD FF need stuffing.
    let mut chain = Chain::new(
        vec![ServoSpec {
            id: 1,
            model: ServoModel::Xl330M288,
            firmware: 45,
        }],
        Dynamics::default(),
    );
    let set_mode = encode_instruction(1, inst::WRITE, &[11, 0, 4]);
    assert_eq!(decode(&chain.handle(&set_mode)[0]).unwrap().params, vec![0]);

    let write = hex("FF FF FD 00 01 0A 00 03 74 00 FF FF FD FD FF 23 E5");
    assert_eq!(
        encode_instruction(1, inst::WRITE, &[0x74, 0x00, 0xFF, 0xFF, 0xFD, 0xFF]),
        write
    );
    assert_eq!(decode(&write).unwrap().params, hex("74 00 FF FF FD FF"));
    let r = chain.handle(&write);
    assert_eq!(decode(&r[0]).unwrap().params, vec![0]);
    assert_eq!(chain.goal_position(1), Some(-131_073));

    chain.set_present_position(1, -131_073);
    let r = chain.handle(&encode_instruction(1, inst::READ, &rd(132, 4)));
    assert_eq!(
        r,
        vec![hex("FF FF FD 00 01 09 00 55 00 FF FF FD FD FF DA 9E")]
    );
}

#[test]
fn stuff_unstuff_round_trip() {
    let cases: &[&[u8]] = &[
        &[],
        &[0xFF, 0xFF, 0xFD],
        &[0xFF, 0xFF, 0xFD, 0xFD],
        &[0xFF, 0xFF, 0xFF, 0xFD, 0xFF, 0xFF, 0xFD, 0x00],
        &[1, 2, 0xFF, 0xFF, 0xFD, 0xFF, 0xFF, 0xFD],
    ];
    for &c in cases {
        let mut s = Vec::new();
        stuff_into(c, &mut s);
        let n = c.windows(3).filter(|w| w == &[0xFF, 0xFF, 0xFD]).count();
        assert_eq!(s.len(), c.len() + n, "{c:02X?}");
        assert_eq!(unstuff(&s), c, "{c:02X?}");
    }
}

#[test]
fn crc_matches_dynamixel2() {
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for n in [0, 1, 7, 100, 1000] {
        assert_eq!(
            crc16(0, &data[..n]),
            dynamixel2::checksum::calculate_checksum(0, &data[..n])
        );
    }
}

#[test]
fn decode_rejects_bad_packets() {
    let mut bad = hex("FF FF FD 00 01 03 00 01 19 4E");
    bad[8] ^= 1;
    assert!(matches!(
        decode(&bad),
        Err(intervened_sim::DecodeError::BadCrc { id: 1, .. })
    ));
    let mut len = hex("FF FF FD 00 01 03 00 01 19 4E");
    len[5] = 4;
    assert!(matches!(
        decode(&len),
        Err(intervened_sim::DecodeError::LengthMismatch { .. })
    ));
}

#[test]
fn parser_handles_partial_garbage_and_batches() {
    let a = encode_instruction(1, inst::PING, &[]);
    let b = encode_instruction(2, inst::READ, &rd(132, 4));
    let c = encode_instruction(3, inst::WRITE, &[0x74, 0x00, 0xFF, 0xFF, 0xFD, 0xFF]);
    let mut stream = vec![0x00, 0xFF, 0x13, 0xFF, 0xFF];
    stream.extend_from_slice(&a);
    stream.extend_from_slice(&[0xFF, 0xFF, 0xFD]); // a header prefix that goes nowhere
    stream.extend_from_slice(&b);
    stream.extend_from_slice(&c);
    // A header with an absurd length, then a real packet.
    stream.extend_from_slice(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0xFF, 0xFF]);
    stream.extend_from_slice(&a);

    // Byte at a time.
    let mut p = StreamParser::new();
    let mut got = Vec::new();
    for &byte in &stream {
        p.push(&[byte]);
        while let Some(pkt) = p.next_packet() {
            got.push(pkt);
        }
    }
    assert_eq!(got, vec![a.clone(), b.clone(), c.clone(), a.clone()]);

    // All at once.
    let mut p = StreamParser::new();
    p.push(&stream);
    let all: Vec<_> = std::iter::from_fn(|| p.next_packet()).collect();
    assert_eq!(all, got);
    assert!(p.discarded() > 0);
}

#[test]
fn parser_skips_a_corrupt_length_to_the_next_header() {
    // A length that claims 40 more bytes, but a real packet starts 3 bytes later.
    let a = encode_instruction(1, inst::PING, &[]);
    let mut stream = vec![0xFF, 0xFF, 0xFD, 0x00, 0x01, 40, 0x00];
    stream.extend_from_slice(&a);
    let mut p = StreamParser::new();
    p.push(&stream);
    assert_eq!(p.next_packet(), Some(a));
}
