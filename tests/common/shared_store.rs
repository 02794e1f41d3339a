//! What a store shared by processes must do through real servers: tasks created on one
//! process are polled, replayed and cancelled on another, an outage of the store falls back
//! to the foreground and recovers without a restart, and a thousand offloads at once all
//! end. Run against each shared store (Redis, DynamoDB) by its own test binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::post;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower_serverless::offload::{OffloadLayer, TaskStore};

use super::{Collected, HttpClient};

/// A real store server that tests start, stop and restart.
#[allow(async_fn_in_trait)] // used through `impl SharedStore` only, never boxed
pub trait SharedStore {
    /// A new connection to the store, as a new process would open.
    async fn connect(&self) -> Arc<dyn TaskStore>;
    /// Stops the server; what it holds survives.
    fn stop(&mut self);
    /// Starts it again on the same port.
    async fn restart(&mut self);
}

async fn work(Path(ms): Path<u64>) -> (StatusCode, String) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (StatusCode::CREATED, format!("worked {ms}"))
}

/// One "process": its own connection to the store, its own OffloadLayer, its own server.
/// The lease is long enough that a store slowed by a loaded machine does not lose a live
/// worker.
async fn process(store: &impl SharedStore, routes: Router) -> (OffloadLayer, SocketAddr) {
    process_with_lease(store, routes, Duration::from_secs(10)).await
}

async fn process_with_lease(
    store: &impl SharedStore,
    routes: Router,
    lease: Duration,
) -> (OffloadLayer, SocketAddr) {
    let offload = OffloadLayer::with_store(store.connect().await)
        .after(Duration::from_millis(100))
        .lease(lease)
        .unwrap()
        // Longer than a store server takes to restart on a loaded machine.
        .store_retry(Duration::from_secs(120));
    let app = routes.layer(offload.clone()).merge(offload.status_router());
    (offload.clone(), super::serve(app).await)
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

/// A task created on one process is polled, replayed on another; one idempotency key
/// through both gives one task.
pub async fn a_task_created_on_one_process_is_polled_and_replayed_on_another(
    store: &impl SharedStore,
) {
    let (a_offload, a) = process(store, routes()).await;
    let (_, b) = process(store, routes()).await;
    let client = HttpClient::new();

    // Work long enough to be pending still when a loaded machine gets to the poll.
    let status_url = accepted(&send(&client, "POST", a, "/work/2000", &[]).await);
    let pending = send(&client, "GET", b, &status_url, &[]).await;
    assert_eq!(pending.json()["status"], "pending");

    a_offload.detached().wait_idle().await;
    let done = send(&client, "GET", b, &status_url, &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let replay = send(&client, "GET", b, done.header("location"), &[]).await;
    assert_eq!(
        (replay.status, replay.text()),
        (StatusCode::CREATED, "worked 2000")
    );

    // The same Idempotency-Key through the other process returns the same task.
    let key = [("idempotency-key", "shared-key")];
    let first = accepted(&send(&client, "POST", a, "/work/2000", &key).await);
    let second = accepted(&send(&client, "POST", b, "/work/2000", &key).await);
    assert_eq!(first, second);
    a_offload.detached().wait_idle().await;
}

/// A cancel on another process stops the work at its next renewal.
pub async fn a_cancel_on_another_process_stops_the_work_at_its_next_renewal(
    store: &impl SharedStore,
) {
    let (dropped, forever) = super::forever("/forever");
    // The worker learns of the cancel when it renews, every third of its lease. Not a
    // shorter lease: a renewal that waits on a store busy with the other tests (DynamoDB
    // Local under a thousand offloads, on a loaded machine) must not lapse it before the
    // cancel, which then finds the task failed (`worker lost`) and answers `409`.
    let (a_offload, a) = process_with_lease(store, forever, Duration::from_secs(6)).await;
    let (_, b) = process(store, routes()).await;
    let client = HttpClient::new();

    let status_url = accepted(&send(&client, "POST", a, "/forever", &[]).await);
    let cancel = send(&client, "DELETE", b, &status_url, &[]).await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT, "{}", cancel.text());
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

/// While the store is down, slow requests are answered in the foreground (never a 202
/// without a record) and status reads get 503; the completion that could not be written
/// lands once it is back, and offloading resumes without a restart. `store` must keep its
/// data across a restart.
pub async fn an_outage_falls_back_to_the_foreground_and_the_service_recovers(
    store: &mut impl SharedStore,
) {
    let mut log = capture_log();
    // A lease shorter than the outage would rightly read as a lost worker.
    let (gate, gated) = super::gated("/gated");
    let routes = routes().merge(gated);
    let (offload, addr) = process_with_lease(store, routes, Duration::from_secs(30)).await;
    let client = HttpClient::new();

    // Its work ends while the store is down (the gate opens once it stopped, however slow
    // the machine): the completion must wait for the store to come back.
    let during_outage = accepted(&send(&client, "POST", addr, "/gated", &[]).await);
    store.stop();
    gate.send(true).unwrap();

    let foreground = send(&client, "POST", addr, "/work/300", &[]).await;
    assert_eq!(
        (foreground.status, foreground.text()),
        (StatusCode::CREATED, "worked 300")
    );
    let status = send(&client, "GET", addr, &during_outage, &[]).await;
    assert_eq!(status.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(status.header("retry-after"), "1");
    let text = status.text().to_lowercase();
    assert!(
        ["refused", "redis", "dynamodb", "dispatch", "connect"]
            .iter()
            .all(|internal| !text.contains(internal)),
        "internal text leaked: {text}"
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
    store.restart().await;
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

/// A thousand offloads pending at once all reach a terminal state.
pub async fn a_thousand_concurrent_offloads_all_reach_a_terminal_state(store: &impl SharedStore) {
    // The work waits for the gate, which opens once every 202 is back: all 1000 tasks are
    // pending at once, however slow the machine.
    let (gate, gated) = super::gated("/gated");
    let (offload, addr) = process_with_lease(store, gated, Duration::from_secs(30)).await;
    super::concurrent_offloads(1000, &offload, addr, gate).await;
}
