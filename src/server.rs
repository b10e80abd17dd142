//! The listener: accepts clients, bounds their number, and shuts down gracefully.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::error::ClientError;
use crate::monitor::{self, Health};
use crate::net::{Listeners, UnixSocket};
use crate::pool::{Pools, Target};
use crate::protocol::frame;
use crate::session::{self, Shared};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}{}", in_use_hint(source))]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on the Unix socket {path} (proxy.socket): {source}")]
    BindSocket {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What a DBA should look at when the address is taken.
fn in_use_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        " (another program listens there; two rwsplits share an address only when both have \
         proxy.reuse_port = true)"
    } else {
        ""
    }
}

/// How long sessions get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Builds the shared state and starts the monitor.
pub fn build(config: Config) -> Arc<Shared> {
    crate::metrics::handle();
    let config = Arc::new(config);
    let targets = config.backends.iter().map(Target::from).collect();
    let pools = Pools::new(targets, config.clone());
    let login = Arc::new((config.monitor.user.clone(), config.monitor.password.clone()));
    let slots: crate::session::Slots = Arc::new(arc_swap::ArcSwap::from_pointee(
        config
            .backends
            .iter()
            .cloned()
            .map(|b| crate::session::BackendSlot::new(b, login.clone()))
            .collect(),
    ));
    let health = Health::new(&config, slots.clone());
    let shared = Shared::new(config, slots, pools, health);
    monitor::spawn(&shared);
    shared
}

/// Binds the configured address, and the Unix socket if one is configured.
pub async fn bind(config: &Config) -> Result<Listeners, ServerError> {
    let addr = config.proxy.listen;
    let reuse = config.proxy.reuse_port;
    let tcp = listen(addr, reuse).map_err(|source| ServerError::Bind { addr, source })?;
    if reuse && migrate_req_off() {
        tracing::info!(
            "net.ipv4.tcp_migrate_req = 0: when an old rwsplit sharing this port exits, the \
             connections the kernel queued on its listener are reset; set it to 1 for restarts \
             that reset no client"
        );
    }
    let unix =
        match &config.proxy.socket {
            Some(path) => Some(UnixSocket::bind(path, reuse).await.map_err(|source| {
                ServerError::BindSocket {
                    path: path.clone(),
                    source,
                }
            })?),
            None => None,
        };
    Ok(Listeners { tcp, unix })
}

/// Whether Linux resets, rather than moves to another listener of the port, the connections
/// queued on a listener that closes (`net.ipv4.tcp_migrate_req`, Linux 5.14+). The old process
/// of a restart takes what is queued before it closes, but a connection can land between its
/// last accept and the close.
fn migrate_req_off() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "0")
}

/// A listening socket; with `reuse_port`, SO_REUSEPORT lets a new rwsplit bind the same address
/// while the old one drains (zero-downtime restarts).
pub fn listen(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(reuse_port)?;
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts clients until `shutdown` resolves, then waits for sessions to end (up to a drain
/// timeout).
pub async fn serve(
    mut listener: Listeners,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Route the first clients on facts: wait (briefly) for one check of every backend.
    let m = &shared.config().monitor;
    shared.health.first_round(m.timeout * 2 + m.interval).await;
    // Ready: only now does the Unix socket take its path (from a predecessor, if one serves it).
    if let Some(u) = listener.unix.as_mut() {
        match u.publish() {
            Ok(()) => tracing::info!(socket = %u.path().display(), "serving the Unix socket"),
            Err(e) => {
                tracing::error!(error = %e, "cannot put the Unix socket in place (proxy.socket); serving TCP only");
                listener.unix = None;
            }
        }
    }
    let limit = Arc::new(Semaphore::new(shared.config().proxy.max_client_connections));
    let max = shared.config().proxy.max_client_connections;
    tokio::pin!(shutdown);
    // Accept errors (out of file descriptors, mostly) are logged once per 10 s, with a count.
    let mut accept_failed: (Option<std::time::Instant>, u64) = (None, 0);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_failed.1 += 1;
                    if accept_failed.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, failures = accept_failed.1, "accept failed (see the open files limit at startup)");
                        accept_failed = (Some(std::time::Instant::now()), 0);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        metrics::counter!(crate::metrics::CLIENTS_TOTAL).increment(1);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, max, "refusing client: proxy.max_client_connections reached");
            metrics::counter!(crate::metrics::CLIENTS_REFUSED, "reason" => "max_client_connections")
                .increment(1);
            tokio::spawn(async move {
                let (_r, mut w) = stream.into_split();
                let e = ClientError::too_many_connections("proxy.max_client_connections reached");
                let _ = frame::write_packet(&mut w, 0, &e.payload()).await;
                let _ = tokio::io::AsyncWriteExt::flush(&mut w).await;
            });
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.clients_open.fetch_add(1, Ordering::Relaxed);
            session::run(stream, peer, shared.clone()).await;
            shared.clients_open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Connections the kernel already queued for this listener would be reset when it closes:
    // take them (and serve them) first.
    loop {
        let next = tokio::select! {
            biased;
            r = listener.accept() => r,
            _ = std::future::ready(()) => break,
        };
        let Ok((stream, peer)) = next else { break };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            break;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            session::run(stream, peer, shared).await;
            drop(permit);
        });
    }
    drop(listener);
    shared.stop();
    tracing::info!("stopped accepting clients; waiting for sessions to finish");
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN, limit.acquire_many(all)).await;
}

/// Raises the soft limit on open files to the hard limit: each client and each backend
/// connection is a descriptor, and the usual soft limit (1024) is far below
/// `proxy.max_client_connections`. Says so when even the hard limit is short of what the
/// config allows.
pub fn raise_open_files_limit(config: &Config) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return;
        }
        let was = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                lim.rlim_cur = was;
            }
        }
        let backends: u64 = config
            .backends
            .iter()
            .map(|b| u64::from(b.pool.max_connections))
            .sum();
        let needed = config.proxy.max_client_connections as u64 + backends + 64;
        if lim.rlim_cur < needed {
            tracing::warn!(
                open_files = lim.rlim_cur,
                needed,
                "the open files limit (ulimit -n) is below proxy.max_client_connections plus the backends' max_connections: past it, clients are not accepted and backend connections fail"
            );
        } else if lim.rlim_cur != was {
            tracing::info!(from = was, to = lim.rlim_cur, "raised the open files limit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `proxy.reuse_port`: on (the default), a second rwsplit binds the address of a running one
    /// (a restart that overlaps the old process); off, the second is refused with a hint.
    #[tokio::test]
    async fn a_second_listener_shares_the_address_only_with_reuse_port() {
        let first = listen("127.0.0.1:0".parse().expect("addr"), true).expect("first");
        let addr = first.local_addr().expect("addr");
        let second = listen(addr, true).expect("a second listener with reuse_port");
        drop((first, second));

        let first = listen("127.0.0.1:0".parse().expect("addr"), false).expect("first");
        let addr = first.local_addr().expect("addr");
        for reuse in [false, true] {
            let source = listen(addr, reuse).expect_err("the address is taken");
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            let msg = ServerError::Bind { addr, source }.to_string();
            assert!(msg.contains("proxy.reuse_port = true"), "{msg}");
        }
    }
}
