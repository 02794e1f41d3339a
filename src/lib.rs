//! Tower layers for HTTP services behind a gateway with a hard time cap, and on AWS Lambda.
//!
//! They compose in this order, outermost first:
//!
//! | layer | what it does |
//! |---|---|
//! | [`EscalateLayer`] | chosen failures fail the invocation instead of becoming an HTTP 500 |
//! | [`DeadlineLayer`] | a time budget from every source that applies; `504` problem+json before the gateway cuts in |
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `IntoResponse` for [`Escalation`] |
//! | `lambda` | no | `From<EscalateError> for lambda_runtime::Diagnostic` |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod deadline;
pub mod escalate;

pub use deadline::{Deadline, DeadlineLayer};
pub use escalate::{EscalateError, EscalateLayer, Escalation};

#[cfg(all(doctest, feature = "axum", feature = "lambda"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
