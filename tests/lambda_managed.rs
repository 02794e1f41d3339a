//! `lambda::run` on Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` > 1): the
//! runtime serves invocations concurrently, and no extension holds them.
#![cfg(all(feature = "lambda", feature = "axum"))]

mod common;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use common::runtime_api::{http_api_event, now_ms, run_function, Outcome, RuntimeApi};
use tower_serverless::offload::{MemoryStore, OffloadLayer};
use tower_serverless::DeadlineLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_concurrently_and_are_not_held() {
    let mut api = RuntimeApi::start().await;
    std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", "4");
    // Each of the 4 requests waits for all 4: served one at a time, none would answer.
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    run_function(move || async move {
        let offload = OffloadLayer::new(MemoryStore::new());
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
            .layer(offload.clone())
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
}
