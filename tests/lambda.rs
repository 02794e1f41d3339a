//! The layers under the real `lambda_http`/`lambda_runtime` client, against a Lambda
//! Runtime API served on loopback.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use common::runtime_api::{http_api_event, now_ms, Outcome, RuntimeApi};
use tower::Layer;
use tower_serverless::EscalateLayer;

const BUDGET: Duration = Duration::from_secs(10);

// One test function: the runtime reads its address from the process environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_fail_or_answer_and_the_runtime_goes_on() {
    common::quiet_panics();
    let mut api = RuntimeApi::start().await;
    // `lambda_http::run` is awaited from `main` in a function; its future is not `Send`.
    let runtime = std::thread::spawn(|| {
        let service = EscalateLayer::new()
            .status_spec("503")
            .unwrap()
            .layer(app::routes());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(lambda_http::run(service))
    });

    let outcome = api
        .invoke("1", BUDGET, http_api_event("GET", "/hello", now_ms()))
        .await;
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["body"], "hello");

    let outcome = api
        .invoke("2", BUDGET, http_api_event("GET", "/fail", now_ms()))
        .await;
    let Outcome::Error {
        body, error_type, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(error_type, "unhandled");
    assert_eq!(body["errorType"], "DemoFailure");
    assert_eq!(body["errorMessage"], "the demo failed on purpose");

    let outcome = api
        .invoke("3", BUDGET, http_api_event("GET", "/panic", now_ms()))
        .await;
    let Outcome::Error { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(body["errorType"], "Panic");
    assert_eq!(
        body["errorMessage"],
        "the handler panicked: the demo panicked on purpose"
    );

    let outcome = api
        .invoke("4", BUDGET, http_api_event("GET", "/status/503", now_ms()))
        .await;
    let Outcome::Error { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(body["errorType"], "HttpStatus503");

    // No exit: the same runtime takes the next invocation.
    let outcome = api
        .invoke("5", BUDGET, http_api_event("GET", "/status/404", now_ms()))
        .await;
    let Outcome::Response { body, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(body["statusCode"], 404);
    assert!(!runtime.is_finished());
}
