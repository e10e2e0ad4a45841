//! The README's commands exactly as printed, run from the root of a fresh copy of the
//! repository (only the files git tracks) with the relative paths a newcomer types.
//!
//! The first release's demo evaluated with no policy on a fresh clone because every test used
//! absolute temporary paths; this test reads the README and the Makefile, so when a command
//! there changes, what is tested changes with it.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The lines of the first ```bash block after `heading` (comments stripped).
fn bash_block(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?} section"));
    let rest = &readme[start..];
    let open = rest.find("```bash\n").expect("no bash block") + "```bash\n".len();
    let body = &rest[open..];
    let close = body.find("```").expect("unclosed bash block");
    body[..close]
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The shell line of a Makefile target's recipe (exactly one).
fn make_recipe(makefile: &str, target: &str) -> String {
    let head = format!("\n{target}:");
    let at = makefile
        .find(&head)
        .unwrap_or_else(|| panic!("Makefile has no target {target}"));
    let recipe: Vec<&str> = makefile[at + head.len()..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .map(str::trim)
        .collect();
    assert_eq!(recipe.len(), 1, "{target}: {recipe:?}");
    recipe[0].to_string()
}

/// A fresh clone's files: what git tracks, copied to `dst`.
fn fresh_copy(dst: &Path) {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .expect("git is needed to make a fresh copy of the repository");
    assert!(out.status.success(), "git ls-files failed");
    for name in out.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let rel = Path::new(std::str::from_utf8(name).unwrap());
        let src = repo().join(rel);
        if !src.is_file() {
            continue; // deleted in the working tree, not yet committed
        }
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&src, &to).unwrap();
    }
}

/// Runs `intervened ARGS` (what `cargo run -- ARGS` runs) in `cwd`; returns stdout+stderr.
fn intervened(cwd: &Path, line: &str) -> String {
    let args = line
        .strip_prefix("cargo run -- ")
        .unwrap_or_else(|| panic!("not a `cargo run --` line: {line}"));
    let args: Vec<&str> = args.split_whitespace().collect();
    common::intervened_in(cwd, &args)
}

fn episodes_of(data: &Path) -> Vec<intervened_episodes::Episode> {
    let mut v = Vec::new();
    for s in std::fs::read_dir(data.join("sessions")).unwrap() {
        for e in std::fs::read_dir(s.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "mcap") {
                v.push(intervened_episodes::read_episode(&p).unwrap());
            }
        }
    }
    v
}

#[test]
fn the_readme_commands_work_as_written_from_a_fresh_clone() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("intervened");
    fresh_copy(&root);

    // Quick start: `make demo` (the test suite is `make test` itself).
    let quick = bash_block(&readme, "## Quick start");
    assert_eq!(quick, ["make demo", "make test"], "the Quick start changed");
    let demo = make_recipe(&makefile, "demo");
    let text = intervened(&root, &demo);
    eprintln!("{text}");
    // The results table: DAgger's success is above zero, and it ran real policies.
    let row = text
        .lines()
        .find(|l| l.starts_with("| hg-dagger | 1 |"))
        .unwrap_or_else(|| panic!("no DAgger row in:\n{text}"));
    let success: f64 = row
        .split('|')
        .nth(3)
        .unwrap()
        .trim()
        .trim_start_matches("**")
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(success > 0.0, "DAgger never succeeded: {row}");
    let seed = root.join("bench-out/dagger/seed-0");
    assert!(root.join("bench-out/dagger/dagger.svg").exists());
    let rounds = episodes_of(&seed.join("data"));
    let supervised: Vec<_> = rounds.iter().filter(|e| !e.meta.demo).collect();
    assert!(!supervised.is_empty(), "no policy episodes were recorded");
    for ep in &supervised {
        assert!(
            ep.meta.policy_version.is_some(),
            "a policy episode ran no policy"
        );
        assert!(
            ep.frames
                .iter()
                .all(|f| f.source != intervened_episodes::ControlSource::Demo),
            "a policy episode recorded demonstration frames"
        );
    }
    // Every failed rollout says why, and the table says it too.
    assert!(text.contains("Why the rollouts failed"), "{text}");
    let evals = episodes_of(&seed.join("eval/hg-dagger-1"));
    for e in &evals {
        if e.manifest.outcome == intervened_episodes::Outcome::Failure {
            assert!(
                e.manifest.failure.is_some(),
                "a failed rollout without a reason"
            );
        }
    }
    assert!(!evals.is_empty());
    assert!(evals
        .iter()
        .all(|e| e.meta.policy_version.as_deref() == Some("v0002")));

    // Usage, line by line. The full experiments are the quick one above with more seeds and
    // rounds (9 and 28 minutes on 2 cores); they are the lines not run here (`tests/pixels.rs`
    // runs the one from pixels at a toy size).
    let usage = bash_block(&readme, "## Usage");
    let long = [
        "cargo run -- bench dagger",
        "cargo run -- bench dagger --vision",
    ];
    let skipped: Vec<_> = usage
        .iter()
        .filter(|l| long.contains(&l.as_str()))
        .collect();
    assert_eq!(skipped.len(), long.len(), "{usage:?}");
    let mut outputs = Vec::new();
    for line in usage.iter().filter(|l| !long.contains(&l.as_str())) {
        outputs.push((line.clone(), intervened(&root, line)));
    }
    assert!(outputs.len() >= 5, "{usage:?}");
    // Demonstrations, then training, then policy episodes with the human supervising: the
    // policy was loaded and its episodes are labelled robot / intervention.
    let eps = episodes_of(&root.join("data"));
    let policy_eps: Vec<_> = eps.iter().filter(|e| !e.meta.demo).collect();
    assert!(root.join("policies/current/policy.pt").exists());
    assert!(
        !policy_eps.is_empty(),
        "the policy episodes were not recorded"
    );
    for ep in &policy_eps {
        assert_eq!(ep.meta.policy_version.as_deref(), Some("v0001"));
        assert!(ep.frames.iter().all(|f| matches!(
            f.source,
            intervened_episodes::ControlSource::Robot
                | intervened_episodes::ControlSource::Intervention
        )));
    }
    let (_, sessions) = outputs
        .iter()
        .find(|(l, _)| l.contains("export sessions"))
        .expect("the README lists `export sessions`");
    assert!(sessions.contains("data root"), "{sessions}");
}
