//! `Runner::run_with_streaming_response` under the real `lambda_runtime` and
//! `lambda-extension` clients, against a Runtime API served on loopback: responses stream
//! (a function URL in `RESPONSE_STREAM` mode, a REST API with response streaming), and
//! detached work still holds the invocation until it is done.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use common::runtime_api::{
    function_url_event, location, now_ms, response, run_function, task_of, Outcome, RuntimeApi,
};
use http_body::Frame;
use tokio::sync::mpsc;
use tower::Layer;
use tower_serverless::lambda::Runner;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};
use tower_serverless::{DeadlineLayer, EscalateLayer};

const BUDGET: Duration = Duration::from_secs(30);

/// A body whose chunks come from a task, one at a time: the runtime streams it as it comes.
struct Chunks(mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

async fn chunks() -> Body {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        for chunk in ["one ", "two ", "three"] {
            tokio::task::yield_now().await;
            let _ = sender.send(Bytes::from_static(chunk.as_bytes())).await;
        }
    });
    Body::new(Chunks(receiver))
}

// One test function: the runtime reads its address from the process environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_and_detached_work_that_holds_the_invocation() {
    common::quiet_panics();
    let mut api = RuntimeApi::start().await;
    let store = MemoryStore::new();
    let runtime_store = store.clone();
    run_function(move || async move {
        let offload = OffloadLayer::new(runtime_store).after(Duration::from_millis(100));
        let runs = Arc::new(AtomicUsize::new(0));
        let count =
            post(move || async move { (runs.fetch_add(1, Ordering::SeqCst) + 1).to_string() });
        let app = app::routes()
            .route("/stream", get(chunks))
            .route("/count", count)
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

    let streamed = response(
        api.invoke("1", BUDGET, function_url_event("GET", "/stream", now_ms()))
            .await,
    );
    assert_eq!(streamed["streamed"], true, "{streamed}");
    assert_eq!(streamed["statusCode"], 200, "{streamed}");
    assert_eq!(streamed["body"], "one two three");
    api.extension_next().await;

    // Offloaded: the `202` streams while the work runs; the extension asks for its next
    // event only once the work ended and its result is stored.
    let accepted = response(
        api.invoke(
            "2",
            BUDGET,
            function_url_event("POST", "/jobs/800", now_ms()),
        )
        .await,
    );
    assert_eq!(
        (&accepted["streamed"], &accepted["statusCode"]),
        (&true.into(), &202.into()),
        "{accepted}"
    );
    let task = task_of(&accepted);
    assert_eq!(location(&accepted), format!("/tasks/{task}"));
    api.extension_next().await;
    let done = store.get(task).await.unwrap().unwrap();
    assert_eq!(
        done.state,
        TaskState::Succeeded,
        "released before the work ended"
    );

    // An escalation fails the invocation, before anything streams.
    match api
        .invoke("3", BUDGET, function_url_event("GET", "/fail", now_ms()))
        .await
    {
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
    let first = response(api.invoke("6", BUDGET, keyed()).await);
    api.extension_next().await;
    let retried = response(api.invoke("7", BUDGET, keyed()).await);
    api.extension_next().await;
    for answer in [&first, &retried] {
        assert_eq!(answer["statusCode"], 200, "{answer}");
        assert_eq!(answer["body"], "1");
    }

    // The poll and the result, streamed as any response.
    let polled = response(
        api.invoke(
            "4",
            BUDGET,
            function_url_event("GET", &format!("/tasks/{task}"), now_ms()),
        )
        .await,
    );
    assert_eq!(polled["statusCode"], 303, "{polled}");
    api.extension_next().await;
    let result = response(
        api.invoke(
            "5",
            BUDGET,
            function_url_event("GET", &format!("/tasks/{task}/result"), now_ms()),
        )
        .await,
    );
    assert_eq!(result["statusCode"], 200, "{result}");
    assert_eq!(result["body"], r#"{"job":"done","slept_ms":800}"#);
}
