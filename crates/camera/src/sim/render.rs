//! A small deterministic software renderer: per-pixel ray casting against capsules, oriented
//! boxes and a checkered ground plane, flat Lambert shading, RGB8 out.
//!
//! Each frame, every primitive's bounding box is projected to a screen rectangle and each row
//! gets the list of primitives whose rectangle spans it, so a pixel tests only the few
//! primitives that can cover it. All arithmetic is sequential `f32` in a fixed order, with no
//! threads and no lookup of the time, so the same scene and pose give the same bytes.
//! No shadows, no anti-aliasing, no textures but the ground's checker.

use crate::config::{SimCameraPose, SIM_SIZE_RANGE};
use crate::error::CameraError;
use crate::image::Image;

type V3 = [f32; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn scale(a: V3, s: f32) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn norm(a: V3) -> V3 {
    let l = dot(a, a).sqrt();
    if l > 0.0 {
        scale(a, 1.0 / l)
    } else {
        a
    }
}

/// A solid, in the world frame (metres, `z` up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// All points within `radius` of the segment `a`-`b` (a sphere when `a == b`).
    Capsule { a: V3, b: V3, radius: f32 },
    /// An oriented box: `center`, half its size along each of its own axes, and those axes
    /// (unit vectors, mutually orthogonal) in the world frame.
    Cuboid { center: V3, half: V3, axes: [V3; 3] },
}

impl Shape {
    /// An axis-aligned box.
    pub fn aabb(center: V3, half: V3) -> Self {
        Shape::Cuboid {
            center,
            half,
            axes: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    /// Centre and radius of a sphere enclosing the shape.
    fn bounding_sphere(&self) -> (V3, f32) {
        match *self {
            Shape::Capsule { a, b, radius } => {
                let c = scale(add(a, b), 0.5);
                (c, 0.5 * dot(sub(b, a), sub(b, a)).sqrt() + radius)
            }
            Shape::Cuboid { center, half, .. } => (center, dot(half, half).sqrt()),
        }
    }

    /// Nearest hit distance along a unit ray and the unit normal there.
    fn intersect(&self, ro: V3, rd: V3) -> Option<(f32, V3)> {
        match *self {
            Shape::Capsule { a, b, radius } => capsule_hit(ro, rd, a, b, radius),
            Shape::Cuboid { center, half, axes } => box_hit(ro, rd, center, half, &axes),
        }
    }
}

const T_MIN: f32 = 1e-4;

/// Ray-capsule intersection (the closed form of I. Quilez, "intersectors").
fn capsule_hit(ro: V3, rd: V3, pa: V3, pb: V3, r: f32) -> Option<(f32, V3)> {
    let ba = sub(pb, pa);
    let oa = sub(ro, pa);
    let baba = dot(ba, ba);
    let bard = dot(ba, rd);
    let baoa = dot(ba, oa);
    let rdoa = dot(rd, oa);
    let oaoa = dot(oa, oa);
    let a = baba - bard * bard;
    let b = baba * rdoa - baoa * bard;
    let c = baba * oaoa - baoa * baoa - r * r * baba;
    let h = b * b - a * c;
    if h < 0.0 {
        return None;
    }
    let mut t = f32::NAN;
    if a > 1e-12 {
        t = (-b - h.sqrt()) / a;
        let y = baoa + t * bard;
        if !(y > 0.0 && y < baba) {
            t = f32::NAN;
        }
    }
    if t.is_nan() {
        // One of the end caps (also the whole answer for a ray along the axis or a sphere).
        // Which cap: the side of the body the ray meets; along the axis, the nearer end.
        let y = if a > 1e-12 {
            baoa + ((-b - h.sqrt()) / a) * bard
        } else if bard > 0.0 {
            0.0
        } else {
            1.0
        };
        let oc = if y <= 0.0 { oa } else { sub(ro, pb) };
        let b2 = dot(rd, oc);
        let c2 = dot(oc, oc) - r * r;
        let h2 = b2 * b2 - c2;
        if h2 <= 0.0 {
            return None;
        }
        t = -b2 - h2.sqrt();
    }
    if t.is_nan() || t < T_MIN {
        return None;
    }
    let p = add(ro, scale(rd, t));
    let pa2 = sub(p, pa);
    let k = if baba > 0.0 {
        (dot(pa2, ba) / baba).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Some((t, norm(sub(pa2, scale(ba, k)))))
}

/// Ray-oriented-box intersection (slabs in the box's frame).
fn box_hit(ro: V3, rd: V3, c: V3, half: V3, axes: &[V3; 3]) -> Option<(f32, V3)> {
    let o = sub(ro, c);
    let mut t_near = f32::NEG_INFINITY;
    let mut t_far = f32::INFINITY;
    let mut near_axis = 0;
    let mut near_sign = 1.0f32;
    for k in 0..3 {
        let ol = dot(o, axes[k]);
        let mut dl = dot(rd, axes[k]);
        if dl.abs() < 1e-12 {
            dl = if dl < 0.0 { -1e-12 } else { 1e-12 };
        }
        let inv = 1.0 / dl;
        let t1 = (-half[k] - ol) * inv;
        let t2 = (half[k] - ol) * inv;
        let (lo, hi) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
        if lo > t_near {
            t_near = lo;
            near_axis = k;
            near_sign = if dl > 0.0 { -1.0 } else { 1.0 };
        }
        if hi < t_far {
            t_far = hi;
        }
    }
    if t_near > t_far || t_near < T_MIN {
        return None;
    }
    Some((t_near, scale(axes[near_axis], near_sign)))
}

/// A solid with its colour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Primitive {
    pub shape: Shape,
    pub color: [u8; 3],
}

/// The ground, the plane `z = 0`: a table checkered in two colours over
/// `table_min..table_max` (x, y), a plain floor colour beyond it (which also keeps the far
/// checker, which would alias, out of the picture).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ground {
    pub color_a: [u8; 3],
    pub color_b: [u8; 3],
    /// Checker cell size, metres.
    pub cell_m: f32,
    pub table_min: [f32; 2],
    pub table_max: [f32; 2],
    pub floor: [u8; 3],
}

impl Default for Ground {
    fn default() -> Self {
        Self {
            color_a: [196, 178, 140],
            color_b: [150, 132, 100],
            cell_m: 0.05,
            table_min: [-0.15, -0.30],
            table_max: [0.40, 0.30],
            floor: [95, 95, 100],
        }
    }
}

/// Everything a simulated camera sees.
#[derive(Debug, PartialEq)]
pub struct Scene {
    pub primitives: Vec<Primitive>,
    pub ground: Ground,
    /// Colour where a ray hits nothing.
    pub sky: [u8; 3],
    /// Direction *towards* the light (need not be unit length).
    pub light_towards: V3,
    /// Fraction of light that reaches every surface (0..1).
    pub ambient: f32,
}

impl Clone for Scene {
    fn clone(&self) -> Self {
        Self {
            primitives: self.primitives.clone(),
            ground: self.ground,
            sky: self.sky,
            light_towards: self.light_towards,
            ambient: self.ambient,
        }
    }

    /// Reuses `self`'s primitive vector (the derived `clone_from` would allocate a new one).
    fn clone_from(&mut self, source: &Self) {
        self.primitives.clone_from(&source.primitives);
        self.ground = source.ground;
        self.sky = source.sky;
        self.light_towards = source.light_towards;
        self.ambient = source.ambient;
    }
}

impl Default for Scene {
    fn default() -> Self {
        Self {
            primitives: Vec::new(),
            ground: Ground::default(),
            sky: [70, 80, 95],
            light_towards: [0.3, 0.4, 1.0],
            ambient: 0.35,
        }
    }
}

/// A pinhole camera at a [`SimCameraPose`] with an image of `width` x `height` pixels.
/// Pixel `(i, j)` (column, row from the top) covers `[i, i+1) x [j, j+1)`; its centre is
/// `(i + 0.5, j + 0.5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PinholeCamera {
    pub width: u32,
    pub height: u32,
    origin: [f64; 3],
    forward: [f64; 3],
    right: [f64; 3],
    up: [f64; 3],
    tan_half_v: f64,
    tan_half_h: f64,
}

impl PinholeCamera {
    pub fn new(pose: &SimCameraPose, width: u32, height: u32) -> Result<Self, String> {
        if let Some(p) = pose.problem() {
            return Err(format!("camera pose {p}"));
        }
        if width == 0 || height == 0 {
            return Err(format!("image size {width}x{height} is empty"));
        }
        let f = norm3(sub3(pose.look_at, pose.position));
        let mut r = cross3(f, [0.0, 0.0, 1.0]);
        if dot3(r, r) < 1e-12 {
            // Looking straight up or down: the image's up is +x.
            r = cross3(f, [1.0, 0.0, 0.0]);
        }
        let r = norm3(r);
        let u = cross3(r, f);
        let tan_half_v = (pose.vfov_deg.to_radians() / 2.0).tan();
        Ok(Self {
            width,
            height,
            origin: pose.position,
            forward: f,
            right: r,
            up: u,
            tan_half_v,
            tan_half_h: tan_half_v * f64::from(width) / f64::from(height),
        })
    }

    /// Where `p` (world frame) lands in the image, in pixels (`[x, y]`, continuous, see the
    /// type's docs), or `None` when it is behind the camera. May lie outside the image.
    pub fn project(&self, p: [f64; 3]) -> Option<[f64; 2]> {
        let d = sub3(p, self.origin);
        let z = dot3(d, self.forward);
        if z <= 1e-9 {
            return None;
        }
        let x = dot3(d, self.right) / z / self.tan_half_h;
        let y = dot3(d, self.up) / z / self.tan_half_v;
        Some([
            (x + 1.0) * 0.5 * f64::from(self.width),
            (1.0 - y) * 0.5 * f64::from(self.height),
        ])
    }

    /// Camera-frame depth of `p` (distance along the view axis).
    fn depth(&self, p: [f64; 3]) -> f64 {
        dot3(sub3(p, self.origin), self.forward)
    }
}

fn sub3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot3(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross3(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn norm3(a: [f64; 3]) -> [f64; 3] {
    let l = dot3(a, a).sqrt();
    [a[0] / l, a[1] / l, a[2] / l]
}
fn to_f32(a: [f64; 3]) -> V3 {
    [a[0] as f32, a[1] as f32, a[2] as f32]
}

/// Renders scenes for one camera pose and image size. Holds scratch buffers, so that after
/// the first frame rendering allocates nothing.
#[derive(Debug, Clone)]
pub struct Renderer {
    camera: PinholeCamera,
    /// Per primitive: screen rectangle `[x0, x1, y0, y1]` (inclusive pixel ranges), or empty.
    rects: Vec<[i32; 4]>,
    /// Primitive indices whose rectangle spans the current row.
    row: Vec<usize>,
}

impl Renderer {
    /// A renderer for `pose` at `width` x `height`; each side must be within
    /// [`SIM_SIZE_RANGE`] (96..=224).
    pub fn new(pose: &SimCameraPose, width: u32, height: u32) -> Result<Self, CameraError> {
        let [lo, hi] = SIM_SIZE_RANGE;
        if !(lo..=hi).contains(&width) || !(lo..=hi).contains(&height) {
            return Err(CameraError::BadSize {
                device: "sim".into(),
                what: "rendered image",
                width,
                height,
                problem: format!("each side must be within {lo}..={hi} pixels"),
            });
        }
        let camera =
            PinholeCamera::new(pose, width, height).map_err(|problem| CameraError::BadScene {
                device: "sim".into(),
                problem,
            })?;
        Ok(Self {
            camera,
            rects: Vec::new(),
            row: Vec::new(),
        })
    }

    pub fn camera(&self) -> &PinholeCamera {
        &self.camera
    }

    /// Screen rectangle of a primitive: the projected corners of its bounding sphere's
    /// axis-aligned box (a superset of the projected solid), or the whole image when that box
    /// reaches behind the camera's near plane.
    fn rect(&self, shape: &Shape) -> [i32; 4] {
        let (c, r) = shape.bounding_sphere();
        let c = [f64::from(c[0]), f64::from(c[1]), f64::from(c[2])];
        let r = f64::from(r);
        let (w, h) = (self.camera.width as i32, self.camera.height as i32);
        if !(c.iter().all(|v| v.is_finite()) && r.is_finite()) {
            return [1, 0, 1, 0];
        }
        if self.camera.depth(c) < -r {
            return [1, 0, 1, 0]; // wholly behind the camera
        }
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for k in 0..8 {
            let p = [
                c[0] + if k & 1 == 0 { -r } else { r },
                c[1] + if k & 2 == 0 { -r } else { r },
                c[2] + if k & 4 == 0 { -r } else { r },
            ];
            if self.camera.depth(p) < 1e-3 {
                return [0, w - 1, 0, h - 1];
            }
            let Some([x, y]) = self.camera.project(p) else {
                return [0, w - 1, 0, h - 1];
            };
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        let clamp = |v: f64, hi: i32| (v.floor() as i64).clamp(-1, i64::from(hi) + 1) as i32;
        [clamp(x0, w), clamp(x1, w), clamp(y0, h), clamp(y1, h)]
    }

    /// Renders `scene` into `out` (resized to the renderer's size if it is not already).
    pub fn render(&mut self, scene: &Scene, out: &mut Image) {
        let (w, h) = (self.camera.width, self.camera.height);
        if out.width != w || out.height != h || out.data.len() != Image::byte_len(w, h) {
            out.resize(w, h);
        }
        self.rects.clear();
        for p in &scene.primitives {
            let r = self.rect(&p.shape);
            self.rects.push(r);
        }
        let cam = &self.camera;
        let ro = to_f32(cam.origin);
        let fwd = to_f32(cam.forward);
        let right = to_f32(cam.right);
        let up = to_f32(cam.up);
        let (th, tv) = (cam.tan_half_h as f32, cam.tan_half_v as f32);
        let light = norm(scene.light_towards);
        let ambient = scene.ambient.clamp(0.0, 1.0);
        let ground_shade = ambient + (1.0 - ambient) * light[2].max(0.0);
        let ga = shade(scene.ground.color_a, ground_shade);
        let gb = shade(scene.ground.color_b, ground_shade);
        let floor = shade(scene.ground.floor, ground_shade);
        let [tx0, ty0] = scene.ground.table_min;
        let [tx1, ty1] = scene.ground.table_max;
        let cell = if scene.ground.cell_m > 0.0 {
            1.0 / scene.ground.cell_m
        } else {
            0.0
        };
        let (wf, hf) = (w as f32, h as f32);
        for j in 0..h {
            let ji = j as i32;
            self.row.clear();
            for (k, r) in self.rects.iter().enumerate() {
                if r[2] <= ji && ji <= r[3] && r[0] <= r[1] {
                    self.row.push(k);
                }
            }
            let v = (1.0 - 2.0 * (j as f32 + 0.5) / hf) * tv;
            let row_dir = add(fwd, scale(up, v));
            let line = &mut out.data[(j * w * 3) as usize..((j + 1) * w * 3) as usize];
            for (i, px) in line.chunks_exact_mut(3).enumerate() {
                let ii = i as i32;
                let u = (2.0 * (i as f32 + 0.5) / wf - 1.0) * th;
                // Not normalised yet: the ground needs no unit ray, and most pixels see only
                // the ground; `t` along it is rescaled once a primitive is tested.
                let dir = add(row_dir, scale(right, u));
                let mut best_t = f32::INFINITY;
                let rd = dir;
                let mut color = scene.sky;
                if rd[2] < 0.0 {
                    let t = -ro[2] / rd[2];
                    if t > T_MIN {
                        best_t = t;
                        let gx = ro[0] + t * rd[0];
                        let gy = ro[1] + t * rd[1];
                        color = if gx < tx0 || gx > tx1 || gy < ty0 || gy > ty1 {
                            floor
                        } else if ((gx * cell).floor() as i64 + (gy * cell).floor() as i64) & 1 == 0
                        {
                            ga
                        } else {
                            gb
                        };
                    }
                }
                let mut unit: Option<V3> = None;
                for &k in &self.row {
                    let r = self.rects[k];
                    if ii < r[0] || ii > r[1] {
                        continue;
                    }
                    let rd = *unit.get_or_insert_with(|| {
                        let len = dot(dir, dir).sqrt();
                        best_t *= len; // the ground's distance, now along the unit ray
                        scale(dir, 1.0 / len)
                    });
                    let p = &scene.primitives[k];
                    if let Some((t, n)) = p.shape.intersect(ro, rd) {
                        if t < best_t {
                            best_t = t;
                            // Two-sided: a normal facing away from the camera is flipped.
                            let n = if dot(n, rd) > 0.0 { scale(n, -1.0) } else { n };
                            let lambert = dot(n, light).max(0.0);
                            color = shade(p.color, ambient + (1.0 - ambient) * lambert);
                        }
                    }
                }
                px.copy_from_slice(&color);
            }
        }
    }
}

fn shade(c: [u8; 3], k: f32) -> [u8; 3] {
    let f = |v: u8| (f32::from(v) * k).round().clamp(0.0, 255.0) as u8;
    [f(c[0]), f(c[1]), f(c[2])]
}
