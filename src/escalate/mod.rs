//! Make chosen failures fail the invocation instead of becoming an HTTP 500.
//!
//! Web frameworks turn every error into a response. On AWS Lambda that hides failures from
//! everything that acts on a *failed invocation*: retries of asynchronous events, dead-letter
//! queues, Step Functions `Retry`/`Catch` on `errorType`, error metrics and alarms.
//! [`EscalateLayer`] picks the outcomes that must fail the invocation:
//!
//! - a response carrying an [`Escalation`] in its extensions (on by default): a handler's
//!   error type builds one with [`Escalation::attach`], or, with the `axum` feature, returns
//!   the `Escalation` itself as its `IntoResponse` part;
//! - a status code or range, written like `AWS_LWA_ERROR_STATUS_CODES`
//!   ([`EscalateLayer::status_spec`]);
//! - a predicate over the response ([`EscalateLayer::predicate`]);
//! - the inner service's own `Err`, and panics (caught by default).
//!
//! Everything else passes through untouched: same body, no buffering, no allocation.
//!
//! # Output modes
//!
//! | host | mode | what an escalation becomes |
//! |---|---|---|
//! | `lambda_http::run`, or a hyper server | [`Fail`] (default) | `Err(EscalateError)`: a failed invocation with `errorType`/`errorMessage` (feature `lambda`: `From<EscalateError> for Diagnostic`), or, under hyper, a closed connection (HTTP/2: the request's stream reset with `INTERNAL_ERROR`, the connection kept), which the Lambda Web Adapter reports as a failed invocation |
//! | `axum::serve`, any host that needs `Error = Infallible` | [`Respond`] via [`EscalateLayer::infallible`] | a response with a designated status (default `500`) and a JSON body `{"errorType", "errorMessage"}`; run the Lambda Web Adapter with `AWS_LWA_ERROR_STATUS_CODES=500` (or the status you chose) |
//!
//! In [`Fail`] mode the escalation's message never reaches the HTTP client. In [`Respond`]
//! mode the body carries the message of a handler's own [`Escalation`]; for panics and inner
//! errors it carries a generic text and the detail goes to a `tracing` error event.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_serverless::escalate::{EscalateLayer, Escalation};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(EscalateLayer::new().status_spec("502-504")?)
//!     .service(service_fn(|request: Request<String>| async move {
//!         let response = Response::new(String::new());
//!         Ok::<_, std::convert::Infallible>(match request.uri().path() {
//!             "/charge" => Escalation::new("PaymentDeclined", "card 42 declined").attach(response),
//!             _ => response,
//!         })
//!     }));
//!
//! let error = service.clone().oneshot(Request::get("/charge").body(String::new())?).await
//!     .unwrap_err();
//! assert_eq!(error.error_type(), "PaymentDeclined");
//!
//! let response = service.oneshot(Request::get("/").body(String::new())?).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```

mod escalation;
pub mod future;
mod layer;
mod output;
mod policy;
mod service;
mod status;

pub use self::escalation::{error_type, EscalateError, Escalation};
pub use self::layer::EscalateLayer;
pub use self::output::{Fail, Output, Respond};
pub(crate) use self::policy::Policy;
pub use self::policy::{DefaultPredicate, EscalatePredicate};
pub use self::service::Escalate;
pub use self::status::{StatusCodes, StatusSpecError};
