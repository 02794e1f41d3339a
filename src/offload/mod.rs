//! Answer `202 Accepted` for slow requests, finish the work in the background, let the client
//! poll (the asynchronous request-reply pattern).
//!
//! A request that needs longer than the gateway's cap cannot finish in the foreground: the
//! client gets a `504` and the result is lost. [`OffloadLayer`] races the inner service's
//! future against a threshold ([`after`](OffloadLayer::after), 2 s by default, capped by the
//! current [`Deadline`](crate::deadline::Deadline) minus a margin so that the `202` leaves
//! before the cap):
//!
//! - fast: the response passes through untouched (one allocation: the boxed inner future);
//! - slow: a pending task is stored **before** answering, the inner future goes on in a
//!   detached task, and the answer is `202 Accepted` with `Location: <prefix>/<id>`,
//!   `Retry-After` and `{"id", "status": "pending", "status_url"}`. When the task cannot be
//!   stored (store full or down) there is no `202`: the request goes on in the foreground.
//!   The detached task runs in the `tracing` span that was current when it was detached:
//!   the request's, when a layer outside (tower-http's `TraceLayer`, `lambda_runtime`'s)
//!   polls the request in a span of its own, so what the work logs after the `202` keeps
//!   the request's context. The span then closes when the work ends: a trace's span for
//!   the request lasts as long as its work.
//!
//! The detached work's response (status, headers, body up to
//! [`max_result_bytes`](OffloadLayer::max_result_bytes)) is stored as succeeded; a panic, an
//! `Err`, an oversized body or the background deadline is stored as failed, with a reason
//! for clients (the detail goes to the log). The [status endpoint](TaskStatusService) serves
//! polls, replays results and cancels. `<prefix>/<id>/result` replays the stored response
//! whole, `Set-Cookie` included: the id (at least 112 random bits) is the capability of the
//! client it was given to (bind tasks to their [`owner`](OffloadLayer::owner) when ids may
//! travel further). A keyed retry's replay, whose key the client chose, leaves `Set-Cookie`
//! out. The endpoint's own answers are `Cache-Control: no-store` (a cache in front must not
//! keep a poll's `pending`), and a replayed result is `private` unless the handler set its
//! own `Cache-Control` (no shared cache hands it to whoever asks for the URL).
//!
//! A browser script on another origin reads only the CORS-safelisted headers of a
//! response: the `202`'s body carries the status URL (`status_url`) for it, or expose
//! `Location` and `Retry-After` with tower-http's `CorsLayer::expose_headers`. `fetch`
//! follows the status URL's `303` to the result.
//!
//! Requests choose with `Prefer` (RFC 7240): `respond-async` gets the `202` at once,
//! `wait=N` sets the threshold to N seconds (capped by [`max_wait`](OffloadLayer::max_wait)),
//! both together mean "asynchronously if it takes longer than N seconds";
//! `Preference-Applied` says which applied. By default `POST`, `PUT`, `PATCH` and `DELETE`
//! may be offloaded.
//!
//! # `Idempotency-Key`
//!
//! A request with an `Idempotency-Key` header (draft-ietf-httpapi-idempotency-key-header)
//! runs its work once, whatever the client retries and whatever happens to the connection:
//!
//! - **The key**: 1 to 255 visible ASCII characters, plain (without `"`) or as a
//!   structured-field string (`"..."`, RFC 8941, whose `\"` and `\\` escapes are read:
//!   `"a\\b"` is the key `a\b`); anything else, such as an unclosed quote, is `400`
//!   problem+json.
//! - **Scope**: the owner ([`OffloadLayer::owner`]), the method and the path. The same key on
//!   another endpoint, or from another owner, is another request.
//! - **Fingerprint**: FNV-1a (64 bits) over the method, the path and query, and the first
//!   64 KiB of the body (read ahead and given back to the handler in the
//!   [`RequestBody`]). The same key with another fingerprint is `422` problem+json, and
//!   nothing runs. A frame's bytes are read through `Buf::chunks_vectored`, which shows
//!   every chunk of `Bytes`, `Chain` and `VecDeque<u8>` buffers; a buffer type of your own
//!   that keeps `Buf`'s default implementation shows its first chunk only, and only that
//!   chunk of each frame is fingerprinted.
//! - **The record is stored before the work starts**, and the work then runs to an outcome
//!   even when the request that started it is gone (the client left, a proxy or a
//!   [`DeadlineLayer`](crate::DeadlineLayer) answered first). A store that cannot keep the
//!   record (full, unavailable, no place among [`max_detached`](OffloadLayer::max_detached))
//!   answers `503` problem+json with `Retry-After`: the work never runs unprotected.
//! - **Answered in the foreground**, the response streams to the client as it would without
//!   a key; a copy of up to [`max_result_bytes`](OffloadLayer::max_result_bytes) is kept for
//!   the retries.
//! - **A retry** while the first request may still answer in the foreground is `409`
//!   problem+json with `Retry-After`; once finished, it gets the stored response replayed
//!   (status, headers without `Set-Cookie`, body); a response that was too large to keep is
//!   `410` problem+json; a task still running, failed or cancelled is a `202` whose body
//!   states its real state.
//! - **Expiry**: the key lives as long as its task: while pending, then the
//!   [`ttl`](OffloadLayer::ttl) (15 min by default) from its end. After that the key is
//!   new again.
//!
//! Tasks live in a [`TaskStore`]: [`MemoryStore`] (bounded, for one process) by default.
//! On several processes or Lambda instances, polls land anywhere: use a shared store.
//!
//! # Bounds
//!
//! Detached work is bounded, so that no client can make a process work or hold memory
//! without end:
//!
//! | bound | default | past it |
//! |---|---|---|
//! | [`background_deadline`](OffloadLayer::background_deadline) | [`DEFAULT_BACKGROUND_BUDGET`] (15 min; on Lambda also the function's deadline) | the work, or its still-streaming body, stops; failed: [`reason::BACKGROUND_DEADLINE`] |
//! | [`max_detached`](OffloadLayer::max_detached) running tasks | [`DEFAULT_MAX_DETACHED`] (1,000) | answered in the foreground, `Prefer: respond-async` too |
//! | [`max_result_bytes`](OffloadLayer::max_result_bytes) | 6 MiB | failed: [`reason::too_large`] |
//! | a buffered Lambda response (the runner's [`run`](crate::lambda::run); feature `lambda`) | 6 MB of JSON (1 MB through an ALB), a body that is not text in base64 | failed: [`reason::TOO_LARGE_FOR_LAMBDA`] |
//! | [`MemoryStore`] tasks and bytes | 10,000 and 256 MiB | finished results stay until their [`ttl`](OffloadLayer::ttl) (15 min): the new task is refused (foreground) or the result fails ([`reason::NO_ROOM`]) |
//! | [`store_retry`](OffloadLayer::store_retry) of a completion | 30 s | the outcome is lost (logged); the task reads `worker lost` once its lease lapses |
//! | [`DetachedTasks::shutdown`] | the grace you give | what still runs is failed: [`reason::SHUT_DOWN`] |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::post, Router};
//! use tower_serverless::offload::{MemoryStore, OffloadLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let offload = OffloadLayer::new(MemoryStore::new())
//!     .after(Duration::from_millis(500))
//!     .status_prefix("/tasks")?;
//! let app: Router = Router::new()
//!     .route("/reports", post(|| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         "the report"
//!     }))
//!     .layer(offload.clone())
//!     .merge(offload.status_router());
//!
//! // On shutdown, let the detached work finish.
//! offload.detached().wait_idle().await;
//! # Ok(())
//! # }
//! ```

/// A request extension that bounds the work detached from this request: the detached work
/// gets the earlier of it and [`OffloadLayer::background_deadline`].
///
/// The Lambda runner (feature `lambda`) sets it to the function's deadline minus the
/// margin, so that work still running then is stored as failed (`lambda deadline`) before
/// the environment can be cut; on Lambda Managed Instances, which neither freeze nor cut
/// an environment at an invocation's deadline, it sets none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackgroundDeadline(pub crate::deadline::Deadline);

mod body;
mod config;
mod detached;
pub mod future;
mod id;
mod idempotency;
mod layer;
mod location;
mod prefer;
pub mod reason;
mod service;
mod status;
pub mod store;
mod task;
mod work;

pub use self::body::{RequestBody, ResponseBody};
pub use self::config::{DEFAULT_BACKGROUND_BUDGET, DEFAULT_MAX_DETACHED};
pub use self::detached::DetachedTasks;
#[cfg(feature = "lambda")]
pub(crate) use self::detached::Invocation;
pub(crate) use self::id::IdMap;
pub use self::id::{InvalidTaskId, NoRandomness, TaskId};
pub use self::layer::OffloadLayer;
pub use self::location::PublicPrefix;
pub use self::service::Offload;
pub use self::status::TaskStatusService;
#[cfg(feature = "dynamodb")]
pub use self::store::DynamoDbStore;
#[cfg(feature = "redis")]
pub use self::store::RedisStore;
pub use self::store::{MemoryStore, TaskState, TaskStore};
pub use crate::ConfigError;
