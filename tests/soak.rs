//! The fault soak through the binary, shortened: `intervened bench soak --seconds 20` runs the
//! simulated robot in real time with the simulated human supervising a small policy, the
//! recorder on, 1% corrupted and 1% dropped replies, one unplug and replug (at 30% of the run)
//! and one silent servo (at 60%). No goal may leave the joint limits, the arm must enter Hold
//! and leave it again, no frame may be lost, and every episode file must read back.

use std::process::Command;

/// The number after `prefix` in the line that starts with `line`.
fn number(text: &str, line: &str, prefix: &str) -> u64 {
    let l = text
        .lines()
        .find(|l| l.starts_with(line))
        .unwrap_or_else(|| panic!("no line starting {line:?} in:\n{text}"));
    let rest = &l[l
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {l:?}"))
        + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {prefix:?} in {l:?}"))
}

#[test]
fn a_short_fault_soak_keeps_goals_inside_the_limits_and_files_readable() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_intervened"))
        .args(["bench", "soak", "--seconds", "20", "--out"])
        .arg(dir.path().join("data"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak failed:\n{text}");

    // The faults happened.
    let emu = |prefix| number(&stdout, "emulator:", prefix);
    assert!(emu("emulator: ") > 0, "replies: {stdout}");
    assert!(emu("sent, ") > 0, "corrupted replies: {stdout}");
    assert!(emu("corrupted, ") > 0, "dropped replies: {stdout}");
    assert_eq!(emu("dropped; "), 1, "one unplug: {stdout}");
    assert_eq!(emu("unplug(s), "), 1, "one replug: {stdout}");
    assert_eq!(emu("replug(s); "), 1, "one silent servo: {stdout}");
    assert!(
        number(&stdout, "loop:", "episode(s), ") > 0,
        "bus errors: {stdout}"
    );

    // The arm held and was taken out of Hold again.
    assert!(
        number(&stdout, "holds:", "holds: ") >= 1,
        "entered: {stdout}"
    );
    assert!(
        number(&stdout, "holds:", "entered, ") >= 1,
        "left: {stdout}"
    );

    // Nothing was lost and no goal left the limits.
    assert_eq!(number(&stdout, "frames:", "frames: "), 0, "{stdout}");
    assert_eq!(number(&stdout, "frames:", "(queue full), "), 0, "{stdout}");
    assert_eq!(number(&stdout, "frames:", "(not written), "), 0, "{stdout}");
    let goals = "goals outside the joint limits:";
    assert_eq!(number(&stdout, goals, "limits: "), 0, "{stdout}");
    assert!(
        number(&stdout, goals, " of ") > 0,
        "no goals recorded: {stdout}"
    );

    // Every file reads back with our reader (and, where the venv is set up, the official one).
    let read = number(&stdout, "files:", "files: ");
    let total = number(&stdout, "files:", " of ");
    assert!(total >= 1 && read == total, "{stdout}");
}
