//! The official Robotis Python SDK (dynamixel_sdk), an independent host implementation,
//! drives the emulator over its pty: ping, broadcast ping, read, write, sync read, fast sync
//! read, sync write and bulk read. The script asserts what it reads; this test asserts what
//! it wrote.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use intervened_sim::{PtyServer, ServerOptions};

fn python() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ));
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh --test (it installs dynamixel_sdk into the test venv)",
        p.display()
    );
    p
}

#[test]
fn robotis_python_sdk_drives_the_emulator() {
    let python = python();
    let chain = common::koch_chain().shared();
    for id in 1..=6u8 {
        chain
            .lock()
            .unwrap()
            .set_present_position(id, 1000 + i32::from(id));
    }
    let server = PtyServer::start(chain.clone(), ServerOptions::default()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(server.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sdk_check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("all passed"), "{stdout}");

    let chain = chain.lock().unwrap();
    for id in 1..=6u8 {
        assert_eq!(chain.goal_position(id), Some(2100 + i32::from(id)));
    }
    assert_eq!(chain.torque_enabled(2), Some(false));
    let st = server.stats();
    assert_eq!(st.bad_crc_received, 0, "{st:?}");
    // 19 requests in the script (8 pings, 3 reads, 4 writes, 4 group transfers).
    assert!(st.packets >= 19, "{st:?}");
}
