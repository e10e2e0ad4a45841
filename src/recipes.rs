//! `intervened bench recipes`: training recipes compared on the same demonstrations and the
//! same held-out blocks, through the real daemon (lockstep simulator, recorder, retrain).
//! `docs/recipes.md` is this command's output.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use intervened_episodes::FailureCounts;
use intervened_robot::RobotConfig;
use intervened_train::RetrainOptions;
use intervened_world::Gate;

use crate::dagger::{self, pct, Progress, Session};

/// One recipe: a name, what it changes, and the options.
pub struct Recipe {
    pub name: &'static str,
    pub opts: RetrainOptions,
}

fn recipe(name: &'static str, f: impl FnOnce(&mut RetrainOptions)) -> Recipe {
    let mut opts = RetrainOptions::new("", "");
    f(&mut opts);
    Recipe { name, opts }
}

/// The comparison: action representation and chunk first, then the rest of the training
/// recipe varied one at a time from the default (absolute goals, chunk 20, 100 epochs and at
/// least 2,000 steps).
pub fn recipes() -> Vec<Recipe> {
    vec![
        recipe("delta, chunk 1 (the first release's default)", |o| {
            o.delta = true;
            o.chunk = 1;
        }),
        recipe("absolute, chunk 1", |o| {
            o.delta = false;
            o.chunk = 1;
        }),
        recipe("delta, chunk 10", |o| {
            o.delta = true;
            o.chunk = 10;
        }),
        recipe("absolute, chunk 10", |o| o.chunk = 10),
        recipe("absolute, chunk 20 (default)", |_| {}),
        recipe("absolute, chunk 50", |o| o.chunk = 50),
        recipe("default, observations not normalised", |o| {
            o.normalize_obs = false
        }),
        recipe("default, at most 100 epochs (no minimum)", |o| {
            o.min_steps = 0
        }),
        recipe("default, 4x training (400 epochs)", |o| o.epochs = 400),
        recipe("default, no early stopping", |o| o.patience = 0),
        recipe("default, hidden 512", |o| o.hidden = 512),
        recipe("default, observation noise 0.1 sd", |o| o.obs_noise = 0.1),
    ]
}

/// Four recipes for a short run.
pub fn quick_recipes() -> Vec<Recipe> {
    recipes()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| [0, 1, 3, 4].contains(i))
        .map(|(_, r)| r)
        .collect()
}

pub struct Plan {
    pub seeds: Vec<u64>,
    pub demos: Vec<u64>,
    pub eval: u64,
    pub recipes: Vec<Recipe>,
    pub out: PathBuf,
}

/// One recipe on one data size, pooled over seeds.
pub struct Row {
    pub recipe: usize,
    pub demos: u64,
    pub successes: u64,
    pub episodes: u64,
    pub per_seed: Vec<f64>,
    pub failures: FailureCounts,
    pub train_s: f64,
}

pub fn run(cfg: &RobotConfig, plan: &Plan) -> Result<Vec<Row>> {
    let out = std::path::absolute(&plan.out)
        .with_context(|| format!("resolving {}", plan.out.display()))?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let cells = plan.seeds.len() * plan.demos.len() * plan.recipes.len();
    let progress = Progress::with_len(cells as u64);
    let mut rows: Vec<Row> = Vec::new();
    for &n in &plan.demos {
        for (i, _) in plan.recipes.iter().enumerate() {
            rows.push(Row {
                recipe: i,
                demos: n,
                successes: 0,
                episodes: 0,
                per_seed: Vec::new(),
                failures: FailureCounts::default(),
                train_s: 0.0,
            });
        }
    }
    for &seed in &plan.seeds {
        for &n in &plan.demos {
            let root = out.join(format!("seed-{seed}-demos-{n}"));
            let data = root.join("data");
            progress.phase(format!("seed {seed}: recording {n} demonstrations"));
            Session {
                cfg,
                data: &data,
                registry: &root.join("unused"),
                episodes: n,
                demo: true,
                human: Some(Gate::Human),
                world_seed: seed * 1000,
                doubt_threshold: None,
            }
            .run()?;
            for (i, r) in plan.recipes.iter().enumerate() {
                progress.phase(format!("seed {seed}, {n} demos: {}", r.name));
                let reg = root.join(format!("policies-{i}"));
                let t0 = Instant::now();
                dagger::train(&r.opts, cfg, &data, &reg, seed)?;
                let train_s = t0.elapsed().as_secs_f64();
                let ev =
                    dagger::evaluate(cfg, &reg, &root.join(format!("eval-{i}")), plan.eval, seed)?;
                progress.step();
                progress.line(format!(
                    "seed {seed} · {n} demos · {}: {}/{} success; failures: {}",
                    r.name, ev.successes, ev.episodes, ev.failures
                ));
                if let Some(row) = rows.iter_mut().find(|x| x.recipe == i && x.demos == n) {
                    row.successes += ev.successes;
                    row.episodes += ev.episodes;
                    row.per_seed.push(ev.rate());
                    row.failures.merge(&ev.failures);
                    row.train_s += train_s;
                }
            }
        }
    }
    progress.finish();
    Ok(rows)
}

pub fn markdown(rows: &[Row], plan: &Plan, machine: &str, wall_s: f64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Training recipes compared\n");
    let _ = writeln!(
        s,
        "Generated by `intervened bench recipes{}` on {machine}, in {:.0} s. Every recipe trains on the same \
         simulated-human demonstrations per seed and is evaluated on the same {} held-out rollouts per seed \
         (world seeds no training episode uses), with nobody at the gamepad. Success is pooled over {} seed(s); \
         the interval is Wilson's 95%. \"Joint limits\" counts failed rollouts that ended pinned at a joint limit \
         or sat at one for a second or more.\n",
        doc_args(plan),
        wall_s,
        plan.eval,
        plan.seeds.len()
    );
    for &n in &plan.demos {
        let _ = writeln!(s, "## {n} demonstrations\n");
        let _ = writeln!(
            s,
            "| recipe | success (95% CI) | per seed | joint limits | dropped or not lifted | reached, never grasped | never reached | train s per seed |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        for r in rows.iter().filter(|r| r.demos == n) {
            let (lo, hi) = dagger::wilson(r.successes, r.episodes);
            let name = plan.recipes.get(r.recipe).map_or("?", |x| x.name);
            let f = &r.failures;
            let _ = writeln!(
                s,
                "| {name} | **{}** ({}–{}) | {} | {} | {} | {} | {} | {:.1} |",
                pct(r.successes as f64 / r.episodes.max(1) as f64),
                pct(lo),
                pct(hi),
                r.per_seed
                    .iter()
                    .map(|x| pct(*x))
                    .collect::<Vec<_>>()
                    .join(", "),
                pct(f.joint_limits as f64 / r.episodes.max(1) as f64),
                f.dropped,
                f.no_grasp,
                f.never_reached + f.timed_out + f.unexplained,
                r.train_s / plan.seeds.len().max(1) as f64
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// The command line that reproduces this table.
fn doc_args(plan: &Plan) -> String {
    let mut a = String::new();
    if plan.recipes.len() != recipes().len() {
        a.push_str(" --quick");
    }
    a.push_str(&format!(" --seeds {}", plan.seeds.len()));
    for d in &plan.demos {
        a.push_str(&format!(" --demos {d}"));
    }
    a.push_str(&format!(" --eval {} --doc docs/recipes.md", plan.eval));
    a
}
