//! Where a client reaches the status endpoint: the path in front of what the service sees.

use http::Extensions;

/// A request extension: the part of the path the client called that lies in front of the
/// path the service sees, such as an API Gateway stage (`/prod`) that the Lambda runner
/// takes off the path. The offload layer and its status endpoint put it in front of every
/// `Location` they write, so the client calls a path that exists.
///
/// The Lambda runner (feature `lambda`) sets it; a proxy that strips a prefix can set it
/// too. Under axum's `Router::nest`, the nesting is added on top (from axum's
/// `OriginalUri`), so mount the status endpoint beside the layer, under the same nesting.
///
/// ```
/// use axum::{body::Body, routing::post, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_serverless::offload::{MemoryStore, OffloadLayer, PublicPrefix};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let offload = OffloadLayer::new(MemoryStore::new());
/// let app: Router = Router::new()
///     .route("/reports", post(|| async { "the report" }))
///     .layer(offload.clone())
///     .merge(offload.status_router());
/// let app = Router::new().nest("/api", app);
///
/// let mut request = Request::post("/api/reports")
///     .header("prefer", "respond-async")
///     .body(Body::empty())
///     .unwrap();
/// request.extensions_mut().insert(PublicPrefix("/prod".into()));
/// let accepted = app.oneshot(request).await.unwrap();
/// assert_eq!(accepted.status(), StatusCode::ACCEPTED);
/// let location = accepted.headers()["location"].to_str().unwrap();
/// assert!(location.starts_with("/prod/api/tasks/"));
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicPrefix(pub String);

/// What goes in front of this request's status URLs: its [`PublicPrefix`], then the axum
/// nesting it is under. `None` (no allocation) when there is neither.
pub(crate) fn base(extensions: &Extensions, path: &str) -> Option<String> {
    let public = extensions
        .get::<PublicPrefix>()
        .map(|prefix| prefix.0.trim_end_matches('/'));
    let nested = nesting(extensions, path);
    match (public, nested) {
        (None, None) => None,
        (public, nested) => Some(format!(
            "{}{}",
            public.unwrap_or_default(),
            nested.unwrap_or_default()
        )),
    }
}

/// The prefix axum's `Router::nest` took off the path.
#[cfg(feature = "axum")]
fn nesting<'a>(extensions: &'a Extensions, path: &str) -> Option<&'a str> {
    let original = extensions.get::<axum::extract::OriginalUri>()?.path();
    original
        .strip_suffix(path)
        .map(|prefix| prefix.trim_end_matches('/'))
        .filter(|prefix| !prefix.is_empty())
}

#[cfg(not(feature = "axum"))]
fn nesting<'a>(_: &'a Extensions, _: &str) -> Option<&'a str> {
    None
}
