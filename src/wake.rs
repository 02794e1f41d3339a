//! One timer for the whole stack.
//!
//! A request through `DeadlineLayer` and `OffloadLayer` has two instants to be woken at: the
//! offload threshold and the deadline. Registering a timer in tokio's wheel (and taking it
//! out again) is most of what either layer costs once a handler awaits, so the layers share
//! one: a future that has a timer armed and will be woken by it says so while it is polled
//! ([`promise`]), and a deadline future around it that is not due before that instant
//! registers no timer of its own ([`Watch`]). When the inner timer fires, the task is
//! polled again, and the deadline future either sees a new promise or arms its own timer
//! then.
//!
//! The promise is a thread-local set during one `poll` call: futures polled inside that
//! call run on this thread and are woken through the same task, so an instant promised
//! there wakes the outer future too. It holds as long as the promising future lives until
//! the next poll, which it does for the layers between them (a tower middleware polls its
//! inner future and passes its `Pending` on). A handler that polled an offloading service
//! of its own and dropped it within the same poll would break it; the deadline is then
//! kept only when the task is next woken.

use std::cell::Cell;

use tokio::time::Instant;

thread_local! {
    static WAKE_BY: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Says that the task being polled will be woken at `at` at the latest, by a timer of the
/// caller's that is armed now.
#[inline]
pub(crate) fn promise(at: Instant) {
    WAKE_BY.with(|wake_by| {
        if wake_by.get().is_none_or(|earlier| at < earlier) {
            wake_by.set(Some(at));
        }
    });
}

/// Collects the promises made while the caller polls its inner future: start before the
/// poll, [`finish`](Watch::finish) after it. The promises of an outer poll are kept around
/// it: an inner one adds to them. A guard rather than a function taking the poll, so that
/// the poll's output (a whole response) is not moved through it.
pub(crate) struct Watch {
    outer: Option<Instant>,
}

impl Watch {
    #[inline]
    pub(crate) fn start() -> Self {
        Self {
            outer: WAKE_BY.with(Cell::take),
        }
    }

    /// The earliest instant promised since [`start`](Self::start), if any.
    #[inline]
    pub(crate) fn finish(self) -> Option<Instant> {
        let outer = self.outer;
        // Finished: what `Drop` restores after an unwind is not to be restored.
        std::mem::forget(self);
        WAKE_BY.with(|wake_by| {
            let inner = wake_by.get();
            wake_by.set(match (outer, inner) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            inner
        })
    }
}

impl Drop for Watch {
    /// Only reached when the poll unwound (`finish` forgets the guard): its promises do not
    /// hold, and the outer ones are put back.
    fn drop(&mut self) {
        let _ = WAKE_BY.try_with(|wake_by| wake_by.set(self.outer));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_earliest_promise_inside_a_poll_is_returned_and_kept_for_the_outer_one() {
        let now = Instant::now();
        let (early, late) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
        let outer = Watch::start();
        let inner = Watch::start();
        promise(late);
        promise(early);
        assert_eq!(inner.finish(), Some(early));
        assert_eq!(
            outer.finish(),
            Some(early),
            "the outer poll sees the inner promise"
        );
        assert_eq!(
            Watch::start().finish(),
            None,
            "nothing is left over from an earlier poll"
        );
    }

    #[test]
    fn a_poll_that_unwinds_leaves_the_outer_promises_as_they_were() {
        let now = Instant::now();
        let (early, late) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
        let outer = Watch::start();
        promise(late);
        let unwound = std::panic::catch_unwind(|| {
            let _inner = Watch::start();
            promise(early);
            panic!("on purpose");
        });
        assert!(unwound.is_err());
        assert_eq!(
            outer.finish(),
            Some(late),
            "the unwound poll's promise is not kept"
        );
    }
}
