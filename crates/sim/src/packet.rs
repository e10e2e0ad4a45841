//! Protocol 2.0 framing: CRC-16, byte stuffing, instruction decoding, status encoding and a
//! resynchronising parser for a raw byte stream.
//!
//! Wire layout: `FF FF FD 00 | ID | LEN_L LEN_H | INST | params... | CRC_L CRC_H`. LEN counts
//! INST + (stuffed) params + CRC. Stuffing applies to INST and params only; the CRC covers the
//! stuffed bytes from the first header byte up to the last parameter.

use thiserror::Error;

/// The fixed packet header.
pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Broadcast ID.
pub const BROADCAST_ID: u8 = 0xFE;
/// Bytes before INST: header (4), ID (1), LEN (2).
pub const PREFIX_LEN: usize = 7;
/// Longest LEN field the parser accepts; anything longer is treated as line noise.
pub const MAX_LENGTH_FIELD: usize = 2048;

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
}

const fn crc_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x8005
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u16; 256] = crc_table();

/// CRC-16 (polynomial 0x8005, no reflection), continuing from `init` (0 for a fresh packet).
pub fn crc16(init: u16, data: &[u8]) -> u16 {
    data.iter().fold(init, |crc, &b| {
        let idx = usize::from(((crc >> 8) ^ u16::from(b)) & 0xFF);
        (crc << 8) ^ CRC_TABLE[idx]
    })
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

/// Remove stuffing: every `FF FF FD FD` in `body` becomes `FF FF FD`.
pub fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        out.push(body[i]);
        if body[i] == 0xFD
            && i >= 2
            && body[i - 1] == 0xFF
            && body[i - 2] == 0xFF
            && body.get(i + 1) == Some(&0xFD)
        {
            // Skip the inserted FD.
            i += 1;
        }
        i += 1;
    }
    out
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

/// Splits a byte stream into raw packets: tolerates partial reads, several packets per read,
/// and garbage between packets (it resynchronises on the next header).
#[derive(Debug, Default)]
pub struct StreamParser {
    buf: Vec<u8>,
    discarded: u64,
}

fn find_header(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == HEADER)
        .map(|p| p + from)
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes read from the line.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes thrown away while resynchronising, since creation.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Whether bytes of an incomplete packet are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drop an incomplete packet (the line went quiet mid-packet, like a servo's packet timeout).
    pub fn clear_partial(&mut self) {
        self.discard(self.buf.len());
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.discarded += n as u64;
        self.buf.drain(..n);
    }

    /// The next complete raw packet (CRC not checked), if one is buffered.
    pub fn next_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            match find_header(&self.buf, 0) {
                None => {
                    // Keep a tail that could be the start of a header split across reads.
                    let keep = (1..=3)
                        .rev()
                        .find(|&k| {
                            self.buf.len() >= k && self.buf[self.buf.len() - k..] == HEADER[..k]
                        })
                        .unwrap_or(0);
                    let drop = self.buf.len() - keep;
                    self.discard(drop);
                    return None;
                }
                Some(p) if p > 0 => self.discard(p),
                Some(_) => {}
            }
            if self.buf.len() < PREFIX_LEN {
                return None;
            }
            let field = usize::from(u16::from_le_bytes([self.buf[5], self.buf[6]]));
            if !(3..=MAX_LENGTH_FIELD).contains(&field) {
                self.discard(1);
                continue;
            }
            let total = PREFIX_LEN + field;
            if self.buf.len() >= total {
                return Some(self.buf.drain(..total).collect());
            }
            // Incomplete. Stuffing guarantees no header inside a real packet before its CRC,
            // so a header there means the length was corrupt: skip to it.
            let crc_start = total - 2;
            match find_header(&self.buf, 1) {
                Some(q) if q + 4 <= crc_start => self.discard(q),
                _ => return None,
            }
        }
    }
}
