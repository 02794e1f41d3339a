//! RedisStore through real servers and a real redis-server: tasks shared between
//! processes, an outage and the recovery after it, and load.
#![cfg(all(feature = "redis", feature = "axum"))]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::post;
use axum::Router;
use common::redis_server::RedisServer;
use common::{Collected, HttpClient};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower_serverless::offload::{OffloadLayer, RedisStore};

async fn work(Path(ms): Path<u64>) -> (StatusCode, String) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (StatusCode::CREATED, format!("worked {ms}"))
}

/// One "process": its own Redis connection, its own OffloadLayer, its own server. The short
/// lease makes a cancel on another process reach the work within 100 ms.
async fn process(redis: &RedisServer, routes: Router) -> (OffloadLayer, SocketAddr) {
    process_with_lease(redis, routes, Duration::from_millis(300)).await
}

async fn process_with_lease(
    redis: &RedisServer,
    routes: Router,
    lease: Duration,
) -> (OffloadLayer, SocketAddr) {
    let store = RedisStore::connect(&redis.url())
        .await
        .unwrap()
        .key_prefix("test:");
    let offload = OffloadLayer::new(store)
        .after(Duration::from_millis(100))
        .lease(lease)
        .unwrap();
    let app = routes.layer(offload.clone()).merge(offload.status_router());
    (offload.clone(), common::serve(app).await)
}

fn routes() -> Router {
    Router::new().route("/work/{ms}", post(work))
}

async fn send(
    client: &HttpClient,
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Collected {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client.send(request.body(Full::default()).unwrap()).await
}

fn accepted(response: &Collected) -> String {
    assert_eq!(response.status, StatusCode::ACCEPTED, "{}", response.text());
    response.header("location").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_on_one_process_is_polled_and_replayed_on_another() {
    let redis = RedisServer::start().await;
    let (a_offload, a) = process(&redis, routes()).await;
    let (_, b) = process(&redis, routes()).await;
    let client = HttpClient::new();

    let status_url = accepted(&send(&client, "POST", a, "/work/500", &[]).await);
    let pending = send(&client, "GET", b, &status_url, &[]).await;
    assert_eq!(pending.json()["status"], "pending");

    a_offload.detached().wait_idle().await;
    let done = send(&client, "GET", b, &status_url, &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let replay = send(&client, "GET", b, done.header("location"), &[]).await;
    assert_eq!(
        (replay.status, replay.text()),
        (StatusCode::CREATED, "worked 500")
    );

    // The same Idempotency-Key through the other process returns the same task.
    let key = [("idempotency-key", "shared-key")];
    let first = accepted(&send(&client, "POST", a, "/work/400", &key).await);
    let second = accepted(&send(&client, "POST", b, "/work/400", &key).await);
    assert_eq!(first, second);
    a_offload.detached().wait_idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_process_stops_the_work_at_its_next_renewal() {
    let redis = RedisServer::start().await;
    let (dropped, forever) = common::forever("/forever");
    let (a_offload, a) = process(&redis, forever).await;
    let (_, b) = process(&redis, routes()).await;
    let client = HttpClient::new();

    let status_url = accepted(&send(&client, "POST", a, "/forever", &[]).await);
    assert_eq!(
        send(&client, "DELETE", b, &status_url, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(
        dropped.await.is_err(),
        "the work on the other process was dropped"
    );
    a_offload.detached().wait_idle().await;
    assert_eq!(
        send(&client, "GET", a, &status_url, &[]).await.json()["status"],
        "cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_falls_back_to_the_foreground_and_the_service_recovers() {
    let mut log = capture_log();
    let mut redis = RedisServer::start_persistent().await;
    // A lease shorter than the outage would rightly read as a lost worker.
    let (gate, gated) = common::gated("/gated");
    let routes = routes().merge(gated);
    let (offload, addr) = process_with_lease(&redis, routes, Duration::from_secs(30)).await;
    let client = HttpClient::new();

    // Its work ends while Redis is down (the gate opens once Redis stopped, however slow
    // the machine): the completion must wait for Redis to come back.
    let during_outage = accepted(&send(&client, "POST", addr, "/gated", &[]).await);
    redis.stop();
    gate.send(true).unwrap();

    let foreground = send(&client, "POST", addr, "/work/300", &[]).await;
    assert_eq!(
        (foreground.status, foreground.text()),
        (StatusCode::CREATED, "worked 300")
    );
    let status = send(&client, "GET", addr, &during_outage, &[]).await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status.header("retry-after"), "1");
    assert!(
        !status.text().to_lowercase().contains("refused"),
        "internal text leaked: {}",
        status.text()
    );

    // The work ended during the outage and its completion could not be written.
    let task_id = during_outage.rsplit('/').next().unwrap().to_owned();
    let retrying = async {
        loop {
            let line = log.recv().await.expect("the log goes on");
            if line.contains("could not store a task's outcome; retrying")
                && line.contains(&task_id)
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), retrying)
        .await
        .expect("the failed completion was logged");
    redis.restart().await;
    // The completion is retried with backoff (for 30 s by default) and lands now.
    offload.detached().wait_idle().await;
    let done = send(&client, "GET", addr, &during_outage, &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());

    // New slow requests are offloaded again, without a restart of the service.
    let after = accepted(&send(&client, "POST", addr, "/work/200", &[]).await);
    offload.detached().wait_idle().await;
    assert_eq!(
        send(&client, "GET", addr, &after, &[]).await.status,
        StatusCode::SEE_OTHER
    );
}

/// Every line the crate logs, as it is written.
fn capture_log() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    struct Line(tokio::sync::mpsc::UnboundedSender<String>, Vec<u8>);
    impl std::io::Write for Line {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Line {
        fn drop(&mut self) {
            let _ = self.0.send(String::from_utf8_lossy(&self.1).into_owned());
        }
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Line(sender.clone(), Vec::new()))
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    receiver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_offloads_all_reach_a_terminal_state() {
    let redis = RedisServer::start().await;
    // The work waits for the gate, which opens once every 202 is back: all 1000 tasks are
    // pending at once, however slow the machine.
    let (gate, gated) = common::gated("/gated");
    let (offload, addr) = process_with_lease(&redis, gated, Duration::from_secs(30)).await;
    common::concurrent_offloads(1000, &offload, addr, gate).await;
}
