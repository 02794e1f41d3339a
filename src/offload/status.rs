//! The status endpoint: `GET <prefix>/<id>`, `GET <prefix>/<id>/result`, `DELETE <prefix>/<id>`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use tower::Service;

use super::config::Config;
use super::store::{BoxFuture, CancelResult, StoreError, TaskRecord, TaskState};
use super::TaskId;

/// The status endpoint of an [`OffloadLayer`](super::OffloadLayer)'s tasks.
///
/// | request | answer |
/// |---|---|
/// | `GET <prefix>/<id>` | `200` JSON `{id, status, created_at, finished_at?, error?, error_type?}`, with `Retry-After` while pending; `303 See Other` to `<prefix>/<id>/result` once succeeded. A poll does not read the stored response. |
/// | `GET <prefix>/<id>/result` | the stored response replayed (status, headers, body); `404` unless succeeded, with the task's status document as the member `task` (and `Retry-After` while pending) |
/// | `DELETE <prefix>/<id>` | cancels a pending task and stops its work: `204`; `409` when it already finished, with `task` `{id, status}` |
///
/// Unknown, expired, malformed or another owner's ids answer `404` (malformed ones without
/// a store call; the others name the `id`); other methods `405` with `Allow`; a store that
/// cannot be reached `503` with `Retry-After`. Errors are problem details
/// (`application/problem+json`, RFC 9457: `type`, `title`, `status`, `detail`), as the
/// layers' other errors are; a status document's `status` is the task's, a problem's the
/// HTTP status. The endpoint's own answers carry `Cache-Control: no-store`, so that no
/// cache in front keeps a poll's answer; a replayed result carries the handler's
/// `Cache-Control`, or `private` when it set none, so that no shared cache hands it to
/// another client. Get it from [`OffloadLayer::status_service`](super::OffloadLayer::status_service).
#[derive(Clone)]
pub struct TaskStatusService {
    config: Arc<Config>,
}

impl fmt::Debug for TaskStatusService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskStatusService")
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

enum Target {
    Status(TaskId),
    Result(TaskId),
}

impl TaskStatusService {
    pub(crate) fn new(config: Arc<Config>) -> Self {
        Self { config }
    }

    fn target(&self, path: &str) -> Option<Target> {
        let rest = path
            .strip_prefix(self.config.prefix.as_str())?
            .strip_prefix('/')?;
        match rest.split_once('/') {
            None => rest.parse().ok().map(Target::Status),
            Some((id, "result")) => id.parse().ok().map(Target::Result),
            Some(_) => None,
        }
    }
}

impl<B> Service<Request<B>> for TaskStatusService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, _) = request.into_parts();
        let config = self.config.clone();
        let target = self.target(parts.uri.path());
        let base = super::location::base(&parts.extensions, parts.uri.path());
        let owner = config.owner_of(&parts);
        let method = parts.method;
        Box::pin(async move {
            let Some(target) = target else {
                return Ok(not_found(None));
            };
            let answer = match (target, method) {
                (Target::Status(id), Method::GET | Method::HEAD) => {
                    status(&config, id, owner, base).await
                }
                (Target::Result(id), Method::GET | Method::HEAD) => {
                    result(&config, id, owner).await
                }
                (Target::Status(id), Method::DELETE) => cancel(&config, id, owner).await,
                (Target::Status(_), method) => Ok(not_allowed(&method, "GET, HEAD, DELETE")),
                (Target::Result(_), method) => Ok(not_allowed(&method, "GET, HEAD")),
            };
            Ok(answer.unwrap_or_else(|error| {
                tracing::warn!(target: "tower_serverless::offload", %error, "task store unavailable for the status endpoint");
                config.come_back_later(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the task store is unavailable; try again",
                    Map::new(),
                ))
            }))
        })
    }
}

/// The task, when it exists and the caller may see it; its stored response only
/// `with_result`.
async fn visible(
    config: &Config,
    id: TaskId,
    owner: &Option<String>,
    with_result: bool,
) -> Result<Option<TaskRecord>, StoreError> {
    let record = if with_result {
        config.store.get(id).await?
    } else {
        config.store.status(id).await?
    };
    Ok(record.filter(|record| config.owner.is_none() || &record.owner == owner))
}

async fn status(
    config: &Config,
    id: TaskId,
    owner: Option<String>,
    base: Option<String>,
) -> Result<Response<Full<Bytes>>, StoreError> {
    let Some(record) = visible(config, id, &owner, false).await? else {
        return Ok(not_found(Some(id)));
    };
    let body = record_json(&record);
    Ok(match record.state {
        TaskState::Pending => config.come_back_later(json(StatusCode::OK, &body)),
        TaskState::Succeeded => {
            let mut response = json(StatusCode::SEE_OTHER, &body);
            let location = format!(
                "{}/result",
                config.status_url(base.as_deref(), id.hex().as_str())
            );
            if let Ok(location) = HeaderValue::try_from(location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        TaskState::Failed | TaskState::Cancelled => json(StatusCode::OK, &body),
    })
}

async fn result(
    config: &Config,
    id: TaskId,
    owner: Option<String>,
) -> Result<Response<Full<Bytes>>, StoreError> {
    let Some(record) = visible(config, id, &owner, true).await? else {
        return Ok(not_found(Some(id)));
    };
    Ok(match record.result {
        Some(stored) if record.state == TaskState::Succeeded => {
            // The answer to a `POST`, say, now readable by `GET`: a shared cache in front
            // would hand it to whoever asks for the URL, owner or not. The handler's own
            // `Cache-Control` stands.
            let mut response = (*stored).into_response();
            response
                .headers_mut()
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("private"));
            response
        }
        _ => {
            let members = Map::from_iter([("task".to_owned(), record_json(&record))]);
            if record.state == TaskState::Pending {
                // When to come back, as a poll of the status URL says.
                let detail = "the task has not finished yet";
                config.come_back_later(problem(StatusCode::NOT_FOUND, detail, members))
            } else {
                let detail = "the task did not succeed; it has no result";
                problem(StatusCode::NOT_FOUND, detail, members)
            }
        }
    })
}

async fn cancel(
    config: &Config,
    id: TaskId,
    owner: Option<String>,
) -> Result<Response<Full<Bytes>>, StoreError> {
    if config.owner.is_some() && visible(config, id, &owner, false).await?.is_none() {
        return Ok(not_found(Some(id)));
    }
    Ok(match config.store.cancel(id).await? {
        CancelResult::Cancelled => {
            config.detached.abort(id);
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        CancelResult::Finished(state) => {
            let task = json!({ "id": id.to_string(), "status": state.as_str() });
            let members = Map::from_iter([("task".to_owned(), task)]);
            problem(StatusCode::CONFLICT, "the task already finished", members)
        }
        CancelResult::NotFound => not_found(Some(id)),
    })
}

fn record_json(record: &TaskRecord) -> Value {
    let mut body = json!({
        "id": record.id.to_string(),
        "status": record.state.as_str(),
        "created_at": rfc3339(record.created_at),
    });
    if let Some(finished_at) = record.finished_at {
        body["finished_at"] = Value::from(rfc3339(finished_at));
    }
    if let Some(error) = &record.error {
        body["error"] = Value::from(error.as_str());
    }
    if let Some(error_type) = &record.error_type {
        body["error_type"] = Value::from(error_type.as_str());
    }
    body
}

/// Every answer of the endpoint's own is `no-store`: a poll's changes while the task runs,
/// and a cache in front (CloudFront keeps a `GET`'s `200` for a day when the origin says
/// nothing) would answer `pending` long after the task ended.
fn no_store(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A task's status document.
fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    no_store(crate::response::json(status, body.to_string()))
}

/// The endpoint's own errors: problem details (RFC 9457), as the layers' other errors are.
fn problem(status: StatusCode, detail: &str, members: Map<String, Value>) -> Response<Full<Bytes>> {
    no_store(crate::response::problem_with(status, detail, members))
}

/// `404`, naming the task asked for when its id was well-formed.
fn not_found(id: Option<TaskId>) -> Response<Full<Bytes>> {
    let members = id
        .map(|id| ("id".to_owned(), Value::from(id.to_string())))
        .into_iter()
        .collect();
    problem(StatusCode::NOT_FOUND, "no such task", members)
}

fn not_allowed(method: &Method, allow: &'static str) -> Response<Full<Bytes>> {
    let detail = format!("{method} is not allowed here; see Allow");
    let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, &detail, Map::new());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// `2026-11-22T02:20:57.123Z`, in UTC.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |secs, millis| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_314_057, 123), "2026-11-22T02:20:57.123Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }
}
