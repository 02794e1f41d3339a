//! The settings an [`OffloadLayer`](super::OffloadLayer) shares with its services, its
//! detached work and its status endpoint.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{header, HeaderValue, Method, Response};

use super::detached::DetachedTasks;
use super::store::TaskStore;
use crate::escalate::Policy;

/// The budget of detached work unless [`background_deadline`] sets another: 15 minutes,
/// the longest a Lambda invocation may run.
///
/// [`background_deadline`]: super::OffloadLayer::background_deadline
pub const DEFAULT_BACKGROUND_BUDGET: Duration = Duration::from_secs(15 * 60);

/// How many detached tasks may run at once in a process unless [`max_detached`] sets
/// another.
///
/// [`max_detached`]: super::OffloadLayer::max_detached
pub const DEFAULT_MAX_DETACHED: usize = 1_000;

pub(crate) type OwnerFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
pub(crate) type FilterFn = dyn Fn(&Parts) -> bool + Send + Sync;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) store: Arc<dyn TaskStore>,
    pub(crate) detached: DetachedTasks,
    pub(crate) after: Duration,
    pub(crate) max_wait: Duration,
    pub(crate) margin: Duration,
    pub(crate) background: Duration,
    pub(crate) max_detached: usize,
    pub(crate) escalation: Policy,
    pub(crate) store_retry: Duration,
    pub(crate) max_result_bytes: usize,
    pub(crate) ttl: Duration,
    pub(crate) lease: Duration,
    /// `Retry-After`, made once: a `HeaderValue` from a number allocates.
    pub(crate) retry_after: HeaderValue,
    pub(crate) prefix: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) filter: Option<Arc<FilterFn>>,
    pub(crate) owner: Option<Arc<OwnerFn>>,
}

impl Config {
    /// `response` with `Retry-After`: when the client should come back (a pending task,
    /// a store that cannot take the request now).
    pub(crate) fn come_back_later<B>(&self, mut response: Response<B>) -> Response<B> {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, self.retry_after.clone());
        response
    }

    pub(crate) fn new(store: Arc<dyn TaskStore>) -> Self {
        Self {
            store,
            detached: DetachedTasks::default(),
            after: Duration::from_secs(2),
            max_wait: Duration::from_secs(20),
            margin: Duration::from_millis(500),
            background: DEFAULT_BACKGROUND_BUDGET,
            max_detached: DEFAULT_MAX_DETACHED,
            escalation: Policy::default(),
            store_retry: Duration::from_secs(30),
            max_result_bytes: 6 << 20,
            ttl: Duration::from_secs(15 * 60),
            lease: Duration::from_secs(60),
            retry_after: retry_after(Duration::from_secs(1)),
            prefix: "/tasks".to_owned(),
            methods: vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE],
            filter: None,
            owner: None,
        }
    }

    pub(crate) fn owner_of(&self, parts: &Parts) -> Option<String> {
        self.owner.as_ref().and_then(|owner| owner(parts))
    }

    /// The status URL of the task written `id` for a request whose status URLs start with
    /// `base`.
    pub(crate) fn status_url(&self, base: Option<&str>, id: &str) -> String {
        // Pushed rather than `format!`ed: `fmt` costs a tenth of a `202`.
        let base = base.unwrap_or_default();
        let mut url = String::with_capacity(base.len() + self.prefix.len() + 1 + id.len());
        for part in [base, &self.prefix, "/", id] {
            url.push_str(part);
        }
        url
    }
}

/// Whole seconds, rounded up: a client must not come back before the hint.
pub(crate) fn retry_after(after: Duration) -> HeaderValue {
    HeaderValue::from(crate::deadline::seconds_up(after))
}
