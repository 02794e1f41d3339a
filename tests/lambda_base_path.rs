//! `Runner::remove_base_path` under the real `lambda_runtime` client: an HTTP API's
//! `$default` route through a custom domain's mapping key, which the event does not tell
//! from the API's own path, routes and locates like the API's own paths.
#![cfg(all(feature = "lambda", feature = "axum"))]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::time::Duration;

use common::runtime_api::{
    http_api_event, now_ms, offload_and_poll, response, run_function, RuntimeApi,
};
use tower::Layer;
use tower_serverless::lambda::Runner;
use tower_serverless::offload::{MemoryStore, OffloadLayer};
use tower_serverless::{DeadlineLayer, EscalateLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_base_path_comes_off_and_stays_in_the_location() {
    let mut api = RuntimeApi::start().await;
    run_function(|| async {
        let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(100));
        let app = app::layered(DeadlineLayer::inherit(), &offload);
        Runner::new()
            .remove_base_path("/orders")
            .offload(&offload)
            .run(EscalateLayer::new().layer(app))
            .await
    });
    api.extension_next().await;
    let budget = Duration::from_secs(30);
    let event =
        |method: &str, path: &str| http_api_event(method, &format!("/orders{path}"), now_ms());

    let hello = response(api.invoke("1", budget, event("GET", "/hello")).await);
    assert_eq!(hello["statusCode"], 200, "{hello}");
    assert_eq!(hello["body"], "hello");
    api.extension_next().await;

    let task = offload_and_poll(&mut api, "orders", event, "/orders").await;

    let result = response(
        api.invoke(
            "result",
            budget,
            event("GET", &format!("/tasks/{task}/result")),
        )
        .await,
    );
    assert_eq!(result["statusCode"], 200, "{result}");
    assert_eq!(result["body"], r#"{"job":"done","slept_ms":300}"#);
    api.extension_next().await;
}
