use std::fmt;

use http::StatusCode;
use tower::Layer;

use super::output::{Fail, Respond};
use super::policy::{DefaultPredicate, Policy};
use super::{Escalate, StatusCodes, StatusSpecError};

/// Turns chosen outcomes of the inner service into a failed invocation.
///
/// See the [module docs](super) for the policy, the output modes and an example.
#[derive(Clone)]
#[must_use]
pub struct EscalateLayer<O = Fail, P = DefaultPredicate> {
    pub(crate) policy: Policy,
    pub(crate) output: O,
    pub(crate) predicate: P,
}

impl EscalateLayer {
    /// A layer in [`Fail`] mode that escalates marked responses and panics.
    pub fn new() -> Self {
        Self {
            policy: Policy::default(),
            output: Fail,
            predicate: DefaultPredicate,
        }
    }
}

impl Default for EscalateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<O, P> EscalateLayer<O, P> {
    /// Whether a response carrying an [`Escalation`](super::Escalation) in its extensions
    /// escalates (default: yes).
    pub fn marker(mut self, enabled: bool) -> Self {
        self.policy.marker = enabled;
        self
    }

    /// Whether a panic of the inner service is caught and escalates with error type
    /// [`Panic`](super::error_type::PANIC) (default: yes). When off, the panic unwinds
    /// into the host.
    pub fn catch_panic(mut self, enabled: bool) -> Self {
        self.policy.panics = enabled;
        self
    }

    /// Whether a response a [`DeadlineLayer`](crate::deadline::DeadlineLayer) answered
    /// because the deadline passed escalates, with error type
    /// [`DeadlineExceeded`](super::error_type::DEADLINE_EXCEEDED) (default: no). Turn it on
    /// for event sources that should retry a request that ran out of time.
    pub fn timeouts(mut self, enabled: bool) -> Self {
        self.policy.timeouts = enabled;
        self
    }

    /// Responses with one of these statuses escalate, with error type `HttpStatus<code>`.
    pub fn status_codes(mut self, codes: StatusCodes) -> Self {
        self.policy.status = codes;
        self
    }

    /// Like [`status_codes`](Self::status_codes), from a specification such as
    /// `"500,502-504"` (the form of `AWS_LWA_ERROR_STATUS_CODES`).
    ///
    /// # Errors
    ///
    /// When the specification does not parse; nothing is skipped silently.
    pub fn status_spec(self, spec: &str) -> Result<Self, StatusSpecError> {
        Ok(self.status_codes(spec.parse()?))
    }

    /// Responses for which `predicate` returns an escalation escalate with it.
    ///
    /// `predicate` is a closure `Fn(&Response<B>) -> Option<Escalation>` or any
    /// [`EscalatePredicate`](super::EscalatePredicate).
    pub fn predicate<Q>(self, predicate: Q) -> EscalateLayer<O, Q> {
        EscalateLayer {
            policy: self.policy,
            output: self.output,
            predicate,
        }
    }

    /// Switches to [`Respond`] mode (`Error = Infallible`), with the designated status
    /// [`Respond::DEFAULT_STATUS`].
    pub fn infallible(self) -> EscalateLayer<Respond, P> {
        EscalateLayer {
            policy: self.policy,
            output: Respond {
                status: Respond::DEFAULT_STATUS,
            },
            predicate: self.predicate,
        }
    }
}

impl<P> EscalateLayer<Respond, P> {
    /// The status of the response an escalation becomes in [`Respond`] mode; name it in
    /// `AWS_LWA_ERROR_STATUS_CODES` behind the Lambda Web Adapter.
    pub fn escalation_status(mut self, status: StatusCode) -> Self {
        self.output.status = status;
        self
    }
}

impl<S, O: Clone, P: Clone> Layer<S> for EscalateLayer<O, P> {
    type Service = Escalate<S, O, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Escalate::new(inner, self.clone())
    }
}

impl<O: fmt::Debug, P> fmt::Debug for EscalateLayer<O, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EscalateLayer")
            .field("policy", &self.policy)
            .field("output", &self.output)
            .field("predicate", &std::any::type_name::<P>())
            .finish()
    }
}
