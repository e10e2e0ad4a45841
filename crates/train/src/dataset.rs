//! The aggregated dataset: samples from every episode of every round (DAgger keeps all rounds),
//! frame labels, the weighting schemes, the seeded weighted sampler and the split by episode.

use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;

/// Who produced a frame: the recorder's own labels (Sirius' four classes).
pub use intervened_episodes::Label;

/// One episode, already turned into numbers: per-frame observation, executed goal and label.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeData {
    /// A stable name for reports, e.g. `<session>/episode-3`.
    pub id: String,
    /// The DAgger round the episode belongs to (the session id).
    pub round: String,
    /// Observation per frame: joint positions (rad) in config order, then task features.
    pub obs: Vec<Vec<f32>>,
    /// The goal (rad) actually written to the servos at each frame.
    pub goals: Vec<Vec<f32>>,
    pub labels: Vec<Label>,
    /// The images the policy saw, one entry per camera (empty for state-only data).
    pub cameras: Vec<CameraFrames>,
}

/// One camera's frames of an episode, aligned with [`EpisodeData::obs`].
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFrames {
    /// The robot config's camera name (`[[cameras]] name`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// One RGB buffer per frame, row-major, `width * height * 3` bytes (what the camera
    /// delivered at that tick).
    pub frames: Vec<Vec<u8>>,
}

impl CameraFrames {
    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }
}

/// One camera's images for every sample of a [`Dataset`], stored flat: sample `i` (its
/// [`Sample::row`]) is `data[i * frame_len .. (i + 1) * frame_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageColumn {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl ImageColumn {
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// The image of one sample row.
    pub fn frame(&self, row: usize) -> Option<&[u8]> {
        let n = self.frame_len();
        self.data.get(row * n..(row + 1) * n)
    }
}

impl EpisodeData {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// One training pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub obs: Vec<f32>,
    /// `chunk * act_dim` values: goals t..t+chunk-1, padded with the episode's last goal.
    pub action_chunk: Vec<f32>,
    /// One weight per chunk step: 1 where that step's goal was produced by the same source as
    /// frame t (the same label), 0 where it was not. An intervention segment's last frames
    /// must not learn the policy's own goals after the hand-back (ACT masks its padding the
    /// same way).
    pub step_mask: Vec<f32>,
    pub label: Label,
    /// Index of the episode in [`Dataset::episodes`].
    pub episode: usize,
    /// Index of the sample in [`Dataset::samples`]: its row in [`Dataset::images`].
    pub row: usize,
}

/// Every sample of every episode, with the dimensions they share.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub chunk: usize,
    pub samples: Vec<Sample>,
    /// Episode ids, indexed by [`Sample::episode`].
    pub episodes: Vec<String>,
    /// The samples of each episode (they are stored contiguously, in episode order).
    pub episode_ranges: Vec<std::ops::Range<usize>>,
    /// Per camera, the image of every sample (empty for state-only data).
    pub images: Vec<ImageColumn>,
}

impl Dataset {
    /// Builds samples from episodes. Every episode must share the observation and action sizes.
    pub fn from_episodes(episodes: &[EpisodeData], chunk: usize) -> Result<Self, TrainError> {
        if chunk == 0 {
            return Err(TrainError::InvalidOption {
                name: "chunk",
                message: "must be at least 1".into(),
            });
        }
        let mut dims: Option<(usize, usize)> = None;
        let mut samples = Vec::new();
        let mut ids = Vec::with_capacity(episodes.len());
        let mut ranges = Vec::with_capacity(episodes.len());
        let mut images: Vec<ImageColumn> = episodes
            .first()
            .map(|e| {
                e.cameras
                    .iter()
                    .map(|c| ImageColumn {
                        name: c.name.clone(),
                        width: c.width,
                        height: c.height,
                        data: Vec::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (ei, ep) in episodes.iter().enumerate() {
            check_cameras(ep, &images)?;
            for (col, cam) in images.iter_mut().zip(&ep.cameras) {
                col.data.reserve(cam.frames.len() * col.frame_len());
                for f in &cam.frames {
                    col.data.extend_from_slice(f);
                }
            }
            ids.push(ep.id.clone());
            let start = samples.len();
            if ep.obs.len() != ep.labels.len() || ep.goals.len() != ep.labels.len() {
                return Err(TrainError::BadEpisode {
                    episode: ep.id.clone(),
                    message: format!(
                        "{} observations, {} goals and {} labels differ in number",
                        ep.obs.len(),
                        ep.goals.len(),
                        ep.labels.len()
                    ),
                });
            }
            for (t, (o, g)) in ep.obs.iter().zip(&ep.goals).enumerate() {
                let (od, ad) = *dims.get_or_insert((o.len(), g.len()));
                if o.len() != od || g.len() != ad {
                    return Err(TrainError::BadEpisode {
                        episode: ep.id.clone(),
                        message: format!(
                            "frame {t} has {} observation and {} action values; expected {od} and {ad}",
                            o.len(),
                            g.len()
                        ),
                    });
                }
                if o.iter().chain(g).any(|v| !v.is_finite()) {
                    return Err(TrainError::BadEpisode {
                        episode: ep.id.clone(),
                        message: format!("frame {t} holds a non-finite value"),
                    });
                }
            }
            let n = ep.len();
            for t in 0..n {
                let mut action_chunk = Vec::with_capacity(chunk * ep.goals[t].len());
                let mut step_mask = Vec::with_capacity(chunk);
                let mut same = true;
                for k in 0..chunk {
                    // Past the end the arm holds its last goal, so pad with it.
                    let src = (t + k).min(n - 1);
                    action_chunk.extend_from_slice(&ep.goals[src]);
                    // Once the source changes, the rest of the chunk is someone else's.
                    same &= ep.labels[src] == ep.labels[t];
                    step_mask.push(if same { 1.0 } else { 0.0 });
                }
                samples.push(Sample {
                    obs: ep.obs[t].clone(),
                    action_chunk,
                    step_mask,
                    label: ep.labels[t],
                    episode: ei,
                    row: samples.len(),
                });
            }
            ranges.push(start..samples.len());
        }
        let (obs_dim, act_dim) = dims.unwrap_or((0, 0));
        Ok(Dataset {
            obs_dim,
            act_dim,
            chunk,
            samples,
            episodes: ids,
            episode_ranges: ranges,
            images,
        })
    }

    /// Turns absolute goal targets into deltas from the measured joint positions of the frame
    /// the prediction is made at (the first `act_dim` observation values): the policy then
    /// predicts `goal[t + k] - q[t]`, which the runtime adds back to the q it measured.
    ///
    /// Teleoperated goals sit within a few hundredths of a radian of the measured position;
    /// as absolute targets that difference drowns in the spread of the positions themselves,
    /// and a cloned policy creeps and stalls. As deltas it is the whole signal.
    pub fn into_delta(mut self) -> Result<Self, TrainError> {
        if self.obs_dim < self.act_dim {
            return Err(TrainError::InvalidOption {
                name: "action",
                message: format!(
                    "delta actions need the {} joint positions first in the observation, which has only {} values",
                    self.act_dim, self.obs_dim
                ),
            });
        }
        let ad = self.act_dim;
        for s in &mut self.samples {
            for (i, a) in s.action_chunk.iter_mut().enumerate() {
                *a -= s.obs[i % ad];
            }
        }
        Ok(self)
    }

    /// The samples of the given episodes, in the order given. An episode listed twice (as in a
    /// bootstrap resample) contributes its samples twice; unknown indices contribute nothing.
    pub fn subset(&self, episodes: &[usize]) -> Vec<&Sample> {
        episodes
            .iter()
            .filter_map(|&e| self.episode_ranges.get(e))
            .filter_map(|r| self.samples.get(r.clone()))
            .flatten()
            .collect()
    }
}

/// Checks an episode's cameras against the dataset's (the first episode's): the same names in
/// the same order, the same sizes, one image of the right size per frame.
fn check_cameras(ep: &EpisodeData, want: &[ImageColumn]) -> Result<(), TrainError> {
    let bad = |message: String| TrainError::BadEpisode {
        episode: ep.id.clone(),
        message,
    };
    let list = |names: Vec<String>| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let have: Vec<String> = ep
        .cameras
        .iter()
        .map(|c| format!("{} {}x{}", c.name, c.width, c.height))
        .collect();
    let expected: Vec<String> = want
        .iter()
        .map(|c| format!("{} {}x{}", c.name, c.width, c.height))
        .collect();
    if have != expected {
        return Err(bad(format!(
            "has cameras [{}], the other episodes have [{}]; every episode of a dataset needs the same cameras at the same sizes",
            list(have),
            list(expected)
        )));
    }
    for cam in &ep.cameras {
        if cam.width == 0 || cam.height == 0 {
            return Err(bad(format!(
                "camera `{}` has an empty size {}x{}",
                cam.name, cam.width, cam.height
            )));
        }
        if cam.frames.len() != ep.labels.len() {
            return Err(bad(format!(
                "camera `{}` has {} images for {} frames; each frame needs its image",
                cam.name,
                cam.frames.len(),
                ep.labels.len()
            )));
        }
        let n = cam.frame_len();
        if let Some((t, f)) = cam.frames.iter().enumerate().find(|(_, f)| f.len() != n) {
            return Err(bad(format!(
                "camera `{}` image {t} has {} bytes; {}x{} RGB is {n}",
                cam.name,
                f.len(),
                cam.width,
                cam.height
            )));
        }
    }
    Ok(())
}

/// Frames per label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCounts {
    pub demo: usize,
    pub robot: usize,
    pub intervention: usize,
    pub pre_intervention: usize,
}

impl LabelCounts {
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Self {
        let mut c = LabelCounts::default();
        for l in labels {
            *c.get_mut(*l) += 1;
        }
        c
    }

    pub fn get(&self, l: Label) -> usize {
        match l {
            Label::Demo => self.demo,
            Label::Robot => self.robot,
            Label::Intervention => self.intervention,
            Label::PreIntervention => self.pre_intervention,
        }
    }

    fn get_mut(&mut self, l: Label) -> &mut usize {
        match l {
            Label::Demo => &mut self.demo,
            Label::Robot => &mut self.robot,
            Label::Intervention => &mut self.intervention,
            Label::PreIntervention => &mut self.pre_intervention,
        }
    }

    pub fn total(&self) -> usize {
        self.demo + self.robot + self.intervention + self.pre_intervention
    }

    pub fn add(&mut self, other: &LabelCounts) {
        self.demo += other.demo;
        self.robot += other.robot;
        self.intervention += other.intervention;
        self.pre_intervention += other.pre_intervention;
    }
}

/// How much of the sampling mass each class carries. Chosen with `--weighting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// HG-DAgger (Kelly et al. 2019): only human-labelled frames (demo and intervention), uniform.
    #[default]
    HgDagger,
    /// IWR (Mandlekar et al. 2020): interventions carry half the mass, all other frames the
    /// other half, uniform within each half.
    Iwr,
    /// Sirius (Liu et al. 2023): see [`class_mass`] for the exact shares.
    Sirius,
}

impl Weighting {
    pub fn name(self) -> &'static str {
        match self {
            Weighting::HgDagger => "hg-dagger",
            Weighting::Iwr => "iwr",
            Weighting::Sirius => "sirius",
        }
    }
}

impl fmt::Display for Weighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Weighting {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hg-dagger" | "hgdagger" => Ok(Weighting::HgDagger),
            "iwr" => Ok(Weighting::Iwr),
            "sirius" => Ok(Weighting::Sirius),
            other => Err(TrainError::InvalidOption {
                name: "weighting",
                message: format!("unknown scheme `{other}`; use hg-dagger, iwr or sirius"),
            }),
        }
    }
}

/// Total sampling mass per class (sums to 1, or to 0 when nothing is trainable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassMass {
    pub demo: f64,
    pub robot: f64,
    pub intervention: f64,
    pub pre_intervention: f64,
}

impl ClassMass {
    pub fn get(&self, l: Label) -> f64 {
        match l {
            Label::Demo => self.demo,
            Label::Robot => self.robot,
            Label::Intervention => self.intervention,
            Label::PreIntervention => self.pre_intervention,
        }
    }

    fn total(&self) -> f64 {
        self.demo + self.robot + self.intervention + self.pre_intervention
    }

    fn normalised(self) -> Self {
        let t = self.total();
        if t <= 0.0 {
            return ClassMass::default();
        }
        ClassMass {
            demo: self.demo / t,
            robot: self.robot / t,
            intervention: self.intervention / t,
            pre_intervention: self.pre_intervention / t,
        }
    }
}

/// The mass each class carries under a scheme, given how many frames each class has.
///
/// - `hg-dagger`: demo and intervention frames share the mass uniformly (mass proportional to
///   their counts); robot and pre-intervention frames get 0.
/// - `iwr`: interventions get 0.5, demo + robot + pre-intervention together get 0.5 (uniform
///   within that group, so proportional to counts). If one side is empty the other gets 1.
/// - `sirius`: pre-intervention 0; intervention 0.5; demo its natural share
///   `n_demo / n_total` (n_total counts all four classes); robot `max(0, 1 - 0.5 - demo)`.
///   A class without frames gets 0 and the masses are then renormalised to sum to 1.
pub fn class_mass(c: &LabelCounts, scheme: Weighting) -> ClassMass {
    let n = |x: usize| x as f64;
    let raw = match scheme {
        Weighting::HgDagger => ClassMass {
            demo: n(c.demo),
            intervention: n(c.intervention),
            ..ClassMass::default()
        },
        Weighting::Iwr => {
            let others = n(c.demo + c.robot + c.pre_intervention);
            let (mi, mo) = match (c.intervention > 0, others > 0.0) {
                (true, true) => (0.5, 0.5),
                (true, false) => (1.0, 0.0),
                (false, true) => (0.0, 1.0),
                (false, false) => (0.0, 0.0),
            };
            let share = |x: usize| {
                if others > 0.0 {
                    mo * n(x) / others
                } else {
                    0.0
                }
            };
            ClassMass {
                demo: share(c.demo),
                robot: share(c.robot),
                pre_intervention: share(c.pre_intervention),
                intervention: mi,
            }
        }
        Weighting::Sirius => {
            let total = n(c.total());
            let mi = if c.intervention > 0 { 0.5 } else { 0.0 };
            let md = if total > 0.0 { n(c.demo) / total } else { 0.0 };
            let mr = if c.robot > 0 {
                (1.0 - mi - md).max(0.0)
            } else {
                0.0
            };
            ClassMass {
                demo: md,
                robot: mr,
                intervention: mi,
                pre_intervention: 0.0,
            }
        }
    };
    raw.normalised()
}

/// Per-sample sampling weights (sum 1, or all 0 when nothing is trainable): a sample's weight
/// is its class mass divided by its class count.
pub fn sample_weights(labels: &[Label], scheme: Weighting) -> Vec<f64> {
    let counts = LabelCounts::from_labels(labels);
    let mass = class_mass(&counts, scheme);
    labels
        .iter()
        .map(|&l| {
            let k = counts.get(l);
            if k == 0 {
                0.0
            } else {
                mass.get(l) / k as f64
            }
        })
        .collect()
}

/// Draws indices with replacement in proportion to their weights, reproducibly from a seed.
#[derive(Debug, Clone)]
pub struct WeightedSampler {
    cumulative: Vec<f64>,
    rng: ChaCha8Rng,
}

impl WeightedSampler {
    /// Fails when no weight is positive (nothing to draw) or a weight is negative or not finite.
    pub fn new(weights: &[f64], seed: u64) -> Result<Self, TrainError> {
        let mut acc = 0.0;
        let mut cumulative = Vec::with_capacity(weights.len());
        for &w in weights {
            if !w.is_finite() || w < 0.0 {
                return Err(TrainError::InvalidOption {
                    name: "weights",
                    message: format!("sampling weight {w} is not a finite non-negative number"),
                });
            }
            acc += w;
            cumulative.push(acc);
        }
        if acc <= 0.0 {
            return Err(TrainError::InvalidOption {
                name: "weights",
                message: "no sample has a positive weight".into(),
            });
        }
        Ok(Self {
            cumulative,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    pub fn sample(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = self.rng.gen::<f64>() * total;
        // First index whose cumulative weight exceeds u; zero-weight entries are never chosen.
        let i = self.cumulative.partition_point(|&c| c <= u);
        i.min(self.cumulative.len().saturating_sub(1))
    }

    pub fn batch(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// Keeps the split's random stream apart from the sampler's for the same seed.
const SPLIT_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Splits episode indices `0..n` into (train, validation), by whole episodes, from a seed.
///
/// With two or more episodes, at least one goes to each side; with one, validation is empty.
pub fn split_by_episode(n: usize, val_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SPLIT_SALT);
    idx.shuffle(&mut rng);
    let n_val = if n < 2 || val_fraction <= 0.0 {
        0
    } else {
        ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1)
    };
    let val = {
        let mut v = idx[..n_val].to_vec();
        v.sort_unstable();
        v
    };
    let mut train = idx[n_val..].to_vec();
    train.sort_unstable();
    (train, val)
}

/// A bootstrap resample of episode indices (with replacement), same size as the input.
pub fn bootstrap_episodes(episodes: &[usize], seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    if episodes.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<usize> = (0..episodes.len())
        .map(|_| episodes[rng.gen_range(0..episodes.len())])
        .collect();
    out.sort_unstable();
    out
}
