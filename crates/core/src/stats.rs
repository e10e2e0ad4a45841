//! Per-tick timing statistics: wake-up lateness (period error), work time, overruns, the
//! time of each phase of a tick, and a flight recorder of the slowest ticks.
//! Everything is fixed-size, so recording never allocates on the loop's hot path.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:>7.1} us   p99 {:>7.1} us   p99.9 {:>7.1} us   max {:>8.1} us   (n={})",
            self.p50_us, self.p99_us, self.p999_us, self.max_us, self.count
        )
    }
}

/// A microsecond histogram from 1 us to 60 s with 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // Bounds are constants known to be valid for hdrhistogram.
        match Histogram::new_with_bounds(1, 60_000_000, 3) {
            Ok(h) => Self(h),
            Err(_) => Self(
                Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid")),
            ),
        }
    }

    pub fn record_s(&mut self, seconds: f64) {
        let us = (seconds * 1e6).round().max(0.0) as u64;
        // saturating_record clamps to the histogram's range instead of failing.
        self.0.saturating_record(us.max(1));
    }

    pub fn summary(&self) -> Summary {
        let h = &self.0;
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            max_us: h.max() as f64,
            mean_us: h.mean(),
        }
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Counts per bucket for a latency plot: `(upper bound us, count)` for the recorded range,
    /// with buckets growing by `factor` (log scale). Not for the hot path (it allocates).
    pub fn log_buckets(&self, first_us: u64, factor: f64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if self.0.is_empty() {
            return out;
        }
        let mut lo = 0u64;
        let mut hi = first_us.max(1);
        let max = self.0.max();
        loop {
            let n = self.0.count_between(lo, hi);
            out.push((hi, n));
            if hi >= max {
                break;
            }
            lo = hi + 1;
            hi = ((hi as f64 * factor).ceil() as u64).max(hi + 1);
        }
        out
    }
}

/// The phases of one control tick, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Building the read instruction, writing it and decoding the replies (our code).
    BusRead,
    /// Waiting for the servos' replies after the instruction was written: the bus, the
    /// servos (or the emulator) and the kernel's serial path, not our code.
    BusWait,
    /// Sensors, the gamepad, the control socket and episode bookkeeping.
    Inputs,
    /// The policy's step (an inline forward pass, or handing the observation to its worker).
    Policy,
    /// Arbitration, handback blending and the safety filter.
    Safety,
    /// Writing the goals (one sync write; no reply is awaited).
    BusWrite,
    /// Handing the frame and events to the recorder thread.
    Record,
    /// Publishing status for the service shell.
    Status,
    /// The simulator's share of the tick (the world, the simulated human, the bus barrier);
    /// absent on a real robot.
    Sim,
}

pub const PHASES: usize = 9;

impl Phase {
    pub const ALL: [Phase; PHASES] = [
        Phase::BusRead,
        Phase::BusWait,
        Phase::Inputs,
        Phase::Policy,
        Phase::Safety,
        Phase::BusWrite,
        Phase::Record,
        Phase::Status,
        Phase::Sim,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::BusRead => "bus read",
            Phase::BusWait => "bus wait",
            Phase::Inputs => "inputs",
            Phase::Policy => "policy",
            Phase::Safety => "safety",
            Phase::BusWrite => "bus write",
            Phase::Record => "record",
            Phase::Status => "status",
            Phase::Sim => "sim",
        }
    }

    /// Whether time in this phase is spent outside our code (the bus or the simulator).
    pub fn outside_our_code(self) -> bool {
        matches!(self, Phase::BusWait | Phase::Sim)
    }
}

/// One tick's time per phase, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TickPhases(pub [f32; PHASES]);

impl TickPhases {
    pub fn get(&self, p: Phase) -> f64 {
        f64::from(self.0[p as usize])
    }

    /// The phase that took longest.
    pub fn largest(&self) -> Phase {
        let mut best = Phase::BusRead;
        for p in Phase::ALL {
            if self.get(p) > self.get(best) {
                best = p;
            }
        }
        best
    }
}

/// Splits a tick's wall time into phases: `mark(p)` charges the time since the last mark to
/// `p`. Costs one clock read per mark.
#[derive(Debug, Clone, Copy)]
pub struct PhaseClock {
    started: Instant,
    last: Instant,
    pub phases: TickPhases,
}

impl Default for PhaseClock {
    fn default() -> Self {
        Self::start()
    }
}

impl PhaseClock {
    pub fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            phases: TickPhases::default(),
        }
    }

    /// When the tick started.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn mark(&mut self, p: Phase) {
        let now = Instant::now();
        self.add(p, now.duration_since(self.last));
        self.last = now;
    }

    /// Moves `d` of time already charged to `from` over to `to` (the bus wait inside a read).
    pub fn move_time(&mut self, from: Phase, to: Phase, d: Duration) {
        let us = (d.as_secs_f64() * 1e6) as f32;
        let moved = us.min(self.phases.0[from as usize]);
        self.phases.0[from as usize] -= moved;
        self.phases.0[to as usize] += moved;
    }

    fn add(&mut self, p: Phase, d: Duration) {
        self.phases.0[p as usize] += (d.as_secs_f64() * 1e6) as f32;
    }
}

/// One tick as the flight recorder keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SlowTick {
    pub tick: u64,
    /// Work time of the tick (us).
    pub work_us: f64,
    /// How late the tick's wake-up was (us).
    pub late_us: f64,
    /// Involuntary context switches of the control thread during the tick's work: the kernel
    /// ran something else on its core (host preemption, not our code).
    pub preempted: u32,
    /// CPU time the control thread got during the work (us). Far below `work_us` in a phase
    /// that never blocks means the thread was runnable but not running: the (virtual) machine
    /// took the CPU away.
    pub cpu_us: f64,
    pub phases: TickPhases,
}

/// Why a tick ran past the next deadline. Counted for every overrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OverrunCause {
    /// The tick itself woke more than half a period late: the host did not run the thread on
    /// time (the bare sleep loop sees the same).
    WokeLate,
    /// The kernel switched the thread out during the work (a context switch was counted).
    Preempted,
    /// The thread was off the CPU for most of the work without being switched out by the
    /// guest kernel: the virtual machine's host took the CPU (steal time), or a serial call
    /// blocked in the kernel.
    OffCpu,
    /// The phase that took longest (outside our code for the bus wait and the simulator).
    Phase(Phase),
}

pub const OVERRUN_CAUSES: usize = 3 + PHASES;

impl OverrunCause {
    fn index(self) -> usize {
        match self {
            OverrunCause::WokeLate => 0,
            OverrunCause::Preempted => 1,
            OverrunCause::OffCpu => 2,
            OverrunCause::Phase(p) => 3 + p as usize,
        }
    }

    fn from_index(i: usize) -> Self {
        match i {
            0 => OverrunCause::WokeLate,
            1 => OverrunCause::Preempted,
            2 => OverrunCause::OffCpu,
            i => OverrunCause::Phase(Phase::ALL[(i - 3).min(PHASES - 1)]),
        }
    }

    pub fn describe(self) -> String {
        match self {
            OverrunCause::WokeLate => {
                "woke late (host scheduling; the bare loop sees it too)".into()
            }
            OverrunCause::Preempted => "preempted by the host during the tick".into(),
            OverrunCause::OffCpu => {
                "off the CPU for most of the tick (a serial call blocked in the kernel, or the host)"
                    .into()
            }
            OverrunCause::Phase(p) if p.outside_our_code() => {
                format!("{} (outside our code)", p.name())
            }
            OverrunCause::Phase(p) => format!("{} (our code)", p.name()),
        }
    }

    pub fn outside_our_code(self) -> bool {
        match self {
            OverrunCause::Phase(p) => p.outside_our_code(),
            _ => true,
        }
    }
}

impl SlowTick {
    /// Why this tick, the one before an overrun, ran past the next deadline.
    pub fn overrun_cause(&self, period_us: f64) -> OverrunCause {
        let largest = self.phases.largest();
        if self.late_us > period_us * 0.5 {
            OverrunCause::WokeLate
        } else if self.preempted > 0 {
            OverrunCause::Preempted
        } else if largest.outside_our_code() {
            OverrunCause::Phase(largest)
        } else if self.work_us - self.cpu_us > 0.5 * self.work_us {
            // Most of the tick without the CPU: the host ran something else (steal time in a
            // VM), or a serial call blocked in the kernel's tty layer. Our code needs the CPU.
            OverrunCause::OffCpu
        } else {
            OverrunCause::Phase(largest)
        }
    }
}

/// The N slowest ticks seen, kept in a fixed array (no allocation while recording).
#[derive(Debug, Clone, Copy)]
pub struct FlightRecorder<const N: usize> {
    slots: [SlowTick; N],
    len: usize,
}

impl<const N: usize> Default for FlightRecorder<N> {
    fn default() -> Self {
        Self {
            slots: [SlowTick::default(); N],
            len: 0,
        }
    }
}

impl<const N: usize> FlightRecorder<N> {
    /// The work time a tick must exceed to be kept (0 until the recorder is full).
    pub fn threshold_us(&self) -> f64 {
        if self.len < N {
            0.0
        } else {
            self.slots
                .iter()
                .map(|s| s.work_us)
                .fold(f64::INFINITY, f64::min)
        }
    }

    pub fn offer(&mut self, t: SlowTick) {
        if self.len < N {
            if let Some(s) = self.slots.get_mut(self.len) {
                *s = t;
                self.len += 1;
            }
            return;
        }
        let mut min_i = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if s.work_us < self.slots[min_i].work_us {
                min_i = i;
            }
        }
        if t.work_us > self.slots[min_i].work_us {
            self.slots[min_i] = t;
        }
    }

    /// Slowest first.
    pub fn sorted(&self) -> Vec<SlowTick> {
        let mut v: Vec<SlowTick> = self.slots.iter().take(self.len).copied().collect();
        v.sort_by(|a, b| b.work_us.total_cmp(&a.work_us));
        v
    }
}

/// The first N overruns, each with the tick that ran past its deadline (kept in a fixed array).
#[derive(Debug, Clone, Copy)]
pub struct OverrunLog<const N: usize> {
    slots: [SlowTick; N],
    len: usize,
}

impl<const N: usize> Default for OverrunLog<N> {
    fn default() -> Self {
        Self {
            slots: [SlowTick::default(); N],
            len: 0,
        }
    }
}

impl<const N: usize> OverrunLog<N> {
    pub fn push(&mut self, t: SlowTick) {
        if let Some(s) = self.slots.get_mut(self.len) {
            *s = t;
            self.len += 1;
        }
    }

    pub fn entries(&self) -> &[SlowTick] {
        &self.slots[..self.len.min(N)]
    }
}

/// CPU time consumed so far by the calling thread (user and kernel); None where the clock
/// fails. (The bus crate has the same clock for its benchmark; the core cannot depend on it.)
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| {
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    })
}

/// Involuntary context switches of the calling thread so far (getrusage RUSAGE_THREAD).
pub fn involuntary_switches() -> u64 {
    // SAFETY: ru is a valid out-pointer for the duration of the call.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut ru) == 0 {
            ru.ru_nivcsw as u64
        } else {
            0
        }
    }
}

/// Slowest ticks kept by the flight recorder.
pub const FLIGHT_RECORDER_TICKS: usize = 16;
/// Overruns kept with their phase times (later ones are only counted).
pub const OVERRUN_LOG: usize = 64;

/// The loop's timing, as reported in status, diagnostics and `bench loop`.
#[derive(Debug, Clone, Default)]
pub struct LoopTiming {
    pub period_error: LatencyHistogram,
    pub work: LatencyHistogram,
    pub overruns: u64,
    pub ticks: u64,
    /// Per phase, in [`Phase::ALL`] order.
    pub phases: [LatencyHistogram; PHASES],
    pub slowest: FlightRecorder<FLIGHT_RECORDER_TICKS>,
    pub overrun_log: OverrunLog<OVERRUN_LOG>,
    /// Ticks during whose work the control thread was preempted.
    pub preempted_ticks: u64,
    /// Every overrun, by cause ([`OverrunCause`] index).
    pub overrun_causes: [u64; OVERRUN_CAUSES],
}

/// One phase's timing.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct PhaseSummary {
    pub phase: &'static str,
    pub p99_us: f64,
    pub max_us: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LoopTimingSummary {
    pub ticks: u64,
    pub overruns: u64,
    pub period_error: Summary,
    pub work: Summary,
    pub phases: Vec<PhaseSummary>,
    /// The slowest ticks, slowest first.
    pub slowest: Vec<SlowTick>,
    /// The tick before each overrun (the one that ran past the next deadline), first 64.
    pub overrun_ticks: Vec<SlowTick>,
    pub preempted_ticks: u64,
    /// Every overrun by cause, largest first: (cause, count, outside our code).
    pub overrun_causes: Vec<(String, u64, bool)>,
}

impl LoopTiming {
    /// Counts an overrun caused by `prev`, the tick that ran past the deadline.
    pub fn count_overrun(&mut self, prev: SlowTick, period_us: f64) {
        self.overruns += 1;
        self.overrun_log.push(prev);
        if let Some(c) = self
            .overrun_causes
            .get_mut(prev.overrun_cause(period_us).index())
        {
            *c += 1;
        }
    }

    /// Records one tick's work; `late_us` is how late its wake-up was, `cpu_us` the CPU time
    /// the thread got during it.
    pub fn record_tick(
        &mut self,
        tick: u64,
        late_us: f64,
        work: Duration,
        cpu_us: f64,
        p: &PhaseClock,
        preempted: u32,
    ) -> SlowTick {
        let work_us = work.as_secs_f64() * 1e6;
        self.work.record_s(work.as_secs_f64());
        for (h, us) in self.phases.iter_mut().zip(p.phases.0) {
            h.record_s(f64::from(us) * 1e-6);
        }
        self.preempted_ticks += u64::from(preempted > 0);
        let t = SlowTick {
            tick,
            work_us,
            late_us,
            preempted,
            cpu_us,
            phases: p.phases,
        };
        if work_us > self.slowest.threshold_us() {
            self.slowest.offer(t);
        }
        t
    }

    pub fn summary(&self) -> LoopTimingSummary {
        LoopTimingSummary {
            ticks: self.ticks,
            overruns: self.overruns,
            period_error: self.period_error.summary(),
            work: self.work.summary(),
            phases: Phase::ALL
                .iter()
                .zip(&self.phases)
                .map(|(p, h)| {
                    let s = h.summary();
                    PhaseSummary {
                        phase: p.name(),
                        p99_us: s.p99_us,
                        max_us: s.max_us,
                    }
                })
                .collect(),
            slowest: self.slowest.sorted(),
            overrun_ticks: self.overrun_log.entries().to_vec(),
            preempted_ticks: self.preempted_ticks,
            overrun_causes: {
                let mut v: Vec<(String, u64, bool)> = self
                    .overrun_causes
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| {
                        let c = OverrunCause::from_index(i);
                        (c.describe(), *n, c.outside_our_code())
                    })
                    .collect();
                v.sort_by_key(|c| std::cmp::Reverse(c.1));
                v
            },
        }
    }
}

/// Percentile summary of a list of samples in seconds (benchmarks outside the loop).
pub fn summarize_s(samples: &[f64]) -> Summary {
    let mut h = LatencyHistogram::new();
    for s in samples {
        h.record_s(*s);
    }
    h.summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(tick: u64, work_us: f64) -> SlowTick {
        SlowTick {
            tick,
            work_us,
            ..SlowTick::default()
        }
    }

    #[test]
    fn the_flight_recorder_keeps_the_slowest_ticks() {
        let mut f = FlightRecorder::<3>::default();
        for (t, w) in [
            (1, 5.0),
            (2, 50.0),
            (3, 1.0),
            (4, 20.0),
            (5, 30.0),
            (6, 2.0),
        ] {
            f.offer(slow(t, w));
        }
        let ticks: Vec<u64> = f.sorted().iter().map(|s| s.tick).collect();
        assert_eq!(ticks, vec![2, 5, 4]);
        assert_eq!(f.threshold_us(), 20.0);
    }

    #[test]
    fn phases_split_a_tick_and_the_bus_wait_moves_out_of_the_read() {
        let mut c = PhaseClock::start();
        std::thread::sleep(std::time::Duration::from_millis(3));
        c.mark(Phase::BusRead);
        c.move_time(
            Phase::BusRead,
            Phase::BusWait,
            std::time::Duration::from_millis(2),
        );
        c.mark(Phase::Policy);
        let read = c.phases.get(Phase::BusRead);
        let wait = c.phases.get(Phase::BusWait);
        assert!((wait - 2000.0).abs() < 1.0, "{wait}");
        assert!(read >= 900.0, "{read}");
        // Never more moved than was there.
        c.move_time(Phase::Policy, Phase::Sim, std::time::Duration::from_secs(1));
        assert!(c.phases.get(Phase::Policy) >= 0.0);
    }

    #[test]
    fn overruns_are_attributed_to_the_host_the_bus_or_our_code() {
        let period = 1000.0;
        let mut t = slow(1, 1500.0);
        t.phases.0[Phase::Policy as usize] = 1400.0;
        t.cpu_us = 1450.0;
        assert_eq!(t.overrun_cause(period), OverrunCause::Phase(Phase::Policy));
        assert!(!t.overrun_cause(period).outside_our_code());
        t.cpu_us = 100.0;
        assert_eq!(t.overrun_cause(period), OverrunCause::OffCpu);
        t.preempted = 1;
        assert_eq!(t.overrun_cause(period), OverrunCause::Preempted);
        t.late_us = 900.0;
        assert_eq!(t.overrun_cause(period), OverrunCause::WokeLate);
        let mut b = slow(2, 1500.0);
        b.cpu_us = 100.0;
        b.phases.0[Phase::BusWait as usize] = 1300.0;
        assert_eq!(b.overrun_cause(period), OverrunCause::Phase(Phase::BusWait));
        assert!(b.overrun_cause(period).outside_our_code());
        let mut timing = LoopTiming::default();
        timing.count_overrun(t, period);
        timing.count_overrun(b, period);
        timing.count_overrun(b, period);
        let s = timing.summary();
        assert_eq!(s.overruns, 3);
        assert_eq!(s.overrun_causes.first().map(|c| c.1), Some(2));
        assert!(s.overrun_causes.iter().all(|c| c.2));
    }

    #[test]
    fn the_overrun_log_keeps_the_first_n() {
        let mut l = OverrunLog::<2>::default();
        for t in 0..5 {
            l.push(slow(t, 1.0));
        }
        let ticks: Vec<u64> = l.entries().iter().map(|s| s.tick).collect();
        assert_eq!(ticks, vec![0, 1]);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let samples: Vec<f64> = (1..=1000).map(|i| i as f64 * 1e-6).collect();
        let s = summarize_s(&samples);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{s:?}");
        assert_eq!(s.max_us, 1000.0);
    }
}
