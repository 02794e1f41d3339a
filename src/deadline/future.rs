//! Response future of [`DeadlineService`](super::DeadlineService).
//!
//! The type its `call` returns, for a service of your own that wraps one and names its
//! future:
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{service_fn, Layer, Service};
//! use tower_serverless::deadline::future::ResponseFuture;
//! use tower_serverless::DeadlineLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut service = DeadlineLayer::new(Duration::from_secs(1)).layer(service_fn(
//!     |_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new("done")) },
//! ));
//! let future: ResponseFuture<_> = service.call(Request::new(()));
//! assert_eq!(future.await.unwrap().status(), 200);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::layer::OnTimeout;
use super::scope::enter;
use super::{Deadline, DeadlineExceeded};

pin_project! {
    /// Response future of [`DeadlineService`](super::DeadlineService).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // Made when the work first waits and no timer inside is due before the deadline
        // (see `crate::wake`): work that is ready at once, or under an offload threshold,
        // registers no timer of its own.
        #[pin]
        sleep: Option<Sleep>,
        deadline: Deadline,
        arrived: Instant,
        on_timeout: OnTimeout,
        // For the warnings, and only while they are logged.
        line: Option<RequestLine>,
    }
}

/// The method and path of a request, for its warnings.
pub(crate) struct RequestLine {
    pub(crate) method: Method,
    pub(crate) path: Option<PathAndQuery>,
}

impl RequestLine {
    fn path(&self) -> &str {
        self.path.as_ref().map_or("", |path| path.as_str())
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // The deadline is current while the future is polled (see `super::scope`).
        Running { #[pin] future: F },
        // The deadline passed: the inner future is gone, so its work stops at once.
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        future: F,
        deadline: Deadline,
        arrived: Instant,
        on_timeout: OnTimeout,
        line: Option<RequestLine>,
    ) -> Self {
        Self {
            state: State::Running { future },
            sleep: None,
            deadline,
            arrived,
            on_timeout,
            line,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // Only the warnings and the 504 need the budget: the common path reads no clock.
        let budget = |arrived: Instant, deadline: &Deadline| {
            deadline.instant().saturating_duration_since(arrived)
        };
        if let StateProj::Running { future } = this.state.as_mut().project() {
            let entered = enter(*this.deadline);
            let watch = crate::wake::Watch::start();
            let polled = future.poll(cx);
            let woken_by = watch.finish();
            drop(entered);
            if let Poll::Ready(result) = polled {
                if let Some(line) = this.line {
                    let budget = budget(*this.arrived, this.deadline);
                    let elapsed = this.arrived.elapsed();
                    if elapsed.as_secs_f64() > budget.as_secs_f64() * this.on_timeout.warn_fraction
                    {
                        tracing::warn!(
                            target: "tower_serverless::deadline",
                            method = %line.method,
                            path = line.path(),
                            elapsed_ms = elapsed.as_millis() as u64,
                            budget_ms = budget.as_millis() as u64,
                            source = ?this.deadline.source(),
                            "the request used most of its time budget"
                        );
                    }
                }
                return Poll::Ready(result.map(|response| response.map(Either::Left)));
            }
            // A timer inside wakes the task before the deadline: this poll needs none.
            let due = this.deadline.instant();
            if this.sleep.is_none() && woken_by.is_some_and(|at| at <= due) {
                return Poll::Pending;
            }
        }
        if this.sleep.is_none() {
            this.sleep
                .set(Some(tokio::time::sleep_until(this.deadline.instant())));
        }
        let timer = this.sleep.as_mut().as_pin_mut().expect("set above");
        if timer.poll(cx).is_pending() {
            crate::wake::promise(this.deadline.instant());
            return Poll::Pending;
        }
        this.state.set(State::Expired);
        let budget = budget(*this.arrived, this.deadline);
        tracing::warn!(
            target: "tower_serverless::deadline",
            method = this.line.as_ref().map(|line| tracing::field::display(&line.method)),
            path = this.line.as_ref().map(RequestLine::path),
            budget_ms = budget.as_millis() as u64,
            source = ?this.deadline.source(),
            "the request ran out of time; answering 504"
        );
        let exceeded = DeadlineExceeded {
            deadline: *this.deadline,
            budget,
        };
        Poll::Ready(Ok(this.on_timeout.response(exceeded).map(Either::Right)))
    }
}
