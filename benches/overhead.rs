//! Per-request cost of each layer through `oneshot` on a current-thread runtime, against
//! tower-http's `TimeoutLayer` and tower's `Timeout`, and the allocations per request of each
//! (a counting global allocator), printed as a table first. Two handlers: one that is ready
//! at once, and one that awaits once (`tokio::task::yield_now`), as real handlers await I/O:
//! then every timer in the stack is registered in tokio's timer wheel. The awaiting handler
//! is measured twice: with a bare `Request::new` (no extension map: `DeadlineLayer`'s insert
//! makes it), with a request whose host made the map already (`hosted`), as
//! `lambda_http` and axum's router hand requests to the layers, and in the ratio table
//! also with a request that carries a `Deadline` (`lambda`), as `LambdaLayer` hands
//! requests over on Lambda.
//!
//! `cargo bench -p tower-serverless-benches --bench overhead`

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_serverless::deadline::{Deadline, DeadlineSource};
use tower_serverless::{DeadlineLayer, EscalateLayer, MemoryStore, OffloadLayer};
use tower_serverless_benches::{count_from_env, hello_routes, median};

/// Counts every allocation of the process.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)] // a global allocator is an unsafe trait; this one only counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

type Req = Request<Full<Bytes>>;

/// Makes the request of each iteration.
type MakeRequest = fn() -> Req;

fn request() -> Req {
    // POST: the method OffloadLayer may offload, so its fast path is what is measured.
    let mut request = Request::new(Full::new(Bytes::from_static(b"ping")));
    *request.method_mut() = http::Method::POST;
    request
}

/// What a host puts in a request's extensions before the layers see it (`lambda_http` its
/// request context, axum's router `OriginalUri` and `MatchedPath` before a route's layers).
#[derive(Clone)]
struct HostContext;

/// A request as such a host hands it over: its extension map is made already, so an
/// extension the layers insert costs its own box only.
fn hosted_request() -> Req {
    let mut request = request();
    request.extensions_mut().insert(HostContext);
    request
}

/// A request as `LambdaLayer` hands it over on Lambda: with the function's deadline (an hour
/// away here, so that no run reaches it; `DeadlineLayer` keeps its own, earlier one), made
/// once so that no variant's figure includes reading the clock for it.
fn lambda_request() -> Req {
    static FUNCTION: std::sync::OnceLock<Deadline> = std::sync::OnceLock::new();
    let function = *FUNCTION
        .get_or_init(|| Deadline::after(Duration::from_secs(3600), DeadlineSource::Function));
    let mut request = request();
    request.extensions_mut().insert(function);
    request
}

/// A service for any request body (the offload layer passes its own) that answers at once,
/// or, with `AWAITS`, after awaiting once, as a handler that does I/O does. A const
/// parameter, so that the ready handler carries no branch.
fn handler<B: Send + 'static, const AWAITS: bool>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + 'static {
    service_fn(|_: Request<B>| async {
        if AWAITS {
            tokio::task::yield_now().await;
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"pong"))))
    })
}

const BUDGET: Duration = Duration::from_secs(29);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// The names of the variants the targets divide: one spelling for `each_variant!` and the
// ratio table, which finds them by name.
const BARE: &str = "bare";
const TOWER_TIMEOUT: &str = "tower Timeout";
const TOWER_HTTP_TIMEOUT: &str = "tower-http TimeoutLayer";
const ESCALATE: &str = "EscalateLayer";
const DEADLINE: &str = "DeadlineLayer";
const STACK: &str = "all three (one ServiceBuilder)";

/// Runs `$body` with `$svc` bound to each variant over the handler that awaits once or not
/// (`$awaits`), in a fixed order.
macro_rules! each_variant {
    ($awaits:tt, $svc:ident, $name:ident => $body:expr) => {{
        let offload = OffloadLayer::new(MemoryStore::new());
        {
            let ($name, $svc) = (BARE, handler::<_, $awaits>());
            $body
        }
        {
            // The least a layer can cost: tower's identity `MapResponse`.
            let identity =
                tower::util::MapResponseLayer::new(|response: Response<Full<Bytes>>| response);
            let ($name, $svc) = (
                "no-op layer (tower MapResponse)",
                identity.layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let ($name, $svc) = (
                TOWER_HTTP_TIMEOUT,
                tower_http::timeout::TimeoutLayer::with_status_code(
                    http::StatusCode::GATEWAY_TIMEOUT,
                    BUDGET,
                )
                .layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let ($name, $svc) = (
                TOWER_TIMEOUT,
                tower::timeout::TimeoutLayer::new(BUDGET).layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let ($name, $svc) = (
                ESCALATE,
                EscalateLayer::new().layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let ($name, $svc) = (
                DEADLINE,
                DeadlineLayer::new(BUDGET).layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let ($name, $svc) = (
                "OffloadLayer (fast path)",
                offload.layer(handler::<_, $awaits>()),
            );
            $body
        }
        {
            let stack = tower::ServiceBuilder::new()
                .layer(EscalateLayer::new())
                .layer(DeadlineLayer::new(BUDGET))
                .layer(offload.clone())
                .service(handler::<_, $awaits>());
            let ($name, $svc) = (STACK, stack);
            $body
        }
    }};
}

/// Allocations per request of `service`, over many requests after a warm-up.
fn allocations<S>(runtime: &tokio::runtime::Runtime, service: S) -> f64
where
    S: Service<Req> + Clone,
    S::Error: std::fmt::Debug,
{
    allocations_of(runtime, service, request)
}

/// [`allocations`] with requests made by `request`, whose own allocations are counted too.
fn allocations_of<S>(runtime: &tokio::runtime::Runtime, service: S, request: MakeRequest) -> f64
where
    S: Service<Req> + Clone,
    S::Error: std::fmt::Debug,
{
    const N: usize = 10_000;
    runtime.block_on(async {
        for _ in 0..100 {
            service.clone().oneshot(request()).await.unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..N {
            service.clone().oneshot(request()).await.unwrap();
        }
        (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64
    })
}

/// The size of `service`'s response future, which each layer and host above moves at least
/// once.
fn future_size<S: Service<Req>>(_: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

fn allocation_table() {
    let runtime = runtime();
    println!("\nallocations per request (oneshot, current-thread runtime)");
    println!("| service | ready handler | awaiting handler | response future, bytes (awaiting handler) |\n|---|---|---|---|");
    let mut ready = Vec::new();
    each_variant!(false, service, name => {
        ready.push((name, allocations(&runtime, service)));
    });
    let mut ready = ready.into_iter();
    each_variant!(true, service, name => {
        let (_, at_once) = ready.next().unwrap();
        let bytes = future_size(&service);
        println!("| {name} | {at_once:.2} | {:.2} | {bytes} |", allocations(&runtime, service));
    });
    // Where DeadlineLayer's allocations come from: `http::Extensions` allocates its map (a
    // box and a table) on the first insert into a request that has no extension yet, and a
    // box per value. A request that already carries an extension shows the layer's own cost.
    deadline_behind(&runtime, "request with an extension already", |request| {
        request.extensions_mut().insert(HostContext);
    });
    // Behind `LambdaLayer`, which puts the function's and the front door's deadline in the
    // request, `DeadlineLayer` finds a `Deadline` there already and keeps the earlier one.
    deadline_behind(
        &runtime,
        "request with a `Deadline` already, as `LambdaLayer` hands it over",
        |request| {
            let function = Deadline::after(BUDGET, DeadlineSource::Function);
            request.extensions_mut().insert(function);
        },
    );
    axum_rows(&runtime);
    #[cfg(feature = "lambda")]
    lambda::allocation_rows(&runtime);
    println!();
}

/// Allocations per request through an axum `Router` as `axum::serve` runs it (`with_state`
/// has made its handlers into routes), each layer added with `Router::layer`, minus the
/// bare router's. axum's router has put three extensions in the request (its map is then
/// full: `DeadlineLayer`'s insert grows it), and boxes a body of another type than its own
/// (`OffloadLayer`'s request body, the layers' response bodies).
fn axum_rows(runtime: &tokio::runtime::Runtime) {
    use axum::Router;

    fn hello() -> Req {
        let mut request = request();
        *request.uri_mut() = http::Uri::from_static("/hello");
        request
    }
    let count = |router: Router| {
        let router = router.with_state(());
        let response = runtime.block_on(router.clone().oneshot(hello())).unwrap();
        assert_eq!(
            response.status(),
            http::StatusCode::OK,
            "the route is found"
        );
        allocations_of(runtime, router, hello)
    };
    let bare = count(hello_routes());
    let offload = OffloadLayer::new(MemoryStore::new());
    let identity =
        tower::util::MapResponseLayer::new(|response: axum::response::Response| response);
    let stack = tower::ServiceBuilder::new()
        .layer(EscalateLayer::new().infallible())
        .layer(DeadlineLayer::new(BUDGET))
        .layer(offload.clone());
    let rows = [
        ("no-op layer", count(hello_routes().layer(identity))),
        (
            "EscalateLayer (infallible)",
            count(hello_routes().layer(EscalateLayer::new().infallible())),
        ),
        (
            DEADLINE,
            count(hello_routes().layer(DeadlineLayer::new(BUDGET))),
        ),
        (
            "OffloadLayer (fast path)",
            count(hello_routes().layer(offload)),
        ),
        (
            "all three (one ServiceBuilder, infallible)",
            count(hello_routes().layer(stack)),
        ),
    ];
    for (name, allocations) in rows {
        println!(
            "| {name}, through an axum `Router` (minus the bare router's {bare:.2}) | {:.2} |",
            allocations - bare
        );
    }
}

/// Prints `DeadlineLayer`'s allocations per request behind a host that puts `host`'s
/// extensions in each request, minus what that request costs without the layer.
fn deadline_behind(runtime: &tokio::runtime::Runtime, what: &str, host: fn(&mut Req)) {
    let host = tower::util::MapRequestLayer::new(move |mut request: Req| {
        host(&mut request);
        request
    });
    let bare = allocations(runtime, host.layer(handler::<_, false>()));
    let deadline = allocations(
        runtime,
        host.layer(DeadlineLayer::new(BUDGET).layer(handler::<_, false>())),
    );
    println!(
        "| DeadlineLayer, {what} (minus that request's own {bare:.2}) | {:.2} |",
        deadline - bare
    );
}

/// What `LambdaLayer` allocates per request as `lambda_http` hands it over: the deadlines and
/// the invocation's id as extensions, and for a staged REST event the path without the stage
/// and the prefix for `Location`s. The events are parsed for every request (`lambda_http`
/// does that too); the bare handler's count over the same events is taken off.
#[cfg(feature = "lambda")]
mod lambda {
    use lambda_http::{Context, RequestExt};
    use tower::Layer;
    use tower_serverless::lambda::LambdaLayer;

    use super::{allocations_of, handler, Bytes, Full, MakeRequest, Req};

    /// A REST API event on stage `prod`: the routes see `/hello`, `Location`s get `/prod`.
    const REST: &str = r#"{"resource":"/hello","path":"/hello","httpMethod":"POST",
        "headers":{"Host":"api.example.com"},"multiValueHeaders":{"Host":["api.example.com"]},
        "queryStringParameters":{"page":"2"},"multiValueQueryStringParameters":{"page":["2"]},
        "requestContext":{"stage":"prod","resourcePath":"/hello","httpMethod":"POST",
        "path":"/prod/hello","requestTimeEpoch":NOW,"requestId":"r"},
        "body":"ping","isBase64Encoded":false}"#;

    /// A function URL event: nothing to take off the path.
    const FUNCTION_URL: &str = r#"{"version":"2.0","routeKey":"$default","rawPath":"/hello",
        "rawQueryString":"page=2","headers":{"host":"abc.lambda-url.eu-west-1.on.aws"},
        "requestContext":{"accountId":"anonymous","apiId":"abc",
        "domainName":"abc.lambda-url.eu-west-1.on.aws","domainPrefix":"abc",
        "http":{"method":"POST","path":"/hello","protocol":"HTTP/1.1","sourceIp":"127.0.0.1",
        "userAgent":"curl"},"requestId":"r","routeKey":"$default","stage":"$default",
        "time":"29/Nov/2026:00:00:00 +0000","timeEpoch":NOW},
        "body":"ping","isBase64Encoded":false}"#;

    /// `json` arriving now, in an invocation with 30 s left.
    fn event(json: &str) -> Req {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let mut context = Context::default();
        context.request_id = "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned();
        context.deadline = now + 30_000;
        lambda_http::request::from_str(&json.replace("NOW", &now.to_string()))
            .expect("a valid event")
            .with_lambda_context(context)
            .map(|_| Full::new(Bytes::from_static(b"ping")))
    }

    pub(super) fn allocation_rows(runtime: &tokio::runtime::Runtime) {
        let rows: [(&str, MakeRequest); 2] = [
            ("REST API, stage prod", || event(REST)),
            ("function URL", || event(FUNCTION_URL)),
        ];
        for (name, request) in rows {
            let bare = allocations_of(runtime, handler::<_, false>(), request);
            let layered = allocations_of(
                runtime,
                LambdaLayer::new().layer(handler::<_, false>()),
                request,
            );
            println!(
                "| LambdaLayer, {name} event (minus the event's own {bare:.2}) | {:.2} |",
                layered - bare
            );
        }
    }
}

/// A run of `n` requests through one variant, timed as a whole: one box per run, not per
/// request, so that what is timed is what criterion times.
type Timed = Box<dyn Fn(usize) -> Pin<Box<dyn Future<Output = Duration>>>>;

/// `service` made ready to time, with each request made by `make`.
///
/// `make` is a function of its own type, not a pointer: called through a pointer (as the
/// table did until the fourteenth session), making the request took about 116 instructions
/// more in every variant alike (counted in `OVERHEAD_ONLY`'s runs), which brought every ratio
/// closer to 1 than the layers' own costs put it.
fn timed<S>(service: S, make: impl Fn() -> Req + Copy + 'static) -> Timed
where
    S: Service<Req> + Clone + 'static,
    S::Error: std::fmt::Debug,
{
    Box::new(move |n| {
        let service = service.clone();
        Box::pin(async move {
            let start = std::time::Instant::now();
            for _ in 0..n {
                service.clone().oneshot(make()).await.unwrap();
            }
            start.elapsed()
        })
    })
}

/// The issue's targets as ratios, each of two services measured in the same rounds: every
/// round times a short run of each variant in turn, so that a change in the machine's load
/// (this is a shared VM) reaches both sides of a ratio alike, where criterion measures one
/// variant seconds after the other. Each ratio is the median of its per-round ratios.
fn ratio_table() {
    let rounds = count_from_env("OVERHEAD_ROUNDS", 300);
    let runtime = runtime();
    ratio_group(&runtime, "awaiting", rounds, request);
    ratio_group(&runtime, "hosted", rounds, hosted_request);
    ratio_group(&runtime, "lambda", rounds, lambda_request);
    println!();
}

/// One group of [`ratio_table`]: the awaiting handler with requests made by `make`.
fn ratio_group(
    runtime: &tokio::runtime::Runtime,
    group: &str,
    rounds: usize,
    make: impl Fn() -> Req + Copy + 'static,
) {
    const PER_RUN: usize = 1_000;
    let mut variants: Vec<(&str, Timed)> = Vec::new();
    each_variant!(true, service, name => {
        variants.push((name, timed(service, make)));
    });
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    runtime.block_on(async {
        for (_, run) in &variants {
            run(PER_RUN * 10).await; // warm-up
        }
        for _ in 0..rounds {
            for ((_, run), times) in variants.iter().zip(&mut times) {
                times.push(run(PER_RUN).await.as_secs_f64() * 1e9 / PER_RUN as f64);
            }
        }
    });
    let index = |name: &str| variants.iter().position(|(n, _)| *n == name).unwrap();
    let ratio = |of: &str, to: &str| {
        let (of, to) = (&times[index(of)], &times[index(to)]);
        median(of.iter().zip(to).map(|(a, b)| a / b).collect())
    };
    println!("\n{group} handler, {rounds} rounds of {PER_RUN} requests per variant, interleaved; medians");
    println!("| service | ns per request | to bare |\n|---|---|---|");
    for ((name, _), times) in variants.iter().zip(&times) {
        println!(
            "| {name} | {:.1} | {:.3} |",
            median(times.clone()),
            ratio(name, BARE)
        );
    }
    println!(
        "| target: EscalateLayer / bare (≤ 1.05) | | {:.3} |",
        ratio(ESCALATE, BARE)
    );
    println!(
        "| target: DeadlineLayer / tower Timeout (≤ 1.1) | | {:.3} |",
        ratio(DEADLINE, TOWER_TIMEOUT)
    );
    println!(
        "| target: all three / tower-http TimeoutLayer (≤ 1.5) | | {:.3} |",
        ratio(STACK, TOWER_HTTP_TIMEOUT)
    );
}

fn overhead(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("ready");
    each_variant!(false, service, name => {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| service.clone().oneshot(request()));
        });
    });
    group.finish();
    let mut group = c.benchmark_group("awaiting");
    each_variant!(true, service, name => {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| service.clone().oneshot(request()));
        });
    });
    group.finish();
    let mut group = c.benchmark_group("hosted");
    each_variant!(true, service, name => {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| service.clone().oneshot(hosted_request()));
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = overhead
}

/// `OVERHEAD_ONLY=ratios` prints the ratio table alone, `OVERHEAD_ONLY=allocations` the
/// allocation table alone.
///
/// `OVERHEAD_ONLY=<ready|awaiting|hosted|lambda>/<service>` with `OVERHEAD_ITERS=N`: runs that one variant
/// N times after a warm-up and nothing else, for an instruction count that does not depend
/// on the machine's load: `valgrind --tool=callgrind` with N and with 0, the difference
/// divided by N.
fn only(which: &str) {
    match which {
        "ratios" => return ratio_table(),
        "allocations" => return allocation_table(),
        _ => {}
    }
    let iters: usize = std::env::var("OVERHEAD_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    match which.split('/').next() {
        Some("ready") => only_with::<false>(which, iters, request),
        Some("hosted") => only_with::<true>(which, iters, hosted_request),
        Some("lambda") => only_with::<true>(which, iters, lambda_request),
        _ => only_with::<true>(which, iters, request),
    }
}

/// [`only`] over the handler that awaits or not, with requests made by `make`, a function
/// of its own type for the reason [`timed`] gives.
fn only_with<const AWAITS: bool>(
    which: &str,
    iters: usize,
    make: impl Fn() -> Req + Copy + 'static,
) {
    let runtime = runtime();
    let run =
        |name: &str,
         service: &dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| {
            if which.ends_with(name) {
                runtime.block_on(async {
                    for _ in 0..100 {
                        service().await;
                    }
                    for _ in 0..iters {
                        service().await;
                    }
                });
            }
        };
    each_variant!(AWAITS, service, name => {
        run(name, &|| { let s = service.clone(); Box::pin(async move { s.oneshot(make()).await.unwrap(); }) });
    });
}

fn main() {
    if let Ok(which) = std::env::var("OVERHEAD_ONLY") {
        return only(&which);
    }
    allocation_table();
    ratio_table();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
