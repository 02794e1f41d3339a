//! Why a task failed: the texts a client reads in a failed task's status, one table for
//! every layer and store.
//!
//! They say what happened in words safe to show anyone; the detail (the panic message, the
//! error, the escalation's message) goes to a `tracing` event, never to the client. Stores
//! that keep state outside the process (Redis scripts) receive these texts as arguments
//! rather than writing their own.
//!
//! # Example
//!
//! ```
//! use tower_serverless::offload::reason;
//! use tower_serverless::offload::store::TaskOutcome;
//!
//! let outcome = TaskOutcome::failed(reason::PANICKED);
//! assert!(matches!(outcome, TaskOutcome::Failed { reason, .. } if reason == "the handler panicked"));
//! assert_eq!(reason::too_large(1000), "the result exceeded 1000 bytes");
//! ```

/// The handler panicked.
pub const PANICKED: &str = "the handler panicked";
/// The handler returned its own `Err`.
pub const FAILED: &str = "the handler failed";
/// The response body failed while it was read.
pub const BODY_FAILED: &str = "the response body failed";
/// The response body panicked while it was read.
pub const BODY_PANICKED: &str = "the response body panicked";
/// The response escalated (an [`Escalation`](crate::Escalation) marker, or a status the
/// escalate policy names); the status carries its `error_type`.
pub const ESCALATED: &str = "the work escalated";
/// The background budget ran out before the work finished.
pub const BACKGROUND_DEADLINE: &str = "background deadline";
/// The Lambda function's deadline came before the work finished.
pub const LAMBDA_DEADLINE: &str = "lambda deadline";
/// The pending task's lease ran out: its worker died or lost the store.
pub const WORKER_LOST: &str = "worker lost";
/// The client cancelled the task.
pub const CANCELLED: &str = "cancelled by the client";
/// The result fit the layer's limit but not the store's room.
pub const NO_ROOM: &str = "the result did not fit in the task store";
/// A request with an `Idempotency-Key` was answered in the foreground, but its response was
/// larger than [`max_result_bytes`](super::OffloadLayer::max_result_bytes) and was not kept:
/// a retry gets `410 Gone`.
pub const NOT_KEPT: &str = "the response was too large to keep for retries";
/// The result, encoded as `lambda_http` encodes a body (base64 unless it is text), was
/// larger than a buffered Lambda response carries (6 MB, 1 MB through an ALB): stored, it
/// could never be fetched ([`LambdaLayer::streaming`](crate::lambda::LambdaLayer::streaming)).
pub const TOO_LARGE_FOR_LAMBDA: &str =
    "the result is larger than a buffered Lambda response can carry";
/// The process shut down before the work finished
/// ([`DetachedTasks::shutdown`](super::DetachedTasks::shutdown)).
pub const SHUT_DOWN: &str = "the server shut down";

/// The result was larger than `max` bytes.
pub fn too_large(max: usize) -> String {
    format!("the result exceeded {max} bytes")
}
