mod common;
use common::*;
use intervened_world::{DeadzoneStyle, HumanParams};
#[test]
fn grid() {
    let cfg = config();
    for style in [DeadzoneStyle::Cut] {
        for delay in [0usize, 20, 30] {
            for noise in [0.0, 0.3] {
                let p = HumanParams { reaction_delay_ticks: delay, noise_std: noise, ..HumanParams::default() };
                let res: Vec<_> = (0..40).map(|s| run_human(&cfg, s, p.clone(), style, None)).collect();
                let ok = res.iter().filter(|o| o.success).count();
                let mean = res.iter().filter_map(|o| o.success_at).sum::<u64>() as f64 / ok.max(1) as f64;
                eprintln!("{style:?} delay {delay} noise {noise}: {ok}/40 mean {mean:.0}");
            }
        }
    }
}
