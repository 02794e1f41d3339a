//! `lambda::run` under the real `lambda_runtime` and `lambda-extension` clients, against a
//! Runtime API and Extensions API served on loopback: detached work survives the freeze.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use axum::routing::get;
use common::runtime_api::{
    alb_event, function_url_event, http_api_event, http_api_stage_event, http_api_v1_event, now_ms,
    offload_and_poll, response, rest_api_event, rest_api_request, rest_custom_domain_request,
    run_function, task_of, Outcome, RuntimeApi,
};
use tokio::time::Instant;
use tower::Layer;
use tower_serverless::offload::store::TaskRecord;
use tower_serverless::offload::{MemoryStore, OffloadLayer, TaskState, TaskStore};
use tower_serverless::{deadline, DeadlineLayer, EscalateLayer};

const BUDGET: Duration = Duration::from_secs(30);

fn error_type(outcome: Outcome) -> String {
    match outcome {
        Outcome::Error { body, .. } => body["errorType"].as_str().unwrap().to_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

// One test function: the runtime reads its address from the process environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_work_holds_the_invocation_until_it_is_done() {
    let (mut api, log) = RuntimeApi::start_logged().await;
    // `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is not set: REST events reach `lambda_http` as
    // `/prod/...`, and the runner takes the stage off.
    let store = MemoryStore::new();
    let runtime_store = store.clone();
    let (gate_a, gated_a) = common::gated("/gated/a");
    let (gate_b, gated_b) = common::gated("/gated/b");
    run_function(move || async move {
        let offload = OffloadLayer::new(runtime_store).after(Duration::from_millis(100));
        let routes = app::routes()
            .merge(gated_a)
            .merge(gated_b)
            .route(
                "/remaining",
                get(|| async {
                    deadline::current()
                        .unwrap()
                        .remaining()
                        .as_millis()
                        .to_string()
                }),
            )
            .route(
                "/noted",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    tracing::info!("noted after its 202");
                    "noted"
                }),
            )
            .merge(common::report())
            .merge(common::broken());
        let app = routes
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(DeadlineLayer::inherit());
        let service = EscalateLayer::new().layer(app);
        tower_serverless::lambda::run(service, &offload).await
    });
    // Registered during init; waiting for the first invocation.
    api.extension_next().await;
    let warnings = log.text();
    assert_eq!(
        warnings
            .matches("the offload store is local to this process")
            .count(),
        1,
        "{warnings}"
    );

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

    // What the work logs after its 202 is in the invocation's span, with its request id.
    let noted = response(
        api.invoke(
            "noted-1",
            BUDGET,
            http_api_event("POST", "/noted", now_ms()),
        )
        .await,
    );
    assert_eq!(noted["statusCode"], 202);
    api.extension_next().await;
    let logged = log.text();
    let line = logged
        .lines()
        .find(|line| line.contains("noted after its 202"))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(line.contains(r#"requestId="noted-1""#), "{line}");

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

    // A body that fails midway fails the invocation, with a type of its own: `lambda_http`
    // reads a buffered body whole before it posts anything (and panics when it fails). The
    // client behind API Gateway gets its `502`, not the body's first part.
    let broken = api
        .invoke("broken", BUDGET, http_api_event("GET", "/broken", now_ms()))
        .await;
    assert_eq!(error_type(broken), "ResponseBodyFailed");
    let logged = log.text();
    assert!(
        logged.contains("the response body failed while it was read") && logged.contains("hunter2"),
        "{logged}"
    );
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

    front_doors(&mut api).await;
    stages(&mut api).await;
    large_results(&mut api, &store).await;

    // An invocation is held for the work it detached, not for another's: B's task still
    // runs when A's hold ends.
    let a = response(
        api.invoke("a", BUDGET, http_api_event("POST", "/gated/a", now_ms()))
            .await,
    );
    let b = response(
        api.invoke("b", BUDGET, http_api_event("POST", "/gated/b", now_ms()))
            .await,
    );
    assert_eq!(
        (a["statusCode"].as_u64(), b["statusCode"].as_u64()),
        (Some(202), Some(202))
    );
    gate_a.send(true).unwrap();
    api.extension_next().await;
    assert_eq!(
        store.get(task_of(&a)).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
    assert_eq!(
        store.get(task_of(&b)).await.unwrap().unwrap().state,
        TaskState::Pending,
        "A's hold ended while B's work runs"
    );
    gate_b.send(true).unwrap();
    api.extension_next().await;
    assert_eq!(
        store.get(task_of(&b)).await.unwrap().unwrap().state,
        TaskState::Succeeded
    );
}

/// A buffered response carries at most 6 MB of JSON, where a binary body is base64: a
/// result (from `common::report`, past the 100 ms threshold) that fits is replayed; one
/// that does not is stored as failed, with a reason the client can read, rather than as a
/// success whose fetch fails the invocation (a `502` behind API Gateway) every time.
async fn large_results(api: &mut RuntimeApi, store: &MemoryStore) {
    // The task of an offloaded `POST /report/{bytes}` once it is stored, and what a fetch
    // of its result posts.
    async fn report(
        api: &mut RuntimeApi,
        store: &MemoryStore,
        bytes: usize,
    ) -> (TaskRecord, serde_json::Value) {
        let event = http_api_event("POST", &format!("/report/{bytes}"), now_ms());
        let accepted = response(api.invoke(&format!("report-{bytes}"), BUDGET, event).await);
        assert_eq!(accepted["statusCode"], 202, "{accepted}");
        api.extension_next().await;
        let task = task_of(&accepted);
        let event = http_api_event("GET", &format!("/tasks/{task}/result"), now_ms());
        let result = response(api.invoke(&format!("result-{bytes}"), BUDGET, event).await);
        api.extension_next().await;
        (store.get(task).await.unwrap().unwrap(), result)
    }
    // Neither the record nor the result in a message: they hold megabytes.
    // 4,000,000 bytes are 5,333,336 in base64: they fit.
    let (record, result) = report(api, store, 4_000_000).await;
    assert_eq!(record.state, TaskState::Succeeded);
    assert_eq!(result["statusCode"], 200);
    assert_eq!(result["isBase64Encoded"], true);
    assert_eq!(result["body"].as_str().map(str::len), Some(5_333_336));

    // 5,000,000 bytes are 6,666,668 in base64: more than Lambda takes.
    let (record, result) = report(api, store, 5_000_000).await;
    assert_eq!(record.state, TaskState::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("the result is larger than a buffered Lambda response can carry")
    );
    assert_eq!(result["statusCode"], 404, "{result}");

    // An ALB takes 1 MB: 1,000,000 bytes are 1,333,336 in base64.
    let mut event = alb_event("/report/1000000");
    event["httpMethod"] = "POST".into();
    let accepted = response(api.invoke("report-alb", BUDGET, event).await);
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    api.extension_next().await;
    let record = store.get(task_of(&accepted)).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Failed);
    assert_eq!(
        record.error.as_deref(),
        Some("the result is larger than a buffered Lambda response can carry")
    );

    // The same for a keyed request answered in the foreground (`wait=2` outlasts its
    // 300 ms): Lambda refuses that response, and the retry learns why from the task rather
    // than failing the same way.
    let keyed = || {
        let mut event = http_api_event("POST", "/report/5000000", now_ms());
        event["headers"]["idempotency-key"] = "too-large-1".into();
        event["headers"]["prefer"] = "wait=2".into();
        event
    };
    match api.invoke("report-keyed", BUDGET, keyed()).await {
        Outcome::Error { error_type, .. } => {
            assert_eq!(error_type, "Function.ResponseSizeTooLarge")
        }
        Outcome::Response { .. } => panic!("Lambda took a response of more than 6 MB"),
    }
    api.extension_next().await;
    let retried = response(api.invoke("report-keyed-retry", BUDGET, keyed()).await);
    assert_eq!(retried["statusCode"], 202, "{retried}");
    let task: serde_json::Value = serde_json::from_str(retried["body"].as_str().unwrap()).unwrap();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(
        task["error"],
        "the result is larger than a buffered Lambda response can carry"
    );
    api.extension_next().await;
}

/// The milliseconds `/remaining` reports for `event`, under a 100 s function deadline.
async fn remaining(api: &mut RuntimeApi, id: &str, event: serde_json::Value) -> u64 {
    let body = response(api.invoke(id, Duration::from_secs(100), event).await);
    api.extension_next().await;
    body["body"].as_str().unwrap().parse().unwrap()
}

/// Each front door gets its own cap: REST 29 s and HTTP API 30 s from arrival; function
/// URLs and ALB none, only the function's deadline (100 s here), each minus the 1 s margin;
/// CloudFront in front adds its origin response timeout.
async fn front_doors(api: &mut RuntimeApi) {
    let rest = remaining(api, "rest", rest_api_event("/remaining", now_ms())).await;
    assert!((27_000..=28_000).contains(&rest), "REST {rest} ms");
    let http = remaining(api, "http", http_api_event("GET", "/remaining", now_ms())).await;
    assert!((28_000..=29_000).contains(&http), "HTTP API {http} ms");
    // An HTTP API with payload format 1.0 sends REST-shaped events; its route key in
    // `resourceId` tells it from a REST API: 30 s, not REST's 29 s (or a raised REST cap).
    let v1 = remaining(api, "http-v1", http_api_v1_event("/remaining", now_ms())).await;
    assert!(
        (28_001..=29_000).contains(&v1),
        "HTTP API payload 1.0 {v1} ms"
    );
    let url = remaining(
        api,
        "url",
        function_url_event("GET", "/remaining", now_ms()),
    )
    .await;
    assert!((98_000..=99_000).contains(&url), "function URL {url} ms");
    let alb = remaining(api, "alb", alb_event("/remaining")).await;
    assert!((98_000..=99_000).contains(&alb), "ALB {alb} ms");

    // Behind CloudFront (its `X-Amz-Cf-Id` on the request), the distribution's origin
    // response timeout (30 s unless raised) caps a door that has none: a function URL
    // event that arrived 10 s ago has 30 - 10 - 1 = 19 s; an ALB event, which says nothing
    // of its arrival, 29 s from when the function got it.
    let from_cloudfront = |mut event: serde_json::Value| {
        event["headers"]["x-amz-cf-id"] = "rEZ41zHijmTaPJrLdiavv7oU8giHtH8HQXvabc2QPAly".into();
        event
    };
    let event = from_cloudfront(function_url_event("GET", "/remaining", now_ms() - 10_000));
    let url = remaining(api, "cloudfront-url", event).await;
    assert!(
        (18_000..=19_000).contains(&url),
        "function URL behind CloudFront {url} ms"
    );
    let event = from_cloudfront(alb_event("/remaining"));
    let alb = remaining(api, "cloudfront-alb", event).await;
    assert!(
        (28_000..=29_000).contains(&alb),
        "ALB behind CloudFront {alb} ms"
    );
    // A REST API's own cap is the shorter: an edge-optimized API is reached through
    // CloudFront too.
    let event = from_cloudfront(rest_api_event("/remaining", now_ms()));
    let rest = remaining(api, "cloudfront-rest", event).await;
    assert!(
        (27_000..=28_000).contains(&rest),
        "REST behind CloudFront {rest} ms"
    );
}

/// Routes serve REST and HTTP API events of a named stage, and a `202`'s `Location` is the
/// path the client calls, stage included.
async fn stages(api: &mut RuntimeApi) {
    let hello = response(
        api.invoke(
            "stage-http",
            BUDGET,
            http_api_stage_event("GET", "prod", "/hello", now_ms()),
        )
        .await,
    );
    assert_eq!(hello["body"], "hello");
    api.extension_next().await;
    let rest = |method: &str, path: &str| rest_api_request(method, path, now_ms());
    offload_and_poll(api, "stage", rest, "/prod").await;

    // Through a custom domain's base path mapping (`/v1` to stage `prod`), the routes are
    // the API's own paths, and `Location` carries the base path, not the stage.
    let domain = |method: &str, path: &str| rest_custom_domain_request(method, "v1", path);
    let hello = response(
        api.invoke("domain-hello", BUDGET, domain("GET", "/hello"))
            .await,
    );
    assert_eq!(hello["statusCode"], 200, "{hello}");
    assert_eq!(hello["body"], "hello");
    api.extension_next().await;
    offload_and_poll(api, "domain", domain, "/v1").await;
}
