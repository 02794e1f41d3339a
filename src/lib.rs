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
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `IntoResponse` for [`Escalation`], [`OffloadLayer::status_router`] |
//! | `lambda` | no | [`lambda::run`]: `lambda_http` plus an internal extension that keeps detached work alive; gateway and function deadlines; `From<EscalateError> for lambda_runtime::Diagnostic` |
//! | `redis` | no | [`RedisStore`](offload::RedisStore), a task store shared by processes and Lambda instances |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod deadline;
pub mod escalate;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod offload;

pub use deadline::{Deadline, DeadlineLayer};
pub use escalate::{EscalateError, EscalateLayer, Escalation};
pub use offload::{MemoryStore, OffloadLayer};

#[cfg(all(doctest, feature = "axum", feature = "lambda"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
