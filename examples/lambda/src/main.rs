//! The demo's routes and layers on AWS Lambda, under `tower_serverless::lambda::run`.
//!
//! `GET /fail` fails the invocation with `errorType` `DemoFailure`; `POST /jobs/{ms}` past
//! `OFFLOAD_AFTER_MS` answers `202` and finishes while the invocation is held open by the
//! internal extension. Each request's deadline comes from its front door (REST API 29 s, or
//! `REST_TIMEOUT_MS`; HTTP API 30 s; function URL and ALB none; CloudFront in front 30 s, or
//! `CLOUDFRONT_TIMEOUT_MS`) and the function's deadline;
//! `DEADLINE_MS` shortens it. REST and HTTP API stages are taken off the path, and so is
//! `REMOVE_BASE_PATH` (`/orders`, for an HTTP API's `$default` route behind a custom
//! domain's mapping key). `STREAM_RESPONSES=1` streams the responses
//! (`Runner::run_with_streaming_response`), for a function URL whose invoke mode is
//! `RESPONSE_STREAM`.
//!
//! Tasks live in memory unless `TASKS_TABLE` (feature `dynamodb`) or `REDIS_URL` (feature
//! `redis`) is set. On Lambda, set one: while an environment finishes a job, every poll
//! lands on another environment, which does not have the task in its memory. The runner
//! warns at init when the store is local. The DynamoDB client takes the region and the
//! execution role's credentials from the environment Lambda sets.
//!
//! From the repository's root:
//!
//! ```sh
//! cargo lambda watch -p lambda-demo          # then, in another shell:
//! # or, with tasks in DynamoDB Local (see the README):
//! # TASKS_TABLE=tasks AWS_ENDPOINT_URL=http://127.0.0.1:8000 cargo lambda watch -p lambda-demo --features dynamodb
//! curl -i localhost:9000/hello
//! curl -i -X POST localhost:9000/jobs/3000   # 202 Accepted, Location: /tasks/<id>
//! cargo lambda build --release -p lambda-demo
//! ```

#[path = "../../app/mod.rs"]
mod app;

use tower::Layer;
use tower_serverless::EscalateLayer;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .init();
    let settings = app::Settings::from_env()?;
    let offload = settings.offload_layer().await?;
    // Fail mode: an escalation is the service's `Err`, which `lambda_http` reports as a
    // failed invocation with the escalation's `errorType`.
    let app = app::layered(settings.lambda_deadline_layer(), &offload);
    let service = EscalateLayer::new().layer(app);
    let base_path = std::env::var("REMOVE_BASE_PATH").unwrap_or_default();
    let runner = tower_serverless::lambda::Runner::new()
        .front_doors(settings.front_doors()?)
        .remove_base_path(&base_path)
        .offload(&offload);
    if std::env::var("STREAM_RESPONSES").is_ok_and(|value| value == "1") {
        return runner.run_with_streaming_response(service).await;
    }
    runner.run(service).await
}
