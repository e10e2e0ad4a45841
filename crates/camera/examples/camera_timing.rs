//! Times the simulated camera's renderer and JPEG encoding/decoding on this machine.
//!
//! `cargo run -p intervened-camera --example camera_timing [-- OUT_DIR]`
//!
//! Built with the workspace's dev profile (the project's crates at opt-level 1, dependencies
//! such as the JPEG codecs at opt-level 2). With OUT_DIR, also writes the rendered frames
//! there as JPEGs to look at.

// A hand-run example: a panic here stops the measurement. (The workspace lints forbid these on robot paths.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use intervened_camera::sim::world::scene_from_world;
use intervened_camera::{decode_jpeg, encode_jpeg_into, psnr, Image, Renderer, SimCameraPose};
use intervened_robot::RobotConfig;
use intervened_world::{Expert, World};

fn main() {
    let out_dir = std::env::args().nth(1);
    let cfg = RobotConfig::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../robot-configs/sim-koch.toml"),
    )
    .expect("sim-koch config");
    let mut world = World::new(&cfg).expect("world");
    world.reset(7);
    // A pose mid-reach, from the scripted expert's first steps.
    let arm = world.arm().clone();
    let mut q = vec![0.0; arm.joint_count()];
    let expert = Expert::new(&arm);
    for _ in 0..12 {
        q = expert.act(&q, &world.features()).expect("expert");
        world.step(&q, cfg.period_s()).expect("step");
    }
    let scene = scene_from_world(&world, &q).expect("scene");
    let pose = SimCameraPose::default();
    println!(
        "machine: {} logical CPUs (shared VM), dev profile",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for side in [96u32, 128, 224] {
        let mut r = Renderer::new(&pose, side, side).expect("renderer");
        let mut img = Image::new(side, side);
        r.render(&scene, &mut img); // warm-up
        let n = if side <= 128 { 2000 } else { 500 };
        let t0 = Instant::now();
        for _ in 0..n {
            r.render(&scene, &mut img);
        }
        let per = t0.elapsed().as_secs_f64() / f64::from(n);
        println!(
            "render {side}x{side}: {:.3} ms/frame ({n} frames); a 10 s episode at 30 fps: {:.2} s",
            per * 1e3,
            per * 300.0
        );
        if let Some(dir) = &out_dir {
            let mut jpg = Vec::new();
            encode_jpeg_into(&img, 95, &mut jpg).expect("encode");
            std::fs::write(format!("{dir}/sim-{side}.jpg"), &jpg).expect("write");
            let mut ppm = format!("P6\n{side} {side}\n255\n").into_bytes();
            ppm.extend_from_slice(&img.data);
            std::fs::write(format!("{dir}/sim-{side}.ppm"), &ppm).expect("write");
        }
    }
    // 640x480: the 224x224 render scaled up (nearest neighbour), a realistic mix of flat areas
    // and edges for the encoder.
    let mut r = Renderer::new(&pose, 224, 224).expect("renderer");
    let mut small = Image::new(224, 224);
    r.render(&scene, &mut small);
    let mut big = Image::new(640, 480);
    for y in 0..480u32 {
        for x in 0..640u32 {
            let p = small.pixel(x * 224 / 640, y * 224 / 480);
            let i = ((y * 640 + x) * 3) as usize;
            big.data[i..i + 3].copy_from_slice(&p);
        }
    }
    for quality in [75u8, 90] {
        let mut jpg = Vec::new();
        encode_jpeg_into(&big, quality, &mut jpg).expect("encode");
        let n = 100;
        let t0 = Instant::now();
        for _ in 0..n {
            encode_jpeg_into(&big, quality, &mut jpg).expect("encode");
        }
        let enc = t0.elapsed().as_secs_f64() / f64::from(n);
        let mut back = Image::default();
        decode_jpeg(&jpg, &mut back).expect("decode");
        let t0 = Instant::now();
        for _ in 0..n {
            decode_jpeg(&jpg, &mut back).expect("decode");
        }
        let dec = t0.elapsed().as_secs_f64() / f64::from(n);
        println!(
            "jpeg 640x480 q{quality}: encode {:.2} ms, decode {:.2} ms, {} bytes, PSNR {:.1} dB",
            enc * 1e3,
            dec * 1e3,
            jpg.len(),
            psnr(&big, &back)
        );
    }
}
