//! `lambda::run` on Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1): the
//! runtime serves invocations concurrently, and no extension holds them.
#![cfg(all(feature = "lambda", feature = "axum"))]

mod common;

use std::time::Duration;

use common::runtime_api::{http_api_event, location, managed, now_ms, response, task_of};
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_concurrently_and_are_not_held() {
    let store = MemoryStore::new();
    let offload = OffloadLayer::new(store.clone()).after(Duration::from_millis(100));
    let (mut api, gate) = managed(&offload, false).await;

    // The environment does not freeze, and Lambda does not stop the code at an
    // invocation's deadline (it only answers that invocation with a timeout error): work
    // detached by an invocation runs past that invocation's deadline to its end.
    let short = Duration::from_secs(3);
    let deadline = tokio::time::Instant::now() + short;
    let deadline_ms = now_ms() + short.as_millis() as u64;
    api.submit("5", deadline_ms, http_api_event("POST", "/gated", now_ms()))
        .await;
    let accepted = response(api.outcome().await);
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let task = task_of(&accepted);
    // Past the invocation's deadline, which no signal announces: the clock is the Runtime
    // API's, in Unix milliseconds.
    tokio::time::sleep_until(deadline + Duration::from_millis(500)).await;
    let running = store.status(task).await.unwrap().unwrap();
    assert_eq!(
        (running.state, running.error.as_deref()),
        (TaskState::Pending, None),
        "still running past its invocation's deadline"
    );
    gate.send(true).unwrap();
    offload.detached().wait_idle().await;
    api.submit(
        "6",
        now_ms() + 60_000,
        http_api_event("GET", location(&accepted), now_ms()),
    )
    .await;
    let done = response(api.outcome().await);
    assert_eq!(done["statusCode"], 303, "{done}");
}
