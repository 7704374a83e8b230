//! Server-sent events: the `data:` framing both chat APIs use, and the body that streams a
//! completion token by token.
//!
//! The body owns the [`TokenStream`] and polls it itself (no task between them), so when
//! hyper drops the body (the client went away) the stream is dropped with it and the
//! scheduler frees the sequence's slot at its next step.

use super::chat_types::{ChatUsage, DONE};
use super::error::ApiError;
use super::Body;
use crate::generate::{FinishReason, GenError, GenEvent, TokenStream};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::Response;
use serde::Serialize;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Appends one event: `data: {json}` and a blank line.
pub fn push_event(out: &mut String, data: &impl Serialize) {
    out.push_str("data: ");
    // The event types hold strings, numbers and lists only: serializing cannot fail.
    out.push_str(&serde_json::to_string(data).expect("events always serialize"));
    out.push_str("\n\n");
}

/// Appends the last event of a stream that ended normally.
pub fn push_done(out: &mut String) {
    out.push_str("data: ");
    out.push_str(DONE);
    out.push_str("\n\n");
}

/// An event stream response around `body`.
pub fn response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What one API's events look like (chat chunks or completion chunks).
pub trait Framing: Send + Unpin + 'static {
    /// Events before the first text (chat: the assistant's role).
    fn start(&mut self, out: &mut String);
    /// One non-empty piece of text.
    fn text(&mut self, text: String, out: &mut String);
    /// The finish reason, then the usage when the client asked for it. `[DONE]` follows.
    fn finish(&mut self, reason: FinishReason, usage: ChatUsage, out: &mut String);
}

/// Usage from a finished stream's counts.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> ChatUsage {
    ChatUsage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

/// The streamed response of a completion whose first event has arrived.
pub fn stream<F: Framing>(tokens: TokenStream, first: GenEvent, framing: F) -> Response<Body> {
    let body = Events {
        tokens,
        framing,
        first: Some(first),
        started: false,
        ended: false,
    };
    response(body.boxed_unsync())
}

/// A completion's events as they come. Each frame carries every event ready when hyper
/// asks, so a burst of tokens leaves in one write.
struct Events<F> {
    tokens: TokenStream,
    framing: F,
    /// The event that arrived before the headers were sent.
    first: Option<GenEvent>,
    started: bool,
    /// `[DONE]` or the error event is written: nothing more to read.
    ended: bool,
}

impl<F: Framing> Events<F> {
    fn event(&mut self, event: GenEvent, out: &mut String) {
        match event {
            GenEvent::Text { text, .. } => {
                if !text.is_empty() {
                    self.framing.text(text, out);
                }
            }
            GenEvent::Done {
                reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let usage = usage(prompt_tokens, completion_tokens);
                self.framing.finish(reason, usage, out);
                push_done(out);
                self.ended = true;
            }
            // Too late for a status: OpenAI's error object as the last event, without
            // `[DONE]`, so a client cannot mistake the stream for a complete one.
            GenEvent::Failed(e) => {
                push_event(out, &ApiError::from(e).body());
                self.ended = true;
            }
        }
    }
}

impl<F: Framing> HttpBody for Events<F> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let mut out = String::new();
        if !this.started {
            this.started = true;
            this.framing.start(&mut out);
        }
        if let Some(first) = this.first.take() {
            this.event(first, &mut out);
        }
        while !this.ended {
            match this.tokens.poll_next(cx) {
                Poll::Ready(event) => {
                    // The scheduler went away without a last event: it is shutting down.
                    let event = event.unwrap_or(GenEvent::Failed(GenError::ShuttingDown));
                    this.event(event, &mut out);
                }
                Poll::Pending => break,
            }
        }
        match (out.is_empty(), this.ended) {
            (false, _) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
            (true, true) => Poll::Ready(None),
            (true, false) => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.started && self.first.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// Chunks as plain words, so the tests read the framing, not the JSON types.
    struct Words;
    impl Framing for Words {
        fn start(&mut self, out: &mut String) {
            push_event(out, &"start");
        }
        fn text(&mut self, text: String, out: &mut String) {
            push_event(out, &text);
        }
        fn finish(&mut self, reason: FinishReason, usage: ChatUsage, out: &mut String) {
            push_event(out, &(reason.as_str(), usage.total_tokens));
        }
    }

    fn text(t: &str) -> GenEvent {
        GenEvent::Text {
            text: t.into(),
            tokens: 1,
        }
    }

    async fn body_of(first: GenEvent, rest: Vec<GenEvent>) -> String {
        let (tx, rx) = mpsc::channel(16);
        for e in rest {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        let response = stream(TokenStream::for_tests(3, rx), first, Words);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn text_then_finish_then_done_and_empty_text_is_not_an_event() {
        let done = GenEvent::Done {
            reason: FinishReason::Length,
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let body = body_of(text("a"), vec![text(""), text("b"), done]).await;
        let expected = "data: \"start\"\n\ndata: \"a\"\n\ndata: \"b\"\n\n\
                        data: [\"length\",5]\n\ndata: [DONE]\n\n";
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn a_failure_ends_the_stream_with_an_error_event_and_no_done() {
        let body = body_of(
            text("a"),
            vec![GenEvent::Failed(GenError::Engine("x".into()))],
        )
        .await;
        let last = body.trim_end().rsplit("\n\n").next().unwrap();
        let error: serde_json::Value =
            serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(error["error"]["code"], "internal_error", "{body}");
        assert!(!body.contains("[DONE]"));
        // A scheduler that goes away without a last event is a shutdown, said the same way.
        let body = body_of(text("a"), vec![]).await;
        assert!(
            body.contains("\"draining\"") && !body.contains("[DONE]"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn dropping_the_body_drops_the_token_stream() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = stream(TokenStream::for_tests(1, rx), text("a"), Words).into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("\"a\""));
        assert!(!tx.is_closed());
        drop(body);
        assert!(
            tx.is_closed(),
            "the scheduler sees the client gone at its next step"
        );
    }
}
