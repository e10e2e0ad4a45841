//! Crash safety through the binary: the daemon records simulated demonstrations in real time
//! and is killed with SIGKILL at seeded random points. After every kill each episode file must
//! stay readable, the episode cut short must read back `truncated`, and nothing flushed before
//! the kill may be lost. The next start recovers the cut episodes (repaired files, truncated
//! manifests), `export sessions` lists them, and the official Python `mcap` reader opens every
//! file through its summary with as many messages as our reader reads. A last test kills
//! `intervened recover` itself while it rewrites files.
//!
//! Kill points are drawn from a fixed seed (override with `CRASH_SEED=<u64>` to explore), so the
//! schedule is reproducible: a quarter of the kills land early after spawning (start-up, crash
//! recovery of the previous kill, the first episode's creation), the rest a random delay after
//! the run's first episode file appears. Where exactly each lands still depends on the
//! machine's timing, which is the point. Three lanes (data dirs) run concurrently; every lane's
//! next run recovers its previous kill, and a final lockstep run plus `export sessions` checks
//! the recovered manifests.
//!
//! Timing margins (deliberately generous, for a loaded 2-core machine): the recovered frame
//! count must be at least `SLOWDOWN * (elapsed - flush - STARTUP_MARGIN_S) * fps`, where
//! `elapsed` is the kill instant minus the episode's `started_at`. `STARTUP_MARGIN_S` absorbs the
//! recorder thread being scheduled late and the file's header flush; `SLOWDOWN` absorbs the
//! real-time pacer skipping ticks after overruns (ticks stay contiguous, but fewer of them fit
//! in a wall-clock second). Without flushing (or with a lost chunk) the count would be near zero
//! or have a gap, which the tick-contiguity check catches exactly. Tighter, and robust to a few
//! slow runs: the median time from the last recovered frame to the kill, over all kills, must
//! stay within the flush interval plus `MEDIAN_TAIL_MARGIN_S`.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use intervened_episodes::{
    read_episode, recover_episode, ControlSource, Episode, EpisodeMeta, EpisodeWriter, Frame,
    Manifest, Outcome,
};
use serde_json::Value;

/// Kill runs per lane, and lanes (each its own data dir) run concurrently.
const RUNS_PER_LANE: usize = 8;
const LANES: usize = 3;
/// One kill in this many lands early, `EARLY_MS` after spawning the daemon: during start-up,
/// crash recovery or the first episode's creation.
const EARLY_ONE_IN: u64 = 4;
const EARLY_MS: (u64, u64) = (50, 700);
/// The other kills land this long after the run's first episode file appeared: inside the
/// first episode (~3 s of simulated demonstration), at its end, or inside the second.
const IN_EPISODE_MS: (u64, u64) = (300, 3500);
/// Extra loss allowed beyond one flush interval (s); see the module docs.
const STARTUP_MARGIN_S: f64 = 0.3;
/// Share of the nominal frame rate a loaded machine is guaranteed to reach.
const SLOWDOWN: f64 = 0.7;
/// Over all kills, the median time from the last recovered frame to the kill may exceed the
/// flush interval by at most this (s): a much longer effective flush interval fails here.
const MEDIAN_TAIL_MARGIN_S: f64 = 0.15;
const DEFAULT_SEED: u64 = 0x5eed_c4a5_11ed_0001;
/// On a loaded machine the in-process servo emulator can miss all three start-up pings, or the
/// reply to the torque-enable write; the daemon then refuses to start (before it records or
/// recovers anything). Such a start is retried: it is not what this test is about, and it is
/// counted in the summary.
const START_FLAKES: [&str; 2] = ["does not answer a ping", "enabling torque"];
fn start_flake(log: &str) -> bool {
    START_FLAKES.iter().any(|f| log.contains(f))
}
const START_ATTEMPTS: u32 = 3;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_intervened"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --test to create the test venv (mcap, pyarrow)",
        p.display()
    );
    p
}

/// The official Python `mcap` reader's view of each file: summary, messages per topic, errors
/// (`crates/episodes/tests/fixtures/mcap_strict.py`).
fn mcap_strict(paths: &[PathBuf]) -> Value {
    let script = repo().join("crates/episodes/tests/fixtures/mcap_strict.py");
    let out = Command::new(python())
        .arg(script)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed (run scripts/setup.sh --test if a module is missing):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file opens in the official Python reader, through its summary and footer, and holds
/// the messages our reader reads from it. Returns the messages read.
fn assert_official_reader_reads(paths: &[PathBuf], ctx: &str) -> u64 {
    let v = mcap_strict(paths);
    let mut messages = 0;
    for p in paths {
        let r = &v[p.to_str().unwrap()];
        let c = format!("{ctx}: {} ({r})", p.display());
        assert_eq!(r["error"], Value::Null, "{c}");
        assert_eq!(r["summary"], true, "{c}: no summary");
        assert_eq!(r["footer"], true, "{c}: no footer");
        assert_eq!(r["stats"], r["messages"], "{c}");
        let ep = read_episode(p).unwrap_or_else(|e| panic!("{c}: {e}"));
        let topic = |t: &str| r["topics"][t].as_u64().unwrap_or(0);
        let n = ep.frames.len() as u64;
        assert_eq!(topic("/observation"), n, "{c}");
        assert_eq!(topic("/action"), n, "{c}");
        assert_eq!(topic("/gamepad"), n, "{c}");
        assert_eq!(topic("/events"), ep.events.len() as u64, "{c}");
        assert_eq!(topic("/diagnostics"), ep.diagnostics.len() as u64, "{c}");
        messages += r["messages"].as_u64().unwrap_or(0);
    }
    messages
}

/// The kill runs and the kills during recovery both load the machine; run them one at a time
/// so that neither starves the other's real-time daemon.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// SplitMix64: a tiny seeded generator, enough for reproducible kill delays.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The sim config with absolute paths and an empty policy registry, so that no policy found
/// next to the repository is loaded (demonstrations only, a fast start).
fn hermetic_config(dir: &Path) -> PathBuf {
    let src = repo().join("robot-configs/sim-koch.toml");
    let text = fs::read_to_string(&src).unwrap();
    let cal = repo().join("calibration/sim-koch.json");
    let text = text
        .replace(
            "calibration = \"../calibration/sim-koch.json\"",
            &format!("calibration = \"{}\"", cal.display()),
        )
        .replace(
            "registry = \"../policies\"",
            &format!("registry = \"{}\"", dir.join("no-policies").display()),
        );
    assert!(
        text.contains(&cal.display().to_string()),
        "config changed shape"
    );
    let path = dir.join("sim-koch.toml");
    fs::write(&path, text).unwrap();
    path
}

/// Kills the daemon if a check panics, so no orphan keeps recording for minutes.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn mcap_files(data: &Path) -> BTreeMap<PathBuf, ()> {
    let mut out = BTreeMap::new();
    let Ok(sessions) = fs::read_dir(data.join("sessions")) else {
        return out;
    };
    for s in sessions {
        for e in fs::read_dir(s.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "mcap") {
                out.insert(p, ());
            }
        }
    }
    out
}

fn session_dirs(data: &Path) -> BTreeSet<PathBuf> {
    match fs::read_dir(data.join("sessions")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Frames are contiguous by tick from the episode's start, and their times follow the ticks.
fn assert_contiguous(ep: &Episode, ctx: &str) {
    let period = 1.0 / ep.meta.fps;
    if let Some(first) = ep.frames.first() {
        assert!(
            first.t <= 1.5 * period,
            "{ctx}: first recovered frame is at t = {} s, not the episode's start",
            first.t
        );
    }
    for w in ep.frames.windows(2) {
        assert_eq!(
            w[1].tick,
            w[0].tick + 1,
            "{ctx}: gap in the recovered frames between ticks {} and {}",
            w[0].tick,
            w[1].tick
        );
        assert!(
            (w[1].t - w[0].t - period).abs() < 1e-6,
            "{ctx}: frame times {} -> {} do not follow the ticks",
            w[0].t,
            w[1].t
        );
    }
}

/// When a run is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    AfterSpawn(Duration),
    IntoEpisode(Duration),
}

/// An episode file found without a manifest right after a kill.
#[derive(Debug)]
struct Cut {
    path: PathBuf,
    frames: u64,
    /// False when the kill landed after the file's footer but before its manifest.
    truncated: bool,
}

#[derive(Debug, Default)]
struct LaneReport {
    kills: usize,
    /// Kills that left an episode truncated.
    truncated: usize,
    /// Kills after an episode's footer but before its manifest.
    closed_unmanifested: usize,
    /// Kills before the run's first episode file existed.
    before_first_episode: usize,
    /// Smallest (recovered frames / nominal frames since the episode started) at a kill.
    worst_ratio: f64,
    /// (kill instant - last recovered frame's time) for each truncated episode, in seconds.
    tails_s: Vec<f64>,
    /// Kills aimed into an episode.
    aimed: usize,
    /// Daemon starts retried after the emulated servos missed the start-up pings.
    start_retries: usize,
    cuts: Vec<PathBuf>,
    /// Files and messages the official Python reader read after the restart.
    official_files: usize,
    official_messages: u64,
}

/// The previous runs' cut episodes must now carry recovery's manifests.
fn assert_recovered(pending: &mut Vec<Cut>, ctx: &str) {
    for cut in pending.drain(..) {
        let mpath = cut.path.with_extension("json");
        let m = Manifest::load(&mpath).unwrap_or_else(|e| {
            panic!(
                "{ctx}: no manifest for {} after restart: {e}",
                cut.path.display()
            )
        });
        assert!(
            m.recovered,
            "{ctx}: {} not marked recovered",
            mpath.display()
        );
        assert_eq!(
            m.truncated,
            cut.truncated,
            "{ctx}: {} truncated flag",
            mpath.display()
        );
        if cut.truncated {
            assert_eq!(m.outcome, Outcome::Truncated, "{ctx}: {}", mpath.display());
        }
        assert_eq!(
            m.frames,
            cut.frames,
            "{ctx}: recovery wrote a different frame count than the reader found for {}",
            cut.path.display()
        );
    }
}

/// One kill: start the daemon, SIGKILL it as `kill` says, check every file in `data`.
fn kill_run(
    cfg: &Path,
    data: &Path,
    kill: Kill,
    flush_s: f64,
    pending: &mut Vec<Cut>,
    report: &mut LaneReport,
    ctx: &str,
) {
    let before = session_dirs(data);
    let files_before = mcap_files(data);
    let log = data.with_extension(format!("log{}", report.kills));
    if matches!(kill, Kill::IntoEpisode(_)) {
        report.aimed += 1;
    }
    let mut attempt = 0;
    let (mut daemon, spawned) = 'start: loop {
        attempt += 1;
        let child = bin()
            .args([
                "run",
                "--demo",
                "--sim-human",
                "--realtime",
                "--episodes",
                "100",
                "--config",
            ])
            .arg(cfg)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon(Some(child));
        let spawned = Instant::now();
        let child = daemon.0.as_mut().unwrap();
        let mut exited = || -> bool {
            let Some(status) = child.try_wait().unwrap() else {
                return false;
            };
            let text = fs::read_to_string(&log).unwrap_or_default();
            assert!(
                attempt < START_ATTEMPTS && start_flake(&text),
                "{ctx}: the daemon exited before the kill ({status}):\n{}",
                log_tail(&log)
            );
            true
        };
        match kill {
            Kill::AfterSpawn(d) => std::thread::sleep(d),
            Kill::IntoEpisode(d) => {
                while mcap_files(data).len() == files_before.len() {
                    if exited() {
                        report.start_retries += 1;
                        continue 'start;
                    }
                    assert!(
                        spawned.elapsed() < Duration::from_secs(20),
                        "{ctx}: no episode file 20 s after start:\n{}",
                        log_tail(&log)
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                std::thread::sleep(d);
            }
        }
        if exited() {
            report.start_retries += 1;
            continue 'start;
        }
        break (daemon, spawned);
    };
    let child = daemon.0.as_mut().unwrap();
    let kill_before_ns = unix_ns();
    child.kill().unwrap();
    child.wait().unwrap();
    let kill_after_ns = unix_ns();
    daemon.0 = None;
    report.kills += 1;
    let ctx = format!("{ctx} (killed {:?} after spawn)", spawned.elapsed());

    let files = mcap_files(data);
    let newest = files
        .keys()
        .filter(|p| !files_before.contains_key(*p))
        .max()
        .cloned();
    if newest.is_some() {
        // Recovery runs before the recorder opens its first episode: the earlier runs' cut
        // episodes must have manifests now.
        assert_recovered(pending, &ctx);
    }

    // Every file in the data dir, old and new, stays readable.
    let mut episodes: BTreeMap<PathBuf, Episode> = BTreeMap::new();
    for p in files.keys() {
        let len = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        match read_episode(p) {
            Ok(ep) => {
                assert_contiguous(&ep, &format!("{ctx}: {}", p.display()));
                episodes.insert(p.clone(), ep);
            }
            Err(e) => panic!(
                "{ctx}: {} unreadable ({len} bytes): {e}\n{}",
                p.display(),
                log_tail(&log)
            ),
        }
    }

    let new_sessions: Vec<PathBuf> = session_dirs(data).difference(&before).cloned().collect();
    assert!(new_sessions.len() <= 1, "{ctx}: {new_sessions:?}");
    let new_files: Vec<&Episode> = episodes
        .values()
        .filter(|e| new_sessions.iter().any(|s| e.path.starts_with(s)))
        .collect();
    let Some((last, done)) = new_files.split_last() else {
        report.before_first_episode += 1;
        return;
    };
    // Episodes that ended before the kill are whole, with their manifests.
    for ep in done {
        let c = format!("{ctx}: {}", ep.path.display());
        assert!(ep.path.with_extension("json").exists(), "{c}: no manifest");
        assert!(
            !ep.truncated,
            "{c}: an episode closed before the kill reads truncated"
        );
        assert_eq!(ep.manifest.frames, ep.frames.len() as u64, "{c}");
    }

    let c = format!("{ctx}: {}", last.path.display());
    if last.path.with_extension("json").exists() {
        // Killed between two episodes: the last one closed cleanly.
        assert!(!last.truncated, "{c}: closed episode reads truncated");
        assert_eq!(last.manifest.frames, last.frames.len() as u64, "{c}");
        return;
    }
    let frames = last.frames.len() as u64;
    if !last.truncated {
        // The footer reached the disk, the manifest did not: complete, recovered as is.
        report.closed_unmanifested += 1;
        pending.push(Cut {
            path: last.path.clone(),
            frames,
            truncated: false,
        });
        return;
    }
    report.truncated += 1;
    report.cuts.push(last.path.clone());
    pending.push(Cut {
        path: last.path.clone(),
        frames,
        truncated: true,
    });
    assert_eq!(last.manifest.frames, frames, "{c}: in-memory manifest");

    // Nothing flushed before the kill is lost.
    let fps = last.meta.fps;
    let started = last.meta.started_at;
    let elapsed = kill_before_ns.saturating_sub(started) as f64 / 1e9;
    let elapsed_after = kill_after_ns.saturating_sub(started) as f64 / 1e9;
    let min_frames = (SLOWDOWN * (elapsed - flush_s - STARTUP_MARGIN_S) * fps).floor();
    let max_frames = (elapsed_after * fps).ceil() + 2.0;
    assert!(
        frames as f64 >= min_frames,
        "{c}: only {frames} frames recovered {elapsed:.3} s into the episode \
         (at least {min_frames} expected at {fps} fps with {flush_s} s flushes)\n{}",
        log_tail(&log)
    );
    assert!(
        frames as f64 <= max_frames,
        "{c}: {frames} frames recovered but the episode ran only {elapsed_after:.3} s"
    );
    if elapsed > flush_s + STARTUP_MARGIN_S {
        report.worst_ratio = report.worst_ratio.min(frames as f64 / (elapsed * fps));
    }
    let last_t = last.frames.last().map_or(0.0, |f| f.t);
    report.tails_s.push(elapsed - last_t);
}

fn lane(lane: usize, root: &Path, kills: &[Kill], flush_s: f64) -> LaneReport {
    let dir = root.join(format!("lane{lane}"));
    fs::create_dir_all(&dir).unwrap();
    let cfg = hermetic_config(&dir);
    let data = dir.join("data");
    let mut report = LaneReport {
        worst_ratio: f64::INFINITY,
        ..Default::default()
    };
    let mut pending = Vec::new();
    for (i, k) in kills.iter().enumerate() {
        let ctx = format!("lane {lane} run {i} ({k:?})");
        kill_run(&cfg, &data, *k, flush_s, &mut pending, &mut report, &ctx);
    }

    // A short lockstep run on the same data dir: recovery at start, one clean episode.
    for attempt in 1..=START_ATTEMPTS {
        let out = bin()
            .args([
                "run",
                "--demo",
                "--sim-human",
                "--episodes",
                "1",
                "--config",
            ])
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            attempt < START_ATTEMPTS && start_flake(&err),
            "lane {lane}: restart failed:\n{err}"
        );
        report.start_retries += 1;
    }
    let ctx = format!("lane {lane} restart");
    assert_recovered(&mut pending, &ctx);
    for cut in &report.cuts {
        let m = Manifest::load(&cut.with_extension("json")).unwrap();
        assert!(m.truncated && m.recovered, "{ctx}: {}", cut.display());
        let ep = read_episode(cut).unwrap();
        assert!(ep.truncated, "{ctx}: {}", cut.display());
        assert_eq!(
            ep.manifest, m,
            "{ctx}: the reader must use the recovered manifest"
        );
    }
    // Every episode now has a manifest and no interrupted manifest write is left behind.
    for p in mcap_files(&data).keys() {
        assert!(p.with_extension("json").exists(), "{ctx}: {}", p.display());
        let tmp: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|q| q.extension().is_some_and(|x| x == "tmp"))
            .collect();
        assert!(tmp.is_empty(), "{ctx}: stale temp files {tmp:?}");
    }

    // Recovery rewrote every cut file complete: the official reader opens every file.
    let files: Vec<PathBuf> = mcap_files(&data).into_keys().collect();
    report.official_messages = assert_official_reader_reads(&files, &ctx);
    report.official_files = files.len();

    // `export sessions` lists every session, with its truncated episodes counted.
    let out = bin()
        .args(["export", "sessions", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{ctx}: export sessions failed");
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let mut truncated_by_session: BTreeMap<String, u64> = BTreeMap::new();
    for cut in &report.cuts {
        let s = cut.parent().unwrap().file_name().unwrap().to_string_lossy();
        *truncated_by_session.entry(s.to_string()).or_default() += 1;
    }
    for (session, n) in &truncated_by_session {
        let row = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(session))
            .unwrap_or_else(|| panic!("{ctx}: session {session} not listed:\n{listing}"));
        // session eps frames takes int.st int.rate ok fail disc trunc success [policies]
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[9], n.to_string(), "{ctx}: trunc column:\n{listing}");
    }
    let total = listing
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap_or_else(|| panic!("{ctx}: no total:\n{listing}"));
    let cols: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        cols[9],
        report.cuts.len().to_string(),
        "{ctx}: total truncated:\n{listing}"
    );
    assert!(
        !listing.contains("without a manifest"),
        "{ctx}: unrecovered episodes after restart:\n{listing}"
    );
    report
}

#[test]
fn sigkill_at_random_points_loses_nothing_flushed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = SplitMix64(seed);
    let mut ms = |(lo, hi): (u64, u64)| Duration::from_millis(lo + rng.next() % (hi - lo + 1));
    let schedule: Vec<Vec<Kill>> = (0..LANES)
        .map(|_| {
            (0..RUNS_PER_LANE)
                .map(|_| {
                    if ms((0, EARLY_ONE_IN - 1)).as_millis() == 0 {
                        Kill::AfterSpawn(ms(EARLY_MS))
                    } else {
                        Kill::IntoEpisode(ms(IN_EPISODE_MS))
                    }
                })
                .collect()
        })
        .collect();
    let cfg =
        intervened_robot::RobotConfig::load(&repo().join("robot-configs/sim-koch.toml")).unwrap();
    let flush_s = cfg.recording.flush_ms as f64 / 1000.0;

    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let reports: Vec<LaneReport> = std::thread::scope(|s| {
        let handles: Vec<_> = schedule
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let root = tmp.path();
                s.spawn(move || lane(i, root, d, flush_s))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let kills: usize = reports.iter().map(|r| r.kills).sum();
    let truncated: usize = reports.iter().map(|r| r.truncated).sum();
    let between: usize = reports.iter().map(|r| r.closed_unmanifested).sum();
    let early: usize = reports.iter().map(|r| r.before_first_episode).sum();
    let worst_ratio = reports
        .iter()
        .map(|r| r.worst_ratio)
        .fold(f64::INFINITY, f64::min);
    let aimed: usize = reports.iter().map(|r| r.aimed).sum();
    let retries: usize = reports.iter().map(|r| r.start_retries).sum();
    let official_files: usize = reports.iter().map(|r| r.official_files).sum();
    let official_messages: u64 = reports.iter().map(|r| r.official_messages).sum();
    let mut tails: Vec<f64> = reports.iter().flat_map(|r| r.tails_s.clone()).collect();
    tails.sort_by(f64::total_cmp);
    let median_tail = tails.get(tails.len() / 2).copied().unwrap_or(0.0);
    let worst_tail = tails.last().copied().unwrap_or(0.0);
    eprintln!(
        "seed {seed:#x}: {kills} kills in {:.1} s; {truncated} cut an episode short, \
         {between} after a footer before its manifest, {early} before the first episode; \
         worst recovered/nominal frames {worst_ratio:.3}; kill to last recovered frame: \
         median {median_tail:.3} s, worst {worst_tail:.3} s; {retries} start(s) retried; \
         after the restarts the official Python mcap reader read {official_files} files, \
         {official_messages} messages, 0 bad",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(kills, LANES * RUNS_PER_LANE);
    // The schedule must actually exercise crashes mid-episode (a kill aimed into an episode
    // may still land in the few milliseconds between two).
    assert!(
        aimed >= kills / 2 && truncated + 2 >= aimed,
        "only {truncated} of {aimed} kills aimed into an episode cut one short"
    );
    assert!(
        median_tail <= flush_s + MEDIAN_TAIL_MARGIN_S,
        "typically {median_tail:.3} s of frames lost before a kill, with {flush_s} s flushes"
    );
}

/// SIGKILL as soon as the episode file appears: it must already be readable (the writer creates
/// it under a `.tmp` name and renames it in once its header is on disk).
#[test]
fn kill_while_creating_an_episode_file_leaves_it_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = hermetic_config(tmp.path());
    for run in 0..5 {
        let data = tmp.path().join(format!("data{run}"));
        let child = bin()
            .args([
                "run",
                "--demo",
                "--sim-human",
                "--realtime",
                "--episodes",
                "1",
            ])
            .arg("--config")
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut daemon = Daemon(Some(child));
        let t0 = Instant::now();
        while mcap_files(&data).is_empty() && t0.elapsed() < Duration::from_secs(20) {
            std::hint::spin_loop();
        }
        if let Some(mut c) = daemon.0.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        for p in mcap_files(&data).keys() {
            if let Err(e) = read_episode(p) {
                panic!(
                    "run {run}: {} ({} bytes): {e}",
                    p.display(),
                    fs::metadata(p).unwrap().len()
                );
            }
        }
    }
}

/// A long episode cut mid-chunk, as a kill leaves it: (bytes, frames our reader reads).
fn long_cut_episode(root: &Path) -> (Vec<u8>, usize) {
    let joints: Vec<String> = (0..6).map(|i| format!("j{i}")).collect();
    let meta = EpisodeMeta {
        session_id: "long".into(),
        episode_index: 0,
        robot_name: "sim-koch".into(),
        robot_type: "koch_v1.1".into(),
        joint_names: joints,
        task_feature_names: vec!["block.x".into(), "block.y".into()],
        fps: 50.0,
        policy_version: None,
        task: "pick up the block".into(),
        demo: true,
        started_at: 1_700_000_000_000_000_000,
        cameras: Vec::new(),
        monotonic_start_ns: None,
    };
    let mut w = EpisodeWriter::create(root, &meta).unwrap();
    for i in 0..3000u64 {
        let x = i as f64;
        w.write_frame(&Frame {
            tick: i,
            t: x / 50.0,
            q: vec![x * 1e-3; 6],
            qd: vec![0.1; 6],
            current: vec![12.0; 6],
            goal: vec![x * 1e-3 + 1e-4; 6],
            source: ControlSource::Demo,
            proposal: None,
            doubt: None,
            pad_axes: vec![0.0, 0.25, -0.5, 0.0],
            pad_buttons: (i % 4) as u32,
            task: vec![0.2, -0.1],
        })
        .unwrap();
        if i % 5 == 4 {
            w.flush().unwrap();
        }
    }
    let path = w.path().to_path_buf();
    drop(w);
    let bytes = fs::read(&path).unwrap();
    let cut = bytes[..bytes.len() * 4 / 5].to_vec();
    fs::write(&path, &cut).unwrap();
    let frames = read_episode(&path).unwrap().frames.len();
    fs::remove_dir_all(root).unwrap();
    (cut, frames)
}

/// SIGKILL `intervened recover` at random points while it rewrites cut files. After every kill
/// each file is either the untouched cut file or its complete repaired copy (a manifest only
/// beside the latter); the next run finishes the job; in the end every file holds every frame
/// that was intact and opens in the official reader.
#[test]
fn sigkill_during_recovery_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const FILES: usize = 40;
    const KILLS: usize = 8;
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = SplitMix64(seed ^ 0x0072_6563_6f76_6572);
    let tmp = tempfile::tempdir().unwrap();
    let (cut, frames) = long_cut_episode(&tmp.path().join("src"));
    assert!(frames > 1000, "{frames} frames");

    // The reference: the same file recovered without interruption.
    let reference = tmp.path().join("ref/sessions/long/episode-000000.mcap");
    fs::create_dir_all(reference.parent().unwrap()).unwrap();
    fs::write(&reference, &cut).unwrap();
    let expected_manifest = recover_episode(&reference, None).unwrap();
    let repaired = fs::read(&reference).unwrap();
    assert_eq!(expected_manifest.frames as usize, frames);

    let populate = |data: &Path| -> Vec<PathBuf> {
        (0..FILES)
            .map(|k| {
                let p = data.join(format!("sessions/s{k:03}/episode-000000.mcap"));
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, &cut).unwrap();
                p
            })
            .collect()
    };
    let recover = |data: &Path| {
        bin()
            .arg("recover")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long an uninterrupted pass takes here.
    let timing = tmp.path().join("timing");
    populate(&timing);
    let t0 = Instant::now();
    assert!(recover(&timing).wait().unwrap().success());
    let full = t0.elapsed();

    let data = tmp.path().join("data");
    let files = populate(&data);
    let (mut partial, mut leftovers) = (0, 0);
    for kill in 0..KILLS {
        let mut child = recover(&data);
        let frac = (rng.next() % 1000) as f64 / 1000.0;
        // Each run resumes where the last was killed: short runs spread the kills over the
        // whole job.
        std::thread::sleep(full.mul_f64(0.05 + 0.3 * frac));
        let _ = child.kill();
        child.wait().unwrap();
        let mut done = 0;
        for p in &files {
            let bytes = fs::read(p).unwrap();
            let has_manifest = p.with_extension("json").exists();
            if bytes == repaired {
                done += 1;
            } else {
                assert!(bytes == cut, "kill {kill}: {} is neither", p.display());
                assert!(!has_manifest, "kill {kill}: manifest before repair");
            }
            if has_manifest {
                assert_eq!(
                    Manifest::load(&p.with_extension("json")).unwrap(),
                    expected_manifest
                );
            }
            let mut tmp_name = p.as_os_str().to_owned();
            tmp_name.push(".repair");
            leftovers += usize::from(PathBuf::from(tmp_name).exists());
        }
        partial += usize::from(done > 0 && done < FILES);
    }
    let out = bin().arg("recover").arg(&data).output().unwrap();
    assert!(out.status.success());
    for p in &files {
        assert_eq!(fs::read(p).unwrap(), repaired, "{}", p.display());
        assert_eq!(
            Manifest::load(&p.with_extension("json")).unwrap(),
            expected_manifest
        );
        assert_eq!(read_episode(p).unwrap().frames.len(), frames);
    }
    let stray: Vec<PathBuf> = files
        .iter()
        .flat_map(|p| fs::read_dir(p.parent().unwrap()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|q| q.extension().is_some_and(|x| x == "repair" || x == "tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let messages = assert_official_reader_reads(&files, "after the kills");
    eprintln!(
        "{KILLS} kills during recovery of {FILES} files (a full pass: {:.2} s): {partial} left \
         some files repaired and some not, {leftovers} interrupted repair(s) left a temp file; \
         then every file repaired, {frames} frames each; official reader: {} files, \
         {messages} messages, 0 bad",
        full.as_secs_f64(),
        files.len()
    );
    assert!(
        partial > 0,
        "no kill landed while recovery was under way (a full pass took {full:?})"
    );
}
