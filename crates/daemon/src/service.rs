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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, error, info, warn};

use crate::protocol::{parse_request, Reply, Request, MAX_LINE};
use crate::status::Status;

/// A request for the control thread, with where to send its reply.
pub struct Command {
    pub request: Request,
    pub reply: tokio::sync::oneshot::Sender<Reply>,
}

/// Reads the latest status without ever waiting on the control thread for long.
pub fn snapshot(status: &Mutex<Status>) -> Option<Status> {
    status.lock().ok().map(|s| s.clone())
}

/// Serves the control socket until `stop` is set. Each connection speaks JSON lines.
pub async fn serve_socket(
    path: PathBuf,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    if path.exists() {
        // A socket left by a crashed daemon; a live daemon would still hold the pid file lock.
        std::fs::remove_file(&path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(&path)?;
    // 0660: the daemon's user and group (operators are added to the group) may connect.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    info!(socket = %path.display(), "control socket listening");
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let accepted = tokio::time::timeout(Duration::from_millis(50), listener.accept()).await;
        let Ok(accepted) = accepted else { continue };
        match accepted {
            Ok((stream, _)) => {
                let commands = commands.clone();
                let status = status.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle_connection(stream, commands, status).await {
                        debug!("control connection ended: {e}");
                    }
                });
            }
            Err(e) => warn!("control socket accept failed: {e}"),
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn handle_connection(
    stream: UnixStream,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // Read one line, refusing to buffer more than MAX_LINE (+1 to detect overflow).
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let reply = if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
            // Drain the rest of the oversized line so the next one parses cleanly.
            let mut sink = Vec::new();
            lines.read_until(b'\n', &mut sink).await?;
            Reply::err(format!("request longer than {MAX_LINE} bytes"))
        } else {
            match std::str::from_utf8(&buf) {
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
            }
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
