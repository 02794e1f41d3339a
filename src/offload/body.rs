//! The bodies an [`Offload`](super::Offload) service passes on: the request body its inner
//! service reads, and the response body it answers with.

use std::fmt;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tower::BoxError;

use super::config::Config;
use super::detached::Reservation;
use super::idempotency::{Fingerprint, FINGERPRINT_PREFIX};
use super::store::{StoredResponse, TaskOutcome};
use super::work;
use super::{reason, TaskId};
use crate::capture::ReadAhead;

pin_project! {
    /// The request body the inner service of an [`Offload`](super::Offload) reads: the
    /// client's body as it came. For a request with an `Idempotency-Key`, its first 64 KiB
    /// were read ahead for the request's fingerprint and are given back first.
    pub struct RequestBody<B: Body> {
        #[pin]
        inner: ReadAhead<B>,
    }
}

impl<B: Body> RequestBody<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner: ReadAhead::new(inner),
        }
    }
}

impl<B: Body + Unpin> RequestBody<B> {
    /// Reads ahead up to [`FINGERPRINT_PREFIX`] bytes into `fingerprint`.
    pub(crate) async fn read_ahead(mut self, fingerprint: &mut Fingerprint) -> Self {
        let mut read = 0;
        while read < FINGERPRINT_PREFIX {
            let Some(frame) = self.inner.read_frame().await else {
                break;
            };
            if let Some(data) = frame.data_ref() {
                let wanted = data.remaining().min(FINGERPRINT_PREFIX - read);
                update_with_prefix(fingerprint, data, wanted);
                read += data.remaining();
            }
        }
        self
    }
}

/// Feeds the first `wanted` bytes of `data` to `fingerprint` without consuming them (the
/// frame is given back to the service): every chunk of them, not only the first, since a
/// body of chained buffers differs from another anywhere in them. They are read through
/// `chunks_vectored`, the one way to see past a buffer's first chunk without consuming it:
/// a buffer type that keeps `Buf`'s default shows its first chunk only.
fn update_with_prefix(fingerprint: &mut Fingerprint, data: &impl Buf, wanted: usize) {
    let mut few = [IoSlice::new(&[]); 16];
    let mut many = Vec::new();
    let mut places = few.len();
    loop {
        let slices = if places == few.len() {
            &mut few[..]
        } else {
            many.resize(places, IoSlice::new(&[]));
            &mut many[..]
        };
        let filled = data.chunks_vectored(slices).min(places);
        let shown: usize = slices[..filled].iter().map(|slice| slice.len()).sum();
        // Every place filled and not all the bytes wanted shown: more chunks than places,
        // unless there are more places than bytes wanted (a buffer showing empty chunks).
        if filled < places || shown >= wanted || places > wanted {
            let mut left = wanted;
            for slice in &slices[..filled] {
                let take = slice.len().min(left);
                fingerprint.update(&slice[..take]);
                left -= take;
            }
            return;
        }
        places *= 4;
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body + fmt::Debug> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("inner", self.inner.get_ref())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response body of an [`Offload`](super::Offload) service: the inner service's
    /// body, untouched; or one the layer wrote (`202`, a replay, a problem); or, for a
    /// request with an `Idempotency-Key` answered in the foreground, the inner body streamed
    /// to the client while a bounded copy is kept for the retries.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Written { #[pin] body: Full<Bytes> },
        // Boxed: a keeper is 170 bytes, and every response through the layer, kept or
        // not, would be moved with room for one.
        Kept { body: Box<Kept> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn written(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Written { body },
        }
    }

    pub(crate) fn kept(body: B, keeper: Keeper) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Kept {
                body: Box::new(Kept {
                    body: Some(body.map_err(Into::into).boxed_unsync()),
                    keeper: Some(keeper),
                }),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Written { body } => body.poll_frame(cx).map_err(|never| match never {}),
            KindProj::Kept { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Written { body } => body.is_end_stream(),
            Kind::Kept { body } => body.body.as_ref().is_none_or(|b| b.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Written { body } => body.size_hint(),
            Kind::Kept { body } => body
                .body
                .as_ref()
                .map_or_else(SizeHint::default, |b| b.size_hint()),
        }
    }
}

/// An empty body, as tower-http's middleware make for their own answers.
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::written(Full::default())
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

/// What a keyed task keeps of a response answered in the foreground, and where.
pub(crate) struct Keeper {
    config: Arc<Config>,
    id: TaskId,
    reservation: Reservation,
    status: StatusCode,
    headers: HeaderMap,
    /// `None` once the body outgrew the limit.
    copy: Option<BytesMut>,
    /// The largest JSON document the response goes back in, when it is a buffered Lambda
    /// response.
    max_response: Option<usize>,
}

impl Keeper {
    pub(crate) fn new(
        config: Arc<Config>,
        id: TaskId,
        reservation: Reservation,
        status: StatusCode,
        headers: HeaderMap,
        max_response: Option<usize>,
    ) -> Self {
        Self {
            config,
            id,
            reservation,
            status,
            headers,
            copy: Some(BytesMut::new()),
            max_response,
        }
    }

    /// Keeps `data`; `false` when the body outgrew the limit with it.
    fn keep(&mut self, data: &[u8]) -> bool {
        let max = self.config.max_result_bytes;
        if let Some(copy) = &mut self.copy {
            if copy.len() + data.len() > max {
                self.copy = None;
                return false;
            }
            copy.extend_from_slice(data);
        }
        true
    }

    fn store(self, outcome: TaskOutcome) {
        work::store_later(
            self.config,
            self.id,
            self.reservation,
            outcome,
            self.max_response,
        );
    }

    fn succeeded(mut self) {
        let Some(copy) = self.copy.take() else {
            return self.store(TaskOutcome::failed(reason::NOT_KEPT));
        };
        // Taken, not cloned: the copy may be `max_result_bytes` long.
        let response = StoredResponse {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body: copy.freeze(),
        };
        self.store(TaskOutcome::Succeeded(response));
    }
}

/// A keyed response body on its way to the client, kept up to the limit for the retries.
/// Dropped before its end (the client went away), the rest is read in a task of its own, so
/// that the outcome is stored all the same. Boxed once, so that the task can own it.
struct Kept {
    body: Option<UnsyncBoxBody<Bytes, BoxError>>,
    keeper: Option<Keeper>,
}

impl Kept {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(body) = &mut self.body else {
            return Poll::Ready(None);
        };
        let polled = std::task::ready!(Pin::new(body).poll_frame(cx));
        self.observe(polled.as_ref().map(|r| r.as_ref().map_err(|_| ())));
        if polled.is_none() {
            self.body = None;
        }
        Poll::Ready(polled)
    }

    /// Keeps what passes, and stores the outcome once it is known.
    fn observe(&mut self, polled: Option<Result<&Frame<Bytes>, ()>>) {
        let Some(keeper) = &mut self.keeper else {
            return;
        };
        match polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !keeper.keep(data) {
                        // Too large to keep: say so now, the stream may never end.
                        let keeper = self.keeper.take().expect("checked above");
                        keeper.store(TaskOutcome::failed(reason::NOT_KEPT));
                    }
                }
            }
            Some(Err(())) => {
                let keeper = self.keeper.take().expect("checked above");
                keeper.store(TaskOutcome::failed(reason::BODY_FAILED));
            }
            None => self.keeper.take().expect("checked above").succeeded(),
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let (Some(mut body), Some(mut keeper)) = (self.body.take(), self.keeper.take()) else {
            return;
        };
        // The client is gone; the rest of the body is read to store the outcome.
        work::spawn(async move {
            loop {
                let frame = body.frame().await;
                match frame {
                    None => return keeper.succeeded(),
                    Some(Err(_)) => return keeper.store(TaskOutcome::failed(reason::BODY_FAILED)),
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            if !keeper.keep(data) {
                                return keeper.store(TaskOutcome::failed(reason::NOT_KEPT));
                            }
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::Buf;
    use http::Request;

    use super::*;

    /// The fingerprint of a `POST /refund` whose body is one frame of `data`.
    async fn fingerprint_of(data: impl Buf + Unpin) -> String {
        let len = data.remaining() as u64;
        let parts = Request::post("/refund").body(()).unwrap().into_parts().0;
        let mut fingerprint = Fingerprint::new(&parts);
        let body = RequestBody::new(Full::new(data))
            .read_ahead(&mut fingerprint)
            .await;
        assert_eq!(
            body.size_hint().exact(),
            Some(len),
            "the frame is given back"
        );
        fingerprint.finish()
    }

    #[tokio::test]
    async fn the_fingerprint_reads_every_chunk_of_a_frame() {
        let chained =
            |a: &'static [u8], b: &'static [u8]| Bytes::from_static(a).chain(Bytes::from_static(b));
        let small = fingerprint_of(chained(b"{\"amount\":", b"1}")).await;
        let large = fingerprint_of(chained(b"{\"amount\":", b"1000}")).await;
        assert_ne!(small, large, "another body is another request");
        let whole = fingerprint_of(Bytes::from_static(b"{\"amount\":1}")).await;
        assert_eq!(small, whole, "the bytes count, not how they are chunked");
    }

    /// Buffers one after the other, each a chunk.
    struct Pieces(std::collections::VecDeque<Bytes>);

    impl Buf for Pieces {
        fn remaining(&self) -> usize {
            self.0.iter().map(Bytes::len).sum()
        }
        fn chunk(&self) -> &[u8] {
            self.0.front().map_or(&[], |piece| piece)
        }
        fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
            let slots = dst.iter_mut().zip(&self.0);
            slots
                .map(|(slot, piece)| *slot = IoSlice::new(piece))
                .count()
        }
        fn advance(&mut self, mut count: usize) {
            while count > 0 {
                let front = self.0.front_mut().expect("count <= remaining");
                let take = count.min(front.len());
                front.advance(take);
                count -= take;
                if front.is_empty() {
                    self.0.pop_front();
                }
            }
        }
    }

    #[tokio::test]
    async fn the_fingerprint_reads_more_chunks_than_one_look_holds() {
        // 22 chunks, more than the 16 places of the first look, differing in the last one.
        let many = |last: &'static [u8]| {
            let mut pieces = vec![Bytes::from_static(b"[")];
            pieces.extend(std::iter::repeat_n(Bytes::from_static(b"0,"), 20));
            pieces.push(Bytes::from_static(last));
            Pieces(pieces.into())
        };
        let one = fingerprint_of(many(b"1]")).await;
        let two = fingerprint_of(many(b"2]")).await;
        assert_ne!(one, two, "the 22nd chunk counts too");
        let whole = format!("[{}1]", "0,".repeat(20));
        assert_eq!(one, fingerprint_of(Bytes::from(whole)).await);
    }
}
