//! `intervened bench loop`: the real-time loop on the simulated robot (policy, recording,
//! gamepad and takeovers on) beside a bare sleep loop with the same scheduling, at each rate,
//! with every late tick explained by the phase it spent its time in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use intervened_daemon::clock::{Pacer, RealtimePacer};
use intervened_daemon::runtime::{self, RunOptions};
use intervened_daemon::stats::{
    involuntary_switches, LatencyHistogram, LoopTimingSummary, Summary,
};
use intervened_robot::{Axis, Button, RobotConfig};
use serde::Serialize;

pub struct LoopBench {
    pub config: PathBuf,
    pub rates: Vec<f64>,
    pub seconds: f64,
    /// The bare loop's duration (its tails settle within a couple of minutes).
    pub bare_seconds: f64,
    pub policy: PathBuf,
    pub priority: Option<u8>,
    pub cpu: Option<usize>,
    pub out: PathBuf,
}

/// A bare loop: sleep to each absolute deadline and do nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct BareResult {
    pub seconds: f64,
    pub period_error: Summary,
    pub overruns: u64,
    /// Wake-ups during which the thread was preempted (involuntary context switches).
    pub preempted_ticks: u64,
    #[serde(skip)]
    pub hist: LatencyHistogram,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub rate_hz: f64,
    pub seconds: f64,
    pub bare: BareResult,
    pub timing: LoopTimingSummary,
    pub takeovers: u64,
    pub takeover_latency: Summary,
    pub takeover_read_latency: Summary,
    pub takeovers_untimed: u64,
    pub dropped_frames: u64,
    pub bus_errors: u64,
    pub policy_actions: u64,
    pub realtime: intervened_daemon::rt::RealtimeState,
    #[serde(skip)]
    pub loop_hist: LatencyHistogram,
}

/// The bare loop's floor, measured on a thread scheduled like the control thread.
fn bare_loop(
    rate: f64,
    seconds: f64,
    priority: Option<u8>,
    cpu: Option<usize>,
) -> Result<BareResult> {
    std::thread::Builder::new()
        .name("bare-loop".into())
        .spawn(move || {
            // Exactly the control thread's set-up (priority, pin, locked memory, stack).
            for w in intervened_daemon::rt::prepare_control_thread(priority, cpu).refused {
                eprintln!("{w}");
            }
            let ticks = (rate * seconds) as u64;
            let mut pacer = RealtimePacer::new(1.0 / rate, Duration::from_micros(100));
            let mut hist = LatencyHistogram::new();
            let mut overruns = 0;
            let mut preempted_ticks = 0;
            for t in 1..=ticks {
                let before = involuntary_switches();
                let w = pacer.wait_for_tick(t);
                preempted_ticks += u64::from(involuntary_switches() > before);
                hist.record_s(w.late_s);
                overruns += u64::from(w.overrun);
            }
            BareResult {
                seconds,
                period_error: hist.summary(),
                overruns,
                preempted_ticks,
                hist,
            }
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the bare sleep loop panicked"))
}

/// A person on the pad: every 3 s hold the takeover button for 1 s, pushing a stick.
fn operator(pad: intervened_teleop::VirtualGamepad, stop: Arc<AtomicBool>) {
    pad.connect();
    let sleep = |d: Duration| {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    let mut sign = 1.0;
    while sleep(Duration::from_secs(2)) {
        pad.press(Button::RightBumper);
        pad.set_axis(Axis::LeftStickX, 0.4 * sign);
        let more = sleep(Duration::from_secs(1));
        pad.set_axis(Axis::LeftStickX, 0.0);
        pad.release(Button::RightBumper);
        sign = -sign;
        if !more {
            break;
        }
    }
}

fn run_rate(b: &LoopBench, rate: f64) -> Result<RateResult> {
    let mut cfg = RobotConfig::load(&b.config)?;
    cfg.control.rate_hz = rate;
    cfg.control.realtime_priority = b.priority;
    cfg.control.cpu = b.cpu;
    cfg.teleop.require_gamepad = false;
    // Episodes long enough that a takeover every 3 s lands inside one most of the time.
    cfg.sim.episode_seconds = 30.0;
    // The policy was trained at 50 Hz; this loop runs it at `rate`.
    let scratch = std::env::temp_dir().join(format!(
        "intervened-bench-loop-{}-{rate}",
        std::process::id()
    ));
    let policy = scratch.join("policy");
    copy_dir(&b.policy, &policy)?;
    let side = policy.join("policy.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&side)?)?;
    v["fps"] = serde_json::json!(rate);
    std::fs::write(&side, serde_json::to_string_pretty(&v)?)?;

    eprintln!("{rate} Hz: bare sleep loop for {} s ...", b.bare_seconds);
    let bare = bare_loop(rate, b.bare_seconds, b.priority, b.cpu)?;
    eprintln!(
        "{rate} Hz: control loop for {} s (policy, recording, gamepad, a takeover every 3 s) ...",
        b.seconds
    );
    let data = scratch.join("data");
    let (tx, rx) = crossbeam_channel::bounded(1);
    let stop = Arc::new(AtomicBool::new(false));
    let op_stop = stop.clone();
    let op = std::thread::spawn(move || {
        if let Ok(h) = rx.recv_timeout(Duration::from_secs(60)) {
            let h: runtime::SimHandles = h;
            let rt = h.status.clone();
            operator(h.pad, op_stop);
            return rt.lock().map(|s| s.realtime.clone()).unwrap_or_default();
        }
        Default::default()
    });
    let r = runtime::run(
        cfg,
        RunOptions {
            realtime: true,
            policy: Some(policy.clone()),
            data: Some(data.clone()),
            episodes: Some(u64::MAX),
            max_ticks: Some((rate * b.seconds) as u64),
            sim_handles: Some(tx),
            ..RunOptions::default()
        },
    );
    stop.store(true, Ordering::Relaxed);
    let realtime = op.join().unwrap_or_default();
    let r = r?;
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(st) = &r.sim_stats {
        eprintln!("{rate} Hz: emulator {st:?}");
    }
    let lr = r.loop_report;
    Ok(RateResult {
        rate_hz: rate,
        seconds: b.seconds,
        bare,
        loop_hist: lr.period_error_histogram.clone(),
        takeovers: lr.takeovers,
        takeover_latency: lr.takeover_latency,
        takeover_read_latency: lr.takeover_read_latency,
        takeovers_untimed: lr.takeovers_untimed,
        dropped_frames: lr.dropped_frames,
        bus_errors: lr.bus_errors,
        policy_actions: lr.policy_actions,
        realtime,
        timing: lr.timing,
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

fn row(name: &str, s: &Summary, overruns: u64) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {overruns} |",
        s.p50_us, s.p99_us, s.p999_us, s.max_us
    )
}

/// The markdown report of all rates.
pub fn report(results: &[RateResult], machine: &str, priority: Option<u8>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Machine: {machine}. Scheduling: {}. Simulated robot in real time; policy (on its worker thread), recording, gamepad and a takeover every 3 s on.\n",
        priority
            .map(|p| format!("SCHED_FIFO {p} asked for"))
            .unwrap_or_else(|| "default".into())
    );
    for r in results {
        let period = 1e6 / r.rate_hz;
        let _ = writeln!(
            s,
            "### {} Hz for {:.0} s ({} ticks, period {:.0} us)\n",
            r.rate_hz, r.seconds, r.timing.ticks, period
        );
        let _ = writeln!(
            s,
            "Control thread: {}; memory locked: {}; CPU: {}; stack prefaulted: {} KiB.\n",
            r.realtime.scheduler,
            r.realtime.memory_locked,
            r.realtime
                .cpu
                .map(|c| c.to_string())
                .unwrap_or_else(|| "not pinned".into()),
            r.realtime.stack_prefaulted_kib
        );
        let _ = writeln!(
            s,
            "| period error (us) | p50 | p99 | p99.9 | max | overruns |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        let _ = writeln!(
            s,
            "{}",
            row("bare sleep loop", &r.bare.period_error, r.bare.overruns)
        );
        let _ = writeln!(
            s,
            "{}",
            row("control loop", &r.timing.period_error, r.timing.overruns)
        );
        let _ = writeln!(
            s,
            "\nWork per tick: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us. Ticks preempted during their work: {}; bare-loop wake-ups preempted: {}.\n",
            r.timing.work.p50_us,
            r.timing.work.p99_us,
            r.timing.work.p999_us,
            r.timing.work.max_us,
            r.timing.preempted_ticks,
            r.bare.preempted_ticks
        );
        let _ = writeln!(s, "| phase | p99 (us) | max (us) |");
        let _ = writeln!(s, "|---|---|---|");
        for p in &r.timing.phases {
            let _ = writeln!(s, "| {} | {:.0} | {:.0} |", p.phase, p.p99_us, p.max_us);
        }
        if r.timing.overrun_causes.is_empty() {
            let _ = writeln!(s, "\nOverruns: none.");
        } else {
            let ours: u64 = r
                .timing
                .overrun_causes
                .iter()
                .filter(|c| !c.2)
                .map(|c| c.1)
                .sum();
            let _ = writeln!(
                s,
                "\nOverruns: {}, every one attributed by the tick that ran past the deadline; {} in our code:",
                r.timing.overruns, ours
            );
            for (c, n, _) in &r.timing.overrun_causes {
                let _ = writeln!(s, "- {n}: {c}");
            }
        }
        let _ = writeln!(s, "\nSlowest ticks (flight recorder):\n");
        let _ = writeln!(
            s,
            "| tick | work (us) | on CPU (us) | woke late (us) | preempted | largest phase (us) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for t in r.timing.slowest.iter().take(5) {
            let p = t.phases.largest();
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} {:.0} |",
                t.tick,
                t.work_us,
                t.cpu_us,
                t.late_us,
                t.preempted,
                p.name(),
                t.phases.get(p)
            );
        }
        let _ = writeln!(
            s,
            "\nTakeovers: {} ({} without a press time). Button press to the first human goal on the wire: p50 {:.0} us, p99 {:.0} us, max {:.0} us (n={}; includes waiting up to one period for the next tick). The tick that read the press to that goal: p50 {:.0} us, max {:.0} us.",
            r.takeovers,
            r.takeovers_untimed,
            r.takeover_latency.p50_us,
            r.takeover_latency.p99_us,
            r.takeover_latency.max_us,
            r.takeover_latency.count,
            r.takeover_read_latency.p50_us,
            r.takeover_read_latency.max_us
        );
        let _ = writeln!(
            s,
            "Policy actions: {}; dropped frames: {}; bus errors: {}.\n",
            r.policy_actions, r.dropped_frames, r.bus_errors
        );
    }
    s
}

/// Period error histograms, log-log, bare loop beside the control loop at each rate.
pub fn plot(results: &[RateResult], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, results.len().max(1)));
    for (r, area) in results.iter().zip(areas.iter()) {
        let series = [
            ("bare sleep loop", &r.bare.hist, BLUE),
            ("control loop", &r.loop_hist, RED),
        ];
        type Buckets<'a> = Vec<(&'a str, Vec<(u64, u64)>, RGBColor)>;
        let buckets: Buckets = series
            .iter()
            .map(|(n, h, c)| (*n, h.log_buckets(1, 1.25), *c))
            .collect();
        let x_max = buckets
            .iter()
            .flat_map(|(_, b, _)| b.iter().map(|(x, _)| *x as f64))
            .fold(10.0, f64::max)
            * 1.3;
        let y_max = buckets
            .iter()
            .flat_map(|(_, b, _)| b.iter().map(|(_, y)| *y as f64))
            .fold(10.0, f64::max)
            * 2.0;
        let mut c = ChartBuilder::on(area)
            .caption(
                format!("{} Hz: wake-up lateness, {:.0} s", r.rate_hz, r.seconds),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d((1.0..x_max).log_scale(), (0.5..y_max).log_scale())?;
        c.configure_mesh()
            .x_desc("period error (us)")
            .y_desc("ticks")
            .draw()?;
        for (name, b, colour) in buckets {
            c.draw_series(LineSeries::new(
                b.iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(x, n)| (*x as f64, *n as f64)),
                colour,
            ))?
            .label(name)
            .legend(move |(px, py)| PathElement::new(vec![(px, py), (px + 16, py)], colour));
        }
        // The period: a wake-up this late is a whole missed tick.
        let period = 1e6 / r.rate_hz;
        c.draw_series(LineSeries::new(
            [(period, 0.5), (period, y_max)],
            BLACK.mix(0.4),
        ))?
        .label("one period")
        .legend(|(px, py)| PathElement::new(vec![(px, py), (px + 16, py)], BLACK.mix(0.4)));
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

pub fn run(b: LoopBench, machine: &str) -> Result<()> {
    std::fs::create_dir_all(&b.out)?;
    let mut results = Vec::new();
    for &rate in &b.rates {
        let r = run_rate(&b, rate)?;
        println!("{}", report(std::slice::from_ref(&r), machine, b.priority));
        results.push(r);
    }
    let md = report(&results, machine, b.priority);
    std::fs::write(b.out.join("loop-results.md"), &md)?;
    std::fs::write(
        b.out.join("loop-results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    plot(&results, &b.out.join("loop-latency.svg"))?;
    println!(
        "wrote {}, loop-results.json and loop-latency.svg",
        b.out.join("loop-results.md").display()
    );
    Ok(())
}
