//! The service shell around the control thread, on tokio: the Unix control socket, signals,
//! systemd notification and watchdog, and watching the policy registry.
//!
//! The shell never touches the arm: it sends [`Command`]s to the control thread and reads the
//! status the thread publishes. If the shell stalls, the arm is unaffected; if the control
//! thread stalls, the watchdog stops being fed and systemd restarts the daemon.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, error, info, warn};

use crate::protocol::{parse_request, Reply, Request, MAX_LINE};
use crate::status::Status;

pub use intervened_core::protocol::Command;

/// Reads the latest status without ever waiting on the control thread for long.
pub fn snapshot(status: &Mutex<Status>) -> Option<Status> {
    status.lock().ok().map(|s| s.clone())
}

/// Connections served at once. More are accepted, told why, and closed at once, so a client
/// that opens sockets in a loop can never use up the daemon's file descriptors (the recorder
/// needs them to create episode files).
pub const MAX_CONNECTIONS: usize = 16;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of one oversized line read and thrown away before the connection is closed.
const MAX_DISCARD: usize = 1 << 20;

/// Why the control socket could not be set up. Each names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {path}: it is a directory\n  fix: give a file path, e.g. --socket {path}/control.sock")]
    IsDirectory { path: PathBuf },
    #[error("control socket {path}: the path exists and is not a socket; refusing to delete it\n  fix: remove it yourself or choose another --socket")]
    NotASocket { path: PathBuf },
    #[error("control socket {path}: another intervened{} is serving it\n  fix: stop that daemon first (`intervened ctl --socket {path} status` shows it), or choose another --socket", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The control socket, bound and owned by this process: a lock file beside it (`<path>.lock`,
/// flock) makes sure no second daemon takes it over, and only a stale socket is ever removed.
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    _lock: std::fs::File,
}

impl ControlSocket {
    pub fn bind(path: &Path) -> Result<Self, SocketError> {
        use std::os::unix::fs::FileTypeExt;
        let io = |source| SocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Err(SocketError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = lock_pid_file(Path::new(&lock_path)).map_err(|e| match e {
            LockError::Held(pid) => SocketError::InUse {
                path: path.to_path_buf(),
                pid,
            },
            LockError::Io(e) => io(e),
        })?;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            // A socket someone answers on is live (a daemon from before the lock existed, or
            // another program): leave it. One nobody answers on was left by a crash.
            if let Ok(peer) = std::os::unix::net::UnixStream::connect(path) {
                use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
                let pid = getsockopt(&peer, PeerCredentials)
                    .ok()
                    .map(|c| c.pid() as u32);
                return Err(SocketError::InUse {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
        // 0660: the daemon's user and group (operators are added to the group) may connect.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    /// The socket file goes with the socket, also when the daemon fails to start after binding
    /// it (the lock is released right after, by closing its file).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a pid lock file could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another live process holds it (its pid, as it wrote it).
    Held(Option<u32>),
    Io(std::io::Error),
}

/// Takes an exclusive, non-blocking flock on `path` (created if missing) and writes this
/// process's pid into it. The lock lives as long as the returned file; the kernel drops it
/// when the process dies, so a crash never leaves a stale lock. The file itself is kept:
/// deleting lock files races with the next taker.
pub fn lock_pid_file(path: &Path) -> Result<std::fs::File, LockError> {
    use std::io::{Read, Seek, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::Io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            return Err(LockError::Held(text.trim().parse().ok()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    f.set_len(0).map_err(LockError::Io)?;
    f.rewind().map_err(LockError::Io)?;
    writeln!(f, "{}", std::process::id()).map_err(LockError::Io)?;
    Ok(f)
}

/// Serves the control socket until `stop` is set. Each connection speaks JSON lines.
///
/// Bounded in every direction: at most [`MAX_CONNECTIONS`] at once (the rest are refused with
/// an error line), idle connections close after [`IDLE_TIMEOUT`], a line never buffers more
/// than `MAX_LINE` bytes, and accept errors (out of descriptors) back off instead of spinning,
/// logged at most once every 10 s.
pub async fn serve_socket(
    socket: ControlSocket,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = UnixListener::from_std(socket.listener.try_clone()?)?;
    info!(socket = %socket.path.display(), "control socket listening");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::ZERO;
    let mut accept_errors = 0u64;
    let mut refused = 0u64;
    let mut last_log: Option<std::time::Instant> = None;
    let mut should_log = || {
        let now = std::time::Instant::now();
        let due = last_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
        if due {
            last_log = Some(now);
        }
        due
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        let Ok(accepted) = accepted else { continue };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let commands = commands.clone();
                        let status = status.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Err(e) = handle_connection(stream, commands, status).await {
                                debug!("control connection ended: {e}");
                            }
                        });
                    }
                    Err(_) => {
                        refused += 1;
                        if should_log() {
                            warn!(
                                refused,
                                "control socket: {MAX_CONNECTIONS} connections already open; refusing more"
                            );
                        }
                        // Best effort, never waits: the socket buffer of a fresh connection
                        // has room for one line.
                        let _ = stream.try_write(
                            format!(
                                "{{\"ok\":false,\"error\":\"too many connections (at most {MAX_CONNECTIONS})\"}}\n"
                            )
                            .as_bytes(),
                        );
                    }
                }
            }
            Err(e) => {
                accept_errors += 1;
                if should_log() {
                    warn!(
                        errors = accept_errors,
                        "control socket accept failed: {e}; backing off"
                    );
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                sleep_unless_stopped(backoff, &stop).await;
            }
        }
    }
    // Dropping `socket` removes its file.
    drop(socket);
    Ok(())
}

/// Reads one line into `buf` (without its newline), at most `MAX_LINE` bytes. Returns None at
/// the end of the stream or after `IDLE_TIMEOUT` of silence, Some(false) for a line too long
/// (its rest has been read and thrown away in bounded pieces), Some(true) for a line.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut discarded = 0usize;
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, r.fill_buf()).await {
            Ok(c) => c?,
            Err(_) => return Ok(None),
        };
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && discarded == 0 {
                None
            } else {
                Some(discarded == 0)
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let body = chunk.get(..take).unwrap_or_default();
        let body = body.strip_suffix(b"\n").unwrap_or(body);
        if discarded == 0 && buf.len() + body.len() <= MAX_LINE {
            buf.extend_from_slice(body);
        } else {
            discarded += buf.len() + body.len();
            buf.clear();
        }
        r.consume(take);
        if done {
            return Ok(Some(discarded == 0));
        }
        if discarded > MAX_DISCARD {
            return Err(std::io::Error::other(format!(
                "a line longer than {MAX_DISCARD} bytes: closing"
            )));
        }
    }
}

async fn handle_connection(
    stream: UnixStream,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(4096, read);
    let mut buf = Vec::with_capacity(256);
    loop {
        let reply = match read_line(&mut lines, &mut buf).await {
            Err(e) => {
                let reply = Reply::err(format!("{e}"));
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
                return Err(e);
            }
            Ok(None) => return Ok(()),
            Ok(Some(false)) => Reply::err(format!("request longer than {MAX_LINE} bytes")),
            Ok(Some(true)) => match std::str::from_utf8(&buf) {
                Err(_) => Reply::err("request is not UTF-8"),
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => match parse_request(line) {
                    Err(e) => Reply::err(e),
                    Ok(Request::Status {}) => match snapshot(&status) {
                        Some(s) => Reply::ok(s),
                        None => Reply::err("status unavailable"),
                    },
                    Ok(request) => forward(request, &commands).await,
                },
            },
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        write.write_all(&out).await?;
    }
}

async fn forward(request: Request, commands: &Sender<Command>) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if commands.try_send(Command { request, reply: tx }).is_err() {
        return Reply::err("the control loop is not accepting commands (busy or stopping)");
    }
    match tokio::time::timeout(Duration::from_secs(2), rx).await {
        Ok(Ok(reply)) => reply,
        _ => Reply::err("the control loop did not answer within 2 s"),
    }
}

/// Sends systemd notifications: READY once, STATUS and WATCHDOG while the loop is healthy.
/// Without NOTIFY_SOCKET every call is a no-op.
pub async fn notify_loop(status: Arc<Mutex<Status>>, stop: Arc<AtomicBool>) {
    let watchdog_every = sd_notify::watchdog_enabled();
    let watchdog = watchdog_every.is_some();
    // Feed at half the watchdog interval.
    let interval = watchdog_every
        .map(|d| (d / 2).max(Duration::from_millis(50)))
        .unwrap_or(Duration::from_millis(500));
    let mut ready = false;
    let mut last_tick = 0u64;
    let mut last_line = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(s) = snapshot(&status) {
            // Healthy means the loop has ticked since we last looked and says it is healthy.
            let ticking = s.tick > last_tick;
            last_tick = s.tick;
            if !ready && s.tick > 0 {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                ready = true;
            }
            let line = s.line();
            if line != last_line {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&line)]);
                last_line = line;
            }
            if watchdog && ticking && s.healthy {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else if watchdog && !ticking {
                error!("control loop has not ticked in {interval:?}: not feeding the watchdog");
            }
        }
        sleep_unless_stopped(interval, &stop).await;
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Sleeps for `d`, returning early (within 20 ms) once `stop` is set, so the shell never
/// delays the daemon's exit.
pub async fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = tokio::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = tokio::time::Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep((end - now).min(Duration::from_millis(20))).await;
    }
}

/// Where the registry's `current` link points now, if anywhere.
pub fn registry_current(registry: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(registry.join("current")).ok()
}
