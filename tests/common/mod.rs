//! Helpers the binary-level tests share.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `intervened ARGS` in `cwd`, fails the test with its output if it fails, and returns
/// stdout and stderr together.
#[allow(dead_code)] // not every test binary runs commands
pub fn intervened_in(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_intervened"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?} failed in {cwd:?}:\n{text}");
    text
}

/// One request on a fresh connection to a daemon's control socket, and its reply.
#[allow(dead_code)] // not every test binary talks to a socket
pub fn ask(sock: &Path, line: &str) -> serde_json::Value {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(line.as_bytes()).unwrap();
    w.write_all(b"\n").unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap()
}
