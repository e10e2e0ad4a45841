//! One rule for paths, checked from a working directory that is neither the repository nor the
//! config's directory: a path typed on the command line is relative to the working directory,
//! a path written in a config file is relative to that file.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::intervened_in as intervened;

fn mcap_count(data: &Path) -> usize {
    let Ok(sessions) = std::fs::read_dir(data.join("sessions")) else {
        return 0;
    };
    sessions
        .flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "mcap")
        })
        .count()
}

#[test]
fn config_paths_follow_the_config_and_typed_paths_follow_the_working_directory() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    // A config whose own paths are relative to it: calibration beside it, registry and
    // recordings under it.
    std::fs::copy(
        repo.join("calibration/sim-koch.json"),
        conf.join("cal.json"),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo.join("robot-configs/sim-koch.toml"))
        .unwrap()
        .replace("\"../calibration/sim-koch.json\"", "\"cal.json\"")
        .replace("registry = \"../policies\"", "registry = \"pol\"")
        .replace("root = \"../data\"", "root = \"rec\"");
    assert!(text.contains("\"cal.json\"") && text.contains("\"pol\"") && text.contains("\"rec\""));
    std::fs::write(conf.join("robot.toml"), text).unwrap();
    let cfg = "../conf/robot.toml";

    // Recordings go to the config's `recording.root` ...
    intervened(
        &work,
        &[
            "run",
            "--config",
            cfg,
            "--demo",
            "--sim-human",
            "--episodes",
            "2",
        ],
    );
    assert_eq!(mcap_count(&conf.join("rec")), 2);
    // ... and to a typed --data relative to the working directory.
    intervened(
        &work,
        &[
            "run",
            "--config",
            cfg,
            "--demo",
            "--sim-human",
            "--episodes",
            "1",
            "--data",
            "here",
        ],
    );
    assert_eq!(mcap_count(&work.join("here")), 1);

    // Typed paths for retrain; the config's registry is where `run` then finds the policy.
    let out = intervened(
        &work,
        &[
            "retrain",
            "--data",
            "../conf/rec",
            "--out",
            "../conf/pol",
            "--config",
            cfg,
            "--max-steps",
            "200",
            "--quiet",
        ],
    );
    assert!(out.contains("published v0001"), "{out}");
    let out = intervened(
        &work,
        &["run", "--config", cfg, "--sim-human", "--episodes", "1"],
    );
    assert!(out.contains("policy v0001"), "{out}");
    assert_eq!(mcap_count(&conf.join("rec")), 3);

    let out = intervened(&work, &["export", "sessions", "--data", "../conf/rec"]);
    assert!(out.contains("v0001"), "{out}");
    let out = intervened(
        &work,
        &["export", "lerobot", "--data", "../conf/rec", "--out", "ds"],
    );
    assert!(work.join("ds/meta/info.json").exists(), "{out}");
    intervened(&work, &["doctor", "--config", cfg]);
    // Nothing was written next to the working directory's parent or into the repository.
    assert!(!dir.path().join("rec").exists() && !dir.path().join("pol").exists());
}
