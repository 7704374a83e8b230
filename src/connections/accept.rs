//! The accept loops and one task per connection: admission at the cap, hyper's HTTP/1 and
//! HTTP/2 serving, the connection timers, and closing on request (shed or shutdown).

use super::limit::ConnectionLimits;
use super::registry::{Admitted, Caps, Registry};
use crate::config::ServerConfig;
use crate::http::{self, Scope};
use crate::idle::IdleIo;
use crate::state::AppState;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every connection of one server, from both listeners.
pub struct Connections {
    state: Arc<AppState>,
    registry: Arc<Registry>,
    builder: auto::Builder<TokioExecutor>,
    /// Tracks connection tasks so shutdown can wait for them.
    tracker: TaskTracker,
}

impl Connections {
    pub fn new(state: Arc<AppState>, limits: &ConnectionLimits) -> Arc<Connections> {
        let caps = Caps {
            total: limits.max,
            per_client: limits.max_per_client,
        };
        let registry = Registry::new(caps, state.metrics.connections.clone());
        let builder = http_builder(&state.config().server);
        Arc::new(Connections {
            state,
            registry,
            builder,
            tracker: TaskTracker::new(),
        })
    }

    /// Accepts on `listener` until `stop` is cancelled.
    pub fn listen(
        self: &Arc<Self>,
        listener: TcpListener,
        scope: Scope,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(self.clone().accept_loop(listener, scope, stop))
    }

    /// Asks every connection to close once its requests are answered, and waits for them
    /// up to `limit`. Call after the accept loops have stopped.
    pub async fn drain(&self, limit: Duration) {
        self.registry.close_all();
        self.tracker.close();
        if timeout(limit, self.tracker.wait()).await.is_err() {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        scope: Scope,
        stop: CancellationToken,
    ) {
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            match self.registry.admit(peer.ip()) {
                Ok(admitted) => {
                    self.tracker
                        .spawn(self.clone().serve(stream, admitted, scope));
                }
                // Every connection is busy, or the client has its share: close at once
                // rather than let the backlog grow. Counted by the registry.
                Err(reason) => {
                    tracing::debug!(%peer, reason = reason.as_str(), "connection refused")
                }
            }
        }
    }

    /// Serves one connection until it ends, times out, or is asked to close.
    async fn serve(self: Arc<Self>, stream: TcpStream, admitted: Admitted, scope: Scope) {
        let _ = stream.set_nodelay(true);
        let (io, activity) = IdleIo::new(stream);
        let admitted = Arc::new(admitted);
        let service = {
            let (state, activity, admitted) =
                (self.state.clone(), activity.clone(), admitted.clone());
            service_fn(move |req| {
                // Until the response is complete, the connection is busy: not idle for
                // the timer, not sheddable at the cap. A body built whole is complete once
                // the handler returns; a streamed one holds the marks to its end.
                let busy = (activity.busy(), admitted.request());
                let state = state.clone();
                async move {
                    let response = http::handle(state, scope, req).await;
                    response.map(|r| http::hold(r, busy))
                }
            })
        };
        let config = self.state.config();
        let server = &config.server;
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            // The connection first: a request that has already arrived is read (and then
            // finished) before a close is acted on.
            biased;
            _ = conn.as_mut() => return,
            // Shed for a newcomer at the cap, or shutdown.
            () = admitted.close_requested() => {}
            // Silent since accept, or still sending its first header.
            () = activity.no_request_within(server.header_read_timeout) => {}
            // Nothing in flight and no bytes moving.
            () = activity.idle_for(server.idle_timeout) => {}
        }
        // Closes an idle HTTP/1 connection at once; lets a request that slipped in finish
        // (HTTP/1) or sends GOAWAY (HTTP/2). Bounded, as a client may never finish closing.
        conn.as_mut().graceful_shutdown();
        let _ = timeout(server.drain_timeout, conn).await;
    }
}

fn http_builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.http2_max_streams);
    builder
}
