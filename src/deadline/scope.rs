//! The current request's deadline: set on the thread while the request's futures are
//! polled, so that [`current`] reads it from anywhere inside them.
//!
//! A plain thread-local, set and restored around each `poll` (and around `call`), is what
//! tokio's `task_local!` does too, without the copy of the value its future keeps beside
//! the one the deadline future already holds.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::Deadline;

thread_local! {
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// The deadline of the request whose task this is, if a
/// [`DeadlineLayer`](super::DeadlineLayer) (or [`Deadline::scope`]) set one.
#[inline]
pub fn current() -> Option<Deadline> {
    CURRENT.try_with(Cell::get).ok().flatten()
}

/// `deadline` is current until the guard drops (on unwind too); then the one before is.
pub(crate) struct Entered(Option<Deadline>);

#[inline]
pub(crate) fn enter(deadline: Deadline) -> Entered {
    Entered(CURRENT.with(|current| current.replace(Some(deadline))))
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|current| current.set(self.0));
    }
}

pin_project! {
    /// A future with a deadline that is [`current`] while it is polled.
    pub(crate) struct Scoped<F> {
        deadline: Deadline,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = enter(*this.deadline);
        this.future.poll(cx)
    }
}

impl Deadline {
    /// Runs `future` with this deadline as [`current`].
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        self.scoped(future).await
    }

    pub(crate) fn scoped<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            deadline: self,
            future,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::deadline::DeadlineSource;

    #[tokio::test(start_paused = true)]
    async fn current_inside_scope_only() {
        let deadline = Deadline::after(Duration::from_secs(1), DeadlineSource::Custom("test"));
        assert_eq!(current(), None);
        assert_eq!(deadline.scope(async { current() }).await, Some(deadline));
        assert_eq!(current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_scope_ends_with_its_poll_and_a_panic_restores_the_outer_one() {
        let outer = Deadline::after(Duration::from_secs(2), DeadlineSource::Budget);
        let inner = Deadline::after(Duration::from_secs(1), DeadlineSource::Header);
        let seen = outer
            .scope(async move {
                let during = inner.scope(async { current() }).await;
                let panicked = std::panic::catch_unwind(|| {
                    let _entered = enter(inner);
                    panic!("on purpose")
                });
                assert!(panicked.is_err());
                (during, current())
            })
            .await;
        assert_eq!(seen, (Some(inner), Some(outer)));
    }
}
