//! Bus benchmark: how many read-write cycles per second, how long each cycle takes, and how
//! much of it is this host's software (this crate, dynamixel2, the syscalls) rather than
//! waiting for the servos (or the emulator) and the bytes on the wire.
//!
//! # How the software time is measured
//!
//! Each cycle is bracketed by two clocks: the wall clock ([`Instant`]) and the calling
//! thread's CPU-time clock (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`). The thread's CPU time
//! advances only while the thread runs, in user space (building the sync read and sync write,
//! parsing and unstuffing replies, converting ticks) or in the kernel on its behalf (the
//! `write`, `poll` and `read` syscalls on the port). While the thread sleeps in `poll` waiting
//! for the emulator (another thread) or the servos to answer, it does not advance. So the CPU
//! time of a cycle is the host-side software time per cycle, measured, not inferred, and it
//! is the figure reported as "software overhead"; the wall-clock cycle time is reported
//! beside it, and the difference is time spent waiting.
//!
//! The wire-time floor (the cycle's bytes at the configured baud, 10 bits per byte) is
//! reported too: a pty has no wire time, a real bus cannot beat that floor, so on hardware
//! a cycle takes about the floor plus the software time plus the servos' return delays.

use std::time::{Duration, Instant};

use crate::arm::Arm;
use crate::bus::{wire_time, INSTRUCTION_OVERHEAD, STATUS_OVERHEAD};
use crate::error::BusError;
use crate::registers as reg;

/// Result of [`bench_bus`].
#[derive(Debug, Clone, PartialEq)]
pub struct BusBench {
    pub cycles: usize,
    pub cycles_per_s: f64,
    /// Bytes on the wire per cycle: sync read instruction, every reply, sync write.
    pub bytes_per_cycle: usize,
    /// Wire time of those bytes at the bus's baud (10 bits per byte): the floor no software
    /// can go below on a real bus.
    pub wire_floor_per_cycle: Duration,
    /// Host software time per cycle (the benchmark thread's CPU time: user code and syscalls,
    /// not the wait for replies), median and 99th percentile. See the module docs.
    pub overhead_p50: Duration,
    pub overhead_p99: Duration,
    /// Wall-clock time of a whole read+write cycle: median, 99th percentile and maximum.
    pub cycle_p50: Duration,
    pub cycle_p99: Duration,
    pub cycle_max: Duration,
    /// Cycles in which at least one servo did not deliver its position.
    pub failed_cycles: usize,
}

impl std::fmt::Display for BusBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        write!(
            f,
            "{} cycles: {:.0} cycles/s; cycle p50 {:.1} us, p99 {:.1} us, max {:.0} us; software overhead (host CPU time) p50 {:.1} us, p99 {:.1} us; wire floor {:.0} us/cycle ({} bytes); {} failed",
            self.cycles,
            self.cycles_per_s,
            us(self.cycle_p50),
            us(self.cycle_p99),
            us(self.cycle_max),
            us(self.overhead_p50),
            us(self.overhead_p99),
            us(self.wire_floor_per_cycle),
            self.bytes_per_cycle,
            self.failed_cycles
        )
    }
}

/// Wire bytes of one position-only cycle for `n` servos: sync read of `len` bytes + replies
/// + sync write of 4-byte goals.
pub fn cycle_bytes(n: usize, len: usize) -> usize {
    let sync_read = INSTRUCTION_OVERHEAD + 4 + n;
    let replies = n * (STATUS_OVERHEAD + len);
    let sync_write = INSTRUCTION_OVERHEAD + 4 + n * 5;
    sync_read + replies + sync_write
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// CPU time consumed so far by the calling thread (user and kernel).
#[cfg(unix)]
pub fn thread_cpu_time() -> Result<Duration, BusError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Err(BusError::CpuClock(std::io::Error::last_os_error()));
    }
    Ok(Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    ))
}

/// CPU time consumed so far by the calling thread (not available on this platform).
#[cfg(not(unix))]
pub fn thread_cpu_time() -> Result<Duration, BusError> {
    Err(BusError::CpuClock(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no per-thread CPU clock on this platform",
    )))
}

/// Runs `cycles` cycles of read (positions, with velocity and current every tick) and goal
/// write (each servo's goal = its present position, so a torqued arm holds still).
/// Health reads are skipped so every cycle has the same bytes.
///
/// Per cycle it records the wall-clock time and the calling thread's CPU time (the host
/// software time; see the module docs), and reports their distributions.
pub fn bench_bus(arm: &mut Arm, cycles: usize) -> Result<BusBench, BusError> {
    let n = arm.ids().len();
    let len = usize::from(reg::MOTION_BLOCK.len);
    let bytes = cycle_bytes(n, len);
    let floor = wire_time(bytes, arm.bus().baud());
    let mut reading = arm.new_reading();
    // Prime with one read so the goals are real positions.
    arm.read_into(1, &mut reading);
    let mut walls = Vec::with_capacity(cycles);
    let mut cpus = Vec::with_capacity(cycles);
    let mut failed = 0;
    let mut goals = vec![0.0; n];
    let start = Instant::now();
    for _ in 0..cycles {
        // The CPU-time interval lies inside the wall-clock one, so cpu <= wall per cycle.
        let t0 = Instant::now();
        let c0 = thread_cpu_time()?;
        arm.read_motion_only(&mut reading);
        if !reading.all_ok() {
            failed += 1;
        }
        goals.copy_from_slice(&reading.q);
        arm.write_goals(&goals)?;
        let c1 = thread_cpu_time()?;
        walls.push(t0.elapsed());
        cpus.push(c1.saturating_sub(c0));
    }
    let total = start.elapsed();
    walls.sort_unstable();
    cpus.sort_unstable();
    Ok(BusBench {
        cycles,
        cycles_per_s: if total.is_zero() {
            0.0
        } else {
            cycles as f64 / total.as_secs_f64()
        },
        bytes_per_cycle: bytes,
        wire_floor_per_cycle: floor,
        overhead_p50: percentile(&cpus, 0.5),
        overhead_p99: percentile(&cpus, 0.99),
        cycle_p50: percentile(&walls, 0.5),
        cycle_p99: percentile(&walls, 0.99),
        cycle_max: walls.last().copied().unwrap_or_default(),
        failed_cycles: failed,
    })
}
