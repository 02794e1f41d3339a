//! `lambda::run` on Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1): the
//! runtime serves invocations concurrently, and no extension holds them.
#![cfg(all(feature = "lambda", feature = "axum"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::runtime_api::{
    http_api_event, location, now_ms, response, run_function, task_of, Outcome, RuntimeApi,
};
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};
use tower_serverless::DeadlineLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_concurrently_and_are_not_held() {
    let mut api = RuntimeApi::start().await;
    std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", "4");
    // Each of the 4 requests waits for all 4: served one at a time, none would answer.
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let store = MemoryStore::new();
    let offload = OffloadLayer::new(store.clone()).after(Duration::from_millis(100));
    let (gate, gated) = common::gated("/gated");
    let runtime_offload = offload.clone();
    run_function(move || async move {
        let offload = runtime_offload;
        let app = Router::new()
            .route(
                "/together",
                get(move || {
                    let barrier = barrier.clone();
                    async move {
                        barrier.wait().await;
                        "together"
                    }
                }),
            )
            .merge(gated)
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(DeadlineLayer::inherit());
        tower_serverless::lambda::run(app, &offload).await
    });
    let deadline_ms = now_ms() + 60_000;
    for id in ["1", "2", "3", "4"] {
        api.submit(
            id,
            deadline_ms,
            http_api_event("GET", "/together", now_ms()),
        )
        .await;
    }
    let mut answered = Vec::new();
    for _ in 0..4 {
        match api.outcome().await {
            Outcome::Response { request_id, body } => {
                assert_eq!(body["body"], "together");
                answered.push(request_id);
            }
            other => panic!("{other:?}"),
        }
    }
    answered.sort();
    assert_eq!(answered, ["1", "2", "3", "4"]);
    // The extension would have registered during init, before the first invocation.
    assert!(
        !api.extension_registered(),
        "nothing holds an environment that never freezes"
    );

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
