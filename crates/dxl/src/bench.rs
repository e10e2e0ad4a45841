//! Bus benchmark: how many read-write cycles per second, and how much of each cycle is
//! software (host, USB, emulator) rather than bytes on the wire.

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
    /// can go below.
    pub wire_floor_per_cycle: Duration,
    /// Cycle time minus the wire floor, median and 99th percentile.
    pub overhead_p50: Duration,
    pub overhead_p99: Duration,
    pub cycle_max: Duration,
    /// Cycles in which at least one servo did not deliver its position.
    pub failed_cycles: usize,
}

impl std::fmt::Display for BusBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cycles: {:.0} cycles/s; wire floor {:.0} us/cycle ({} bytes); software overhead p50 {:.0} us, p99 {:.0} us; max cycle {:.0} us; {} failed",
            self.cycles,
            self.cycles_per_s,
            self.wire_floor_per_cycle.as_secs_f64() * 1e6,
            self.bytes_per_cycle,
            self.overhead_p50.as_secs_f64() * 1e6,
            self.overhead_p99.as_secs_f64() * 1e6,
            self.cycle_max.as_secs_f64() * 1e6,
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

/// Runs `cycles` cycles of read (positions, with velocity and current every tick) and goal
/// write (each servo's goal = its present position, so a torqued arm holds still).
/// Health reads are skipped so every cycle has the same bytes.
pub fn bench_bus(arm: &mut Arm, cycles: usize) -> Result<BusBench, BusError> {
    let n = arm.ids().len();
    let len = reg::MOTION_BLOCK_LEN as usize;
    let bytes = cycle_bytes(n, len);
    let floor = wire_time(bytes, arm.bus().baud());
    let mut reading = arm.new_reading();
    // Prime with one read so the goals are real positions.
    arm.read_into(1, &mut reading);
    let mut times = Vec::with_capacity(cycles);
    let mut failed = 0;
    let mut goals = vec![0.0; n];
    let start = Instant::now();
    for _ in 0..cycles {
        let t0 = Instant::now();
        arm.read_motion_only(&mut reading);
        if !reading.all_ok() {
            failed += 1;
        }
        goals.copy_from_slice(&reading.q);
        arm.write_goals(&goals)?;
        times.push(t0.elapsed());
    }
    let total = start.elapsed();
    let mut overheads: Vec<Duration> = times.iter().map(|t| t.saturating_sub(floor)).collect();
    overheads.sort();
    Ok(BusBench {
        cycles,
        cycles_per_s: if total.is_zero() {
            0.0
        } else {
            cycles as f64 / total.as_secs_f64()
        },
        bytes_per_cycle: bytes,
        wire_floor_per_cycle: floor,
        overhead_p50: percentile(&overheads, 0.5),
        overhead_p99: percentile(&overheads, 0.99),
        cycle_max: times.iter().max().copied().unwrap_or_default(),
        failed_cycles: failed,
    })
}
