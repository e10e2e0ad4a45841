//! The image policy's network, robomimic style: per camera a small conv stack and a
//! spatial-softmax keypoint head (expected x, y of each keypoint map), concatenated with the
//! normalised joint state, then the same MLP head as the state policy.
//!
//! The forward pass is written once over plain tensors ([`VisionParams`]) so that training (on
//! the VarStore's variables) and export (on frozen copies) run exactly the same computation.
//! The graph takes uint8 `[B, H, W, 3]` images and does the permute and the scaling itself.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, Device, Kind, Tensor};

use intervened_policy::ImageInput;

use crate::model::ModelSpec;

/// Conv layers of each camera's encoder: (output channels, kernel, stride), ReLU after each.
/// The second layer's stride of 2 leaves a 20x20 keypoint map at 96x96 and cuts a training step
/// to less than half (`examples/vision_timing.rs`: 144 against 346 ms at batch 64).
const CONVS: [(i64, i64, i64); 3] = [(32, 5, 2), (32, 3, 2), (32, 3, 1)];

/// The conv stack as `3-32 k5 s2, 32-32 k3 s2, ...`, for provenance.
pub fn conv_description() -> String {
    let mut ch = 3;
    CONVS
        .iter()
        .map(|(out, k, s)| {
            let d = format!("{ch}-{out} k{k} s{s}");
            ch = *out;
            d
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keypoints per camera (a 1x1 conv before the spatial softmax): 2 features each.
const KEYPOINTS: i64 = 32;
/// Features one camera contributes to the head.
pub const FEATURES_PER_CAMERA: usize = 2 * KEYPOINTS as usize;
/// Random-shift augmentation: pad this many pixels (replicating the border), crop back.
pub const SHIFT_PAD: i64 = 4;

/// One convolution (stride; no padding).
pub(crate) struct Conv {
    w: Tensor,
    b: Option<Tensor>,
    stride: i64,
}

/// Every weight of one image network, as plain tensors.
pub(crate) struct VisionParams {
    /// Per camera: the conv layers, then the 1x1 keypoint conv.
    encoders: Vec<Vec<Conv>>,
    /// The MLP head: (weight, bias) per linear layer.
    head: Vec<(Tensor, Option<Tensor>)>,
    chunk: i64,
    act_dim: i64,
}

/// uint8 `[B, H, W, 3]` -> float `[B, 3, H, W]` in [-0.5, 0.5].
fn to_float(img: &Tensor) -> Tensor {
    img.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0 - 0.5
}

/// DrQ / robomimic crop randomiser: pad by [`SHIFT_PAD`] replicating the border, then crop each
/// image back to its size at an offset drawn from `rng` (seeded: reproducible).
fn random_shift(x: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
    let size = x.size();
    let (n, h, w) = match size.as_slice() {
        [n, _, h, w] => (*n, *h, *w),
        _ => return x.shallow_clone(),
    };
    let padded = x.replication_pad2d([SHIFT_PAD, SHIFT_PAD, SHIFT_PAD, SHIFT_PAD]);
    let crops: Vec<Tensor> = (0..n)
        .map(|i| {
            let dy = rng.gen_range(0..=2 * SHIFT_PAD);
            let dx = rng.gen_range(0..=2 * SHIFT_PAD);
            padded.get(i).narrow(1, dy, h).narrow(2, dx, w)
        })
        .collect();
    Tensor::stack(&crops, 0)
}

/// `[B, C, H, W]` -> `[B, 2C]`: per channel the expected (x, y) under the softmax over pixels,
/// coordinates in [-1, 1]. Only -1 / trailing sizes: the traced graph must take any batch size.
fn spatial_softmax(f: &Tensor) -> Tensor {
    let size = f.size();
    let (h, w) = match size.as_slice() {
        [_, _, h, w] => (*h, *w),
        _ => (1, 1),
    };
    let opts = (Kind::Float, f.device());
    let p = f.flatten(2, 3).softmax(-1, Kind::Float);
    // Pixel k sits at row k / w, column k % w.
    let xs = Tensor::linspace(-1.0, 1.0, w, opts).repeat([h]);
    let ys = Tensor::linspace(-1.0, 1.0, h, opts).repeat_interleave_self_int(w, 0, None);
    let ex = (&p * xs).sum_dim_intlist(-1, false, Kind::Float);
    let ey = (&p * ys).sum_dim_intlist(-1, false, Kind::Float);
    Tensor::cat(&[ex, ey], 1)
}

impl VisionParams {
    /// Normalised state `[B, obs]` and one uint8 `[B, H, W, 3]` per camera -> normalised action
    /// chunk `[B, chunk * act]`. With `shift`, each image is randomly shifted (training only).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        images: &[Tensor],
        mut shift: Option<&mut ChaCha8Rng>,
    ) -> Tensor {
        let mut feats = vec![x.shallow_clone()];
        for (enc, img) in self.encoders.iter().zip(images) {
            let mut h = to_float(img);
            if let Some(rng) = shift.as_deref_mut() {
                h = random_shift(&h, rng);
            }
            let last = enc.len().saturating_sub(1);
            for (i, c) in enc.iter().enumerate() {
                h = h.conv2d(&c.w, c.b.as_ref(), [c.stride, c.stride], [0, 0], [1, 1], 1);
                if i < last {
                    h = h.relu();
                }
            }
            feats.push(spatial_softmax(&h));
        }
        let mut h = Tensor::cat(&feats, 1);
        let last = self.head.len().saturating_sub(1);
        for (i, (w, b)) in self.head.iter().enumerate() {
            h = h.linear(w, b.as_ref());
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// The same network over tensors transformed by `f` (a detached copy, for freezing).
    pub(crate) fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> VisionParams {
        VisionParams {
            encoders: self
                .encoders
                .iter()
                .map(|enc| {
                    enc.iter()
                        .map(|c| Conv {
                            w: f(&c.w),
                            b: c.b.as_ref().map(&f),
                            stride: c.stride,
                        })
                        .collect()
                })
                .collect(),
            head: self
                .head
                .iter()
                .map(|(w, b)| (f(w), b.as_ref().map(&f)))
                .collect(),
            chunk: self.chunk,
            act_dim: self.act_dim,
        }
    }

    /// Every weight, in a fixed order.
    pub(crate) fn tensors(&self) -> Vec<&Tensor> {
        let mut v = Vec::new();
        for c in self.encoders.iter().flatten() {
            v.push(&c.w);
            v.extend(c.b.as_ref());
        }
        for (w, b) in &self.head {
            v.push(w);
            v.extend(b.as_ref());
        }
        v
    }

    pub(crate) fn chunk_shape(&self) -> [i64; 4] {
        [-1, 1, self.chunk, self.act_dim]
    }
}

/// One trainable image network on its own VarStore.
pub struct VisionNet {
    pub(crate) vs: nn::VarStore,
    pub(crate) params: VisionParams,
}

impl VisionNet {
    /// Initialises from torch's global generator: call `tch::manual_seed` first for determinism.
    pub fn new(spec: &ModelSpec, cameras: &[ImageInput], device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let conv = |path: nn::Path, i: i64, o: i64, k: i64, stride: i64| {
            let c = nn::conv2d(
                path,
                i,
                o,
                k,
                nn::ConvConfig {
                    stride,
                    ..Default::default()
                },
            );
            Conv {
                w: c.ws.shallow_clone(),
                b: c.bs.as_ref().map(Tensor::shallow_clone),
                stride,
            }
        };
        let encoders = (0..cameras.len())
            .map(|ci| {
                let p = &root / format!("cam{ci}");
                let mut layers = Vec::with_capacity(CONVS.len() + 1);
                let mut ch = 3;
                for (li, (out, k, s)) in CONVS.iter().enumerate() {
                    layers.push(conv(&p / format!("c{li}"), ch, *out, *k, *s));
                    ch = *out;
                }
                layers.push(conv(&p / "keypoints", ch, KEYPOINTS, 1, 1));
                layers
            })
            .collect();
        let input = spec.obs_dim + FEATURES_PER_CAMERA * cameras.len();
        let dims = [input, spec.hidden, spec.hidden, spec.out_dim()];
        let head = dims
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let (a, b) = match w {
                    [a, b] => (*a as i64, *b as i64),
                    _ => (0, 0),
                };
                let l = nn::linear(&root / format!("l{i}"), a, b, Default::default());
                (
                    l.ws.shallow_clone(),
                    l.bs.as_ref().map(Tensor::shallow_clone),
                )
            })
            .collect();
        VisionNet {
            vs,
            params: VisionParams {
                encoders,
                head,
                chunk: spec.chunk as i64,
                act_dim: spec.act_dim as i64,
            },
        }
    }
}
