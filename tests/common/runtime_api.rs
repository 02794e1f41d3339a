//! The Lambda Runtime API, served on loopback for the real `lambda_runtime` client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

/// What the runtime posted for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response {
        request_id: String,
        body: Value,
    },
    Error {
        request_id: String,
        error_type: String,
        body: Value,
    },
}

#[derive(Clone)]
struct Shared {
    events: Arc<Mutex<mpsc::Receiver<(String, u64, Value)>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<(String, u64, Value)>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl RuntimeApi {
    /// Serves the API and points this process's Lambda environment at it.
    pub async fn start() -> Self {
        let (events, events_rx) = mpsc::channel(16);
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let shared = Shared {
            events: Arc::new(Mutex::new(events_rx)),
            outcomes: outcomes_tx,
        };
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .with_state(shared);
        let addr = super::serve(router).await;
        // One test function per binary sets these, before the runtime reads them.
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", addr.to_string());
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "tower-serverless-test");
        std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        Self {
            addr,
            events,
            outcomes,
        }
    }

    /// Hands `event` to the runtime with `budget` until the function deadline, and waits for
    /// what the runtime posts.
    pub async fn invoke(&mut self, request_id: &str, budget: Duration, event: Value) -> Outcome {
        let deadline = SystemTime::now() + budget;
        let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        self.events
            .send((request_id.to_owned(), deadline_ms, event))
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(20), self.outcomes.recv())
            .await
            .expect("the runtime posted no outcome")
            .unwrap();
        match &outcome {
            Outcome::Response { request_id: id, .. } | Outcome::Error { request_id: id, .. } => {
                assert_eq!(id, request_id)
            }
        }
        outcome
    }
}

async fn next(State(shared): State<Shared>) -> Response {
    let Some((request_id, deadline_ms, event)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline_ms.into());
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:test"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".parse().unwrap(),
    );
    (headers, event.to_string()).into_response()
}

async fn response(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = shared.outcomes.send(Outcome::Response {
        request_id: id,
        body,
    });
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = shared.outcomes.send(Outcome::Error {
        request_id: id,
        error_type,
        body,
    });
    StatusCode::ACCEPTED
}

/// An API Gateway HTTP API (payload 2.0) event for `method path`, arrived at `time_epoch_ms`.
pub fn http_api_event(method: &str, path: &str, time_epoch_ms: u64) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": { "host": "api.example.com", "content-length": "0" },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "test"
            },
            "requestId": "gateway-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:00:00:00 +0000",
            "timeEpoch": time_epoch_ms
        },
        "isBase64Encoded": false
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
