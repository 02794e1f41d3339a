use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tower::{BoxError, Service};

use super::body::{RequestBody, ResponseBody};
use super::config::Config;
use super::detached::Invocation;
use super::future::ResponseFuture;
use super::idempotency;
use super::task::{bad_idempotency_key, Extras, Plan};
use super::{prefer, BackgroundDeadline};
use crate::deadline::{self, later, Deadline};

/// Middleware that offloads slow requests; see [`OffloadLayer`](super::OffloadLayer).
pub struct Offload<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Offload<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    crate::inner_service_accessors!();
}

impl<S: Clone> Clone for Offload<S> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.config.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for Offload<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Offload<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    ReqBody: http_body::Body + Unpin + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Send,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let mut request = request.map(RequestBody::new);
        if !config.methods.contains(request.method()) {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        // Only a filter or an owner takes the request apart: moving it costs as much as the
        // rest of the fast path.
        let mut owner = None;
        if config.filter.is_some() || config.owner.is_some() {
            let (parts, body) = request.into_parts();
            if config.filter.as_ref().is_some_and(|filter| !filter(&parts)) {
                return ResponseFuture::passthrough(
                    self.inner.call(Request::from_parts(parts, body)),
                );
            }
            owner = config.owner_of(&parts);
            request = Request::from_parts(parts, body);
        }
        let Ok(key) = idempotency::key(request.headers()) else {
            return ResponseFuture::ready(bad_idempotency_key());
        };
        let key = key.map(|key| idempotency::scoped(request.method(), request.uri().path(), &key));

        let preferences = prefer::parse(request.headers());
        let wait = preferences.wait.map(|wait| wait.min(config.max_wait));
        // RFC 7240: `respond-async` with `wait=N` asks for the asynchronous answer only
        // past N seconds; alone, at once.
        let immediate = preferences.respond_async && wait.is_none();
        let applied = match (preferences.respond_async, wait) {
            (false, None) => None,
            (true, None) => Some(HeaderValue::from_static("respond-async")),
            (respond_async, Some(wait)) => {
                let both = if respond_async { "respond-async, " } else { "" };
                Some(
                    HeaderValue::try_from(format!("{both}wait={}", wait.as_secs()))
                        .expect("ASCII digits"),
                )
            }
        };
        // The 202 must leave before the deadline set above this layer.
        let deadline =
            deadline::current().or_else(|| request.extensions().get::<Deadline>().copied());
        let threshold = if immediate {
            Duration::ZERO
        } else {
            wait.unwrap_or(config.after)
        };
        let now = tokio::time::Instant::now();
        // The threshold, or earlier when the deadline leaves less than it and the margin.
        let mut race_until = later(now, threshold);
        if let Some(deadline) = deadline {
            let latest = deadline
                .instant()
                .checked_sub(config.margin)
                .unwrap_or(now)
                .max(now);
            race_until = race_until.min(latest);
        }

        let extras = Extras {
            owner,
            applied,
            base: super::location::base(request.extensions(), request.uri().path()),
            invocation: request.extensions().get::<Invocation>().cloned(),
            background: request
                .extensions()
                .get::<BackgroundDeadline>()
                .map(|b| b.0),
        };
        let plan = Plan {
            config: config.clone(),
            extras: extras.boxed(),
            race_until,
        };
        if let Some(key) = key {
            // The clone that was made ready is the one to call; a fresh clone stays.
            let ready = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, ready);
            return ResponseFuture::starting(Box::pin(plan.start_keyed(inner, request, key)));
        }
        let future = Box::pin(self.inner.call(request));
        if immediate {
            return ResponseFuture::slow(Box::pin(plan.offload(future)));
        }
        ResponseFuture::racing(future, plan)
    }
}
