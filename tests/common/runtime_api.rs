//! The Lambda Runtime API, served on loopback for the real `lambda_runtime` client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

/// Runs the future `make` returns (a `lambda::run`) on a runtime of its own in a thread of
/// its own, as a Lambda function's `main` does; its future need not be `Send`. The thread
/// ends when the run returns `Ok`.
pub fn run_function<F, Fut>(make: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), lambda_http::Error>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
            .unwrap();
    })
}

/// The HTTP response the runtime posted; panics on an error.
pub fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response { body, .. } => body,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The task id in the JSON body of a posted `202`.
pub fn task_of(response: &Value) -> tower_serverless::offload::TaskId {
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    body["id"].as_str().unwrap().parse().unwrap()
}

/// The `Location` of a posted response, from a REST event's `multiValueHeaders` or an HTTP
/// API event's `headers`.
pub fn location(response: &Value) -> &str {
    response["headers"]["location"]
        .as_str()
        .or_else(|| response["multiValueHeaders"]["location"][0].as_str())
        .unwrap_or_else(|| panic!("no location in {response}"))
}

/// Offloads `POST /jobs/300` and polls its task, both with events from `event`, and checks
/// that each `Location` is the path the client calls: `prefix` in front of the route's.
/// Returns the task.
pub async fn offload_and_poll(
    api: &mut RuntimeApi,
    name: &str,
    event: impl Fn(&str, &str) -> Value,
    prefix: &str,
) -> tower_serverless::offload::TaskId {
    let budget = Duration::from_secs(30);
    let accepted = response(
        api.invoke(&format!("{name}-job"), budget, event("POST", "/jobs/300"))
            .await,
    );
    assert_eq!(accepted["statusCode"], 202, "{accepted}");
    let task = task_of(&accepted);
    assert_eq!(location(&accepted), format!("{prefix}/tasks/{task}"));
    api.extension_next().await;

    let polled = event("GET", &format!("/tasks/{task}"));
    let status = response(api.invoke(&format!("{name}-poll"), budget, polled).await);
    assert_eq!(status["statusCode"], 303, "{status}");
    assert_eq!(location(&status), format!("{prefix}/tasks/{task}/result"));
    api.extension_next().await;
    task
}

/// Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` 4): starts the Runtime API and
/// a function that serves a [`gated`](super::gated) `POST /gated` behind `offload`, and
/// its status routes, with `Runner::run` or, when `streamed`, `run_with_streaming_response`.
/// Checks that four invocations are served at once (each waits until all four are in:
/// served one at a time, none would answer), posted as `streamed` says, and that no
/// extension registered for `INVOKE` events. Returns the API, whose
/// [`function_returned`](RuntimeApi::function_returned) waits for the function's run, and
/// the gate of `/gated`.
pub async fn managed(
    offload: &tower_serverless::OffloadLayer,
    streamed: bool,
) -> (RuntimeApi, tokio::sync::watch::Sender<bool>) {
    managed_on(RuntimeApi::start().await, offload, streamed).await
}

/// [`managed`] on `api`, started already.
pub async fn managed_on(
    mut api: RuntimeApi,
    offload: &tower_serverless::OffloadLayer,
    streamed: bool,
) -> (RuntimeApi, tokio::sync::watch::Sender<bool>) {
    std::env::set_var("AWS_LAMBDA_MAX_CONCURRENCY", "4");
    let (gate, gated) = super::gated("/gated");
    let barrier = Arc::new(tokio::sync::Barrier::new(4));
    let together = get(move || {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            "together"
        }
    });
    let offload = offload.clone();
    api.function = Some(run_function(move || async move {
        let app = Router::new()
            .route("/together", together)
            .merge(gated)
            .layer(offload.clone())
            .merge(offload.status_router())
            .layer(tower_serverless::DeadlineLayer::inherit());
        let runner = tower_serverless::lambda::Runner::new().offload(&offload);
        if streamed {
            runner.run_with_streaming_response(app).await
        } else {
            runner.run(app).await
        }
    }));
    let deadline_ms = now_ms() + 60_000;
    for id in ["1", "2", "3", "4"] {
        let event = http_api_event("GET", "/together", now_ms());
        api.submit(id, deadline_ms, event).await;
    }
    let mut answered = Vec::new();
    for _ in 0..4 {
        match api.outcome().await {
            Outcome::Response { request_id, body } => {
                assert_eq!(body["body"], "together");
                assert_eq!(
                    body["streamed"].as_bool().unwrap_or(false),
                    streamed,
                    "{body}"
                );
                answered.push(request_id);
            }
            other => panic!("{other:?}"),
        }
    }
    answered.sort();
    assert_eq!(answered, ["1", "2", "3", "4"]);
    // The extension would have registered during init, before the first invocation.
    assert!(
        !api.extension_invoked(),
        "nothing holds an environment that never freezes"
    );
    (api, gate)
}

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

type Invocation = (String, u64, Value);

#[derive(Clone)]
struct Shared {
    events: Arc<Mutex<mpsc::Receiver<Invocation>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    extension_events: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    extension_nexts: mpsc::UnboundedSender<tokio::time::Instant>,
    registered: Arc<std::sync::atomic::AtomicBool>,
    invoked: Arc<std::sync::atomic::AtomicBool>,
    refuse_idle_next: Arc<std::sync::atomic::AtomicBool>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::Sender<Invocation>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    extension_events: mpsc::UnboundedSender<Invocation>,
    extension_nexts: mpsc::UnboundedReceiver<tokio::time::Instant>,
    registered: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the registered extension subscribed to `INVOKE` events.
    invoked: Arc<std::sync::atomic::AtomicBool>,
    /// Set by [`refuse_idle_next`](Self::refuse_idle_next).
    refuse_idle_next: Arc<std::sync::atomic::AtomicBool>,
    /// The thread of the function [`managed`] started.
    function: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeApi {
    /// Serves the API and points this process's Lambda environment at it.
    pub async fn start() -> Self {
        let (events, events_rx) = mpsc::channel(16);
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let (extension_events, extension_events_rx) = mpsc::unbounded_channel();
        let (extension_nexts_tx, extension_nexts) = mpsc::unbounded_channel();
        let registered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let invoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse_idle_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = Shared {
            events: Arc::new(Mutex::new(events_rx)),
            outcomes: outcomes_tx,
            extension_events: Arc::new(Mutex::new(extension_events_rx)),
            extension_nexts: extension_nexts_tx,
            registered: registered.clone(),
            invoked: invoked.clone(),
            refuse_idle_next: refuse_idle_next.clone(),
        };
        let router = Router::new()
            .route("/2020-01-01/extension/register", post(register))
            .route("/2020-01-01/extension/event/next", get(extension_next))
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(posted_response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            // Not axum's 2 MB: Lambda takes 6 MB buffered, more streamed.
            .layer(DefaultBodyLimit::disable())
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
            extension_events,
            extension_nexts,
            registered,
            invoked,
            refuse_idle_next,
            function: None,
        }
    }

    /// [`start`](Self::start), with the process's log captured (the function runs on a
    /// runtime of its own, so the capture is global) and the output of panics provoked on
    /// purpose quieted.
    pub async fn start_logged() -> (Self, super::Captured) {
        super::quiet_panics();
        let log = super::Captured::default();
        log.install_global();
        (Self::start().await, log)
    }

    /// Waits for the extension's next `GET /extension/event/next`: the moment it let the
    /// environment freeze.
    pub async fn extension_next(&mut self) -> tokio::time::Instant {
        tokio::time::timeout(Duration::from_secs(20), self.extension_nexts.recv())
            .await
            .expect("the extension asked for no next event")
            .unwrap()
    }

    /// Hands `event` to the runtime with `budget` until the function deadline, and waits for
    /// what the runtime posts.
    pub async fn invoke(&mut self, request_id: &str, budget: Duration, event: Value) -> Outcome {
        let deadline = SystemTime::now() + budget;
        let deadline_ms = deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        self.invoke_with_deadline_ms(request_id, deadline_ms, event)
            .await
    }

    /// Like [`invoke`](Self::invoke), with the `Lambda-Runtime-Deadline-Ms` value as given:
    /// `cargo lambda watch` sends the constant `600000`.
    pub async fn invoke_with_deadline_ms(
        &mut self,
        request_id: &str,
        deadline_ms: u64,
        event: Value,
    ) -> Outcome {
        self.submit(request_id, deadline_ms, event).await;
        let outcome = self.outcome().await;
        match &outcome {
            Outcome::Response { request_id: id, .. } | Outcome::Error { request_id: id, .. } => {
                assert_eq!(id, request_id)
            }
        }
        outcome
    }

    /// Hands `event` to the runtime (and its INVOKE to an extension that subscribed to them)
    /// without waiting for the outcome.
    pub async fn submit(&mut self, request_id: &str, deadline_ms: u64, event: Value) {
        if self.extension_invoked() {
            let invocation = (request_id.to_owned(), deadline_ms, Value::Null);
            self.extension_events.send(invocation).unwrap();
        }
        self.events
            .send((request_id.to_owned(), deadline_ms, event))
            .await
            .unwrap();
    }

    /// The next outcome the runtime posts, of any invocation.
    pub async fn outcome(&mut self) -> Outcome {
        tokio::time::timeout(Duration::from_secs(20), self.outcomes.recv())
            .await
            .expect("the runtime posted no outcome")
            .unwrap()
    }

    /// Whether an extension registered.
    pub fn extension_registered(&self) -> bool {
        self.registered.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, an extension subscribed to no event that asks for its next one is
    /// answered `500` at once, as `cargo lambda watch` (1.9) answers it; Lambda holds that
    /// call until the environment shuts down.
    pub fn refuse_idle_next(&self) {
        self.refuse_idle_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether an extension registered for `INVOKE` events: Lambda then waits for it
    /// before the environment takes its next invocation.
    pub fn extension_invoked(&self) -> bool {
        self.invoked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the function [`managed`] started has returned from its run.
    pub async fn function_returned(&mut self) {
        let function = self.function.take().expect("no function started");
        let joined = tokio::task::spawn_blocking(move || function.join());
        tokio::time::timeout(Duration::from_secs(20), joined)
            .await
            .expect("the function's run did not return")
            .unwrap()
            .expect("the function's run failed");
    }

    /// Whether the extension asked for its next event since the last call: it released
    /// the invocation it held.
    pub fn extension_released(&mut self) -> bool {
        self.extension_nexts.try_recv().is_ok()
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

async fn register(State(shared): State<Shared>, body: Bytes) -> Response {
    let events: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let invoked = events["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|event| event == "INVOKE"));
    if invoked {
        shared
            .invoked
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    shared
        .registered
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let id = if invoked { INVOKED } else { IDLE };
    let body =
        json!({ "functionName": "test", "functionVersion": "$LATEST", "handler": "bootstrap" });
    ([("lambda-extension-identifier", id)], body.to_string()).into_response()
}

/// The identifiers of an extension subscribed to `INVOKE` events and of one subscribed to
/// none.
const INVOKED: &str = "extension-invoked";
const IDLE: &str = "extension-idle";

async fn extension_next(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if headers
        .get("lambda-extension-identifier")
        .is_some_and(|id| id == IDLE)
    {
        if shared
            .refuse_idle_next
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        // No event comes before the environment shuts down.
        std::future::pending::<()>().await;
    }
    let _ = shared.extension_nexts.send(tokio::time::Instant::now());
    let Some((request_id, deadline_ms, _)) = shared.extension_events.lock().await.recv().await
    else {
        return StatusCode::GONE.into_response();
    };
    let event = json!({
        "eventType": "INVOKE",
        "deadlineMs": deadline_ms,
        "requestId": request_id,
        "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:test",
        "tracing": { "type": "X-Amzn-Trace-Id", "value": "Root=1-00000000-000000000000000000000000" }
    });
    event.to_string().into_response()
}

/// The largest buffered response Lambda takes: its `413` names this many bytes.
pub const MAX_BUFFERED_RESPONSE: usize = 6_291_556;

async fn posted_response(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let streamed = headers
        .get("lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode == "streaming");
    if !streamed && body.len() > MAX_BUFFERED_RESPONSE {
        // As Lambda does: the runtime gets `413`, the invoker a failed invocation (behind
        // API Gateway, a `502`).
        let message =
            format!("Exceeded maximum allowed payload size ({MAX_BUFFERED_RESPONSE} bytes).");
        let _ = shared.outcomes.send(Outcome::Error {
            request_id: id,
            error_type: "Function.ResponseSizeTooLarge".to_owned(),
            body: json!({ "errorMessage": message, "errorType": "Function.ResponseSizeTooLarge" }),
        });
        let body = json!({ "errorMessage": message, "errorType": "RequestEntityTooLarge" });
        return (StatusCode::PAYLOAD_TOO_LARGE, body.to_string()).into_response();
    }
    let body = if streamed {
        streamed_response(&body)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let _ = shared.outcomes.send(Outcome::Response {
        request_id: id,
        body,
    });
    StatusCode::ACCEPTED.into_response()
}

/// A streamed response as one value, like a buffered one: the runtime posts its metadata
/// prelude (`statusCode`, `headers`, `cookies`) as JSON, eight NUL bytes, then the body as
/// it comes. The body is read as text, and `streamed` is set.
fn streamed_response(posted: &[u8]) -> Value {
    const DELIMITER: &[u8] = &[0; 8];
    let at = posted
        .windows(DELIMITER.len())
        .position(|window| window == DELIMITER)
        .unwrap_or_else(|| panic!("no prelude delimiter in {posted:?}"));
    let mut response: Value = serde_json::from_slice(&posted[..at]).unwrap();
    let body = &posted[at + DELIMITER.len()..];
    response["body"] = String::from_utf8_lossy(body).into();
    response["streamed"] = true.into();
    response
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

/// An API Gateway REST API (payload 1.0) event for `GET path`, arrived at `request_time_epoch_ms`.
pub fn rest_api_event(path: &str, request_time_epoch_ms: u64) -> Value {
    rest_api_request("GET", path, request_time_epoch_ms)
}

/// An API Gateway REST API (payload 1.0) event of stage `prod` for `method path`, as the
/// default endpoint sends it: `path` without the stage, `requestContext.path` with it.
pub fn rest_api_request(method: &str, path: &str, request_time_epoch_ms: u64) -> Value {
    json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": { "Host": "api.example.com" },
        "multiValueHeaders": { "Host": ["api.example.com"] },
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": { "proxy": path.trim_start_matches('/') },
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "abc123",
            "stage": "prod",
            "requestId": "gateway-request",
            "identity": { "sourceIp": "192.0.2.1", "userAgent": "test" },
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "apiId": "api",
            "path": format!("/prod{path}"),
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": request_time_epoch_ms
        },
        "body": null,
        "isBase64Encoded": false
    })
}

/// The same REST API event as a custom domain sends it through the base path mapping
/// `/<base>` to stage `prod`: `path` and `requestContext.path` start with the base path and
/// leave out the stage; `resourcePath` and `pathParameters` are the API's own.
pub fn rest_custom_domain_request(method: &str, base: &str, path: &str) -> Value {
    let mut event = rest_api_request(method, path, now_ms());
    let called = format!("/{base}{path}");
    event["path"] = called.clone().into();
    event["requestContext"]["path"] = called.into();
    event["requestContext"]["domainName"] = "api.example.com".into();
    event
}

/// An API Gateway HTTP API event in payload format 1.0 for `GET path` on its `$default`
/// stage, as AWS sends it: shaped like a REST API's, with the version and the route key
/// (`ANY /{proxy+}`) as `requestContext.resourceId`.
pub fn http_api_v1_event(path: &str, request_time_epoch_ms: u64) -> Value {
    let mut event = rest_api_request("GET", path, request_time_epoch_ms);
    event["version"] = "1.0".into();
    event["requestContext"]["resourceId"] = "ANY /{proxy+}".into();
    event["requestContext"]["stage"] = "$default".into();
    event["requestContext"]["path"] = path.into();
    event
}

/// A Lambda function URL event (payload 2.0, domain `*.lambda-url.*`) for `method path`.
pub fn function_url_event(method: &str, path: &str, time_epoch_ms: u64) -> Value {
    let mut event = http_api_event(method, path, time_epoch_ms);
    let domain = "abcdefghij.lambda-url.us-east-1.on.aws";
    event["headers"]["host"] = domain.into();
    event["requestContext"]["domainName"] = domain.into();
    event["requestContext"]["domainPrefix"] = "abcdefghij".into();
    event
}

/// An HTTP API event of a named stage: `rawPath` starts with it, as API Gateway sends it.
pub fn http_api_stage_event(method: &str, stage: &str, path: &str, time_epoch_ms: u64) -> Value {
    let mut event = http_api_event(method, &format!("/{stage}{path}"), time_epoch_ms);
    event["requestContext"]["stage"] = stage.into();
    event
}

/// An Application Load Balancer event for `GET path`.
pub fn alb_event(path: &str) -> Value {
    json!({
        "requestContext": {
            "elb": { "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/abc" }
        },
        "httpMethod": "GET",
        "path": path,
        "queryStringParameters": {},
        "headers": { "host": "alb.example.com" },
        "body": "",
        "isBase64Encoded": false
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
