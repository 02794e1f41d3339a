use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::Method;
use tower::Layer;

use super::config::Config;
use super::detached::DetachedTasks;
use super::status::TaskStatusService;
use super::store::TaskStore;
use super::Offload;
use crate::escalate::EscalateLayer;
use crate::ConfigError;

/// Answers `202 Accepted` with a task id for requests that run past a threshold, and lets
/// their work finish in the background.
///
/// Configure it fully, then take the [status endpoint](Self::status_service) from it: both
/// share the store, the status prefix and the owner binding. See the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct OffloadLayer {
    pub(crate) config: Arc<Config>,
}

impl OffloadLayer {
    /// A layer keeping its tasks in `store`, with the status endpoint at `/tasks`.
    pub fn new(store: impl TaskStore) -> Self {
        Self::with_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared.
    pub fn with_store(store: Arc<dyn TaskStore>) -> Self {
        Self {
            config: Arc::new(Config::new(store)),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// How long a request runs in the foreground before it is offloaded (default 2 s). The
    /// current [`Deadline`](crate::deadline::Deadline) minus the margin caps it, so the
    /// `202` always leaves before the gateway's cap.
    pub fn after(mut self, after: Duration) -> Self {
        self.config().after = after;
        self
    }

    /// The most a client's `Prefer: wait=N` may ask for (default 20 s).
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.config().max_wait = max;
        self
    }

    /// Time kept before the deadline for storing the task and sending the `202`
    /// (default 500 ms).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.config().margin = margin;
        self
    }

    /// The budget of detached work, counted from when it is detached (default
    /// [`DEFAULT_BACKGROUND_BUDGET`](super::DEFAULT_BACKGROUND_BUDGET), 15 min); it replaces the foreground deadline for
    /// everything below the layer. Work still running then, including a response body
    /// still streaming, is stopped and stored as failed
    /// ([`reason::BACKGROUND_DEADLINE`](super::reason::BACKGROUND_DEADLINE)). On Lambda the
    /// function's deadline also bounds it.
    ///
    /// # Errors
    ///
    /// When `budget` is zero: no detached work could finish.
    pub fn background_deadline(mut self, budget: Duration) -> Result<Self, ConfigError> {
        if budget.is_zero() {
            return Err(ConfigError("the background budget must be above zero"));
        }
        self.config().background = budget;
        Ok(self)
    }

    /// The most detached tasks that run at once in this process (default
    /// [`DEFAULT_MAX_DETACHED`](super::DEFAULT_MAX_DETACHED), 1,000). Past it, a slow request is answered in the
    /// foreground, as when the store refuses a task, and `Prefer: respond-async` is not
    /// applied: no client can start background work faster than it finishes.
    ///
    /// # Errors
    ///
    /// When `max` is 0: nothing could be offloaded.
    pub fn max_detached(mut self, max: usize) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError("at least one detached task must be allowed"));
        }
        self.config().max_detached = max;
        Ok(self)
    }

    /// Which responses of detached work are failures with an `error_type` rather than
    /// results: those the escalate layer's marker and status policies name (its predicate
    /// is not carried over). By default a response carrying an
    /// [`Escalation`](crate::Escalation) marker is one. The status endpoint then answers
    /// the task as `failed`, with `error_type`, instead of `303` to a result.
    pub fn escalations<O, P>(mut self, escalate: &EscalateLayer<O, P>) -> Self {
        self.config().escalation = escalate.policy.clone();
        self
    }

    /// How long the outcome of detached work is retried when the store refuses the write
    /// (default 30 s, enough to outlast a typical Redis failover); backoff from 100 ms,
    /// doubling, at most 5 s apart.
    pub fn store_retry(mut self, retry_for: Duration) -> Self {
        self.config().store_retry = retry_for;
        self
    }

    /// The largest response body stored for replay (default 6 MiB, Lambda's payload limit);
    /// a larger result fails the task.
    pub fn max_result_bytes(mut self, max: usize) -> Self {
        self.config().max_result_bytes = max;
        self
    }

    /// How long a finished task stays readable, from its completion (default 15 min).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config().ttl = ttl;
        self
    }

    /// How long a pending record stays valid without renewal (default 60 s); the worker
    /// renews it every third of that, detached or answering in the foreground (a keyed
    /// request's work and its streaming response). A task whose worker died reads as failed
    /// (`worker lost`) once its lease runs out.
    ///
    /// # Errors
    ///
    /// When `lease` is under 3 ms, too short to renew.
    pub fn lease(mut self, lease: Duration) -> Result<Self, ConfigError> {
        if lease < Duration::from_millis(3) {
            return Err(ConfigError("the lease must be at least 3 ms"));
        }
        self.config().lease = lease;
        Ok(self)
    }

    /// The `Retry-After` given with `202` and pending status (default 1 s, rounded up to
    /// whole seconds).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.config().retry_after = super::config::retry_after(retry_after);
        self
    }

    /// Where the status endpoint is mounted (default `/tasks`): `Location` is
    /// `<prefix>/<id>`.
    ///
    /// # Errors
    ///
    /// When `prefix` does not start with `/`, ends with `/`, or holds characters that need
    /// escaping in a path.
    pub fn status_prefix(mut self, prefix: &str) -> Result<Self, ConfigError> {
        let valid = prefix.starts_with('/')
            && !prefix.ends_with('/')
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
        if !valid {
            return Err(ConfigError(
                "the status prefix must start with '/', not end with '/', and hold only A-Z a-z 0-9 / - . _ ~",
            ));
        }
        self.config().prefix = prefix.to_owned();
        Ok(self)
    }

    /// The methods that may be offloaded (default `POST`, `PUT`, `PATCH`, `DELETE`).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config().methods = methods.into_iter().collect();
        self
    }

    /// Only requests for which `filter` returns `true` may be offloaded (besides the method
    /// filter).
    pub fn filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.config().filter = Some(Arc::new(filter));
        self
    }

    /// Binds tasks to an owner named by `owner` (for example from an authenticated
    /// identity): status, result and cancel from anyone else answer `404`, and
    /// `Idempotency-Key`s are scoped by owner.
    pub fn owner<F>(mut self, owner: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.config().owner = Some(Arc::new(owner));
        self
    }

    /// The status endpoint for this layer's tasks, a tower service to mount at the status
    /// prefix.
    pub fn status_service(&self) -> TaskStatusService {
        TaskStatusService::new(self.config.clone())
    }

    /// The status endpoint as an axum `Router` with the routes `<prefix>/{id}` and
    /// `<prefix>/{id}/result`, to merge into the application's router.
    #[cfg(feature = "axum")]
    pub fn status_router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let service = self.status_service();
        let prefix = &self.config.prefix;
        axum::Router::new()
            .route_service(&format!("{prefix}/{{id}}"), service.clone())
            .route_service(&format!("{prefix}/{{id}}/result"), service)
    }

    /// The tasks detached by this layer that are still running in this process.
    pub fn detached(&self) -> DetachedTasks {
        self.config.detached.clone()
    }
}

impl<S> Layer<S> for OffloadLayer {
    type Service = Offload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Offload::new(inner, self.config.clone())
    }
}

impl fmt::Debug for OffloadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        f.debug_struct("OffloadLayer")
            .field("after", &config.after)
            .field("max_wait", &config.max_wait)
            .field("margin", &config.margin)
            .field("background", &config.background)
            .field("max_detached", &config.max_detached)
            .field("max_result_bytes", &config.max_result_bytes)
            .field("ttl", &config.ttl)
            .field("lease", &config.lease)
            .field("prefix", &config.prefix)
            .field("methods", &config.methods)
            .field("detached", &config.detached)
            .finish_non_exhaustive()
    }
}
