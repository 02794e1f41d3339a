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
//! [`Runner::run_with_streaming_response`] does the same for a function whose responses
//! stream (`lambda_http::run_with_streaming_response`): an invocation is finished once its
//! whole body is posted.
//!
//! A buffered response is one JSON document of at most 6 MB (1 MB through an ALB), where a
//! body that is not text takes a third more in base64, and a larger one fails (`502`
//! behind API Gateway or the ALB). Under [`run`], a detached result, or a keyed request's copy,
//! that would not fit is stored as failed
//! ([`reason::TOO_LARGE_FOR_LAMBDA`](crate::offload::reason::TOO_LARGE_FOR_LAMBDA)), so
//! that the client reads why from the task rather than from a fetch that fails every time;
//! streamed responses carry it.
//!
//! [`LambdaLayer`], which [`run`] applies outermost, sets on every request:
//!
//! - the [`Deadline`](crate::deadline::Deadline): the earliest of the front door's arrival
//!   time plus its cap and the function's own deadline, each minus the margin, so cold start
//!   and queueing count. The front door is told from the event ([`FrontDoors`]): REST APIs
//!   (`requestTimeEpoch`, 29 s or your raised integration timeout), HTTP APIs (`timeEpoch`,
//!   or with payload format 1.0 `requestTimeEpoch` and a route key as `resourceId`;
//!   30 s), function URLs (payload 2.0 from `*.lambda-url.*`) and ALB (no cap but the
//!   function's); CloudFront in front of any of them (its `X-Amz-Cf-Id` header) adds its
//!   origin response timeout, 30 s unless raised. A function deadline that is no
//!   plausible epoch (`cargo lambda watch` sends a constant) is taken as none, with one
//!   warning. Put [`DeadlineLayer::inherit`](crate::DeadlineLayer::inherit) inside to
//!   answer `504` at that deadline;
//! - the [`BackgroundDeadline`](crate::offload::BackgroundDeadline) of detached work: the
//!   function's deadline minus the margin. Work still running then is stored as failed
//!   (`lambda deadline`) and the extension releases the invocation before Lambda cuts it.
//!   Not on Managed Instances (below), where the offload layer's own background budget
//!   bounds the work;
//! - the path without an API Gateway stage (`/prod/hello` becomes `/hello`, whether or not
//!   `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set) or a custom domain's base path
//!   (`/v1/hello` through a mapping of `/v1` to the stage; known from a REST resource or an
//!   HTTP API route key other than `$default`; else named with
//!   [`Runner::remove_base_path`]), and the part of the client's
//!   path in front of it as a [`PublicPrefix`](crate::offload::PublicPrefix), so that a
//!   `202`'s `Location` is `/prod/tasks/<id>` (or `/v1/tasks/<id>`), the path the client
//!   must call.
//!
//! Each invocation is held only for the work it detached. On Lambda Managed Instances
//! (`AWS_LAMBDA_MAX_CONCURRENCY` above 1) the runtime serves that many invocations at once
//! and nothing is held: those environments never freeze, and Lambda answers an invocation
//! that passes its deadline with a timeout error without stopping the code, so detached
//! work runs on past the deadline of the invocation that started it, to its end or to
//! [`OffloadLayer::background_deadline`](crate::OffloadLayer::background_deadline). When
//! Lambda shuts such an environment down, it sends `SIGTERM` (the runner registers an
//! extension that subscribes to no event for that) and allows 500 ms at most (the limit it
//! documents for standard environments): the work still running 100 ms later is stopped
//! and stored as failed ([`reason::SHUT_DOWN`](crate::offload::reason::SHUT_DOWN)), so
//! that its client reads that from the task at once rather than `worker lost` once the
//! lease lapses, and the runner returns `Ok(())`.
//!
//! While an environment is held, Lambda sends every other invocation, the client's polls
//! included, to other environments: the offload store must be shared (DynamoDB, Redis), and the
//! runner warns at init when it is local to the process.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use tower::{Layer, ServiceBuilder};
//! use tower_serverless::deadline::FrontDoors;
//! use tower_serverless::lambda::Runner;
//! use tower_serverless::offload::RedisStore;
//! use tower_serverless::{DeadlineLayer, EscalateLayer, OffloadLayer};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_http::Error> {
//!     let offload = OffloadLayer::new(RedisStore::connect("redis://cache:6379").await?);
//!     let app = Router::new()
//!         .route("/reports", post(|| async { "the report" }))
//!         .layer(offload.clone())
//!         .merge(offload.status_router())
//!         .layer(DeadlineLayer::inherit());
//!     let service = EscalateLayer::new().layer(app);
//!     // A REST API whose integration timeout was raised to 120 s.
//!     let doors = FrontDoors::new().rest_cap(std::time::Duration::from_secs(120))?;
//!     Runner::new().front_doors(doors).offload(&offload).run(service).await
//! }
//! ```

mod body;
mod layer;
pub(crate) mod payload;
mod runner;

/// Whether this environment runs several invocations at once and never freezes (Lambda
/// Managed Instances: `AWS_LAMBDA_MAX_CONCURRENCY` above 1).
fn never_freezes() -> bool {
    std::env::var("AWS_LAMBDA_MAX_CONCURRENCY")
        .ok()
        .and_then(|value| value.trim().parse::<u32>().ok())
        .is_some_and(|max| max > 1)
}

pub use self::layer::{LambdaLayer, LambdaService};
pub use self::runner::{run, Runner};
pub use crate::deadline::{FrontDoor, FrontDoors};
