//! The client layers in a real hyper client, against the demo server and a second server on
//! loopback.
#![cfg(feature = "axum")]

#[path = "../examples/app/mod.rs"]
mod app;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_serverless::client::{
    DeadlinePassed, Follow, FollowBody, FollowError, FollowLayer, Followed, PropagateDeadlineLayer,
};
use tower_serverless::deadline::{self, DeadlineSource, TrustedHeader};
use tower_serverless::{Deadline, DeadlineLayer};

/// The demo on a real server, offloading after 200 ms.
struct Demo {
    addr: std::net::SocketAddr,
    /// The `Location` of every `202` and `303` the demo answered, in order.
    seen: tokio::sync::watch::Receiver<Vec<String>>,
    offload: tower_serverless::OffloadLayer,
}

async fn demo() -> Demo {
    let settings = app::Settings {
        offload_after: Duration::from_millis(200),
        ..Default::default()
    };
    let offload = settings.offload_layer().await.unwrap();
    let (record, seen) = tokio::sync::watch::channel(Vec::new());
    let app = app::serve_app(&settings, &offload).layer(axum::middleware::map_response(
        move |response: axum::response::Response| {
            if let Some(location) = response.headers().get("location") {
                let location = location.to_str().unwrap().to_owned();
                record.send_modify(|seen| seen.push(location));
            }
            std::future::ready(response)
        },
    ));
    Demo {
        addr: common::serve(app).await,
        seen,
        offload,
    }
}

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A hyper client behind `FollowLayer` with its default settings.
fn follower() -> Follow<Client<HttpConnector, Full<Bytes>>> {
    FollowLayer::new().layer(hyper_client())
}

fn post(url: String) -> Request<Full<Bytes>> {
    Request::post(url).body(Full::default()).unwrap()
}

async fn text(response: Response<impl http_body::Body<Error = BoxError>>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_slow_job_returns_its_final_body_through_one_call() {
    let Demo { addr, seen, .. } = demo().await;
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new())
        .layer(PropagateDeadlineLayer::grpc_timeout())
        .service(hyper_client());
    let response = client
        .oneshot(post(format!("http://{addr}/jobs/1200")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"{"job":"done","slept_ms":1200}"#);
    assert_eq!(seen.borrow().len(), 2, "a 202, then a 303 to the result");

    // A fast one passes straight through.
    let fast = follower()
        .oneshot(post(format!("http://{addr}/jobs/10")))
        .await
        .unwrap();
    assert_eq!(text(fast).await, r#"{"job":"done","slept_ms":10}"#);
}

#[tokio::test]
async fn a_cancelled_task_is_a_typed_error() {
    let Demo { addr, mut seen, .. } = demo().await;
    let call = tokio::spawn(follower().oneshot(post(format!("http://{addr}/jobs/10000"))));
    let location = seen.wait_for(|seen| !seen.is_empty()).await.unwrap()[0].clone();
    let cancel = Request::delete(format!("http://{addr}{location}"))
        .body(Full::default())
        .unwrap();
    let cancelled = hyper_client().request(cancel).await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let error = call.await.unwrap().unwrap_err();
    let error = error.downcast_ref::<FollowError>().expect("a FollowError");
    assert!(matches!(error, FollowError::Cancelled { .. }), "{error:?}");
}

#[tokio::test]
async fn the_callers_deadline_ends_the_following() {
    let Demo {
        addr,
        seen,
        offload,
    } = demo().await;
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new().cancel_on_drop(true))
        .layer(PropagateDeadlineLayer::grpc_timeout())
        .service(hyper_client());
    let started = std::time::Instant::now();
    let deadline = Deadline::after(Duration::from_millis(900), DeadlineSource::Custom("caller"));
    let result = deadline
        .scope(client.oneshot(post(format!("http://{addr}/jobs/10000"))))
        .await;
    let error = result.unwrap_err();
    assert!(
        error.is::<DeadlinePassed>()
            || matches!(
                error.downcast_ref::<FollowError>(),
                Some(FollowError::TimedOut { .. })
            ),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Given up, the task is cancelled (`cancel_on_drop`), by a request of its own: its
    // ten seconds of work stop long before their end.
    tokio::time::timeout(Duration::from_secs(5), offload.detached().wait_idle())
        .await
        .expect("the work was stopped");
    let location = seen.borrow()[0].clone();
    let status = hyper_client()
        .get(format!("http://{addr}{location}").parse().unwrap())
        .await
        .unwrap();
    let body = text(status.map(|b| b.map_err(BoxError::from))).await;
    assert!(body.contains(r#""status":"cancelled""#), "{body}");
}

#[tokio::test]
async fn the_cancelling_request_runs_in_the_span_the_follower_was_dropped_in() {
    use tracing::Instrument;

    let captured = common::Captured::default();
    let _logs = captured.install_on_thread();
    let Demo { addr, offload, .. } = demo().await;
    // An inner client that logs each request, as a `TraceLayer` on a client would, and
    // says when the follower asks for the task's status.
    let (polling, mut polled) = tokio::sync::mpsc::unbounded_channel();
    let logged = tower::service_fn(move |request: Request<Full<Bytes>>| {
        tracing::info!(method = %request.method(), "client request");
        if request.method() == http::Method::GET {
            let _ = polling.send(());
        }
        hyper_client().request(request)
    });
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new().cancel_on_drop(true))
        .service(logged);
    let following = client.oneshot(post(format!("http://{addr}/jobs/10000")));
    // Given up once it follows the offloaded job, inside the caller's span.
    async {
        tokio::select! {
            _ = following => panic!("a ten-second job finished"),
            _ = polled.recv() => {}
        }
    }
    .instrument(tracing::info_span!("caller", order = 7))
    .await;

    tokio::time::timeout(Duration::from_secs(5), offload.detached().wait_idle())
        .await
        .expect("the work was cancelled");
    let logs = captured.text();
    let delete = logs
        .lines()
        .find(|line| line.contains("method=DELETE"))
        .unwrap_or_else(|| panic!("no DELETE was logged:\n{logs}"));
    assert!(delete.contains("caller{order=7}"), "{delete}");
}

#[tokio::test]
async fn the_remaining_time_reaches_the_next_server() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let next = Router::new()
        .route(
            "/remaining",
            get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async {
                    let deadline = deadline::current().unwrap();
                    format!(
                        "{:?} {}",
                        deadline.source(),
                        deadline.remaining().as_millis()
                    )
                }
            }),
        )
        .layer(
            DeadlineLayer::new(Duration::from_secs(30)).trust_header(TrustedHeader::GrpcTimeout),
        );
    let addr = common::serve(next).await;
    for layer in [
        PropagateDeadlineLayer::grpc_timeout(),
        PropagateDeadlineLayer::millis(http::HeaderName::from_static("grpc-timeout-unused")),
    ] {
        let client = ServiceBuilder::new().layer(layer).service(hyper_client());
        let deadline = Deadline::after(Duration::from_secs(2), DeadlineSource::Custom("caller"));
        let request = Request::get(format!("http://{addr}/remaining"))
            .body(Full::default())
            .unwrap();
        let answer = deadline.scope(client.oneshot(request)).await.unwrap();
        let answer = text(answer.map(|b| b.map_err(BoxError::from))).await;
        let (source, ms) = answer.split_once(' ').unwrap();
        let ms: u64 = ms.parse().unwrap();
        if source == "Header" {
            assert!((1_000..=2_000).contains(&ms), "{answer}");
        } else {
            // A header the server does not trust leaves it its own 30 s.
            assert_eq!(source, "Budget", "{answer}");
        }
    }

    // A spent deadline sends nothing.
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::grpc_timeout())
        .service(hyper_client());
    let spent = Deadline::after(Duration::ZERO, DeadlineSource::Custom("caller"));
    let request = Request::get(format!("http://{addr}/remaining"))
        .body(Full::default())
        .unwrap();
    let error = spent.scope(client.oneshot(request)).await.unwrap_err();
    assert!(error.is::<DeadlinePassed>(), "{error:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A server that asks for a wait past the follower's limit: the result cannot come in time,
/// and the caller gets its `TimedOut` (with the status URL to come back to) at once, not
/// once the limit has passed for nothing. A wait past any clock is one too, not a panic.
#[tokio::test]
async fn a_wait_past_the_limit_ends_the_following_at_once() {
    for retry_after in ["3600", "18446744073709551615", "99999999999999999999999"] {
        let (server, status_calls) = job_server(retry_after, || None);
        let addr = common::serve(server).await;
        let client = ServiceBuilder::new()
            .layer(FollowLayer::new().max_wait(Duration::from_secs(5)))
            .service(hyper_client());
        let started = std::time::Instant::now();
        let error = client
            .oneshot(post(format!("http://{addr}/job")))
            .await
            .unwrap_err();
        let Some(FollowError::TimedOut { location, waited }) = error.downcast_ref::<FollowError>()
        else {
            panic!("{error:?}");
        };
        assert_eq!(location.path(), "/status");
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{waited:?}"
        );
        assert_eq!(status_calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        // What a caller logs says why, and not that a result was waited for in the
        // microseconds it took to read the `202`.
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("gave up after {waited:?}: "))
                && message.contains("not come within the time allowed")
                && message.ends_with(&format!("the task is at {location}")),
            "{message}"
        );
    }
}

/// A gateway's `502` or `504` on a poll (the status endpoint's environment failed, or did
/// not answer in time) says nothing of the task: the next poll may land elsewhere. Nor does
/// a `408` (a server or proxy that closed the connection as the poll came), which RFC 9110
/// lets a client repeat.
#[tokio::test]
async fn a_gateway_error_on_a_poll_is_polled_past() {
    for status in [
        StatusCode::BAD_GATEWAY,
        StatusCode::GATEWAY_TIMEOUT,
        StatusCode::REQUEST_TIMEOUT,
    ] {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = polls.clone();
        let (server, _) = job_server("1", move || {
            let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            Some(if first {
                status.into_response()
            } else {
                "done".into_response()
            })
        });
        assert_eq!(followed(server).await, "done", "{status}");
    }
}

/// The demo behind a gateway that answers the result's `GET` with `status` and
/// `retry_after` the first `failures` times; and how many result `GET`s it saw.
async fn failing_gateway(
    status: StatusCode,
    failures: usize,
    retry_after: &'static str,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let settings = app::Settings {
        offload_after: Duration::from_millis(200),
        ..Default::default()
    };
    let offload = settings.offload_layer().await.unwrap();
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = gets.clone();
    let gateway = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let is_result = request.uri().path().ends_with("/result");
            let counted = counted.clone();
            async move {
                if is_result && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures
                {
                    return (status, [("retry-after", retry_after)]).into_response();
                }
                next.run(request).await
            }
        },
    );
    let addr = common::serve(app::serve_app(&settings, &offload).layer(gateway)).await;
    (addr, gets)
}

/// The result URL a followed response names, checked to be its task's on `addr`.
fn result_url(response: &Response<FollowBody>, addr: std::net::SocketAddr) -> http::Uri {
    let followed = response
        .extensions()
        .get::<Followed>()
        .expect("the response says where it was read")
        .clone();
    let status = followed.status.to_string();
    assert!(
        status.starts_with(&format!("http://{addr}/tasks/")),
        "{status}"
    );
    assert_eq!(followed.result.to_string(), format!("{status}/result"));
    followed.result
}

/// A gateway's `502` on the result's `GET` (the environment that served it failed) does not
/// lose the result: the `GET` is repeated, as a poll would be.
#[tokio::test]
async fn a_result_get_a_gateway_failed_is_repeated() {
    for status in [
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::GATEWAY_TIMEOUT,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::REQUEST_TIMEOUT,
    ] {
        let (addr, gets) = failing_gateway(status, 1, "0").await;
        let response = follower()
            .oneshot(post(format!("http://{addr}/jobs/400")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{status}");
        result_url(&response, addr);
        assert_eq!(text(response).await, r#"{"job":"done","slept_ms":400}"#);
        assert_eq!(
            gets.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "{status}"
        );
    }
}

/// A result that is still unavailable after three `GET`s is handed back, since a stored
/// response may have that status too; but the caller is not left without the task: the
/// response says where its result is, and a `GET` there reads it once the gateway answers.
#[tokio::test]
async fn a_result_get_that_keeps_failing_is_handed_back_after_three() {
    let (addr, gets) = failing_gateway(StatusCode::SERVICE_UNAVAILABLE, 3, "0").await;
    let response = follower()
        .oneshot(post(format!("http://{addr}/jobs/400")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 3);
    let result = result_url(&response, addr);

    let again = hyper_client()
        .get(result)
        .await
        .unwrap()
        .map(|body| body.map_err(BoxError::from));
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(text(again).await, r#"{"job":"done","slept_ms":400}"#);
}

/// Nor is the result's `GET` repeated past the caller's time: a gateway that asks to come
/// back in an hour is the answer now.
#[tokio::test]
async fn a_result_get_is_not_repeated_past_the_time_limit() {
    let (addr, gets) = failing_gateway(StatusCode::TOO_MANY_REQUESTS, 3, "3600").await;
    let following = FollowLayer::new()
        .max_wait(Duration::from_secs(60))
        .layer(hyper_client())
        .oneshot(post(format!("http://{addr}/jobs/400")));
    let response = tokio::time::timeout(Duration::from_secs(30), following)
        .await
        .expect("the 429 is handed back within the time limit")
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    result_url(&response, addr);
}

/// A hyper server whose `POST /job` answers `202` with `Location: /status`, and whose
/// `GET /status` drops the connection without an answer (its service fails) the first
/// `drops` times, then answers `done`; how many polls it saw; and whether a `DELETE /status`
/// came.
async fn dropping_server(
    drops: usize,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::sync::watch::Receiver<bool>,
) {
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let (delete, deleted) = tokio::sync::watch::channel(false);
    let delete = Arc::new(delete);
    let service = tower::service_fn(move |request: Request<hyper::body::Incoming>| {
        let counted = counted.clone();
        let delete = delete.clone();
        async move {
            if request.method() == http::Method::DELETE {
                delete.send_replace(true);
                let mut gone = Response::new(Full::new(Bytes::new()));
                *gone.status_mut() = StatusCode::NO_CONTENT;
                return Ok(gone);
            }
            if request.method() == http::Method::POST {
                let accepted = Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .header("location", "/status")
                    .header("retry-after", "0")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                return Ok(accepted);
            }
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < drops {
                return Err(std::io::Error::other("the connection goes down"));
            }
            Ok(Response::new(Full::new(Bytes::from_static(b"done"))))
        }
    });
    (common::serve_hyper(service).await, polls, deleted)
}

/// A poll whose connection fails before an answer comes (the environment serving it went
/// away) says nothing of the task either: the next poll is made, as after a gateway's `502`.
#[tokio::test]
async fn a_poll_whose_connection_failed_is_made_again() {
    let (addr, polls, _) = dropping_server(2).await;
    let response = follower()
        .oneshot(post(format!("http://{addr}/job")))
        .await
        .unwrap();
    assert_eq!(text(response).await, "done");
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// So is a poll whose status document fails midway (the environment went away while it
/// answered): what was read of it is no answer.
#[tokio::test]
async fn a_poll_whose_answer_failed_midway_is_made_again() {
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let (server, _) = job_server("0", move || {
        if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            return Some("done".into_response());
        }
        let (mut sender, body) = http_body_util::Channel::<Bytes, std::io::Error>::new(1);
        tokio::spawn(async move {
            let _ = sender.send_data(Bytes::from_static(b"{\"status\":")).await;
            tokio::task::yield_now().await;
            sender.abort(std::io::Error::other("the environment went away"));
        });
        let json = [("content-type", "application/json")];
        Some((json, axum::body::Body::new(body)).into_response())
    });
    assert_eq!(followed(server).await, "done");
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A status URL that three polls in a row cannot reach ends the call, with an error that
/// says where the task is, so that the caller can come back to it; not with the connection's
/// error alone, which names no task. A caller that asked for it cancels the task then.
#[tokio::test]
async fn a_status_url_that_cannot_be_reached_ends_the_call_naming_the_task() {
    let (addr, polls, mut deleted) = dropping_server(usize::MAX).await;
    let error = FollowLayer::new()
        .cancel_on_drop(true)
        .layer(hyper_client())
        .oneshot(post(format!("http://{addr}/job")))
        .await
        .unwrap_err();
    assert_eq!(polls.load(std::sync::atomic::Ordering::SeqCst), 3);
    let Some(FollowError::Unreachable { location, .. }) = error.downcast_ref::<FollowError>()
    else {
        panic!("{error:?}");
    };
    assert_eq!(location.to_string(), format!("http://{addr}/status"));
    let source = std::error::Error::source(&*error).expect("the connection's error");
    assert!(
        source
            .downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some(),
        "{source:?}"
    );
    // Given up while it may still run: cancelled, as asked.
    let cancelled = deleted.wait_for(|deleted| *deleted);
    tokio::time::timeout(Duration::from_secs(30), cancelled)
        .await
        .expect("the DELETE came")
        .unwrap();
}

/// A server whose `POST /job` answers `202` with `Location: /status` and `retry_after`, and
/// whose `GET /status` answers the same until `done` gives the result; and how many polls
/// it answered.
fn job_server<F>(retry_after: &str, done: F) -> (Router, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn() -> Option<axum::response::Response> + Clone + Send + Sync + 'static,
{
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = polls.clone();
    let retry_after = retry_after.to_owned();
    let running = move || {
        let headers = [
            ("location", "/status".to_owned()),
            ("retry-after", retry_after.clone()),
        ];
        (StatusCode::ACCEPTED, headers).into_response()
    };
    let poll = running.clone();
    let server = Router::new()
        .route(
            "/job",
            axum::routing::post(move || async move { running() }),
        )
        .route(
            "/status",
            get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = done().unwrap_or_else(&poll);
                async move { answer }
            }),
        );
    (server, polls)
}

/// What `POST /job` on `server` ends with, followed with the default settings.
async fn follow_job(server: Router) -> Result<Response<FollowBody>, BoxError> {
    let addr = common::serve(server).await;
    follower().oneshot(post(format!("http://{addr}/job"))).await
}

/// The body `POST /job` on `server` ends with, followed with the default settings.
async fn followed(server: Router) -> String {
    text(follow_job(server).await.unwrap()).await
}

/// RFC 9110 lets `Retry-After` be an HTTP date as well as seconds; a server that says
/// "not before 12:00:02" is not polled at 12:00:00.1.
#[tokio::test]
async fn a_retry_after_date_is_waited_for() {
    let polled = Arc::new(Mutex::new(None));
    let record = polled.clone();
    // Whole seconds: an HTTP date has no fractions. One to two seconds ahead.
    let now = std::time::SystemTime::now();
    let since = now.duration_since(std::time::UNIX_EPOCH).unwrap();
    let not_before = std::time::UNIX_EPOCH + Duration::from_secs(since.as_secs() + 2);
    let (server, _) = job_server(&httpdate::fmt_http_date(not_before), move || {
        record
            .lock()
            .unwrap()
            .get_or_insert(std::time::SystemTime::now());
        Some("done".into_response())
    });
    assert_eq!(followed(server).await, "done");
    let polled = polled.lock().unwrap().expect("polled");
    assert!(
        polled >= not_before,
        "polled {:?} before the date",
        not_before.duration_since(polled).unwrap_or_default()
    );
}

/// `Retry-After: 0` (or a date passed) gives no pace: the backoff's applies, not a poll
/// storm against a server that keeps saying it.
#[tokio::test]
async fn a_retry_after_of_nothing_is_no_reason_to_poll_without_pause() {
    let started = std::time::Instant::now();
    let (server, polls) = job_server("0", move || {
        (started.elapsed() >= Duration::from_millis(500)).then(|| "done".into_response())
    });
    assert_eq!(followed(server).await, "done");
    // The backoff (100 ms, doubling) polls 3 or 4 times in 500 ms; a storm, hundreds.
    let polls = polls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(polls <= 6, "{polls} polls in 500 ms");
}

/// A status URL may answer with the result itself: a JSON one larger than any status
/// document is still the result, whole.
#[tokio::test]
async fn a_large_json_result_from_the_status_url_is_the_result() {
    let items = "x".repeat(100 << 10);
    let result = serde_json::json!({ "status": "shipped", "items": items }).to_string();
    let expected = result.clone();
    let (server, _) = job_server("1", move || {
        Some(([("content-type", "application/json")], result.clone()).into_response())
    });
    assert_eq!(followed(server).await, expected);
}

/// Azure's status documents give a failure as an object, `{"code", "message"}`, where this
/// crate's give `error` and `error_type` as text.
#[tokio::test]
async fn a_failure_is_read_from_an_error_object_too() {
    let document = serde_json::json!({
        "status": "Failed",
        "error": { "code": "QuotaExceeded", "message": "no room left for the report" },
    })
    .to_string();
    let (server, _) = job_server("1", move || {
        Some(([("content-type", "application/json")], document.clone()).into_response())
    });
    let error = follow_job(server).await.unwrap_err();
    let Some(FollowError::Failed {
        reason, error_type, ..
    }) = error.downcast_ref::<FollowError>()
    else {
        panic!("{error:?}");
    };
    assert_eq!(reason, "no room left for the report");
    assert_eq!(error_type.as_deref(), Some("QuotaExceeded"));
}

/// A `202` without `Location` has nothing to follow (a queue's "accepted", Lambda's own
/// asynchronous `Invoke`): it is the answer, as a redirect without `Location` is for
/// tower-http's `FollowRedirect`.
#[tokio::test]
async fn a_202_without_location_is_the_answer() {
    let queued = Router::new().route(
        "/job",
        axum::routing::post(|| async { (StatusCode::ACCEPTED, "queued") }),
    );
    let response = follow_job(queued).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        response.extensions().get::<Followed>().is_none(),
        "nothing was followed"
    );
    assert_eq!(text(response).await, "queued");
}

/// A status URL that says the task is done but not where its result is (a `303` without
/// `Location`) ends the call with an error that names that status URL, where the caller can
/// come back to the task; the first answer's has the URL the call was made to.
#[tokio::test]
async fn an_answer_without_a_usable_location_names_the_url_that_gave_it() {
    let (server, _) = job_server("1", || Some(StatusCode::SEE_OTHER.into_response()));
    let (status, url, addr) = no_location(server).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(url, format!("http://{addr}/status"));

    let nowhere = Router::new().route(
        "/job",
        axum::routing::post(|| async { (StatusCode::ACCEPTED, [("location", "http://[")]) }),
    );
    let (status, url, addr) = no_location(nowhere).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(url, format!("http://{addr}/job"));
}

/// The status and URL of the [`FollowError::NoLocation`] that `POST /job` on `server` ends
/// with, and the server's address.
async fn no_location(server: Router) -> (StatusCode, String, std::net::SocketAddr) {
    let addr = common::serve(server).await;
    let error = follower()
        .oneshot(post(format!("http://{addr}/job")))
        .await
        .unwrap_err();
    match error.downcast_ref::<FollowError>() {
        Some(FollowError::NoLocation { status, url }) => (*status, url.to_string(), addr),
        other => panic!("{other:?}"),
    }
}

/// A status URL that answers its final result with another success than `200` (`201
/// Created`, `204 No Content` for a deletion, as Azure's `Location` polling does): every
/// success but `202` ends the polling, and that answer is the result.
#[tokio::test]
async fn any_success_but_202_from_the_status_url_is_the_result() {
    for status in [StatusCode::CREATED, StatusCode::NO_CONTENT] {
        let (server, _) = job_server("1", move || Some(status.into_response()));
        let response = follow_job(server).await.unwrap();
        assert_eq!(response.status(), status);
        let followed = response.extensions().get::<Followed>().unwrap();
        assert_eq!(followed.result, followed.status, "read from the status URL");
        assert_eq!(followed.status.path(), "/status");
    }
}

/// Media types are case-insensitive (RFC 9110, section 8.3.1): a status document is one
/// whatever the case its `Content-Type` is written in, not a result to hand over.
#[tokio::test]
async fn a_status_document_is_read_whatever_the_case_of_its_media_type() {
    for content_type in ["Application/JSON", "application/json;charset=UTF-8"] {
        let (server, _) = job_server("1", move || {
            let failed = r#"{"status":"failed","error":"the report failed"}"#;
            Some(([("content-type", content_type)], failed).into_response())
        });
        let error = follow_job(server).await.unwrap_err();
        let Some(FollowError::Failed { reason, .. }) = error.downcast_ref::<FollowError>() else {
            panic!("{content_type}: {error:?}");
        };
        assert_eq!(reason, "the report failed");
    }
}

#[tokio::test]
async fn following_without_a_time_limit_is_a_setting_like_any_other() {
    let Demo { addr, .. } = demo().await;
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new().max_wait(Duration::MAX))
        .service(hyper_client());
    let response = client
        .oneshot(post(format!("http://{addr}/jobs/400")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, r#"{"job":"done","slept_ms":400}"#);
}

/// A server on another port (another host to the client) that counts its requests and
/// answers `GET /result` with `the result`, or `the result, and I have your credentials`
/// to a request that carries any.
async fn elsewhere() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new().route(
        "/result",
        get(move |headers: http::HeaderMap| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let forwarded = ["authorization", "cookie", "x-api-key"];
                if forwarded.iter().any(|name| headers.contains_key(*name)) {
                    "the result, and I have your credentials"
                } else {
                    "the result"
                }
            }
        }),
    );
    (common::serve(app).await, calls)
}

/// A server whose `POST /job` is accepted with `Location: /status`, and whose status URL
/// answers with `status`.
async fn pointing(status: Router) -> std::net::SocketAddr {
    let accepted = || async { (StatusCode::ACCEPTED, [("location", "/status")]) };
    common::serve(
        Router::new()
            .route("/job", axum::routing::post(accepted))
            .merge(status),
    )
    .await
}

#[tokio::test]
async fn every_way_to_point_at_another_host_is_refused_unless_allowed() {
    let (other, calls) = elsewhere().await;
    let result = format!("http://{other}/result");
    let document = serde_json::json!({ "status": "succeeded", "resourceLocation": result });
    let servers = [
        // A status document naming the resource.
        pointing(Router::new().route("/status", get(move || async move { axum::Json(document) })))
            .await,
        // A `303 See Other` from the status URL.
        pointing(
            Router::new().route(
                "/status",
                get(move || async move {
                    axum::response::Redirect::to(&format!("http://{other}/result"))
                }),
            ),
        )
        .await,
    ];
    for addr in servers {
        let refused = follower()
            .oneshot(post(format!("http://{addr}/job")))
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused.downcast_ref::<FollowError>(),
                Some(FollowError::OtherHost { location }) if location.to_string() == result
            ),
            "{refused:?}"
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);

        // Allowed, the other host gets the request, but not the credentials (or the API key)
        // sent to this one.
        let mut request = post(format!("http://{addr}/job"));
        let headers = request.headers_mut();
        headers.insert("authorization", "Bearer alice".parse().unwrap());
        headers.insert("cookie", "session=alice".parse().unwrap());
        headers.insert("x-api-key", "k-1".parse().unwrap());
        let allowed = ServiceBuilder::new()
            .layer(FollowLayer::new().other_hosts(true))
            .service(hyper_client())
            .oneshot(request)
            .await
            .unwrap();
        let followed = allowed.extensions().get::<Followed>().unwrap();
        assert_eq!(followed.status.to_string(), format!("http://{addr}/status"));
        assert_eq!(followed.result.to_string(), result, "where it was read");
        assert_eq!(text(allowed).await, "the result");
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn a_task_bound_to_its_owner_is_followed_with_the_callers_credentials() {
    let offload =
        tower_serverless::OffloadLayer::new(tower_serverless::offload::MemoryStore::new())
            .after(Duration::from_millis(50))
            .owner(|parts| {
                let credentials = parts.headers.get("authorization")?.to_str().ok()?;
                credentials.strip_prefix("Bearer ").map(str::to_owned)
            });
    // The work ends only once its `202` has left: the polls are what is tested.
    let accepted = Arc::new(tokio::sync::Notify::new());
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let signal = accepted.clone();
    let app = Router::new()
        .route(
            "/report",
            axum::routing::post(move || async move {
                let released = released.lock().unwrap().take();
                if let Some(released) = released {
                    let _ = released.await;
                }
                "alice's report"
            }),
        )
        .layer(offload.clone())
        .merge(offload.status_router())
        .layer(axum::middleware::map_response(
            move |response: axum::response::Response| {
                if response.status() == StatusCode::ACCEPTED {
                    signal.notify_one();
                }
                async move { response }
            },
        ));
    let addr = common::serve(app).await;
    let mut request = post(format!("http://{addr}/report"));
    request
        .headers_mut()
        .insert("authorization", "Bearer alice".parse().unwrap());
    let call = tokio::spawn(follower().oneshot(request));
    accepted.notified().await;
    release.send(()).unwrap();
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "alice's report");
}

#[tokio::test]
async fn the_layers_preference_joins_the_requests_own() {
    let app = Router::new().route(
        "/prefer",
        axum::routing::post(|headers: http::HeaderMap| async move {
            let values: Vec<_> = headers
                .get_all("prefer")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            values.join(" | ")
        }),
    );
    let addr = common::serve(app).await;
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new().respond_async())
        .service(hyper_client());
    let mut request = post(format!("http://{addr}/prefer"));
    request
        .headers_mut()
        .insert("prefer", "return=minimal".parse().unwrap());
    let seen = text(client.oneshot(request).await.unwrap()).await;
    assert_eq!(seen, "return=minimal | respond-async");

    // `wait` is whole seconds, rounded up: half a second is no `wait=0` ("do not wait").
    let client = ServiceBuilder::new()
        .layer(FollowLayer::new().prefer_wait(Duration::from_millis(500)))
        .service(hyper_client());
    let seen = text(
        client
            .oneshot(post(format!("http://{addr}/prefer")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(seen, "wait=1");

    // Both, in either order: the foreground for up to `wait`, then a `202`.
    for layer in [
        FollowLayer::new()
            .respond_async()
            .prefer_wait(Duration::from_secs(10)),
        FollowLayer::new()
            .prefer_wait(Duration::from_secs(10))
            .respond_async(),
    ] {
        let client = ServiceBuilder::new().layer(layer).service(hyper_client());
        let request = post(format!("http://{addr}/prefer"));
        let seen = text(client.oneshot(request).await.unwrap()).await;
        assert_eq!(seen, "respond-async, wait=10");
    }
}

#[tokio::test]
async fn a_shorter_budget_the_request_states_is_passed_on_as_it_is() {
    let app = Router::new().route(
        "/budget",
        get(|headers: http::HeaderMap| async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .map_or("none", |v| v.to_str().unwrap())
                    .to_owned()
            };
            format!("{} {}", header("grpc-timeout"), header("x-timeout-ms"))
        }),
    );
    let addr = common::serve(app).await;
    let deadline = Deadline::after(Duration::from_secs(20), DeadlineSource::Custom("caller"));
    for (layer, stated, kept) in [
        (
            PropagateDeadlineLayer::grpc_timeout(),
            "grpc-timeout",
            "100m",
        ),
        (
            PropagateDeadlineLayer::millis(http::HeaderName::from_static("x-timeout-ms")),
            "x-timeout-ms",
            "100",
        ),
    ] {
        let client = ServiceBuilder::new().layer(layer).service(hyper_client());
        let mut request = Request::get(format!("http://{addr}/budget"))
            .body(Full::default())
            .unwrap();
        request.headers_mut().insert(stated, kept.parse().unwrap());
        let answer = deadline.scope(client.oneshot(request)).await.unwrap();
        let answer = text(answer.map(|b| b.map_err(BoxError::from))).await;
        assert!(answer.split(' ').any(|seen| seen == kept), "{answer}");
    }
    // A longer one is shortened to what remains.
    let client = ServiceBuilder::new()
        .layer(PropagateDeadlineLayer::grpc_timeout())
        .service(hyper_client());
    let mut request = Request::get(format!("http://{addr}/budget"))
        .body(Full::default())
        .unwrap();
    request
        .headers_mut()
        .insert("grpc-timeout", "5M".parse().unwrap());
    let answer = deadline.scope(client.oneshot(request)).await.unwrap();
    let answer = text(answer.map(|b| b.map_err(BoxError::from))).await;
    let sent = answer.split(' ').next().unwrap();
    assert!(sent != "5M" && sent.ends_with('u'), "{answer}");
}

/// An API Gateway stage whose methods require an API key answers a request without one `403
/// {"message":"Forbidden"}`: the polls of a call made with a key carry it by default, as
/// they carry its credentials.
#[tokio::test]
async fn an_api_key_reaches_the_polls_by_default() {
    let addr = pointing(Router::new().route(
        "/status",
        get(|headers: http::HeaderMap| async move {
            match headers.get("x-api-key") {
                Some(key) if key == "k-1" => (StatusCode::OK, "the result"),
                _ => (StatusCode::FORBIDDEN, r#"{"message":"Forbidden"}"#),
            }
        }),
    ))
    .await;
    let mut request = post(format!("http://{addr}/job"));
    request
        .headers_mut()
        .insert("x-api-key", "k-1".parse().unwrap());
    let answer = follower().oneshot(request).await.unwrap();
    assert_eq!(text(answer).await, "the result");
}

#[tokio::test]
async fn the_forwarded_headers_are_the_ones_named() {
    // The status URL answers the result itself: the headers its poll carried.
    let addr = pointing(Router::new().route(
        "/status",
        get(|headers: http::HeaderMap| async move {
            let mut seen: Vec<_> = ["authorization", "cookie", "x-api-key"]
                .into_iter()
                .filter(|name| headers.contains_key(*name))
                .collect();
            seen.sort_unstable();
            seen.join(" ")
        }),
    ))
    .await;
    let api_key = http::HeaderName::from_static("x-api-key");
    for (layer, seen) in [
        (FollowLayer::new(), "authorization cookie x-api-key"),
        (
            FollowLayer::new().forward_headers([api_key.clone()]),
            "x-api-key",
        ),
        (FollowLayer::new().forward_headers([]), ""),
    ] {
        let mut request = post(format!("http://{addr}/job"));
        let headers = request.headers_mut();
        headers.insert("authorization", "Bearer alice".parse().unwrap());
        headers.insert("cookie", "session=alice".parse().unwrap());
        headers.insert(api_key.clone(), "k-1".parse().unwrap());
        let client = ServiceBuilder::new().layer(layer).service(hyper_client());
        let answer = client.oneshot(request).await.unwrap();
        assert_eq!(text(answer).await, seen);
    }
}
