//! Response future of [`Offload`](super::Offload).
//!
//! The type its `call` returns, for a service of your own that wraps one and names its
//! future:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, Layer, Service};
//! use tower_serverless::offload::future::ResponseFuture;
//! use tower_serverless::offload::RequestBody;
//! use tower_serverless::{MemoryStore, OffloadLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let handler = service_fn(|_: Request<RequestBody<Full<Bytes>>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("done"))))
//! });
//! let mut service = OffloadLayer::new(MemoryStore::new()).layer(handler);
//! let request = Request::post("/").body(Full::default()).unwrap();
//! let future: ResponseFuture<_, _, _> = service.call(request);
//! assert_eq!(future.await.unwrap().status(), 200);
//! # }
//! ```

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::BoxError;

use super::body::{Keeper, ResponseBody};
use super::reason;
use super::store::TaskOutcome;
use super::task::{applied_to, Answer, Plan, Start, Started};

type BoxAnswer<B, E> = Pin<Box<dyn Future<Output = Answer<B, E>> + Send>>;
type Starting<F, B, E> = Pin<Box<dyn Future<Output = Start<F, B, E>> + Send>>;

pin_project! {
    /// Response future of [`Offload`](super::Offload).
    ///
    /// Dropped while the work of a request with an `Idempotency-Key` still runs (the client
    /// went away, a proxy or a [`DeadlineLayer`](crate::DeadlineLayer) gave up), the work
    /// moves to a detached task and runs to an outcome, which the retries find.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }

    impl<F, B, E> PinnedDrop for ResponseFuture<F, B, E> {
        fn drop(this: Pin<&mut Self>) {
            match this.project().state.project() {
                StateProj::Starting { future, adopt } => {
                    if let Some(future) = future.take() {
                        adopt(future);
                    }
                }
                // Only a keyed race has work to hand over; checked before anything is taken,
                // as taking the plan moves it even when there is nothing to do.
                StateProj::Racing { future, plan, task, detach, .. } if task.is_some() => {
                    if let (Some(future), Some(plan), Some(task)) = (future.take(), plan.take(), task.take()) {
                        detach(&plan, task, future);
                    }
                }
                _ => {}
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        // Not offloadable: the inner future as it is.
        Passthrough { #[pin] future: F },
        // A keyed request: its fingerprint and record before its work starts.
        Starting { future: Option<Starting<F, B, E>>, adopt: fn(Starting<F, B, E>) },
        // The race of the work against the threshold, keyed or not. The inner future is
        // boxed so that it can move to a detached task; a keyed one has its task already.
        Racing {
            future: Option<Pin<Box<F>>>,
            // Made when the work first waits: work that is ready at once never touches the
            // timer wheel.
            #[pin]
            sleep: Option<Sleep>,
            plan: Option<Plan>,
            task: Option<Started>,
            detach: fn(&Plan, Started, Pin<Box<F>>),
        },
        // Storing the task, or any path with store I/O.
        Slow { future: BoxAnswer<B, E> },
        Ready { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            state: State::Passthrough { future },
        }
    }

    pub(crate) fn racing(future: Pin<Box<F>>, plan: Plan) -> Self {
        Self {
            state: race(future, plan, None),
        }
    }

    pub(crate) fn starting(future: Starting<F, B, E>) -> Self {
        Self {
            state: State::Starting {
                future: Some(future),
                adopt: adopt::<F, B, E>,
            },
        }
    }

    pub(crate) fn slow(future: BoxAnswer<B, E>) -> Self {
        Self {
            state: State::Slow { future },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

/// The race of `future` against the plan's threshold.
fn race<F, B, E>(future: Pin<Box<F>>, plan: Plan, task: Option<Started>) -> State<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    State::Racing {
        future: Some(future),
        sleep: None,
        plan: Some(plan),
        task,
        detach: Plan::detach::<F, B, E>,
    }
}

/// Finishes a keyed start whose foreground is gone: once the record exists, the work runs.
fn adopt<F, B, E>(starting: Starting<F, B, E>)
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError> + Send + 'static,
{
    super::work::spawn(async move {
        if let Start::Race { future, task, plan } = starting.await {
            plan.detach(task, future);
        }
    });
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
                        .map_ok(|response| response.map(ResponseBody::inner));
                }
                StateProj::Starting { future, .. } => {
                    let starting = future.as_mut().expect("polled after completion");
                    let start = std::task::ready!(starting.as_mut().poll(cx));
                    *future = None;
                    match start {
                        Start::Answer(answer) => return Poll::Ready(answer),
                        Start::Race { future, task, plan } => {
                            this.state.set(race(future, plan, Some(task)));
                        }
                    }
                }
                StateProj::Racing {
                    future,
                    mut sleep,
                    plan,
                    task,
                    ..
                } => {
                    let inner = future.as_mut().expect("polled after completion");
                    let polled = if task.is_some() {
                        // A keyed task records a panic before it unwinds further.
                        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
                            Ok(polled) => polled,
                            Err(panic) => {
                                *future = None;
                                let plan = plan.take().expect("taken once");
                                plan.fail(
                                    task.take().expect("checked"),
                                    TaskOutcome::failed(reason::PANICKED),
                                );
                                std::panic::resume_unwind(panic)
                            }
                        }
                    } else {
                        inner.as_mut().poll(cx)
                    };
                    if let Poll::Ready(result) = polled {
                        *future = None;
                        let plan = plan.take().expect("taken once");
                        return Poll::Ready(finished(plan, task.take(), result));
                    }
                    let race_until = plan.as_ref().expect("kept while racing").race_until;
                    if sleep.is_none() {
                        sleep.set(Some(tokio::time::sleep_until(race_until)));
                    }
                    let timer = sleep.as_pin_mut().expect("set above");
                    if timer.poll(cx).is_pending() {
                        // A deadline around this layer is due later: this timer is the
                        // stack's one.
                        crate::wake::promise(race_until);
                        return Poll::Pending;
                    }
                    let future = future.take().expect("taken once");
                    let plan = plan.take().expect("taken once");
                    match task.take() {
                        Some(task) => {
                            let id = task.id;
                            plan.detach(task, future);
                            this.state.set(State::Ready {
                                response: Some(plan.accepted(id, None)),
                            });
                        }
                        None => this.state.set(State::Slow {
                            future: Box::pin(plan.offload(future)),
                        }),
                    }
                }
                StateProj::Slow { future } => return future.as_mut().poll(cx),
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")))
                }
            }
        }
    }
}

/// The answer of work that finished in the foreground. A keyed task keeps its response for
/// the retries while it streams to the client, or records why there is none.
fn finished<B, E>(plan: Plan, task: Option<Started>, result: Result<Response<B>, E>) -> Answer<B, E>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let applied = plan.applied();
    let Some(task) = task else {
        return result.map(|response| applied_to(response.map(ResponseBody::inner), applied));
    };
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            plan.fail(task, TaskOutcome::failed(reason::FAILED));
            return Err(error);
        }
    };
    if let Some(escalation) = plan.config.escalation.peek(&response) {
        let outcome = TaskOutcome::Failed {
            reason: reason::ESCALATED.into(),
            error_type: Some(escalation.error_type().to_owned().into()),
        };
        plan.fail(task, outcome);
        return Ok(applied_to(response.map(ResponseBody::inner), applied));
    }
    let (parts, body) = response.into_parts();
    let keeper = Keeper::new(
        plan.config.clone(),
        task.id,
        task.reservation,
        parts.status,
        parts.headers.clone(),
        plan.max_response(),
    );
    let response = Response::from_parts(parts, ResponseBody::kept(body, keeper));
    Ok(applied_to(response, applied))
}
