//! Serves a [`Chain`] on the master side of a pty, so a host opens the slave like a USB
//! serial adapter. A stable symlink points at the current `/dev/pts/N`; unplug closes the
//! master (host I/O fails, the link disappears) and replug makes a fresh pair and re-points it.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, info, warn};

use intervened_robot::SimFaults;

use crate::chain::SharedChain;
use crate::packet::{crc_ok, StreamParser};

/// Faults injected into the replies. Rates are probabilities per status packet, in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub corrupt_crc_rate: f64,
    pub drop_reply_rate: f64,
    pub late_reply_rate: f64,
    /// How late a late reply is.
    pub late_reply: Duration,
    /// Seed of the fault RNG: the same seed and traffic give the same faults.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            corrupt_crc_rate: 0.0,
            drop_reply_rate: 0.0,
            late_reply_rate: 0.0,
            late_reply: Duration::from_millis(50),
            seed: 0,
        }
    }
}

/// Faults that happen once, at fixed times after the server starts (wall clock).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSchedule {
    /// Unplug at the first time, replug at the second.
    pub unplug: Option<(Duration, Duration)>,
    /// This servo stops answering at the first time and answers again at the second.
    pub silent: Option<(u8, Duration, Duration)>,
}

impl FaultConfig {
    /// The rates of a config's `[sim.faults]`.
    pub fn from_config(f: &SimFaults) -> Self {
        Self {
            corrupt_crc_rate: f.corrupt_crc_rate,
            drop_reply_rate: f.drop_reply_rate,
            late_reply_rate: f.late_reply_rate,
            late_reply: Duration::from_millis(f.late_reply_ms),
            seed: f.seed,
        }
    }
}

impl FaultSchedule {
    /// The timed faults of a config's `[sim.faults]` (times validated by the config).
    pub fn from_config(f: &SimFaults) -> Self {
        let secs = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO);
        Self {
            unplug: f
                .unplug_at_s
                .map(|at| (secs(at), secs(at) + secs(f.unplug_for_s))),
            silent: match (f.silent_servo, f.silent_at_s) {
                (Some(id), Some(at)) => Some((id, secs(at), secs(at) + secs(f.silent_for_s))),
                _ => None,
            },
        }
    }
}

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub faults: FaultConfig,
    /// Unplug/replug and a silent servo at fixed times.
    pub schedule: FaultSchedule,
    /// Advance the chain's dynamics by wall-clock time (otherwise the caller calls `advance`).
    pub realtime: bool,
    /// Directory for the stable symlink; `None` makes a private temporary directory.
    pub link_dir: Option<PathBuf>,
    /// Name of the symlink inside `link_dir`; `None` means [`DEFAULT_LINK_NAME`].
    pub link_name: Option<String>,
    /// Run first on the emulator thread. A real servo answers within its return delay
    /// whatever the host does; an emulator preempted by the host shows up as a slow bus, so a
    /// real-time daemon uses this to give its emulator the control thread's scheduling class.
    pub on_thread_start: Option<ThreadStart>,
}

/// A hook run on the emulator thread before it serves (see `ServerOptions::on_thread_start`).
#[derive(Clone)]
pub struct ThreadStart(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for ThreadStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadStart")
    }
}

impl ServerOptions {
    /// Faults (rates and schedule) from a config's `[sim.faults]`.
    pub fn with_faults(mut self, f: &SimFaults) -> Self {
        self.faults = FaultConfig::from_config(f);
        self.schedule = FaultSchedule::from_config(f);
        self
    }
}

/// The symlink's name when `ServerOptions::link_name` is not set.
pub const DEFAULT_LINK_NAME: &str = "ttyDXL";

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Complete packets received (good or bad CRC).
    pub packets: u64,
    /// Received packets whose CRC was wrong.
    pub bad_crc_received: u64,
    /// Bytes discarded while resynchronising on garbage.
    pub garbage_bytes: u64,
    /// Status packets written to the line (corrupted and late ones included).
    pub replies: u64,
    pub corrupted: u64,
    pub dropped: u64,
    pub late: u64,
    /// Replies lost because the host did not read them (pty buffer full) or the port closed.
    pub write_failures: u64,
    pub unplugs: u64,
    pub replugs: u64,
    /// Times a scheduled silent servo went silent.
    pub silenced: u64,
}

enum Command {
    Unplug(Sender<()>),
    Replug(Sender<io::Result<()>>),
    Stop,
}

struct FaultState {
    cfg: FaultConfig,
    rng: ChaCha8Rng,
}

impl FaultState {
    fn new(cfg: FaultConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Self { cfg, rng }
    }
    fn roll(&mut self, rate: f64) -> bool {
        // gen_bool panics outside [0, 1]; NaN counts as 0.
        let p = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        p > 0.0 && self.rng.gen_bool(p)
    }
}

struct Shared {
    stats: Mutex<ServerStats>,
    faults: Mutex<FaultState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the bus down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One open pty pair. We keep the slave open ourselves so the master never sees a hangup
/// while no host has the port open, and so raw mode persists between host opens.
struct Pty {
    master: PtyMaster,
    _slave: OwnedFd,
    slave_path: PathBuf,
}

fn open_pty() -> io::Result<Pty> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_path = PathBuf::from(ptsname_r(&master)?);
    let slave = open(
        &slave_path,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    // SAFETY-free conversion: `open` returns a fresh fd we own.
    let slave = owned(slave);
    // Raw: no echo (it would loop our replies back to us), no CR/NL mangling, 8 bits.
    let mut t = tcgetattr(&slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&slave, SetArg::TCSANOW, &t)?;
    Ok(Pty {
        master,
        _slave: slave,
        slave_path,
    })
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Point `link` at `target`, replacing any old link atomically (like udev renaming).
fn point_link(link: &Path, target: &Path) -> io::Result<()> {
    let tmp = link.with_extension("new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)
}

static SERVER_SEQ: AtomicU64 = AtomicU64::new(0);

/// The emulated chain on a pty, served by a background thread.
pub struct PtyServer {
    link: PathBuf,
    /// A directory we created and must remove.
    own_dir: Option<PathBuf>,
    shared: Arc<Shared>,
    commands: Sender<Command>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl PtyServer {
    /// Open a pty pair, make the symlink and start serving `chain` on a thread.
    pub fn start(chain: SharedChain, opts: ServerOptions) -> io::Result<Self> {
        let (dir, own_dir) = match &opts.link_dir {
            Some(d) => {
                fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let d = std::env::temp_dir().join(format!(
                    "intervened-sim-{}-{}",
                    std::process::id(),
                    SERVER_SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                fs::create_dir_all(&d)?;
                (d.clone(), Some(d))
            }
        };
        let link = dir.join(opts.link_name.as_deref().unwrap_or(DEFAULT_LINK_NAME));
        let pty = open_pty()?;
        point_link(&link, &pty.slave_path)?;
        info!(link = %link.display(), pts = %pty.slave_path.display(), "servo chain on pty");

        let (wake_r, wake_w) = nix::unistd::pipe()?;
        for fd in [&wake_r, &wake_w] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        }
        let shared = Arc::new(Shared {
            stats: Mutex::new(ServerStats::default()),
            faults: Mutex::new(FaultState::new(opts.faults.clone())),
        });
        let (tx, rx) = mpsc::channel();
        let worker = Worker {
            chain,
            shared: Arc::clone(&shared),
            commands: rx,
            wake: wake_r,
            link: link.clone(),
            realtime: opts.realtime,
            pty: Some(pty),
            parser: StreamParser::new(),
            last_advance: Instant::now(),
            last_rx: Instant::now(),
            started: Instant::now(),
            schedule: opts.schedule.clone(),
            schedule_state: ScheduleState::default(),
        };
        let on_start = opts.on_thread_start.clone();
        let thread = std::thread::Builder::new()
            .name("dxl-sim".into())
            .spawn(move || {
                if let Some(ThreadStart(f)) = on_start {
                    f();
                }
                worker.run()
            })?;
        Ok(Self {
            link,
            own_dir,
            shared,
            commands: tx,
            wake: wake_w,
            thread: Some(thread),
        })
    }

    /// The stable path (a symlink to the current `/dev/pts/N`) that the host opens.
    pub fn path(&self) -> PathBuf {
        self.link.clone()
    }

    fn send(&self, c: Command) -> bool {
        if self.commands.send(c).is_err() {
            return false;
        }
        // A full pipe already means "wake up".
        let _ = nix::unistd::write(&self.wake, &[1]);
        true
    }

    /// Close the master: the host's reads and writes fail as on a USB unplug, and the
    /// symlink disappears. Returns once done.
    pub fn unplug(&self) {
        let (tx, rx) = mpsc::channel();
        if self.send(Command::Unplug(tx)) {
            let _ = rx.recv();
        }
    }

    /// A new pty pair with the symlink re-pointed at it (the host must reopen the path).
    pub fn replug(&self) -> io::Result<()> {
        let (tx, rx) = mpsc::channel();
        if !self.send(Command::Replug(tx)) {
            return Err(io::Error::other("pty server thread has stopped"));
        }
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("pty server thread has stopped")))
    }

    /// Replace the fault configuration (and reseed the fault RNG).
    pub fn set_faults(&self, f: FaultConfig) {
        *lock(&self.shared.faults) = FaultState::new(f);
    }

    pub fn stats(&self) -> ServerStats {
        *lock(&self.shared.stats)
    }

    /// Stop serving, close the pty and remove the symlink.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for PtyServer {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("pty server thread panicked");
            }
        }
        let _ = fs::remove_file(&self.link);
        if let Some(d) = &self.own_dir {
            let _ = fs::remove_dir_all(d);
        }
    }
}

struct Worker {
    chain: SharedChain,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    wake: OwnedFd,
    link: PathBuf,
    realtime: bool,
    pty: Option<Pty>,
    parser: StreamParser,
    last_advance: Instant,
    last_rx: Instant,
    started: Instant,
    schedule: FaultSchedule,
    schedule_state: ScheduleState,
}

/// How far the schedule has got.
#[derive(Default)]
struct ScheduleState {
    unplugged: bool,
    replugged: bool,
    silenced: bool,
    restored: bool,
}

/// A partial packet older than this is dropped (like a servo's packet timeout).
const PARTIAL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a reply may wait for room in the pty buffer before it is given up.
const WRITE_TIMEOUT: Duration = Duration::from_millis(200);

impl Worker {
    fn run(mut self) {
        let mut buf = vec![0u8; 8192];
        loop {
            if !self.handle_commands() {
                break;
            }
            self.run_schedule();
            let timeout = if self.realtime { 5u8 } else { 50 };
            let (master_ready, hup) = match self.wait(timeout) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(5));
                    (false, false)
                }
            };
            if hup {
                // Nobody holds the slave (cannot happen while we hold it): avoid spinning.
                std::thread::sleep(Duration::from_millis(5));
            }
            if master_ready {
                self.read_available(&mut buf);
            }
            self.serve_packets();
            if self.parser.has_partial() && self.last_rx.elapsed() > PARTIAL_TIMEOUT {
                self.parser.clear_partial();
                self.sync_garbage();
            }
            if self.realtime {
                self.advance_clock();
            }
        }
        self.unplug();
        debug!("pty server stopped");
    }

    fn handle_commands(&mut self) -> bool {
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Stop => return false,
                Command::Unplug(ack) => {
                    self.unplug();
                    lock(&self.shared.stats).unplugs += 1;
                    let _ = ack.send(());
                }
                Command::Replug(ack) => {
                    let r = self.replug();
                    if r.is_ok() {
                        lock(&self.shared.stats).replugs += 1;
                    }
                    let _ = ack.send(r);
                }
            }
        }
        true
    }

    /// Applies the timed faults whose time has come (each once).
    fn run_schedule(&mut self) {
        let now = self.started.elapsed();
        if let Some((off, on)) = self.schedule.unplug {
            if !self.schedule_state.unplugged && now >= off {
                self.schedule_state.unplugged = true;
                warn!("scheduled fault: unplugging the adapter");
                self.unplug();
                lock(&self.shared.stats).unplugs += 1;
            }
            if self.schedule_state.unplugged && !self.schedule_state.replugged && now >= on {
                self.schedule_state.replugged = true;
                match self.replug() {
                    Ok(()) => {
                        warn!("scheduled fault over: adapter plugged back in");
                        lock(&self.shared.stats).replugs += 1;
                    }
                    Err(e) => warn!(error = %e, "scheduled replug failed"),
                }
            }
        }
        if let Some((id, off, on)) = self.schedule.silent {
            if !self.schedule_state.silenced && now >= off {
                self.schedule_state.silenced = true;
                warn!(id, "scheduled fault: servo goes silent");
                lock(&self.chain).set_responding(id, false);
                lock(&self.shared.stats).silenced += 1;
            }
            if self.schedule_state.silenced && !self.schedule_state.restored && now >= on {
                self.schedule_state.restored = true;
                warn!(id, "scheduled fault over: servo answers again");
                lock(&self.chain).set_responding(id, true);
            }
        }
    }

    fn unplug(&mut self) {
        let _ = fs::remove_file(&self.link);
        if let Some(p) = self.pty.take() {
            info!(pts = %p.slave_path.display(), "pty unplugged");
        }
        self.parser.clear_partial();
    }

    fn replug(&mut self) -> io::Result<()> {
        self.unplug();
        let pty = open_pty()?;
        point_link(&self.link, &pty.slave_path)?;
        info!(pts = %pty.slave_path.display(), "pty replugged");
        self.pty = Some(pty);
        Ok(())
    }

    /// Wait for input on the master or a wake-up; returns (master readable, master hung up).
    fn wait(&mut self, timeout_ms: u8) -> nix::Result<(bool, bool)> {
        let wake = self.wake.as_fd();
        let mut fds = vec![PollFd::new(wake, PollFlags::POLLIN)];
        if let Some(p) = &self.pty {
            fds.push(PollFd::new(p.master.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(timeout_ms)) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok((false, false)),
            Err(e) => return Err(e),
        }
        let ready = |f: &PollFd| f.revents().unwrap_or(PollFlags::empty());
        if ready(&fds[0]).contains(PollFlags::POLLIN) {
            let mut sink = [0u8; 64];
            while matches!(nix::unistd::read(self.wake.as_raw_fd(), &mut sink), Ok(n) if n > 0) {}
        }
        Ok(match fds.get(1) {
            Some(m) => {
                let r = ready(m);
                (
                    r.contains(PollFlags::POLLIN),
                    r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR),
                )
            }
            None => (false, false),
        })
    }

    fn read_available(&mut self, buf: &mut [u8]) {
        let Some(p) = &self.pty else { return };
        loop {
            match nix::unistd::read(p.master.as_raw_fd(), buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.parser.push(&buf[..n]);
                    self.last_rx = Instant::now();
                    if n < buf.len() {
                        break;
                    }
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => break,
                Err(e) => {
                    debug!(error = %e, "pty read failed");
                    break;
                }
            }
        }
    }

    fn sync_garbage(&self) {
        lock(&self.shared.stats).garbage_bytes = self.parser.discarded();
    }

    fn serve_packets(&mut self) {
        while let Some(raw) = self.parser.next_packet() {
            {
                let mut st = lock(&self.shared.stats);
                st.packets += 1;
                if !crc_ok(&raw) {
                    st.bad_crc_received += 1;
                }
                st.garbage_bytes = self.parser.discarded();
            }
            let replies = {
                let mut chain = lock(&self.chain);
                if self.realtime {
                    let now = Instant::now();
                    chain.advance(now.duration_since(self.last_advance).as_secs_f64());
                    self.last_advance = now;
                }
                chain.handle(&raw)
            };
            if !replies.is_empty() {
                self.send_replies(replies);
            }
        }
        self.sync_garbage();
    }

    fn advance_clock(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_advance);
        if dt >= Duration::from_millis(1) {
            lock(&self.chain).advance(dt.as_secs_f64());
            self.last_advance = now;
        }
    }

    /// Apply faults and write the replies, batching them into as few writes as possible.
    fn send_replies(&mut self, replies: Vec<Vec<u8>>) {
        let mut out: Vec<u8> = Vec::with_capacity(replies.iter().map(Vec::len).sum());
        for mut r in replies {
            let (drop, corrupt, late, late_by) = {
                let mut f = lock(&self.shared.faults);
                let (d, c, l) = (
                    f.cfg.drop_reply_rate,
                    f.cfg.corrupt_crc_rate,
                    f.cfg.late_reply_rate,
                );
                (f.roll(d), f.roll(c), f.roll(l), f.cfg.late_reply)
            };
            if drop {
                lock(&self.shared.stats).dropped += 1;
                continue;
            }
            if corrupt {
                if let Some(last) = r.last_mut() {
                    *last ^= 0xA5;
                }
                lock(&self.shared.stats).corrupted += 1;
            }
            if late {
                self.write_out(&out);
                out.clear();
                lock(&self.shared.stats).late += 1;
                std::thread::sleep(late_by);
            }
            lock(&self.shared.stats).replies += 1;
            out.extend_from_slice(&r);
        }
        self.write_out(&out);
    }

    fn write_out(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(p) = &self.pty else {
            lock(&self.shared.stats).write_failures += 1;
            return;
        };
        let deadline = Instant::now() + WRITE_TIMEOUT;
        while !data.is_empty() {
            match nix::unistd::write(&p.master, data) {
                Ok(n) => data = &data[n..],
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        warn!(bytes = data.len(), "host is not reading; reply dropped");
                        lock(&self.shared.stats).write_failures += 1;
                        return;
                    }
                    let ms = u16::try_from(left.as_millis().clamp(1, 200)).unwrap_or(200);
                    let mut fds = [PollFd::new(p.master.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                Err(e) => {
                    debug!(error = %e, "pty write failed");
                    lock(&self.shared.stats).write_failures += 1;
                    return;
                }
            }
        }
    }
}
