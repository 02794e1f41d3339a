//! DeadlineLayer: budgets from every source, the 504 before the gateway's, what the handler
//! sees, and the warning for slow requests.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, Request, Response, StatusCode};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_serverless::deadline::{self, DeadlineLayer, DeadlineSource, TrustedHeader};
use tower_serverless::escalate::{error_type, EscalateLayer};
use tower_serverless::Deadline;

/// A handler that works for `work`, then answers with its deadline as seen from the
/// extension and from the task-local.
fn handler(
    work: Duration,
) -> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
       + Clone {
    service_fn(move |request: Request<Body>| async move {
        let from_extension = *request.extensions().get::<Deadline>().unwrap();
        let from_task = deadline::current().unwrap();
        tokio::time::sleep(work).await;
        let mut response = Response::new(Body::from("done"));
        response
            .extensions_mut()
            .insert((from_extension, from_task));
        Ok(response)
    })
}

async fn seen(layer: DeadlineLayer, request: Request<Body>) -> (Deadline, Deadline) {
    let response = layer
        .layer(handler(Duration::ZERO))
        .oneshot(request)
        .await
        .unwrap();
    *response.extensions().get::<(Deadline, Deadline)>().unwrap()
}

fn with_header(name: &str, value: &str) -> Request<Body> {
    Request::get("/")
        .header(name, value)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn slow_handler_gets_504_problem_at_the_budget_and_is_dropped() {
    let (guard, dropped) = oneshot::channel::<()>();
    let guard = Mutex::new(Some(guard));
    let slow = service_fn(move |_: Request<Body>| {
        let guard = guard.lock().unwrap().take();
        async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(guard);
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }
    });
    let start = Instant::now();
    let response = DeadlineLayer::new(Duration::from_secs(5))
        .layer(slow)
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(
        dropped.await.is_err(),
        "the handler's future was dropped, its work stopped"
    );

    let response = common::collect(response).await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.header("content-type"), "application/problem+json");
    assert_eq!(
        response.json(),
        serde_json::json!({
            "type": "about:blank",
            "title": "Gateway Timeout",
            "status": 504,
            "detail": "the request did not complete within its time budget of 5000 ms",
        })
    );
}

#[tokio::test(start_paused = true)]
async fn fast_handler_is_untouched() {
    let response = DeadlineLayer::new(Duration::from_secs(5))
        .layer(handler(Duration::from_secs(4)))
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert!(response
        .extensions()
        .get::<deadline::DeadlineExceeded>()
        .is_none());
    let response = common::collect(response).await;
    assert_eq!((response.status, response.text()), (StatusCode::OK, "done"));
}

#[tokio::test(start_paused = true)]
async fn extension_and_task_local_agree() {
    let start = Instant::now();
    let (from_extension, from_task) = seen(
        DeadlineLayer::new(Duration::from_secs(5)),
        Request::new(Body::empty()),
    )
    .await;
    assert_eq!(from_extension, from_task);
    assert_eq!(from_task.instant(), start + Duration::from_secs(5));
    assert_eq!(from_task.source(), DeadlineSource::Budget);
}

#[tokio::test(start_paused = true)]
async fn presets_keep_a_margin_below_the_gateway_cap() {
    assert_eq!(
        DeadlineLayer::api_gateway_rest().budget(),
        Duration::from_secs(28)
    );
    assert_eq!(
        DeadlineLayer::api_gateway_http().budget(),
        Duration::from_secs(29)
    );
    let layer = DeadlineLayer::api_gateway_rest()
        .margin(Duration::from_millis(2500))
        .unwrap();
    assert_eq!(layer.budget(), Duration::from_millis(26_500));
}

#[tokio::test(start_paused = true)]
async fn trusted_header_shortens_but_never_extends() {
    let start = Instant::now();
    let header = || TrustedHeader::Millis(HeaderName::from_static("x-timeout-ms"));
    let layer = DeadlineLayer::new(Duration::from_secs(5)).trust_header(header());

    let (deadline, _) = seen(layer.clone(), with_header("x-timeout-ms", "2000")).await;
    assert_eq!(deadline.instant() - start, Duration::from_secs(2));
    assert_eq!(deadline.source(), DeadlineSource::Header);

    let (deadline, _) = seen(layer.clone(), with_header("x-timeout-ms", "10000")).await;
    assert_eq!(deadline.instant() - start, Duration::from_secs(5));
    assert_eq!(deadline.source(), DeadlineSource::Budget);

    let untrusted = DeadlineLayer::new(Duration::from_secs(5));
    let (deadline, _) = seen(untrusted, with_header("x-timeout-ms", "2000")).await;
    assert_eq!(deadline.instant() - start, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn bad_header_values_are_ignored_or_clamped() {
    let start = Instant::now();
    let layer = DeadlineLayer::new(Duration::from_secs(5))
        .trust_header(TrustedHeader::EnvoyExpectedTimeout)
        .trust_header(TrustedHeader::GrpcTimeout);
    for (name, value) in [
        ("x-envoy-expected-rq-timeout-ms", "soon"),
        ("x-envoy-expected-rq-timeout-ms", "-1500"),
        ("x-envoy-expected-rq-timeout-ms", "0"),
        (
            "x-envoy-expected-rq-timeout-ms",
            "99999999999999999999999999",
        ),
        ("x-envoy-expected-rq-timeout-ms", "1e3"),
        ("grpc-timeout", "123456789S"),
        ("grpc-timeout", "5d"),
        ("grpc-timeout", "S"),
        ("grpc-timeout", "99999999H"),
    ] {
        let (deadline, _) = seen(layer.clone(), with_header(name, value)).await;
        assert_eq!(
            deadline.instant() - start,
            Duration::from_secs(5),
            "{name}: {value}"
        );
    }

    // A huge announced budget is clamped to the maximum the layer accepts from headers.
    let clamped = DeadlineLayer::new(Duration::from_secs(60))
        .trust_header(TrustedHeader::GrpcTimeout)
        .max_header_budget(Duration::from_secs(10))
        .unwrap();
    let (deadline, _) = seen(clamped, with_header("grpc-timeout", "99999999H")).await;
    assert_eq!(deadline.instant() - start, Duration::from_secs(10));
    assert_eq!(deadline.source(), DeadlineSource::Header);
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_units_set_the_budget() {
    let start = Instant::now();
    let layer = DeadlineLayer::new(Duration::from_secs(4 * 3600))
        .trust_header(TrustedHeader::GrpcTimeout)
        .max_header_budget(Duration::from_secs(4 * 3600))
        .unwrap();
    for (value, want) in [
        ("2H", Duration::from_secs(7200)),
        ("3M", Duration::from_secs(180)),
        ("4S", Duration::from_secs(4)),
        ("5m", Duration::from_millis(5)),
        ("6u", Duration::from_micros(6)),
        ("7n", Duration::from_nanos(7)),
    ] {
        let (deadline, _) = seen(layer.clone(), with_header("grpc-timeout", value)).await;
        assert_eq!(deadline.instant() - start, want, "{value}");
    }
}

#[tokio::test(start_paused = true)]
async fn nested_layers_shorten_never_extend() {
    let start = Instant::now();
    let outer_short = DeadlineLayer::new(Duration::from_secs(2));
    let inner_long = DeadlineLayer::new(Duration::from_secs(8));
    let service = outer_short.layer(inner_long.layer(handler(Duration::ZERO)));
    let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
    let (deadline, _) = *response.extensions().get::<(Deadline, Deadline)>().unwrap();
    assert_eq!(deadline.instant() - start, Duration::from_secs(2));

    let outer_long = DeadlineLayer::new(Duration::from_secs(8));
    let inner_short = DeadlineLayer::new(Duration::from_secs(3));
    let service = outer_long.layer(inner_short.layer(handler(Duration::ZERO)));
    let response = service.oneshot(Request::new(Body::empty())).await.unwrap();
    let (deadline, _) = *response.extensions().get::<(Deadline, Deadline)>().unwrap();
    assert_eq!(deadline.instant() - start, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn pluggable_sources_take_part() {
    let start = Instant::now();
    let layer = DeadlineLayer::new(Duration::from_secs(5)).source(|parts| {
        parts
            .headers
            .contains_key("x-batch")
            .then(|| Deadline::after(Duration::from_secs(1), DeadlineSource::Custom("batch")))
    });
    let (deadline, _) = seen(layer.clone(), with_header("x-batch", "1")).await;
    assert_eq!(deadline.instant() - start, Duration::from_secs(1));
    assert_eq!(deadline.source(), DeadlineSource::Custom("batch"));
    let (deadline, _) = seen(layer, Request::new(Body::empty())).await;
    assert_eq!(deadline.source(), DeadlineSource::Budget);
}

#[tokio::test(start_paused = true)]
async fn timeouts_escalate_only_under_the_timeout_policy() {
    let deadline = || DeadlineLayer::new(Duration::from_secs(1));
    let slow = || handler(Duration::from_secs(10));

    let escalating = EscalateLayer::new()
        .timeouts(true)
        .layer(deadline().layer(slow()));
    let error = escalating
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), error_type::DEADLINE_EXCEEDED);

    let plain = EscalateLayer::new().layer(deadline().layer(slow()));
    let response = plain.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn custom_timeout_response_keeps_the_marker() {
    let layer = DeadlineLayer::new(Duration::from_secs(1)).timeout_response(|exceeded| {
        let mut response = Response::new(format!("late after {:?}", exceeded.budget()).into());
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
    });
    let response = layer
        .layer(handler(Duration::from_secs(2)))
        .oneshot(Request::new(Body::empty()))
        .await
        .unwrap();
    assert!(response
        .extensions()
        .get::<deadline::DeadlineExceeded>()
        .is_some());
    let response = common::collect(response).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text(), "late after 1s");
}

#[test]
fn warn_fraction_must_be_a_fraction() {
    assert!(DeadlineLayer::new(Duration::from_secs(1))
        .warn_above(1.5)
        .is_err());
    assert!(DeadlineLayer::new(Duration::from_secs(1))
        .warn_above(-0.1)
        .is_err());
    assert!(DeadlineLayer::new(Duration::from_secs(1))
        .warn_above(0.5)
        .is_ok());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn slow_responses_are_logged_past_the_fraction_only() {
    let captured = common::Captured::default();
    let _guard = captured.install_on_thread();

    let layer = DeadlineLayer::new(Duration::from_secs(10));
    let request = || {
        Request::post("/reports?year=2026")
            .body(Body::empty())
            .unwrap()
    };
    layer
        .layer(handler(Duration::from_secs(7)))
        .oneshot(request())
        .await
        .unwrap();
    assert!(
        captured.0.lock().unwrap().is_empty(),
        "70 % of the budget is not slow"
    );

    layer
        .layer(handler(Duration::from_secs(9)))
        .oneshot(request())
        .await
        .unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("the request used most of its time budget"),
        "{log}"
    );
    assert!(log.contains("method=POST"), "{log}");
    assert!(log.contains(r#"path="/reports?year=2026""#), "{log}");
    assert!(log.contains("elapsed_ms=9000"), "{log}");
    assert!(log.contains("budget_ms=10000"), "{log}");
}

#[tokio::test]
async fn demo_answers_504_after_its_deadline_through_a_real_server() {
    let settings = app::Settings {
        deadline: Some(Duration::from_millis(1000)),
        ..Default::default()
    };
    let offload = settings.offload_layer().await.unwrap();
    let addr = common::serve(app::serve_app(&settings, &offload)).await;
    let client = common::HttpClient::new();

    let start = std::time::Instant::now();
    let late = client.get(&format!("http://{addr}/sleep/3000")).await;
    let elapsed = start.elapsed();
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT);
    late.problem("the request did not complete within its time budget of 1000 ms");
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");

    let quick = client.get(&format!("http://{addr}/sleep/100")).await;
    assert_eq!(quick.status, StatusCode::OK);
    assert_eq!(quick.json(), serde_json::json!({"slept_ms": 100}));
}

#[tokio::test(start_paused = true)]
async fn any_duration_is_a_budget_without_panics() {
    // `Duration::MAX` and other huge settings overflowed `Instant` on every call.
    for budget in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        Duration::ZERO,
    ] {
        let layer = DeadlineLayer::new(budget).trust_header(TrustedHeader::Millis(
            HeaderName::from_static("x-budget-ms"),
        ));
        let layer = match layer.clone().max_header_budget(Duration::MAX) {
            Ok(layer) => layer,
            Err(_) => layer,
        };
        let request = with_header("x-budget-ms", "18446744073709551615");
        let response = layer
            .layer(handler(Duration::from_millis(1)))
            .oneshot(request)
            .await
            .unwrap();
        let want = if budget.is_zero() {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::OK
        };
        assert_eq!(response.status(), want, "{budget:?}");
    }
    let (from_extension, _) = seen(DeadlineLayer::new(Duration::MAX), Request::default()).await;
    assert!(from_extension.remaining() > Duration::from_secs(29 * 365 * 86_400));
}

#[test]
fn settings_that_cannot_hold_are_errors() {
    let cap = Duration::from_secs(29);
    assert!(DeadlineLayer::new(cap).margin(cap).is_err(), "margin = cap");
    assert!(DeadlineLayer::new(cap)
        .margin(Duration::from_secs(30))
        .is_err());
    assert!(DeadlineLayer::api_gateway_rest()
        .margin(Duration::from_secs(29))
        .is_err());
    let layer = DeadlineLayer::new(cap)
        .margin(Duration::from_secs(28))
        .unwrap();
    assert_eq!(layer.budget(), Duration::from_secs(1));
    assert!(DeadlineLayer::new(cap)
        .max_header_budget(Duration::ZERO)
        .is_err());
}
