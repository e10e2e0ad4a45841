// A test: a panic here is a failed test. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use intervened_train::{
    class_mass, sample_weights, Label, LabelCounts, WeightedSampler, Weighting,
};

fn labels(d: usize, r: usize, i: usize, p: usize) -> Vec<Label> {
    let mut v = vec![Label::Demo; d];
    v.extend(vec![Label::Robot; r]);
    v.extend(vec![Label::Intervention; i]);
    v.extend(vec![Label::PreIntervention; p]);
    v
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// Per-sample weight of the first sample with label `l`.
fn w_of(ls: &[Label], w: &[f64], l: Label) -> f64 {
    ls.iter()
        .zip(w)
        .find(|(x, _)| **x == l)
        .map(|(_, w)| *w)
        .unwrap()
}

#[test]
fn hg_dagger_uses_only_human_frames_uniformly() {
    let ls = labels(10, 20, 6, 4);
    let w = sample_weights(&ls, Weighting::HgDagger);
    assert!(close(w.iter().sum(), 1.0));
    assert!(close(w_of(&ls, &w, Label::Demo), 1.0 / 16.0));
    assert!(close(w_of(&ls, &w, Label::Intervention), 1.0 / 16.0));
    assert_eq!(w_of(&ls, &w, Label::Robot), 0.0);
    assert_eq!(w_of(&ls, &w, Label::PreIntervention), 0.0);
}

#[test]
fn iwr_gives_interventions_half_the_mass() {
    let ls = labels(10, 20, 6, 4);
    let w = sample_weights(&ls, Weighting::Iwr);
    assert!(close(w.iter().sum(), 1.0));
    assert!(close(w_of(&ls, &w, Label::Intervention), 0.5 / 6.0));
    for l in [Label::Demo, Label::Robot, Label::PreIntervention] {
        assert!(close(w_of(&ls, &w, l), 0.5 / 34.0), "{l:?}");
    }
    let int_mass: f64 = ls
        .iter()
        .zip(&w)
        .filter(|(l, _)| **l == Label::Intervention)
        .map(|(_, w)| w)
        .sum();
    assert!(close(int_mass, 0.5));
    // Without interventions IWR is plain uniform behaviour cloning.
    let ls = labels(3, 5, 0, 0);
    let w = sample_weights(&ls, Weighting::Iwr);
    assert!(w.iter().all(|x| close(*x, 1.0 / 8.0)));
}

#[test]
fn sirius_shares() {
    // N = 40: demo natural share 10/40, intervention 0.5, robot the remaining 0.25.
    let c = LabelCounts::from_labels(&labels(10, 20, 6, 4));
    let m = class_mass(&c, Weighting::Sirius);
    assert!(close(m.demo, 0.25));
    assert!(close(m.intervention, 0.5));
    assert!(close(m.robot, 0.25));
    assert_eq!(m.pre_intervention, 0.0);
    let ls = labels(10, 20, 6, 4);
    let w = sample_weights(&ls, Weighting::Sirius);
    assert!(close(w_of(&ls, &w, Label::Demo), 0.025));
    assert!(close(w_of(&ls, &w, Label::Robot), 0.0125));
    assert!(close(w_of(&ls, &w, Label::Intervention), 0.5 / 6.0));
    assert_eq!(w_of(&ls, &w, Label::PreIntervention), 0.0);

    // Demos above half the data leave robot frames nothing; masses renormalise to 1.
    let m = class_mass(
        &LabelCounts::from_labels(&labels(30, 5, 5, 0)),
        Weighting::Sirius,
    );
    assert!(close(m.robot, 0.0));
    assert!(close(m.demo, 0.75 / 1.25));
    assert!(close(m.intervention, 0.5 / 1.25));
    // Only demos: all the mass on demos.
    let m = class_mass(
        &LabelCounts::from_labels(&labels(7, 0, 0, 0)),
        Weighting::Sirius,
    );
    assert!(close(m.demo, 1.0));
}

#[test]
fn nothing_trainable_gives_zero_mass() {
    let ls = labels(0, 10, 0, 5);
    assert!(sample_weights(&ls, Weighting::HgDagger)
        .iter()
        .all(|w| *w == 0.0));
    let m = class_mass(
        &LabelCounts::from_labels(&labels(0, 0, 0, 5)),
        Weighting::Sirius,
    );
    assert_eq!(m.demo + m.robot + m.intervention + m.pre_intervention, 0.0);
    assert!(WeightedSampler::new(&[0.0, 0.0], 1).is_err());
}

#[test]
fn sampler_follows_the_weights_and_is_seeded() {
    let ls = labels(10, 20, 6, 4);
    let w = sample_weights(&ls, Weighting::Iwr);
    let mut s = WeightedSampler::new(&w, 7).unwrap();
    let draws = s.batch(200_000);
    let mut hits = [0usize; 4];
    for &i in &draws {
        let k = match ls[i] {
            Label::Demo => 0,
            Label::Robot => 1,
            Label::Intervention => 2,
            Label::PreIntervention => 3,
        };
        hits[k] += 1;
    }
    let frac = |k: usize| hits[k] as f64 / draws.len() as f64;
    assert!(
        (frac(2) - 0.5).abs() < 0.01,
        "intervention share {}",
        frac(2)
    );
    assert!((frac(0) - 0.5 * 10.0 / 34.0).abs() < 0.01);

    // Zero-weight samples are never drawn.
    let w = sample_weights(&ls, Weighting::HgDagger);
    let mut s = WeightedSampler::new(&w, 3).unwrap();
    assert!(s
        .batch(50_000)
        .iter()
        .all(|&i| matches!(ls[i], Label::Demo | Label::Intervention)));

    // Same seed, same stream; another seed, another stream.
    let a = WeightedSampler::new(&w, 11).unwrap().batch(100);
    let b = WeightedSampler::new(&w, 11).unwrap().batch(100);
    let c = WeightedSampler::new(&w, 12).unwrap().batch(100);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn weighting_names_parse() {
    for w in [Weighting::HgDagger, Weighting::Iwr, Weighting::Sirius] {
        assert_eq!(w.to_string().parse::<Weighting>().unwrap(), w);
    }
    let e = "dagger".parse::<Weighting>().unwrap_err().to_string();
    assert!(e.contains("hg-dagger, iwr or sirius"), "{e}");
}
