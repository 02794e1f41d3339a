//! OffloadLayer and its status endpoint through real axum and hyper servers.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use common::{Collected, HttpClient};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{service_fn, Layer, ServiceExt};
use tower_serverless::offload::store::{
    BoxFuture, CancelResult, Created, NewTask, StoreError, TaskOutcome, TaskRecord,
};
use tower_serverless::offload::{MemoryStore, OffloadLayer, RequestBody, TaskId, TaskStore};

const AFTER: Duration = Duration::from_millis(100);

fn layer() -> OffloadLayer {
    OffloadLayer::new(MemoryStore::new()).after(AFTER)
}

async fn work(Path(ms): Path<u64>) -> Response<Body> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Response::builder()
        .status(StatusCode::CREATED)
        .header("x-job", ms.to_string())
        .body(Body::from(format!("worked {ms}")))
        .unwrap()
}

async fn big(Path((ms, bytes)): Path<(u64, usize)>) -> Vec<u8> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    vec![b'x'; bytes]
}

async fn panics(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    panic!("offloaded work panicked on purpose")
}

fn routes() -> Router {
    Router::new()
        .route("/work/{ms}", post(work).get(work))
        .route("/big/{ms}/{bytes}", post(big))
        .route("/panic/{ms}", post(panics))
}

async fn serve(offload: &OffloadLayer, routes: Router) -> SocketAddr {
    common::serve(routes.layer(offload.clone()).merge(offload.status_router())).await
}

struct Client {
    http: HttpClient,
    addr: SocketAddr,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        Self {
            http: HttpClient::new(),
            addr,
        }
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Collected {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.http.send(request.body(Full::default()).unwrap()).await
    }

    async fn post(&self, path: &str) -> Collected {
        self.send("POST", path, &[]).await
    }

    async fn get(&self, path: &str) -> Collected {
        self.send("GET", path, &[]).await
    }
}

fn location(response: &Collected) -> String {
    response.header("location").to_owned()
}

fn assert_accepted(response: &Collected) -> String {
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    let status_url = location(response);
    let body = response.json();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["status_url"], status_url.as_str());
    assert_eq!(
        status_url,
        format!("/tasks/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(response.header("retry-after"), "1");
    assert_eq!(response.header("content-type"), "application/json");
    status_url
}

#[tokio::test]
async fn fast_passes_through_slow_is_polled_then_replayed() {
    let offload = layer();
    let client = Client::new(serve(&offload, routes()).await);

    let fast = client.post("/work/10").await;
    assert_eq!(fast.status, StatusCode::CREATED);
    assert_eq!(fast.header("x-job"), "10");
    assert_eq!(fast.text(), "worked 10");

    let accepted = client.post("/work/400").await;
    let status_url = assert_accepted(&accepted);

    let pending = client.get(&status_url).await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_eq!(pending.json()["status"], "pending");
    assert_eq!(pending.header("retry-after"), "1");
    assert!(pending.json()["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    offload.detached().wait_idle().await;
    let done = client.get(&status_url).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.json()["status"], "succeeded");
    assert!(done.json()["finished_at"].is_string());
    assert_eq!(location(&done), format!("{status_url}/result"));

    let replay = client.get(&location(&done)).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.header("x-job"), "400");
    assert_eq!(replay.text(), "worked 400");
}

#[tokio::test]
async fn not_offloadable_methods_wait_in_the_foreground() {
    let offload = layer();
    let client = Client::new(serve(&offload, routes()).await);
    let response = client.get("/work/300").await;
    assert_eq!(
        (response.status, response.text()),
        (StatusCode::CREATED, "worked 300")
    );
    assert!(offload.detached().is_empty());
}

#[tokio::test]
async fn methods_and_filter_choose_what_may_be_offloaded() {
    let offload = layer()
        .methods([http::Method::GET])
        .filter(|parts| !parts.headers.contains_key("x-interactive"));
    let client = Client::new(serve(&offload, routes()).await);
    let interactive = [("x-interactive", "1")];

    assert_accepted(&client.get("/work/400").await);
    let posted = client.post("/work/300").await;
    assert_eq!(
        (posted.status, posted.text()),
        (StatusCode::CREATED, "worked 300")
    );
    let filtered = client.send("GET", "/work/300", &interactive).await;
    assert_eq!(
        (filtered.status, filtered.text()),
        (StatusCode::CREATED, "worked 300")
    );
    // Not offloadable: `Prefer: respond-async` does not apply either.
    let asked = client
        .send("POST", "/work/10", &[("prefer", "respond-async")])
        .await;
    assert_eq!(asked.status, StatusCode::CREATED);
    offload.detached().wait_idle().await;
}

#[tokio::test]
async fn prefer_respond_async_and_wait() {
    let offload = layer().max_wait(Duration::from_secs(5));
    let client = Client::new(serve(&offload, routes()).await);

    let at_once = client
        .send("POST", "/work/1", &[("prefer", "respond-async")])
        .await;
    assert_accepted(&at_once);
    assert_eq!(at_once.header("preference-applied"), "respond-async");

    // `wait=1` lets a 400 ms job finish in the foreground although `after` is 100 ms.
    let waited = client
        .send("POST", "/work/400", &[("prefer", "wait=1")])
        .await;
    assert_eq!(waited.status, StatusCode::CREATED);
    assert_eq!(waited.header("preference-applied"), "wait=1");

    // `wait=0` offloads at once, and says so.
    let zero = client
        .send("POST", "/work/400", &[("prefer", "wait=0")])
        .await;
    assert_accepted(&zero);
    assert_eq!(zero.header("preference-applied"), "wait=0");

    // RFC 7240: with `wait`, `respond-async` means "asynchronously if it takes longer".
    let both = client
        .send("POST", "/work/400", &[("prefer", "respond-async, wait=10")])
        .await;
    assert_eq!(both.status, StatusCode::CREATED);
    assert_eq!(both.header("preference-applied"), "respond-async, wait=5");

    let ignored = client
        .send("POST", "/work/10", &[("prefer", "wait=soon, nonsense")])
        .await;
    assert_eq!(ignored.status, StatusCode::CREATED);
    assert!(!ignored.headers.contains_key("preference-applied"));
    offload.detached().wait_idle().await;
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_is_capped_by_max_wait_and_the_deadline() {
    let slow = service_fn(|_: Request<RequestBody<Body>>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let offload = OffloadLayer::new(MemoryStore::new()).max_wait(Duration::from_secs(3));
    let request = |wait: &str| {
        Request::post("/")
            .header("prefer", format!("wait={wait}"))
            .body(Body::empty())
            .unwrap()
    };
    let start = tokio::time::Instant::now();
    let response = offload.layer(slow).oneshot(request("60")).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(response.headers()["preference-applied"], "wait=3");

    // More seconds than a number holds is still a wait, the longest there is (RFC 9111 on
    // delta-seconds), not a header to ignore.
    let start = tokio::time::Instant::now();
    let response = offload
        .layer(slow)
        .oneshot(request("99999999999999999999999"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(response.headers()["preference-applied"], "wait=3");

    // Under a 2 s deadline, the 202 leaves the margin (500 ms) before it.
    let deadline = tower_serverless::DeadlineLayer::new(Duration::from_secs(2));
    let start = tokio::time::Instant::now();
    let service = deadline.layer(OffloadLayer::new(MemoryStore::new()).layer(slow));
    let response = service.oneshot(request("60")).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
}

#[tokio::test]
async fn failures_are_stored_with_a_reason_for_clients() {
    common::quiet_panics();
    let offload = layer().max_result_bytes(1000);
    let client = Client::new(serve(&offload, routes()).await);

    let panicked = assert_accepted(&client.post("/panic/300").await);
    let oversize = assert_accepted(&client.post("/big/300/1001").await);
    let fits = assert_accepted(&client.post("/big/300/1000").await);
    offload.detached().wait_idle().await;

    let status = client.get(&panicked).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json()["status"], "failed");
    assert_eq!(status.json()["error"], "the handler panicked");
    assert!(
        !status.text().contains("on purpose"),
        "internal text leaked"
    );

    let status = client.get(&oversize).await.json();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "the result exceeded 1000 bytes");
    let result = client.get(&format!("{oversize}/result")).await;
    assert_eq!(result.status, StatusCode::NOT_FOUND);
    let task = &result.problem("the task did not succeed; it has no result")["task"];
    assert_eq!(task["status"], "failed");
    assert!(
        !result.headers.contains_key("retry-after"),
        "a failed task's result never comes"
    );
    assert_eq!(task["error"], "the result exceeded 1000 bytes");

    let fits = client.get(&format!("{fits}/result")).await;
    assert_eq!((fits.status, fits.body.len()), (StatusCode::OK, 1000));
}

#[derive(Debug, thiserror::Error)]
#[error("secret database password rejected")]
struct WorkFailed;

#[tokio::test]
async fn inner_errors_are_stored_as_failed_through_hyper() {
    let offload = layer();
    let failing = service_fn(|_: Request<RequestBody<hyper::body::Incoming>>| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err::<Response<Full<Bytes>>, _>(WorkFailed)
    });
    let service = offload.layer(failing);
    let addr = common::serve_hyper(service).await;
    let accepted = Client::new(addr).post("/anything").await;
    let status_url = assert_accepted(&accepted);
    offload.detached().wait_idle().await;

    let status_client = Client::new(common::serve_hyper(offload.status_service()).await);
    let status = status_client.get(&status_url).await.json();
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "the handler failed");
}

#[tokio::test]
async fn cancel_aborts_the_work() {
    let (dropped, routes) = common::forever("/forever");
    let offload = layer();
    let client = Client::new(serve(&offload, routes).await);
    let status_url = assert_accepted(&client.post("/forever").await);
    assert_eq!(offload.detached().len(), 1);

    let cancelled = client.send("DELETE", &status_url, &[]).await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    assert!(dropped.await.is_err(), "the work's future was dropped");
    offload.detached().wait_idle().await;

    let status = client.get(&status_url).await.json();
    assert_eq!(status["status"], "cancelled");
    let again = client.send("DELETE", &status_url, &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let task = &again.problem("the task already finished")["task"];
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["id"], status_url.trim_start_matches("/tasks/"));
}

#[tokio::test]
async fn idempotency_key_runs_the_work_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let routes = Router::new().route(
        "/charge",
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "charged"
            }
        }),
    );
    let offload = layer();
    let client = Client::new(serve(&offload, routes).await);
    let key = [("idempotency-key", "order-42")];

    let first = assert_accepted(&client.send("POST", "/charge", &key).await);
    let second = assert_accepted(&client.send("POST", "/charge", &key).await);
    assert_eq!(first, second);
    offload.detached().wait_idle().await;
    // Finished: a retry replays the stored response.
    let third = client.send("POST", "/charge", &key).await;
    assert_eq!((third.status, third.text()), (StatusCode::OK, "charged"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let replay = client.get(&format!("{first}/result")).await;
    assert_eq!(replay.text(), "charged");

    let other = assert_accepted(
        &client
            .send("POST", "/charge", &[("idempotency-key", "order-43")])
            .await,
    );
    assert_ne!(first, other);
    offload.detached().wait_idle().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idempotency_key_stores_fast_results_for_retries() {
    let offload = layer();
    let client = Client::new(serve(&offload, routes()).await);
    let key = [("idempotency-key", "\"fast-1\"")];
    let fast = client.send("POST", "/work/5", &key).await;
    assert_eq!(
        (fast.status, fast.text()),
        (StatusCode::CREATED, "worked 5")
    );
    // The result is stored once its body has streamed to the client.
    offload.detached().wait_idle().await;
    let replay = client.send("POST", "/work/5", &key).await;
    assert_eq!(
        (replay.status, replay.text()),
        (StatusCode::CREATED, "worked 5")
    );
    assert_eq!(replay.header("x-job"), "5");
}

#[tokio::test]
async fn malformed_idempotency_key_is_a_bad_request() {
    let offload = layer();
    let client = Client::new(serve(&offload, routes()).await);
    let long = "k".repeat(256);
    // A quote opens a structured-field string (RFC 8941), which must be closed and may
    // escape only `"` and `\\`.
    let broken = [
        "\"",
        "\"open",
        "close\"",
        "\"in\"side\"",
        "\"bad\\escape\"",
        "\"\"",
    ];
    for key in ["", "with space", long.as_str()].into_iter().chain(broken) {
        let response = client
            .send("POST", "/work/1", &[("idempotency-key", key)])
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{key:?}");
        response.problem("the Idempotency-Key header must hold 1 to 255 visible ASCII characters");
    }
}

#[tokio::test]
async fn owner_binding_hides_tasks_from_others() {
    let offload = layer().owner(|parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let client = Client::new(serve(&offload, routes()).await);
    let alice = [("x-user", "alice")];
    let bob = [("x-user", "bob")];
    let status_url = assert_accepted(&client.send("POST", "/work/300", &alice).await);

    for (method, path) in [
        ("GET", status_url.clone()),
        ("GET", format!("{status_url}/result")),
        ("DELETE", status_url.clone()),
    ] {
        assert_eq!(
            client.send(method, &path, &bob).await.status,
            StatusCode::NOT_FOUND,
            "{method} {path}"
        );
        assert_eq!(
            client.send(method, &path, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{method} {path}"
        );
    }
    assert_eq!(
        client.send("GET", &status_url, &alice).await.status,
        StatusCode::OK
    );

    // Idempotency keys are scoped by owner too.
    let key_a = [("x-user", "alice"), ("idempotency-key", "k")];
    let key_b = [("x-user", "bob"), ("idempotency-key", "k")];
    let a = assert_accepted(&client.send("POST", "/work/300", &key_a).await);
    let b = assert_accepted(&client.send("POST", "/work/300", &key_b).await);
    assert_ne!(a, b);
    offload.detached().wait_idle().await;
}

#[tokio::test]
async fn status_endpoint_rejects_bad_ids_and_methods() {
    let store = CountingStore::default();
    let offload = OffloadLayer::new(store.clone()).after(AFTER);
    let client = Client::new(serve(&offload, routes()).await);
    for path in [
        "/tasks/not-a-task-id",
        "/tasks/ABCDEF0123456789ABCDEF0123456789",
        "/tasks/0123",
        "/tasks/%2e%2e",
    ] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        // Problem details as the layers' other errors; a malformed id is named nowhere.
        let problem = response.problem("no such task");
        assert_eq!(problem.get("id"), None, "{path}");
    }
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        0,
        "malformed ids never reach the store"
    );

    let unknown = format!("/tasks/{}", TaskId::random().unwrap());
    let id = unknown.trim_start_matches("/tasks/");
    for response in [
        client.get(&unknown).await,
        client.get(&format!("{unknown}/result")).await,
        client.send("DELETE", &unknown, &[]).await,
    ] {
        assert_eq!(response.status, StatusCode::NOT_FOUND);
        assert_eq!(response.problem("no such task")["id"], id);
    }
    let put = client.send("PUT", &unknown, &[]).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(put.header("allow"), "GET, HEAD, DELETE");
    put.problem("PUT is not allowed here; see Allow");
    let post = client.send("POST", &format!("{unknown}/result"), &[]).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), "GET, HEAD");
    post.problem("POST is not allowed here; see Allow");

    let status_url = assert_accepted(&client.post("/work/400").await);
    let early = client.get(&format!("{status_url}/result")).await;
    assert_eq!(early.status, StatusCode::NOT_FOUND);
    // Not there yet: when to come back, as a poll of the status URL says.
    assert_eq!(early.header("retry-after"), "1", "{early:?}");
    // The task's status document, as a poll reads it, beside the problem's members.
    let task = &early.problem("the task has not finished yet")["task"];
    assert_eq!(task["status"], "pending");
    assert_eq!(
        task["id"],
        status_url.trim_start_matches("/tasks/"),
        "{early:?}"
    );
    offload.detached().wait_idle().await;
}

/// A poll's answer changes while the task runs, so no cache in front may keep it (CloudFront
/// keeps a `GET`'s `200` for a day when the origin says nothing). The result is a `POST`'s
/// answer made readable by `GET`: a shared cache must not hand it to another client, unless
/// the handler said it may.
#[tokio::test]
async fn caches_keep_no_status_answer_and_share_no_result() {
    async fn public(Path(ms): Path<u64>) -> ([(&'static str, &'static str); 1], &'static str) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ([("cache-control", "public, max-age=60")], "for everyone")
    }
    let offload = layer();
    let routes = routes().route("/public/{ms}", post(public));
    let client = Client::new(serve(&offload, routes).await);
    let status_url = assert_accepted(&client.post("/work/300").await);
    let public_url = assert_accepted(&client.post("/public/300").await);
    let unknown = format!("/tasks/{}", TaskId::random().unwrap());
    let answers = [
        ("pending", client.get(&status_url).await),
        (
            "early result",
            client.get(&format!("{status_url}/result")).await,
        ),
        ("unknown", client.get(&unknown).await),
        ("method", client.send("PUT", &status_url, &[]).await),
    ];
    for (what, answer) in answers {
        assert_eq!(answer.header("cache-control"), "no-store", "{what}");
    }
    offload.detached().wait_idle().await;
    let done = client.get(&status_url).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.header("cache-control"), "no-store");
    let result = client.get(&location(&done)).await;
    assert_eq!(
        (result.status, result.text()),
        (StatusCode::CREATED, "worked 300")
    );
    assert_eq!(result.header("cache-control"), "private");
    let public = client.get(&format!("{public_url}/result")).await;
    assert_eq!(public.text(), "for everyone");
    assert_eq!(public.header("cache-control"), "public, max-age=60");
}

#[tokio::test]
async fn a_store_that_fails_gives_no_202_but_a_foreground_answer() {
    let offload = OffloadLayer::new(FailingStore).after(AFTER);
    let client = Client::new(serve(&offload, routes()).await);
    let response = client.post("/work/300").await;
    assert_eq!(
        (response.status, response.text()),
        (StatusCode::CREATED, "worked 300")
    );
    // A keyed request is not run unprotected: 503, retry later with the same key.
    let keyed = client
        .send("POST", "/work/300", &[("idempotency-key", "k")])
        .await;
    assert_eq!(keyed.status, StatusCode::SERVICE_UNAVAILABLE);
    keyed.problem(
        "the request cannot be kept for its Idempotency-Key now; retry later with the same key",
    );
    assert_eq!(keyed.header("retry-after"), "1");

    let status = client
        .get(&format!("/tasks/{}", TaskId::random().unwrap()))
        .await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status.header("retry-after"), "1");
    assert_eq!(status.header("cache-control"), "no-store");
    status.problem("the task store is unavailable; try again");
    assert!(!status.text().contains("injected"), "internal text leaked");
}

#[tokio::test]
async fn a_full_store_answers_in_the_foreground() {
    let offload = OffloadLayer::new(MemoryStore::new().max_tasks(2).unwrap()).after(AFTER);
    let client = Client::new(serve(&offload, routes()).await);
    assert_accepted(&client.post("/work/500").await);
    assert_accepted(&client.post("/work/500").await);
    let third = client.post("/work/300").await;
    assert_eq!(
        (third.status, third.text()),
        (StatusCode::CREATED, "worked 300")
    );
    offload.detached().wait_idle().await;
    // Finished results are kept for their TTL (see memory_store_bounds_and_ttl): no room.
    let kept = client.post("/work/300").await;
    assert_eq!(kept.status, StatusCode::CREATED, "still full");
}

#[tokio::test(start_paused = true)]
async fn background_deadline_fails_the_task_and_replaces_the_foreground_one() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let slow = service_fn(move |_: Request<RequestBody<Body>>| {
        let record = record.clone();
        async move {
            for _ in 0..2 {
                let deadline = tower_serverless::deadline::current().unwrap();
                record
                    .lock()
                    .unwrap()
                    .push((deadline.source(), deadline.remaining()));
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });
    let offload = OffloadLayer::new(MemoryStore::new())
        .after(Duration::from_secs(1))
        .background_deadline(Duration::from_secs(8))
        .unwrap();
    let service =
        tower_serverless::DeadlineLayer::new(Duration::from_secs(20)).layer(offload.layer(slow));
    let response = service
        .oneshot(Request::post("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    offload.detached().wait_idle().await;

    use tower_serverless::deadline::DeadlineSource;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], (DeadlineSource::Budget, Duration::from_secs(20)));
    assert_eq!(
        seen[1],
        (DeadlineSource::Background, Duration::from_secs(4))
    );

    let status = common::status_of(&offload, &response).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "background deadline");
}

#[tokio::test(start_paused = true)]
async fn memory_store_bounds_and_ttl() {
    let store = MemoryStore::new().max_tasks(2).unwrap();
    let task = |ttl| NewTask {
        id: TaskId::random().unwrap(),
        owner: None,
        idempotency_key: None,
        fingerprint: None,
        foreground: Duration::ZERO,
        lease: Duration::from_secs(60),
        ttl,
    };
    let a = task(Duration::from_secs(10));
    let b = task(Duration::from_secs(10));
    assert_eq!(store.create(a.clone()).await.unwrap(), Created::New);
    assert_eq!(store.create(b.clone()).await.unwrap(), Created::New);
    assert!(matches!(
        store.create(task(Duration::from_secs(10))).await,
        Err(StoreError::Full)
    ));

    store
        .finish(a.id, TaskOutcome::failed("done"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(store.get(a.id).await.unwrap().is_some(), "kept for its TTL");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(
        store.get(a.id).await.unwrap().is_none(),
        "gone after its TTL"
    );
    assert_eq!(
        store.create(task(Duration::from_secs(10))).await.unwrap(),
        Created::New
    );
    assert_eq!(store.cancel(a.id).await.unwrap(), CancelResult::NotFound);

    // A result larger than the store's bytes fails the task instead of evicting everything.
    let small = MemoryStore::new().max_bytes(100);
    let fits = task(Duration::from_secs(10));
    let too_big = task(Duration::from_secs(10));
    small.create(fits.clone()).await.unwrap();
    small.create(too_big.clone()).await.unwrap();
    let body = |n| tower_serverless::offload::store::StoredResponse {
        status: StatusCode::OK,
        headers: http::HeaderMap::new(),
        body: Bytes::from(vec![b'x'; n]),
    };
    small
        .finish(fits.id, TaskOutcome::Succeeded(body(60)))
        .await
        .unwrap();
    small
        .finish(too_big.id, TaskOutcome::Succeeded(body(101)))
        .await
        .unwrap();
    let record = small.get(too_big.id).await.unwrap().unwrap();
    assert_eq!(
        record.error.as_deref(),
        Some("the result did not fit in the task store")
    );
    assert!(small.get(fits.id).await.unwrap().unwrap().result.is_some());
    // Room is made only by what expired: `fits` keeps its result for its TTL.
    let next = task(Duration::from_secs(10));
    small.create(next.clone()).await.unwrap();
    small
        .finish(next.id, TaskOutcome::Succeeded(body(60)))
        .await
        .unwrap();
    assert_eq!(
        small.get(next.id).await.unwrap().unwrap().error.as_deref(),
        Some("the result did not fit in the task store")
    );
    assert!(small.get(fits.id).await.unwrap().unwrap().result.is_some());
    tokio::time::advance(Duration::from_secs(11)).await;
    let later = task(Duration::from_secs(10));
    small.create(later.clone()).await.unwrap();
    small
        .finish(later.id, TaskOutcome::Succeeded(body(60)))
        .await
        .unwrap();
    assert!(small.get(fits.id).await.unwrap().is_none(), "expired");
    assert!(small.get(later.id).await.unwrap().unwrap().result.is_some());
}

#[tokio::test]
async fn a_thousand_concurrent_slow_requests_all_finish() {
    // The work waits for the gate, which opens once every 202 is back: all 1000 tasks are
    // pending at once, however slow the machine.
    let (gate, gated) = common::gated("/gated");
    let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(50));
    let addr = serve(&offload, gated).await;
    common::concurrent_offloads(1000, &offload, addr, gate).await;
}

#[tokio::test]
async fn demo_offloads_jobs_through_a_real_server() {
    let settings = app::Settings {
        deadline: None,
        offload_after: Duration::from_millis(500),
        ..Default::default()
    };
    let offload = settings.offload_layer().await.unwrap();
    let client = Client::new(common::serve(app::serve_app(&settings, &offload)).await);

    let start = std::time::Instant::now();
    let accepted = client.post("/jobs/3000").await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let status_url = assert_accepted(&accepted);
    offload.detached().wait_idle().await;

    let done = client.get(&status_url).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let result = client.get(&location(&done)).await;
    assert_eq!(
        result.json(),
        serde_json::json!({"job": "done", "slept_ms": 3000})
    );
    assert_eq!(
        client.get("/tasks/not-a-task-id").await.status,
        StatusCode::NOT_FOUND
    );
}

/// A store whose every call fails, as an unreachable store does.
#[derive(Clone, Copy)]
struct FailingStore;

fn injected<T: Send + 'static>() -> BoxFuture<'static, Result<T, StoreError>> {
    Box::pin(async { Err(StoreError::Unavailable("injected failure".into())) })
}

impl TaskStore for FailingStore {
    fn create(&self, _: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        injected()
    }
    fn renew(&self, _: TaskId, _: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        injected()
    }
    fn finish(&self, _: TaskId, _: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        injected()
    }
    fn get(&self, _: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        injected()
    }
    fn cancel(&self, _: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        injected()
    }
}

/// A MemoryStore that counts the calls it gets.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryStore,
    calls: Arc<AtomicUsize>,
}

impl CountingStore {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl TaskStore for CountingStore {
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>> {
        self.count();
        self.inner.create(task)
    }
    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.count();
        self.inner.renew(id, lease)
    }
    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.count();
        self.inner.finish(id, outcome)
    }
    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        self.count();
        self.inner.get(id)
    }
    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>> {
        self.count();
        self.inner.cancel(id)
    }
}

/// One timer for the stack: under a `DeadlineLayer`, the offload threshold's timer stands in
/// for the deadline's until the threshold. When the store then refuses the task and the work
/// goes on in the foreground, the deadline still answers `504` at its instant, not when the
/// work ends.
#[tokio::test(start_paused = true)]
async fn a_deadline_around_an_offload_that_falls_back_to_the_foreground_still_answers_504() {
    let work = service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
    });
    let stack = tower::ServiceBuilder::new()
        .layer(tower_serverless::DeadlineLayer::new(Duration::from_secs(2)))
        .layer(OffloadLayer::new(FailingStore).after(AFTER))
        .service(work);
    let started = tokio::time::Instant::now();
    let request = Request::post("/work")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = stack.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(2), "at the deadline");
}

/// Work that goes on after its `202` logs in the span of the request that started it, as it
/// did before the `202`: a host's span per request (tower-http's `TraceLayer`,
/// `lambda_runtime`'s with the invocation's `requestId`) stays on the work's logs, keyed or
/// not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn detached_work_logs_in_the_span_of_its_request() {
    use tracing::Instrument;

    let captured = common::Captured::default();
    let _guard = captured.install_on_thread();

    let offload = layer();
    let service = offload.layer(service_fn(
        |request: Request<RequestBody<Full<Bytes>>>| async move {
            let job = request.uri().path().to_owned();
            tracing::info!(job, "started");
            tokio::time::sleep(AFTER * 3).await;
            tracing::info!(job, "finished after its 202");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
        },
    ));
    for (id, key) in [(7, None), (8, Some("order-8"))] {
        let mut request = Request::post(format!("/jobs/{id}"));
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = service
            .clone()
            .oneshot(request.body(Full::default()).unwrap())
            .instrument(tracing::info_span!("request", id))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    offload.detached().wait_idle().await;

    let log = captured.text();
    for id in [7, 8] {
        let job = format!("job=\"/jobs/{id}\"");
        let lines: Vec<_> = log.lines().filter(|line| line.contains(&job)).collect();
        assert_eq!(lines.len(), 2, "{log}");
        for line in lines {
            assert!(line.contains(&format!("request{{id={id}}}")), "{log}");
        }
    }
}
