//! `Runner::run_with_streaming_response` on Lambda Managed Instances
//! (`AWS_LAMBDA_MAX_CONCURRENCY` > 1): streamed responses, served concurrently, and no
//! extension holds them.
#![cfg(all(feature = "lambda", feature = "axum"))]

mod common;

use std::time::Duration;

use common::runtime_api::{function_url_event, location, managed, now_ms, response, task_of};
use tower_serverless::offload::{MemoryStore, OffloadLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_invocations_run_concurrently_and_are_not_held() {
    let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(100));
    let (mut api, gate) = managed(&offload, true).await;

    // Offloaded: the `202` streams while the work runs on, and the poll streams its `303`
    // once the work is done.
    let job = function_url_event("POST", "/gated", now_ms());
    let accepted = response(api.invoke("5", Duration::from_secs(30), job).await);
    assert_eq!(
        (&accepted["streamed"], &accepted["statusCode"]),
        (&true.into(), &202.into()),
        "{accepted}"
    );
    assert_eq!(
        location(&accepted),
        format!("/tasks/{}", task_of(&accepted))
    );
    gate.send(true).unwrap();
    offload.detached().wait_idle().await;
    let poll = function_url_event("GET", location(&accepted), now_ms());
    let done = response(api.invoke("6", Duration::from_secs(30), poll).await);
    assert_eq!(
        (&done["streamed"], &done["statusCode"]),
        (&true.into(), &303.into()),
        "{done}"
    );
}
