//! The demo's routes and layers on AWS Lambda, under `tower_serverless::lambda::run`.
//!
//! `GET /fail` fails the invocation with `errorType` `DemoFailure`; `POST /jobs/{ms}` past
//! `OFFLOAD_AFTER_MS` answers `202` and finishes while the invocation is held open by the
//! internal extension. Env: `DEADLINE_MS`, `OFFLOAD_AFTER_MS`, `REDIS_URL` (feature `redis`;
//! needed as soon as there is more than one instance, since a poll may land on another).
//!
//! ```sh
//! cargo lambda watch --example lambda --features lambda     # locally, then:
//! cargo lambda invoke --data-example apigw-request           # or curl localhost:9000/lambda-url/...
//! cargo lambda build --release --example lambda --features lambda
//! ```

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
    let service = EscalateLayer::new().layer(app::layered(&settings, &offload));
    tower_serverless::lambda::run(service, &offload).await
}
