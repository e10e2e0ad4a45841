mod common;

use common::*;
use intervened_robot::Axis;
use intervened_world::{DeadzoneStyle, Expert, HumanParams, SimulatedHuman, World};

#[test]
fn demonstrating_human_succeeds_on_most_seeds() {
    let cfg = config();
    let mut ok = 0;
    let mut ticks = Vec::new();
    for seed in 0..100 {
        let o = run_human(&cfg, seed, HumanParams::default(), DeadzoneStyle::Cut, None);
        if o.success {
            ok += 1;
            ticks.push(o.success_at.unwrap());
        } else {
            eprintln!("seed {seed} failed");
        }
    }
    let mean = ticks.iter().sum::<u64>() as f64 / ticks.len().max(1) as f64;
    eprintln!("human demonstrations: {ok}/100 succeeded, mean {mean:.1} ticks to success");
    assert!(ok >= 80, "{ok}/100");
}

#[test]
fn demonstrating_human_also_works_with_a_rescaling_deadzone_and_a_sloppier_hand() {
    let cfg = config();
    let sloppy = HumanParams {
        reaction_delay_ticks: 12,
        noise_std: 0.15,
        ..HumanParams::default()
    };
    let ok = (0..40)
        .filter(|s| run_human(&cfg, *s, sloppy.clone(), DeadzoneStyle::Rescale, None).success)
        .count();
    eprintln!("sloppy human, rescaling deadzone: {ok}/40");
    assert!(ok >= 32, "{ok}/40");
}
