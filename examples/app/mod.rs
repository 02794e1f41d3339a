//! The demo application shared by the examples and the integration tests: its routes are a
//! fixed contract (see the README).
// Shared by the examples and the tests; each uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_serverless::deadline::FrontDoors;
use tower_serverless::{DeadlineLayer, EscalateLayer, Escalation, MemoryStore, OffloadLayer};

/// A DynamoDB client from the environment as Lambda sets it: `AWS_REGION`, and the
/// execution role's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`;
/// with `AWS_ENDPOINT_URL` (DynamoDB Local), any region and credentials do. Elsewhere,
/// build the client from `aws-config`'s default chain (profiles, SSO, IMDS...), which
/// this demo leaves out to stay small.
#[cfg(feature = "dynamodb")]
fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let local = var("AWS_ENDPOINT_URL");
    let or_local = |value: Option<String>| value.or_else(|| local.as_ref().map(|_| "local".into()));
    let region = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"));
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.unwrap_or_else(|| "us-east-1".into())));
    if let (Some(key), Some(secret)) = (
        or_local(var("AWS_ACCESS_KEY_ID")),
        or_local(var("AWS_SECRET_ACCESS_KEY")),
    ) {
        let token = var("AWS_SESSION_TOKEN");
        config = config.credentials_provider(Credentials::new(key, secret, token, None, "env"));
    }
    if let Some(endpoint) = local {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

/// What the environment can change in the demo; the default is an empty environment's.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// `DEADLINE_MS`: the request budget (default: the API Gateway REST preset, 28 s).
    pub(crate) deadline: Option<Duration>,
    /// `OFFLOAD_AFTER_MS`: how long `POST /jobs/{ms}` runs before it is offloaded
    /// (default 2000).
    pub(crate) offload_after: Duration,
    /// `REDIS_URL`: keep tasks in Redis (feature `redis`) instead of in memory.
    pub(crate) redis_url: Option<String>,
    /// `TASKS_TABLE`: keep tasks in this DynamoDB table (feature `dynamodb`) instead of in
    /// memory.
    pub(crate) tasks_table: Option<String>,
    /// `REST_TIMEOUT_MS`: the integration timeout of a REST API in front, when raised
    /// above 29 s (up to 300 s, or 15 min with response streaming).
    pub(crate) rest_cap: Option<Duration>,
    /// `CLOUDFRONT_TIMEOUT_MS`: the origin response timeout of a CloudFront distribution in
    /// front, when raised above 30 s (up to 60 s, or 180 s with a raised quota).
    pub(crate) cloudfront_cap: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            deadline: None,
            offload_after: Duration::from_millis(2000),
            redis_url: None,
            tasks_table: None,
            rest_cap: None,
            cloudfront_cap: None,
        }
    }
}

impl Settings {
    pub(crate) fn from_env() -> Result<Self, String> {
        Ok(Self {
            deadline: millis_from_env("DEADLINE_MS")?,
            offload_after: millis_from_env("OFFLOAD_AFTER_MS")?
                .unwrap_or(Self::default().offload_after),
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            tasks_table: std::env::var("TASKS_TABLE")
                .ok()
                .filter(|table| !table.is_empty()),
            rest_cap: millis_from_env("REST_TIMEOUT_MS")?,
            cloudfront_cap: millis_from_env("CLOUDFRONT_TIMEOUT_MS")?,
        })
    }

    /// For a local server: `DEADLINE_MS`, or the API Gateway REST preset (28 s).
    pub(crate) fn deadline_layer(&self) -> DeadlineLayer {
        self.deadline
            .map_or_else(DeadlineLayer::api_gateway_rest, DeadlineLayer::new)
    }

    /// The front doors' caps, with `REST_TIMEOUT_MS` and `CLOUDFRONT_TIMEOUT_MS` when set.
    pub(crate) fn front_doors(&self) -> Result<FrontDoors, String> {
        let mut doors = FrontDoors::new();
        if let Some(cap) = self.rest_cap {
            doors = doors
                .rest_cap(cap)
                .map_err(|error| format!("REST_TIMEOUT_MS: {error}"))?;
        }
        if let Some(cap) = self.cloudfront_cap {
            doors = doors
                .cloudfront_cap(Some(cap))
                .map_err(|error| format!("CLOUDFRONT_TIMEOUT_MS: {error}"))?;
        }
        Ok(doors)
    }

    /// On Lambda, under the runner: `DEADLINE_MS` when set; the deadline the runner takes
    /// from the front door and the function in any case.
    pub(crate) fn lambda_deadline_layer(&self) -> DeadlineLayer {
        self.deadline
            .map_or_else(DeadlineLayer::inherit, DeadlineLayer::new)
    }

    /// Behind the Lambda Web Adapter: the same deadlines, from the headers it forwards.
    pub(crate) fn adapter_deadline_layer(&self) -> Result<DeadlineLayer, String> {
        Ok(self
            .lambda_deadline_layer()
            .lambda_web_adapter(self.front_doors()?))
    }

    /// Offloading on the in-memory store, Redis with `REDIS_URL`, or DynamoDB with
    /// `TASKS_TABLE`; status endpoint at `/tasks`.
    pub(crate) async fn offload_layer(&self) -> Result<OffloadLayer, String> {
        let layer = match (&self.redis_url, &self.tasks_table) {
            (None, None) => OffloadLayer::new(MemoryStore::new()),
            (Some(_), Some(_)) => return Err("set REDIS_URL or TASKS_TABLE, not both".into()),
            #[cfg(feature = "redis")]
            (Some(url), None) => {
                let store = tower_serverless::offload::RedisStore::connect(url)
                    .await
                    .map_err(|error| format!("REDIS_URL {url}: {error}"))?;
                OffloadLayer::new(store)
            }
            #[cfg(not(feature = "redis"))]
            (Some(_), None) => {
                return Err("REDIS_URL needs the `redis` feature: --features redis".into())
            }
            #[cfg(feature = "dynamodb")]
            (None, Some(table)) => {
                use tower_serverless::offload::DynamoDbStore;
                let store = DynamoDbStore::new(dynamodb_client(), table);
                // The demo's DynamoDB Local starts empty; production tables are created
                // with the rest of the infrastructure (see DynamoDbStore's docs).
                if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
                    store
                        .create_table()
                        .await
                        .map_err(|error| format!("TASKS_TABLE {table}: {error}: {error:?}"))?;
                }
                OffloadLayer::new(store).max_result_bytes(DynamoDbStore::MAX_RESULT_BYTES)
            }
            #[cfg(not(feature = "dynamodb"))]
            (None, Some(_)) => {
                return Err("TASKS_TABLE needs the `dynamodb` feature: --features dynamodb".into())
            }
        };
        Ok(layer.after(self.offload_after))
    }
}

fn millis_from_env(name: &str) -> Result<Option<Duration>, String> {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| format!("{name} must be a whole number of milliseconds, got {text:?}")),
        Err(_) => Ok(None),
    }
}

/// The demo routes behind the deadline and offload layers, without escalation: each host
/// chooses its deadline layer and how escalations leave it.
pub(crate) fn layered(deadline: DeadlineLayer, offload: &OffloadLayer) -> Router {
    routes()
        .layer(offload.clone())
        .merge(offload.status_router())
        .layer(deadline)
}

/// The demo routes with every layer, for hosts that need `Error = Infallible`
/// (`axum::serve`).
pub(crate) fn serve_app(settings: &Settings, offload: &OffloadLayer) -> Router {
    layered(settings.deadline_layer(), offload).layer(EscalateLayer::new().infallible())
}

/// The routes, without any layer.
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/sleep/{ms}", get(sleep))
        .route("/jobs/{ms}", post(job))
        .route("/fail", get(fail))
        .route("/panic", get(panic))
        .route("/status/{code}", get(status))
}

async fn sleep(Path(ms): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}

async fn job(Path(ms): Path<u64>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    // Offloaded, this comes after the `202`, in the request's span all the same.
    tracing::info!(slept_ms = ms, "job done");
    Json(json!({ "job": "done", "slept_ms": ms }))
}

/// A typed handler error that must fail the invocation.
#[derive(Debug)]
pub(crate) struct DemoFailure;

impl IntoResponse for DemoFailure {
    fn into_response(self) -> Response {
        Escalation::new("DemoFailure", "the demo failed on purpose").into_response()
    }
}

async fn fail() -> Result<&'static str, DemoFailure> {
    Err(DemoFailure)
}

async fn panic() -> &'static str {
    panic!("the demo panicked on purpose")
}

async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(status) => (status, format!("status {code}\n")).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "not a status code\n").into_response(),
    }
}
