//! `Runner::run_with_streaming_response` under the real `lambda_runtime` and
//! `lambda-extension` clients, against a Runtime API served on loopback: responses stream
//! (a function URL in `RESPONSE_STREAM` mode, a REST API with response streaming), and
//! detached work still holds the invocation until it is done.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use common::runtime_api::{
    function_url_event, location, now_ms, response, run_function, task_of, Outcome, RuntimeApi,
};
use http_body_util::Channel;
use serde_json::Value;
use tower::Layer;
use tower_serverless::lambda::Runner;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};
use tower_serverless::{DeadlineLayer, EscalateLayer};

const BUDGET: Duration = Duration::from_secs(30);

/// A body whose chunks a task sends one at a time: the runtime streams them as they come.
async fn chunks() -> Body {
    let (mut sender, body) = Channel::<Bytes>::new(1);
    tokio::spawn(async move {
        for chunk in ["one ", "two ", "three"] {
            tokio::task::yield_now().await;
            let _ = sender.send_data(Bytes::from_static(chunk.as_bytes())).await;
        }
    });
    Body::new(body)
}

/// The response invocation `id` of `event` posts, once the extension has released it.
async fn answered(api: &mut RuntimeApi, id: &str, event: Value) -> Value {
    let posted = response(api.invoke(id, BUDGET, event).await);
    api.extension_next().await;
    posted
}

// One test function: the runtime reads its address from the process environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_and_detached_work_that_holds_the_invocation() {
    let (mut api, log) = RuntimeApi::start_logged().await;
    let store = MemoryStore::new();
    let runtime_store = store.clone();
    run_function(move || async move {
        let offload = OffloadLayer::new(runtime_store).after(Duration::from_millis(100));
        let runs = Arc::new(AtomicUsize::new(0));
        let count =
            post(move || async move { (runs.fetch_add(1, Ordering::SeqCst) + 1).to_string() });
        let app = app::routes()
            .route("/stream", get(chunks))
            .merge(common::broken())
            .route("/count", count)
            .merge(common::report())
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(DeadlineLayer::inherit());
        let service = EscalateLayer::new().layer(app);
        Runner::new()
            .offload(&offload)
            .run_with_streaming_response(service)
            .await
    });
    // Registered during init; waiting for the first invocation.
    api.extension_next().await;

    let get_event = |path: &str| function_url_event("GET", path, now_ms());
    let streamed = answered(&mut api, "1", get_event("/stream")).await;
    assert_eq!(streamed["streamed"], true, "{streamed}");
    assert_eq!(streamed["statusCode"], 200, "{streamed}");
    assert_eq!(streamed["body"], "one two three");

    // A body that fails midway ends there: its error is logged, and no text of it reaches
    // the client (`lambda_runtime` would stream it as part of the body).
    let broken = answered(&mut api, "broken", get_event("/broken")).await;
    assert_eq!(broken["statusCode"], 200, "{broken}");
    assert_eq!(broken["body"], "partial ");
    let logged = log.text();
    assert!(
        logged.contains("the response body failed midway") && logged.contains("hunter2"),
        "{logged}"
    );

    // Offloaded: the `202` streams while the work runs; the extension asks for its next
    // event only once the work ended and its result is stored.
    let job = function_url_event("POST", "/jobs/800", now_ms());
    let accepted = answered(&mut api, "2", job).await;
    assert_eq!(
        (&accepted["streamed"], &accepted["statusCode"]),
        (&true.into(), &202.into()),
        "{accepted}"
    );
    let task = task_of(&accepted);
    assert_eq!(location(&accepted), format!("/tasks/{task}"));
    let state = store.get(task).await.unwrap().unwrap().state;
    assert_eq!(
        state,
        TaskState::Succeeded,
        "released before the work ended"
    );

    // An escalation fails the invocation, before anything streams.
    match api.invoke("3", BUDGET, get_event("/fail")).await {
        Outcome::Error { body, .. } => assert_eq!(body["errorType"], "DemoFailure"),
        other => panic!("expected an error, got {other:?}"),
    }
    api.extension_next().await;

    // A keyed request answered in the foreground: its copy is stored once the stream has
    // ended, within the invocation, and a retry gets it replayed (the handler ran once).
    let keyed = || {
        let mut event = function_url_event("POST", "/count", now_ms());
        event["headers"]["idempotency-key"] = "streamed-1".into();
        event
    };
    let first = answered(&mut api, "4", keyed()).await;
    let retried = answered(&mut api, "5", keyed()).await;
    for answer in [&first, &retried] {
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["body"], "1");
    }

    // The poll and the result, streamed as any response.
    let polled = answered(&mut api, "6", get_event(&format!("/tasks/{task}"))).await;
    assert_eq!(polled["statusCode"], 303, "{polled}");
    let result = answered(&mut api, "7", get_event(&format!("/tasks/{task}/result"))).await;
    assert_eq!(result["statusCode"], 200, "{result}");
    assert_eq!(result["body"], r#"{"job":"done","slept_ms":800}"#);

    // A streamed response is no 6 MB JSON document: a 6,000,000-byte binary result (8 MB
    // in base64) is kept and streams whole, where a buffered runner stores it as failed.
    let report = function_url_event("POST", "/report/6000000", now_ms());
    let accepted = answered(&mut api, "8", report).await;
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let report = task_of(&accepted);
    let state = store.get(report).await.unwrap().unwrap().state;
    assert_eq!(state, TaskState::Succeeded);
    let path = format!("/tasks/{report}/result");
    let result = answered(&mut api, "9", get_event(&path)).await;
    // Not the result in a message: it is 6 MB.
    assert_eq!(result["statusCode"], 200);
    assert_eq!(result["body"].as_str().map(str::len), Some(6_000_000));
}
