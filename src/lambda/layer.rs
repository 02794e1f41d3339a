use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Uri};
use lambda_http::lambda_runtime::LambdaInvocation;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use percent_encoding::percent_decode_str;
use pin_project_lite::pin_project;
use tokio::sync::watch;
use tower::{Layer, Service};

use super::payload;
use crate::deadline::{v1_door, v2_door, Deadline, FrontDoor, FrontDoors};
use crate::offload::{BackgroundDeadline, Invocation, PublicPrefix};

/// Sets the Lambda deadlines on every request, and takes an API Gateway stage off the
/// path; see the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct LambdaLayer {
    doors: FrontDoors,
    keep_stage: bool,
    // Without its slashes: `orders`, `api/v2`.
    base_path: Option<Arc<str>>,
    // Detached work ends at the function's deadline: Lambda may freeze or cut the
    // environment after it. Not on Managed Instances, which never freeze and do not stop
    // the code at an invocation's deadline.
    bound_to_invocation: bool,
    streaming: bool,
}

impl LambdaLayer {
    /// A layer with the caps of [`FrontDoors::new`] (REST 29 s, HTTP API 30 s, function
    /// URLs and ALB none, CloudFront in front 30 s) and a 1 s margin, taking the stage off
    /// the path.
    ///
    /// It reads `AWS_LAMBDA_MAX_CONCURRENCY` now: above 1 (Lambda Managed Instances, whose
    /// environments never freeze and whose code runs on past an invocation's deadline),
    /// detached work is not bound to the function's deadline and gets no
    /// [`BackgroundDeadline`].
    pub fn new() -> Self {
        Self {
            doors: FrontDoors::new(),
            keep_stage: false,
            base_path: None,
            bound_to_invocation: !super::never_freezes(),
            streaming: false,
        }
    }

    /// The margin kept below the front door's cap and the function's deadline (default 1 s).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.doors = self.doors.margin(margin);
        self
    }

    /// The front doors' caps and margin, for a REST API whose integration timeout was
    /// raised ([`FrontDoors::rest_cap`]).
    pub fn front_doors(mut self, doors: FrontDoors) -> Self {
        self.doors = doors;
        self
    }

    /// Whether an API Gateway stage stays at the start of the path the service sees
    /// (default: no). `lambda_http` puts it there (`/prod/hello`) unless
    /// `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set; taken off, the same routes serve every
    /// stage, locally and deployed, whether or not the variable is set. A custom domain's
    /// base path (`/v1/hello`) comes off with it, and stays when the stage is kept: the path
    /// is then the one `lambda_http` made. Either way the part of the path the client
    /// called in front of the routed one reaches the offload layer as a [`PublicPrefix`],
    /// so a `202`'s `Location` is one the client can call.
    pub fn keep_stage(mut self, keep: bool) -> Self {
        self.keep_stage = keep;
        self
    }

    /// Whether the function's responses stream, as `lambda_http::run_with_streaming_response`
    /// posts them (default: no, buffered as `lambda_http::run` posts them;
    /// [`Runner::run_with_streaming_response`](super::Runner::run_with_streaming_response)
    /// sets it). A buffered response is one JSON document of at most 6 MB (1 MB through an
    /// ALB), where a body that is not text takes a third more in base64: an offloaded
    /// result that would not fit is stored as failed ([`reason::TOO_LARGE_FOR_LAMBDA`]), not
    /// as a success whose every fetch fails.
    ///
    /// [`reason::TOO_LARGE_FOR_LAMBDA`]: crate::offload::reason::TOO_LARGE_FOR_LAMBDA
    pub fn streaming(mut self, streaming: bool) -> Self {
        self.streaming = streaming;
        self
    }

    /// A base path that comes off the start of the path the service sees, like the Lambda
    /// Web Adapter's `AWS_LWA_REMOVE_BASE_PATH`, and joins the [`PublicPrefix`], so a
    /// `202`'s `Location` keeps it. For what the event cannot tell from the API's own path:
    /// an HTTP API's `$default` route behind a custom domain's mapping key (`/orders`), a
    /// REST resource `/orders/{proxy+}` whose routes are written without `/orders`, or an
    /// ALB rule's path. It is taken off after the stage, whole segments only (`/orders`
    /// leaves `/ordersx` alone), and only from paths that start with it. Slashes around it
    /// do not matter; `"/"` or `""` removes nothing (the default).
    pub fn remove_base_path(mut self, base_path: &str) -> Self {
        let base_path = base_path.trim_matches('/');
        self.base_path = (!base_path.is_empty()).then(|| Arc::from(base_path));
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

/// The front door of an event, for API Gateway, function URL and ALB events, and when it
/// arrived there, if the event says.
fn arrival(context: Option<&RequestContext>) -> (Option<FrontDoor>, Option<i64>) {
    match context {
        Some(RequestContext::ApiGatewayV1(context)) => (
            Some(v1_door(
                context.resource_id.as_deref(),
                context.stage.as_deref(),
            )),
            Some(context.request_time_epoch),
        ),
        Some(RequestContext::ApiGatewayV2(context)) => (
            Some(v2_door(context.domain_name.as_deref())),
            Some(context.time_epoch),
        ),
        Some(RequestContext::Alb(_)) => (Some(FrontDoor::Alb), None),
        _ => (None, None),
    }
}

/// The path the client called and the stage, if a named one, for API Gateway's events.
fn client_path_and_stage<B>(request: &Request<B>) -> Option<(&str, Option<&str>)> {
    let (client_path, stage) = match request.request_context_ref()? {
        // `requestContext.path` is what the client called: `/prod/hello`, `/v1/hello`.
        RequestContext::ApiGatewayV1(context) => {
            (context.path.as_deref()?, context.stage.as_deref())
        }
        // `rawPath` holds the stage for a named stage: `/prod/hello`.
        RequestContext::ApiGatewayV2(context) => {
            (request.raw_http_path(), context.stage.as_deref())
        }
        _ => return None,
    };
    let stage = stage.filter(|stage| !stage.is_empty() && *stage != "$default");
    Some((client_path, stage))
}

/// `path` with its percent-encoded bytes decoded; borrowed when it has none.
fn decoded(path: &str) -> Cow<'_, str> {
    percent_decode_str(path).decode_utf8_lossy()
}

/// The end of `path` that is `end`, an end of `decoded` (`path` decoded): as many segments,
/// in `path`'s own spelling. `None` when decoding made a slash (`%2F`): the segments differ;
/// or when `end` has more segments than `path`.
fn spelled_as<'a>(path: &'a str, decoded: &str, end: &str) -> Option<&'a str> {
    let slashes = |text: &str| text.bytes().filter(|b| *b == b'/').count();
    let all = slashes(path);
    if all != slashes(decoded) {
        return None;
    }
    let front = all.checked_sub(slashes(end))?;
    let at = path
        .match_indices('/')
        .nth(front)
        .map_or(path.len(), |(at, _)| at);
    Some(&path[at..])
}

/// The end of `path` that is the API's own path: the REST resource (`/jobs/{id}`,
/// `/{proxy+}`) or the HTTP API route's path, with the path parameters filled in. That path
/// is what the routes are written for; in front of it the event's path may have the stage,
/// a custom domain's base path (`/v1`), or both, depending on the URL the client called.
/// Matched as spelled, then decoded (API Gateway's REST events carry the path encoded and
/// the parameters' values decoded). `None` when the event names no such path (`$default`),
/// or when `path` does not end with it (an encoded slash in a parameter's value, for one).
/// A trailing `/` on either side is not a difference.
fn api_path<'a, B>(request: &Request<B>, path: &'a str) -> Option<&'a str> {
    let template = match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.resource_path.as_deref()?,
        // `GET /jobs/{id}`; `$default` names no path.
        RequestContext::ApiGatewayV2(context) => context.route_key.as_deref()?.split_once(' ')?.1,
        _ => return None,
    };
    // An HTTP API's payload 1.0 names its route here, `$default` included.
    let template = template.strip_prefix('/')?.trim_end_matches('/');
    if template.is_empty() {
        return Some("/");
    }
    // As the event spells them, then decoded: API Gateway sends a REST path encoded and
    // its parameters decoded, an emulator may send both alike.
    if let Some(api) = ends_with_template(request, template, path) {
        return Some(api);
    }
    let plain = decoded(path);
    if matches!(plain, Cow::Borrowed(_)) {
        return None;
    }
    let api = ends_with_template(request, template, &plain)?;
    spelled_as(path, &plain, api)
}

/// The end of `path` that is `template` (without its leading `/`) with the request's path
/// parameters filled in. Matched from the end, a segment at a time, so that nothing is
/// built per request.
fn ends_with_template<'a, B>(
    request: &Request<B>,
    template: &str,
    path: &'a str,
) -> Option<&'a str> {
    let mut rest = path.trim_end_matches('/');
    for segment in template.rsplit('/') {
        let expected = match segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(name) => {
                let name = name.strip_suffix('+').unwrap_or(name);
                request
                    .path_parameters_ref()?
                    .first(name)?
                    .trim_end_matches('/')
            }
            None => segment,
        };
        rest = rest.strip_suffix(expected)?.strip_suffix('/')?;
    }
    Some(&path[rest.len()..])
}

/// The part of `client_path` in front of `routed`, an end of the path the client called,
/// if any. Spelled differently (one percent-encoded where the other is not, as an HTTP
/// API's decoded `rawPath` and the URI's encoded path are), they are compared decoded. The
/// root (`/`) is the whole of `/v1` as well as the end of `/v1/`.
fn in_front<'a>(client_path: &'a str, routed: &str) -> Option<&'a str> {
    let front = match client_path.strip_suffix(routed) {
        Some(front) => front,
        None if routed == "/" => client_path.trim_end_matches('/'),
        None => {
            let (client, end) = (decoded(client_path), decoded(routed));
            if !client.ends_with(&*end) {
                return None;
            }
            let rest = spelled_as(client_path, &client, &end)?;
            &client_path[..client_path.len() - rest.len()]
        }
    };
    Some(front).filter(|front| !front.is_empty())
}

/// `path` without its leading segments `/<segments>` (a stage, a base path).
fn without_leading<'a>(path: &'a str, segments: &str) -> Option<&'a str> {
    let rest = path.strip_prefix('/')?.strip_prefix(segments)?;
    match rest {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

impl<S> LambdaService<S> {
    crate::inner_service_accessors!();

    fn deadlines<B>(&self, request: &Request<B>) -> (Option<Deadline>, Option<Deadline>) {
        let doors = &self.layer.doors;
        let function = request.lambda_context_ref().and_then(|context| {
            doors.function(i64::try_from(context.deadline).unwrap_or(i64::MAX))
        });
        let (door, arrived) = arrival(request.request_context_ref());
        let gateway = doors.gateway(door, arrived, request.headers());
        let foreground = [
            gateway,
            function,
            request.extensions().get::<Deadline>().copied(),
        ]
        .into_iter()
        .flatten()
        .reduce(Deadline::min);
        let background = function.filter(|_| self.layer.bound_to_invocation);
        (foreground, background)
    }

    /// Takes the stage and a custom domain's base path off the path (unless kept), then a
    /// named base path, and records the part of the client's path in front of what the
    /// service sees.
    fn route<B>(&self, request: &mut Request<B>) {
        let path = request.uri().path();
        let base_path = self.layer.base_path.as_deref();
        let (client_path, mut routed) = match client_path_and_stage(request) {
            Some((client_path, _)) if self.layer.keep_stage => (client_path, path),
            // The API's own path when the event says what it is: the stage and a custom
            // domain's base path come off alike. Else the stage alone.
            Some((client_path, stage)) => (
                client_path,
                api_path(request, path)
                    .or_else(|| stage.and_then(|stage| without_leading(path, stage)))
                    .unwrap_or(path),
            ),
            // Function URLs and ALB: the path is the one the client called.
            None if base_path.is_some() => (path, path),
            None => return,
        };
        if let Some(base_path) = base_path {
            routed = without_leading(routed, base_path).unwrap_or(routed);
        }
        let prefix = in_front(client_path, routed).map(str::to_owned);
        if routed.len() != path.len() {
            // The routed path is the end of the path (but for the root: `/` of `/v1`), so the
            // new path and query is the end of the old one: one copy, no `format!`.
            let old = request
                .uri()
                .path_and_query()
                .map_or(path, PathAndQuery::as_str);
            let rewritten = match path.strip_suffix(routed) {
                Some(front) => PathAndQuery::try_from(&old[front.len()..]),
                None => PathAndQuery::try_from(format!("{routed}{}", &old[path.len()..])),
            };
            if let Ok(rewritten) = rewritten {
                // Taken apart, not cloned: a clone of the URI's shared bytes allocates.
                let mut parts = std::mem::take(request.uri_mut()).into_parts();
                parts.path_and_query = Some(rewritten);
                // A URI's own scheme and authority with another path make a URI again.
                *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
            }
        }
        if let Some(prefix) = prefix {
            request.extensions_mut().insert(PublicPrefix(prefix));
        }
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
        if let Some(context) = request.lambda_context_ref() {
            let buffered = !self.layer.streaming;
            let invocation = Invocation {
                request_id: Arc::from(context.request_id.as_str()),
                max_response: buffered.then(|| {
                    let alb = matches!(request.request_context_ref(), Some(RequestContext::Alb(_)));
                    payload::max_response(alb)
                }),
            };
            request.extensions_mut().insert(invocation);
        }
        self.route(&mut request);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The path the routes see and the prefix a `Location` gets, for an API Gateway event.
    fn routed(event: serde_json::Value) -> (String, Option<String>) {
        routed_by(LambdaLayer::new(), event)
    }

    /// [`routed`] with a base path to remove.
    fn routed_without(base: &str, event: serde_json::Value) -> (String, Option<String>) {
        routed_by(LambdaLayer::new().remove_base_path(base), event)
    }

    fn routed_by(layer: LambdaLayer, event: serde_json::Value) -> (String, Option<String>) {
        let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
        layer.layer(()).route(&mut request);
        let prefix = request
            .extensions()
            .get::<PublicPrefix>()
            .map(|p| p.0.clone());
        (request.uri().path().to_owned(), prefix)
    }

    fn rest(
        path: &str,
        context_path: &str,
        resource: &str,
        parameters: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "resource": resource,
            "path": path,
            "httpMethod": "GET",
            "headers": { "Host": "api.example.com" },
            "multiValueHeaders": { "Host": ["api.example.com"] },
            "pathParameters": parameters,
            "requestContext": {
                "stage": "prod",
                "resourcePath": resource,
                "httpMethod": "GET",
                "path": context_path,
                "requestTimeEpoch": 0
            },
            "body": null,
            "isBase64Encoded": false
        })
    }

    #[test]
    fn a_custom_domains_base_path_comes_off_like_the_stage() {
        let parameters = json!({ "id": "7", "path": "a/b" });
        let resource = "/users/{id}/files/{path+}";
        assert_eq!(
            routed(rest(
                "/v1/users/7/files/a/b/",
                "/v1/users/7/files/a/b/",
                resource,
                parameters.clone()
            )),
            ("/users/7/files/a/b/".to_owned(), Some("/v1".to_owned()))
        );
        assert_eq!(
            routed(rest(
                "/users/7/files/a/b",
                "/prod/users/7/files/a/b",
                resource,
                parameters
            )),
            ("/users/7/files/a/b".to_owned(), Some("/prod".to_owned()))
        );
        assert_eq!(
            routed(rest("/v1", "/v1", "/", json!(null))),
            ("/".to_owned(), Some("/v1".to_owned()))
        );
    }

    #[test]
    fn a_parameter_with_a_slash_in_its_value_is_not_taken_for_a_base_path() {
        let parameters = json!({ "name": "a/b" });
        assert_eq!(
            routed(rest(
                "/v1/files/a/b",
                "/v1/files/a/b",
                "/files/{name}",
                parameters.clone()
            )),
            ("/files/a/b".to_owned(), Some("/v1".to_owned()))
        );
        // Kept encoded, the path has fewer segments than the value: only the stage comes off.
        assert_eq!(
            routed(rest(
                "/files/a%2Fb",
                "/prod/files/a%2Fb",
                "/files/{name}",
                parameters
            )),
            ("/files/a%2Fb".to_owned(), Some("/prod".to_owned()))
        );
    }

    #[test]
    fn a_resource_that_starts_like_the_stage_keeps_its_first_segment() {
        // lambda_http leaves a path that starts with `/<stage>/` as it is.
        assert_eq!(
            routed(rest(
                "/prod/items",
                "/prod/prod/items",
                "/prod/items",
                json!(null)
            )),
            ("/prod/items".to_owned(), Some("/prod".to_owned()))
        );
    }

    #[test]
    fn without_a_resource_only_the_stage_comes_off() {
        let mut event = rest("/v1/hello", "/prod/v1/hello", "$default", json!(null));
        event["requestContext"]["resourcePath"] = "$default".into();
        assert_eq!(
            routed(event),
            ("/v1/hello".to_owned(), Some("/prod".to_owned()))
        );
    }

    fn http_api(raw_path: &str, stage: &str, route_key: &str, proxy: &str) -> serde_json::Value {
        json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": raw_path,
            "rawQueryString": "",
            "headers": { "host": "api.example.com" },
            "pathParameters": { "proxy": proxy },
            "requestContext": {
                "routeKey": route_key,
                "stage": stage,
                "domainName": "api.example.com",
                "http": { "method": "GET", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test" },
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        })
    }

    #[test]
    fn an_http_apis_mapping_key_comes_off_by_its_route() {
        assert_eq!(
            routed(http_api(
                "/orders/pets/6",
                "$default",
                "ANY /{proxy+}",
                "pets/6"
            )),
            ("/pets/6".to_owned(), Some("/orders".to_owned()))
        );
        assert_eq!(
            routed(http_api(
                "/orders/pets/6",
                "prod",
                "ANY /{proxy+}",
                "pets/6"
            )),
            ("/pets/6".to_owned(), Some("/orders".to_owned()))
        );
        // `$default` names no path: only a named stage comes off.
        assert_eq!(
            routed(http_api("/prod/pets/6", "prod", "$default", "")),
            ("/pets/6".to_owned(), Some("/prod".to_owned()))
        );
        assert_eq!(
            routed(http_api("/pets/6", "$default", "$default", "")),
            ("/pets/6".to_owned(), None)
        );
    }

    fn alb(path: &str) -> serde_json::Value {
        json!({
            "requestContext": { "elb": { "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/abc" } },
            "httpMethod": "GET",
            "path": path,
            "headers": { "host": "alb.example.com" },
            "body": "",
            "isBase64Encoded": false
        })
    }

    #[test]
    fn a_named_base_path_comes_off_where_the_event_cannot_tell_it() {
        // An HTTP API's `$default` route through the mapping key `orders`.
        let event = || http_api("/orders/pets/6", "$default", "$default", "");
        assert_eq!(routed(event()), ("/orders/pets/6".to_owned(), None));
        assert_eq!(
            routed_without("/orders", event()),
            ("/pets/6".to_owned(), Some("/orders".to_owned()))
        );
        // Written with or without its slashes, the same base path.
        assert_eq!(
            routed_without("orders/", event()),
            ("/pets/6".to_owned(), Some("/orders".to_owned()))
        );
        // After the stage, and behind a REST resource that names it.
        assert_eq!(
            routed_without(
                "/orders",
                rest(
                    "/orders/7",
                    "/prod/orders/7",
                    "/orders/{id}",
                    json!({ "id": "7" })
                )
            ),
            ("/7".to_owned(), Some("/prod/orders".to_owned()))
        );
        // An ALB rule's path, the whole of it, and only at a segment's boundary.
        assert_eq!(
            routed_without("/orders", alb("/orders/7")),
            ("/7".to_owned(), Some("/orders".to_owned()))
        );
        assert_eq!(
            routed_without("/orders", alb("/orders")),
            ("/".to_owned(), Some("/orders".to_owned()))
        );
        assert_eq!(
            routed_without("/orders", alb("/ordersx/7")),
            ("/ordersx/7".to_owned(), None)
        );
        assert_eq!(
            routed_without("/", alb("/orders/7")),
            ("/orders/7".to_owned(), None)
        );
    }

    #[test]
    fn the_query_stays_when_the_path_is_shortened() {
        let mut request = lambda_http::request::from_str(
            &http_api("/orders/pets/6", "$default", "$default", "").to_string(),
        )
        .unwrap();
        *request.uri_mut() = "https://api.example.com/orders/pets/6?x=1&y=%20"
            .parse()
            .unwrap();
        LambdaLayer::new()
            .remove_base_path("/orders")
            .layer(())
            .route(&mut request);
        assert_eq!(request.uri().path_and_query().unwrap(), "/pets/6?x=1&y=%20");
        assert_eq!(request.uri().host(), Some("api.example.com"));

        // The root of the base path, whose `/` is no end of the path.
        *request.uri_mut() = "https://api.example.com/orders?x=1".parse().unwrap();
        LambdaLayer::new()
            .remove_base_path("/orders")
            .layer(())
            .route(&mut request);
        assert_eq!(request.uri().path_and_query().unwrap(), "/?x=1");
        assert_eq!(request.uri().host(), Some("api.example.com"));
    }

    #[test]
    fn the_apis_own_path_is_matched_at_the_end() {
        let jobs = |path: &str, proxy: &str| {
            let event = rest(path, path, "/{proxy+}", json!({ "proxy": proxy }));
            let request = lambda_http::request::from_str(&event.to_string()).unwrap();
            api_path(&request, path).map(str::to_owned)
        };
        assert_eq!(
            jobs("/v1/jobs/300", "jobs/300").as_deref(),
            Some("/jobs/300")
        );
        assert_eq!(jobs("/v1/jobs/", "jobs").as_deref(), Some("/jobs/"));
        assert_eq!(jobs("/v1/jobs", "jobs/").as_deref(), Some("/jobs"));
        assert_eq!(jobs("/v1/xjobs", "jobs"), None);
        // The parameters' values are decoded, the path is not: matched decoded, taken
        // from the path as it is.
        assert_eq!(
            jobs("/v1/jobs/a%20b", "jobs/a b").as_deref(),
            Some("/jobs/a%20b")
        );
        assert_eq!(
            jobs("/v1/jobs/caf%C3%A9", "jobs/café").as_deref(),
            Some("/jobs/caf%C3%A9")
        );
        // Spelled alike (an emulator's events), matched as they are.
        assert_eq!(
            jobs("/v1/jobs/a%20b", "jobs/a%20b").as_deref(),
            Some("/jobs/a%20b")
        );
    }

    #[test]
    fn a_path_with_encoded_characters_keeps_its_prefix() {
        // A REST API keeps the client's encoding in `path`; its parameters are decoded.
        assert_eq!(
            routed(rest(
                "/v1/files/a%20b",
                "/v1/files/a%20b",
                "/files/{name}",
                json!({ "name": "a b" })
            )),
            ("/files/a%20b".to_owned(), Some("/v1".to_owned()))
        );
        // An HTTP API decodes `rawPath`; lambda_http encodes the URI's path again.
        assert_eq!(
            routed(http_api(
                "/prod/reports/q1 2026",
                "prod",
                "ANY /{proxy+}",
                "reports/q1 2026"
            )),
            ("/reports/q1%202026".to_owned(), Some("/prod".to_owned()))
        );
        assert_eq!(
            routed(http_api(
                "/orders/pets/caf\u{e9}",
                "$default",
                "ANY /{proxy+}",
                "pets/caf\u{e9}"
            )),
            ("/pets/caf%C3%A9".to_owned(), Some("/orders".to_owned()))
        );
        // `$default` names no path: the named stage comes off, and is the prefix.
        assert_eq!(
            routed(http_api("/prod/a b", "prod", "$default", "")),
            ("/a%20b".to_owned(), Some("/prod".to_owned()))
        );
    }

    #[test]
    fn an_end_longer_than_the_path_is_no_end_of_it() {
        // Its callers pass an end of the decoded path only; the function holds without that.
        assert_eq!(spelled_as("/a", "/a", "/x/y"), None);
        assert_eq!(spelled_as("/a%20b/c", "/a b/c", "/c"), Some("/c"));
    }
}
