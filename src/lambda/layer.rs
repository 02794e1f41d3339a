use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Request;
use lambda_http::lambda_runtime::LambdaInvocation;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::deadline::{
    Deadline, DeadlineSource, API_GATEWAY_HTTP_CAP, API_GATEWAY_REST_CAP, DEFAULT_MARGIN,
};
use crate::offload::BackgroundDeadline;

/// Sets the Lambda deadlines on every request; see the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct LambdaLayer {
    margin: Duration,
}

impl LambdaLayer {
    /// A layer keeping [`DEFAULT_MARGIN`] (1 s) below the gateway's cap and the function's
    /// deadline.
    pub fn new() -> Self {
        Self {
            margin: DEFAULT_MARGIN,
        }
    }

    /// The margin kept below the gateway's cap and the function's deadline.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }
}

impl Default for LambdaLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for LambdaLayer {
    type Service = LambdaService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LambdaService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`LambdaLayer`].
#[derive(Clone, Debug)]
pub struct LambdaService<S> {
    inner: S,
    layer: LambdaLayer,
}

/// The instant of a Unix time in milliseconds, on the clock deadlines use.
fn instant_of(epoch_ms: i128) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i128);
    let now = Instant::now();
    let delta = Duration::from_millis(
        u64::try_from((epoch_ms - now_ms).unsigned_abs()).unwrap_or(u64::MAX),
    );
    if epoch_ms >= now_ms {
        now.checked_add(delta).unwrap_or(now)
    } else {
        now.checked_sub(delta).unwrap_or(now)
    }
}

fn before(at: Instant, margin: Duration) -> Instant {
    at.checked_sub(margin).unwrap_or(at)
}

impl<S> LambdaService<S> {
    crate::inner_service_accessors!();

    fn deadlines<B>(&self, request: &Request<B>) -> (Option<Deadline>, Option<Deadline>) {
        let margin = self.layer.margin;
        let function = request
            .lambda_context_ref()
            .filter(|context| context.deadline > 0)
            .map(|context| {
                let at = before(instant_of(i128::from(context.deadline)), margin);
                Deadline::at(at, DeadlineSource::Function)
            });
        let arrival = match request.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(context)) => {
                Some((context.request_time_epoch, API_GATEWAY_REST_CAP))
            }
            Some(RequestContext::ApiGatewayV2(context)) => {
                Some((context.time_epoch, API_GATEWAY_HTTP_CAP))
            }
            _ => None,
        };
        let gateway = arrival.filter(|(epoch, _)| *epoch > 0).map(|(epoch, cap)| {
            let at = before(
                instant_of(i128::from(epoch) + cap.as_millis() as i128),
                margin,
            );
            Deadline::at(at, DeadlineSource::Gateway)
        });
        let foreground = [
            gateway,
            function,
            request.extensions().get::<Deadline>().copied(),
        ]
        .into_iter()
        .flatten()
        .reduce(Deadline::min);
        (foreground, function)
    }
}

impl<S, B> Service<Request<B>> for LambdaService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let (foreground, background) = self.deadlines(&request);
        if let Some(deadline) = foreground {
            request.extensions_mut().insert(deadline);
        }
        if let Some(deadline) = background {
            request
                .extensions_mut()
                .insert(BackgroundDeadline(deadline));
        }
        self.inner.call(request)
    }
}

/// Wraps the runtime's raw invocation service, which sees every invocation (also one whose
/// event does not parse as an HTTP request) and ends once the response or error is posted.
#[derive(Clone, Debug)]
pub(crate) struct TrackLayer(pub(crate) Invocations);

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            invocations: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Track<S> {
    inner: S,
    invocations: Invocations,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for Track<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let finished = Finished {
            invocations: self.invocations.clone(),
            request_id: invocation.context.request_id.clone(),
        };
        Tracked {
            inner: self.inner.call(invocation),
            finished: Some(finished),
        }
    }
}

pin_project! {
    pub(crate) struct Tracked<F> {
        #[pin]
        inner: F,
        finished: Option<Finished>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        this.finished.take();
        Poll::Ready(output)
    }
}

/// The handler of each invocation, finished or not, for the extension to wait on.
#[derive(Clone, Debug, Default)]
pub(crate) struct Invocations(Arc<Mutex<HashMap<String, Arc<watch::Sender<bool>>>>>);

impl Invocations {
    fn entry(&self, request_id: &str) -> Arc<watch::Sender<bool>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(request_id.to_owned())
            .or_insert_with(|| Arc::new(watch::channel(false).0))
            .clone()
    }

    fn finish(&self, request_id: &str) {
        self.entry(request_id).send_replace(true);
    }

    /// Waits until the handler of `request_id` has finished, however it ended.
    pub(crate) async fn finished(&self, request_id: &str) {
        let sender = self.entry(request_id);
        let _ = sender.subscribe().wait_for(|done| *done).await;
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(request_id);
    }
}

/// Marks the invocation's handler finished when dropped: on completion, on error, and when
/// a panic unwinds through the future.
#[derive(Debug)]
struct Finished {
    invocations: Invocations,
    request_id: String,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.invocations.finish(&self.request_id);
    }
}
