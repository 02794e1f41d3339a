//! Detached work is bounded and safe: no deadlock at shutdown, a default background budget,
//! a cap on running tasks, finished results kept for their TTL, panics and escalations in
//! the background stored as failures, and a bounded shutdown.
#![cfg(feature = "axum")]

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use common::{Collected, HttpClient};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use tower::{service_fn, Layer, ServiceExt};
use tower_serverless::deadline::DeadlineSource;
use tower_serverless::offload::store::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, TaskOutcome, TaskRecord,
};
use tower_serverless::offload::{MemoryStore, OffloadLayer, RequestBody, TaskId, TaskStore};
use tower_serverless::{EscalateLayer, Escalation};

fn post_request(prefer: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/work");
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    request.body(Body::empty()).unwrap()
}

/// Sends `request` through `offload` to `service`, waits for the detached work, and gives
/// the status JSON of the task its `202` named.
async fn settled<S, B>(
    offload: &OffloadLayer,
    service: S,
    request: Request<Body>,
) -> serde_json::Value
where
    S: tower::Service<Request<RequestBody<Body>>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let accepted = offload.layer(service).oneshot(request).await.unwrap();
    offload.detached().wait_idle().await;
    common::status_of(offload, &accepted).await
}

#[test]
fn offloading_while_the_runtime_shuts_down_does_not_deadlock() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    // Once shut down, `tokio::spawn` drops the task's future inside the call.
    runtime.shutdown_background();
    let offload = OffloadLayer::new(MemoryStore::new());
    let detached = offload.detached();
    let (answered, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let service = offload.layer(service_fn(|_: Request<RequestBody<Body>>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
        let response = handle.block_on(service.oneshot(post_request(Some("respond-async"))));
        let _ = answered.send(response.map(|response| response.status()));
    });
    let status = answer
        .recv_timeout(Duration::from_secs(30))
        .expect("the call returned: no deadlock");
    assert!(status.is_ok());
    // The shut-down runtime drops the task, inside `spawn` or from its workers: then
    // nothing is left registered.
    let released = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), detached.wait_idle()).await
        });
    assert!(released.is_ok(), "a detached task is left registered");
}

#[tokio::test(start_paused = true)]
async fn detached_work_has_a_default_background_budget() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let forever = service_fn(move |_: Request<RequestBody<Body>>| {
        let record = record.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let deadline = tower_serverless::deadline::current().unwrap();
            *record.lock().unwrap() = Some((deadline.source(), deadline.remaining()));
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });
    let offload = OffloadLayer::new(MemoryStore::new());
    let status = settled(&offload, forever, post_request(Some("respond-async"))).await;
    let (source, remaining) = seen.lock().unwrap().unwrap();
    assert_eq!(source, DeadlineSource::Background);
    assert_eq!(
        remaining,
        tower_serverless::offload::DEFAULT_BACKGROUND_BUDGET - Duration::from_secs(1)
    );
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "background deadline");
}

/// A body that sends one chunk, then never ends.
struct Endless {
    sent: bool,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent {
            return Poll::Pending;
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n")))))
    }
}

#[tokio::test(start_paused = true)]
async fn an_endless_result_body_ends_at_the_background_budget() {
    let streaming = service_fn(|_: Request<RequestBody<Body>>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(Endless { sent: false }))
    });
    let offload = OffloadLayer::new(MemoryStore::new())
        .background_deadline(Duration::from_secs(60))
        .unwrap();
    let status = settled(&offload, streaming, post_request(None)).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "background deadline");
}

/// A body that panics when polled.
struct Panicking;

impl http_body::Body for Panicking {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        panic!("the body panicked on purpose")
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_detached_body_is_stored_as_failed() {
    common::quiet_panics();
    let panicking = service_fn(|_: Request<RequestBody<Body>>| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, Infallible>(Response::new(Panicking))
    });
    let offload = OffloadLayer::new(MemoryStore::new());
    let status = settled(&offload, panicking, post_request(None)).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "the response body panicked");
    assert!(!status.to_string().contains("on purpose"));
}

async fn escalating() -> axum::response::Response {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Escalation::new("PaymentDeclined", "card 4242 was declined").into_response()
}

async fn unavailable() -> StatusCode {
    tokio::time::sleep(Duration::from_millis(300)).await;
    StatusCode::SERVICE_UNAVAILABLE
}

#[tokio::test]
async fn offloaded_escalations_are_failed_tasks_with_their_error_type() {
    let escalate = EscalateLayer::new().status_spec("503").unwrap();
    let offload = OffloadLayer::new(MemoryStore::new())
        .after(Duration::from_millis(50))
        .escalations(&escalate);
    let routes = Router::new()
        .route("/escalates", post(escalating))
        .route("/unavailable", post(unavailable))
        .layer(offload.clone())
        .merge(offload.status_router());
    let addr = common::serve(routes).await;
    let client = HttpClient::new();
    let post = |path: &str| {
        Request::post(format!("http://{addr}{path}"))
            .body(http_body_util::Full::default())
            .unwrap()
    };
    let marked = client.send(post("/escalates")).await;
    let by_status = client.send(post("/unavailable")).await;
    offload.detached().wait_idle().await;
    for (accepted, error_type) in [(marked, "PaymentDeclined"), (by_status, "HttpStatus503")] {
        assert_eq!(accepted.status, StatusCode::ACCEPTED);
        let url = format!("http://{addr}{}", accepted.header("location"));
        let status: Collected = client.get(&url).await;
        assert_eq!(status.status, StatusCode::OK, "not a 303 to a result");
        let body = status.json();
        assert_eq!(body["status"], "failed");
        assert_eq!(body["error_type"], error_type);
        assert!(
            !status.text().contains("4242"),
            "the message stays in the log"
        );
    }
}

/// The cap on detached tasks, in process on the paused clock: a request over the cap stays in
/// the foreground past its threshold, which only a clock under the test's control shows
/// without a wait in real time.
#[tokio::test(start_paused = true)]
async fn running_detached_tasks_are_capped() {
    let (gate, routes) = common::gated("/gated");
    let offload = OffloadLayer::new(MemoryStore::new())
        .after(Duration::from_millis(50))
        .max_detached(2)
        .unwrap();
    let app = routes.layer(offload.clone());
    let send = |prefer: Option<&'static str>| {
        let mut request = Request::post("/gated");
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        let request = request.body(Body::empty()).unwrap();
        let app = app.clone();
        async move { common::collect(app.oneshot(request).await.unwrap()).await }
    };
    assert_eq!(send(None).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        send(Some("respond-async")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(offload.detached().len(), 2);
    // Over the cap, even `respond-async` waits in the foreground, without
    // `Preference-Applied`: six thresholds later neither has been answered.
    let third = tokio::spawn(send(Some("respond-async")));
    let fourth = tokio::spawn(send(None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished() && !fourth.is_finished());
    assert_eq!(offload.detached().len(), 2, "no third detached task");
    gate.send(true).unwrap();
    for answer in [third.await.unwrap(), fourth.await.unwrap()] {
        assert_eq!(
            (answer.status, answer.text()),
            (StatusCode::CREATED, "released")
        );
        assert!(!answer.headers.contains_key("preference-applied"));
    }
    offload.detached().wait_idle().await;
}

#[tokio::test(start_paused = true)]
async fn memory_store_keeps_finished_results_until_their_ttl() {
    let store = MemoryStore::new().max_tasks(2).unwrap();
    let task = || NewTask {
        id: TaskId::random().unwrap(),
        owner: None,
        idempotency_key: None,
        fingerprint: None,
        foreground: Duration::ZERO,
        lease: Duration::from_secs(60),
        ttl: Duration::from_secs(10),
    };
    let (a, b) = (task(), task());
    store.create(a.clone()).await.unwrap();
    store.create(b.clone()).await.unwrap();
    store
        .finish(a.id, TaskOutcome::failed("done"))
        .await
        .unwrap();
    // Another client's new task does not push out a's result before its TTL.
    assert!(store.create(task()).await.is_err(), "the store refuses");
    assert!(store.get(a.id).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(store.create(task()).await.unwrap(), Created::New);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_a_bounded_time_then_stops_and_records_the_rest() {
    let offload = OffloadLayer::new(MemoryStore::new());
    let slow = service_fn(|request: Request<RequestBody<Body>>| async move {
        let secs: u64 = request.uri().path()[1..].parse().unwrap();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, Infallible>(Response::new(Body::from("done")))
    });
    let service = offload.layer(slow);
    let request = |secs: u64| {
        Request::post(format!("/{secs}"))
            .header("prefer", "respond-async")
            .body(Body::empty())
            .unwrap()
    };
    let quick = service.clone().oneshot(request(5)).await.unwrap();
    let long = service.oneshot(request(3600)).await.unwrap();
    let start = tokio::time::Instant::now();
    let stopped = offload.detached().shutdown(Duration::from_secs(30)).await;
    assert_eq!(stopped, 1);
    assert!(
        start.elapsed() < Duration::from_secs(31),
        "{:?}",
        start.elapsed()
    );
    assert!(offload.detached().is_empty());
    assert_eq!(
        common::status_of(&offload, &quick).await["status"],
        "succeeded"
    );
    let long = common::status_of(&offload, &long).await;
    assert_eq!(long["status"], "failed");
    assert_eq!(long["error"], "the server shut down");
}

#[test]
fn settings_that_cannot_hold_are_errors() {
    let layer = || OffloadLayer::new(MemoryStore::new());
    assert!(layer().background_deadline(Duration::ZERO).is_err());
    assert!(layer().max_detached(0).is_err());
    assert!(layer().lease(Duration::from_millis(2)).is_err());
    assert!(MemoryStore::new().max_tasks(0).is_err());
}

#[tokio::test(start_paused = true)]
async fn huge_durations_do_not_panic() {
    let offload = OffloadLayer::new(MemoryStore::new())
        .after(Duration::from_millis(10))
        .background_deadline(Duration::MAX)
        .unwrap()
        .lease(Duration::MAX)
        .unwrap()
        .ttl(Duration::MAX)
        .max_wait(Duration::MAX)
        .retry_after(Duration::MAX);
    let slow = service_fn(|_: Request<RequestBody<Body>>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(Body::from("done")))
    });
    let response = offload
        .layer(slow)
        .oneshot(post_request(Some("wait=99999999999")))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "waited in the foreground"
    );
    let status = settled(&offload, slow, post_request(None)).await;
    assert_eq!(status["status"], "succeeded");

    // A threshold of `Duration::MAX` never offloads, and does not overflow either.
    let never = OffloadLayer::new(MemoryStore::new()).after(Duration::MAX);
    let response = never.layer(slow).oneshot(post_request(None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A MemoryStore whose writes of outcomes fail until `until`, as a store does during a
/// failover.
struct FailingOver {
    inner: MemoryStore,
    until: tokio::time::Instant,
}

impl TaskStore for FailingOver {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        self.inner.create(task)
    }
    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.inner.renew(id, lease)
    }
    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        if tokio::time::Instant::now() < self.until {
            return Box::pin(async { Err(StoreError::Unavailable("failing over".into())) });
        }
        self.inner.finish(id, outcome)
    }
    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        self.inner.get(id)
    }
    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        self.inner.cancel(id)
    }
}

#[tokio::test(start_paused = true)]
async fn completions_outlast_a_store_failover() {
    let start = tokio::time::Instant::now();
    let store = FailingOver {
        inner: MemoryStore::new(),
        until: start + Duration::from_secs(25),
    };
    let offload = OffloadLayer::new(store);
    let quick = service_fn(|_: Request<RequestBody<Body>>| async {
        Ok::<_, Infallible>(Response::new(Body::from("done")))
    });
    let status = settled(&offload, quick, post_request(Some("respond-async"))).await;
    assert!(start.elapsed() >= Duration::from_secs(25));
    assert_eq!(status["status"], "succeeded");

    // Past the configured retry time, the outcome is given up (and logged).
    let store = FailingOver {
        inner: MemoryStore::new(),
        until: tokio::time::Instant::now() + Duration::from_secs(25),
    };
    let offload = OffloadLayer::new(store).store_retry(Duration::from_secs(10));
    let status = settled(&offload, quick, post_request(Some("respond-async"))).await;
    assert_eq!(status["status"], "pending");
}
