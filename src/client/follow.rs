//! [`FollowLayer`]: a `202 Accepted` followed to its result.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};
use http::uri::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};
use tracing::Instrument;

use super::FollowError;
use crate::capture::{capture, CaptureError};
use crate::deadline;
use crate::offload::store::BoxFuture;

/// The body of a followed response: the final answer's, boxed once.
pub type FollowBody = UnsyncBoxBody<Bytes, BoxError>;

/// API Gateway's API key header.
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// How many times the result's `GET` is tried while it answers as a gateway does when the
/// request did not reach its target.
const RESULT_ATTEMPTS: usize = 3;

/// How many polls in a row may fail before an answer comes (the connection, or the
/// answer's body) before the status URL is taken for unreachable.
const FAILED_POLLS: usize = 3;

/// The largest status document read to learn a task's state: a JSON answer larger than
/// this is the result.
const STATUS_LIMIT: usize = 64 << 10;

/// Follows a `202 Accepted` to its result, so that one `call` returns the final response.
///
/// After a `202` with `Location` (resolved against the request's URI), it polls that URL,
/// waiting as `Retry-After` says, in seconds or until an HTTP date (else 100 ms, doubling to
/// at most 5 s; also when it asks for no wait, `0` or a date passed), and goes on as the
/// table says. A `202` without `Location` has nothing to follow: it is the answer, as a
/// redirect without one is for tower-http's `FollowRedirect`.
///
/// | the status URL answers | then |
/// |---|---|
/// | `303 See Other` (or another redirect) | `GET` of its `Location`: that is the result |
/// | `202`, or `200` JSON with `status` `pending`, `running`, `inprogress`, `notstarted` or `accepted` | poll again |
/// | `200` JSON with `status` `succeeded` and a `Location` or `resourceLocation` | `GET` of that: the result |
/// | `200` JSON with `status` `failed` / `cancelled` | [`FollowError::Failed`] (with `error` and `error_type`, or an `error` object's `message` and `code`) / [`FollowError::Cancelled`] |
/// | any other `200`, or another success (`201`, `204`) | that is the result |
/// | `408`, `429`, `502`, `503`, `504` | poll again: the poll did not reach the task |
/// | nothing: the inner service failed (the connection, or the answer's body) | poll again; the third time in a row, [`FollowError::Unreachable`] with the status URL and that error |
/// | anything else | [`FollowError::Unexpected`] |
///
/// The result's `GET` (after a `303`, or of a status document's `Location`) is made again
/// when it is answered as a poll that did not reach the task is (`408`, `429`, `502`, `503`,
/// `504`): three times in all, waiting as `Retry-After` says (else 100 ms, then 200 ms), and
/// not past the time limit. The last answer is then the result, since it cannot be told from
/// a stored response with that status. Every response the layer ends with after a `202`
/// carries [`Followed`] in its extensions, which names the status URL and the URL the
/// response was read from: a `GET` of that reads a stored result again.
///
/// This covers this crate's [`OffloadLayer`](crate::OffloadLayer) and the same pattern
/// elsewhere (Azure's asynchronous request-reply). It stops at the caller's
/// [`Deadline`](crate::Deadline) when there is one, else after
/// [`max_wait`](Self::max_wait), with [`FollowError::TimedOut`]. Another host is followed
/// only when [allowed](Self::other_hosts), wherever it is named. See the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct FollowLayer {
    config: Config,
}

#[derive(Clone, Debug)]
struct Config {
    max_wait: Duration,
    // The two preferences, and the header they make, made once.
    respond_async: bool,
    wait: Option<u64>,
    prefer: Option<HeaderValue>,
    other_hosts: bool,
    cancel_on_drop: bool,
    // Shared: the configuration is cloned into every call.
    forward: Arc<[HeaderName]>,
}

impl Default for FollowLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl FollowLayer {
    /// Follows for at most 5 minutes without a caller's deadline, the same host only, with
    /// the request's `Authorization` and `Cookie`, sends no `Prefer`, and leaves a task
    /// running when given up.
    pub fn new() -> Self {
        Self {
            config: Config {
                max_wait: Duration::from_secs(300),
                respond_async: false,
                wait: None,
                prefer: None,
                other_hosts: false,
                cancel_on_drop: false,
                forward: Arc::new([AUTHORIZATION, COOKIE, X_API_KEY]),
            },
        }
    }

    /// The headers of the request that its polls, the `GET` of its result and the `DELETE`
    /// that cancels it carry too (default: `Authorization`, `Cookie` and `x-api-key`), so
    /// that a task bound to its owner (see [`OffloadLayer::owner`](crate::OffloadLayer::owner))
    /// answers the caller who started it, and an API Gateway stage that requires an API key
    /// (`x-api-key`) lets the polls in. They go to the request's own host (scheme, host and port)
    /// only: another host, when [allowed](Self::other_hosts), gets none of them. An empty
    /// list forwards nothing.
    ///
    /// ```
    /// use http::HeaderName;
    /// use tower_serverless::client::FollowLayer;
    ///
    /// let follow = FollowLayer::new().forward_headers([
    ///     http::header::AUTHORIZATION,
    ///     HeaderName::from_static("x-tenant"),
    /// ]);
    /// ```
    pub fn forward_headers<I: IntoIterator<Item = HeaderName>>(mut self, names: I) -> Self {
        self.config.forward = names.into_iter().collect();
        self
    }

    /// How long to follow a task when the call has no [`Deadline`](crate::Deadline)
    /// (default 5 min; `Duration::MAX` for no limit). A next poll that would come past it
    /// (a `Retry-After` that reaches past it, for one) ends the following at once.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.config.max_wait = max;
        self
    }

    /// Sends `Prefer: respond-async` on the first request: the server answers `202` at once
    /// and the layer polls, which holds no connection open for long. With
    /// [`prefer_wait`](Self::prefer_wait) too, `Prefer: respond-async, wait=N`: the server
    /// answers in the foreground within `N` seconds, else `202` (RFC 7240).
    pub fn respond_async(mut self) -> Self {
        self.config.respond_async = true;
        self.config.prefer = prefer(true, self.config.wait);
        self
    }

    /// Sends `Prefer: wait=N` on the first request: the server answers in the foreground if
    /// it can within `wait` (whole seconds, rounded up).
    pub fn prefer_wait(mut self, wait: Duration) -> Self {
        self.config.wait = Some(deadline::seconds_up(wait));
        self.config.prefer = prefer(self.config.respond_async, self.config.wait);
        self
    }

    /// Whether another host (or scheme, or port) is followed (default: no): in the `202`'s
    /// `Location`, the status URL's redirect, or a status document's `Location` or
    /// `resourceLocation`. Otherwise the call ends with [`FollowError::OtherHost`] and nothing
    /// is sent there. The requests there go through the same inner service, with whatever
    /// it adds (credentials, for one). A port written out that is the scheme's default
    /// (`https://api.example:443`) is the same host as none.
    pub fn other_hosts(mut self, allowed: bool) -> Self {
        self.config.other_hosts = allowed;
        self
    }

    /// Whether a task being followed is cancelled (`DELETE` of its status URL) when the
    /// call is dropped, times out or cannot reach the status URL (default: no). The
    /// `DELETE` goes through the inner service on a task of its own, in the `tracing` span
    /// the call was dropped in.
    pub fn cancel_on_drop(mut self, cancel: bool) -> Self {
        self.config.cancel_on_drop = cancel;
        self
    }
}

impl<S> Layer<S> for FollowLayer {
    type Service = Follow<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Follow {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Where a response [`FollowLayer`] ended with was read: in the extensions of every
/// response that followed a `202`, as tower-http's `FollowRedirect` leaves the last
/// request's URI on its response.
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_serverless::client::Followed;
///
/// fn result_url<B>(response: &Response<B>) -> Option<&http::Uri> {
///     // A gateway's 502 on every try of the result's GET: the result is still stored there.
///     (response.status() == StatusCode::BAD_GATEWAY)
///         .then(|| response.extensions().get::<Followed>())
///         .flatten()
///         .map(|followed| &followed.result)
/// }
/// # assert_eq!(result_url(&Response::new(())), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Followed {
    /// The task's status URL: the `202`'s `Location`, resolved against the request's URI.
    pub status: Uri,
    /// The URL of the response: the result's, or the status URL when it answered with the
    /// result itself.
    pub result: Uri,
}

/// The service of [`FollowLayer`].
#[derive(Clone)]
pub struct Follow<S> {
    inner: S,
    config: Config,
}

impl<S: fmt::Debug> fmt::Debug for Follow<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follow")
            .field("inner", &self.inner)
            .field("max_wait", &self.config.max_wait)
            .finish_non_exhaustive()
    }
}

impl<S> Follow<S> {
    crate::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for Follow<S>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<FollowBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<FollowBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = self.config.clone();
        let started = Instant::now();
        // Saturating: `max_wait(Duration::MAX)` is no limit, not an overflow.
        let until = deadline::current().map_or_else(
            || deadline::later(started, config.max_wait),
            |deadline| deadline.instant(),
        );
        if let Some(prefer) = &config.prefer {
            // Beside the request's own preferences (RFC 7240 reads every `Prefer`), not
            // instead of them.
            request
                .headers_mut()
                .append(HeaderName::from_static("prefer"), prefer.clone());
        }
        let base = request.uri().clone();
        let mut forward = HeaderMap::new();
        for name in config.forward.iter() {
            for value in request.headers().get_all(name) {
                forward.append(name.clone(), value.clone());
            }
        }
        let first = self.inner.call(request);
        // The clone that was made ready answered the first request; this one polls.
        let poller = self.inner.clone();
        Box::pin(async move {
            let accepted = first.await.map_err(Into::into)?;
            // Nothing to follow without a `Location`: the `202` is the answer (one that
            // names no usable location is an error below).
            if accepted.status() != StatusCode::ACCEPTED
                || !accepted.headers().contains_key(LOCATION)
            {
                return Ok(boxed(accepted));
            }
            let location = resolve(
                &base,
                location_of(&accepted),
                config.other_hosts,
                accepted.status(),
            )?;
            let mut follower = Follower {
                inner: poller,
                location: location.clone(),
                until,
                other_hosts: config.other_hosts,
                origin: base,
                forward,
                cancel: config.cancel_on_drop,
                body: std::marker::PhantomData,
            };
            let mut backoff = Duration::from_millis(100);
            let mut wait = retry_after(&accepted);
            let mut failed = 0;
            loop {
                let pause = wait.take().unwrap_or_else(|| {
                    let pause = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    pause
                });
                // The next poll would come past the limit (the server's `Retry-After` can
                // be any number of seconds): nothing comes in time, and the caller is told
                // now rather than once the time has passed for nothing.
                if deadline::later(Instant::now(), pause) > until {
                    return Err(FollowError::TimedOut {
                        location,
                        waited: started.elapsed(),
                    }
                    .into());
                }
                tokio::time::sleep(pause).await;
                match follower.poll().await {
                    Ok(Polled::Running(retry)) => {
                        failed = 0;
                        wait = retry;
                    }
                    Ok(Polled::Done(mut response, result)) => {
                        follower.cancel = false;
                        response.extensions_mut().insert(Followed {
                            status: location,
                            result,
                        });
                        return Ok(response);
                    }
                    // The task ended or is gone, or the answer was no task status.
                    Err(error) if error.is::<FollowError>() => {
                        follower.cancel = false;
                        return Err(error);
                    }
                    // The poll did not reach the task (the connection failed, or the
                    // answer's body did): the next may, as after a gateway's `502`. The
                    // task runs on, to be cancelled if asked.
                    Err(error) => {
                        failed += 1;
                        if failed == FAILED_POLLS {
                            return Err(FollowError::Unreachable {
                                location,
                                source: error,
                            }
                            .into());
                        }
                    }
                }
            }
        })
    }
}

/// The `Prefer` header of the preferences set on the layer, if any.
fn prefer(respond_async: bool, wait: Option<u64>) -> Option<HeaderValue> {
    let value = match (respond_async, wait) {
        (false, None) => return None,
        (true, None) => "respond-async".to_owned(),
        (false, Some(wait)) => format!("wait={wait}"),
        (true, Some(wait)) => format!("respond-async, wait={wait}"),
    };
    HeaderValue::try_from(value).ok()
}

/// What a poll of the status URL said: still running (wait as long, if said), or done
/// with the response read from a URL.
enum Polled {
    Running(Option<Duration>),
    Done(Response<FollowBody>, Uri),
}

/// Polls a task's status URL; cancels the task when dropped before it is done, if asked.
struct Follower<S, B>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    inner: S,
    location: Uri,
    // When the following ends: the result's `GET` is not repeated past it.
    until: Instant,
    // Whether the result may be on another host: the status URL's `303`, or a status
    // document's `Location` / `resourceLocation`, is checked as the `202`'s `Location` is.
    other_hosts: bool,
    // The request's URI, and the headers its own host gets on every request of the follower.
    origin: Uri,
    forward: HeaderMap,
    cancel: bool,
    body: std::marker::PhantomData<fn() -> B>,
}

impl<S, B> Follower<S, B>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    /// A request of the follower's, with the forwarded headers when `uri` is on the
    /// request's own host.
    fn request(&self, method: Method, uri: Uri) -> Result<Request<B>, http::Error> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(B::default())?;
        if same_origin(request.uri(), &self.origin) {
            let headers = request.headers_mut();
            for (name, value) in &self.forward {
                headers.append(name, value.clone());
            }
        }
        Ok(request)
    }
}

impl<S, B, ResB> Follower<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    async fn get(&mut self, uri: Uri) -> Result<Response<ResB>, BoxError> {
        let request = self.request(Method::GET, uri)?;
        self.inner
            .clone()
            .oneshot(request)
            .await
            .map_err(Into::into)
    }

    /// The `GET` of a result at `uri`, repeated while it did not reach the result (at most
    /// [`RESULT_ATTEMPTS`] in all, and not past the time limit); the last answer otherwise.
    async fn result(&mut self, uri: Uri) -> Result<Response<ResB>, BoxError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 1;
        loop {
            let response = self.get(uri.clone()).await?;
            if attempts == RESULT_ATTEMPTS || !unreached(response.status()) {
                return Ok(response);
            }
            let pause = retry_after(&response).unwrap_or(backoff);
            if deadline::later(Instant::now(), pause) > self.until {
                return Ok(response);
            }
            backoff *= 2;
            attempts += 1;
            // Not read: a gateway's error is short, a stored response need not be.
            drop(response);
            tokio::time::sleep(pause).await;
        }
    }

    async fn poll(&mut self) -> Result<Polled, BoxError> {
        let response = self.get(self.location.clone()).await?;
        let status = response.status();
        if status.is_redirection() {
            let result = resolve(
                &self.location,
                location_of(&response),
                self.other_hosts,
                status,
            )?;
            return Ok(Polled::Done(
                boxed(self.result(result.clone()).await?),
                result,
            ));
        }
        match status {
            // Still running; or a poll that did not reach the task, which the next poll may.
            status if status == StatusCode::ACCEPTED || unreached(status) => {
                Ok(Polled::Running(retry_after(&response)))
            }
            StatusCode::OK => self.status_document(response).await,
            // Another success (`201`, `204`): the final answer, as Azure's polling reads it.
            status if status.is_success() => {
                Ok(Polled::Done(boxed(response), self.location.clone()))
            }
            status => Err(FollowError::Unexpected {
                location: self.location.clone(),
                status,
            }
            .into()),
        }
    }

    /// A `200` from the status URL: a JSON status document, or the result itself.
    async fn status_document(&mut self, response: Response<ResB>) -> Result<Polled, BoxError> {
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            // The media type without its parameters, in any case (RFC 9110, 8.3.1).
            .is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Ok(Polled::Done(boxed(response), self.location.clone()));
        }
        let retry = retry_after(&response);
        let (parts, body) = response.into_parts();
        let bytes = match capture(body, STATUS_LIMIT).await {
            Ok(bytes) => bytes,
            // Larger than a status document: the result itself, whole.
            Err(CaptureError::TooLarge(body)) => {
                let response = Response::from_parts(parts, body);
                return Ok(Polled::Done(response, self.location.clone()));
            }
            Err(CaptureError::Failed(error)) => return Err(error),
        };
        let document: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
        let state = document
            .as_ref()
            .and_then(|d| d["status"].as_str())
            .map(str::to_ascii_lowercase);
        // A field as text; `error.message` style paths reach into an object.
        let text = |path: &[&str]| {
            let mut value = document.as_ref()?;
            for field in path {
                value = value.get(field)?;
            }
            value.as_str().map(str::to_owned)
        };
        let pointer = match parts.headers.get(LOCATION) {
            Some(location) => Some(location.to_str().ok().map(str::to_owned)),
            None => text(&["resourceLocation"]).map(Some),
        };
        match state.as_deref() {
            Some("pending" | "running" | "inprogress" | "notstarted" | "accepted") => {
                Ok(Polled::Running(retry))
            }
            Some("failed") => Err(FollowError::Failed {
                location: self.location.clone(),
                // This crate's `error` and `error_type`, or Azure's `error` object.
                reason: text(&["error"])
                    .or_else(|| text(&["error", "message"]))
                    .unwrap_or_else(|| "no reason given".to_owned()),
                error_type: text(&["error_type"]).or_else(|| text(&["error", "code"])),
            }
            .into()),
            Some("cancelled" | "canceled") => Err(FollowError::Cancelled {
                location: self.location.clone(),
            }
            .into()),
            // Pointed at by `Location`, else `resourceLocation` (`Some(None)`: a `Location`
            // that is no text, which resolves to `NoLocation`).
            Some("succeeded") if pointer.is_some() => {
                let result = resolve(
                    &self.location,
                    pointer.flatten().as_deref(),
                    self.other_hosts,
                    parts.status,
                )?;
                Ok(Polled::Done(
                    boxed(self.result(result.clone()).await?),
                    result,
                ))
            }
            _ => {
                let body = Full::new(bytes).map_err(|never| match never {});
                let response = Response::from_parts(parts, body.boxed_unsync());
                Ok(Polled::Done(response, self.location.clone()))
            }
        }
    }
}

impl<S, B> Drop for Follower<S, B>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
{
    fn drop(&mut self) {
        if !self.cancel {
            return;
        }
        let Ok(request) = self.request(Method::DELETE, self.location.clone()) else {
            return;
        };
        let inner = self.inner.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // In the span the follower is dropped in: the caller's, whose logs the
            // cancelling request belongs to.
            runtime.spawn(
                async move {
                    let _ = inner.oneshot(request).await;
                }
                .in_current_span(),
            );
        }
    }
}

fn boxed<B>(response: Response<B>) -> Response<FollowBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

/// Whether an answer with `status` says that the request did not reach its target, so that
/// the same request may be made again: the connection closed as it came (`408`, which RFC
/// 9110 lets a client repeat), throttled (`429`), or a gateway whose target failed or did
/// not answer (`502`, `503`, `504`).
fn unreached(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// What `response`'s `Retry-After` asks to wait, from now.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    super::retry_after::retry_after(response.headers(), std::time::SystemTime::now())
}

/// The `Location` header of `response`, if it is text.
fn location_of<B>(response: &Response<B>) -> Option<&str> {
    response.headers().get(LOCATION)?.to_str().ok()
}

/// `location`, from an answer with `status`, resolved against `base`, and on another host
/// only when `other_hosts`: every place the result is pointed at goes through here. The
/// error is a [`FollowError`].
fn resolve(
    base: &Uri,
    location: Option<&str>,
    other_hosts: bool,
    status: StatusCode,
) -> Result<Uri, BoxError> {
    let no_location = || FollowError::NoLocation {
        status,
        url: base.clone(),
    };
    let resolved = location
        .and_then(|location| join(base, location))
        .ok_or_else(no_location)?;
    if !other_hosts && !same_origin(&resolved, base) {
        return Err(FollowError::OtherHost { location: resolved }.into());
    }
    Ok(resolved)
}

/// Whether `a` and `b` are one origin (RFC 6454): the same scheme, host and port, a port
/// left out being the scheme's default; or neither names any.
fn same_origin(a: &Uri, b: &Uri) -> bool {
    let port = |uri: &Uri| {
        uri.port_u16().or(match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => Some(80),
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => Some(443),
            _ => None,
        })
    };
    let same_host = match (a.host(), b.host()) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    };
    a.scheme() == b.scheme() && same_host && port(a) == port(b)
}

/// `reference` resolved against `base` (RFC 3986, section 5.2): an absolute URI, a
/// network-path (`//host/path`), an absolute path, a relative path or a query alone, with
/// `.` and `..` segments removed from the path. A fragment is dropped: it is never sent.
fn join(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference
        .split_once('#')
        .map_or(reference, |(before, _)| before);
    let (scheme, rest) = match reference.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, reference),
    };
    let mut parts = Parts::default();
    parts.scheme = match scheme {
        // In lower case, its canonical form: `http`'s parser takes `HTTP` for some other
        // scheme, which no connector serves and no origin check matches.
        Some(scheme) => Some(scheme.to_ascii_lowercase().parse().ok()?),
        None => base.scheme().cloned(),
    };
    // An absolute URI is a scheme and a network-path: `//authority`, then the path.
    let (rest, relative) = match rest.strip_prefix("//") {
        Some(network) => {
            let end = network.find(['/', '?']).unwrap_or(network.len());
            parts.authority = Some(network[..end].parse().ok()?);
            (&network[end..], false)
        }
        // `mailto:x`: a scheme without an authority names nothing to fetch.
        None if scheme.is_some() => return None,
        None => {
            parts.authority = base.authority().cloned();
            (rest, true)
        }
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (path, query) = if relative && path.is_empty() {
        // The same document: the base's path, and its query unless one is given.
        (base.path().to_owned(), query.or(base.query()))
    } else if path.is_empty() || path.starts_with('/') {
        (without_dots(path), query)
    } else if path
        .split('/')
        .next()
        .is_some_and(|first| first.contains(':'))
    {
        // A relative path's first segment has no colon (it would read as a scheme).
        return None;
    } else {
        let directory = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        (without_dots(&format!("{directory}/{path}")), query)
    };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let path_and_query = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// Whether `text` is a scheme (`http`): a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// `path` without its `.` and `..` segments (RFC 3986, section 5.2.4): `/a/b/../c/.` is
/// `/a/c/`; `..` does not climb above the root.
fn without_dots(path: &str) -> String {
    let mut segments = path.split('/').peekable();
    let mut kept = Vec::new();
    while let Some(segment) = segments.next() {
        if segment != "." && segment != ".." {
            kept.push(segment);
            continue;
        }
        // The root (the empty segment before the first `/`) stays.
        if segment == ".." && kept.len() > 1 {
            kept.pop();
        }
        // A path that ends in a dot segment names a directory.
        if segments.peek().is_none() {
            kept.push("");
        }
    }
    kept.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3986's own examples (section 5.4, those with an HTTP result), and a query that
    /// holds a URL.
    #[test]
    fn references_resolve_as_rfc_3986_says() {
        let base: Uri = "http://a/b/c/d;p?q".parse().unwrap();
        for (reference, resolved) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("//g/x?y", "http://g/x?y"),
            ("//a", "http://a/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("g?y#s", "http://a/b/c/g?y"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("https://other.example/t/./7", "https://other.example/t/7"),
            (
                "/tasks/7?next=http://x/y",
                "http://a/tasks/7?next=http://x/y",
            ),
            ("tasks/7?from=a:b", "http://a/b/c/tasks/7?from=a:b"),
            // Schemes are case-insensitive, and lower case is their canonical form (3.1).
            ("HTTP://a/g", "http://a/g"),
            ("Https://other.example/t", "https://other.example/t"),
        ] {
            let joined = join(&base, reference).map(|uri| uri.to_string());
            assert_eq!(joined.as_deref(), Some(resolved), "{reference:?}");
        }
        for nothing in ["not a uri", "g:h", "1http://a/", "//", "//a b/"] {
            assert_eq!(join(&base, nothing), None, "{nothing:?}");
        }
    }

    /// An origin is a scheme, a host and a port (RFC 6454): a port written out that is the
    /// scheme's default is the same origin as none, hosts compare without case, and what
    /// comes before a host (`user@`) is not part of it.
    #[test]
    fn origins_are_scheme_host_and_port() {
        let same = |a: &str, b: &str| same_origin(&a.parse().unwrap(), &b.parse().unwrap());
        for (a, b) in [
            ("http://api.example/jobs", "http://api.example:80/tasks/7"),
            (
                "https://api.example:443/jobs",
                "https://API.example/tasks/7",
            ),
            (
                "http://api.example:8080/jobs",
                "http://api.example:8080/tasks/7",
            ),
            ("http://user@api.example/jobs", "http://api.example/tasks/7"),
            ("/jobs", "/tasks/7"),
        ] {
            assert!(same(a, b), "{a} and {b}");
            assert!(same(b, a), "{b} and {a}");
        }
        for (a, b) in [
            ("http://api.example/jobs", "https://api.example/tasks/7"),
            ("http://api.example/jobs", "http://api.example:443/tasks/7"),
            ("https://api.example/jobs", "https://api.example:80/tasks/7"),
            ("http://api.example:8080/jobs", "http://api.example/tasks/7"),
            ("http://api.example/jobs", "http://other.example/tasks/7"),
            ("http://api.example/jobs", "/tasks/7"),
        ] {
            assert!(!same(a, b), "{a} and {b}");
            assert!(!same(b, a), "{b} and {a}");
        }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base: Uri = "http://api.example/v1/jobs?x=1".parse().unwrap();
        let join = |r: &str| join(&base, r).map(|u| u.to_string());
        assert_eq!(
            join("/tasks/7").as_deref(),
            Some("http://api.example/tasks/7")
        );
        assert_eq!(
            join("tasks/7").as_deref(),
            Some("http://api.example/v1/tasks/7")
        );
        assert_eq!(
            join("https://other.example/t/7").as_deref(),
            Some("https://other.example/t/7")
        );
        assert_eq!(join("not a uri"), None);
        // Another host only when allowed; no Location, or none that parses, is an error.
        let accepted = StatusCode::ACCEPTED;
        let other = Some("https://other.example/tasks/7");
        let refused = resolve(&base, other, false, accepted).unwrap_err();
        assert!(matches!(
            refused.downcast_ref::<FollowError>(),
            Some(FollowError::OtherHost { .. })
        ));
        assert_eq!(
            resolve(&base, other, true, accepted).unwrap().to_string(),
            "https://other.example/tasks/7"
        );
        let upper = Some("HTTP://api.example/tasks/7");
        assert_eq!(
            resolve(&base, upper, false, accepted).unwrap().to_string(),
            "http://api.example/tasks/7",
            "the same origin, whatever the scheme's case"
        );
        for missing in [None, Some("not a uri")] {
            let error = resolve(&base, missing, false, accepted).unwrap_err();
            assert!(matches!(
                error.downcast_ref::<FollowError>(),
                Some(FollowError::NoLocation {
                    status: StatusCode::ACCEPTED,
                    ..
                })
            ));
        }
        let response = Response::builder()
            .header(LOCATION, "/tasks/7")
            .body(())
            .unwrap();
        assert_eq!(location_of(&response), Some("/tasks/7"));
        let relative_base: Uri = "/jobs".parse().unwrap();
        assert_eq!(
            super::join(&relative_base, "/tasks/7")
                .map(|u| u.to_string())
                .as_deref(),
            Some("/tasks/7")
        );
    }
}
