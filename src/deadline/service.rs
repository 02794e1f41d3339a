use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::Instant;
use tower::Service;

use super::future::{RequestLine, ResponseFuture};
use super::layer::Config;
use super::value::later;
use super::{Deadline, DeadlineLayer, DeadlineSource};

/// Middleware that answers `504` once the request's [`Deadline`] passes.
///
/// See the [module docs](super) for details.
pub struct DeadlineService<S> {
    inner: S,
    config: Config,
}

impl<S> DeadlineService<S> {
    pub(crate) fn new(inner: S, config: Config) -> Self {
        Self { inner, config }
    }

    /// Returns a new [`DeadlineLayer`] with `budget`.
    pub fn layer(budget: std::time::Duration) -> DeadlineLayer {
        DeadlineLayer::new(budget)
    }

    crate::inner_service_accessors!();

    /// The deadline of `request` from the budget and the trusted headers. Borrowing the
    /// request: moving it in and out costs more than the rest of this function.
    fn deadline<B>(&self, request: &Request<B>, arrived: Instant) -> Deadline {
        let config = &self.config;
        let mut deadline = Deadline::at(later(arrived, config.budget()), DeadlineSource::Budget);
        for header in config.headers() {
            if let Some(budget) = header.budget(request.headers()) {
                let budget = budget.min(config.header_max);
                deadline =
                    deadline.min(Deadline::at(later(arrived, budget), DeadlineSource::Header));
            }
        }
        deadline
    }

    /// `deadline`, or the earliest deadline of the configured sources when earlier.
    fn apply_sources<B>(&self, request: Request<B>, deadline: &mut Deadline) -> Request<B> {
        let (parts, body) = request.into_parts();
        for source in self.config.sources() {
            if let Some(found) = source(&parts) {
                *deadline = deadline.min(found);
            }
        }
        Request::from_parts(parts, body)
    }
}

impl<S: Clone> Clone for DeadlineService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for DeadlineService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineService")
            .field("inner", &self.inner)
            .field("budget", &self.config.budget())
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DeadlineService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<http_body_util::Either<ResBody, http_body_util::Full<bytes::Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let arrived = Instant::now();
        let mut deadline = self.deadline(&request, arrived);
        if !self.config.sources().is_empty() {
            request = self.apply_sources(request, &mut deadline);
        }
        // A deadline an outer layer set (`LambdaLayer` sets the function's and the front
        // door's) is kept in its own box when it is earlier, or overwritten: no allocation.
        // Only a request without one gets the insert, and its box; a request without any
        // extension is not looked up (`http::Extensions` has no map to look in).
        match request.extensions_mut().get_mut::<Deadline>() {
            Some(outer) => {
                deadline = outer.min(deadline);
                *outer = deadline;
            }
            None => {
                request.extensions_mut().insert(deadline);
            }
        }
        let line = tracing::enabled!(target: "tower_serverless::deadline", tracing::Level::WARN)
            .then(|| RequestLine {
                method: request.method().clone(),
                path: request.uri().path_and_query().cloned(),
            });
        // A guard, not a closure: the request would be moved into one and out again.
        let entered = super::scope::enter(deadline);
        let future = self.inner.call(request);
        drop(entered);
        ResponseFuture::new(future, deadline, arrived, self.config.on_timeout(), line)
    }
}
