//! Response bodies: most are built whole, generation streams server-sent events. Both are
//! one boxed type, so every handler returns the same `Response<Body>`.
//!
//! A streamed body outlives its handler: whatever must last until the last byte (the
//! request's duration metric, the connection's "busy" mark) rides inside the body with
//! [`hold`], and is dropped when hyper drops the body: at its end, or when the client goes
//! away mid-stream.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::Response;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Every response body. Not `Sync`: a streamed body owns a token stream that only its
/// connection's task polls, so nothing needs to share it.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A body built whole.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// Whether the response streams: a body built whole knows its exact length.
pub fn is_streamed(response: &Response<Body>) -> bool {
    response.body().size_hint().exact().is_none()
}

/// Keeps `held` alive until the body of a streamed response is dropped; for a body built
/// whole, drops it now (the response is complete once the handler returns).
pub fn hold<T: Send + 'static>(response: Response<Body>, held: T) -> Response<Body> {
    if !is_streamed(&response) {
        return response;
    }
    response.map(|body| Held { body, _held: held }.boxed_unsync())
}

/// A body and what must live as long as it.
struct Held<T> {
    body: Body,
    _held: T,
}

impl<T: Send + 'static> HttpBody for Held<T> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // `Body` is a `Pin<Box<..>>`, so `Held` is `Unpin` whatever `T` is.
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<T> Unpin for Held<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_whole_body_drops_what_it_would_hold_at_once() {
        let dropped = Arc::new(AtomicBool::new(false));
        let response = hold(Response::new(full("x")), Flag(dropped.clone()));
        assert!(dropped.load(Ordering::SeqCst));
        assert!(!is_streamed(&response));
    }

    #[test]
    fn a_streamed_body_holds_until_it_is_dropped() {
        let dropped = Arc::new(AtomicBool::new(false));
        let response = Response::new(Pending.boxed_unsync());
        assert!(is_streamed(&response));
        let response = hold(response, Flag(dropped.clone()));
        assert!(!dropped.load(Ordering::SeqCst));
        drop(response);
        assert!(dropped.load(Ordering::SeqCst));
    }

    /// A body that never ends, and does not know its length.
    struct Pending;
    impl HttpBody for Pending {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }
}
