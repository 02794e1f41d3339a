//! `lambda::Runner` on Lambda Managed Instances when Lambda shuts the environment down: it
//! sends the runtime `SIGTERM` (only to a runtime beside a registered extension), and the
//! work still running is stored as failed at once, not when its lease lapses a minute later.
//! A binary of its own: the signal is sent to the test's own process.
//!
//! The extension's call for its next event is answered `500` at once, as `cargo lambda
//! watch` answers an extension subscribed to no event (Lambda holds it until shutdown,
//! as the other tests' Runtime API does): the runner serves on.
#![cfg(all(feature = "lambda", feature = "axum", unix))]

mod common;

use std::time::Duration;

use common::runtime_api::{http_api_event, managed_on, now_ms, response, task_of, RuntimeApi};
use tower_serverless::offload::{reason, MemoryStore, OffloadLayer, TaskState, TaskStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_the_running_work_at_once_and_ends_the_run() {
    let store = MemoryStore::new();
    let offload = OffloadLayer::new(store.clone()).after(Duration::from_millis(100));
    // The gate is never opened: the work would run until its background deadline.
    let api = RuntimeApi::start().await;
    api.refuse_idle_next();
    let (mut api, _gate) = managed_on(api, &offload, false).await;
    assert!(
        api.extension_registered(),
        "without an extension, Lambda sends no SIGTERM"
    );

    api.submit(
        "5",
        now_ms() + 60_000,
        http_api_event("POST", "/gated", now_ms()),
    )
    .await;
    let accepted = response(api.outcome().await);
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let task = task_of(&accepted);

    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());

    api.function_returned().await;
    let failed = store.status(task).await.unwrap().unwrap();
    assert_eq!(
        (failed.state, failed.error.as_deref()),
        (TaskState::Failed, Some(reason::SHUT_DOWN))
    );
    assert!(offload.detached().is_empty());
}
