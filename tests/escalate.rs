//! EscalateLayer through the hosts it serves: called as `lambda_http` calls a service, and
//! under a real `axum::serve` in infallible mode.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_serverless::escalate::{error_type, EscalateError, EscalateLayer, Escalation};

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn call(layer: EscalateLayer, path: &str) -> Result<Response<Body>, EscalateError> {
    layer.layer(app::routes()).oneshot(get(path)).await
}

#[tokio::test]
async fn typed_handler_error_fails_with_its_error_type() {
    let error = call(EscalateLayer::new(), "/fail").await.unwrap_err();
    assert_eq!(error.error_type(), "DemoFailure");
    assert_eq!(error.message(), "the demo failed on purpose");
    assert_eq!(error.to_string(), "DemoFailure: the demo failed on purpose");
}

#[tokio::test]
async fn ordinary_responses_pass_untouched() {
    let response: Response<Body> = call(EscalateLayer::new(), "/hello").await.unwrap();
    let response = common::collect(response).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("content-type"), "text/plain; charset=utf-8");
}

#[tokio::test]
async fn status_policy_escalates_codes_in_range_only() {
    let layer = EscalateLayer::new().status_spec("500-599").unwrap();
    let error = call(layer.clone(), "/status/503").await.unwrap_err();
    assert_eq!(error.error_type(), "HttpStatus503");
    assert_eq!(
        error.error_type(),
        format!("{}503", error_type::HTTP_STATUS_PREFIX)
    );
    let passed = call(layer, "/status/404").await.unwrap();
    assert_eq!(passed.status(), StatusCode::NOT_FOUND);

    let without_policy = call(EscalateLayer::new(), "/status/503").await.unwrap();
    assert_eq!(without_policy.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn bad_status_spec_is_a_configuration_error() {
    let error = EscalateLayer::new().status_spec("500-5xx").unwrap_err();
    assert!(error.to_string().contains("\"500-5xx\""), "{error}");
}

#[tokio::test]
async fn panics_escalate_with_their_message() {
    common::quiet_panics();
    let error = call(EscalateLayer::new(), "/panic").await.unwrap_err();
    assert_eq!(error.error_type(), error_type::PANIC);
    assert_eq!(
        error.message(),
        "the handler panicked: the demo panicked on purpose"
    );
}

#[tokio::test]
async fn panics_unwind_when_catching_is_off() {
    common::quiet_panics();
    let service = EscalateLayer::new().catch_panic(false).layer(app::routes());
    let joined = tokio::spawn(service.oneshot(get("/panic"))).await;
    assert!(joined.unwrap_err().is_panic());
}

#[tokio::test]
async fn marker_policy_can_be_turned_off() {
    let response = call(EscalateLayer::new().marker(false), "/fail")
        .await
        .unwrap();
    let response = common::collect(response).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.text(), "Internal Server Error");
}

#[tokio::test]
async fn predicate_escalates_what_it_returns() {
    let layer = EscalateLayer::new().predicate(|response: &Response<Body>| {
        response
            .headers()
            .contains_key("x-escalate")
            .then(|| Escalation::new("Flagged", "the response asked for it"))
    });
    let inner = service_fn(|request: Request<Body>| async move {
        let mut response = Response::new(Body::empty());
        if request.uri().path() == "/flag" {
            response
                .headers_mut()
                .insert("x-escalate", "1".parse().unwrap());
        }
        Ok::<_, Infallible>(response)
    });
    let service = layer.layer(inner);
    let error = service.clone().oneshot(get("/flag")).await.unwrap_err();
    assert_eq!(error.error_type(), "Flagged");
    assert!(service.oneshot(get("/")).await.is_ok());
}

#[derive(Debug, thiserror::Error)]
#[error("database unreachable")]
struct DbDown;

#[tokio::test]
async fn inner_errors_escalate_with_their_source() {
    let inner = service_fn(|_: Request<Body>| async { Err::<Response<Body>, _>(DbDown) });
    let error = EscalateLayer::new()
        .layer(inner)
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), error_type::SERVICE_ERROR);
    assert_eq!(error.message(), "database unreachable");
    let source = std::error::Error::source(&error).unwrap();
    assert!(source.is::<DbDown>());
}

/// A service whose readiness fails.
#[derive(Clone)]
struct NeverReady;

impl Service<Request<Body>> for NeverReady {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("backend closed".into()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn readiness_errors_escalate_on_the_next_call() {
    let error = EscalateLayer::new()
        .layer(NeverReady)
        .oneshot(get("/"))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), error_type::SERVICE_ERROR);
    assert_eq!(error.message(), "backend closed");
    let json = EscalateLayer::new()
        .infallible()
        .layer(NeverReady)
        .oneshot(get("/"))
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[cfg(feature = "lambda")]
#[tokio::test]
async fn lambda_http_requests_and_diagnostics() {
    use lambda_http::lambda_runtime::Diagnostic;

    let request: lambda_http::Request = Request::get("/fail")
        .body(lambda_http::Body::Empty)
        .unwrap();
    let service = EscalateLayer::new().layer(app::routes());
    let error = service.clone().oneshot(request).await.unwrap_err();
    let diagnostic = Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "DemoFailure");
    assert_eq!(diagnostic.error_message, "the demo failed on purpose");

    let request: lambda_http::Request = Request::get("/hello")
        .body(lambda_http::Body::Empty)
        .unwrap();
    assert_eq!(
        service.oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn infallible_mode_under_axum_serve() {
    common::quiet_panics();
    let router = app::routes().layer(
        EscalateLayer::new()
            .status_spec("502-504")
            .unwrap()
            .infallible()
            .escalation_status(StatusCode::from_u16(599).unwrap()),
    );
    let addr = common::serve(router).await;
    let client = common::HttpClient::new();
    let url = |path: &str| format!("http://{addr}{path}");

    let failed = client.get(&url("/fail")).await;
    assert_eq!(failed.status.as_u16(), 599);
    assert_eq!(failed.header("content-type"), "application/json");
    assert_eq!(
        failed.json(),
        serde_json::json!({"errorType": "DemoFailure", "errorMessage": "the demo failed on purpose"})
    );

    let panicked = client.get(&url("/panic")).await;
    assert_eq!(panicked.status.as_u16(), 599);
    assert_eq!(panicked.json()["errorType"], "Panic");
    assert!(
        !panicked.text().contains("on purpose"),
        "internal text leaked: {}",
        panicked.text()
    );

    let gateway = client.get(&url("/status/503")).await;
    assert_eq!(gateway.status.as_u16(), 599);
    assert_eq!(gateway.json()["errorType"], "HttpStatus503");

    let hello = client.get(&url("/hello")).await;
    assert_eq!((hello.status, hello.text()), (StatusCode::OK, "hello"));
    let not_found = client.get(&url("/status/404")).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn infallible_mode_defaults_to_500() {
    let response = EscalateLayer::new()
        .infallible()
        .layer(app::routes())
        .oneshot(get("/fail"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
