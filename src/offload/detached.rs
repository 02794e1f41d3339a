//! Work that goes on after its `202 Accepted`: tracking, bounds, cancellation, completion.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tower::BoxError;

use super::config::Config;
use super::store::{StoredResponse, TaskOutcome, TaskStore};
use super::{reason, TaskId};
use crate::deadline::{Deadline, DeadlineSource};
use crate::escalate::{DefaultPredicate, Policy};

/// The tasks this process detached and that are still running.
///
/// Wait for them before a graceful shutdown ([`wait_idle`](Self::wait_idle), or
/// [`shutdown`](Self::shutdown) for a bounded wait); the Lambda runner waits for them
/// before the environment may freeze. Get it from
/// [`OffloadLayer::detached`](super::OffloadLayer::detached).
#[derive(Clone)]
pub struct DetachedTasks {
    inner: Arc<Inner>,
}

struct Inner {
    running: Mutex<HashMap<TaskId, Running>>,
    /// Told whenever a task ends.
    ended: Notify,
    /// Moved on by [`DetachedTasks::shutdown`].
    phase: watch::Sender<Phase>,
}

/// A reserved task: the abort handle once its work is spawned, and the Lambda invocation
/// that detached it.
struct Running {
    handle: Option<AbortHandle>,
    #[cfg_attr(not(feature = "lambda"), allow(dead_code))]
    invocation: Option<Invocation>,
}

/// A request extension naming the Lambda invocation a request belongs to (set by the
/// Lambda runner), so that an invocation is held for the work it detached, not for others'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invocation(pub(crate) Arc<str>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Nothing new is detached.
    Closing,
    /// Running work stops too.
    Stopping,
}

impl Default for DetachedTasks {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                running: Mutex::default(),
                ended: Notify::new(),
                phase: watch::Sender::new(Phase::Open),
            }),
        }
    }
}

/// How long [`DetachedTasks::shutdown`] waits for stopped tasks to record their failure.
const STOP_WAIT: Duration = Duration::from_secs(5);

impl DetachedTasks {
    fn running(&self) -> MutexGuard<'_, HashMap<TaskId, Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many detached tasks are running.
    pub fn len(&self) -> usize {
        self.running().len()
    }

    /// Whether no detached task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no detached task is running.
    pub async fn wait_idle(&self) {
        self.wait_until(|running| running.is_empty()).await;
    }

    /// Waits until no task detached by Lambda invocation `request_id` is running.
    #[cfg(feature = "lambda")]
    pub(crate) async fn wait_invocation(&self, request_id: &str) {
        self.wait_until(|running| {
            !running.values().any(|task| {
                task.invocation
                    .as_ref()
                    .is_some_and(|i| &*i.0 == request_id)
            })
        })
        .await;
    }

    async fn wait_until(&self, done: impl Fn(&HashMap<TaskId, Running>) -> bool) {
        loop {
            let ended = self.inner.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if done(&self.running()) {
                return;
            }
            ended.await;
        }
    }

    /// A bounded graceful shutdown: waits up to `grace` for the detached tasks, then stops
    /// those still running and stores them as failed
    /// ([`reason::SHUT_DOWN`](super::reason::SHUT_DOWN)), waiting at most 5 s more for
    /// those writes. From the call on, nothing new is detached: slow requests are answered
    /// in the foreground. Returns how many tasks were stopped.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.inner.phase.send_replace(Phase::Closing);
        if tokio::time::timeout(grace, self.wait_idle()).await.is_ok() {
            return 0;
        }
        let stopped = self.len();
        self.inner.phase.send_replace(Phase::Stopping);
        if tokio::time::timeout(STOP_WAIT, self.wait_idle())
            .await
            .is_err()
        {
            for handle in self
                .running()
                .values()
                .filter_map(|task| task.handle.as_ref())
            {
                handle.abort();
            }
        }
        stopped
    }

    /// Completes once [`shutdown`](Self::shutdown) stops running work.
    fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut phase = self.inner.phase.subscribe();
        async move {
            let _ = phase.wait_for(|phase| *phase == Phase::Stopping).await;
        }
    }

    /// Stops the task's work, if it runs in this process.
    pub(crate) fn abort(&self, id: TaskId) {
        if let Some(handle) = self
            .running()
            .get(&id)
            .and_then(|task| task.handle.as_ref())
        {
            handle.abort();
        }
    }

    /// A place for task `id` (of `invocation`, on Lambda) among at most `max` running
    /// tasks; `None` when they are all taken or the process is shutting down. The place
    /// counts as running until the reservation, or the work spawned with it, is dropped.
    pub(crate) fn reserve(
        &self,
        id: TaskId,
        max: usize,
        invocation: Option<Invocation>,
    ) -> Option<Reservation> {
        if *self.inner.phase.borrow() != Phase::Open {
            return None;
        }
        let mut running = self.running();
        if running.len() >= max {
            return None;
        }
        running.insert(
            id,
            Running {
                handle: None,
                invocation,
            },
        );
        Some(Reservation {
            tasks: self.clone(),
            id,
        })
    }
}

impl std::fmt::Debug for DetachedTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedTasks")
            .field("running", &self.len())
            .finish()
    }
}

/// A task's place among the running ones: released when dropped, whether the work ran to
/// its end, was aborted, panicked, or never started.
pub(crate) struct Reservation {
    tasks: DetachedTasks,
    id: TaskId,
}

impl Reservation {
    /// Runs `work` in a task of its own, holding the place until it ends.
    pub(crate) fn spawn<W>(self, work: W)
    where
        W: Future<Output = ()> + Send + 'static,
    {
        let (tasks, id) = (self.tasks.clone(), self.id);
        // No lock is held here: a runtime that is shutting down drops the task, and this
        // reservation with it, inside `spawn`.
        let handle = tokio::spawn(async move {
            let _place = self;
            work.await;
        });
        let mut running = tasks.running();
        if let Some(task) = running.get_mut(&id) {
            task.handle = Some(handle.abort_handle());
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.tasks.running().remove(&self.id);
        self.tasks.inner.ended.notify_waiters();
    }
}

/// Polls `future`, turning a panic into `Err` with its payload.
pub(crate) async fn catch_panic<F: Future + ?Sized>(
    mut future: Pin<&mut F>,
) -> Result<F::Output, Box<dyn Any + Send>> {
    std::future::poll_fn(move |cx| {
        match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    })
    .await
}

/// Why a body could not be captured.
pub(crate) enum CaptureError {
    /// It was larger than the limit.
    TooLarge,
    /// It failed.
    Failed(BoxError),
}

/// Reads a response body whole, up to `max` bytes: the one place the crate collects a
/// body it keeps.
pub(crate) async fn capture<B>(body: B, max: usize) -> Result<Bytes, CaptureError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(CaptureError::TooLarge),
        Err(error) => Err(CaptureError::Failed(error)),
    }
}

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
    B: http_body::Body<Data = Bytes>,
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
    match catch_panic(pin!(capture(body, max_bytes))).await {
        Ok(Ok(body)) => TaskOutcome::Succeeded(StoredResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }),
        Ok(Err(CaptureError::TooLarge)) => TaskOutcome::failed(reason::too_large(max_bytes)),
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
    let renewing = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            match store.renew(id, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(target: "tower_serverless::offload", task = %id, %error, "could not renew a task's lease")
                }
            }
        }
    };
    let expired = async {
        tokio::time::sleep_until(deadline.instant()).await;
        match deadline.source() {
            DeadlineSource::Function => reason::LAMBDA_DEADLINE,
            _ => reason::BACKGROUND_DEADLINE,
        }
    };
    let (outcome, retry_for) = tokio::select! {
        outcome = work => (outcome, config.store_retry),
        reason = expired => (TaskOutcome::failed(reason), config.store_retry),
        // Shutting down: one attempt to record it, no retries.
        () = config.detached.stopping() => (TaskOutcome::failed(reason::SHUT_DOWN), Duration::ZERO),
        () = renewing => {
            tracing::debug!(target: "tower_serverless::offload", task = %id, "task no longer pending; its work stopped");
            return;
        }
    };
    finish(store, id, outcome, retry_for).await;
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
