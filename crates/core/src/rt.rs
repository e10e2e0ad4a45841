//! Real-time hygiene for the control thread, asked for with `control.realtime_priority`:
//! SCHED_FIFO, an optional CPU pin, locked memory and a prefaulted stack, so that neither the
//! scheduler nor a page fault lands in the middle of a tick. Each step that is refused leaves
//! a warning and the loop runs anyway (without the guarantee); `doctor` says beforehand which
//! would take effect, and status says which did.

use serde::{Deserialize, Serialize};

use crate::clock::{try_pin_cpu, try_realtime_priority};

/// Stack touched before the loop starts (the deepest tick uses far less).
pub const STACK_PREFAULT_KIB: usize = 256;

/// What took effect on the control thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealtimeState {
    /// e.g. "SCHED_FIFO 80", or "default" (not asked, or refused: see the log).
    pub scheduler: String,
    /// "current and future", "current only", "no".
    pub memory_locked: String,
    pub cpu: Option<usize>,
    pub stack_prefaulted_kib: usize,
    /// Warnings for what was asked and refused.
    pub refused: Vec<String>,
}

/// Applies everything `priority` and `cpu` ask for to the calling thread (and, for memory,
/// the process). Call on the control thread after everything the loop needs is allocated.
pub fn prepare_control_thread(priority: Option<u8>, cpu: Option<usize>) -> RealtimeState {
    let mut st = RealtimeState {
        scheduler: "default".into(),
        memory_locked: "no".into(),
        ..RealtimeState::default()
    };
    if let Some(c) = cpu {
        match try_pin_cpu(c) {
            Ok(()) => st.cpu = Some(c),
            Err(w) => st.refused.push(w),
        }
    }
    let Some(p) = priority else {
        return st;
    };
    match try_realtime_priority(p) {
        Ok(()) => st.scheduler = format!("SCHED_FIFO {p}"),
        Err(w) => st.refused.push(w),
    }
    match lock_memory() {
        Ok(what) => st.memory_locked = what.into(),
        Err(w) => st.refused.push(w),
    }
    prefault_stack();
    st.stack_prefaulted_kib = STACK_PREFAULT_KIB;
    st
}

/// `RLIMIT_MEMLOCK` (soft) in bytes; None when unlimited.
pub fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    if rc != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(r.rlim_cur)
    }
}

/// `RLIMIT_RTPRIO` (soft): the highest SCHED_FIFO priority an unprivileged process may ask for.
pub fn rtprio_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_RTPRIO, &mut r) };
    if rc != 0 {
        0
    } else {
        r.rlim_cur
    }
}

/// Whether the process holds CAP_IPC_LOCK (then `RLIMIT_MEMLOCK` does not apply).
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .and_then(|l| u64::from_str_radix(l.trim_start_matches("CapEff:").trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Locks the process's memory. With an unlimited `RLIMIT_MEMLOCK` (or CAP_IPC_LOCK), current
/// and future pages (MCL_FUTURE); with a finite limit only the current ones, because
/// MCL_FUTURE would make later allocations beyond the limit fail (a policy reload, the
/// recorder growing a buffer).
pub fn lock_memory() -> Result<&'static str, String> {
    let (flags, what) = if memlock_limit().is_none() || has_cap_ipc_lock() {
        (libc::MCL_CURRENT | libc::MCL_FUTURE, "current and future")
    } else {
        (libc::MCL_CURRENT, "current only")
    };
    // SAFETY: mlockall takes flags only.
    let rc = unsafe { libc::mlockall(flags) };
    if rc == 0 {
        Ok(what)
    } else {
        Err(format!(
            "mlockall refused ({}; RLIMIT_MEMLOCK {}): page faults can land inside a tick. \
             Fix: run as the systemd unit (LimitMEMLOCK=infinity) or `ulimit -l unlimited`",
            std::io::Error::last_os_error(),
            memlock_limit()
                .map(|b| format!("{} KiB", b / 1024))
                .unwrap_or_else(|| "unlimited".into())
        ))
    }
}

/// Touches `STACK_PREFAULT_KIB` of stack, so the deepest call of a tick finds its pages mapped.
#[inline(never)]
pub fn prefault_stack() {
    let mut buf = [0u8; STACK_PREFAULT_KIB * 1024];
    for b in buf.iter_mut().step_by(4096) {
        // A volatile write the compiler cannot drop.
        // SAFETY: b is a valid, aligned u8 in `buf`.
        unsafe { std::ptr::write_volatile(b, 1) };
    }
    std::hint::black_box(&buf);
}

/// What `doctor` reports: whether each step would take effect for this user now.
pub fn capabilities(priority: Option<u8>) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    let rtprio = rtprio_limit();
    let want = u64::from(priority.unwrap_or(50));
    // Trying is the only sure test (CAP_SYS_NICE overrides the limit): on a scratch thread.
    let fifo = std::thread::spawn(move || try_realtime_priority(want as u8))
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".into()));
    out.push(match fifo {
        Ok(()) => (
            true,
            format!("SCHED_FIFO {want} can be set (RLIMIT_RTPRIO {rtprio})"),
        ),
        Err(w) => (false, w),
    });
    let memlock = memlock_limit();
    out.push(match memlock {
        None => (
            true,
            "RLIMIT_MEMLOCK unlimited: memory is locked current and future".into(),
        ),
        Some(b) if has_cap_ipc_lock() => (
            true,
            format!(
                "RLIMIT_MEMLOCK {} KiB, but CAP_IPC_LOCK lifts it: memory is locked current and future",
                b / 1024
            ),
        ),
        Some(b) => (
            false,
            format!(
                "RLIMIT_MEMLOCK {} KiB: only pages mapped at start can be locked, maybe not even those. \
                 Fix: LimitMEMLOCK=infinity in the unit (systemd/intervened.service has it) or `ulimit -l unlimited`",
                b / 1024
            ),
        ),
    });
    out
}

/// The installed unit's real-time limits: `(unit path, ["LimitRTPRIO=..", "LimitMEMLOCK=.."])`.
pub fn unit_limits() -> Option<(std::path::PathBuf, Vec<String>)> {
    [
        "/etc/systemd/system/intervened.service",
        "/lib/systemd/system/intervened.service",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
    .map(|p| {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut lines: Vec<String> = ["LimitRTPRIO", "LimitMEMLOCK", "CPUAffinity"]
            .iter()
            .map(|k| {
                text.lines()
                    .map(str::trim)
                    .find(|l| l.starts_with(&format!("{k}=")))
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k} not set"))
            })
            .collect();
        lines.dedup();
        (p, lines)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unasked_steps_are_reported_as_not_taken() {
        let st = prepare_control_thread(None, None);
        assert_eq!(st.scheduler, "default");
        assert_eq!(st.memory_locked, "no");
        assert!(st.refused.is_empty());
    }

    #[test]
    fn a_refused_priority_says_why_and_the_loop_can_go_on() {
        // Unprivileged (the usual CI case) the priority is refused with a fix; privileged it
        // takes effect. Either way the call returns and says which.
        let st = std::thread::spawn(|| prepare_control_thread(Some(10), None))
            .join()
            .unwrap();
        if st.scheduler == "default" {
            assert!(st.refused.iter().any(|w| w.contains("Fix")), "{st:?}");
        } else {
            assert_eq!(st.scheduler, "SCHED_FIFO 10");
        }
        assert_eq!(st.stack_prefaulted_kib, STACK_PREFAULT_KIB);
    }
}
