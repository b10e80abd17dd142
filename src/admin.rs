//! The HTTP admin API: `/health`, `/ready`, `/metrics`, `/backends`, `/sessions`, `/queries`,
//! `/config`.
//! Loopback by default (`[admin] listen`); with `[admin] token`, everything but the health and
//! readiness probes wants `Authorization: Bearer <token>`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::config::{Config, Role};
use crate::session::Shared;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} (admin.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `[admin] listen`, if the admin API is on.
pub async fn bind(config: &Config) -> Result<Option<TcpListener>, AdminError> {
    let Some(addr) = config.admin.listen else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() && config.admin.token.is_none() {
        tracing::warn!(%addr, "the admin API listens beyond loopback without admin.token: anyone who reaches it sees sessions and config and can reload; set admin.token_env or keep the port private");
    }
    crate::server::listen(addr, config.proxy.reuse_port)
        .map(Some)
        .map_err(|source| AdminError::Bind { addr, source })
}

/// Serves the admin API until the process ends: at most `[admin] max_connections` at once,
/// each closed when no whole request came within `[admin] idle_timeout` (`BoundedIo`).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let (max, idle) = {
        let c = shared.config();
        (c.admin.max_connections, c.admin.idle_timeout)
    };
    let app = router(shared);
    let listener = Bounded {
        listener,
        permits: Arc::new(Semaphore::new(max)),
        idle,
    };
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the admin API stopped");
    }
}

/// The admin listener, bounded: hyper keeps a connection as long as its peer does, so idle or
/// half-sent requests would otherwise pile up until the process runs out of file descriptors
/// and refuses MySQL clients. (Hand-written: axum's `serve` has no such limit, and hyper's
/// header timeout alone would not close an idle keep-alive or a stalled reader.)
struct Bounded {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl axum::serve::Listener for Bounded {
    type Io = BoundedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedIo, SocketAddr) {
        // Past the limit, new connections wait in the kernel's backlog, holding no descriptor.
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => std::future::pending().await,
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let idle = self.idle;
        let io = BoundedIo {
            stream,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        };
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admin connection: its permit, and a deadline that only a response written pushes back. A
/// request must arrive whole within `idle` of the connection's start or of the last response:
/// a client trickling a byte at a time cannot hold its slot (reads do not count), nor can an
/// idle keep-alive.
struct BoundedIo {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl BoundedIo {
    /// After a poll of the stream: a response written (`wrote`) moves the deadline; waiting
    /// past it is an error, which makes hyper close the connection.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
        wrote: bool,
    ) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                if wrote {
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no whole admin request within admin.idle_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for BoundedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.watch(cx, polled, false)
    }
}

impl AsyncWrite for BoundedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        let wrote = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.watch(cx, polled, wrote)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch(cx, polled, false)
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/backends", get(backends))
        .route("/config", get(config))
        .route("/sessions", get(sessions))
        .route("/queries", get(queries))
        .route("/reload", axum::routing::post(reload))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .merge(protected)
        .with_state(shared)
}

async fn auth(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = &shared.config().admin.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compared in constant time: the time taken does not tell how much of a guess matched.
        let matches = given.is_some_and(|g| {
            crate::protocol::auth::constant_time_eq(g.as_bytes(), token.as_bytes())
        });
        if !matches {
            return (StatusCode::UNAUTHORIZED, "admin.token required\n").into_response();
        }
    }
    next.run(req).await
}

/// 200 when rwsplit can serve writes: every backend checked once, exactly one primary, and it
/// is up. For load balancers.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    if shared.stopping() {
        // Load balancers stop sending clients while the sessions drain.
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if !shared.health.checked_once() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: backends not checked yet\n",
        )
            .into_response();
    }
    let snap = shared.health.snapshot.load();
    match crate::route::sole_primary(&snap.backends) {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(crate::route::RouteError::NoPrimary) => {
            (StatusCode::SERVICE_UNAVAILABLE, "no primary is up\n").into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "split brain: more than one backend is writable\n",
        )
            .into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&shared),
    )
        .into_response()
}

async fn backends(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(backends_json(&shared))
}

/// Every backend's state as the monitor and the pools see it.
pub fn backends_json(shared: &Shared) -> Value {
    let snap = shared.health.snapshot.load();
    let pools = shared.pools.stats();
    let slots = shared.backends.load();
    let list: Vec<Value> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.removed)
        .map(|(i, slot)| {
            let cfg = &slot.config;
            let b = snap.backends.get(i);
            let st = snap.status.get(i);
            let pool = pools.get(i);
            json!({
                "name": cfg.name,
                "address": cfg.address,
                "configured_role": role(cfg.role),
                "role": b.map(|b| role(b.role)),
                "up": b.map(|b| b.up),
                "takes_reads": b.map(|b| b.role == Role::Replica && b.up && b.lag_ok && b.weight > 0),
                "excluded": st.and_then(|s| s.excluded).map(|e| e.to_string()),
                "read_only": st.and_then(|s| s.read_only),
                "lag_seconds": st.and_then(|s| s.lag_ms).map(|ms| ms as f64 / 1000.0),
                "gtid_behind": st.and_then(|s| s.gtid_behind),
                "gtid": st.and_then(|s| s.gtid.clone()),
                "weight": cfg.weight,
                "tls": cfg.tls.mode.name(),
                "max_replica_lag_seconds": cfg.max_replica_lag.as_secs_f64(),
                "in_flight": shared.outstanding.get(i).map(|o| o.load(std::sync::atomic::Ordering::Relaxed)),
                "pool": pool.map(|p| json!({"in_use": p.in_use, "idle": p.idle, "max": p.max, "waiting": p.waiting})),
            })
        })
        .collect();
    Value::Array(list)
}

/// Reads the config file again and applies it, or says why not (the old config keeps serving).
async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match crate::reload::reload_file(&shared).await {
        Ok(summary) => (StatusCode::OK, summary + "\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "config reload refused");
            (StatusCode::BAD_REQUEST, format!("reload refused: {e}\n")).into_response()
        }
    }
}

/// Live sessions, like SHOW PROCESSLIST: user, client, schema, state, current or last
/// statement digest, backend, seconds in the state.
async fn sessions(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let list: Vec<crate::session::SessionInfo> = {
        let map = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .map(|i| {
                let mut i = i.lock().unwrap_or_else(|p| p.into_inner()).clone();
                i.seconds = i.since.elapsed().as_secs_f64();
                i
            })
            .collect()
    };
    let mut list = list;
    list.sort_by_key(|i| i.id);
    axum::Json(json!(list))
}

/// The top statement digests by total time (`?limit=N`, default 50).
async fn queries(State(shared): State<Arc<Shared>>, uri: axum::http::Uri) -> axum::Json<Value> {
    let limit = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("limit=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50usize);
    axum::Json(json!({
        "digests_held": shared.insight.len(),
        "max_digests": shared.config().insight.max_digests,
        "top": shared.insight.top(limit),
    }))
}

/// GETs `path` from an admin API with a plain HTTP/1.0 request (for `rwsplit status`; no
/// HTTP client crate for one request). Returns the body of a 200 answer.
pub fn fetch(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: rwsplit\r\n{auth}\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(std::io::Error::other(format!(
            "HTTP {status}: {}",
            body.trim()
        )));
    }
    Ok(body.to_string())
}

/// `/backends` as a table for people.
pub fn backends_table(v: &Value) -> String {
    let rows: Vec<[String; 8]> = v
        .as_array()
        .map(|l| {
            l.iter()
                .map(|b| {
                    let s = |k: &str| match &b[k] {
                        Value::Null => "-".to_string(),
                        Value::String(x) => x.clone(),
                        x => x.to_string(),
                    };
                    let reads = match (&b["takes_reads"], &b["excluded"]) {
                        (Value::Bool(true), _) => "yes".to_string(),
                        (_, Value::String(why)) => format!("no: {why}"),
                        _ => "no".to_string(),
                    };
                    let pool = format!(
                        "{}/{} ({} idle)",
                        s_of(&b["pool"]["in_use"]),
                        s_of(&b["pool"]["max"]),
                        s_of(&b["pool"]["idle"])
                    );
                    [
                        s("name"),
                        s("address"),
                        s("role"),
                        if b["up"] == Value::Bool(true) {
                            "up"
                        } else {
                            "DOWN"
                        }
                        .to_string(),
                        reads,
                        s("lag_seconds"),
                        s("gtid_behind"),
                        pool,
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let head = [
        "BACKEND",
        "ADDRESS",
        "ROLE",
        "STATE",
        "READS",
        "LAG_S",
        "GTID_BEHIND",
        "POOL",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    let mut out = line(head.to_vec());
    for r in &rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

fn s_of(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        x => x.to_string(),
    }
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
    }
}

/// The running config with secrets redacted.
async fn config(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let c = shared.config();
    axum::Json(json!({
        "proxy": {
            "listen": c.proxy.listen.to_string(),
            "socket": c.proxy.socket.as_ref().map(|p| p.display().to_string()),
            "max_client_connections": c.proxy.max_client_connections,
            "max_prepared_statements": c.proxy.max_prepared_statements,
            "max_packet_size": c.proxy.max_packet_size,
            "client_idle_timeout_seconds": c.proxy.client_idle_timeout.as_secs_f64(),
            "handshake_timeout_seconds": c.proxy.handshake_timeout.as_secs_f64(),
            "server_version": c.proxy.server_version,
            "tls_cert": c.proxy.tls.as_ref().map(|t| t.cert.display().to_string()),
            "tls_required": c.proxy.tls_required,
        },
        "routing": {
            "max_replica_lag_seconds": c.routing.max_replica_lag.as_secs_f64(),
            "consistency": format!("{:?}", c.routing.consistency),
            "read_your_writes_wait_seconds": c.routing.read_your_writes_wait.as_secs_f64(),
            "least_outstanding": c.routing.least_outstanding,
        },
        "monitor": {
            "interval_seconds": c.monitor.interval.as_secs_f64(),
            "timeout_seconds": c.monitor.timeout.as_secs_f64(),
            "fall": c.monitor.fall,
            "rise": c.monitor.rise,
            "user": c.monitor.user,
            "password": "<redacted>",
            "heartbeat_table": c.monitor.heartbeat_table,
        },
        "users": c.users.iter().map(|u| json!({
            "name": u.name,
            "password": "<redacted>",
            "consistency": format!("{:?}", u.consistency),
        })).collect::<Vec<_>>(),
        "backends": c.backends.iter().map(|b| json!({
            "name": b.name,
            "address": b.address,
            "role": role(b.role),
            "weight": b.weight,
            "max_replica_lag_seconds": b.max_replica_lag.as_secs_f64(),
            "tls": {
                "mode": b.tls.mode.name(),
                "ca": b.tls.ca.as_ref().map(|p| p.display().to_string()),
                "cert": b.tls.identity.as_ref().map(|(c, _)| c.display().to_string()),
            },
            "pool": {
                "max_connections": b.pool.max_connections,
                "min_idle": b.pool.min_idle,
                "idle_timeout_seconds": b.pool.idle_timeout.as_secs_f64(),
                "max_lifetime_seconds": b.pool.max_lifetime.as_secs_f64(),
                "connect_timeout_seconds": b.pool.connect_timeout.as_secs_f64(),
                "checkout_timeout_seconds": b.pool.checkout_timeout.as_secs_f64(),
            },
        })).collect::<Vec<_>>(),
        "admin": {
            "listen": c.admin.listen.map(|a| a.to_string()),
            "token": c.admin.token.as_ref().map(|_| "<redacted>"),
        },
    }))
}
