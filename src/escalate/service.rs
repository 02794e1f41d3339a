use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{BoxError, Service};

use super::future::{panicked, service_error, ResponseFuture};
use super::output::{Fail, Output};
use super::policy::{DefaultPredicate, EscalatePredicate, Policy};
use super::EscalateLayer;

/// Middleware that turns chosen outcomes of the inner service into a failed invocation.
///
/// See the [module docs](super) for details.
pub struct Escalate<S, O = Fail, P = DefaultPredicate> {
    inner: S,
    policy: Policy,
    output: O,
    predicate: P,
    // An error from the inner `poll_ready`, answered by the next `call` so that it escalates
    // like any other failure (and `Respond` mode keeps `Error = Infallible`).
    ready_error: Option<BoxError>,
}

impl<S> Escalate<S> {
    /// Returns a new [`EscalateLayer`] with the default policy.
    pub fn layer() -> EscalateLayer {
        EscalateLayer::new()
    }
}

impl<S, O, P> Escalate<S, O, P> {
    pub(crate) fn new(inner: S, layer: EscalateLayer<O, P>) -> Self {
        Self {
            inner,
            policy: layer.policy,
            output: layer.output,
            predicate: layer.predicate,
            ready_error: None,
        }
    }

    crate::inner_service_accessors!();
}

impl<S: Clone, O: Clone, P: Clone> Clone for Escalate<S, O, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            output: self.output.clone(),
            predicate: self.predicate.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug, O: fmt::Debug, P> fmt::Debug for Escalate<S, O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escalate")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("output", &self.output)
            .field("predicate", &std::any::type_name::<P>())
            .finish()
    }
}

impl<S, ReqBody, ResBody, O, P> Service<Request<ReqBody>> for Escalate<S, O, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    O: Output,
    P: EscalatePredicate<ResBody>,
{
    type Response = Response<O::Body<ResBody>>;
    type Error = O::Error;
    type Future = ResponseFuture<S::Future, O, P>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none() {
            if let Err(error) = std::task::ready!(self.inner.poll_ready(cx)) {
                self.ready_error = Some(error.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (policy, output, predicate) = (
            self.policy.clone(),
            self.output.clone(),
            self.predicate.clone(),
        );
        if let Some(error) = self.ready_error.take() {
            return ResponseFuture::failed(service_error(error), policy, output, predicate);
        }
        if !policy.panics {
            return ResponseFuture::running(self.inner.call(request), policy, output, predicate);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture::running(future, policy, output, predicate),
            Err(payload) => ResponseFuture::failed(panicked(payload), policy, output, predicate),
        }
    }
}
