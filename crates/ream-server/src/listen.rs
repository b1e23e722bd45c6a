//! The accept loop: HTTP/1.1 connections under three limits, and a graceful shutdown.
//!
//! - **Header timeout**: from the first byte of a request, its head must arrive within
//!   it, or the connection is closed (a slow-loris client holds nothing for long).
//! - **Idle timeout**: a connection with no request in flight for this long is closed.
//!   A request in flight is never cut, however long its response streams.
//! - **Connection cap**: past it, the loop stops accepting until a connection ends; new
//!   clients wait in the kernel's backlog instead of taking memory and descriptors.
//!
//! 20,000 idle sockets took the server offline before these (each held a task and a
//! descriptor for ever); with them, an idle socket lives at most the idle timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits; [`crate::ServerConfig`] holds them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest time from a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// Longest time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting, let every
/// connection finish the request it is serving (idle ones close at once) and return
/// when all have closed.
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing, closed) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener, &permits) => accepted,
        };
        let (stream, peer, permit) = accepted;
        let (router, closed) = (router.clone(), closed.clone());
        connections.spawn(async move {
            connection(stream, peer, router, limits, closed).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
}

/// The next connection, once the cap allows one.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit) {
    let permit =
        permits.clone().acquire_owned().await.unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer, permit);
            }
            // Out of descriptors, or a client that reset before the accept: wait a little
            // rather than spin, and go on.
            Err(e) => {
                if !matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// One connection, from accept to close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut closed: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let busy = Busy::start(&tracked);
        let router = router.clone();
        async move {
            let mut req = req.map(Body::new);
            // The client's address, for the audit log.
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            let response = router.oneshot(req).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked { inner: body, _busy: busy })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut closing = *closed.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = activity.deadline(limits);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = activity.changed.notified() => {}
            changed = closed.changed(), if !closing => {
                closing = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(deadline) => match activity.verdict(limits, Instant::now()) {
                // A head that does not arrive: drop the connection, no response.
                Verdict::SlowHead => return,
                Verdict::Idle => conn.as_mut().graceful_shutdown(),
                Verdict::Fine => {}
            },
        }
    }
}

/// What the connection is doing, as its limits see it; `changed` wakes the watch when
/// a head starts or the last response ends, so it can move its deadline.
struct Activity {
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

struct State {
    /// Requests whose responses have not ended.
    in_flight: usize,
    /// When the connection last had no request in flight.
    idle_since: Instant,
    /// The first byte read while idle: a request's head is arriving.
    head_since: Option<Instant>,
}

enum Verdict {
    Fine,
    SlowHead,
    Idle,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(State { in_flight: 0, idle_since: Instant::now(), head_since: None }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_some(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// When the next limit could be reached (far off while a request is in flight: its
    /// end wakes nobody, the next check finds it idle).
    fn deadline(&self, limits: ConnectionLimits) -> Instant {
        let s = self.state();
        match (s.in_flight, s.head_since) {
            (0, Some(t)) => t + limits.header_timeout,
            (0, None) => s.idle_since + limits.idle_timeout,
            _ => Instant::now() + limits.idle_timeout.min(limits.header_timeout),
        }
    }

    fn verdict(&self, limits: ConnectionLimits, now: Instant) -> Verdict {
        let s = self.state();
        match (s.in_flight, s.head_since) {
            (0, Some(t)) if now >= t + limits.header_timeout => Verdict::SlowHead,
            (0, None) if now >= s.idle_since + limits.idle_timeout => Verdict::Idle,
            _ => Verdict::Fine,
        }
    }
}

/// A request in flight, from its head to the end of its response body.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        let mut s = activity.state();
        s.in_flight += 1;
        s.head_since = None;
        drop(s);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
            s.head_since = None;
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

/// A response body that holds its request's [`Busy`] until it ends.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
