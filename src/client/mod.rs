//! The other end: tower layers for clients of services behind a gateway, such as hyper-util's
//! `Client` or any `Service<Request<B>>` that sends HTTP.
//!
//! Most callers of an offloading API are other services. [`FollowLayer`] follows a
//! `202 Accepted` to its result, so that a slow call returns its final response through one
//! `call`, as if it had been synchronous; its polls carry the request's credentials to the
//! request's own host. A poll that does not reach the task (a gateway's `502`, a connection
//! that fails) is made again, and a call that gives up on a task that may still run says
//! where it is ([`FollowError::TimedOut`], [`FollowError::Unreachable`]), so that nothing it
//! started is lost. [`PropagateDeadlineLayer`] passes what remains of
//! the current [`Deadline`](crate::Deadline) on to the called service in a header its own
//! [`DeadlineLayer`](crate::DeadlineLayer) can trust, and cuts the call there. Stack them
//! with the deadline outermost, so that every poll carries the remaining time:
//!
//! ```text
//! FollowLayer              202 -> poll Location (Retry-After) -> 303 -> the result
//!   PropagateDeadlineLayer grpc-timeout / x-...-ms on every request; cut at the deadline
//!     hyper-util Client
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{body::Body, routing::post, Router};
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_serverless::client::{FollowLayer, PropagateDeadlineLayer};
//! use tower_serverless::{MemoryStore, OffloadLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // A server that offloads after 20 ms (here in process; usually over the network).
//! let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(20));
//! let server: Router = Router::new()
//!     .route("/report", post(|| async {
//!         tokio::time::sleep(Duration::from_millis(100)).await;
//!         "the report"
//!     }))
//!     .layer(offload.clone())
//!     .merge(offload.status_router());
//!
//! let client = ServiceBuilder::new()
//!     .layer(FollowLayer::new().max_wait(Duration::from_secs(10)))
//!     .layer(PropagateDeadlineLayer::grpc_timeout())
//!     .service(server);
//! let response = client
//!     .oneshot(Request::post("http://api.example/report").body(Body::empty())?)
//!     .await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "the report");
//! # Ok(())
//! # }
//! ```

mod error;
mod follow;
mod propagate;
mod retry_after;

pub use self::error::{DeadlinePassed, FollowError};
pub use self::follow::{Follow, FollowBody, FollowLayer, Followed};
pub use self::propagate::{PropagateDeadline, PropagateDeadlineFuture, PropagateDeadlineLayer};
