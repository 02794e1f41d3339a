//! The demo application shared by the examples and the integration tests: its routes are a
//! fixed contract (see the README).

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_serverless::Escalation;

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
