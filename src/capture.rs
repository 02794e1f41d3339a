//! Reading a body ahead: [`capture`], the one place the crate collects a body whole (a
//! detached task's result, a status document the client reads), and [`ReadAhead`], the one
//! body that gives back what was read ahead of its reader (the rest of a body too large to
//! capture, a request body read for its fingerprint).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower::BoxError;

/// A body boxed once.
pub(crate) type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why a body was not captured.
pub(crate) enum CaptureError {
    /// It holds more than the bound: here it is again, whole (what was read, then the
    /// rest), for a caller that passes it on.
    TooLarge(BoxBody),
    /// It failed.
    Failed(BoxError),
}

/// Reads `body` to its end when it holds at most `max` bytes of data (its trailers are not
/// kept). A body of one data frame is given back without a copy.
pub(crate) async fn capture<B>(body: B, max: usize) -> Result<Bytes, CaptureError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = ReadAhead::new(body.map_err(Into::into).boxed_unsync());
    let mut len = 0;
    while let Some(frame) = body.read_frame().await {
        len += frame.data_ref().map_or(0, Bytes::len);
        if len > max {
            return Err(CaptureError::TooLarge(body.boxed_unsync()));
        }
    }
    // Every frame is read (or the body failed, which comes after them): http-body-util
    // collects them, copying only when there are several.
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(CaptureError::Failed(error)),
    }
}

pin_project! {
    /// A body some of whose frames were read ahead: those first, then the rest. How the
    /// reading ahead ended (the body's end, an error) is given back in its turn too.
    pub(crate) struct ReadAhead<B: Body> {
        #[pin]
        rest: B,
        read: VecDeque<Frame<B::Data>>,
        error: Option<B::Error>,
        ended: bool,
    }
}

impl<B: Body> ReadAhead<B> {
    pub(crate) fn new(body: B) -> Self {
        Self {
            rest: body,
            read: VecDeque::new(),
            error: None,
            ended: false,
        }
    }

    /// The body being read.
    pub(crate) fn get_ref(&self) -> &B {
        &self.rest
    }
}

impl<B: Body + Unpin> ReadAhead<B> {
    /// Reads one more frame ahead and shows it; `None` once the body ended or failed.
    pub(crate) async fn read_frame(&mut self) -> Option<&Frame<B::Data>> {
        if self.ended || self.error.is_some() {
            return None;
        }
        match std::future::poll_fn(|cx| Pin::new(&mut self.rest).poll_frame(cx)).await {
            None => self.ended = true,
            Some(Err(error)) => self.error = Some(error),
            Some(Ok(frame)) => {
                self.read.push_back(frame);
                return self.read.back();
            }
        }
        None
    }
}

impl<B: Body> Body for ReadAhead<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if let Some(frame) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.error.take() {
            *this.ended = true;
            return Poll::Ready(Some(Err(error)));
        }
        if *this.ended {
            return Poll::Ready(None);
        }
        this.rest.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.error.is_none() && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.error.is_some() {
            return SizeHint::default();
        }
        let read: u64 = self
            .read
            .iter()
            .filter_map(|frame| frame.data_ref().map(|data| data.remaining() as u64))
            .sum();
        if self.ended {
            return SizeHint::with_exact(read);
        }
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use http_body_util::Full;

    use super::*;

    /// A body of these frames, one data frame each.
    struct Framed(VecDeque<&'static str>);

    impl Body for Framed {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let data = self
                .0
                .pop_front()
                .map(|data| Bytes::from_static(data.as_bytes()));
            Poll::Ready(data.map(|data| Ok(Frame::data(data))))
        }
    }

    fn framed(frames: &[&'static str]) -> Framed {
        Framed(frames.iter().copied().collect())
    }

    #[tokio::test]
    async fn within_the_bound_a_body_is_read_whole() {
        let status = Bytes::from_static(b"status");
        let one = capture(Full::new(status.clone()), 6).await.ok().unwrap();
        assert_eq!(one, status);
        assert_eq!(one.as_ptr(), status.as_ptr(), "one frame is not copied");
        let three = capture(framed(&["a", "bc", "def"]), 6).await;
        assert_eq!(three.ok().as_deref(), Some(&b"abcdef"[..]));
        let empty = capture(framed(&[]), 0).await;
        assert_eq!(empty.ok().as_deref(), Some(&b""[..]));
    }

    #[tokio::test]
    async fn past_the_bound_the_body_is_given_back_whole() {
        let Err(CaptureError::TooLarge(whole)) = capture(framed(&["a", "bc", "def"]), 2).await
        else {
            panic!("captured past the bound");
        };
        assert_eq!(whole.size_hint().lower(), 3, "the frames read count");
        let bytes = whole.collect().await.ok().unwrap().to_bytes();
        assert_eq!(bytes, "abcdef");
    }

    #[tokio::test]
    async fn what_was_read_ahead_comes_first_then_how_the_reading_ended() {
        /// Two frames, then an error.
        struct Failing(u8);

        impl Body for Failing {
            type Data = Bytes;
            type Error = &'static str;

            fn poll_frame(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
                self.0 += 1;
                Poll::Ready(Some(match self.0 {
                    1 => Ok(Frame::data(Bytes::from_static(b"ab"))),
                    2 => Ok(Frame::trailers(http::HeaderMap::new())),
                    _ => Err("reset"),
                }))
            }
        }

        let mut body = ReadAhead::new(Failing(0));
        assert!(body.read_frame().await.is_some_and(Frame::is_data));
        assert!(body.read_frame().await.is_some_and(Frame::is_trailers));
        assert!(body.read_frame().await.is_none(), "the error is kept");
        assert!(body.read_frame().await.is_none());
        let mut body = std::pin::pin!(body);
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, "ab");
        assert!(body.frame().await.unwrap().unwrap().is_trailers());
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "reset");
        assert!(body.frame().await.is_none(), "ended with its error");

        let mut ended = ReadAhead::new(framed(&["a", "bc"]));
        while ended.read_frame().await.is_some() {}
        assert_eq!(ended.size_hint().exact(), Some(3));
        assert!(!ended.is_end_stream(), "two frames to give");
        let bytes = ended.collect().await.ok().unwrap().to_bytes();
        assert_eq!(bytes, "abc");
    }
}
