//! The control socket and the data root under hostile use, through the binary: an endless
//! line, a flood of connections with a tight descriptor limit, a second daemon, and socket
//! paths that are not sockets.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::ask;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_intervened"))
}

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("robot-configs/sim-koch.toml")
}

fn wait_for_socket(sock: &Path, child: &mut Child) {
    let t0 = Instant::now();
    while !sock.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the daemon exited before serving its socket: {st:?}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn stop(mut child: Child) -> Output {
    let _ = Command::new("kill")
        .arg("-15")
        .arg(child.id().to_string())
        .status();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// 600 MB without a newline: refused, thrown away in bounded pieces, the daemon's memory does
/// not grow with it, and it still answers.
#[test]
fn an_endless_line_is_refused_without_buffering_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let mut child = bin()
        .args(["run", "--realtime", "--no-record", "--config"])
        .arg(config())
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_socket(&sock, &mut child);
    assert_eq!(ask(&sock, r#"{"cmd":"status"}"#)["ok"], true);
    let before = rss_kib(child.id());

    let s = UnixStream::connect(&sock).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let block = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    let mut peak = before;
    for _ in 0..600 {
        match w.write_all(&block) {
            Ok(()) => sent += block.len(),
            // The daemon closed the connection: it is not reading 600 MB.
            Err(_) => break,
        }
        peak = peak.max(rss_kib(child.id()));
    }
    let mut reply = String::new();
    let _ = BufReader::new(&s).read_line(&mut reply);
    let after = rss_kib(child.id());
    peak = peak.max(after);
    eprintln!("sent {sent} bytes; RSS {before} -> peak {peak} kB; reply {reply:?}");
    assert!(
        peak < before + 32 * 1024,
        "RSS grew from {before} kB to {peak} kB while {sent} bytes arrived"
    );
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("longer than"), "{v}");
    // The daemon still answers on a new connection.
    assert_eq!(ask(&sock, r#"{"cmd":"status"}"#)["ok"], true);
    assert!(stop(child).status.success());
}

/// 1,100 idle connections against a daemon limited to 1,024 descriptors while it records:
/// every episode is written, and the refusals are logged a handful of times, not millions.
#[test]
fn a_flood_of_connections_never_costs_an_episode() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let data = dir.path().join("data");
    let episodes = 6;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_intervened"))
        .args(["run", "--demo", "--sim-human", "--realtime", "--episodes"])
        .arg(episodes.to_string())
        .arg("--config")
        .arg(config())
        .arg("--data")
        .arg(&data)
        .arg("--socket")
        .arg(&sock)
        // Files, not pipes: a daemon that logged in a loop must not block on a full pipe.
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    wait_for_socket(&sock, &mut child);
    let mut conns = Vec::new();
    for i in 0..1100 {
        match UnixStream::connect(&sock) {
            Ok(c) => conns.push(c),
            Err(e) => panic!("connection {i}: {e} (the test process needs > 1,100 descriptors)"),
        }
    }
    // Real time: 6 episodes of at most 10 s each. Hold every connection open meanwhile.
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the session never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(conns);
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    assert!(
        out.contains(
            "0 dropped frame(s) or camera image(s) (queue full), 0 lost frame(s) (not written), 0 lost episode(s)"
        ),
        "{out}"
    );
    let mut files = 0;
    for s in std::fs::read_dir(data.join("sessions")).unwrap() {
        for e in std::fs::read_dir(s.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "mcap") {
                let ep = intervened_episodes::read_episode(&p).unwrap();
                assert!(ep.manifest.frames > 0, "{p:?}");
                files += 1;
            }
        }
    }
    assert_eq!(files, episodes, "{out}\n{err}");
    let socket_lines = err.lines().filter(|l| l.contains("control socket")).count();
    assert!(
        socket_lines <= 30,
        "{socket_lines} log lines about the socket: not rate-limited"
    );
}

/// One daemon per socket and per data root; a socket path that is a file or a directory is
/// an error at start, and nothing that is not a stale socket is ever deleted.
#[test]
fn a_second_daemon_is_refused_and_the_first_keeps_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let data = dir.path().join("data");
    let mut first = bin()
        .args(["run", "--realtime", "--config"])
        .arg(config())
        .arg("--socket")
        .arg(&sock)
        .arg("--data")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_socket(&sock, &mut first);
    let pid = first.id().to_string();

    let run = |socket: &Path, data: &Path| {
        bin()
            .args(["run", "--realtime", "--config"])
            .arg(config())
            .arg("--socket")
            .arg(socket)
            .arg("--data")
            .arg(data)
            .output()
            .unwrap()
    };
    // The same socket.
    let out = run(&sock, &dir.path().join("other-data"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("another intervened") && err.contains(&pid) && err.contains("fix:"),
        "{err}"
    );
    // The same data root.
    let out = run(&dir.path().join("other.sock"), &data);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("in use by another intervened") && err.contains(&pid),
        "{err}"
    );
    // The first daemon still owns and serves its socket.
    assert_eq!(ask(&sock, r#"{"cmd":"status"}"#)["ok"], true);

    // A regular file where the socket should go is an error, and it is left alone.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let out = run(&file, &dir.path().join("d2"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    // A directory is an error at start, not a daemon running without its socket.
    let out = run(dir.path(), &dir.path().join("d3"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is a directory"), "{err}");

    assert!(stop(first).status.success());
    // Once the first is gone its socket and root are free again; a stale socket file left by
    // a crash is replaced (here: the lock is free and nobody answers).
    assert!(!sock.exists(), "the first daemon left its socket behind");
}
