use std::borrow::Cow;
use std::fmt;

use http::Response;
use tower::BoxError;

/// Well-known `error_type` values that [`EscalateLayer`](super::EscalateLayer) produces itself.
///
/// They are stable: Step Functions `Retry`/`Catch` blocks and alarms may match on them.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_serverless::escalate::{error_type, EscalateLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let unavailable = service_fn(|_: Request<()>| async {
///     let mut response = Response::new(());
///     *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
///     Ok::<_, std::convert::Infallible>(response)
/// });
/// let service = EscalateLayer::new().status_spec("503")?.layer(unavailable);
/// let error = service.oneshot(Request::new(())).await.unwrap_err();
/// assert_eq!(error.error_type(), format!("{}503", error_type::HTTP_STATUS_PREFIX));
/// # Ok(())
/// # }
/// ```
pub mod error_type {
    /// The inner service panicked.
    pub const PANIC: &str = "Panic";
    /// The inner service returned its own `Err`.
    pub const SERVICE_ERROR: &str = "ServiceError";
    /// The request ran out of time (a `DeadlineExceeded` response under the timeout policy).
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Prefix of the type given to a response escalated by the status-code policy; the code
    /// follows, as in `HttpStatus503`.
    pub const HTTP_STATUS_PREFIX: &str = "HttpStatus";
    /// The response's body failed while the Lambda runner read it for a buffered response
    /// ([`lambda::run`](crate::lambda::run), feature `lambda`).
    pub const RESPONSE_BODY_FAILED: &str = "ResponseBodyFailed";
}

/// A failure that must fail the invocation instead of becoming an HTTP response.
///
/// `error_type` is the stable, machine-matchable name (it becomes Lambda's `errorType`, which
/// Step Functions matches on); `message` is for people reading logs and traces. A handler
/// signals an escalation by returning a response that carries this value in its extensions;
/// see [`Escalation::attach`] and, with the `axum` feature, its `IntoResponse` implementation.
/// See the [module docs](super) for an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    error_type: Cow<'static, str>,
    message: Cow<'static, str>,
}

impl Escalation {
    /// A new escalation with the given error type and message.
    pub fn new(
        error_type: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// The stable, machine-matchable name of the failure.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The human-readable description of the failure.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Marks `response` as escalating with this value, for any tower service.
    ///
    /// The response's own status and body are what a client sees where the response is
    /// not escalated (no `EscalateLayer`, or the marker policy turned off).
    pub fn attach<B>(self, mut response: Response<B>) -> Response<B> {
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// A plain `500 Internal Server Error` that carries the escalation; the message stays out of
/// the body.
#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Escalation {
    fn into_response(self) -> axum::response::Response {
        self.attach(
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
            )
                .into_response(),
        )
    }
}

/// The error of an [`Escalate`](super::Escalate) service in its default (failing) mode.
///
/// Returned to the host instead of a response: `lambda_http::run` reports it to the Lambda
/// Runtime API as a failed invocation (with the `lambda` feature, through
/// `From<EscalateError> for Diagnostic`), and a hyper server closes the connection without
/// answering. The message never reaches the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct EscalateError {
    error_type: Cow<'static, str>,
    message: Cow<'static, str>,
    #[source]
    source: Option<BoxError>,
}

impl EscalateError {
    pub(crate) fn new(escalation: Escalation, source: Option<BoxError>) -> Self {
        Self {
            error_type: escalation.error_type,
            message: escalation.message,
            source,
        }
    }

    /// The stable, machine-matchable name of the failure (Lambda's `errorType`).
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The human-readable description of the failure (Lambda's `errorMessage`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(feature = "lambda")]
impl From<EscalateError> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: EscalateError) -> Self {
        Self {
            error_type: error.error_type.into_owned(),
            error_message: error.message.into_owned(),
        }
    }
}
