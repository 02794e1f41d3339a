//! Reading a body whole, up to a bound: the one place the crate collects a body (a detached
//! task's result, a status document the client reads).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
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
/// kept). A body of one frame is given back without a copy.
pub(crate) async fn capture<B>(body: B, max: usize) -> Result<Bytes, CaptureError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = body.map_err(Into::into).boxed_unsync();
    let mut read = Vec::new();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(CaptureError::Failed)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        read.push(data);
        if len > max {
            let whole = Resumed {
                read: read.into_iter(),
                rest: body,
            };
            return Err(CaptureError::TooLarge(whole.boxed_unsync()));
        }
    }
    if read.len() == 1 {
        return Ok(read.pop().expect("one frame"));
    }
    let mut whole = BytesMut::with_capacity(len);
    for data in read {
        whole.extend_from_slice(&data);
    }
    Ok(whole.freeze())
}

/// A body some of whose frames were read: those, then the rest.
struct Resumed {
    read: std::vec::IntoIter<Bytes>,
    rest: BoxBody,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.read.next() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.read.len() == 0 && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .read
            .as_slice()
            .iter()
            .map(|data| data.len() as u64)
            .sum();
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
        let one = capture(Full::new(Bytes::from_static(b"status")), 6).await;
        assert_eq!(one.ok().as_deref(), Some(&b"status"[..]));
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
}
