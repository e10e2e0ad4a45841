//! Helpers shared by the integration tests.
#![allow(dead_code)]

use intervened_robot::ServoModel;
use intervened_sim::packet::{decode, encode_instruction, Packet};
use intervened_sim::{Chain, Dynamics, ServoSpec};

/// The Koch v1.1 follower: two XL430-W250 then four XL330-M288.
pub fn koch_specs() -> Vec<ServoSpec> {
    (1..=6)
        .map(|id| ServoSpec {
            id,
            model: if id <= 2 {
                ServoModel::Xl430W250
            } else {
                ServoModel::Xl330M288
            },
            firmware: if id <= 2 { 41 } else { 45 },
        })
        .collect()
}

pub fn koch_chain() -> Chain {
    Chain::new(koch_specs(), Dynamics::default())
}

/// Send one instruction and decode every status packet that comes back.
pub fn transact(chain: &mut Chain, id: u8, instruction: u8, params: &[u8]) -> Vec<Packet> {
    chain
        .handle(&encode_instruction(id, instruction, params))
        .iter()
        .map(|raw| decode(raw).expect("emulator sent an invalid status packet"))
        .collect()
}

/// Read params for (addr, len).
pub fn rd(addr: u16, len: u16) -> Vec<u8> {
    let mut v = addr.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v
}

/// Write params for addr + data.
pub fn wr(addr: u16, data: &[u8]) -> Vec<u8> {
    let mut v = addr.to_le_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

pub fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}
