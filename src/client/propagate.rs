//! [`PropagateDeadlineLayer`]: the remaining time on every outbound request, and the call cut
//! at the deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, Request};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{BoxError, Layer, Service};

use super::DeadlinePassed;
use crate::deadline::{self, Deadline, TrustedHeader};

/// Passes what remains of the current [`Deadline`] on to the called service, and cuts the
/// call at the deadline.
///
/// The deadline is the one [`deadline::current`] sees (inside a request of a
/// [`DeadlineLayer`](crate::DeadlineLayer), or a [`Deadline::scope`]), else a `Deadline` in
/// the outbound request's extensions. Without one, requests pass untouched. With one, the
/// request carries the remaining time, as `grpc-timeout` or a header of milliseconds, the
/// forms a [`TrustedHeader`] reads (a shorter budget the request already states in that
/// header is kept); a deadline already passed fails the call at once with
/// [`DeadlinePassed`], sending nothing; a call still running at the deadline is dropped
/// with the same error. See the [module docs](super) for an example.
#[derive(Clone, Debug)]
#[must_use]
pub struct PropagateDeadlineLayer {
    header: Header,
}

#[derive(Clone, Debug)]
enum Header {
    GrpcTimeout,
    Millis(HeaderName),
}

impl Header {
    /// The same header as an inbound [`TrustedHeader`] reads it.
    fn trusted(&self) -> TrustedHeader {
        match self {
            Self::GrpcTimeout => TrustedHeader::GrpcTimeout,
            Self::Millis(name) => TrustedHeader::Millis(name.clone()),
        }
    }
}

impl PropagateDeadlineLayer {
    /// The remaining time as `grpc-timeout` (`1500m`).
    pub fn grpc_timeout() -> Self {
        Self {
            header: Header::GrpcTimeout,
        }
    }

    /// The remaining time in whole milliseconds in header `name`, such as
    /// `x-envoy-expected-rq-timeout-ms` or one of your own.
    pub fn millis(name: HeaderName) -> Self {
        Self {
            header: Header::Millis(name),
        }
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            header: self.header.clone(),
        }
    }
}

/// The service of [`PropagateDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
    header: Header,
}

impl<S> PropagateDeadline<S> {
    crate::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateDeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let deadline =
            deadline::current().or_else(|| request.extensions().get::<Deadline>().copied());
        let Some(deadline) = deadline else {
            return PropagateDeadlineFuture {
                state: State::Unbounded {
                    future: self.inner.call(request),
                },
            };
        };
        let (name, value) = match &self.header {
            Header::GrpcTimeout => (
                HeaderName::from_static("grpc-timeout"),
                deadline.grpc_timeout_header(),
            ),
            Header::Millis(name) => (name.clone(), deadline.remaining_millis_header()),
        };
        let Some(value) = value else {
            return PropagateDeadlineFuture {
                state: State::Passed,
            };
        };
        // A shorter budget the request states itself stays: passed on, a deadline shortens
        // the time a call has, never extends it.
        let stated = request
            .headers()
            .contains_key(&name)
            .then(|| self.header.trusted().budget(request.headers()))
            .flatten();
        if stated.is_none_or(|stated| stated >= deadline.remaining()) {
            request.headers_mut().insert(name, value);
        }
        PropagateDeadlineFuture {
            state: State::Bounded {
                future: self.inner.call(request),
                sleep: tokio::time::sleep_until(deadline.instant()),
            },
        }
    }
}

pin_project! {
    /// Response future of [`PropagateDeadline`].
    pub struct PropagateDeadlineFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Unbounded { #[pin] future: F },
        Bounded { #[pin] future: F, #[pin] sleep: Sleep },
        Passed,
    }
}

impl<F, T, E> Future for PropagateDeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Unbounded { future } => future.poll(cx).map_err(Into::into),
            StateProj::Bounded { future, sleep } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                std::task::ready!(sleep.poll(cx));
                Poll::Ready(Err(DeadlinePassed(()).into()))
            }
            StateProj::Passed => Poll::Ready(Err(DeadlinePassed(()).into())),
        }
    }
}
