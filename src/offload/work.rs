//! Running detached work to its outcome: panics caught, the body captured up to a bound,
//! escalations recognised, the lease renewed, the background deadline kept, the outcome
//! stored with retries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use tokio::task::AbortHandle;
use tower::BoxError;
use tracing::Instrument;

use super::config::Config;
use super::detached::Reservation;
use super::store::{StoredResponse, TaskOutcome, TaskStore};
use super::{reason, TaskId};
use crate::capture::{capture, CaptureError};
use crate::deadline::{later, Deadline, DeadlineSource};
use crate::escalate::{DefaultPredicate, Policy};
use crate::unwind::catch_panic;

/// The outcome of the inner service's future: its response with the body captured up to
/// the limit, or why it failed (an error, a panic in the handler or its body, an
/// escalation that `policy` names).
pub(crate) async fn outcome<F, B, E>(
    id: TaskId,
    mut future: Pin<Box<F>>,
    max_bytes: usize,
    policy: &Policy,
) -> TaskOutcome
where
    F: Future<Output = Result<Response<B>, E>> + ?Sized,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    let mut response = match catch_panic(future.as_mut()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let error: BoxError = error.into();
            tracing::error!(target: "tower_serverless::offload", task = %id, %error, "offloaded work failed");
            return TaskOutcome::failed(reason::FAILED);
        }
        Err(_) => {
            tracing::error!(target: "tower_serverless::offload", task = %id, "offloaded work panicked");
            return TaskOutcome::failed(reason::PANICKED);
        }
    };
    if let Some(escalation) = policy.check(&DefaultPredicate, &mut response) {
        tracing::error!(
            target: "tower_serverless::offload",
            task = %id,
            error_type = escalation.error_type(),
            message = escalation.message(),
            "offloaded work escalated"
        );
        return TaskOutcome::Failed {
            reason: reason::ESCALATED.into(),
            error_type: Some(escalation.error_type().to_owned().into()),
        };
    }
    let (parts, body) = response.into_parts();
    // Boxed, made once the work is done: inline, the capture's state is room in the future
    // of every pending task, which is sized for its largest await (616 bytes instead of
    // 456 for this one).
    let mut capturing = Box::pin(capture(body, max_bytes));
    match catch_panic(capturing.as_mut()).await {
        Ok(Ok(body)) => TaskOutcome::Succeeded(StoredResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }),
        Ok(Err(CaptureError::TooLarge(_))) => TaskOutcome::failed(reason::too_large(max_bytes)),
        Ok(Err(CaptureError::Failed(error))) => {
            tracing::error!(target: "tower_serverless::offload", task = %id, %error, "offloaded response body failed");
            TaskOutcome::failed(reason::BODY_FAILED)
        }
        Err(_) => {
            tracing::error!(target: "tower_serverless::offload", task = %id, "offloaded response body panicked");
            TaskOutcome::failed(reason::BODY_PANICKED)
        }
    }
}

/// `outcome`, or a failure when it is a result its host could never answer with: one
/// larger, once encoded, than a buffered Lambda response of at most `max_response` bytes
/// (see `crate::lambda::payload`).
pub(crate) async fn deliverable(
    id: TaskId,
    outcome: TaskOutcome,
    max_response: Option<usize>,
) -> TaskOutcome {
    #[cfg(feature = "lambda")]
    if let (Some(max), TaskOutcome::Succeeded(result)) = (max_response, &outcome) {
        // Boxed: a pending task's future keeps room for its largest await.
        let fits = Box::pin(crate::lambda::payload::fits(
            max,
            result.status,
            &result.headers,
            &result.body,
        ));
        if !fits.await {
            tracing::warn!(
                target: "tower_serverless::offload",
                task = %id,
                bytes = result.body.len(),
                max_response = max,
                "the result is larger than a buffered Lambda response can carry once encoded; \
                 it is stored as failed (stream the function's responses, or make the result smaller)"
            );
            return TaskOutcome::failed(reason::TOO_LARGE_FOR_LAMBDA);
        }
    }
    #[cfg(not(feature = "lambda"))]
    let _ = (id, max_response);
    outcome
}

/// Detached work, boxed once: a pending task holds this box, not copies of its future.
pub(crate) type Work = Pin<Box<dyn Future<Output = TaskOutcome> + Send>>;

/// `work` under its background `deadline`, which is [`current`] inside it.
///
/// [`current`]: crate::deadline::current
pub(crate) fn bounded<W>(work: W, deadline: Deadline) -> Work
where
    W: Future<Output = TaskOutcome> + Send + 'static,
{
    Box::pin(deadline.scoped(work))
}

/// Runs detached work to its end and stores the outcome: under the background deadline,
/// renewing the lease, and stopping when the task is no longer pending (cancelled) or the
/// process shuts down.
pub(crate) async fn run(config: Arc<Config>, id: TaskId, work: Work, deadline: Deadline) {
    let store = &*config.store;
    let lease = config.lease;
    let expired = match deadline.source() {
        DeadlineSource::Function => reason::LAMBDA_DEADLINE,
        _ => reason::BACKGROUND_DEADLINE,
    };
    // One timer for the lease and the deadline: a pending task waits for the sooner of its
    // next renewal and its deadline. A second is armed only while a renewal is in flight,
    // so that a store that hangs does not hold the deadline back.
    let watch = async {
        let end = deadline.instant();
        loop {
            let renew_at = later(tokio::time::Instant::now(), lease / 3);
            if renew_at >= end {
                tokio::time::sleep_until(end).await;
                return Some(expired);
            }
            tokio::time::sleep_until(renew_at).await;
            let pending = tokio::select! {
                pending = renew(store, id, lease) => pending,
                () = tokio::time::sleep_until(end) => return Some(expired),
            };
            if !pending {
                return None;
            }
        }
    };
    let (outcome, retry_for) = tokio::select! {
        outcome = work => (outcome, config.store_retry),
        // Shutting down: one attempt to record it, no retries.
        () = config.detached.stopping() => (TaskOutcome::failed(reason::SHUT_DOWN), Duration::ZERO),
        ended = watch => match ended {
            Some(reason) => (TaskOutcome::failed(reason), config.store_retry),
            None => {
                tracing::debug!(target: "tower_serverless::offload", task = %id, "task no longer pending; its work stopped");
                return;
            }
        },
    };
    // Boxed: its retries' state would otherwise make every pending task's future larger.
    Box::pin(finish(store, id, outcome, retry_for)).await;
}

/// Extends task `id`'s lease; `false` once the task is no longer pending. A failed write
/// is logged, and the next renewal tries again.
async fn renew(store: &dyn TaskStore, id: TaskId, lease: Duration) -> bool {
    match store.renew(id, lease).await {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(target: "tower_serverless::offload", task = %id, %error, "could not renew a task's lease");
            true
        }
    }
}

/// Renews task `id`'s lease every third of it, in a task of its own, until the task is no
/// longer pending or the returned handle stops it: for work that runs outside [`run`] (a
/// keyed request answering in the foreground, then its response streaming), which may
/// take longer than the lease. `None` outside a runtime.
pub(crate) fn renew_lease(config: Arc<Config>, id: TaskId) -> Option<AbortHandle> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let renewal = runtime.spawn(
        async move {
            let lease = config.lease;
            loop {
                tokio::time::sleep(lease / 3).await;
                if !renew(&*config.store, id, lease).await {
                    return;
                }
            }
        }
        .in_current_span(),
    );
    Some(renewal.abort_handle())
}

/// Stores a task's outcome, retrying a failed write with backoff (100 ms, doubling, at most
/// 5 s apart) for up to `retry_for`: long enough to outlast a store's failover.
pub(crate) async fn finish(
    store: &dyn TaskStore,
    id: TaskId,
    outcome: TaskOutcome,
    retry_for: Duration,
) {
    let start = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    for attempt in 1.. {
        match store.finish(id, outcome.clone()).await {
            Ok(_) => return,
            Err(error) if start.elapsed() + backoff > retry_for => {
                tracing::error!(target: "tower_serverless::offload", task = %id, %error, attempts = attempt, "could not store a task's outcome; it is lost");
                return;
            }
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", task = %id, %error, attempt, "could not store a task's outcome; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Stores `outcome` for task `id` in a task of its own, holding the task's place until it is
/// stored; a result only if it is [`deliverable`] in a response of at most `max_response`.
/// Outside a runtime (one being torn down) the write is lost, logged, and the task reads
/// `worker lost` once its lease lapses.
pub(crate) fn store_later(
    config: Arc<Config>,
    id: TaskId,
    reservation: Reservation,
    outcome: TaskOutcome,
    max_response: Option<usize>,
) {
    spawn(async move {
        let outcome = deliverable(id, outcome, max_response).await;
        finish(&*config.store, id, outcome, config.store_retry).await;
        drop(reservation);
    });
}

/// Runs `future` on the current tokio runtime, if there is one, in the current span (the
/// request's, so that the work's logs keep their context).
pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(future.in_current_span());
        }
        Err(_) => {
            tracing::warn!(target: "tower_serverless::offload", "no runtime to finish a task's work on")
        }
    }
}
