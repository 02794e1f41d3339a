//! `lambda::run` under `cargo lambda watch`'s emulator, whose `Lambda-Runtime-Deadline-Ms`
//! is the constant `600000` instead of a Unix time, and whose events give `timeEpoch` in
//! seconds: no zero budget, no early release.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use common::runtime_api::{http_api_event, now_ms, response, run_function, task_of, RuntimeApi};
use tower::Layer;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};
use tower_serverless::{DeadlineLayer, EscalateLayer};

/// What `cargo lambda watch` sends on every invocation (cargo-lambda 1.9).
const EMULATOR_DEADLINE_MS: u64 = 600_000;

/// An event as the emulator makes it (cargo-lambda-watch's `trigger_router.rs`): payload
/// 2.0, `timeEpoch` in seconds, domain `localhost`.
fn emulator_event(method: &str, path: &str) -> serde_json::Value {
    let mut event = http_api_event(method, path, now_ms() / 1000);
    event["requestContext"]["domainName"] = "localhost".into();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_deadline_is_no_deadline() {
    let (mut api, log) = RuntimeApi::start_logged().await;
    let store = MemoryStore::new();
    let runtime_store = store.clone();
    run_function(move || async move {
        let offload = OffloadLayer::new(runtime_store).after(Duration::from_millis(500));
        let app = app::routes()
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(DeadlineLayer::inherit());
        let service = EscalateLayer::new().layer(app);
        tower_serverless::lambda::run(service, &offload).await
    });
    api.extension_next().await;

    // Read as an epoch, 600000 is 1970: every request that awaits got a 504 at once.
    let slept = response(
        api.invoke_with_deadline_ms(
            "1",
            EMULATOR_DEADLINE_MS,
            emulator_event("GET", "/sleep/200"),
        )
        .await,
    );
    assert_eq!(slept["statusCode"], 200, "{slept}");
    assert_eq!(slept["body"], r#"{"slept_ms":200}"#);
    api.extension_next().await;

    // The extension holds the invocation until the offloaded job is stored, instead of
    // releasing it "at the function's deadline" at once.
    let accepted = response(
        api.invoke_with_deadline_ms(
            "2",
            EMULATOR_DEADLINE_MS,
            emulator_event("POST", "/jobs/3000"),
        )
        .await,
    );
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let task = task_of(&accepted);
    api.extension_next().await;
    let done = store.get(task).await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(
        &done.result.unwrap().body[..],
        br#"{"job":"done","slept_ms":3000}"#
    );

    let log = log.text();
    assert_eq!(
        log.matches("the function's deadline 600000 is no Unix time")
            .count(),
        1,
        "one warning naming the value: {log}"
    );
    assert_eq!(
        log.matches("the gateway's arrival time").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("released the invocation at the function's deadline"));
}
