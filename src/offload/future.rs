//! Response future of [`Offload`](super::Offload).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Service};

use super::config::Config;
use super::detached::{self, catch_panic, Invocation, Reservation};
use super::store::{Created, NewTask, StoredResponse, TaskOutcome};
use super::{reason, TaskId};
use crate::deadline::{Deadline, DeadlineSource};

type Answer<B, E> = Result<Response<Either<B, Full<Bytes>>>, E>;
type BoxAnswer<B, E> = Pin<Box<dyn Future<Output = Answer<B, E>> + Send>>;

const PREFERENCE_APPLIED: HeaderName = HeaderName::from_static("preference-applied");

pin_project! {
    /// Response future of [`Offload`](super::Offload).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        // Not offloadable: the inner future as it is.
        Passthrough { #[pin] future: F },
        // Offloadable: the inner future is boxed so that it can move to a detached task.
        Racing { future: Option<Pin<Box<F>>>, #[pin] sleep: Sleep, plan: Option<Plan> },
        // Storing the task, or any path with store I/O.
        Slow { future: BoxAnswer<B, E> },
        Ready { response: Option<Response<Either<B, Full<Bytes>>>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(crate) fn racing(future: Pin<Box<F>>, threshold: Duration, plan: Plan) -> Self {
        Self {
            state: State::Racing {
                future: Some(future),
                sleep: tokio::time::sleep(threshold),
                plan: Some(plan),
            },
        }
    }

    pub(crate) fn slow(future: BoxAnswer<B, E>) -> Self {
        Self {
            state: State::Slow { future },
        }
    }

    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response.map(Either::Right)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    type Output = Answer<B, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough { future } => {
                    return future
                        .poll(cx)
                        .map_ok(|response| response.map(Either::Left));
                }
                StateProj::Racing {
                    future,
                    sleep,
                    plan,
                } => {
                    let inner = future.as_mut().expect("polled after completion");
                    if let Poll::Ready(result) = inner.as_mut().poll(cx) {
                        let applied = plan.as_ref().and_then(|plan| plan.applied.clone());
                        return Poll::Ready(
                            result.map(|response| applied_to(response.map(Either::Left), applied)),
                        );
                    }
                    if sleep.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let (future, plan) = (future.take(), plan.take());
                    let (future, plan) = (future.expect("taken once"), plan.expect("taken once"));
                    this.state.set(State::Slow {
                        future: Box::pin(plan.offload(future)),
                    });
                }
                StateProj::Slow { future } => return future.as_mut().poll(cx),
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")))
                }
            }
        }
    }
}

fn applied_to<B>(mut response: Response<B>, applied: Option<HeaderValue>) -> Response<B> {
    if let Some(applied) = applied {
        response.headers_mut().insert(PREFERENCE_APPLIED, applied);
    }
    response
}

pub(crate) fn bad_idempotency_key() -> Response<Full<Bytes>> {
    crate::response::problem(
        StatusCode::BAD_REQUEST,
        "the Idempotency-Key header must hold 1 to 255 visible ASCII characters",
    )
}

pub(crate) fn retry_after(after: Duration) -> HeaderValue {
    // Whole seconds, rounded up: a client must not come back before the hint.
    HeaderValue::from(
        after
            .as_secs()
            .saturating_add(u64::from(after.subsec_nanos() > 0)),
    )
}

/// What an offloadable request needs to become a task.
pub(crate) struct Plan {
    pub(crate) config: Arc<Config>,
    pub(crate) owner: Option<String>,
    pub(crate) applied: Option<HeaderValue>,
    /// What goes in front of the status URL: the public prefix and the axum nesting.
    pub(crate) base: Option<String>,
    /// The Lambda invocation of the request, which is held for the work it detaches.
    pub(crate) invocation: Option<Invocation>,
    /// Set by the host for work detached from this request (the Lambda runner: the
    /// function's deadline).
    pub(crate) background: Option<Deadline>,
}

impl Plan {
    /// Reserves a place among the running detached tasks and creates the task's pending
    /// record; `None` (logged) when there is no place or the record could not be stored.
    async fn create(
        &self,
        idempotency_key: Option<String>,
    ) -> Option<(TaskId, Created, Reservation)> {
        let id = match &idempotency_key {
            Some(key) => TaskId::random_for(self.owner.as_deref(), key),
            None => TaskId::random(),
        };
        let id = match id {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(target: "tower_serverless::offload", %error, "no randomness for a task id; answering in the foreground");
                return None;
            }
        };
        let detached = &self.config.detached;
        let reserved = detached.reserve(id, self.config.max_detached, self.invocation.clone());
        let Some(reservation) = reserved else {
            tracing::debug!(target: "tower_serverless::offload", "no place for another detached task; answering in the foreground");
            return None;
        };
        let task = NewTask {
            id,
            owner: self.owner.clone(),
            idempotency_key,
            lease: self.config.lease,
            ttl: self.config.ttl,
        };
        match self.config.store.create(task).await {
            Ok(Created::Existing(existing)) => {
                Some((existing, Created::Existing(existing), reservation))
            }
            Ok(Created::New) => Some((id, Created::New, reservation)),
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", %error, "could not store a task; answering in the foreground");
                None
            }
        }
    }

    /// The `202 Accepted` for task `id`.
    fn accepted<B>(&self, id: TaskId) -> Response<Either<B, Full<Bytes>>> {
        let status_url = self.config.status_url(self.base.as_deref(), id);
        // The id is hex and the prefix was checked at configuration; the base comes from the
        // request, so the URL is escaped.
        let quoted = serde_json::Value::from(status_url.as_str());
        let body = format!(r#"{{"id":"{id}","status":"pending","status_url":{quoted}}}"#);
        let mut response = crate::response::json(StatusCode::ACCEPTED, body);
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::try_from(status_url) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::RETRY_AFTER, retry_after(self.config.retry_after));
        applied_to(response, self.applied.clone()).map(Either::Right)
    }

    /// Moves `future` to a detached task, in the place `reservation` holds, that stores
    /// its outcome.
    fn detach<F, B, E>(&self, reservation: Reservation, id: TaskId, future: Pin<Box<F>>)
    where
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + Send + 'static,
    {
        let config = self.config.clone();
        let deadline = self.background_deadline();
        let work = detached::bounded(
            async move {
                detached::outcome(id, future, config.max_result_bytes, &config.escalation).await
            },
            deadline,
        );
        reservation.spawn(detached::run(self.config.clone(), id, work, deadline));
    }

    /// The configured background budget from now, or the host's deadline when earlier.
    fn background_deadline(&self) -> Deadline {
        let configured = Deadline::after(self.config.background, DeadlineSource::Background);
        self.background
            .map_or(configured, |host| configured.min(host))
    }

    /// Stores the task and answers `202`, or waits in the foreground when it cannot be stored.
    pub(crate) async fn offload<F, B, E>(self, future: Pin<Box<F>>) -> Answer<B, E>
    where
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + Send + 'static,
    {
        match self.create(None).await {
            Some((id, _, reservation)) => {
                self.detach(reservation, id, future);
                Ok(self.accepted(id))
            }
            None => future.await.map(|response| response.map(Either::Left)),
        }
    }
}

/// A request with an `Idempotency-Key`: its task is stored before the work starts, so the
/// same key never runs the work twice; a fast result is stored too, for the retries.
pub(crate) async fn keyed<S, ReqBody, B>(
    plan: Plan,
    mut inner: S,
    request: Request<ReqBody>,
    key: String,
    threshold: Duration,
    immediate: bool,
) -> Answer<B, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ReqBody: Send + 'static,
{
    let (id, reservation) = match plan.create(Some(key)).await {
        Some((existing, Created::Existing(_), _)) => return Ok(plan.accepted(existing)),
        Some((id, Created::New, reservation)) => (id, reservation),
        None => {
            ready::<S, Request<ReqBody>>(&mut inner).await?;
            return inner
                .call(request)
                .await
                .map(|response| response.map(Either::Left));
        }
    };
    let store = &*plan.config.store;
    let retry_for = plan.config.store_retry;
    if let Err(error) = ready::<S, Request<ReqBody>>(&mut inner).await {
        detached::finish(store, id, TaskOutcome::failed(reason::FAILED), retry_for).await;
        return Err(error);
    }
    let mut future = Box::pin(inner.call(request));
    let raced = if immediate {
        None
    } else {
        tokio::time::timeout(threshold, catch_panic(future.as_mut()))
            .await
            .ok()
    };
    match raced {
        None => {
            plan.detach(reservation, id, future);
            Ok(plan.accepted(id))
        }
        Some(Err(panic)) => {
            detached::finish(store, id, TaskOutcome::failed(reason::PANICKED), retry_for).await;
            std::panic::resume_unwind(panic)
        }
        Some(Ok(Err(error))) => {
            detached::finish(store, id, TaskOutcome::failed(reason::FAILED), retry_for).await;
            Err(error)
        }
        Some(Ok(Ok(response))) => {
            let (parts, body) = response.into_parts();
            let collected = body.collect().await.map_err(Into::<BoxError>::into);
            let bytes = match collected {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    tracing::error!(target: "tower_serverless::offload", task = %id, %error, "response body failed");
                    detached::finish(
                        store,
                        id,
                        TaskOutcome::failed(reason::BODY_FAILED),
                        retry_for,
                    )
                    .await;
                    return Ok(crate::response::problem(
                        StatusCode::BAD_GATEWAY,
                        reason::BODY_FAILED,
                    )
                    .map(Either::Right));
                }
            };
            let max = plan.config.max_result_bytes;
            let outcome = if bytes.len() <= max {
                TaskOutcome::Succeeded(StoredResponse {
                    status: parts.status,
                    headers: parts.headers.clone(),
                    body: bytes.clone(),
                })
            } else {
                TaskOutcome::failed(reason::too_large(max))
            };
            detached::finish(store, id, outcome, retry_for).await;
            let response = Response::from_parts(parts, Either::Right(Full::new(bytes)));
            Ok(applied_to(response, plan.applied))
        }
    }
}

async fn ready<S: Service<R>, R>(service: &mut S) -> Result<(), S::Error> {
    std::future::poll_fn(|cx| service.poll_ready(cx)).await
}
