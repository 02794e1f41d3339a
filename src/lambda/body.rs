//! The body of a streamed response, as the runner hands it to `lambda_runtime`.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A streamed response's body that ends at its first error, which it logs.
    /// `lambda_runtime` would write the error's text into the stream, where the client reads
    /// it after the body's first part (base64, under a `Lambda-Runtime-Function-Error-Body`
    /// line that Lambda takes for body too), and poll the failed body again.
    pub(crate) struct EndsAtError<B> {
        #[pin]
        inner: B,
        failed: bool,
    }
}

impl<B> EndsAtError<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            failed: false,
        }
    }
}

impl<B> Body for EndsAtError<B>
where
    B: Body,
    B::Error: fmt::Debug,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        match ready!(this.inner.poll_frame(cx)) {
            Some(Err(error)) => {
                *this.failed = true;
                tracing::error!(
                    target: "tower_serverless::lambda",
                    ?error,
                    "the response body failed midway; its stream ends there"
                );
                Poll::Ready(None)
            }
            frame => Poll::Ready(frame),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    /// Frames given out one per poll, counting the polls.
    struct Frames {
        frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
        polls: usize,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            self.polls += 1;
            Poll::Ready(self.frames.pop_front())
        }
    }

    #[tokio::test]
    async fn ends_at_the_first_error_and_polls_no_further() {
        let frames = [
            Ok(Frame::data(Bytes::from_static(b"partial "))),
            Err("secret"),
            Ok(Frame::data(Bytes::from_static(b"after"))),
        ];
        let inner = Frames {
            frames: frames.into(),
            polls: 0,
        };
        let mut body = EndsAtError::new(inner);
        assert!(!body.is_end_stream());
        let collected = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"partial ");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert_eq!(body.inner.polls, 2);
    }
}
