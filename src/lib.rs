//! Tower layers for HTTP services behind a gateway with a hard time cap, and on AWS Lambda.
//!
//! They compose in this order, outermost first:
//!
//! | layer | what it does |
//! |---|---|
//! | [`EscalateLayer`] | chosen failures fail the invocation instead of becoming an HTTP 500 |
//! | [`DeadlineLayer`] | a time budget from every source that applies; `504` problem+json before the gateway cuts in |
//! | [`OffloadLayer`] | `202 Accepted` + task id for slow requests; the work finishes in the background; the client polls |
//!
//! For the callers of such services, [`client`] has [`FollowLayer`](client::FollowLayer),
//! which follows a `202` to its result, and
//! [`PropagateDeadlineLayer`](client::PropagateDeadlineLayer), which passes the remaining
//! deadline on.
//!
//! Each module's docs say why and when, with an example: [`escalate`], [`deadline`],
//! [`offload`], [`client`] and, with the `lambda` feature, `lambda`. The figures are in
//! BENCHMARKS.md.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{body::Body, routing::post, Router};
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_serverless::{DeadlineLayer, EscalateLayer, MemoryStore, OffloadLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let offload = OffloadLayer::new(MemoryStore::new()).after(Duration::from_millis(20));
//! let app: Router = Router::new()
//!     .route("/report", post(|| async {
//!         tokio::time::sleep(Duration::from_millis(200)).await;
//!         "the report"
//!     }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(EscalateLayer::new().infallible())
//!             .layer(DeadlineLayer::api_gateway_rest())
//!             .layer(offload.clone()),
//!     )
//!     .merge(offload.status_router());
//!
//! let response = app.clone().oneshot(Request::post("/report").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), StatusCode::ACCEPTED);
//! let status_url = response.headers()["location"].to_str().unwrap().to_owned();
//!
//! offload.detached().wait_idle().await;
//! let status = app.oneshot(Request::get(status_url).body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(status.status(), StatusCode::SEE_OTHER);
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `IntoResponse` for [`Escalation`], [`OffloadLayer::status_router`] |
//! | `lambda` | no | [`lambda::run`]: `lambda_http` plus an internal extension that keeps detached work alive, for buffered or streamed responses; gateway and function deadlines; `From<EscalateError> for lambda_runtime::Diagnostic` |
//! | `redis` | no | [`RedisStore`](offload::RedisStore), a task store shared by processes and Lambda instances |
//! | `dynamodb` | no | [`DynamoDbStore`](offload::DynamoDbStore), a task store in a DynamoDB table, shared the same way with no server to run |
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `get_ref`, `get_mut` and `into_inner` for a middleware whose inner service is `inner`.
macro_rules! inner_service_accessors {
    () => {
        /// Gets a reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
pub(crate) use inner_service_accessors;

/// A layer setting that cannot hold, returned by the builder method that takes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting: {0}")]
pub struct ConfigError(pub(crate) &'static str);

mod capture;
mod number;
mod response;
mod unwind;
mod wake;

pub mod client;
pub mod deadline;
pub mod escalate;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod offload;

pub use deadline::{Deadline, DeadlineLayer};

pub use escalate::{EscalateError, EscalateLayer, Escalation};
pub use offload::{MemoryStore, OffloadLayer};

#[cfg(all(
    doctest,
    feature = "axum",
    feature = "lambda",
    feature = "redis",
    feature = "dynamodb"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
