//! The control loop's read of the latest frame allocates nothing: counted by a global
//! allocator (per thread, so the capture thread's own work is not counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use intervened_camera::sim::render::{Primitive, Shape};
use intervened_camera::{
    scene_channel, Camera, CameraConfig, CaptureThread, Image, Latest, Renderer, Scene, SimCamera,
    SimCameraPose,
};

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

fn scene(x: f32) -> Scene {
    Scene {
        primitives: vec![Primitive {
            shape: Shape::aabb([x, 0.0, 0.015], [0.015; 3]),
            color: [200, 30, 30],
        }],
        ..Scene::default()
    }
}

#[test]
fn reading_frames_and_publishing_scenes_do_not_allocate() {
    let cfg = CameraConfig {
        name: "overhead".into(),
        device: "sim".into(),
        width: 96,
        height: 96,
        fps: 200,
        max_age_ms: Some(1000),
        pose: None,
    };
    let (mut publisher, subscriber) = scene_channel(&scene(0.1));
    let cam = SimCamera::from_config(&cfg, subscriber).unwrap();
    let (thread, mut reader) = CaptureThread::spawn(cam, cfg.max_age()).unwrap();
    let warm = scene(0.12);
    // Warm-up: the scene slots reach their final capacity.
    for _ in 0..3 {
        publisher.publish(&warm);
    }
    let t0 = Instant::now();
    while reader.latest().frame().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = allocs();
    let mut fresh = 0;
    let mut seen = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(300) {
        publisher.publish(&warm);
        if let Latest::Fresh { frame, .. } = reader.latest() {
            fresh += 1;
            seen = seen.max(frame.sequence);
        }
        std::hint::spin_loop();
    }
    let after = allocs();
    assert_eq!(after - before, 0, "the loop side allocated");
    assert!(
        fresh > 0 && seen > 5,
        "frames kept coming ({fresh} reads, last sequence {seen})"
    );
    drop(thread);
}

#[test]
fn rendering_allocates_nothing_after_the_first_frame() {
    let mut r = Renderer::new(&SimCameraPose::default(), 128, 96).unwrap();
    let mut img = Image::new(128, 96);
    let s = scene(0.1);
    r.render(&s, &mut img);
    let before = allocs();
    for _ in 0..10 {
        r.render(&s, &mut img);
    }
    assert_eq!(allocs() - before, 0);
    // And a SimCamera capture (unpaced) likewise.
    let cfg = CameraConfig {
        name: "c".into(),
        device: "sim".into(),
        width: 96,
        height: 96,
        fps: 30,
        max_age_ms: None,
        pose: None,
    };
    let (_p, sub) = scene_channel(&s);
    let mut cam = SimCamera::from_config(&cfg, sub).unwrap().unpaced();
    let mut img = Image::new(96, 96);
    cam.capture(&mut img).unwrap();
    let before = allocs();
    for _ in 0..10 {
        cam.capture(&mut img).unwrap();
    }
    assert_eq!(allocs() - before, 0);
}
