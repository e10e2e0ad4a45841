//! Protocol 2.0 framing: CRC-16, byte stuffing, instruction and status packets, and the
//! parameter layouts of the instructions both ends use.
//!
//! Wire layout: `FF FF FD 00 | ID | LEN_L LEN_H | INST | params... | CRC_L CRC_H`. LEN counts
//! INST + (stuffed) params + CRC. Stuffing applies to INST and params only; the CRC covers the
//! stuffed bytes from the first header byte up to the last parameter.

use crc::{Crc, CRC_16_UMTS};
use thiserror::Error;

/// The fixed packet header.
pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Broadcast ID.
pub const BROADCAST_ID: u8 = 0xFE;
/// Bytes before INST: header (4), ID (1), LEN (2).
pub const PREFIX_LEN: usize = 7;
/// Bytes of an instruction packet besides its parameters: header 4, id, length 2,
/// instruction, CRC 2.
pub const INSTRUCTION_OVERHEAD: usize = PREFIX_LEN + 3;
/// Bytes of a status packet besides its parameters: an instruction's plus the error byte.
pub const STATUS_OVERHEAD: usize = INSTRUCTION_OVERHEAD + 1;

/// Instruction codes (e-manual, Protocol 2.0).
pub mod inst {
    pub const PING: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE: u8 = 0x03;
    pub const REG_WRITE: u8 = 0x04;
    pub const ACTION: u8 = 0x05;
    pub const FACTORY_RESET: u8 = 0x06;
    pub const REBOOT: u8 = 0x08;
    pub const CLEAR: u8 = 0x10;
    pub const STATUS: u8 = 0x55;
    pub const SYNC_READ: u8 = 0x82;
    pub const SYNC_WRITE: u8 = 0x83;
    pub const FAST_SYNC_READ: u8 = 0x8A;
    pub const BULK_READ: u8 = 0x92;
    pub const BULK_WRITE: u8 = 0x93;
}

/// Error numbers carried in the low 7 bits of a status packet's error byte.
pub mod status_error {
    pub const RESULT_FAIL: u8 = 1;
    pub const INSTRUCTION: u8 = 2;
    pub const CRC: u8 = 3;
    pub const DATA_RANGE: u8 = 4;
    pub const DATA_LENGTH: u8 = 5;
    pub const DATA_LIMIT: u8 = 6;
    pub const ACCESS: u8 = 7;
    /// Bit 7: a hardware error is latched in Hardware_Error_Status.
    pub const ALERT: u8 = 0x80;

    /// Name of an error number (the low 7 bits of the error byte).
    pub fn name(n: u8) -> &'static str {
        match n {
            RESULT_FAIL => "result fail",
            INSTRUCTION => "instruction error",
            CRC => "CRC error",
            DATA_RANGE => "data range error",
            DATA_LENGTH => "data length error",
            DATA_LIMIT => "data limit error",
            ACCESS => "access error",
            _ => "unknown error",
        }
    }
}

/// Dynamixel's CRC-16: polynomial 0x8005, init 0, no reflection, no final xor, which is the
/// catalogued CRC-16/UMTS (also known as BUYPASS).
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_UMTS);

/// CRC-16 (polynomial 0x8005, no reflection), continuing from `init` (0 for a fresh packet).
pub fn crc16(init: u16, data: &[u8]) -> u16 {
    let mut d = CRC16.digest_with_initial(init);
    d.update(data);
    d.finalize()
}

/// Append `body` to `out`, inserting an `FD` after every `FF FF FD` in it.
pub fn stuff_into(body: &[u8], out: &mut Vec<u8>) {
    // Track the last two bytes emitted from the body (inserted FDs reset the pattern).
    let (mut a, mut b) = (0u8, 0u8);
    for &x in body {
        out.push(x);
        if a == 0xFF && b == 0xFF && x == 0xFD {
            out.push(0xFD);
            a = 0xFD;
            b = 0xFD;
        } else {
            a = b;
            b = x;
        }
    }
}

/// Remove stuffing: an `FD` that follows `FF FF FD` is dropped, however many `FF` come
/// before (so `FF FF FF FD FD` becomes `FF FF FF FD`, which dynamixel2 0.9.1 gets wrong).
pub fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    unstuff_into(body, &mut out);
    out
}

/// As [`unstuff`], into a caller's buffer (cleared first), so the bus's hot path reuses one.
pub fn unstuff_into(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut ffs = 0usize;
    let mut skip_next_fd = false;
    for &b in body {
        if skip_next_fd {
            skip_next_fd = false;
            if b == 0xFD {
                ffs = 0;
                continue;
            }
        }
        out.push(b);
        if b == 0xFF {
            ffs += 1;
        } else {
            skip_next_fd = b == 0xFD && ffs >= 2;
            ffs = 0;
        }
    }
}

/// Build a complete packet (header, stuffing, length, CRC). `first` is INST (or 0x55 for status).
fn encode(id: u8, first: u8, rest: &[&[u8]]) -> Vec<u8> {
    let body_len: usize = 1 + rest.iter().map(|r| r.len()).sum::<usize>();
    let mut body = Vec::with_capacity(body_len);
    body.push(first);
    for r in rest {
        body.extend_from_slice(r);
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + body_len + body_len / 8 + 2);
    out.extend_from_slice(&HEADER);
    out.push(id);
    out.extend_from_slice(&[0, 0]);
    stuff_into(&body, &mut out);
    finish(out)
}

/// Fill in LEN and append the CRC to a packet holding header, ID, a LEN placeholder and body.
fn finish(mut out: Vec<u8>) -> Vec<u8> {
    // LEN = stuffed body + 2 CRC bytes; the body is bounded by the caller's data (<< 64 KiB).
    let len = (out.len() - PREFIX_LEN + 2) as u16;
    out[5..7].copy_from_slice(&len.to_le_bytes());
    let crc = crc16(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Encode an instruction packet (what a host sends).
pub fn encode_instruction(id: u8, instruction: u8, params: &[u8]) -> Vec<u8> {
    encode(id, instruction, &[params])
}

/// Encode a status packet (what a servo sends back).
pub fn encode_status(id: u8, error: u8, params: &[u8]) -> Vec<u8> {
    encode(id, inst::STATUS, &[&[error], params])
}

/// One decoded packet (instruction or status), stuffing removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub id: u8,
    /// INST for an instruction packet, 0x55 for a status packet.
    pub instruction: u8,
    /// Parameters after INST, unstuffed (for a status packet the first one is the error byte).
    pub params: Vec<u8>,
}

impl Packet {
    /// For a status packet: the error byte.
    pub fn status_error(&self) -> Option<u8> {
        self.params.first().copied()
    }
    /// For a status packet: the data after the error byte.
    pub fn status_data(&self) -> &[u8] {
        self.params.get(1..).unwrap_or(&[])
    }
}

/// Why a byte slice is not a valid packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("packet does not start with FF FF FD 00")]
    BadHeader,
    #[error("length field {field} does not match {actual} bytes after it")]
    LengthMismatch { field: usize, actual: usize },
    #[error("CRC mismatch for id {id}: packet says {got:#06x}, computed {computed:#06x}")]
    BadCrc {
        id: u8,
        instruction: u8,
        got: u16,
        computed: u16,
    },
}

/// Check the CRC of a complete raw packet (header included).
pub fn crc_ok(raw: &[u8]) -> bool {
    match raw.len().checked_sub(2) {
        Some(n) if n >= PREFIX_LEN => {
            let got = u16::from_le_bytes([raw[n], raw[n + 1]]);
            crc16(0, &raw[..n]) == got
        }
        _ => false,
    }
}

/// Decode one complete raw packet as it came off the wire.
pub fn decode(raw: &[u8]) -> Result<Packet, DecodeError> {
    if raw.len() < PREFIX_LEN + 3 {
        return Err(DecodeError::TooShort(raw.len()));
    }
    if raw[..4] != HEADER {
        return Err(DecodeError::BadHeader);
    }
    let field = usize::from(u16::from_le_bytes([raw[5], raw[6]]));
    let actual = raw.len() - PREFIX_LEN;
    if field != actual {
        return Err(DecodeError::LengthMismatch { field, actual });
    }
    let n = raw.len() - 2;
    let got = u16::from_le_bytes([raw[n], raw[n + 1]]);
    let computed = crc16(0, &raw[..n]);
    if got != computed {
        return Err(DecodeError::BadCrc {
            id: raw[4],
            instruction: raw[PREFIX_LEN],
            got,
            computed,
        });
    }
    Ok(Packet {
        id: raw[4],
        instruction: raw[PREFIX_LEN],
        params: unstuff(&raw[PREFIX_LEN + 1..n]),
    })
}

/// Parameters of Read (and of Sync Read before the ids): address and length, little-endian.
pub fn addr_len(address: u16, len: u16) -> [u8; 4] {
    let [a0, a1] = address.to_le_bytes();
    let [l0, l1] = len.to_le_bytes();
    [a0, a1, l0, l1]
}

/// Appends Write parameters: the address, then the data.
pub fn write_params_into(address: u16, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&address.to_le_bytes());
    out.extend_from_slice(data);
}

/// A complete Write instruction packet.
pub fn encode_write(id: u8, address: u16, data: &[u8]) -> Vec<u8> {
    let mut params = Vec::with_capacity(2 + data.len());
    write_params_into(address, data, &mut params);
    encode_instruction(id, inst::WRITE, &params)
}

/// Appends Sync Read parameters: address, length, then the ids.
pub fn sync_read_params_into(address: u16, len: u16, ids: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&addr_len(address, len));
    out.extend_from_slice(ids);
}

/// Appends Sync Write parameters: address, length, then `id, data` per servo, with `data`
/// holding `len` bytes per id in id order. Extra bytes past the last whole chunk are left out.
pub fn sync_write_params_into(address: u16, len: u16, ids: &[u8], data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&addr_len(address, len));
    for (id, chunk) in ids.iter().zip(data.chunks_exact(usize::from(len).max(1))) {
        out.push(*id);
        out.extend_from_slice(chunk);
    }
}

/// A little-endian u16 at `at` in a parameter list.
pub fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The address and length that lead Read, Sync Read and Sync Write parameters.
pub fn parse_addr_len(params: &[u8]) -> Option<(u16, u16)> {
    Some((le16(params, 0)?, le16(params, 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_e_manual() {
        // Ping ID 1 (e-manual): CRC 19 4E. `intervened-sim`'s tests also check this CRC
        // against dynamixel2's own implementation, an independent oracle.
        let ping = [0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x01];
        assert_eq!(crc16(0, &ping), 0x4E19);
        assert_eq!(crc16(crc16(0, &ping[..3]), &ping[3..]), 0x4E19);
    }

    #[test]
    fn unstuff_undoes_stuff_for_every_short_sequence() {
        let alpha = [0xFF, 0xFD, 0x00];
        for len in 0..=8u32 {
            for mut k in 0..3usize.pow(len) {
                let mut v = Vec::new();
                for _ in 0..len {
                    v.push(alpha[k % 3]);
                    k /= 3;
                }
                let mut s = Vec::new();
                stuff_into(&v, &mut s);
                assert_eq!(unstuff(&s), v, "{v:02X?}");
            }
        }
        // What dynamixel2 0.9.1 leaves stuffed.
        assert_eq!(
            unstuff(&[0xFF, 0xFF, 0xFF, 0xFD, 0xFD]),
            [0xFF, 0xFF, 0xFF, 0xFD]
        );
    }

    #[test]
    fn write_helpers_match_the_e_manual() {
        // Write 512 to Goal_Position (116) of ID 1.
        assert_eq!(
            encode_write(1, 116, &512i32.to_le_bytes()),
            [
                0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x09, 0x00, 0x03, 0x74, 0x00, 0x00, 0x02, 0x00, 0x00,
                0xCA, 0x89
            ]
        );
        let mut p = Vec::new();
        sync_write_params_into(116, 2, &[1, 2], &[1, 2, 3, 4], &mut p);
        assert_eq!(p, [116, 0, 2, 0, 1, 1, 2, 2, 3, 4]);
        assert_eq!(parse_addr_len(&p), Some((116, 2)));
        assert_eq!(parse_addr_len(&p[..3]), None);
        let mut p = Vec::new();
        sync_read_params_into(132, 4, &[1, 2], &mut p);
        assert_eq!(p, [132, 0, 4, 0, 1, 2]);
    }
}
