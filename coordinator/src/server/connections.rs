//! The connections the coordinator accepts, bounded: at most [`Limits::total`] open at once and
//! [`Limits::per_address`] from one client address (more are closed as they arrive, counted and
//! logged), and each closed once nothing has moved on it, either way, for [`Limits::idle`]. Live
//! clients keep moving: gRPC connections answer the server's HTTP/2 pings (every 30 s), dashboard
//! pages get a keep-alive every 15 s. TLS handshakes are bounded by tonic's own timeout
//! ([`HANDSHAKE`]), applied to these connections when the coordinator serves TLS.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::metrics::Metrics;

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// How long an accept error that means "out of file descriptors" pauses accepting.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// At most one "refused a connection" log line per this long (a flood would otherwise be a flood
/// of log lines too).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// How many connections may be open, and for how long one may sit idle.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections in all.
    pub total: usize,
    /// Open connections from one client address.
    pub per_address: usize,
    /// Nothing read or written for this long closes a connection.
    pub idle: Duration,
}

impl Default for Limits {
    /// 1,024 per address; in all, what the process's file descriptors allow beside the store and
    /// the datasets (up to 16,384); two minutes idle.
    fn default() -> Self {
        Limits {
            total: descriptor_budget(),
            per_address: 1024,
            idle: Duration::from_secs(120),
        }
    }
}

/// File descriptors kept for everything but connections (the store, datasets, logs).
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raises the soft limit on open files to the hard one (as Go's runtime does) and returns how
/// many connections fit under it.
fn descriptor_budget() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            1024
        } else {
            let wanted = limit.rlim_max.min(65_536);
            if wanted > limit.rlim_cur {
                let raised = libc::rlimit {
                    rlim_cur: wanted,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = wanted;
                }
            }
            limit.rlim_cur
        }
    };
    (soft.saturating_sub(RESERVED_DESCRIPTORS)).clamp(64, 16_384) as usize
}

/// A count of things held open (connections, live streams), in all and by client address, with
/// a limit on each: [`AddressLimiter::take`] hands out a [`Slot`] while both allow one.
pub struct AddressLimiter {
    total: usize,
    per_address: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<Option<IpAddr>, usize>,
}

/// Which limit refused a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Total,
    PerAddress,
}

impl Over {
    pub fn describe(self) -> &'static str {
        match self {
            Over::Total => "the limit in all",
            Over::PerAddress => "the per-address limit",
        }
    }
}

impl AddressLimiter {
    pub fn new(total: usize, per_address: usize) -> Arc<Self> {
        Arc::new(AddressLimiter {
            total,
            per_address,
            counts: Mutex::default(),
        })
    }

    /// A slot for `address` (`None`: a client whose address is unknown, counted as one), if both
    /// limits leave one.
    pub fn take(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Slot, Over> {
        let mut counts = self.counts.lock().expect("address counts");
        if counts.total >= self.total {
            return Err(Over::Total);
        }
        let from = counts.by_address.entry(address).or_default();
        if *from >= self.per_address {
            return Err(Over::PerAddress);
        }
        *from += 1;
        counts.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            address,
        })
    }

    /// How many slots are held now.
    pub fn held(&self) -> usize {
        self.counts.lock().expect("address counts").total
    }
}

/// One held place in an [`AddressLimiter`], given back when dropped.
pub struct Slot {
    limiter: Arc<AddressLimiter>,
    address: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock().expect("address counts");
        counts.total -= 1;
        if let Some(from) = counts.by_address.get_mut(&self.address) {
            *from -= 1;
            if *from == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

/// The listener as a stream of bounded connections, for tonic's `serve_with_incoming`.
pub struct Incoming {
    listener: TcpListener,
    limits: Limits,
    slots: Arc<AddressLimiter>,
    metrics: Metrics,
    /// Set while accepting pauses after running out of file descriptors.
    paused: Option<Pin<Box<Sleep>>>,
    /// When a refusal was last logged.
    logged: Option<Instant>,
}

impl Incoming {
    pub fn new(listener: TcpListener, limits: Limits, metrics: Metrics) -> Self {
        Incoming {
            listener,
            limits,
            slots: AddressLimiter::new(limits.total, limits.per_address),
            metrics,
            paused: None,
            logged: None,
        }
    }

    fn refused(&mut self, address: SocketAddr, over: Over) {
        self.metrics.connection_refused();
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
        {
            self.logged = Some(now);
            let why = over.describe();
            tracing::warn!(client = %address, limit = why, total = self.limits.total,
                per_address = self.limits.per_address,
                "connection refused: over {why} of connections (further refusals are counted in /metrics, logged at most every 10 s)");
        }
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(pause) = self.paused.as_mut() {
                ready!(pause.as_mut().poll(cx));
                self.paused = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok((tcp, address)) => match self.slots.take(Some(address.ip())) {
                    Ok(slot) => {
                        // No Nagle delay: replies are small and a worker waits on each one.
                        let _ = tcp.set_nodelay(true);
                        self.metrics.connection_opened();
                        let open = Open {
                            _slot: slot,
                            metrics: self.metrics.clone(),
                        };
                        let idle = self.limits.idle;
                        return Poll::Ready(Some(Ok(Connection::new(tcp, open, address, idle))));
                    }
                    Err(over) => {
                        drop(tcp);
                        self.refused(address, over);
                    }
                },
                // The client gave up before we accepted: nothing to do.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                // Out of file descriptors (or another passing error): accepting again at once
                // would spin, ending the server would drop every client; pause a moment.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing 100 ms");
                    self.paused = Some(Box::pin(tokio::time::sleep(ACCEPT_PAUSE)));
                }
            }
        }
    }
}

/// A connection's place in the count and in /metrics, given back when it closes.
struct Open {
    _slot: Slot,
    metrics: Metrics,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// An accepted TCP connection that holds its [`Slot`] and times out when idle.
pub struct Connection {
    tcp: TcpStream,
    _open: Open,
    remote: SocketAddr,
    idle: Duration,
    /// When a byte last moved either way.
    moved: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Connection {
    fn new(tcp: TcpStream, open: Open, remote: SocketAddr, idle: Duration) -> Self {
        let now = Instant::now();
        Connection {
            tcp,
            _open: open,
            remote,
            idle,
            moved: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// Called when the socket would block: an error once nothing has moved for `idle`,
    /// otherwise pending (woken by the socket or by the idle deadline).
    fn idle_check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let deadline = self.moved + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            ready!(self.timer.as_mut().poll(cx));
            if Instant::now() >= self.moved + self.idle {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {} s", self.idle.as_secs()),
                ));
            }
        }
    }

    fn after<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        moved: bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                if moved {
                    self.moved = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle_check(cx).map(Err),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.after(cx, poll, moved)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write(cx, buf);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        this.after(cx, poll, moved)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        let moved = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        this.after(cx, poll, moved)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.tcp.local_addr().ok(),
            remote_addr: Some(self.remote),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limiter_counts_by_address_and_in_all_and_frees_on_drop() {
        let limiter = AddressLimiter::new(3, 2);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        let first = limiter.take(a).unwrap();
        let _second = limiter.take(a).unwrap();
        assert_eq!(limiter.take(a).err(), Some(Over::PerAddress));
        let _third = limiter.take(b).unwrap();
        assert_eq!(limiter.take(None).err(), Some(Over::Total));
        drop(first);
        assert_eq!(limiter.held(), 2);
        let _again = limiter.take(a).unwrap();
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    async fn listening(limits: Limits) -> (SocketAddr, Incoming, Metrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let metrics = Metrics::default();
        (
            address,
            Incoming::new(listener, limits, metrics.clone()),
            metrics,
        )
    }

    /// Whether the server closed `client` (a read ends or fails) within a second.
    async fn closed(client: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), client.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn connections_over_the_per_address_limit_are_closed_and_a_freed_slot_is_reused() {
        let limits = Limits {
            total: 10,
            per_address: 2,
            idle: Duration::from_secs(60),
        };
        let (address, mut incoming, metrics) = listening(limits).await;
        let mut clients = Vec::new();
        let mut accepted = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(address).await.unwrap());
            accepted.push(incoming.next().await.unwrap().unwrap());
        }
        let mut third = TcpStream::connect(address).await.unwrap();
        let fourth = TcpStream::connect(address).await.unwrap();
        // The third is refused inside poll_next, which then waits for the fourth: also refused.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), incoming.next())
                .await
                .is_err(),
            "no connection over the limit is handed to the server"
        );
        assert!(closed(&mut third).await, "the third connection is closed");
        assert_eq!(metrics.connections_refused(), 2);
        assert_eq!(metrics.connections_open(), 2);
        drop(fourth);
        drop(accepted.pop());
        let _fifth = TcpStream::connect(address).await.unwrap();
        let fifth = tokio::time::timeout(Duration::from_secs(1), incoming.next())
            .await
            .expect("a freed slot takes the next connection")
            .unwrap()
            .unwrap();
        assert_eq!(fifth.connect_info().remote_addr.unwrap().ip(), address.ip());
        assert_eq!(metrics.connections_open(), 2);
    }

    #[tokio::test]
    async fn the_total_limit_holds_across_addresses() {
        let limits = Limits {
            total: 1,
            per_address: 5,
            idle: Duration::from_secs(60),
        };
        let (address, mut incoming, metrics) = listening(limits).await;
        let _first = TcpStream::connect(address).await.unwrap();
        let _held = incoming.next().await.unwrap().unwrap();
        let mut second = TcpStream::connect(address).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(closed(&mut second).await);
        assert_eq!(metrics.connections_refused(), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_fails_and_a_moving_one_lives() {
        let limits = Limits {
            total: 10,
            per_address: 10,
            idle: Duration::from_millis(300),
        };
        let (address, mut incoming, _metrics) = listening(limits).await;
        let mut client = TcpStream::connect(address).await.unwrap();
        let mut server = incoming.next().await.unwrap().unwrap();
        // Bytes every 100 ms for 600 ms: twice the idle time, never idle.
        let mut buf = [0u8; 4];
        for _ in 0..6 {
            client.write_all(b"ping").await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let started = std::time::Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}
