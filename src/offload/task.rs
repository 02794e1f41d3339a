//! A request becomes a task: its pending record, the `202 Accepted`, the detached work, and
//! for a request with an `Idempotency-Key`, the record made before the work starts and the
//! answers to its retries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tower::{BoxError, Service};

use super::body::{RequestBody, ResponseBody};
use super::config::Config;
use super::detached::{Invocation, Reservation};
use super::idempotency::Fingerprint;
use super::store::{Created, NewTask, TaskOutcome, TaskRecord, TaskState};
use super::work;
use super::{reason, TaskId};
use crate::deadline::{Deadline, DeadlineSource};
use tokio::time::Instant;

pub(crate) type Answer<B, E> = Result<Response<ResponseBody<B>>, E>;

const PREFERENCE_APPLIED: http::HeaderName = http::HeaderName::from_static("preference-applied");

/// The bytes of a `202`'s body around its strings, when it has no errors.
const ACCEPTED_FRAME: usize = r#"{"id":"","status":"","status_url":""}"#.len();

/// The body of a `202 Accepted`: `{"error", "error_type", "id", "status", "status_url"}`,
/// the errors only when the record has them. The id's hex digits and the state's name need
/// no escaping and are written as they are, the other strings too when they need none;
/// `serde_json` writes those that do. A derived `Serialize` cost 1,400 instructions per
/// offload, a sixth of it.
fn accepted_body(record: Option<&TaskRecord>, id: &str, status_url: &str) -> Vec<u8> {
    let string = |body: &mut Vec<u8>, value: &str| {
        // JSON escapes only quotes, backslashes and control characters, which a status URL
        // seldom has: checking all its bytes at once costs half of `serde_json`'s loop.
        let plain = !value.bytes().fold(false, |escape, byte| {
            escape | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
        });
        if plain {
            body.push(b'"');
            body.extend_from_slice(value.as_bytes());
            body.push(b'"');
        } else {
            serde_json::to_writer(body, value).expect("a str serializes into a Vec");
        }
    };
    let errors = record.map_or((None, None), |record| {
        (record.error.as_deref(), record.error_type.as_deref())
    });
    let state = record.map_or(TaskState::Pending, |record| record.state);
    let named = [
        (&b"\"error\":"[..], errors.0),
        (b"\"error_type\":", errors.1),
    ];
    // The exact length unless a string needs escapes. Growing the `Vec` half-way cost a
    // reallocation and a copy, and `Bytes` takes a `Vec` with room to spare only with an
    // allocation of its own: about 650 instructions per offload.
    let errors_len: usize = named
        .iter()
        // The name, the value between its quotes, and the comma after it.
        .filter_map(|(name, value)| value.map(|value| name.len() + value.len() + 3))
        .sum();
    let mut body = Vec::with_capacity(
        ACCEPTED_FRAME + errors_len + id.len() + state.as_str().len() + status_url.len(),
    );
    body.push(b'{');
    for (name, value) in named {
        if let Some(value) = value {
            body.extend_from_slice(name);
            string(&mut body, value);
            body.push(b',');
        }
    }
    for part in [
        "\"id\":\"",
        id,
        "\",\"status\":\"",
        state.as_str(),
        "\",\"status_url\":",
    ] {
        body.extend_from_slice(part.as_bytes());
    }
    string(&mut body, status_url);
    body.push(b'}');
    body
}

/// What an offloadable request needs to become a task.
pub(crate) struct Plan {
    pub(crate) config: Arc<Config>,
    /// What few requests have, boxed only when one has it: the offload future moves whole
    /// into each outer future, and most requests carry none of these.
    pub(crate) extras: Option<Box<Extras>>,
    /// When the race against the work ends: the threshold, capped by the deadline minus
    /// the margin.
    pub(crate) race_until: Instant,
}

/// The parts of a [`Plan`] that only some requests have.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) owner: Option<String>,
    /// `Preference-Applied`, when a preference was applied.
    pub(crate) applied: Option<HeaderValue>,
    /// What goes in front of the status URL: the public prefix and the axum nesting.
    pub(crate) base: Option<String>,
    /// The Lambda invocation of the request, which is held for the work it detaches.
    pub(crate) invocation: Option<Invocation>,
    /// Set by the host for work detached from this request (the Lambda runner: the
    /// function's deadline).
    pub(crate) background: Option<Deadline>,
}

impl Extras {
    /// Boxed when any part is there.
    #[inline]
    pub(crate) fn boxed(self) -> Option<Box<Self>> {
        let any = self.owner.is_some()
            || self.applied.is_some()
            || self.base.is_some()
            || self.invocation.is_some()
            || self.background.is_some();
        any.then(|| Box::new(self))
    }
}

/// A keyed task whose record exists and whose work has started: its place among the
/// running tasks goes with the work until the outcome is stored.
pub(crate) struct Started {
    pub(crate) id: TaskId,
    pub(crate) reservation: Reservation,
}

/// How a keyed request begins: answered at once (a retry, a conflict, a refusal), or its
/// work started under a stored record.
pub(crate) enum Start<F, B, E> {
    Answer(Answer<B, E>),
    Race {
        future: Pin<Box<F>>,
        task: Started,
        plan: Plan,
    },
}

/// The `Preference-Applied` header, when a preference was applied.
pub(crate) fn applied_to<B>(
    mut response: Response<B>,
    applied: Option<HeaderValue>,
) -> Response<B> {
    if let Some(applied) = applied {
        response.headers_mut().insert(PREFERENCE_APPLIED, applied);
    }
    response
}

/// A problem+json response the layer writes.
pub(crate) fn problem<B>(status: StatusCode, detail: &str) -> Response<ResponseBody<B>> {
    crate::response::problem(status, detail).map(ResponseBody::written)
}

pub(crate) fn bad_idempotency_key<B>() -> Response<ResponseBody<B>> {
    problem(
        StatusCode::BAD_REQUEST,
        "the Idempotency-Key header must hold 1 to 255 visible ASCII characters",
    )
}

impl Plan {
    fn owner(&self) -> Option<&str> {
        self.extras.as_ref()?.owner.as_deref()
    }

    pub(crate) fn applied(&self) -> Option<HeaderValue> {
        self.extras.as_ref()?.applied.clone()
    }

    fn base(&self) -> Option<&str> {
        self.extras.as_ref()?.base.as_deref()
    }

    fn invocation(&self) -> Option<Invocation> {
        self.extras.as_ref()?.invocation.clone()
    }

    /// The largest JSON document the response goes back in, when it is a buffered Lambda
    /// response: what bounds a result.
    pub(crate) fn max_response(&self) -> Option<usize> {
        self.extras.as_ref()?.invocation.as_ref()?.max_response
    }

    fn background(&self) -> Option<Deadline> {
        self.extras.as_ref()?.background
    }

    /// A new task id (for `key`'s partition, when keyed) and its place among the running
    /// detached tasks; `None` (logged) when there is no randomness or no place.
    fn reserve(&self, key: Option<&str>) -> Option<(TaskId, Reservation)> {
        let id = match key {
            Some(key) => TaskId::random_for(self.owner(), key),
            None => TaskId::random(),
        };
        let id = match id {
            Ok(id) => id,
            Err(error) => {
                tracing::error!(target: "tower_serverless::offload", %error, "no randomness for a task id");
                return None;
            }
        };
        let detached = &self.config.detached;
        let reserved = detached.reserve(id, self.config.max_detached, self.invocation());
        if reserved.is_none() {
            tracing::debug!(target: "tower_serverless::offload", "no place for another detached task");
        }
        reserved.map(|reservation| (id, reservation))
    }

    fn new_task(&self, id: TaskId) -> NewTask {
        NewTask {
            id,
            owner: self.owner().map(str::to_owned),
            idempotency_key: None,
            fingerprint: None,
            foreground: Duration::ZERO,
            lease: self.config.lease,
            ttl: self.config.ttl,
        }
    }

    /// The `202 Accepted` for task `id` in `state`.
    pub(crate) fn accepted<B>(
        &self,
        id: TaskId,
        record: Option<&TaskRecord>,
    ) -> Response<ResponseBody<B>> {
        let hex = id.hex();
        // Its digits checked as UTF-8 once, for the URL and the body.
        let id = hex.as_str();
        let status_url = self.config.status_url(self.base(), id);
        let body = accepted_body(record, id, &status_url);
        let mut response = crate::response::json(StatusCode::ACCEPTED, body);
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::try_from(status_url) {
            headers.insert(header::LOCATION, location);
        }
        let response = self.config.come_back_later(response);
        applied_to(response, self.applied()).map(ResponseBody::written)
    }

    /// Moves `future` to a detached task, in the place `task` holds, that stores its
    /// outcome.
    pub(crate) fn detach<F, B, E>(&self, task: Started, future: Pin<Box<F>>)
    where
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + Send + 'static,
    {
        let Started { id, reservation } = task;
        let config = self.config.clone();
        let deadline = self.background_deadline();
        let max_response = self.max_response();
        let work = work::bounded(
            async move {
                let outcome =
                    work::outcome(id, future, config.max_result_bytes, &config.escalation).await;
                work::deliverable(id, outcome, max_response).await
            },
            deadline,
        );
        reservation.spawn(work::run(self.config.clone(), id, work, deadline));
    }

    /// The configured background budget from now, or the host's deadline when earlier.
    fn background_deadline(&self) -> Deadline {
        let configured = Deadline::after(self.config.background, DeadlineSource::Background);
        self.background()
            .map_or(configured, |host| configured.min(host))
    }

    /// Stores the task and answers `202`, or waits in the foreground when it cannot be
    /// stored (no place, no store).
    pub(crate) async fn offload<F, B, E>(self, future: Pin<Box<F>>) -> Answer<B, E>
    where
        F: Future<Output = Result<Response<B>, E>> + Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        E: Into<BoxError> + Send + 'static,
    {
        let Some((id, reservation)) = self.reserve(None) else {
            return future
                .await
                .map(|response| response.map(ResponseBody::inner));
        };
        match self.config.store.create(self.new_task(id)).await {
            Ok(_) => {
                self.detach(Started { id, reservation }, future);
                Ok(self.accepted(id, None))
            }
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", %error, "could not store a task; answering in the foreground");
                drop(reservation);
                future
                    .await
                    .map(|response| response.map(ResponseBody::inner))
            }
        }
    }

    /// A keyed request: its fingerprint, then its record before the work starts. A retry of
    /// a known key is answered from the record; a store that cannot keep the task answers
    /// `503` rather than running the work unprotected.
    pub(crate) async fn start_keyed<S, ReqBody, B>(
        self,
        mut inner: S,
        request: Request<RequestBody<ReqBody>>,
        key: String,
    ) -> Start<S::Future, B, S::Error>
    where
        S: Service<Request<RequestBody<ReqBody>>, Response = Response<B>>,
        ReqBody: http_body::Body + Unpin,
    {
        let (parts, body) = request.into_parts();
        let mut fingerprint = Fingerprint::new(&parts);
        let body = body.read_ahead(&mut fingerprint).await;
        let Some((id, mut reservation)) = self.reserve(Some(&key)) else {
            return Start::Answer(Ok(self.unavailable()));
        };
        let task = NewTask {
            idempotency_key: Some(key),
            fingerprint: Some(fingerprint.finish()),
            foreground: self.race_until.saturating_duration_since(Instant::now()),
            ..self.new_task(id)
        };
        let fingerprint = task.fingerprint.clone();
        match self.config.store.create(task).await {
            Ok(Created::New) => {}
            Ok(Created::Existing(existing)) => {
                drop(reservation);
                return Start::Answer(Ok(self.retry(existing, fingerprint).await));
            }
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", %error, "could not store a keyed task");
                return Start::Answer(Ok(self.unavailable()));
            }
        }
        // The work answers in the foreground, for longer than the lease maybe: its lease is
        // renewed until it moves to a task of its own or its outcome is stored.
        reservation.renewed_by(work::renew_lease(self.config.clone(), id));
        let task = Started { id, reservation };
        if let Err(error) = std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
            self.fail(task, TaskOutcome::failed(reason::FAILED));
            return Start::Answer(Err(error));
        }
        let future = Box::pin(inner.call(Request::from_parts(parts, body)));
        Start::Race {
            future,
            task,
            plan: self,
        }
    }

    /// Stores `outcome` for `task` in a task of its own.
    pub(crate) fn fail(&self, task: Started, outcome: TaskOutcome) {
        work::store_later(
            self.config.clone(),
            task.id,
            task.reservation,
            outcome,
            // A failure carries no result to bound.
            None,
        );
    }

    /// `503` with `Retry-After`: the task could not be kept, and a keyed request's work does
    /// not run unprotected.
    fn unavailable<B>(&self) -> Response<ResponseBody<B>> {
        self.come_back(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request cannot be kept for its Idempotency-Key now; retry later with the same key",
        )
    }

    /// A problem+json with `Retry-After`: the client should come back later.
    fn come_back<B>(&self, status: StatusCode, detail: &str) -> Response<ResponseBody<B>> {
        self.config.come_back_later(problem(status, detail))
    }

    /// The answer to a retry of a known key, from task `id`'s record.
    async fn retry<B>(&self, id: TaskId, fingerprint: Option<String>) -> Response<ResponseBody<B>> {
        let record = match self.config.store.get(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return self.accepted(id, None),
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", %error, "could not read a keyed task");
                return self.unavailable();
            }
        };
        if record.fingerprint.is_some() && record.fingerprint != fingerprint {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was used for another request (method, path or body)",
            );
        }
        match record.state {
            TaskState::Pending
                if record
                    .foreground_until
                    .is_some_and(|until| SystemTime::now() < until) =>
            {
                self.come_back(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still being processed",
                )
            }
            TaskState::Succeeded => match record.result {
                Some(stored) => {
                    let mut response = stored.into_response();
                    response.headers_mut().remove(header::SET_COOKIE);
                    response.map(ResponseBody::written)
                }
                None => self.accepted(id, Some(&record)),
            },
            TaskState::Failed if record.error.as_deref() == Some(reason::NOT_KEPT) => problem(
                StatusCode::GONE,
                "the response to this Idempotency-Key was too large to keep; the request was processed",
            ),
            _ => self.accepted(id, Some(&record)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: TaskState, error: Option<&str>, error_type: Option<&str>) -> TaskRecord {
        TaskRecord {
            id: TaskId::random().unwrap(),
            state,
            created_at: SystemTime::UNIX_EPOCH,
            finished_at: None,
            error: error.map(str::to_owned),
            error_type: error_type.map(str::to_owned),
            owner: None,
            fingerprint: None,
            foreground_until: None,
            result: None,
        }
    }

    #[test]
    fn the_202_body_is_the_json_a_serializer_writes_for_any_text() {
        let id = TaskId::random().unwrap();
        let awkward = "/a \"quoted\" \\ path\u{1}/é";
        let failed = record(
            TaskState::Failed,
            Some("said \"no\"\n"),
            Some("Handler\\Error"),
        );
        let cases = [
            (
                None,
                "/tasks/x",
                serde_json::json!({
                    "id": id.to_string(), "status": "pending", "status_url": "/tasks/x",
                }),
            ),
            (
                Some(&failed),
                awkward,
                serde_json::json!({
                    "error": "said \"no\"\n", "error_type": "Handler\\Error",
                    "id": id.to_string(), "status": "failed", "status_url": awkward,
                }),
            ),
        ];
        // Each kind of character alone, on either side of what JSON escapes.
        let singles = ["\"", "\\", "\u{0}", "\u{1f}", " ", "\u{7f}", "é", "/"].map(|text| {
            let url = format!("/tasks/{text}");
            let expected = serde_json::json!({
                "id": id.to_string(), "status": "pending", "status_url": url,
            });
            (None, url, expected)
        });
        let cases = cases
            .into_iter()
            .map(|(record, url, expected)| (record, url.to_owned(), expected))
            .chain(singles);
        for (record, url, expected) in cases {
            let body = accepted_body(record, id.hex().as_str(), &url);
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(
                body,
                serde_json::to_vec(&expected).unwrap(),
                "same bytes and field order as serde_json's map"
            );
        }
    }

    #[test]
    fn a_202_body_without_escapes_is_made_at_its_exact_size() {
        // `Bytes` takes a `Vec` with room to spare only with an allocation of its own.
        let id = TaskId::random().unwrap();
        let failed = record(TaskState::Failed, Some("no"), Some("HandlerError"));
        for record in [None, Some(&failed)] {
            let body = accepted_body(record, id.hex().as_str(), "/prod/tasks/0123");
            assert_eq!(body.capacity(), body.len());
        }
    }
}
