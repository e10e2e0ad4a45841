//! The servo bus: Protocol 2.0 transactions over `dynamixel2`, with per-servo fault
//! classification, bounded retries and deadlines that never overrun a control tick.
//!
//! dynamixel2 0.9.1 has no timeout knob on its high-level calls (they wait the reply's wire
//! time plus a flat 34 ms), and its plain `sync_read` returns a shorter vector when a servo is
//! missing while misattributing the replies after it. So this module uses only its low-level
//! pieces, `write_instruction` and `read_status_response_deadline`, and collects the replies
//! itself: every reply is matched to its servo by id, a missing servo in the middle of a sync
//! read costs nothing extra (later replies end the wait), and every wait ends at a deadline.
//!
//! serial2 rounds read timeouts down to whole milliseconds, so a wait can end up to 1 ms before
//! its deadline (never after it); the reply windows add 1 ms to make up for that.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dynamixel2::serial2::SerialPort;
use dynamixel2::{InvalidMessage, ReadError, WriteError};
use tracing::{debug, error, info, warn};

use intervened_dxl_proto::packet::{self, inst, status_error};
use intervened_dxl_proto::{x_series, Value};

use crate::error::{BusError, FaultClass, ServoFault};
use crate::registers;

type RawBus = dynamixel2::Bus<Vec<u8>, Vec<u8>>;

/// Read and write buffers: large enough for a sync write to every id and any legal reply.
const BUFFER_LEN: usize = 2048;
pub use intervened_dxl_proto::packet::{INSTRUCTION_OVERHEAD, STATUS_OVERHEAD};
/// Highest id a servo can have; 253.. are reserved.
const MAX_ID: usize = 252;

/// Time to move `bytes` over the wire at `baud` (8N1: 10 bits per byte).
pub fn wire_time(bytes: usize, baud: u32) -> Duration {
    if baud == 0 {
        return Duration::ZERO;
    }
    let bits = bytes as u128 * 10;
    Duration::from_nanos(((bits * 1_000_000_000).div_ceil(baud as u128)) as u64)
}

/// A servo's answer to a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingInfo {
    pub id: u8,
    pub model: u16,
    pub firmware: u8,
    /// The alert bit: a hardware error is latched in the servo.
    pub alert: bool,
}

/// Counts of faults by class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    pub timeout: u64,
    pub corrupt: u64,
    pub servo: u64,
    pub hardware_alert: u64,
    pub port_gone: u64,
}

impl FaultCounts {
    fn add(&mut self, f: ServoFault) {
        let c = match f.class() {
            FaultClass::Timeout => &mut self.timeout,
            FaultClass::Corrupt => &mut self.corrupt,
            FaultClass::Servo => &mut self.servo,
            FaultClass::HardwareAlert => &mut self.hardware_alert,
            FaultClass::PortGone => &mut self.port_gone,
        };
        *c += 1;
    }

    pub fn get(&self, class: FaultClass) -> u64 {
        match class {
            FaultClass::Timeout => self.timeout,
            FaultClass::Corrupt => self.corrupt,
            FaultClass::Servo => self.servo,
            FaultClass::HardwareAlert => self.hardware_alert,
            FaultClass::PortGone => self.port_gone,
        }
    }

    pub fn total(&self) -> u64 {
        self.timeout + self.corrupt + self.servo + self.hardware_alert + self.port_gone
    }
}

/// Bus counters. Faults are counted per attempt, so a corrupt reply that a retry then fixed
/// still shows up (as a fault and as `recovered`).
#[derive(Debug, Clone)]
pub struct BusStats {
    /// Instructions sent (every attempt, reads and writes).
    pub transactions: u64,
    /// Attempts after the first within one call.
    pub retries: u64,
    /// Servo replies that failed on one attempt and succeeded on a later one.
    pub recovered: u64,
    /// Well-formed packets that matched no pending request (late or duplicate replies).
    pub stray_packets: u64,
    /// Successful reopenings of the port.
    pub reconnects: u64,
    /// Faults by class, over all servos.
    pub faults: FaultCounts,
    per_servo: Vec<FaultCounts>,
}

impl Default for BusStats {
    fn default() -> Self {
        Self {
            transactions: 0,
            retries: 0,
            recovered: 0,
            stray_packets: 0,
            reconnects: 0,
            faults: FaultCounts::default(),
            per_servo: vec![FaultCounts::default(); MAX_ID + 1],
        }
    }
}

impl BusStats {
    /// Fault counts of one servo.
    pub fn servo(&self, id: u8) -> FaultCounts {
        self.per_servo.get(id as usize).copied().unwrap_or_default()
    }

    fn record(&mut self, id: u8, f: ServoFault) {
        self.faults.add(f);
        if let Some(c) = self.per_servo.get_mut(id as usize) {
            c.add(f);
        }
    }
}

/// What happened to one read of a status packet.
enum Event {
    /// A reply for pending slot `k` was stored.
    Reply { k: usize, alert: bool },
    /// A well-formed packet nobody is waiting for.
    Stray,
    /// A garbled packet (bad CRC, wrong instruction field...).
    Corrupt,
    /// A status packet carrying an error number.
    MotorError(u8),
    /// Nothing more will come in this exchange.
    Stop(ServoFault),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    CorruptSeen,
    Done,
}

fn classify_read_error(e: ReadError) -> Event {
    match e {
        ReadError::Io(e) => match e.kind() {
            ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::Interrupted => {
                Event::Stop(ServoFault::Timeout)
            }
            _ => {
                debug!(error = %e, "serial read failed");
                Event::Stop(ServoFault::PortGone)
            }
        },
        // A garbled length field: dynamixel2 keeps the bytes, so this exchange cannot go on.
        ReadError::BufferFull(_) => Event::Stop(ServoFault::Corrupt),
        ReadError::InvalidMessage(InvalidMessage::InvalidInstruction(_)) => Event::Stray,
        ReadError::InvalidMessage(_) => Event::Corrupt,
        ReadError::MotorError(m) => Event::MotorError(m.raw),
    }
}

/// Reads the next status packet, waiting until `end` at most.
///
/// dynamixel2 hands its deadline to serial2, which polls with whole milliseconds: a wait of
/// less than 1 ms becomes `poll(0)` and times out at once. At 500 Hz and above the read budget
/// is under a millisecond, so every reply not already in the buffer was lost. Here dynamixel2
/// only ever parses what is buffered or ready (a deadline well inside `poll(0)`), and the
/// waiting is done by `ppoll` with nanosecond precision.
fn read_reply<T>(
    raw: &mut RawBus,
    end: Instant,
    on: impl FnOnce(Result<dynamixel2::StatusPacket<'_>, ReadError>) -> T,
) -> T {
    use std::os::unix::io::AsRawFd;
    let fd = raw.serial_port().as_raw_fd();
    loop {
        // A deadline still in the future when dynamixel2 checks it, but under 1 ms: serial2
        // turns it into poll(0), so this call never blocks.
        let r = raw.read_status_response_deadline(Instant::now() + Duration::from_micros(500));
        if let Err(ReadError::Io(e)) = &r {
            if e.kind() == ErrorKind::TimedOut && wait_readable(fd, end) {
                continue;
            }
        }
        return on(r);
    }
}

/// Waits until `fd` is readable or `end` passes (nanosecond precision); true if readable.
fn wait_readable(fd: std::os::unix::io::RawFd, end: Instant) -> bool {
    loop {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: pfd and ts are valid for the call; a null sigmask keeps the thread's mask.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if rc > 0 {
            return true;
        }
        if rc == 0 {
            return false;
        }
        if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return false;
        }
    }
}

/// A Protocol 2.0 bus on one serial port.
pub struct Bus {
    raw: Option<RawBus>,
    path: Option<PathBuf>,
    baud: u32,
    retries: u32,
    reply_margin: Duration,
    stats: BusStats,
    /// Last Hardware_Error_Status read per id, reported with alerts.
    hw_error: Vec<u8>,
    // Scratch buffers reused by every call so the hot path does not allocate.
    params: Vec<u8>,
    attempt_ids: Vec<u8>,
    slots: Vec<usize>,
    slot_state: Vec<Slot>,
    failed_before: Vec<bool>,
    /// Time spent waiting for replies (from the instruction written to the exchange's end),
    /// summed since the bus was opened: the control loop's "waiting on the bus" phase.
    reply_wait: Duration,
    /// When the last instruction finished writing (taken by the exchange that waits on it).
    sent_at: Option<Instant>,
    /// Scratch for replies dynamixel2 left stuffed (see `exchange`).
    unstuffed: Vec<u8>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("path", &self.path)
            .field("baud", &self.baud)
            .field("connected", &self.raw.is_some())
            .field("retries", &self.retries)
            .field("reply_margin", &self.reply_margin)
            .finish_non_exhaustive()
    }
}

fn open_fix(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => {
            "is the adapter plugged in? `intervened doctor` lists USB serial adapters; \
             /dev/intervened-bus comes from crates/dxl/udev/99-intervened.rules"
                .into()
        }
        ErrorKind::PermissionDenied => {
            "add the user to the dialout group (sudo usermod -aG dialout $USER, then log in again) \
             or install the udev rule, which sets mode 0660 group dialout"
                .into()
        }
        _ if e.raw_os_error() == Some(16) => {
            "another program holds the port (Dynamixel Wizard, another daemon); close it".into()
        }
        _ => "check the adapter and the port path in the config".into(),
    }
}

impl Bus {
    /// The default extra wait for replies beyond their wire time: covers a 1 ms USB latency
    /// timer, the servo's processing time, and scheduling jitter on a busy host.
    pub const DEFAULT_REPLY_MARGIN: Duration = Duration::from_millis(8);

    /// Opens a serial device (a path or a symlink such as /dev/intervened-bus, or a pty).
    pub fn open(path: &Path, baud: u32) -> Result<Self, BusError> {
        let raw = Self::open_raw(path, baud)?;
        info!(path = %path.display(), baud, "opened servo bus");
        Ok(Self::with_raw(raw, Some(path.to_path_buf()), baud))
    }

    /// Wraps a port that is already open and configured (raw mode, 8N1), e.g. one end of
    /// `SerialPort::pair()`. Such a bus cannot `reconnect()`.
    pub fn from_serial_port(port: SerialPort, baud: u32) -> Result<Self, BusError> {
        let raw =
            RawBus::with_buffers(port, vec![0; BUFFER_LEN], vec![0; BUFFER_LEN]).map_err(|e| {
                BusError::Open {
                    path: PathBuf::from("<open port>"),
                    baud,
                    fix: "use a raw-mode serial port".into(),
                    source: std::io::Error::other(format!("{e:?}")),
                }
            })?;
        Ok(Self::with_raw(raw, None, baud))
    }

    fn open_raw(path: &Path, baud: u32) -> Result<RawBus, BusError> {
        RawBus::open_with_buffers(path, baud, vec![0; BUFFER_LEN], vec![0; BUFFER_LEN]).map_err(
            |source| BusError::Open {
                path: path.to_path_buf(),
                baud,
                fix: open_fix(&source),
                source,
            },
        )
    }

    fn with_raw(raw: RawBus, path: Option<PathBuf>, baud: u32) -> Self {
        Self {
            raw: Some(raw),
            path,
            baud,
            retries: 1,
            reply_margin: Self::DEFAULT_REPLY_MARGIN,
            stats: BusStats::default(),
            hw_error: vec![0; MAX_ID + 1],
            params: Vec::with_capacity(BUFFER_LEN),
            attempt_ids: Vec::with_capacity(MAX_ID + 1),
            slots: Vec::with_capacity(MAX_ID + 1),
            slot_state: Vec::with_capacity(MAX_ID + 1),
            failed_before: Vec::with_capacity(MAX_ID + 1),
            reply_wait: Duration::ZERO,
            sent_at: None,
            unstuffed: Vec::with_capacity(BUFFER_LEN),
        }
    }

    /// How many times a failed servo is retried within one call (BusConfig::retries).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The extra wait for replies beyond their wire time.
    pub fn set_reply_margin(&mut self, margin: Duration) {
        self.reply_margin = margin;
    }

    pub fn reply_margin(&self) -> Duration {
        self.reply_margin
    }

    pub fn baud(&self) -> u32 {
        self.baud
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether the port is open (false after the device vanished, until `reconnect()`).
    pub fn is_connected(&self) -> bool {
        self.raw.is_some()
    }

    pub fn stats(&self) -> &BusStats {
        &self.stats
    }

    /// Time spent waiting for replies since the bus was opened (see the field's comment).
    pub fn reply_wait(&self) -> Duration {
        self.reply_wait
    }

    /// Changes the baud rate of the open port (the doctor uses it to find servos at the wrong
    /// rate).
    pub fn set_baud(&mut self, baud: u32) -> Result<(), BusError> {
        let gone = self.gone_error();
        let raw = self.raw.as_mut().ok_or(gone)?;
        raw.set_baud_rate(baud).map_err(|source| BusError::Open {
            path: self.path.clone().unwrap_or_default(),
            baud,
            fix: "this adapter does not support the rate".into(),
            source,
        })?;
        self.baud = baud;
        Ok(())
    }

    fn gone_error(&self) -> BusError {
        BusError::PortGone {
            path: self.path.clone().unwrap_or_default(),
        }
    }

    /// Closes and reopens the port by path: after an unplug and replug the device node (or the
    /// udev symlink) comes back and this picks it up.
    pub fn reconnect(&mut self) -> Result<(), BusError> {
        let Some(path) = self.path.clone() else {
            return Err(BusError::CannotReconnect);
        };
        // Close the old descriptor first: an exclusive port cannot be opened twice.
        self.raw = None;
        let raw = Self::open_raw(&path, self.baud)?;
        self.raw = Some(raw);
        self.stats.reconnects += 1;
        info!(path = %path.display(), "servo bus reconnected");
        Ok(())
    }

    /// The time to wait for an exchange: wire time of the instruction and replies plus the
    /// margin, plus 1 ms for serial2's millisecond rounding.
    pub fn reply_window(
        &self,
        instruction_params: usize,
        replies: usize,
        reply_params: usize,
    ) -> Duration {
        let bytes =
            INSTRUCTION_OVERHEAD + instruction_params + replies * (STATUS_OVERHEAD + reply_params);
        wire_time(bytes, self.baud) + self.reply_margin + Duration::from_millis(1)
    }

    /// Marks the port gone and drops it, so later calls fail fast until `reconnect()`.
    fn port_gone(&mut self) {
        if self.raw.take().is_some() {
            warn!(path = ?self.path, "servo bus port gone");
        }
    }

    /// Whether a silent port has actually vanished (its device node is gone).
    fn device_vanished(&self) -> bool {
        self.path.as_ref().is_some_and(|p| !p.exists())
    }

    /// Sends `self.params` as one instruction, without waiting for replies.
    fn send(&mut self, packet: u8, instruction: u8) -> Result<(), ServoFault> {
        let Some(raw) = self.raw.as_mut() else {
            return Err(ServoFault::PortGone);
        };
        self.stats.transactions += 1;
        let params = &self.params;
        let sent = catch_unwind(AssertUnwindSafe(|| {
            raw.write_instruction(packet, instruction, params.len(), |buf| {
                buf.copy_from_slice(params)
            })
        }));
        match sent {
            Ok(Ok(())) => {
                self.sent_at = Some(Instant::now());
                Ok(())
            }
            Ok(Err(WriteError::BufferTooSmall(e))) => {
                error!(?e, "instruction does not fit the write buffer");
                Err(ServoFault::Corrupt)
            }
            Ok(Err(WriteError::DiscardBuffer(e) | WriteError::Write(e))) => {
                debug!(error = %e, "serial write failed");
                self.port_gone();
                Err(ServoFault::PortGone)
            }
            Err(_) => {
                error!("dynamixel2 panicked while writing an instruction");
                Err(ServoFault::Corrupt)
            }
        }
    }

    /// One attempt: sends `self.params` and collects the replies of `self.attempt_ids` (which
    /// answer in that order), each with `len` parameter bytes, into the caller's `data` and
    /// `status` at the positions `self.slots`.
    fn exchange(
        &mut self,
        packet: u8,
        instruction: u8,
        len: usize,
        data: &mut [u8],
        status: &mut [Result<(), ServoFault>],
        end: Instant,
    ) -> Result<(), ServoFault> {
        let n = self.attempt_ids.len();
        if let Err(f) = self.send(packet, instruction) {
            for &s in &self.slots {
                if let Some(st) = status.get_mut(s) {
                    *st = Err(f);
                }
            }
            return Err(f);
        }
        let mut state = std::mem::take(&mut self.slot_state);
        state.clear();
        state.resize(n, Slot::Pending);
        let mut next = 0usize;
        let mut last_done = false;
        let mut heard_anything = false;
        let mut stop = ServoFault::Timeout;
        let mut stray = 0u64;
        while !last_done && state.iter().any(|s| *s != Slot::Done) {
            let Some(raw) = self.raw.as_mut() else {
                stop = ServoFault::PortGone;
                break;
            };
            let ids = &self.attempt_ids;
            let slots = &self.slots;
            let st = &state;
            let data_ref = &mut *data;
            let scratch = &mut self.unstuffed;
            let event = catch_unwind(AssertUnwindSafe(|| {
                read_reply(raw, end, |r| match r {
                    Ok(p) => {
                        let id = p.packet_id();
                        let params = p.parameters();
                        let k = (0..n)
                            .find(|&k| ids.get(k) == Some(&id) && st.get(k) != Some(&Slot::Done));
                        match (k, k.and_then(|k| slots.get(k))) {
                            (Some(k), Some(&slot)) if params.len() == len || params.len() > len => {
                                // dynamixel2 0.9.1 misses the stuffing after a run of three or
                                // more FF (FF FF FF FD FD stays stuffed), so a longer reply is
                                // unstuffed once more here; it must then have the right length.
                                let params = if params.len() == len {
                                    params
                                } else {
                                    packet::unstuff_into(params, scratch);
                                    scratch.as_slice()
                                };
                                match data_ref
                                    .get_mut(slot * len..slot * len + len)
                                    .filter(|_| params.len() == len)
                                {
                                    Some(dst) => {
                                        dst.copy_from_slice(params);
                                        Event::Reply {
                                            k,
                                            alert: p.alert(),
                                        }
                                    }
                                    None => Event::Stray,
                                }
                            }
                            _ => Event::Stray,
                        }
                    }
                    Err(e) => classify_read_error(e),
                })
            }))
            .unwrap_or_else(|_| {
                error!("dynamixel2 panicked on a garbled packet");
                Event::Stop(ServoFault::Corrupt)
            });
            // The first pending slot at or after `next`: where an unattributable packet belongs.
            let attribute = |state: &[Slot], next: usize| {
                (next..n).find(|&k| state.get(k) == Some(&Slot::Pending))
            };
            match event {
                Event::Reply { k, alert } => {
                    heard_anything = true;
                    if let Some(s) = state.get_mut(k) {
                        *s = Slot::Done;
                    }
                    let id = self.attempt_ids.get(k).copied().unwrap_or(0);
                    if let Some(st) = self.slots.get(k).and_then(|&s| status.get_mut(s)) {
                        *st = if alert {
                            Err(ServoFault::HardwareAlert(
                                self.hw_error.get(id as usize).copied().unwrap_or(0),
                            ))
                        } else {
                            Ok(())
                        };
                    }
                    next = k + 1;
                    last_done = k + 1 == n;
                }
                Event::Stray => {
                    heard_anything = true;
                    stray += 1;
                }
                Event::Corrupt | Event::MotorError(_) => {
                    heard_anything = true;
                    match attribute(&state, next) {
                        Some(k) => {
                            if let (Event::MotorError(e), Some(st)) =
                                (&event, self.slots.get(k).and_then(|&s| status.get_mut(s)))
                            {
                                *st = Err(ServoFault::Servo(e & 0x7f));
                                if let Some(s) = state.get_mut(k) {
                                    *s = Slot::Done;
                                }
                            } else if let Some(s) = state.get_mut(k) {
                                *s = Slot::CorruptSeen;
                            }
                            next = k + 1;
                            last_done = k + 1 == n;
                        }
                        None => stray += 1,
                    }
                }
                Event::Stop(f) => {
                    stop = f;
                    break;
                }
            }
        }
        if stop == ServoFault::Timeout && !heard_anything && self.device_vanished() {
            stop = ServoFault::PortGone;
        }
        if stop == ServoFault::PortGone {
            self.port_gone();
        }
        self.stats.stray_packets += stray;
        for (k, s) in state.iter().enumerate() {
            let fault = match s {
                Slot::Done => continue,
                Slot::CorruptSeen => ServoFault::Corrupt,
                // Replies come in order: a pending slot before the last reply never answered.
                Slot::Pending if stop == ServoFault::PortGone => ServoFault::PortGone,
                Slot::Pending if k < next => ServoFault::Timeout,
                Slot::Pending => stop,
            };
            if let Some(st) = self.slots.get(k).and_then(|&s| status.get_mut(s)) {
                *st = Err(fault);
            }
        }
        self.slot_state = state;
        if stop == ServoFault::PortGone {
            Err(ServoFault::PortGone)
        } else {
            Ok(())
        }
    }

    /// Runs an exchange with bounded retries of the servos that failed.
    ///
    /// `build` writes the instruction parameters for the ids in `self.attempt_ids`.
    /// Retries happen only while one more attempt fits before `deadline`.
    #[allow(clippy::too_many_arguments)]
    fn with_retries(
        &mut self,
        packet: u8,
        instruction: u8,
        ids: &[u8],
        len: usize,
        data: &mut [u8],
        status: &mut [Result<(), ServoFault>],
        deadline: Option<Instant>,
        build: &dyn Fn(&[u8], &mut Vec<u8>),
    ) {
        let n = ids.len();
        for s in status.iter_mut().take(n) {
            *s = Err(ServoFault::Timeout);
        }
        let mut failed_before = std::mem::take(&mut self.failed_before);
        failed_before.clear();
        failed_before.resize(n, false);
        self.slots.clear();
        self.slots.extend(0..n);
        let mut attempt = 0u32;
        loop {
            self.attempt_ids.clear();
            for &s in &self.slots {
                self.attempt_ids.push(ids.get(s).copied().unwrap_or(0));
            }
            let mut params = std::mem::take(&mut self.params);
            params.clear();
            build(&self.attempt_ids, &mut params);
            let window = self.reply_window(params.len(), self.slots.len(), len);
            self.params = params;
            let now = Instant::now();
            let mut end = now + window;
            if let Some(d) = deadline {
                // The first attempt may be shortened by the deadline; a retry must fit whole.
                if (attempt > 0 && end > d) || now >= d {
                    break;
                }
                end = end.min(d);
            }
            if attempt > 0 {
                self.stats.retries += 1;
            }
            let result = self.exchange(packet, instruction, len, data, status, end);
            if let Some(sent) = self.sent_at.take() {
                self.reply_wait += sent.elapsed();
            }
            for (k, &s) in self.slots.iter().enumerate() {
                let id = self.attempt_ids.get(k).copied().unwrap_or(0);
                match status.get(s) {
                    Some(Err(f)) => {
                        self.stats.record(id, *f);
                        if let Some(fb) = failed_before.get_mut(s) {
                            *fb = true;
                        }
                    }
                    Some(Ok(())) if failed_before.get(s) == Some(&true) => {
                        self.stats.recovered += 1
                    }
                    _ => {}
                }
            }
            if result.is_err() || attempt >= self.retries {
                break;
            }
            self.slots
                .retain(|&s| matches!(status.get(s), Some(Err(f)) if f.retryable()));
            if self.slots.is_empty() {
                break;
            }
            attempt += 1;
        }
        self.failed_before = failed_before;
    }

    /// Sync read of `len` bytes at `address` from every servo in `ids`.
    ///
    /// Servo `i`'s bytes go to `data[i*len..(i+1)*len]` and its outcome to `status[i]`; on a
    /// fault its bytes are left as they were. `HardwareAlert` comes with valid data.
    /// Returns how many servos delivered data. Nothing is waited for past `deadline`.
    pub fn sync_read(
        &mut self,
        ids: &[u8],
        address: u16,
        len: u16,
        data: &mut [u8],
        status: &mut [Result<(), ServoFault>],
        deadline: Option<Instant>,
    ) -> Result<usize, BusError> {
        let l = len as usize;
        if data.len() < ids.len() * l {
            return Err(BusError::Length {
                expected: ids.len() * l,
                got: data.len(),
            });
        }
        if status.len() < ids.len() {
            return Err(BusError::Length {
                expected: ids.len(),
                got: status.len(),
            });
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let build =
            |ids: &[u8], p: &mut Vec<u8>| packet::sync_read_params_into(address, len, ids, p);
        self.with_retries(
            packet::BROADCAST_ID,
            inst::SYNC_READ,
            ids,
            l,
            data,
            status,
            deadline,
            &build,
        );
        self.refresh_alert_bits(ids, status, deadline);
        Ok(status
            .iter()
            .take(ids.len())
            .filter(|s| s.is_ok() || matches!(s, Err(f) if f.data_valid()))
            .count())
    }

    /// For servos that newly raised the alert bit, reads Hardware_Error_Status once so the
    /// alert carries its bits (only if it fits before the deadline).
    fn refresh_alert_bits(
        &mut self,
        ids: &[u8],
        status: &mut [Result<(), ServoFault>],
        deadline: Option<Instant>,
    ) {
        for (i, &id) in ids.iter().enumerate() {
            if status.get(i) != Some(&Err(ServoFault::HardwareAlert(0))) {
                continue;
            }
            let window = self.reply_window(4, 1, 1);
            if deadline.is_some_and(|d| Instant::now() + window > d) {
                return;
            }
            if let Ok(bits) = self.read_u8(id, registers::HARDWARE_ERROR_STATUS) {
                self.note_hardware_error(id, bits);
                if let Some(st) = status.get_mut(i) {
                    *st = Err(ServoFault::HardwareAlert(bits));
                }
            }
        }
    }

    /// One instruction to one servo, with retries; `out` receives the reply parameters.
    fn single(
        &mut self,
        id: u8,
        instruction: u8,
        params: &[u8],
        out: &mut [u8],
    ) -> Result<(), ServoFault> {
        let mut status = [Err(ServoFault::Timeout)];
        let build = |_: &[u8], p: &mut Vec<u8>| p.extend_from_slice(params);
        let len = out.len();
        self.with_retries(id, instruction, &[id], len, out, &mut status, None, &build);
        match status[0] {
            // Single transfers return the data; the alert is kept for hardware_alert_bits().
            Err(ServoFault::HardwareAlert(_)) => Ok(()),
            other => other,
        }
    }

    /// Pings one servo: its model number and firmware version.
    pub fn ping(&mut self, id: u8) -> Result<PingInfo, ServoFault> {
        let mut out = [0u8; 3];
        let mut status = [Err(ServoFault::Timeout)];
        let build = |_: &[u8], _: &mut Vec<u8>| {};
        self.with_retries(
            id,
            inst::PING,
            &[id],
            3,
            &mut out,
            &mut status,
            None,
            &build,
        );
        let alert = match status[0] {
            Ok(()) => false,
            Err(ServoFault::HardwareAlert(_)) => true,
            Err(f) => return Err(f),
        };
        Ok(PingInfo {
            id,
            model: u16::from_le_bytes([out[0], out[1]]),
            firmware: out[2],
            alert,
        })
    }

    /// Broadcast ping: every servo that answers within the scan window, sorted by id.
    pub fn scan(&mut self) -> Result<Vec<PingInfo>, BusError> {
        self.params.clear();
        self.send(packet::BROADCAST_ID, inst::PING)
            .map_err(|_| self.gone_error())?;
        let end = Instant::now()
            + wire_time(STATUS_OVERHEAD + 3, self.baud) * 253
            + self.reply_margin * 2;
        let mut found = Vec::new();
        while let Some(raw) = self.raw.as_mut() {
            let r = catch_unwind(AssertUnwindSafe(|| {
                match raw.read_status_response_deadline(end) {
                    Ok(p) if p.parameters().len() == 3 => {
                        let b = p.parameters();
                        Ok(Some(PingInfo {
                            id: p.packet_id(),
                            model: u16::from_le_bytes([b[0], b[1]]),
                            firmware: b[2],
                            alert: p.alert(),
                        }))
                    }
                    Ok(_) => Ok(None),
                    Err(e) => Err(classify_read_error(e)),
                }
            }));
            match r {
                Ok(Ok(Some(p))) => found.push(p),
                Ok(Ok(None))
                | Ok(Err(Event::Corrupt))
                | Ok(Err(Event::Stray))
                | Ok(Err(Event::MotorError(_))) => {
                    self.stats.stray_packets += 1;
                }
                Ok(Err(Event::Stop(ServoFault::PortGone))) => {
                    self.port_gone();
                    return Err(self.gone_error());
                }
                _ => break,
            }
        }
        found.sort_by_key(|p| p.id);
        found.dedup_by_key(|p| p.id);
        Ok(found)
    }

    /// Reads `out.len()` bytes at `address` from one servo.
    pub fn read_bytes(&mut self, id: u8, address: u16, out: &mut [u8]) -> Result<(), ServoFault> {
        let len =
            u16::try_from(out.len()).map_err(|_| ServoFault::Servo(status_error::DATA_LENGTH))?;
        self.single(id, inst::READ, &packet::addr_len(address, len), out)
    }

    pub fn read_u8(&mut self, id: u8, address: u16) -> Result<u8, ServoFault> {
        let mut b = [0u8; 1];
        self.read_bytes(id, address, &mut b)?;
        Ok(b[0])
    }

    pub fn read_u16(&mut self, id: u8, address: u16) -> Result<u16, ServoFault> {
        let mut b = [0u8; 2];
        self.read_bytes(id, address, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn read_i32(&mut self, id: u8, address: u16) -> Result<i32, ServoFault> {
        let mut b = [0u8; 4];
        self.read_bytes(id, address, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// Writes bytes to one servo and waits for its acknowledgement.
    pub fn write_bytes(&mut self, id: u8, address: u16, value: &[u8]) -> Result<(), ServoFault> {
        let mut p = [0u8; 16];
        let total = 2 + value.len();
        let dst = p
            .get_mut(..total)
            .ok_or(ServoFault::Servo(status_error::DATA_LENGTH))?;
        dst[..2].copy_from_slice(&address.to_le_bytes());
        dst[2..].copy_from_slice(value);
        self.single(id, inst::WRITE, dst, &mut [])
    }

    pub fn write_u8(&mut self, id: u8, address: u16, value: u8) -> Result<(), ServoFault> {
        self.write_bytes(id, address, &[value])
    }

    pub fn write_i32(&mut self, id: u8, address: u16, value: i32) -> Result<(), ServoFault> {
        self.write_bytes(id, address, &value.to_le_bytes())
    }

    /// Sync write of `len` bytes per servo; `data` holds `ids.len() * len` bytes in id order.
    /// Servos do not acknowledge a sync write, so the only failure is the port itself.
    pub fn sync_write(
        &mut self,
        address: u16,
        len: u16,
        ids: &[u8],
        data: &[u8],
    ) -> Result<(), BusError> {
        let l = len as usize;
        if data.len() != ids.len() * l {
            return Err(BusError::Length {
                expected: ids.len() * l,
                got: data.len(),
            });
        }
        self.params.clear();
        packet::sync_write_params_into(address, len, ids, data, &mut self.params);
        self.send(packet::BROADCAST_ID, inst::SYNC_WRITE)
            .map_err(|f| match f {
                ServoFault::PortGone => self.gone_error(),
                fault => BusError::Servo {
                    id: packet::BROADCAST_ID,
                    op: "sync write",
                    fault,
                },
            })
    }

    /// Sync write of Goal_Position (raw ticks) to the servos in `ids`.
    pub fn write_goal_positions(&mut self, ids: &[u8], ticks: &[i32]) -> Result<(), BusError> {
        if ids.len() != ticks.len() {
            return Err(BusError::Length {
                expected: ids.len(),
                got: ticks.len(),
            });
        }
        let goal = x_series::GOAL_POSITION;
        self.params.clear();
        self.params
            .extend_from_slice(&packet::addr_len(goal.addr(), goal.size()));
        for (id, &t) in ids.iter().zip(ticks) {
            self.params.push(*id);
            t.put_le(&mut self.params);
        }
        self.send(packet::BROADCAST_ID, inst::SYNC_WRITE)
            .map_err(|f| match f {
                ServoFault::PortGone => self.gone_error(),
                fault => BusError::Servo {
                    id: packet::BROADCAST_ID,
                    op: "goal write",
                    fault,
                },
            })
    }

    /// Turns torque on or off, servo by servo with acknowledgement, so each outcome is known.
    pub fn set_torque(&mut self, ids: &[u8], on: bool, status: &mut [Result<(), ServoFault>]) {
        for (i, &id) in ids.iter().enumerate() {
            let r = self.write_u8(id, registers::TORQUE_ENABLE, on as u8);
            if let Some(s) = status.get_mut(i) {
                *s = r;
            }
        }
    }

    /// The last Hardware_Error_Status bits read from a servo (health reads and alerts).
    pub fn hardware_error_bits(&self, id: u8) -> u8 {
        self.hw_error.get(id as usize).copied().unwrap_or(0)
    }

    /// Records Hardware_Error_Status bits read by a health read.
    pub(crate) fn note_hardware_error(&mut self, id: u8, bits: u8) {
        if let Some(b) = self.hw_error.get_mut(id as usize) {
            *b = bits;
        }
    }
}
