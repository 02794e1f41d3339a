//! `lambda::run` with `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` set: `lambda_http` leaves the
//! stage out of the path, and the `Location` of a `202` still carries it. (Without the
//! variable: `tests/lambda_runner.rs`.)
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use common::runtime_api::{now_ms, response, rest_api_request, run_function, task_of, RuntimeApi};
use tower::Layer;
use tower_serverless::offload::{MemoryStore, OffloadLayer};
use tower_serverless::{DeadlineLayer, EscalateLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_stages_route_and_locate_with_the_variable_set() {
    let mut api = RuntimeApi::start().await;
    std::env::set_var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "1");
    run_function(|| async {
        let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(100));
        let app = app::layered(DeadlineLayer::inherit(), &offload);
        tower_serverless::lambda::run(EscalateLayer::new().layer(app), &offload).await
    });
    api.extension_next().await;
    let budget = Duration::from_secs(30);

    let hello = response(
        api.invoke("1", budget, rest_api_request("GET", "/hello", now_ms()))
            .await,
    );
    assert_eq!(hello["body"], "hello");
    api.extension_next().await;

    let accepted = response(
        api.invoke("2", budget, rest_api_request("POST", "/jobs/300", now_ms()))
            .await,
    );
    assert_eq!(accepted["statusCode"], 202);
    let task = task_of(&accepted);
    assert_eq!(
        accepted["multiValueHeaders"]["location"][0],
        format!("/prod/tasks/{task}")
    );
    api.extension_next().await;
}
