//! `Idempotency-Key` through a real axum server, as draft-ietf-httpapi-idempotency-key-header
//! asks: work that runs once to an outcome, responses that stream, keys scoped to the
//! endpoint and the client, conflicts and mismatches refused, replays of the real result.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use common::{Collected, HttpClient};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::ServiceBuilder;
use tower_serverless::offload::{MemoryStore, OffloadLayer};

/// Counts the runs of a handler.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicUsize>);

impl Runs {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

async fn send(
    client: &HttpClient,
    addr: std::net::SocketAddr,
    path: &str,
    key: &str,
    body: &'static str,
) -> Collected {
    let request = Request::post(format!("http://{addr}{path}"))
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    client.send(request).await
}

/// `POST /slow` works 500 ms; `POST /login` and `POST /refund` answer at once, login with a
/// cookie; each counts its runs.
fn routes(runs: &Runs) -> Router {
    let (slow, login, refund) = (runs.clone(), runs.clone(), runs.clone());
    Router::new()
        .route(
            "/slow",
            post(move || {
                slow.0.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "slow done"
                }
            }),
        )
        .route(
            "/login",
            post(move || {
                login.0.fetch_add(1, Ordering::SeqCst);
                async { ([("set-cookie", "session=secret")], "logged in") }
            }),
        )
        .route(
            "/refund",
            post(move |body: String| {
                refund.0.fetch_add(1, Ordering::SeqCst);
                async move { format!("refunded {body}") }
            }),
        )
}

#[tokio::test]
async fn a_keyed_task_runs_to_its_outcome_when_the_foreground_gives_up() {
    let runs = Runs::default();
    let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_secs(5));
    // A timeout the offload layer knows nothing of (a proxy's, tower-http's) drops the
    // request at 200 ms, long before the offload threshold.
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::GATEWAY_TIMEOUT,
        Duration::from_millis(200),
    );
    let app = routes(&runs)
        .layer(ServiceBuilder::new().layer(timeout).layer(offload.clone()))
        .merge(offload.status_router());
    let addr = common::serve(app).await;
    let client = HttpClient::new();

    let first = send(&client, addr, "/slow", "k-1", "").await;
    assert_eq!(first.status, StatusCode::GATEWAY_TIMEOUT);
    offload.detached().wait_idle().await;
    let retry = send(&client, addr, "/slow", "k-1", "").await;
    assert_eq!((retry.status, retry.text()), (StatusCode::OK, "slow done"));
    assert_eq!(runs.count(), 1, "the work ran once, to its end");
}

#[tokio::test]
async fn a_keyed_response_streams_and_only_a_bounded_copy_is_kept() {
    let big = vec![b'x'; 64 << 10];
    let body = Bytes::from(big.clone());
    let runs = Runs::default();
    let counter = runs.clone();
    let offload = OffloadLayer::new(MemoryStore::new()).max_result_bytes(1000);
    let app = Router::new()
        .route(
            "/export",
            post(move || {
                counter.0.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                async move { body }
            }),
        )
        .route(
            "/events",
            post(|| async {
                Response::new(Body::new(Ticks::every(
                    Duration::from_millis(10),
                    usize::MAX,
                )))
            }),
        )
        .layer(offload.clone());
    let addr = common::serve(app).await;
    let client = HttpClient::new();

    let first = send(&client, addr, "/export", "export-1", "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body.len(),
        big.len(),
        "the whole body reached the client"
    );
    offload.detached().wait_idle().await;
    let retry = send(&client, addr, "/export", "export-1", "").await;
    assert_eq!(retry.status, StatusCode::GONE);
    retry.problem(
        "the response to this Idempotency-Key was too large to keep; the request was processed",
    );
    assert_eq!(runs.count(), 1, "the work did not run again");

    // An endless stream answers its headers at once; the client reads the head and leaves.
    let request = Request::post(format!("http://{addr}/events"))
        .header("idempotency-key", "events-1")
        .body(Full::default())
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), client.head_of(request))
        .await
        .expect("the headers came without waiting for the end of the stream");
    assert_eq!(head, StatusCode::OK);
    // What it kept outgrew the limit: recorded as not kept, and the place released; a
    // retry is told so instead of running the stream again.
    tokio::time::timeout(Duration::from_secs(10), offload.detached().wait_idle())
        .await
        .expect("the endless stream's outcome was recorded");
    let retry = send(&client, addr, "/events", "events-1", "").await;
    assert_eq!(retry.status, StatusCode::GONE);
}

/// A body of a chunk every tick, `left` of them: `usize::MAX` is an endless one, as
/// server-sent events are.
struct Ticks {
    interval: tokio::time::Interval,
    left: usize,
}

impl Ticks {
    fn every(period: Duration, left: usize) -> Self {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval, left }
    }
}

const TICK: &str = "data: tick\n\n";

impl http_body::Body for Ticks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.interval.poll_tick(cx));
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            TICK.as_bytes(),
        )))))
    }
}

#[tokio::test]
async fn keys_are_scoped_to_the_endpoint_and_checked_against_the_request() {
    let runs = Runs::default();
    let offload = OffloadLayer::new(MemoryStore::new());
    let addr = common::serve(routes(&runs).layer(offload.clone())).await;
    let client = HttpClient::new();

    let login = send(&client, addr, "/login", "shared-key", "").await;
    assert_eq!(login.header("set-cookie"), "session=secret");
    offload.detached().wait_idle().await;

    // The same key on another endpoint is another request: it runs, and nothing of the
    // login comes back.
    let refund = send(&client, addr, "/refund", "shared-key", "7").await;
    assert_eq!(
        (refund.status, refund.text()),
        (StatusCode::OK, "refunded 7")
    );
    assert!(!refund.headers.contains_key("set-cookie"));
    assert_eq!(runs.count(), 2);
    offload.detached().wait_idle().await;

    // A retry of the login replays it, without the cookie.
    let replay = send(&client, addr, "/login", "shared-key", "").await;
    assert_eq!(
        (replay.status, replay.text()),
        (StatusCode::OK, "logged in")
    );
    assert!(
        !replay.headers.contains_key("set-cookie"),
        "no Set-Cookie in a replay"
    );

    // The same key and endpoint with another body: 422, and no run.
    let other = send(&client, addr, "/refund", "shared-key", "700").await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    other.problem("this Idempotency-Key was used for another request (method, path or body)");
    assert_eq!(runs.count(), 2);
}

#[tokio::test]
async fn a_retry_during_the_first_requests_foreground_is_a_conflict() {
    let runs = Runs::default();
    let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_secs(5));
    let addr = common::serve(routes(&runs).layer(offload.clone())).await;
    let client = HttpClient::new();

    let first = tokio::spawn({
        let client = client.clone();
        async move { send(&client, addr, "/slow", "k-2", "").await }
    });
    // The first request is running once it counted.
    while runs.count() == 0 {
        tokio::task::yield_now().await;
    }
    let retry = send(&client, addr, "/slow", "k-2", "").await;
    assert_eq!(retry.status, StatusCode::CONFLICT);
    retry.problem("a request with this Idempotency-Key is still being processed");
    assert!(retry.headers.contains_key("retry-after"));
    let first = first.await.unwrap();
    assert_eq!((first.status, first.text()), (StatusCode::OK, "slow done"));
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn a_full_store_refuses_a_keyed_request_instead_of_running_it_unprotected() {
    let runs = Runs::default();
    let store = MemoryStore::new().max_tasks(1).unwrap();
    let offload = OffloadLayer::new(store).after(Duration::from_millis(50));
    let addr = common::serve(routes(&runs).layer(offload.clone())).await;
    let client = HttpClient::new();
    // One pending task fills the store.
    let pending = send(&client, addr, "/slow", "k-3", "").await;
    assert_eq!(pending.status, StatusCode::ACCEPTED);
    let refused = send(&client, addr, "/refund", "k-4", "1").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.header("retry-after"), "1");
    assert_eq!(runs.count(), 1, "the refused request did not run");
    offload.detached().wait_idle().await;
}

#[tokio::test]
async fn a_202_for_a_retry_states_the_tasks_real_state() {
    common::quiet_panics();
    let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(50));
    let app = Router::new()
        .route(
            "/doomed",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!("the work failed on purpose");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(offload.clone());
    let addr = common::serve(app).await;
    let client = HttpClient::new();
    let accepted = send(&client, addr, "/doomed", "k-5", "").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.json()["status"], "pending");
    offload.detached().wait_idle().await;
    let retry = send(&client, addr, "/doomed", "k-5", "").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED);
    assert_eq!(retry.json()["status"], "failed");
    assert_eq!(retry.json()["error"], "the handler panicked");
    assert_eq!(retry.header("location"), accepted.header("location"));
}

#[tokio::test]
async fn a_keyed_task_keeps_its_lease_while_it_answers_in_the_foreground() {
    // The lease is a fraction of the time the work takes in the foreground: 600 ms before
    // its response, under the threshold, then 600 ms of streaming. Lapsed, the task would
    // read `worker lost` and its outcome would not be stored.
    let offload = OffloadLayer::new(MemoryStore::new())
        .after(Duration::from_secs(10))
        .lease(Duration::from_millis(150))
        .unwrap();
    let app = Router::new()
        .route(
            "/report",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Response::new(Body::new(Ticks::every(Duration::from_millis(100), 7)))
            }),
        )
        .layer(offload.clone());
    let addr = common::serve(app).await;
    let client = HttpClient::new();
    let whole = TICK.repeat(7);

    let first = send(&client, addr, "/report", "report-1", "").await;
    assert_eq!(
        (first.status, first.text()),
        (StatusCode::OK, whole.as_str())
    );
    offload.detached().wait_idle().await;
    let retry = send(&client, addr, "/report", "report-1", "").await;
    assert_eq!(
        (retry.status, retry.text()),
        (StatusCode::OK, whole.as_str()),
        "the retry replays the stored response: {}",
        retry.text()
    );
}
