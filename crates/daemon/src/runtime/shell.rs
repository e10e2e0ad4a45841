//! The service shell on its own tokio thread: the control socket, the systemd notifier, and
//! the signals (SIGTERM/SIGINT stop, SIGHUP reloads the policy).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::Sender;
use intervened_robot::RobotConfig;
use tracing::{error, info};

use super::watch::PolicyWatch;
use crate::control::PolicyDriver;
use crate::service::{notify_loop, serve_socket, Command, ControlSocket};
use crate::status::Status;

pub(super) struct ShellParts {
    pub(super) cfg: RobotConfig,
    pub(super) socket: Option<ControlSocket>,
    pub(super) commands: Sender<Command>,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) policy_updates: Sender<Box<dyn PolicyDriver>>,
    pub(super) registry: PathBuf,
    pub(super) current: Option<PathBuf>,
    pub(super) feature_names: Vec<String>,
    pub(super) watch_registry: bool,
    pub(super) lockstep: bool,
}

pub(super) fn spawn_shell(p: ShellParts) -> Result<std::thread::JoinHandle<()>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let h = std::thread::Builder::new()
        .name("service".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                if let Some(sock) = p.socket {
                    let (c, s, st) = (p.commands.clone(), p.status.clone(), p.stop.clone());
                    tasks.push(tokio::spawn(async move {
                        let path = sock.path().to_path_buf();
                        if let Err(e) = serve_socket(sock, c, s, st).await {
                            error!("control socket {}: {e}", path.display());
                        }
                    }));
                }
                tasks.push(tokio::spawn(notify_loop(p.status.clone(), p.stop.clone())));
                tasks.push(tokio::spawn(signals(
                    p.stop.clone(),
                    p.commands.clone(),
                    PolicyWatch {
                        cfg: p.cfg,
                        registry: p.registry,
                        current: p.current,
                        feature_names: p.feature_names,
                        updates: p.policy_updates,
                        watch: p.watch_registry,
                        lockstep: p.lockstep,
                    },
                )));
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(h)
}

async fn signals(stop: Arc<AtomicBool>, commands: Sender<Command>, mut watch: PolicyWatch) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    // Short ticks so a stop set by the control loop (end of plan) ends the shell at once; the
    // registry is looked at every 50th (once a second).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: holding, closing the recording, exiting"); stop.store(true, Ordering::Relaxed); }
            _ = int.recv() => { info!("SIGINT: holding, closing the recording, exiting"); stop.store(true, Ordering::Relaxed); }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the policy (installed between episodes)");
                watch.check(true).await;
                // Nudge the loop so an idle daemon installs it at once.
                let (tx, _rx) = tokio::sync::oneshot::channel();
                let _ = commands.try_send(Command { request: crate::protocol::Request::Reload {}, reply: tx });
            }
            _ = tick.tick() => {
                ticks += 1;
                if watch.watch && ticks.is_multiple_of(50) {
                    watch.check(false).await;
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
}
