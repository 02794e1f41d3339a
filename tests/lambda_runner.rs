//! `lambda::run` under the real `lambda_runtime` and `lambda-extension` clients, against a
//! Runtime API and Extensions API served on loopback: detached work survives the freeze.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use axum::routing::get;
use common::runtime_api::{http_api_event, now_ms, rest_api_event, Outcome, RuntimeApi};
use tokio::time::Instant;
use tower::Layer;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskId, TaskState, TaskStore};
use tower_serverless::{deadline, DeadlineLayer, EscalateLayer};

const BUDGET: Duration = Duration::from_secs(30);

fn response(outcome: Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response { body, .. } => body,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn error_type(outcome: Outcome) -> String {
    match outcome {
        Outcome::Error { body, .. } => body["errorType"].as_str().unwrap().to_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn task_of(response: &serde_json::Value) -> TaskId {
    let body: serde_json::Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

// One test function: the runtime reads its address from the process environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_work_holds_the_invocation_until_it_is_done() {
    common::quiet_panics();
    let mut api = RuntimeApi::start().await;
    // Route REST API events without their stage prefix (`/prod/...`), as deployments
    // with one stage do.
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "1");
    let store = MemoryStore::new();
    let runtime_store = store.clone();
    // `lambda_http::run` is awaited from `main` in a function; its future is not `Send`.
    std::thread::spawn(move || {
        let offload = OffloadLayer::new(runtime_store).after(Duration::from_millis(100));
        let routes = app::routes().route(
            "/remaining",
            get(|| async {
                deadline::current()
                    .unwrap()
                    .remaining()
                    .as_millis()
                    .to_string()
            }),
        );
        let app = routes
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(DeadlineLayer::api_gateway_rest());
        let service = EscalateLayer::new().layer(app);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(tower_serverless::lambda::run(service, &offload))
            .unwrap();
    });
    // Registered during init; waiting for the first invocation.
    api.extension_next().await;

    // No detached work: the extension releases at once.
    let hello = response(
        api.invoke("1", BUDGET, http_api_event("GET", "/hello", now_ms()))
            .await,
    );
    assert_eq!(hello["body"], "hello");
    let answered = Instant::now();
    let released = api.extension_next().await;
    // Held, it would last until the 30 s deadline.
    assert!(
        released - answered < Duration::from_secs(5),
        "held {:?}",
        released - answered
    );

    // Offloaded: the 202 is posted while the work runs; the extension asks for its next
    // event only once the work ended and its result is stored.
    let accepted = response(
        api.invoke("2", BUDGET, http_api_event("POST", "/jobs/800", now_ms()))
            .await,
    );
    assert_eq!(accepted["statusCode"], 202);
    let task = task_of(&accepted);
    assert_eq!(
        store.get(task).await.unwrap().unwrap().state,
        TaskState::Pending
    );
    api.extension_next().await;
    let done = store.get(task).await.unwrap().unwrap();
    assert_eq!(
        done.state,
        TaskState::Succeeded,
        "released before the work ended"
    );
    assert_eq!(
        &done.result.unwrap().body[..],
        br#"{"job":"done","slept_ms":800}"#
    );

    // Escalation and panic release it too.
    let failed = api
        .invoke("3", BUDGET, http_api_event("GET", "/fail", now_ms()))
        .await;
    assert_eq!(error_type(failed), "DemoFailure");
    api.extension_next().await;
    let panicked = api
        .invoke("4", BUDGET, http_api_event("GET", "/panic", now_ms()))
        .await;
    assert_eq!(error_type(panicked), "Panic");
    api.extension_next().await;

    // Work still running at the function's deadline (minus the 1 s margin) is stored as
    // failed, and the invocation is released before the deadline.
    let short = Duration::from_millis(2500);
    let deadline = Instant::now() + short;
    let accepted = response(
        api.invoke("5", short, http_api_event("POST", "/jobs/60000", now_ms()))
            .await,
    );
    assert_eq!(accepted["statusCode"], 202);
    let released = api.extension_next().await;
    assert!(
        released < deadline,
        "released {:?} after the deadline",
        released - deadline
    );
    let lost = store.get(task_of(&accepted)).await.unwrap().unwrap();
    assert_eq!(lost.state, TaskState::Failed);
    assert_eq!(lost.error.as_deref(), Some("lambda deadline"));

    // A REST API event that arrived 20 s ago has at most 29 - 20 - 1 = 8 s left.
    let event = rest_api_event("/remaining", now_ms() - 20_000);
    let remaining = response(api.invoke("6", BUDGET, event).await);
    let remaining: u64 = remaining["body"].as_str().unwrap().parse().unwrap();
    assert!((7_000..=8_000).contains(&remaining), "{remaining} ms");
    api.extension_next().await;

    // An event that is no HTTP request never reaches the service: the runtime posts an
    // error, and the invocation is released all the same, not held to its deadline.
    let answered = Instant::now();
    let outcome = api
        .invoke("7", BUDGET, serde_json::json!({ "not": "an http event" }))
        .await;
    assert!(matches!(outcome, Outcome::Error { .. }), "{outcome:?}");
    let released = api.extension_next().await;
    assert!(
        released - answered < Duration::from_secs(5),
        "held {:?}",
        released - answered
    );
}
