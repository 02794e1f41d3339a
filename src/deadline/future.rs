//! Response future of [`DeadlineService`](super::DeadlineService).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, Sleep};

use super::layer::OnTimeout;
use super::{Deadline, DeadlineExceeded};

pin_project! {
    /// Response future of [`DeadlineService`](super::DeadlineService).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        #[pin]
        sleep: Sleep,
        deadline: Deadline,
        arrived: Instant,
        on_timeout: OnTimeout,
        method: Method,
        path: Option<PathAndQuery>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: TaskLocalFuture<Deadline, F> },
        // The deadline passed: the inner future is gone, so its work stops at once.
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        future: TaskLocalFuture<Deadline, F>,
        deadline: Deadline,
        arrived: Instant,
        on_timeout: OnTimeout,
        method: Method,
        path: Option<PathAndQuery>,
    ) -> Self {
        Self {
            state: State::Running { future },
            sleep: tokio::time::sleep_until(deadline.instant()),
            deadline,
            arrived,
            on_timeout,
            method,
            path,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<B, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let budget = this
            .deadline
            .instant()
            .saturating_duration_since(*this.arrived);
        if let StateProj::Running { future } = this.state.as_mut().project() {
            if let Poll::Ready(result) = future.poll(cx) {
                let elapsed = this.arrived.elapsed();
                if elapsed.as_secs_f64() > budget.as_secs_f64() * this.on_timeout.warn_fraction {
                    tracing::warn!(
                        target: "tower_serverless::deadline",
                        method = %this.method,
                        path = this.path.as_ref().map_or("", |p| p.as_str()),
                        elapsed_ms = elapsed.as_millis() as u64,
                        budget_ms = budget.as_millis() as u64,
                        source = ?this.deadline.source(),
                        "the request used most of its time budget"
                    );
                }
                return Poll::Ready(result.map(|response| response.map(Either::Left)));
            }
        }
        ready!(this.sleep.poll(cx));
        this.state.set(State::Expired);
        tracing::warn!(
            target: "tower_serverless::deadline",
            method = %this.method,
            path = this.path.as_ref().map_or("", |p| p.as_str()),
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
