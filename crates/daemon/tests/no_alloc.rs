//! The control thread does not allocate once it runs: the real loop at 500 Hz on the simulated
//! robot (in lockstep, so a loaded test machine cannot turn into bus faults; the pacer is the
//! only part that differs from real time, and it allocates nothing either), with a TorchScript policy, the recorder, the gamepad, and a takeover and a
//! handback by a person on the pad, counted by a global allocator that sees every heap
//! allocation the thread makes through Rust.
//!
//! Inference runs on its worker thread, as `policy.inference = "worker"` (the default) has it;
//! with `"auto"` a fast model runs inline, and libtorch allocates inside every forward pass.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::python_policy_with;
use intervened_daemon::runtime::{self, RunOptions};
use intervened_robot::{Axis, Button, RobotConfig};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicU64 = AtomicU64::new(0);
static TRACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// 0: not known yet, 1: the control thread, 2: any other thread.
    static KIND: Cell<u8> = const { Cell::new(0) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is named "control" (read once per thread, without allocating).
fn on_control_thread() -> bool {
    KIND.with(|k| {
        if k.get() == 0 {
            let mut name = [0u8; 16];
            // SAFETY: PR_GET_NAME writes at most 16 bytes into `name`.
            let rc = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr(), 0, 0, 0) };
            let is = rc == 0 && name.starts_with(b"control\0");
            k.set(if is { 1 } else { 2 });
        }
        k.get() == 1
    })
}

fn note() {
    if !ARMED.load(Ordering::Relaxed) || !on_control_thread() {
        return;
    }
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    // The first few get a backtrace, so a failure says where; the capture itself allocates, so
    // it runs with the hook switched off for this thread.
    if n < 5 && !IN_HOOK.with(|h| h.replace(true)) {
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        if let Ok(mut t) = TRACES.lock() {
            t.push(bt);
        }
        IN_HOOK.with(|h| h.set(false));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if !IN_HOOK.with(|h| h.get()) {
            note();
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if !IN_HOOK.with(|h| h.get()) {
            note();
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if !IN_HOOK.with(|h| h.get()) {
            note();
        }
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn python_policy(out: &Path, chunk: usize) {
    python_policy_with(out, "steady", 0.0, chunk, 0);
    // The fixture is written for 50 Hz; this loop runs at 500.
    let side = out.join("policy.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&side).unwrap()).unwrap();
    v["fps"] = serde_json::json!(500.0);
    std::fs::write(&side, v.to_string()).unwrap();
}

#[test]
fn the_control_thread_does_not_allocate_once_running() {
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policy");
    python_policy(&pol, 10);
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml");
    let mut cfg = RobotConfig::load(&p).unwrap();
    cfg.control.rate_hz = 500.0;
    cfg.teleop.require_gamepad = false;
    // Lockstep runs faster than real time, so on a loaded machine the worker's reply can be
    // hundreds of ticks late: that is a starvation (a Hold, whose fault path may allocate),
    // not what this test is about. The starvation path has its own tests.
    cfg.policy.action_timeout_ms = 600_000;
    // One episode covers the whole measured window (an episode's start and end allocate: its
    // metadata and file name are built then).
    cfg.sim.episode_seconds = 120.0;
    let warmup_ticks = 1500;
    let measured_ticks = 3000;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let opts = RunOptions {
        policy: Some(pol),
        data: Some(dir.path().join("data")),
        episodes: Some(1),
        sim_handles: Some(tx),
        // Inference as in real time (on its worker thread), although the loop runs in lockstep.
        inference: Some(intervened_robot::InferenceMode::Worker),
        max_ticks: Some(warmup_ticks + measured_ticks + 2000),
        ..RunOptions::default()
    };
    let run = std::thread::spawn(move || runtime::run(cfg, opts).unwrap());
    let h = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    h.pad.connect();
    let tick = || h.status.lock().map(|s| s.tick).unwrap_or(0);
    let wait_tick = |t: u64| {
        let t0 = Instant::now();
        while tick() < t {
            assert!(t0.elapsed() < Duration::from_secs(60), "the loop stalled");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Warm-up: the episode starts, the policy runs, and one takeover and handback grow every
    // buffer they touch.
    wait_tick(200);
    h.pad.press(Button::RightBumper);
    h.pad.set_axis(Axis::LeftStickX, 0.5);
    wait_tick(500);
    h.pad.set_axis(Axis::LeftStickX, 0.0);
    h.pad.release(Button::RightBumper);
    wait_tick(warmup_ticks);

    ARMED.store(true, Ordering::SeqCst);
    let armed_at = tick();
    wait_tick(armed_at + 500);
    h.pad.press(Button::RightBumper);
    h.pad.set_axis(Axis::LeftStickX, -0.5);
    wait_tick(armed_at + 1500);
    h.pad.set_axis(Axis::LeftStickX, 0.0);
    h.pad.release(Button::RightBumper);
    wait_tick(armed_at + measured_ticks);
    ARMED.store(false, Ordering::SeqCst);
    let counted = tick() - armed_at;
    let allocations = COUNT.load(Ordering::SeqCst);

    let report = run.join().unwrap();
    let lr = &report.loop_report;
    assert!(
        lr.takeovers >= 2,
        "the pad's takeovers did not happen: {}",
        lr.takeovers
    );
    assert!(lr.policy_actions > 1000, "the policy did not run: {lr:?}");
    assert_eq!(lr.dropped_frames, 0);
    let traces = TRACES.lock().unwrap().join("\n----\n");
    assert_eq!(
        allocations, 0,
        "{allocations} allocation(s) on the control thread in {counted} ticks; the first:\n{traces}"
    );
    eprintln!(
        "0 allocations on the control thread in {counted} ticks (takeover and handback included)"
    );
}
