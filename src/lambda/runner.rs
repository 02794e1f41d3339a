use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use lambda_extension::{service_fn, Extension, NextEvent};
use lambda_http::lambda_runtime::{self, Diagnostic, LambdaInvocation};
use lambda_http::{IntoResponse, Request, Service};
use tower::{Layer, ServiceExt};

use super::body::EndsAtError;
use super::layer::{Invocations, LambdaLayer, TrackLayer};
use crate::deadline::{plausible, Epoch, FrontDoors};
use crate::escalate::error_type;
use crate::offload::{DetachedTasks, OffloadLayer};
use crate::unwind::{self, catch_panic};

/// Runs `service` under `lambda_http`, holding each invocation open until the work that
/// `offload` detached during it is done. See the [module docs](super).
///
/// # Errors
///
/// When the extension cannot register or the runtime fails, as `lambda_http::run` does.
pub async fn run<S, R, E>(service: S, offload: &OffloadLayer) -> Result<(), lambda_http::Error>
where
    S: Service<Request, Response = R, Error = E> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: IntoResponse + Send + 'static,
    E: fmt::Debug + Into<Diagnostic> + Send + 'static,
{
    Runner::new().offload(offload).run(service).await
}

/// [`run`] with its settings: the front doors' caps and margin, the stage, and every
/// [`OffloadLayer`] whose detached work an invocation waits for.
#[derive(Clone, Debug)]
#[must_use]
pub struct Runner {
    layer: LambdaLayer,
    detached: Vec<DetachedTasks>,
    local_store: bool,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

/// How long an invocation is held when its deadline is no plausible epoch (`cargo lambda
/// watch`): the longest a Lambda invocation may run.
const HOLD_WITHOUT_DEADLINE: Duration = Duration::from_secs(15 * 60);

impl Runner {
    /// A runner with the caps of [`FrontDoors::new`] and a 1 s margin, that waits for no
    /// detached task yet.
    pub fn new() -> Self {
        Self {
            layer: LambdaLayer::new(),
            detached: Vec::new(),
            local_store: false,
        }
    }

    /// The margin kept below the front door's cap and the function's deadline (default 1 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.layer = self.layer.margin(margin);
        self
    }

    /// The front doors' caps and margin: set [`FrontDoors::rest_cap`] when your REST API's
    /// integration timeout was raised.
    pub fn front_doors(mut self, doors: FrontDoors) -> Self {
        self.layer = self.layer.front_doors(doors);
        self
    }

    /// Whether an API Gateway stage stays at the start of the path (default: no); see
    /// [`LambdaLayer::keep_stage`].
    pub fn keep_stage(mut self, keep: bool) -> Self {
        self.layer = self.layer.keep_stage(keep);
        self
    }

    /// A base path that comes off the start of the path, for what the event cannot tell
    /// from the API's own path (an HTTP API's `$default` route behind a custom domain's
    /// mapping key); see [`LambdaLayer::remove_base_path`].
    pub fn remove_base_path(mut self, base_path: &str) -> Self {
        self.layer = self.layer.remove_base_path(base_path);
        self
    }

    /// Waits for the work `offload` detaches, and warns at init when its store is local to
    /// the process: on Lambda, polls land on other environments, which do not have it.
    pub fn offload(mut self, offload: &OffloadLayer) -> Self {
        self.local_store |= !offload.config.store.is_shared();
        self.wait_for(offload.detached())
    }

    /// Also waits for these detached tasks (from [`OffloadLayer::detached`]).
    pub fn wait_for(mut self, detached: DetachedTasks) -> Self {
        self.detached.push(detached);
        self
    }

    /// Runs `service` under `lambda_http` with [`LambdaLayer`] outermost.
    ///
    /// With `AWS_LAMBDA_MAX_CONCURRENCY` above 1 (Lambda Managed Instances) the runtime
    /// serves that many invocations at once and the environment never freezes: nothing is
    /// held. With detached work to wait for, an internal extension that subscribes to no
    /// event is registered, so that Lambda sends `SIGTERM` when it shuts the environment
    /// down; the work still running 100 ms later is then stopped and stored as failed
    /// ([`reason::SHUT_DOWN`](crate::offload::reason::SHUT_DOWN)), and `run` returns
    /// `Ok(())`: put your own cleanup after it, not in `lambda_runtime`'s
    /// `spawn_graceful_shutdown_handler`, which ends the process once its hook is done,
    /// whether or not the work's failures are written. Otherwise an internal extension is
    /// registered during init for `INVOKE` events and holds each invocation until its
    /// response is posted and the work it detached is done.
    ///
    /// `lambda_http` reads the response's body whole before it posts anything. A body that
    /// fails then fails the invocation with error type
    /// [`ResponseBodyFailed`](crate::escalate::error_type::RESPONSE_BODY_FAILED), and its
    /// error is logged; the client gets none of the body.
    ///
    /// # Errors
    ///
    /// When the extension cannot register or the runtime fails.
    pub async fn run<S, R, E>(self, service: S) -> Result<(), lambda_http::Error>
    where
        S: Service<Request, Response = R, Error = E> + Clone + Send + 'static,
        S::Future: Send + 'static,
        R: IntoResponse + Send + 'static,
        E: fmt::Debug + Into<Diagnostic> + Send + 'static,
    {
        // Converted as `lambda_http::run` does after the service: the runtime's concurrent
        // mode needs a response type that is `Sync`, which an axum body is not.
        let service = self.layer.layer(service).then(converted::<R, E>);
        let runtime = lambda_runtime::Runtime::new(lambda_http::Adapter::from(service));
        self.serve(runtime).await
    }

    /// [`run`](Self::run) for a function whose responses stream, as
    /// `lambda_http::run_with_streaming_response` serves them: a function URL whose invoke
    /// mode is `RESPONSE_STREAM`, or a REST API integration with response streaming (raise
    /// the REST cap to its 15 min with [`FrontDoors::rest_cap`]). The body goes out as
    /// the service yields it; an invocation is finished, and its detached work waited
    /// for, once the whole body is posted.
    ///
    /// An escalation fails the invocation as under [`run`](Self::run): it is decided on
    /// the response's head, before anything streams. A body that fails midway ends there,
    /// and its error is logged: `lambda_runtime` would write the error's text into the
    /// stream, after what the client already has, and Lambda would take it for body.
    ///
    /// ```no_run
    /// use axum::{routing::post, Router};
    /// use tower::{Layer, ServiceExt};
    /// use tower_serverless::lambda::Runner;
    /// use tower_serverless::offload::RedisStore;
    /// use tower_serverless::{DeadlineLayer, EscalateLayer, OffloadLayer};
    ///
    /// # async fn run() -> Result<(), lambda_http::Error> {
    /// let offload = OffloadLayer::new(RedisStore::connect("redis://cache:6379").await?);
    /// let app = Router::new()
    ///     .route("/reports", post(|| async { "the report" }))
    ///     .layer(offload.clone())
    ///     .merge(offload.status_router())
    ///     .layer(DeadlineLayer::inherit());
    /// let service = EscalateLayer::new().layer(app);
    /// Runner::new()
    ///     .offload(&offload)
    ///     .run_with_streaming_response(service)
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// When the extension cannot register or the runtime fails.
    pub async fn run_with_streaming_response<S, B, E>(
        self,
        service: S,
    ) -> Result<(), lambda_http::Error>
    where
        S: Service<Request, Response = http::Response<B>, Error = E> + Clone + Send + 'static,
        S::Future: Send + 'static,
        E: fmt::Debug + Into<Diagnostic> + Send + 'static,
        B: http_body::Body + Unpin + Send + 'static,
        B::Data: Into<Bytes> + Send,
        B::Error: Into<lambda_http::Error> + Send + fmt::Debug,
    {
        let layer = self.layer.clone().streaming(true);
        let service = service.then(|result: Result<http::Response<B>, E>| {
            std::future::ready(result.map(|response| response.map(EndsAtError::new)))
        });
        let runtime = lambda_http::streaming_runtime_concurrent(layer.layer(service));
        self.serve(runtime).await
    }

    /// Serves the invocations `runtime` handles: at once where environments never freeze
    /// (with detached work, until Lambda shuts the environment down), else beside the
    /// extension that holds each invocation for its detached work.
    async fn serve<T>(self, runtime: lambda_runtime::Runtime<T>) -> Result<(), lambda_http::Error>
    where
        T: Service<LambdaInvocation, Response = (), Error = lambda_http::Error>
            + Clone
            + Send
            + 'static,
        T::Future: Send,
    {
        if self.local_store {
            tracing::warn!(
                target: "tower_serverless::lambda",
                "the offload store is local to this process: on Lambda a poll lands on another environment, \
                 which answers 404 for a pending task; use a shared store (DynamoDbStore, RedisStore, or another TaskStore)"
            );
        }
        let runtime = runtime.layer(lambda_runtime::layers::TracingLayer::new());
        let detached = self.detached;
        if super::never_freezes() {
            if detached.is_empty() {
                return runtime.run_concurrent().await;
            }
            return until_shut_down(runtime.run_concurrent(), &detached).await;
        }
        let invocations = Invocations::default();
        let waiting = invocations.clone();
        let processor = service_fn(move |event: lambda_extension::LambdaEvent| {
            let (invocations, detached) = (waiting.clone(), detached.clone());
            async move {
                if let NextEvent::Invoke(invoke) = event.next {
                    hold(
                        &invocations,
                        &detached,
                        &invoke.request_id,
                        invoke.deadline_ms,
                    )
                    .await;
                }
                Ok::<(), lambda_extension::Error>(())
            }
        });
        // Registered during init, before the runtime asks for its first invocation.
        let extension = Extension::new()
            .with_extension_name(EXTENSION_NAME)
            .with_events(&["INVOKE"])
            .with_events_processor(processor)
            .register()
            .await?;
        // The runtime with the tracking outermost: an invocation is finished once its
        // response (a stream: all of it) or error is posted, whatever the handler did.
        let runtime = runtime.layer(TrackLayer(invocations));
        tokio::try_join!(runtime.run_concurrent(), extension.run())?;
        Ok(())
    }
}

/// The name the runner's internal extension registers with.
const EXTENSION_NAME: &str = "tower-serverless";

/// How long detached work may still end by itself once Lambda shuts the environment down,
/// before it is stopped and stored as failed. Lambda gives a runtime beside internal
/// extensions 500 ms after its `SIGTERM` (the limit documented for standard environments);
/// the failures are written in what is left.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// Runs `serving`, the runtime of an environment that never freezes, until Lambda shuts
/// the environment down; then stops the detached work ([`shut_down`]) and returns.
///
/// Lambda sends `SIGTERM` only to a runtime beside a registered extension: one that
/// subscribes to no event is registered, during init, after the signal is listened for so
/// that none goes unseen.
async fn until_shut_down(
    serving: impl Future<Output = Result<(), lambda_http::Error>>,
    detached: &[DetachedTasks],
) -> Result<(), lambda_http::Error> {
    let terminated = terminated()?;
    let extension = Extension::new()
        .with_extension_name(EXTENSION_NAME)
        .with_events(&[])
        .register()
        .await?;
    // Lambda holds the extension's call for its next event until shutdown; `cargo lambda
    // watch` answers it `500` at once, which ends nothing but the extension.
    let idle = async {
        if let Err(error) = extension.run().await {
            tracing::debug!(target: "tower_serverless::lambda", error, "the extension that waits for SIGTERM ended");
        }
        std::future::pending::<Result<(), lambda_http::Error>>().await
    };
    tokio::select! {
        served = async { tokio::try_join!(serving, idle) } => served.map(drop),
        () = terminated => {
            shut_down(detached).await;
            Ok(())
        }
    }
}

/// Completes on `SIGTERM`: Lambda shuts the environment down. It sends the signal only to a
/// runtime beside a registered extension.
#[cfg(unix)]
fn terminated() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut signal = signal(SignalKind::terminate())?;
    Ok(async move {
        signal.recv().await;
    })
}

/// Lambda runs on Linux; elsewhere (`cargo lambda watch` on Windows) nothing signals it.
#[cfg(not(unix))]
fn terminated() -> std::io::Result<impl Future<Output = ()>> {
    Ok(std::future::pending())
}

/// Stops the detached work when Lambda shuts the environment down: what does not end within
/// [`SHUTDOWN_GRACE`] is stored as failed ([`SHUT_DOWN`](crate::offload::reason::SHUT_DOWN)),
/// so that its client reads that at once rather than once its lease lapses.
async fn shut_down(detached: &[DetachedTasks]) {
    let mut stopping = tokio::task::JoinSet::new();
    for tasks in detached {
        let tasks = tasks.clone();
        stopping.spawn(async move { tasks.shutdown(SHUTDOWN_GRACE).await });
    }
    let mut stopped = 0;
    while let Some(done) = stopping.join_next().await {
        stopped += done.unwrap_or_default();
    }
    tracing::info!(
        target: "tower_serverless::lambda",
        stopped,
        "the environment shuts down: detached work still running is stopped and stored as failed"
    );
}

/// `lambda_http`'s conversion of the service's response, as `lambda_http::run` makes it: it
/// reads the body whole and panics when the body fails. That is the invocation's failure,
/// [`RESPONSE_BODY_FAILED`](error_type::RESPONSE_BODY_FAILED), logged with the body's
/// error; left to the runtime, it would fail with the panic payload's type name for a type.
async fn converted<R: IntoResponse, E>(
    result: Result<R, E>,
) -> Result<lambda_http::Response<lambda_http::Body>, RunError<E>> {
    let mut converting = result?.into_response();
    catch_panic(converting.as_mut()).await.map_err(|payload| {
        let text = unwind::text(&*payload).unwrap_or_default().to_owned();
        tracing::error!(
            target: "tower_serverless::lambda",
            error = text,
            "the response body failed while it was read; the invocation fails"
        );
        RunError::Body(text)
    })
}

/// Why an invocation under [`Runner::run`] failed: the service's own error, or its
/// response's body, with the text of the failure `lambda_http` met reading it.
#[derive(Debug)]
enum RunError<E> {
    Service(E),
    Body(String),
}

/// The service's error as [`RunError`]: what `ServiceExt::then` asks of the error it
/// returns, and what `?` uses in [`converted`].
impl<E> From<E> for RunError<E> {
    fn from(error: E) -> Self {
        Self::Service(error)
    }
}

impl<E: Into<Diagnostic>> From<RunError<E>> for Diagnostic {
    fn from(error: RunError<E>) -> Self {
        match error {
            RunError::Service(error) => error.into(),
            RunError::Body(text) => Diagnostic {
                error_type: error_type::RESPONSE_BODY_FAILED.to_owned(),
                error_message: format!("the response body failed: {text}"),
            },
        }
    }
}

/// Holds the invocation until its response or error is posted and the work it detached is
/// done, and never past the function's deadline (15 min when the deadline is no plausible
/// epoch, as under `cargo lambda watch`).
async fn hold(
    invocations: &Invocations,
    detached: &[DetachedTasks],
    request_id: &str,
    deadline_ms: u64,
) {
    let deadline_ms = i64::try_from(deadline_ms).unwrap_or(i64::MAX);
    let left = plausible(deadline_ms, Epoch::FunctionDeadline)
        .map_or(HOLD_WITHOUT_DEADLINE, |at| {
            at.saturating_duration_since(tokio::time::Instant::now())
        });
    let done = async {
        invocations.finished(request_id).await;
        for tasks in detached {
            tasks.wait_invocation(request_id).await;
        }
    };
    if tokio::time::timeout(left, done).await.is_err() {
        tracing::warn!(target: "tower_serverless::lambda", request_id, "released the invocation at the function's deadline with work still running");
    }
}
