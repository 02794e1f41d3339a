//! Work that goes on after its `202 Accepted`: tracking, cancellation, completion.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tower::BoxError;

use super::layer::Config;
use super::store::{StoredResponse, TaskOutcome, TaskStore};
use super::TaskId;
use crate::deadline::{Deadline, DeadlineSource};

/// The tasks this process detached and that are still running.
///
/// Wait for them before a graceful shutdown ([`wait_idle`](Self::wait_idle)); the Lambda
/// runner waits for them before the environment may freeze. Get it from
/// [`OffloadLayer::detached`](super::OffloadLayer::detached).
#[derive(Clone, Default)]
pub struct DetachedTasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    running: Mutex<HashMap<TaskId, AbortHandle>>,
    idle: Notify,
}

impl DetachedTasks {
    fn running(&self) -> MutexGuard<'_, HashMap<TaskId, AbortHandle>> {
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
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.is_empty() {
                return;
            }
            idle.await;
        }
    }

    /// Stops the task's work, if it runs in this process.
    pub(crate) fn abort(&self, id: TaskId) {
        if let Some(handle) = self.running().get(&id) {
            handle.abort();
        }
    }

    pub(crate) fn spawn<W>(&self, id: TaskId, work: W)
    where
        W: Future<Output = ()> + Send + 'static,
    {
        let guard = Registered {
            tasks: self.clone(),
            id,
        };
        // The lock is held across the spawn so the task cannot deregister before it is
        // registered.
        let mut running = self.running();
        let handle = tokio::spawn(async move {
            let _registered = guard;
            work.await;
        });
        running.insert(id, handle.abort_handle());
    }
}

impl std::fmt::Debug for DetachedTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetachedTasks")
            .field("running", &self.len())
            .finish()
    }
}

/// Deregisters a task when its work ends, however it ends (finished, aborted, panicked).
struct Registered {
    tasks: DetachedTasks,
    id: TaskId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut running = self.tasks.running();
        running.remove(&self.id);
        if running.is_empty() {
            self.tasks.inner.idle.notify_waiters();
        }
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

/// Reasons stored for failed tasks: texts for clients, the detail goes to the log.
pub(crate) mod reason {
    pub(crate) const PANICKED: &str = "the handler panicked";
    pub(crate) const FAILED: &str = "the handler failed";
    pub(crate) const BODY_FAILED: &str = "the response body failed";
    pub(crate) const BACKGROUND_DEADLINE: &str = "background deadline";
    pub(crate) const LAMBDA_DEADLINE: &str = "lambda deadline";
}

/// The outcome of the inner service's future, with its body collected up to the limit.
pub(crate) async fn outcome<F, B, E>(
    id: TaskId,
    mut future: Pin<Box<F>>,
    max_bytes: usize,
) -> TaskOutcome
where
    F: Future<Output = Result<Response<B>, E>> + ?Sized,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    E: Into<BoxError>,
{
    let response = match catch_panic(future.as_mut()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            let error: BoxError = error.into();
            tracing::error!(target: "tower_serverless::offload", task = %id, %error, "offloaded work failed");
            return TaskOutcome::Failed(reason::FAILED.to_owned());
        }
        Err(_) => {
            tracing::error!(target: "tower_serverless::offload", task = %id, "offloaded work panicked");
            return TaskOutcome::Failed(reason::PANICKED.to_owned());
        }
    };
    let (parts, body) = response.into_parts();
    match Limited::new(body, max_bytes).collect().await {
        Ok(collected) => TaskOutcome::Succeeded(StoredResponse {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
        }),
        Err(error) if error.is::<LengthLimitError>() => {
            TaskOutcome::Failed(format!("the result exceeded {max_bytes} bytes"))
        }
        Err(error) => {
            tracing::error!(target: "tower_serverless::offload", task = %id, %error, "offloaded response body failed");
            TaskOutcome::Failed(reason::BODY_FAILED.to_owned())
        }
    }
}

/// Detached work, boxed once: a pending task holds this box, not copies of its future.
pub(crate) type Work = Pin<Box<dyn Future<Output = TaskOutcome> + Send>>;

/// `work` under the background deadline, when there is one, as [`current`] inside it.
///
/// [`current`]: crate::deadline::current
pub(crate) fn bounded<W>(work: W, deadline: Option<Deadline>) -> (Work, Option<Deadline>)
where
    W: Future<Output = TaskOutcome> + Send + 'static,
{
    match deadline {
        Some(deadline) => (Box::pin(deadline.scoped(work)), Some(deadline)),
        None => (Box::pin(work), None),
    }
}

/// Runs detached work to its end and stores the outcome: under the background deadline,
/// renewing the lease, and stopping when the task is no longer pending (cancelled).
pub(crate) async fn run(config: Arc<Config>, id: TaskId, work: Work, deadline: Option<Deadline>) {
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
        match deadline {
            Some(deadline) => {
                tokio::time::sleep_until(deadline.instant()).await;
                match deadline.source() {
                    DeadlineSource::Function => reason::LAMBDA_DEADLINE,
                    _ => reason::BACKGROUND_DEADLINE,
                }
            }
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = work => Some(outcome),
        reason = expired => Some(TaskOutcome::Failed(reason.to_owned())),
        () = renewing => None,
    };
    match outcome {
        Some(outcome) => finish(store, id, outcome).await,
        None => {
            tracing::debug!(target: "tower_serverless::offload", task = %id, "task no longer pending; its work stopped")
        }
    }
}

/// Stores a task's outcome, retrying a failed write with bounded backoff.
pub(crate) async fn finish(store: &dyn TaskStore, id: TaskId, outcome: TaskOutcome) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=FINISH_ATTEMPTS {
        match store.finish(id, outcome.clone()).await {
            Ok(_) => return,
            Err(error) if attempt == FINISH_ATTEMPTS => {
                tracing::error!(target: "tower_serverless::offload", task = %id, %error, attempts = attempt, "could not store a task's outcome; it is lost")
            }
            Err(error) => {
                tracing::warn!(target: "tower_serverless::offload", task = %id, %error, attempt, "could not store a task's outcome; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// Attempts to store an outcome: 100 ms, doubling, about 6 s in all.
const FINISH_ATTEMPTS: u32 = 7;
