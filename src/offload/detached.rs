//! Work that goes on after its `202 Accepted`: which tasks run, their places among at most
//! so many, their cancellation, and a bounded shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{IdMap, TaskId};

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
    running: Mutex<IdMap<Running>>,
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
/// Lambda runner), so that an invocation is held for the work it detached, not for others',
/// and bounding what a result may be when its response is buffered.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    // Read only by the Lambda runner's wait for the invocation's work.
    #[cfg_attr(not(feature = "lambda"), allow(dead_code))]
    pub(crate) request_id: Arc<str>,
    /// The largest JSON document a buffered response may be (`lambda::payload`); `None`
    /// when responses stream.
    pub(crate) max_response: Option<usize>,
}

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
    fn running(&self) -> MutexGuard<'_, IdMap<Running>> {
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
                    .is_some_and(|i| &*i.request_id == request_id)
            })
        })
        .await;
    }

    async fn wait_until(&self, done: impl Fn(&IdMap<Running>) -> bool) {
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
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
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
            renewal: None,
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
    /// What renews the task's lease while its work runs outside a task of its own (a keyed
    /// request answering in the foreground, then its response streaming). Stopped when the
    /// work moves to a task of its own, which renews the lease itself, and when the place
    /// is released.
    renewal: Option<AbortHandle>,
}

impl Reservation {
    /// Hands the place the task that renews the lease until the place is released.
    pub(crate) fn renewed_by(&mut self, renewal: Option<AbortHandle>) {
        self.renewal = renewal;
    }

    fn stop_renewal(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }

    /// Runs `work` in a task of its own, holding the place until it ends.
    pub(crate) fn spawn<W>(mut self, work: W)
    where
        W: Future<Output = ()> + Send + 'static,
    {
        self.stop_renewal();
        let (tasks, id) = (self.tasks.clone(), self.id);
        // No lock is held here: a runtime that is shutting down drops the task, and this
        // reservation with it, inside `spawn`.
        // Boxed before it is spawned: the work's future is most of a kilobyte, which `spawn`
        // would otherwise copy several times on the way into the task. A future of its own,
        // not an `async` block: a block that moves the work in and awaits it keeps room for
        // it twice (what it captured, and what it awaits): 1,512 bytes instead of 752.
        // In the span it is detached in, the request's (a host's per request, as
        // `TraceLayer`'s and `lambda_runtime`'s are): its logs keep their context. The span
        // is in the box: beside it, it would take the task's cell past its 128-byte line
        // (128 bytes more per pending task).
        let handle = tokio::spawn(Box::pin(Holding { work, _place: self }.in_current_span()));
        let mut running = tasks.running();
        if let Some(task) = running.get_mut(&id) {
            task.handle = Some(handle.abort_handle());
        }
    }
}

pin_project! {
    /// Detached work holding its place among the running tasks until it ends or is dropped
    /// (the work first, then the place).
    struct Holding<W> {
        #[pin]
        work: W,
        _place: Reservation,
    }
}

impl<W: Future<Output = ()>> Future for Holding<W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().work.poll(cx)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.stop_renewal();
        self.tasks.running().remove(&self.id);
        self.tasks.inner.ended.notify_waiters();
    }
}
