//! Protocol 2.0 framing as the emulator uses it: everything shared with the host comes from
//! `intervened-dxl-proto` (re-exported here); what is the emulator's own is the
//! resynchronising parser for a raw byte stream.

pub use intervened_dxl_proto::packet::*;

/// Longest LEN field the parser accepts; anything longer is treated as line noise.
pub const MAX_LENGTH_FIELD: usize = 2048;

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
