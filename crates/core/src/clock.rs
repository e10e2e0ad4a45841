//! Pacing the control loop: real time on absolute deadlines, or lockstep with the simulator.
//!
//! Real time sleeps to absolute deadlines with `clock_nanosleep(TIMER_ABSTIME)` (relative
//! sleeps drift: a loop asked for 500 Hz that sleeps "the rest of the period" runs at ~480 Hz),
//! with the thread's timer slack set to 1 ns and the last `spin` of each period busy-waited.
//! A late tick is never "caught up" with a burst: if a deadline is missed by more than a whole
//! period the schedule skips ahead and the overrun is counted.

use std::time::{Duration, Instant};

/// Paces ticks and stamps them.
pub trait Pacer: Send {
    /// Seconds since the loop started, as stamped on frames.
    fn now(&self) -> f64;
    /// Blocks until tick `tick` may start; returns how late the wake-up was, in seconds, and
    /// whether a deadline was missed (an overrun).
    fn wait_for_tick(&mut self, tick: u64) -> Wake;
    /// The nominal period in seconds.
    fn period(&self) -> f64;
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wake {
    pub late_s: f64,
    pub overrun: bool,
}

/// Lockstep pacing: time is `tick * period`, and waiting never sleeps.
#[derive(Debug, Clone)]
pub struct LockstepPacer {
    period: f64,
    tick: u64,
}

impl LockstepPacer {
    pub fn new(period: f64) -> Self {
        Self { period, tick: 0 }
    }
}

impl Pacer for LockstepPacer {
    fn now(&self) -> f64 {
        self.tick as f64 * self.period
    }
    fn wait_for_tick(&mut self, tick: u64) -> Wake {
        self.tick = tick;
        Wake::default()
    }
    fn period(&self) -> f64 {
        self.period
    }
}

/// Wall-clock pacing on absolute CLOCK_MONOTONIC deadlines.
pub struct RealtimePacer {
    period: Duration,
    start: Instant,
    start_ts: libc::timespec,
    spin: Duration,
    /// Ticks skipped after overruns: deadlines are `start + (tick + skipped) * period`.
    skipped: u64,
}

impl RealtimePacer {
    /// `spin` is the tail of each period that is busy-waited (0 to never spin).
    pub fn new(period_s: f64, spin: Duration) -> Self {
        // Timer slack defaults to 50 us, which is most of the wake-up lateness; 1 ns removes it.
        // SAFETY: prctl with PR_SET_TIMERSLACK takes an integer argument and touches no memory.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        }
        Self {
            period: Duration::from_secs_f64(period_s),
            start: Instant::now(),
            start_ts: monotonic_now(),
            spin,
            skipped: 0,
        }
    }

    fn deadline(&self, tick: u64) -> Duration {
        self.period
            .saturating_mul((tick + self.skipped).min(u32::MAX as u64) as u32)
    }
}

fn monotonic_now() -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer for the duration of the call.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts
}

fn add(ts: libc::timespec, d: Duration) -> libc::timespec {
    let mut sec = ts.tv_sec + d.as_secs() as libc::time_t;
    let mut nsec = ts.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Sleeps until an absolute CLOCK_MONOTONIC time, restarting on signals.
pub fn sleep_until_abs(ts: &libc::timespec) {
    loop {
        // SAFETY: ts points to a valid timespec; the remainder pointer may be null with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

impl Pacer for RealtimePacer {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn wait_for_tick(&mut self, tick: u64) -> Wake {
        let mut target = self.deadline(tick);
        let mut overrun = false;
        let elapsed = self.start.elapsed();
        if elapsed > target + self.period {
            // More than a period behind: skip ahead rather than burst.
            let behind = ((elapsed - target).as_nanos() / self.period.as_nanos().max(1)) as u64;
            self.skipped += behind;
            target = self.deadline(tick);
            overrun = true;
        } else if elapsed > target {
            overrun = true;
        }
        if !overrun {
            let sleep_to = target.saturating_sub(self.spin);
            if sleep_to > elapsed {
                sleep_until_abs(&add(self.start_ts, sleep_to));
            }
            while self.start.elapsed() < target {
                std::hint::spin_loop();
            }
        }
        let late = self.start.elapsed().saturating_sub(target);
        Wake {
            late_s: late.as_secs_f64(),
            overrun,
        }
    }

    fn period(&self) -> f64 {
        self.period.as_secs_f64()
    }
}

/// Asks for SCHED_FIFO at `priority` for the calling thread; returns a warning on refusal.
pub fn try_realtime_priority(priority: u8) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: priority as libc::c_int,
    };
    // SAFETY: param is a valid sched_param; 0 means the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "SCHED_FIFO priority {priority} refused ({}); running with the default scheduler. \
             Fix: run as the systemd service (LimitRTPRIO=99) or grant CAP_SYS_NICE",
            std::io::Error::last_os_error()
        ))
    }
}

/// Pins the calling thread to one CPU; returns a warning on refusal.
pub fn try_pin_cpu(cpu: usize) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; 0 means the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(format!("cpu {cpu} is out of range"));
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "pinning to cpu {cpu} refused ({}); the control thread floats",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockstep_time_is_tick_times_period() {
        let mut p = LockstepPacer::new(0.02);
        p.wait_for_tick(50);
        assert!((p.now() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn realtime_holds_the_rate_without_drift() {
        // 200 ticks at 1 kHz must take 200 ms on absolute deadlines, not 200 x (1 ms + overhead).
        let mut p = RealtimePacer::new(0.001, Duration::from_micros(100));
        let t0 = Instant::now();
        for t in 1..=200 {
            p.wait_for_tick(t);
        }
        let took = t0.elapsed().as_secs_f64();
        assert!(took >= 0.199, "finished early: {took}");
        assert!(took < 0.26, "drifted: {took}");
    }

    #[test]
    fn overrun_is_counted_and_skips_ahead() {
        let mut p = RealtimePacer::new(0.002, Duration::ZERO);
        p.wait_for_tick(1);
        std::thread::sleep(Duration::from_millis(10));
        let w = p.wait_for_tick(2);
        assert!(w.overrun);
        // The next tick is on schedule again rather than a burst of catch-up ticks.
        let w = p.wait_for_tick(3);
        assert!(!w.overrun, "{w:?}");
    }
}
