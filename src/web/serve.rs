//! The accept loop. `axum::serve` has no bounds at all: a client that trickles its headers a
//! byte at a time holds a connection (and a file descriptor) forever, and 20 000 of them take
//! the service down. Here every connection is served by hyper's HTTP/1 with a header-read
//! timeout, closed when it goes idle, and counted against a global cap (kept below the
//! open-file limit) and a cap per client address; a stop lets in-flight requests finish.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::Service;

use super::fast::MakeApp;
use crate::config::HttpConfig;

/// File descriptors kept free of connections: the database pool, uploads, logs.
const FD_RESERVE: u64 = 256;

/// The bounds every connection is served under (`[http]` in the configuration).
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// 0: no cap per address.
    pub max_per_ip: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    /// The configured bounds. Behind a proxy (`trust_forwarded_for`) every connection comes from
    /// the proxy, so there is no cap per address. Raises the open-file limit to its maximum and
    /// keeps the connection cap below it.
    pub fn from_config(http: &HttpConfig, behind_proxy: bool) -> Limits {
        let mut max_connections = http.max_connections.max(1);
        if let Some(files) = raise_open_file_limit() {
            let room = files.saturating_sub(FD_RESERVE).max(16);
            if (max_connections as u64) > room {
                tracing::warn!(
                    configured = max_connections,
                    open_file_limit = files,
                    "http.max_connections lowered to stay below the open-file limit"
                );
                max_connections = room as usize;
            }
        }
        Limits {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(http.idle_timeout_secs.max(1)),
            max_connections,
            max_per_ip: if behind_proxy { 0 } else { http.max_connections_per_ip },
            max_header_bytes: http.max_header_bytes.max(1024),
        }
    }
}

/// Raises the soft open-file limit to the hard one; the soft limit now in force.
fn raise_open_file_limit() -> Option<u64> {
    // SAFETY: plain libc calls on this process's own limits, with a properly initialised struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        Some(r.rlim_cur)
    }
}

/// Serves `make`'s connections from `listener` until `shutdown` resolves, then stops accepting,
/// lets every connection finish its request in flight, and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    make: MakeApp,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerAddress::default());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a clone of `open_rx`: all are closed once `open_tx.closed()` returns.
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        // A permit first: at the cap, connections wait in the listen backlog, not in memory.
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // Out of file descriptors or the like: wait instead of spinning.
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
        };
        let Some(address) = per_ip.enter(peer.ip(), limits.max_per_ip) else {
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Connection {
            stream,
            peer,
            app: make.clone(),
            http: http.clone(),
            idle: limits.idle_timeout,
            stop: stop_rx.clone(),
            open: open_rx.clone(),
        };
        tokio::spawn(async move {
            conn.run().await;
            drop(address);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// Errors that concern one connection only (the client went away before it was accepted).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    app: MakeApp,
    http: Arc<hyper::server::conn::http1::Builder>,
    idle: Duration,
    stop: watch::Receiver<bool>,
    open: watch::Receiver<()>,
}

impl Connection {
    async fn run(self) {
        let Connection { stream, peer, app, http, idle, mut stop, open } = self;
        let progress = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Tracked { inner: stream, progress: progress.clone() });
        let app = app.connection(peer);
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            app.call(req.map(Body::new))
        });
        let mut conn = pin!(http.serve_connection(io, svc));
        // Checked every half of the idle timeout: no byte read or written in two checks in a
        // row closes the connection (so after between one and one and a half timeouts).
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + idle / 2, idle / 2);
        let (mut seen, mut quiet) = (0u64, 0u32);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = check.tick() => {
                    let now = progress.load(Ordering::Relaxed);
                    if now != seen {
                        (seen, quiet) = (now, 0);
                    } else {
                        quiet += 1;
                        if quiet >= 2 {
                            metrics::counter!("http_connections_idle_closed_total").increment(1);
                            break;
                        }
                    }
                }
            }
        }
        drop(open);
    }
}

/// A TCP stream that counts the reads and writes that moved bytes, for the idle check.
struct Tracked {
    inner: TcpStream,
    progress: Arc<AtomicU64>,
}

impl Tracked {
    fn moved(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Open connections per client address (IPv6: per /64, which one subscriber usually holds).
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One open connection of an address; leaving decrements its count.
struct Entered {
    map: Arc<PerAddress>,
    key: Option<IpAddr>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut m = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }
}

impl PerAddress {
    /// Counts a connection from `ip`; `None` when the address already has `max` (0: no cap).
    fn enter(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Entered> {
        if max == 0 {
            return Some(Entered { map: self.clone(), key: None });
        }
        let key = address_key(ip);
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Entered { map: self.clone(), key: Some(key) })
    }
}

/// The unit a client address is counted in: an IPv4 address (also when IPv4-mapped), or an IPv6
/// address's /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(address_key(mapped), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_address_gets_at_most_its_cap_and_a_closed_connection_frees_its_place() {
        let p = Arc::new(PerAddress::default());
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let first = p.enter(ip, 2).unwrap();
        let _second = p.enter(ip, 2).unwrap();
        assert!(p.enter(ip, 2).is_none());
        assert!(p.enter("198.51.100.8".parse().unwrap(), 2).is_some());
        drop(first);
        assert!(p.enter(ip, 2).is_some());
        assert!(p.enter(ip, 0).is_some(), "0: no cap");
    }
}
