//! The errors of the client layers.

use std::time::Duration;

use http::{StatusCode, Uri};

/// The call's deadline had passed, or passed while it ran: nothing was sent with a spent
/// budget, and a call under way was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the call's deadline passed")]
pub struct DeadlinePassed(pub(crate) ());

/// Why [`Follow`](super::Follow) could not bring back a task's result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// A redirect or a status document that says `succeeded` and points at the result named
    /// no location; or it, or the `202`, named one that is no URI.
    #[error("the {status} answer from {url} has no usable Location")]
    NoLocation {
        /// The status of the answer.
        status: StatusCode,
        /// The URL that gave the answer: the task's status URL, to come back to, when a
        /// poll got it; the URL the call was made to when the `202` did.
        url: Uri,
    },
    /// A `Location` (or a status document's `resourceLocation`) names another host, and
    /// following other hosts was not allowed.
    #[error("the task lives on another host ({location}); not followed")]
    OtherHost {
        /// Where it pointed.
        location: Uri,
    },
    /// The task failed; `reason` is what the server says, `error_type` the escalation's
    /// type when there was one (or, from a status document with an `error` object, as
    /// Azure's are, its `message` and `code`).
    #[error("the task failed: {reason}")]
    Failed {
        /// The status URL of the task.
        location: Uri,
        /// The server's reason.
        reason: String,
        /// The escalation's `error_type` (or the error object's `code`), if any.
        error_type: Option<String>,
    },
    /// The task was cancelled.
    #[error("the task was cancelled")]
    Cancelled {
        /// The status URL of the task.
        location: Uri,
    },
    /// The status URL answered something that is no task status.
    #[error("the status URL {location} answered {status}")]
    Unexpected {
        /// The status URL of the task.
        location: Uri,
        /// What it answered.
        status: StatusCode,
    },
    /// Three polls in a row failed before an answer came (the connection was refused or
    /// closed, or the answer's body failed): the task may still run, at `location`.
    #[error("the status URL {location} could not be reached")]
    Unreachable {
        /// The status URL of the task, to come back to.
        location: Uri,
        /// The last poll's error, from the inner service.
        #[source]
        source: tower::BoxError,
    },
    /// The deadline (the caller's, or the layer's longest wait) came before the result, or
    /// the next poll would have come after it (the server asked for a longer wait): then
    /// the call ends at once.
    #[error("gave up after {waited:?}: the result did not come within the time allowed; the task is at {location}")]
    TimedOut {
        /// The status URL of the task, to come back to.
        location: Uri,
        /// How long it was followed: next to nothing when the first wait the server asked
        /// for already reached past the limit.
        waited: Duration,
    },
}
