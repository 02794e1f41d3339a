//! Where offloaded tasks are kept: the [`TaskStore`] trait and its implementations.
//!
//! The store is a trait object (`Arc<dyn TaskStore>`), not a type parameter: every call is
//! asynchronous I/O in general (Redis, DynamoDB), so the box per call costs nothing that
//! matters, while the layer, its service and the status endpoint keep short, nameable types.
//! [`MemoryStore`] is the default, for one process; a shared store (`RedisStore` with the
//! `redis` feature, `DynamoDbStore` with `dynamodb`) serves several. A store of your own (a
//! database) implements [`TaskStore`]; the conformance suite in the crate's
//! `tests/common/conformance.rs` shows what each method must do.
//!
//! # Example
//!
//! What the layer does with a store, step by step:
//!
//! ```
//! use std::time::Duration;
//! use tower_serverless::offload::store::{NewTask, TaskOutcome, TaskStore, Created};
//! use tower_serverless::offload::{MemoryStore, TaskId, TaskState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let id = TaskId::random_for(None, "POST /orders order-42")?;
//! let task = NewTask {
//!     id,
//!     owner: None,
//!     idempotency_key: Some("POST /orders order-42".into()),
//!     fingerprint: None,
//!     foreground: Duration::ZERO,
//!     lease: Duration::from_secs(60),
//!     ttl: Duration::from_secs(900),
//! };
//! assert_eq!(store.create(task.clone()).await?, Created::New);
//! // The same idempotency key finds the same task.
//! let again = NewTask { id: TaskId::random_for(None, "POST /orders order-42")?, ..task };
//! assert_eq!(store.create(again).await?, Created::Existing(id));
//!
//! assert!(store.finish(id, TaskOutcome::failed("the handler failed")).await?);
//! let record = store.get(id).await?.expect("kept for its TTL");
//! assert_eq!(record.state, TaskState::Failed);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tower::BoxError;

use super::TaskId;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(any(feature = "redis", feature = "dynamodb"))]
mod encoding;
mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "dynamodb")]
pub use self::dynamodb::DynamoDbStore;
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;

/// A boxed, `Send` future, as [`TaskStore`] methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The state of a task. Every state but `Pending` is terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// The work is running.
    Pending,
    /// The work finished; its response is stored.
    Succeeded,
    /// The work failed: a panic, an error, a result too large, a deadline, a lost worker.
    Failed,
    /// The task was cancelled before it finished.
    Cancelled,
}

impl TaskState {
    const ALL: [Self; 4] = [
        Self::Pending,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The state as it appears in status JSON: `pending`, `succeeded`, `failed`, `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The state [`as_str`](Self::as_str) wrote, for stores that keep it as text.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

/// A response kept for replay: status, headers and the whole body.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl StoredResponse {
    /// The bytes it takes: the body and every header name and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum::<usize>()
    }

    /// The response, to send again.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// What a store knows of a task.
#[derive(Clone, Debug)]
pub struct TaskRecord {
    /// The id.
    pub id: TaskId,
    /// The state.
    pub state: TaskState,
    /// When the task was created.
    pub created_at: SystemTime,
    /// When the task reached its terminal state.
    pub finished_at: Option<SystemTime>,
    /// Why the task failed or was cancelled: a text for clients, never internal detail.
    pub error: Option<String>,
    /// The `error_type` of a task whose work escalated.
    pub error_type: Option<String>,
    /// Who created the task, when the layer binds tasks to owners.
    pub owner: Option<String>,
    /// The fingerprint of the request that created a task with an idempotency key.
    pub fingerprint: Option<String>,
    /// Until when the request that created the task may still answer in the foreground: a
    /// retry of its key before then is answered `409 Conflict`.
    pub foreground_until: Option<SystemTime>,
    /// The response of a succeeded task (boxed: most records are pending or failed, and
    /// stay small).
    pub result: Option<Box<StoredResponse>>,
}

/// A task to create in the pending state.
#[derive(Clone, Debug)]
pub struct NewTask {
    /// The id.
    pub id: TaskId,
    /// Who creates it.
    pub owner: Option<String>,
    /// The client's `Idempotency-Key` in its scope (method and path); the store scopes it by
    /// owner too. Then `id` comes from [`TaskId::random_for`].
    pub idempotency_key: Option<String>,
    /// The fingerprint of the request, kept to tell a retry from another request sent with
    /// the same key.
    pub fingerprint: Option<String>,
    /// How long the request may still answer in the foreground, from now.
    pub foreground: Duration,
    /// How long the pending record stays valid unless renewed; after that it reads as
    /// failed (`worker lost`).
    pub lease: Duration,
    /// How long the record is kept once terminal.
    pub ttl: Duration,
}

/// What [`TaskStore::create`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The task was created.
    New,
    /// A task with the same idempotency key and owner exists: this one.
    Existing(TaskId),
}

/// How a task's work ended.
#[derive(Clone, Debug)]
pub enum TaskOutcome {
    /// The response to store.
    Succeeded(StoredResponse),
    /// The work failed.
    Failed {
        /// Why, in words clients may read: one of [`reason`](crate::offload::reason).
        reason: Cow<'static, str>,
        /// The escalation's `error_type`, when the work escalated.
        error_type: Option<Cow<'static, str>>,
    },
}

impl TaskOutcome {
    /// A failure for `reason`, without an error type.
    pub fn failed(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Failed {
            reason: reason.into(),
            error_type: None,
        }
    }
}

/// What [`TaskStore::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelResult {
    /// The pending task is now cancelled.
    Cancelled,
    /// The task had already reached this terminal state.
    Finished(TaskState),
    /// No such task (unknown or expired).
    NotFound,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many pending tasks as it may.
    #[error("the task store is full")]
    Full,
    /// The store could not be reached or answered wrongly.
    #[error("the task store is unavailable")]
    Unavailable(#[source] BoxError),
}

/// Keeps offloaded tasks: their state, and the response of those that succeeded.
///
/// Transitions happen once: `Pending` to one terminal state. `finish` and `cancel` racing for
/// the same task have one winner.
pub trait TaskStore: Send + Sync + 'static {
    /// Creates a pending task, unless one with the same idempotency key and owner exists.
    fn create(&self, task: NewTask) -> BoxFuture<'_, Result<Created, StoreError>>;

    /// Extends a pending task's lease; `false` when the task is no longer pending (cancelled,
    /// expired), which tells the worker to stop.
    fn renew(&self, id: TaskId, lease: Duration) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Moves a pending task to its terminal state; `false` when it was no longer pending.
    fn finish(&self, id: TaskId, outcome: TaskOutcome) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// The task, if it exists and has not expired.
    fn get(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>>;

    /// The task without its stored response (`result` is `None`), for status polls. Stores
    /// whose records live elsewhere override it so that a poll does not fetch the body.
    fn status(&self, id: TaskId) -> BoxFuture<'_, Result<Option<TaskRecord>, StoreError>> {
        Box::pin(async move {
            let record = self.get(id).await?;
            Ok(record.map(|record| TaskRecord {
                result: None,
                ..record
            }))
        })
    }

    /// Cancels a pending task.
    fn cancel(&self, id: TaskId) -> BoxFuture<'_, Result<CancelResult, StoreError>>;

    /// Whether other processes see the tasks (default: yes). A store local to the process
    /// ([`MemoryStore`]) says no: on Lambda, where polls land on other environments, the
    /// runner warns about it.
    fn is_shared(&self) -> bool {
        true
    }
}
