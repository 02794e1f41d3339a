//! Tower layers for HTTP services behind a gateway with a hard time cap, and on AWS Lambda.
//!
//! | layer | what it does |
//! |---|---|
//! | [`EscalateLayer`] | chosen failures fail the invocation instead of becoming an HTTP 500 |
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `IntoResponse` for [`Escalation`] |
//! | `lambda` | no | `From<EscalateError> for lambda_runtime::Diagnostic` |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod escalate;

pub use escalate::{EscalateError, EscalateLayer, Escalation};

#[cfg(all(doctest, feature = "axum", feature = "lambda"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
