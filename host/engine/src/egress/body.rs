//! Request and response bodies under a size limit, and responses under the
//! between-bytes timeout.

use crate::limits::CallFlags;
use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

#[derive(Clone, Copy, Debug)]
pub(super) enum Direction {
    Request,
    Response,
}

/// A body that fails once more than `limit` bytes pass, and (for
/// responses) when the peer is silent longer than the between-bytes
/// timeout.
pub(super) struct Capped<B> {
    inner: B,
    seen: u64,
    limit: u64,
    direction: Direction,
    flags: Arc<CallFlags>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl<B> Capped<B> {
    pub(super) fn new(
        inner: B,
        limit: u64,
        direction: Direction,
        flags: Arc<CallFlags>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            seen: 0,
            limit,
            direction,
            flags,
            idle: idle.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        }
    }
}

impl<B> Capped<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<HttpError>,
{
    pub(super) fn boxed(self) -> WasiBody {
        http_body_util::BodyExt::boxed_unsync(self)
    }
}

impl<B> Body for Capped<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpError>,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len() as u64);
                    if this.seen > this.limit {
                        this.flags.body_limit_hit.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(match this.direction {
                            Direction::Request => HttpError::HttpRequestBodySize(Some(this.seen)),
                            Direction::Response => HttpError::HttpResponseBodySize(Some(this.seen)),
                        })));
                    }
                }
                if let Some((d, sleep)) = this.idle.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *d);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if let Some((_, sleep)) = this.idle.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
