use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::Method;
use tower::Layer;

use super::detached::DetachedTasks;
use super::status::TaskStatusService;
use super::store::TaskStore;
use super::Offload;
use crate::ConfigError;

type OwnerFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type FilterFn = dyn Fn(&Parts) -> bool + Send + Sync;

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

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn TaskStore>,
    pub(crate) detached: DetachedTasks,
    pub(crate) after: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) margin: Duration,
    pub(crate) background: Option<Duration>,
    pub(crate) max_result_bytes: usize,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) prefix: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) filter: Option<Arc<FilterFn>>,
    pub(crate) owner: Option<Arc<OwnerFn>>,
}

impl Config {
    pub(crate) fn owner_of(&self, parts: &Parts) -> Option<String> {
        self.owner.as_ref().and_then(|owner| owner(parts))
    }

    pub(crate) fn status_url(&self, id: super::TaskId) -> String {
        format!("{}/{id}", self.prefix)
    }
}

impl OffloadLayer {
    /// A layer keeping its tasks in `store`, with the status endpoint at `/tasks`.
    pub fn new(store: impl TaskStore) -> Self {
        Self::with_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared.
    pub fn with_store(store: Arc<dyn TaskStore>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                detached: DetachedTasks::default(),
                after: Duration::from_secs(2),
                max_wait: Duration::from_secs(20),
                margin: Duration::from_millis(500),
                background: None,
                max_result_bytes: 6 << 20,
                ttl: Duration::from_secs(15 * 60),
                lease: Duration::from_secs(60),
                retry_after: Duration::from_secs(1),
                prefix: "/tasks".to_owned(),
                methods: vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE],
                filter: None,
                owner: None,
            }),
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

    /// The budget of detached work, counted from when it is detached; it replaces the
    /// foreground deadline for everything below the layer. None by default (on Lambda the
    /// runner sets the function's deadline).
    pub fn background_deadline(mut self, budget: Duration) -> Self {
        self.config().background = Some(budget);
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
    /// renews it every third of that. A task whose worker died reads as failed
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
        self.config().retry_after = retry_after;
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
            .field("max_result_bytes", &config.max_result_bytes)
            .field("ttl", &config.ttl)
            .field("lease", &config.lease)
            .field("prefix", &config.prefix)
            .field("methods", &config.methods)
            .field("detached", &config.detached)
            .finish_non_exhaustive()
    }
}
