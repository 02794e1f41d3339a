use http::Response;

use super::{error_type, Escalation, StatusCodes};
use crate::deadline::DeadlineExceeded;

/// Which outcomes escalate; copied into every response future, so it stays small.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) marker: bool,
    pub(crate) panics: bool,
    pub(crate) timeouts: bool,
    pub(crate) status: StatusCodes,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            marker: true,
            panics: true,
            timeouts: false,
            status: StatusCodes::new(),
        }
    }
}

impl Policy {
    /// The escalation `response` triggers by its marker or status, if any, leaving the
    /// response as it is (for a layer inside the escalate layer, which acts on it later).
    pub(crate) fn peek<B>(&self, response: &Response<B>) -> Option<Escalation> {
        if self.marker {
            if let Some(escalation) = response.extensions().get::<Escalation>() {
                return Some(escalation.clone());
            }
        }
        self.by_status(response)
    }

    #[inline]
    fn by_status<B>(&self, response: &Response<B>) -> Option<Escalation> {
        let status = response.status();
        if !self.status.is_empty() && self.status.contains(status) {
            return Some(Escalation::new(
                format!("{}{}", error_type::HTTP_STATUS_PREFIX, status.as_u16()),
                format!("the response status was {status}"),
            ));
        }
        None
    }

    /// The escalation `response` triggers, if any; the marker is taken out of the response.
    #[inline]
    pub(crate) fn check<B, P: EscalatePredicate<B>>(
        &self,
        predicate: &P,
        response: &mut Response<B>,
    ) -> Option<Escalation> {
        // Most responses carry no extension and the set of codes is empty: only the
        // predicate can escalate them, and the rest is not worth a call.
        if response.extensions().is_empty() && self.status.is_empty() {
            return predicate.escalate(response);
        }
        self.check_all(predicate, response)
    }

    fn check_all<B, P: EscalatePredicate<B>>(
        &self,
        predicate: &P,
        response: &mut Response<B>,
    ) -> Option<Escalation> {
        if self.marker {
            if let Some(escalation) = response.extensions_mut().remove::<Escalation>() {
                return Some(escalation);
            }
        }
        if self.timeouts && response.extensions().get::<DeadlineExceeded>().is_some() {
            return Some(Escalation::new(
                error_type::DEADLINE_EXCEEDED,
                "the request ran out of time",
            ));
        }
        self.by_status(response)
            .or_else(|| predicate.escalate(response))
    }
}

/// Decides from a response whether it escalates; implemented for closures
/// `Fn(&Response<B>) -> Option<Escalation>`.
///
/// See [`EscalateLayer::predicate`](super::EscalateLayer::predicate).
pub trait EscalatePredicate<B>: Clone {
    /// The escalation this response triggers, or `None` to let it pass.
    fn escalate(&self, response: &Response<B>) -> Option<Escalation>;
}

/// The predicate of a layer that has none: nothing escalates through it.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPredicate;

impl<B> EscalatePredicate<B> for DefaultPredicate {
    #[inline]
    fn escalate(&self, _: &Response<B>) -> Option<Escalation> {
        None
    }
}

impl<B, F> EscalatePredicate<B> for F
where
    F: Fn(&Response<B>) -> Option<Escalation> + Clone,
{
    fn escalate(&self, response: &Response<B>) -> Option<Escalation> {
        self(response)
    }
}
