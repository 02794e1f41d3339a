//! Offload at scale: 10,000 concurrent slow requests through OffloadLayer and MemoryStore.
//! Reports time-to-202 minus the threshold (p50, p99, max), checks that every task reaches a
//! terminal state, and the memory per pending task (resident memory, and live heap bytes
//! from a counting allocator).
//!
//! Two arrival patterns, both with all 10,000 tasks pending at once (the work takes 3 s):
//! a burst (every request at the same instant, so every threshold expires in the same
//! millisecond) and paced (evenly over one second).
//!
//! `cargo bench -p tower-serverless-benches --bench scale` (env `SCALE_REQUESTS`, default 10000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_serverless::offload::RequestBody;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskId, TaskState, TaskStore};
use tower_serverless_benches::count_from_env;

/// Keeps the number of live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)] // a global allocator is an unsafe trait; this one only counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        LIVE.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const THRESHOLD: Duration = Duration::from_millis(200);
const WORK: Duration = Duration::from_secs(3);

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let n = count_from_env("SCALE_REQUESTS", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("offload at scale: {n} concurrent requests, threshold {THRESHOLD:?}, work {WORK:?}");
    println!("| arrivals | 202 minus threshold p50 | p99 | max | pending at once | RSS per pending task | live heap per pending task | succeeded |");
    println!("|---|---|---|---|---|---|---|---|");
    runtime.block_on(scenario("burst", n, Duration::ZERO));
    runtime.block_on(scenario("paced over 1 s", n, Duration::from_secs(1)));
}

async fn scenario(name: &str, n: usize, spread: Duration) {
    let store = MemoryStore::new().max_tasks(2 * n).unwrap();
    // Every request is pending at once: the cap on detached tasks must hold them all.
    let offload = OffloadLayer::new(store.clone())
        .after(THRESHOLD)
        .max_detached(2 * n)
        .unwrap();
    let service = offload.layer(service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        tokio::time::sleep(WORK).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
    }));
    let (rss_before, heap_before) = (rss(), LIVE.load(Ordering::Relaxed));
    let origin = tokio::time::Instant::now();
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let service = service.clone();
            let arrival = origin + spread.mul_f64(i as f64 / n as f64);
            tokio::spawn(async move {
                tokio::time::sleep_until(arrival).await;
                let start = Instant::now();
                let response = service
                    .oneshot(Request::post("/jobs").body(Full::default()).unwrap())
                    .await
                    .unwrap();
                let elapsed = start.elapsed();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
                let location = response.headers()["location"].to_str().unwrap();
                let id: TaskId = location.rsplit('/').next().unwrap().parse().unwrap();
                (elapsed, id)
            })
        })
        .collect();
    let mut waits = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for request in requests {
        let (elapsed, id) = request.await.unwrap();
        waits.push(elapsed.saturating_sub(THRESHOLD));
        ids.push(id);
    }
    let pending = offload.detached().len();
    let (rss_during, heap_during) = (rss(), LIVE.load(Ordering::Relaxed));
    // The ids and waits kept by this function are not the tasks' memory.
    let bookkeeping =
        (ids.capacity() * std::mem::size_of::<TaskId>() + waits.capacity() * 16) as isize;

    offload.detached().wait_idle().await;
    let mut succeeded = 0;
    for id in &ids {
        if store
            .get(*id)
            .await
            .unwrap()
            .is_some_and(|t| t.state == TaskState::Succeeded)
        {
            succeeded += 1;
        }
    }
    waits.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_task = |bytes: isize| bytes as f64 / pending.max(1) as f64;
    println!(
        "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {pending} | {:.0} B | {:.0} B | {succeeded} of {n} |",
        ms(percentile(&waits, 0.50)),
        ms(percentile(&waits, 0.99)),
        ms(waits[n - 1]),
        per_task(rss_during as isize - rss_before as isize),
        per_task(heap_during - heap_before - bookkeeping),
    );
    assert_eq!(succeeded, n, "every task reaches its terminal state");
}
