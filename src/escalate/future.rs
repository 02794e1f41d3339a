//! Response future of [`Escalate`](super::Escalate).
//!
//! The type its `call` returns, for a service of your own that wraps one and names its
//! future:
//!
//! ```
//! use http::{Request, Response};
//! use tower::{service_fn, Layer, Service};
//! use tower_serverless::escalate::future::ResponseFuture;
//! use tower_serverless::EscalateLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut service = EscalateLayer::new().layer(service_fn(|_: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new("done"))
//! }));
//! let future: ResponseFuture<_, _, _> = service.call(Request::new(()));
//! assert_eq!(future.await.unwrap().status(), 200);
//! # }
//! ```

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::output::{Failure, Output};
use super::policy::{EscalatePredicate, Policy};
use super::{error_type, Escalation};

pin_project! {
    /// Response future of [`Escalate`](super::Escalate).
    pub struct ResponseFuture<F, O, P> {
        #[pin]
        state: State<F>,
        policy: Policy,
        output: O,
        predicate: P,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Failed { failure: Option<Box<Failure>> },
    }
}

impl<F, O, P> ResponseFuture<F, O, P> {
    pub(crate) fn running(future: F, policy: Policy, output: O, predicate: P) -> Self {
        Self {
            state: State::Running { future },
            policy,
            output,
            predicate,
        }
    }

    pub(crate) fn failed(failure: Failure, policy: Policy, output: O, predicate: P) -> Self {
        Self {
            state: State::Failed {
                failure: Some(Box::new(failure)),
            },
            policy,
            output,
            predicate,
        }
    }
}

impl<F, B, E, O, P> Future for ResponseFuture<F, O, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    O: Output,
    P: EscalatePredicate<B>,
{
    type Output = Result<Response<O::Body<B>>, O::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.state.project() {
            StateProj::Failed { failure } => {
                let failure = failure.take().expect("polled after completion");
                return Poll::Ready(this.output.fail(*failure));
            }
            StateProj::Running { future } if this.policy.panics => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(polled) => polled,
                    Err(payload) => return Poll::Ready(this.output.fail(panicked(payload))),
                }
            }
            StateProj::Running { future } => future.poll(cx),
        };
        let mut response = match ready!(polled) {
            Ok(response) => response,
            Err(error) => return Poll::Ready(this.output.fail(service_error(error.into()))),
        };
        Poll::Ready(match this.policy.check(this.predicate, &mut response) {
            None => O::pass(response),
            Some(escalation) => this.output.fail(Failure {
                escalation,
                source: None,
                internal: false,
            }),
        })
    }
}

pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> Failure {
    let message = match crate::unwind::text(&*payload) {
        Some(text) => format!("the handler panicked: {text}"),
        None => "the handler panicked".to_owned(),
    };
    Failure {
        escalation: Escalation::new(error_type::PANIC, message),
        source: None,
        internal: true,
    }
}

pub(crate) fn service_error(error: BoxError) -> Failure {
    Failure {
        escalation: Escalation::new(error_type::SERVICE_ERROR, error.to_string()),
        source: Some(error),
        internal: true,
    }
}
