//! Loopback load: an axum server, bare and with the full stack (EscalateLayer, DeadlineLayer,
//! OffloadLayer's fast path), driven by hyper clients on 64 keep-alive connections for a
//! fixed number of requests; requests per second of both and their ratio, in one run.
//!
//! Each layer alone and tower-http's `TimeoutLayer` are measured too, as references.
//!
//! `cargo bench -p tower-serverless-benches --bench load` (env `LOAD_REQUESTS`, default 64000
//! per run; 5 rounds, in which every server runs right after a run of the bare one; each
//! ratio is the median of those pairs' ratios; `LOAD_ONLY=<name prefix>` for one server
//! alone, without ratios).
//!
//! The clients share the servers' runtime and cores, so each server's cost is diluted by
//! the clients'. `LOAD_SERVE=1` starts the servers on a runtime of one worker thread,
//! prints their addresses (then `# serving until killed`) and serves until killed, for an
//! outside client on its own core:
//! `taskset -c 0 target/release/deps/load-* & taskset -c 1 wrk -t1 -c64 -d10s -s post.lua
//! http://<address>/hello` (`post.lua`: `wrk.method = "POST"`), as issue 15 measured.
//! `bash benches/wrk-pairs.sh` does that for every server, paired with the bare one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_serverless::{DeadlineLayer, EscalateLayer, MemoryStore, OffloadLayer};
use tower_serverless_benches::{count_from_env, hello_routes, median};

const CONNECTIONS: usize = 64;
const ROUNDS: usize = 5;

/// The three layers applied with three `Router::layer` calls, as the demo does.
fn full_stack_layered() -> Router {
    let offload = OffloadLayer::new(MemoryStore::new());
    hello_routes()
        .layer(offload.clone())
        .merge(offload.status_router())
        .layer(DeadlineLayer::api_gateway_rest())
        .layer(EscalateLayer::new().infallible())
}

/// The three layers as one `ServiceBuilder` stack in one `Router::layer` call: axum boxes
/// the stack's future and response body once instead of once per layer.
fn full_stack() -> Router {
    let offload = OffloadLayer::new(MemoryStore::new());
    let stack = tower::ServiceBuilder::new()
        .layer(EscalateLayer::new().infallible())
        .layer(DeadlineLayer::api_gateway_rest())
        .layer(offload.clone());
    hello_routes().layer(stack).merge(offload.status_router())
}

/// The three layers around the whole router (status endpoint included), given to
/// `axum::serve` directly: no `Router::layer`, so axum boxes neither the route's future nor
/// its service again; the response body is boxed once into axum's `Body`, which
/// `axum::serve` wants.
async fn serve_wrapped() -> SocketAddr {
    let offload = OffloadLayer::new(MemoryStore::new());
    let router = hello_routes().merge(offload.status_router());
    serve(
        tower::ServiceBuilder::new()
            .map_response(|response: http::Response<_>| response.map(axum::body::Body::new))
            .layer(EscalateLayer::new().infallible())
            .layer(DeadlineLayer::api_gateway_rest())
            .layer(offload)
            .service(router),
    )
    .await
}

/// Serves `service` (a `Router`, or a service around one) on a free loopback port.
async fn serve<S>(service: S) -> SocketAddr
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = axum::ServiceExt::<axum::extract::Request>::into_make_service(service);
    tokio::spawn(async move { axum::serve(listener, make).await.unwrap() });
    addr
}

fn peer_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        Duration::from_secs(29),
    )
}

/// What `Router::layer` costs by itself: axum boxes the layered service's future again.
fn no_op() -> tower::util::MapResponseLayer<fn(axum::response::Response) -> axum::response::Response>
{
    tower::util::MapResponseLayer::new(std::convert::identity)
}

/// Requests per second for `total` requests over `CONNECTIONS` connections.
async fn load(addr: SocketAddr, total: usize) -> f64 {
    let per_connection = total / CONNECTIONS;
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                for _ in 0..per_connection {
                    sender.ready().await.unwrap();
                    let request = Request::post("/hello")
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    response.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    (per_connection * CONNECTIONS) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let total = count_from_env("LOAD_REQUESTS", 64_000);
    let serve_only = std::env::var_os("LOAD_SERVE").is_some();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if serve_only {
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build().unwrap();
    runtime.block_on(async {
        let servers = [
            ("axum, bare", serve(hello_routes()).await),
            (
                "axum + Escalate, Deadline, Offload as one ServiceBuilder layer",
                serve(full_stack()).await,
            ),
            (
                "axum + Escalate, Deadline, Offload around the whole Router",
                serve_wrapped().await,
            ),
            (
                "axum + Escalate, Deadline, Offload as three Router::layer calls",
                serve(full_stack_layered()).await,
            ),
            (
                "axum + EscalateLayer",
                serve(hello_routes().layer(EscalateLayer::new().infallible())).await,
            ),
            (
                "axum + DeadlineLayer",
                serve(hello_routes().layer(DeadlineLayer::api_gateway_rest())).await,
            ),
            (
                "axum + OffloadLayer",
                serve(hello_routes().layer(OffloadLayer::new(MemoryStore::new()))).await,
            ),
            (
                "axum + tower-http TimeoutLayer (peer)",
                serve(hello_routes().layer(peer_timeout())).await,
            ),
            (
                "axum + no-op layer (tower's identity MapResponse)",
                serve(hello_routes().layer(no_op())).await,
            ),
        ];
        if serve_only {
            for (name, addr) in &servers {
                println!("{addr}\t{name}");
            }
            // The end of the list, for a script waiting on it (`benches/wrk-pairs.sh`).
            println!("# serving until killed");
            return std::future::pending().await;
        }
        // `LOAD_ONLY=<start of a server's name>`: that server alone, for a profiler.
        if let Ok(only) = std::env::var("LOAD_ONLY") {
            for (name, addr) in servers.iter().filter(|(name, _)| name.starts_with(&only)) {
                load(*addr, total / 4).await; // warm-up
                let mut rates = Vec::new();
                for _ in 0..ROUNDS {
                    rates.push(load(*addr, total).await);
                }
                println!("| {name} | {:.0} requests/s |", median(rates));
            }
            return;
        }
        for (_, addr) in &servers {
            load(*addr, total / 4).await; // warm-up
        }
        // Each server runs right after the bare one, and its ratio is the median of those
        // pairs' ratios: this shared VM's speed drifts by 10-30 % within a minute, which then
        // reaches both sides of a ratio alike.
        let bare = servers[0].1;
        let mut rates = vec![Vec::new(); servers.len()];
        let mut ratios = vec![Vec::new(); servers.len()];
        for _ in 0..ROUNDS {
            for (index, (_, addr)) in servers.iter().enumerate().skip(1) {
                let base = load(bare, total).await;
                let rate = load(*addr, total).await;
                rates[0].push(base);
                rates[index].push(rate);
                ratios[index].push(rate / base);
            }
        }
        println!(
            "loopback load: {total} requests per run, {CONNECTIONS} connections, {ROUNDS} rounds \
             of every server right after the bare one; medians"
        );
        println!("| server | requests/s | ratio to bare (of the pairs) |\n|---|---|---|");
        for ((name, _), (rates, ratios)) in servers.iter().zip(rates.into_iter().zip(ratios)) {
            let ratio = if ratios.is_empty() {
                1.0
            } else {
                median(ratios)
            };
            println!("| {name} | {:.0} | {ratio:.3} |", median(rates));
        }
    });
}
