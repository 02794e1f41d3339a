//! Run on AWS Lambda (feature `lambda`): the gateway's and the function's deadlines, and
//! detached work that survives the freeze after the response.
//!
//! Lambda freezes the execution environment once the response is sent and every extension
//! has asked for its next event; a task detached by [`OffloadLayer`](crate::OffloadLayer) after its `202` would
//! stop mid-way. [`run`] is `lambda_http::run` plus an internal Lambda extension,
//! registered during init for `INVOKE` events: for each invocation it asks for the next
//! event only once the invocation's response or error is posted (success, escalation,
//! panic, or an event that is no HTTP request) and every detached task is done, so the work completes while the client already has its `202`.
//! No re-invocation is needed. The time after the response is billed.
//!
//! [`LambdaLayer`], which [`run`] applies outermost, sets on every request:
//!
//! - the [`Deadline`](crate::deadline::Deadline): the earliest of the API gateway's arrival time
//!   (`requestContext.requestTimeEpoch` for REST APIs, `timeEpoch` for HTTP APIs) plus its
//!   cap (29 s, 30 s) minus the margin, which counts cold start and queueing, and the
//!   function's own deadline minus the margin. A [`DeadlineLayer`](crate::DeadlineLayer)
//!   inside keeps the earlier of this and its own budget;
//! - the [`BackgroundDeadline`](crate::offload::BackgroundDeadline) of detached work: the function's deadline minus the margin.
//!   Work still running then is stored as failed (`lambda deadline`) and the extension
//!   releases the invocation before Lambda cuts it.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use tower::{Layer, ServiceBuilder};
//! use tower_serverless::{DeadlineLayer, EscalateLayer, MemoryStore, OffloadLayer};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_http::Error> {
//!     let offload = OffloadLayer::new(MemoryStore::new());
//!     let app = Router::new()
//!         .route("/reports", post(|| async { "the report" }))
//!         .layer(offload.clone())
//!         .merge(offload.status_router())
//!         .layer(DeadlineLayer::api_gateway_rest());
//!     let service = EscalateLayer::new().layer(app);
//!     tower_serverless::lambda::run(service, &offload).await
//! }
//! ```

mod layer;
mod runner;

pub use self::layer::{LambdaLayer, LambdaService};
pub use self::runner::{run, Runner};
