use std::fmt;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use tower::BoxError;

use super::{EscalateError, Escalation};

/// How an escalation leaves an [`Escalate`](super::Escalate) service: [`Fail`] (the default)
/// or [`Respond`].
///
/// This trait is sealed; it only names the two modes in type signatures.
pub trait Output: sealed::Sealed + Clone {
    /// The response body type of the service.
    type Body<B>;
    /// The error type of the service.
    type Error;
}

/// Escalations become `Err(`[`EscalateError`]`)`: for `lambda_http::run` (a failed
/// invocation with the escalation's `errorType`) and hyper servers (a closed connection).
///
/// Responses that are not escalated keep their body type.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fail;

/// Escalations become a response with a designated status and a JSON body
/// `{"errorType": .., "errorMessage": ..}`, for hosts that need `Error = Infallible`
/// (`axum::serve`), typically behind the Lambda Web Adapter with
/// `AWS_LWA_ERROR_STATUS_CODES` naming that status.
///
/// For panics and the inner service's own errors, `errorMessage` is a generic text: the
/// internal detail goes to the `tracing` error event only.
#[derive(Clone, Copy, Debug)]
pub struct Respond {
    pub(crate) status: StatusCode,
}

impl Respond {
    /// The designated status unless another is chosen: `500 Internal Server Error`,
    /// matching `AWS_LWA_ERROR_STATUS_CODES=500`.
    pub const DEFAULT_STATUS: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;
}

/// Why a request escalated, as the service's future found it.
#[allow(unreachable_pub)] // named by the sealed trait, unreachable outside the crate
pub struct Failure {
    pub(crate) escalation: Escalation,
    pub(crate) source: Option<BoxError>,
    /// The message is internal text (a panic payload, an error's `Display`) that must not
    /// reach an HTTP client.
    pub(crate) internal: bool,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("escalation", &self.escalation)
            .field("internal", &self.internal)
            .finish()
    }
}

impl Output for Fail {
    type Body<B> = B;
    type Error = EscalateError;
}

impl Output for Respond {
    type Body<B> = Either<B, Full<Bytes>>;
    type Error = std::convert::Infallible;
}

pub(crate) mod sealed {
    use super::*;

    pub trait Sealed {
        fn pass<B>(
            response: Response<B>,
        ) -> Result<Response<<Self as Output>::Body<B>>, <Self as Output>::Error>
        where
            Self: Output;

        fn fail<B>(
            &self,
            failure: Failure,
        ) -> Result<Response<<Self as Output>::Body<B>>, <Self as Output>::Error>
        where
            Self: Output;
    }

    impl Sealed for Fail {
        fn pass<B>(response: Response<B>) -> Result<Response<B>, EscalateError> {
            Ok(response)
        }

        fn fail<B>(&self, failure: Failure) -> Result<Response<B>, EscalateError> {
            Err(EscalateError::new(failure.escalation, failure.source))
        }
    }

    impl Sealed for Respond {
        fn pass<B>(
            response: Response<B>,
        ) -> Result<Response<Either<B, Full<Bytes>>>, std::convert::Infallible> {
            Ok(response.map(Either::Left))
        }

        fn fail<B>(
            &self,
            failure: Failure,
        ) -> Result<Response<Either<B, Full<Bytes>>>, std::convert::Infallible> {
            let Failure {
                escalation,
                source,
                internal,
            } = failure;
            tracing::error!(
                target: "tower_serverless::escalate",
                error_type = escalation.error_type(),
                message = escalation.message(),
                source = source.as_ref().map(tracing::field::display),
                "request escalated"
            );
            let message = if internal {
                "the request failed; see the service logs"
            } else {
                escalation.message()
            };
            let body = serde_json::json!({
                "errorType": escalation.error_type(),
                "errorMessage": message,
            });
            let response = crate::response::json(self.status, body.to_string());
            Ok(response.map(Either::Right))
        }
    }
}
