//! Loading Python-exported policies: parity with Python, ensemble mean and doubt, and the
//! errors a broken or mismatched policy gives.

// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{edit_sidecar, fixtures, koch};
use intervened_policy::{bench_infer, sha256_file, Policy, PolicyError};
use serde_json::json;

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + b.abs())
}

#[test]
fn scripted_mlp_gives_python_numbers() {
    let f = fixtures();
    let mut p = Policy::load(f.policy("mlp"), &koch(30.0)).unwrap();
    assert_eq!(
        (p.obs_dim(), p.act_dim(), p.chunk_size(), p.ensemble_size()),
        (10, 6, 4, 1)
    );
    let (obs, out) = f.probe("mlp");
    let pred = p.infer(&obs).unwrap();
    assert_eq!(pred.doubt, None);
    assert_eq!(pred.chunk.len(), 4);
    for (s, row) in pred.chunk.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert!(
                close(v, out[0][s][j]),
                "step {s} action {j}: rust {v}, python {}",
                out[0][s][j]
            );
        }
    }
    // Loading through the .pt path finds the sidecar beside it.
    let mut p2 = Policy::load(f.policy("mlp").join("policy.pt"), &koch(30.0)).unwrap();
    assert_eq!(p2.infer(&obs).unwrap(), pred);
}

#[test]
#[allow(clippy::needless_range_loop)] // index form mirrors the [member][step][action] formula
fn traced_ensemble_mean_and_doubt_match_a_hand_computation() {
    let f = fixtures();
    let mut p = Policy::load(f.policy("ens"), &koch(30.0)).unwrap();
    let (obs, out) = f.probe("ens");
    assert_eq!(out.len(), 3);
    let pred = p.infer(&obs).unwrap();
    for s in 0..4 {
        for j in 0..6 {
            let mean = (out[0][s][j] + out[1][s][j] + out[2][s][j]) / 3.0;
            assert!(close(pred.chunk[s][j], mean), "step {s} action {j}");
        }
    }
    // Doubt: sum over actions of the population variance over the 3 members, averaged over
    // the chunk's 4 steps.
    let mut doubt = 0.0f64;
    for s in 0..4 {
        for j in 0..6 {
            let xs: Vec<f64> = (0..3).map(|m| f64::from(out[m][s][j])).collect();
            let mean = xs.iter().sum::<f64>() / 3.0;
            doubt += xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0 / 4.0;
        }
    }
    let got = f64::from(pred.doubt.unwrap());
    assert!(doubt > 0.01, "members should disagree: {doubt}");
    assert!((got - doubt).abs() < 1e-4 * doubt, "doubt {got} vs {doubt}");
}

#[test]
fn constant_three_member_ensemble_doubt_is_exact() {
    // Members differ by 0, 1, 2 on every action: variance 2/3 each, 6 actions -> 4.
    let mut p = Policy::load(fixtures().policy("delta"), &koch(30.0)).unwrap();
    let pred = p.infer(&[0.0; 10]).unwrap();
    assert!((pred.doubt.unwrap() - 4.0).abs() < 1e-5, "{:?}", pred.doubt);
    // Mean: 0.01 (s + 1) (j + 1) + 1.
    assert!(close(pred.chunk[2][5], 0.01 * 3.0 * 6.0 + 1.0));
}

fn load_err(dir: &std::path::Path, fps: f64) -> String {
    let e = Policy::load(dir, &koch(fps)).unwrap_err();
    e.to_string()
}

#[test]
fn bad_hash_names_the_sidecar_field() {
    let t = fixtures().copy("mlp");
    edit_sidecar(t.path(), "sha256", json!("ab".repeat(32)));
    let e = load_err(t.path(), 30.0);
    assert!(e.contains("policy.json: `sha256`"), "{e}");
    assert!(e.contains("hashes to") && e.contains("fix:"), "{e}");
}

#[test]
fn mismatched_names_order_fps_and_robot_type_are_refused() {
    let f = fixtures();
    let dir = f.policy("mlp");

    let mut want = koch(30.0);
    want.observation_names.swap(6, 7);
    let e = Policy::load(&dir, &want).unwrap_err().to_string();
    assert!(
        e.contains("`observation_names`") && e.contains("position 6"),
        "{e}"
    );
    assert!(e.contains("different order"), "{e}");

    let mut want = koch(30.0);
    want.action_names[5] = "gripper.effort".into();
    let e = Policy::load(&dir, &want).unwrap_err().to_string();
    assert!(
        e.contains("`action_names`") && e.contains("gripper.effort"),
        "{e}"
    );

    let mut want = koch(30.0);
    want.observation_names.pop();
    let e = Policy::load(&dir, &want).unwrap_err().to_string();
    assert!(e.contains("10 names, this robot 9"), "{e}");

    let e = load_err(&dir, 50.0);
    assert!(
        e.contains("`fps`") && e.contains("30 Hz") && e.contains("rate_hz"),
        "{e}"
    );

    let mut want = koch(30.0);
    want.robot_type = "openmanipulator_x".into();
    let e = Policy::load(&dir, &want).unwrap_err().to_string();
    assert!(e.contains("`robot_type`") && e.contains("koch_v1.1"), "{e}");
}

#[test]
fn wrong_output_shape_is_found_by_the_warm_up() {
    let e = load_err(&fixtures().policy("flat"), 30.0);
    assert!(e.contains("`output shape`"), "{e}");
    assert!(e.contains("[1, 2, 6]") && e.contains("[1, 1, 2, 6]"), "{e}");
    // A sidecar that lies about the chunk size is caught the same way.
    let t = fixtures().copy("mlp");
    edit_sidecar(t.path(), "chunk_size", json!(5));
    let e = load_err(t.path(), 30.0);
    assert!(
        e.contains("`output shape`") && e.contains("[1, 1, 4, 6]"),
        "{e}"
    );
}

#[test]
fn missing_files_are_named() {
    let t = fixtures().copy("mlp");
    std::fs::remove_file(t.path().join("policy.json")).unwrap();
    let e = Policy::load(t.path(), &koch(30.0)).unwrap_err();
    assert!(matches!(e, PolicyError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("policy.json: missing"), "{e}");

    let t = fixtures().copy("mlp");
    std::fs::remove_file(t.path().join("policy.pt")).unwrap();
    let e = load_err(t.path(), 30.0);
    assert!(
        e.contains("policy.pt: missing") && e.contains("fix:"),
        "{e}"
    );

    let e = load_err(&t.path().join("nowhere"), 30.0);
    assert!(e.contains("nowhere: missing"), "{e}");
}

#[test]
fn corrupt_model_with_matching_hash_fails_to_load_clearly() {
    let t = fixtures().copy("mlp");
    let pt = t.path().join("policy.pt");
    let bytes = std::fs::read(&pt).unwrap();
    std::fs::write(&pt, &bytes[..bytes.len() / 2]).unwrap();
    edit_sidecar(t.path(), "sha256", json!(sha256_file(&pt).unwrap()));
    let e = Policy::load(t.path(), &koch(30.0)).unwrap_err();
    assert!(matches!(e, PolicyError::Load { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains("policy.pt: cannot load as TorchScript"), "{e}");
}

#[test]
fn sidecar_that_is_not_json_is_refused() {
    let t = fixtures().copy("mlp");
    std::fs::write(t.path().join("policy.json"), "{ not json").unwrap();
    let e = load_err(t.path(), 30.0);
    assert!(e.contains("policy.json: not a valid policy sidecar"), "{e}");
}

#[test]
fn a_failed_load_leaves_the_running_policy_alone() {
    let f = fixtures();
    let mut current = Policy::load(f.policy("mlp"), &koch(30.0)).unwrap();
    let (obs, _) = f.probe("mlp");
    let before = current.infer(&obs).unwrap();
    match Policy::load(f.policy("flat"), &koch(30.0)) {
        Ok(p) => current = p,
        Err(e) => assert!(matches!(e, PolicyError::Field { .. })),
    }
    assert_eq!(current.infer(&obs).unwrap(), before);
}

#[test]
fn non_finite_output_and_wrong_width_are_errors() {
    let mut p = Policy::load(fixtures().policy("mlp"), &koch(30.0)).unwrap();
    let mut obs = [0.0f32; 10];
    obs[3] = f32::NAN;
    let e = p.infer(&obs).unwrap_err();
    assert!(matches!(e, PolicyError::NonFinite { .. }), "{e}");
    let e = p.infer(&[0.0; 9]).unwrap_err().to_string();
    assert!(
        e.contains("observation has 9 values, the policy expects 10"),
        "{e}"
    );
    // Still usable afterwards.
    assert!(p.infer(&[0.0; 10]).is_ok());
}

#[test]
fn bench_reports_ordered_percentiles() {
    let mut p = Policy::load(fixtures().policy("mlp"), &koch(30.0)).unwrap();
    let l = bench_infer(&mut p, 50).unwrap();
    assert!(l.p50_us > 0.0 && l.p50_us <= l.p99_us, "{l:?}");
    assert!(l.mean_us > 0.0 && l.mean_us < 1e6, "{l:?}");
}

#[test]
fn a_model_traced_and_exported_from_rust_loads_through_the_shared_helpers() {
    use intervened_policy::{write_sidecar, ActionKind, PolicySidecar, FORMAT_VERSION};
    use tch::{CModule, Tensor};

    let t = tempfile::tempdir().unwrap();
    // y = 2 * obs[:6] + 1, as [B, 1, 1, 6].
    let module = CModule::create_by_tracing(
        "policy",
        "forward",
        &[Tensor::zeros([1, 10], (tch::Kind::Float, tch::Device::Cpu))],
        &mut |xs| vec![(xs[0].narrow(1, 0, 6) * 2.0 + 1.0).reshape([-1, 1, 1, 6])],
    )
    .unwrap();
    let pt = t.path().join("policy.pt");
    module.save(&pt).unwrap();
    let want = koch(30.0);
    let sidecar = PolicySidecar {
        format_version: FORMAT_VERSION,
        version: "rust".into(),
        robot_type: want.robot_type.clone(),
        observation_names: want.observation_names.clone(),
        action_names: want.action_names.clone(),
        fps: 30.0,
        chunk_size: 1,
        action_kind: ActionKind::Absolute,
        ensemble_size: 1,
        sha256: sha256_file(&pt).unwrap(),
        cameras: Vec::new(),
        provenance: json!({"trained_by": "test"}),
    };
    write_sidecar(t.path(), &sidecar).unwrap();
    let mut p = Policy::load(t.path(), &want).unwrap();
    assert_eq!(p.sidecar(), &sidecar);
    let obs: Vec<f32> = (0..10).map(|i| i as f32 * 0.5).collect();
    let pred = p.infer(&obs).unwrap();
    let expect: Vec<f32> = obs[..6].iter().map(|v| 2.0 * v + 1.0).collect();
    assert_eq!(pred.chunk, vec![expect]);
}

/// A sidecar for the koch expectations over whatever `policy.pt` holds, hash included.
fn sidecar_over(dir: &std::path::Path) {
    use intervened_policy::{write_sidecar, ActionKind, PolicySidecar, FORMAT_VERSION};
    let want = koch(30.0);
    let sidecar = PolicySidecar {
        format_version: FORMAT_VERSION,
        version: "corrupt".into(),
        robot_type: want.robot_type.clone(),
        observation_names: want.observation_names.clone(),
        action_names: want.action_names.clone(),
        fps: 30.0,
        chunk_size: 1,
        action_kind: ActionKind::Absolute,
        ensemble_size: 1,
        sha256: sha256_file(&dir.join("policy.pt")).unwrap(),
        cameras: Vec::new(),
        provenance: json!({"trained_by": "test"}),
    };
    write_sidecar(dir, &sidecar).unwrap();
}

/// The error as an operator sees it: Display plus the `source()` chain (anyhow's `{:#}`).
fn shown(e: &PolicyError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

#[test]
fn corrupt_model_error_has_no_cpp_stack_trace_and_a_fix_line() {
    use tch::{CModule, Tensor};

    // A real TorchScript zip, cut in half.
    let t = tempfile::tempdir().unwrap();
    let module = CModule::create_by_tracing(
        "policy",
        "forward",
        &[Tensor::zeros([1, 10], (tch::Kind::Float, tch::Device::Cpu))],
        &mut |xs| vec![xs[0].narrow(1, 0, 6).reshape([-1, 1, 1, 6])],
    )
    .unwrap();
    let pt = t.path().join("policy.pt");
    module.save(&pt).unwrap();
    let bytes = std::fs::read(&pt).unwrap();
    let truncated = bytes[..bytes.len() / 2].to_vec();
    // Random bytes (a fixed xorshift stream, so the test is repeatable).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();

    for (what, content) in [("truncated zip", truncated), ("random bytes", random)] {
        std::fs::write(&pt, &content).unwrap();
        sidecar_over(t.path());
        let e = Policy::load(t.path(), &koch(30.0)).unwrap_err();
        assert!(matches!(e, PolicyError::Load { .. }), "{what}: {e}");
        let msg = shown(&e);
        eprintln!("{what}: {msg}");
        assert!(
            msg.starts_with(&format!("{}: cannot load as TorchScript: ", pt.display())),
            "{what}: {msg}"
        );
        assert!(
            !msg.contains("Exception raised from") && !msg.contains("frame #"),
            "{what}: C++ stack trace in: {msg}"
        );
        // One line of problem, one fix line.
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 2, "{what}: {msg}");
        assert!(
            lines[1].starts_with("  fix: re-export the model"),
            "{what}: {msg}"
        );
        // The problem line still says what libtorch found.
        assert!(
            lines[0].len() > "cannot load as TorchScript: ".len() + 10,
            "{msg}"
        );
    }
}

/// The Koch expectations plus camera `front` at `w` x `h`.
fn koch_with_front(w: u32, h: u32) -> intervened_policy::PolicyExpectations {
    let mut want = koch(30.0);
    want.cameras = vec![intervened_policy::ImageInput {
        name: "front".into(),
        width: w,
        height: h,
    }];
    want
}

#[test]
fn a_python_image_policy_observing_joints_only_gives_python_numbers() {
    let f = fixtures();
    let mut p = Policy::load(f.policy("pixels"), &koch_with_front(12, 8)).unwrap();
    // Joints only: the sensor features after them are not an image policy's business.
    assert_eq!((p.obs_dim(), p.act_dim(), p.chunk_size()), (6, 6, 2));
    assert_eq!(p.cameras().len(), 1);
    let (obs, out) = f.probe("pixels");
    let image: Vec<u8> = serde_json::from_value(f.report["pixels"]["image"].clone()).unwrap();
    let mut pred = intervened_policy::Prediction::default();
    p.infer_images_into(&obs, &[&image], &mut pred).unwrap();
    for (s, row) in pred.chunk.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            assert!(
                close(v, out[0][s][j]),
                "step {s} action {j}: rust {v}, python {}",
                out[0][s][j]
            );
        }
    }
    // The pixels matter: another image gives another action.
    let black = vec![0u8; image.len()];
    let mut other = intervened_policy::Prediction::default();
    p.infer_images_into(&obs, &[&black], &mut other).unwrap();
    assert_ne!(other.chunk, pred.chunk);
    // Missing or wrongly sized images are errors, not a silent zero image.
    let e = p.infer(&obs).unwrap_err().to_string();
    assert!(e.contains("images (one per camera)"), "{e}");
    let e = p
        .infer_images_into(&obs, &[&image[1..]], &mut other)
        .unwrap_err()
        .to_string();
    assert!(e.contains("image bytes"), "{e}");
}

#[test]
fn an_image_policy_needs_the_camera_it_was_trained_on_at_its_size() {
    let f = fixtures();
    // No such camera on this robot.
    let e = Policy::load(f.policy("pixels"), &koch(30.0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`cameras`") && e.contains("`front`") && e.contains("[[cameras]]"),
        "{e}"
    );
    // The camera exists at another size: refused, naming both sizes.
    let e = Policy::load(f.policy("pixels"), &koch_with_front(16, 8))
        .unwrap_err()
        .to_string();
    assert!(e.contains("12x8") && e.contains("16x8"), "{e}");
    // A state policy must still observe every feature: leaving block.* out is for images only.
    let t = f.copy("mlp");
    edit_sidecar(t.path(), "observation_names", json!(common::OBS[..6]));
    let e = Policy::load(t.path(), &koch(30.0)).unwrap_err().to_string();
    assert!(e.contains("observation_names"), "{e}");
}
