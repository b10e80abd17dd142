//! Shared harness for the integration tests: the real topology (started by
//! `scripts/topology.sh`), and an rwsplit started in-process on an ephemeral port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};

pub const PRIMARY_PORT: u16 = 3306;
pub const REPLICA_PORTS: [u16; 2] = [3307, 3308];

pub fn repo_root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// Makes sure the topology is up (idempotent).
pub fn topology_up() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let up = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if up(PRIMARY_PORT) && REPLICA_PORTS.iter().all(|&p| up(p)) {
            return;
        }
        let st = Command::new(format!("{}/scripts/topology.sh", repo_root()))
            .arg("up")
            .status()
            .expect("run scripts/topology.sh");
        assert!(st.success(), "scripts/topology.sh up failed");
    });
}

/// Runs a topology command (`stop-sql replica1`, `kill replica2`, ...).
pub fn topology(args: &[&str]) -> String {
    let out = Command::new(format!("{}/scripts/topology.sh", repo_root()))
        .args(args)
        .output()
        .expect("run scripts/topology.sh");
    assert!(
        out.status.success(),
        "topology.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test config (`config/test.toml`) with `edit` applied to its text.
pub fn test_config(edit: impl FnOnce(String) -> String) -> rwsplit::config::Config {
    let text = std::fs::read_to_string(format!("{}/config/test.toml", repo_root()))
        .expect("read config/test.toml");
    rwsplit::config::Config::from_toml_str(&edit(text)).expect("valid test config")
}

/// The test config with `root` (password `root`) among rwsplit's users, for tests that need
/// a privilege `app` lacks.
pub fn with_root_user(config: String) -> String {
    config.replace(
        "[[users]]",
        "[[users]]\nname = \"root\"\npassword = \"root\"\n\n[[users]]",
    )
}

/// The test config with `settings` (TOML lines) in its `[pool]` section; a `checkout_timeout`
/// among them replaces the test config's own.
pub fn pool_settings(config: String, settings: &str) -> String {
    const ANCHOR: &str = "checkout_timeout = \"2s\"";
    assert!(config.contains(ANCHOR), "config/test.toml's [pool] changed");
    let kept = if settings.contains("checkout_timeout") {
        String::new()
    } else {
        format!("{ANCHOR}\n")
    };
    config.replace(ANCHOR, &format!("{kept}{settings}"))
}

/// A running rwsplit; it lives as long as the test process.
pub struct Proxy {
    pub addr: SocketAddr,
    /// The proxy's state, for tests that look inside (pool gauges, health).
    pub shared: std::sync::Arc<rwsplit::session::Shared>,
    /// The admin API's address.
    pub admin: SocketAddr,
}

impl Proxy {
    /// Waits (up to 5 s) until session `id`'s `/sessions` entry satisfies `pred`.
    pub async fn wait_session(
        &self,
        id: u32,
        what: &str,
        pred: impl Fn(&rwsplit::session::SessionInfo) -> bool,
    ) {
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            what,
            async || {
                let sessions = self.shared.sessions.lock().expect("sessions");
                match sessions.get(&id).map(|i| i.lock().expect("info").clone()) {
                    Some(i) if pred(&i) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    /// Starts rwsplit with `config/test.toml` on an ephemeral port.
    pub fn start() -> Proxy {
        Self::start_with(|t| t)
    }

    pub fn start_with(edit: impl FnOnce(String) -> String) -> Proxy {
        topology_up();
        let mut config = test_config(edit);
        // Logs go to the test's output (shown when it fails); RUST_LOG=debug for more.
        rwsplit::init_logging(&config.logging);
        config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
        if config.admin.listen.is_some() {
            config.admin.listen = Some("127.0.0.1:0".parse().expect("addr"));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = rwsplit::server::bind(&config).await.expect("bind");
                let admin = rwsplit::admin::bind(&config).await.expect("bind admin");
                let shared = rwsplit::server::build(config);
                let admin_addr = match admin {
                    Some(a) => {
                        let addr = a.local_addr().expect("admin addr");
                        tokio::spawn(rwsplit::admin::serve(a, shared.clone()));
                        addr
                    }
                    None => "0.0.0.0:0".parse().expect("addr"),
                };
                tx.send((
                    listener.local_addr().expect("addr"),
                    shared.clone(),
                    admin_addr,
                ))
                .expect("send addr");
                rwsplit::server::serve(listener, shared, std::future::pending()).await;
            });
        });
        let (addr, shared, admin) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy started");
        Proxy {
            addr,
            shared,
            admin,
        }
    }

    /// Waits (up to 10 s) until every backend has been checked once and a replica may take
    /// reads (up, within `max_replica_lag`). rwsplit serves after the first checks or 1.5 s,
    /// whichever comes first; on a loaded machine (CI, every test binary at once) a read routed
    /// before the replicas' first check, or while other tests' writes keep them behind, goes
    /// to the primary. Async: a test's own forwarder in front of a backend must keep running
    /// meanwhile.
    pub async fn replica_ready(&self) {
        let health = &self.shared.health;
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(10),
            "every backend checked once and a replica eligible",
            async || {
                let snap = health.snapshot.load();
                match health.checked_once() && snap.backends.iter().any(rwsplit::route::eligible) {
                    true => Ok(()),
                    false => Err("not yet"),
                }
            },
        )
        .await;
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!("mysql://{user}:{password}@{}/app", self.addr)
    }

    pub fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.addr.ip().to_string())
            .tcp_port(self.addr.port())
            .user(Some("app"))
            .pass(Some("app"))
            .db_name(Some("app"))
            .prefer_socket(false)
    }

    /// GETs an admin API path: (status code, body). A plain HTTP/1.0 request, no client crate.
    pub async fn admin_get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        self.admin_request("GET", path, token).await
    }

    /// Any admin API request: (status code, body).
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.admin)
            .await
            .expect("connect to the admin API");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let req =
            format!("{method} {path} HTTP/1.0\r\nHost: rwsplit\r\nContent-Length: 0\r\n{auth}\r\n");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (code, body)
    }

    pub async fn conn(&self) -> Conn {
        Conn::new(self.opts())
            .await
            .expect("connect through rwsplit")
    }
}

/// A direct connection to one server, as root (for checks and setup).
pub async fn direct(port: u16) -> Conn {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some("root"))
        .prefer_socket(false);
    Conn::new(Opts::from(opts))
        .await
        .expect("direct connection")
}

/// Turns the servers' per-user statement counts (`information_schema.USER_STATISTICS`) on. The
/// topology starts with them on, but the benchmark turns them off while it runs: a test that
/// reads them must not pass on counts that were never kept.
pub async fn user_statistics_on() {
    for port in std::iter::once(PRIMARY_PORT).chain(REPLICA_PORTS) {
        direct(port)
            .await
            .query_drop("SET GLOBAL userstat = 1")
            .await
            .expect("turn userstat on");
    }
}

pub async fn server_id(port: u16) -> u64 {
    let mut c = direct(port).await;
    c.query_first("SELECT @@server_id")
        .await
        .expect("server_id")
        .expect("row")
}

/// The backend thread (connection id) of the session's primary connection, through rwsplit.
pub async fn primary_thread(c: &mut Conn) -> u64 {
    c.query_first("/* rwsplit:primary */ SELECT CONNECTION_ID()")
        .await
        .expect("connection id")
        .expect("row")
}

/// Kills server thread `thread` on the server at `port`, as a crash or a network cut would end
/// that connection.
pub async fn kill_thread(port: u16, thread: u64) {
    direct(port)
        .await
        .query_drop(format!("KILL {thread}"))
        .await
        .expect("kill the server thread");
}

/// Kills the server thread of `c`'s primary connection (the primary at `port`) once it is idle
/// in rwsplit's pool, as a restart or `wait_timeout` would close it, and checks that the
/// session's next statements run on another connection instead of failing on that one.
pub async fn closed_primary_connection_is_not_lent_again(c: &mut Conn, port: u16) {
    let old = primary_thread(c).await;
    kill_thread(port, old).await;
    let mut root = direct(port).await;
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the killed thread is gone",
        async || {
            let n: Option<u64> = root
                .query_first(format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {old}"
                ))
                .await
                .map_err(|e| e.to_string())?;
            match n {
                Some(0) => Ok(()),
                n => Err(format!("{n:?} left")),
            }
        },
    )
    .await;
    // The close reaches rwsplit's reactor at once on loopback; a little margin.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        let now = primary_thread(c).await;
        assert_ne!(now, old, "the closed connection was lent again");
    }
}

/// After a backend connection died holding the session's `lost` (as the error words it):
/// `failing` gets an error that names it and says the connection closes, and `next` fails too,
/// since the session must not go on without it.
pub async fn assert_lost_and_closed(c: &mut Conn, failing: &str, lost: &str, next: &str) {
    let e = c
        .query_drop(failing)
        .await
        .expect_err("the connection that held it is gone")
        .to_string();
    assert!(
        e.contains(lost) && e.contains("closes this connection"),
        "the error says what was lost ({lost}) and that the connection closes: {e}"
    );
    assert!(
        c.query_drop(next).await.is_err(),
        "the session went on without its {lost}"
    );
}

/// The Unix socket of one server of the main topology (`primary`, `replica1`, `replica2`).
pub fn socket_path(server: &str) -> String {
    let dir = std::env::var("RWSPLIT_TOPO_DIR").unwrap_or_else(|_| "/tmp/rwsplit-topology".into());
    format!("{dir}/{server}/mysqld.sock")
}

/// A name unique to this test run, for tables. The process id alone repeats across runs
/// against a topology left up, where a table of a failed earlier run may still be (a test
/// then failed on "already exists"): the run's start time is part of the name too.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    });
    format!(
        "{prefix}_{}_{:x}_{}",
        std::process::id(),
        started % (1 << 40),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until every replica has applied what the primary has written.
pub fn wait_sync() {
    topology(&["wait-sync"]);
}

/// A second topology for tests that inject faults (kill, stop, lag), so they never disturb
/// the tests sharing the main one. `.config/nextest.toml` runs those tests one at a time.
pub mod faults {
    use super::*;

    pub const BASE: u16 = 3316;
    pub const DIR: &str = "/tmp/rwsplit-topology-faults";

    /// Runs a topology command against the fault topology.
    pub fn topology(args: &[&str]) -> String {
        let out = Command::new(format!("{}/scripts/topology.sh", repo_root()))
            .args(args)
            .env("RWSPLIT_TOPO_DIR", DIR)
            .env("RWSPLIT_TOPO_PORT", BASE.to_string())
            .output()
            .expect("run scripts/topology.sh");
        assert!(
            out.status.success(),
            "topology.sh {args:?} (fault topology) failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Brings every instance of the fault topology up and in sync, whatever an earlier test
    /// left behind.
    pub fn healthy() {
        topology(&["up"]);
        for r in ["replica1", "replica2"] {
            topology(&["unlag", r]);
        }
        topology(&["wait-sync"]);
    }

    /// rwsplit over the fault topology.
    pub fn proxy() -> Proxy {
        proxy_with(|t| t)
    }

    /// rwsplit over the fault topology, with `edit` applied to the test config first.
    pub fn proxy_with(edit: impl FnOnce(String) -> String) -> Proxy {
        Proxy::start_with(|t| {
            edit(t)
                .replace("127.0.0.1:3306", &format!("127.0.0.1:{BASE}"))
                .replace("127.0.0.1:3307", &format!("127.0.0.1:{}", BASE + 1))
                .replace("127.0.0.1:3308", &format!("127.0.0.1:{}", BASE + 2))
        })
    }

    /// Starts an instance again when dropped, even when the test panics, so the next fault
    /// test finds the topology whole.
    pub struct Restart(pub &'static str);

    impl Drop for Restart {
        fn drop(&mut self) {
            quiet(&["start", self.0]);
        }
    }

    /// Restarts a replica's SQL thread when dropped.
    pub struct StartSql(pub &'static str);

    impl Drop for StartSql {
        fn drop(&mut self) {
            quiet(&["start-sql", self.0]);
        }
    }

    /// Removes a replica's MASTER_DELAY when dropped.
    pub struct Unlag(pub &'static str);

    impl Drop for Unlag {
        fn drop(&mut self) {
            quiet(&["unlag", self.0]);
        }
    }

    /// Runs topology commands when dropped (in order), even when the test panics.
    pub struct Heal(pub Vec<Vec<&'static str>>);

    impl Drop for Heal {
        fn drop(&mut self) {
            for args in &self.0 {
                quiet(args);
            }
        }
    }

    /// Runs a topology command from a destructor: reports failure, never panics.
    fn quiet(args: &[&str]) {
        let st = Command::new(format!("{}/scripts/topology.sh", repo_root()))
            .args(args)
            .env("RWSPLIT_TOPO_DIR", DIR)
            .env("RWSPLIT_TOPO_PORT", BASE.to_string())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            eprintln!("topology.sh {args:?} on the fault topology failed");
        }
    }
}

/// Both ways a result set can end for a raw client: EOF packets, or OK packets
/// (CLIENT_DEPRECATE_EOF).
pub const EOF_STYLES: [mysql_common::constants::CapabilityFlags; 2] = [
    mysql_common::constants::CapabilityFlags::empty(),
    mysql_common::constants::CapabilityFlags::CLIENT_DEPRECATE_EOF,
];

/// rwsplit's own backend client, pointed at the proxy: it sends raw command packets.
pub async fn raw_client(
    proxy: &Proxy,
    caps: mysql_common::constants::CapabilityFlags,
) -> rwsplit::pool::BackendConn {
    raw_client_at(&proxy.addr.to_string(), caps).await
}

/// `raw_client` at `address` (the proxy's, or a server's to compare with), as app in `app`.
pub async fn raw_client_at(
    address: &str,
    caps: mysql_common::constants::CapabilityFlags,
) -> rwsplit::pool::BackendConn {
    let creds = rwsplit::protocol::connect::Credentials {
        user: "app",
        password: "app",
        database: Some("app"),
        capabilities: caps,
        collation: 45,
    };
    let plain = rwsplit::tls::BackendTls::default();
    rwsplit::pool::BackendConn::connect(address, &creds, Duration::from_secs(5), &plain, address)
        .await
        .unwrap_or_else(|e| panic!("raw login at {address}: {e}"))
}

/// COM_STMT_SEND_LONG_DATA of `data` for parameter 0 of statement `stmt` (the id bytes
/// `raw_prepare` returned).
pub fn long_data(stmt: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let command = rwsplit::protocol::Command::StmtSendLongData as u8;
    [&[command][..], stmt, &[0, 0], data].concat()
}

/// COM_STMT_PREPARE of `sql` by a raw client: the statement id rwsplit gave it, as the bytes
/// a COM_STMT_* packet carries.
pub async fn raw_prepare(raw: &mut rwsplit::pool::BackendConn, sql: &str) -> [u8; 4] {
    let packet = [
        &[rwsplit::protocol::Command::StmtPrepare as u8][..],
        sql.as_bytes(),
    ]
    .concat();
    let o = raw
        .run_internal(
            &packet,
            rwsplit::protocol::response::ResponseKind::StmtPrepare,
        )
        .await
        .expect("prepare")
        .unwrap_or_else(|e| panic!("prepare {sql}: error {}", e.code()));
    o.prepared.expect("PREPARE_OK").statement_id.to_le_bytes()
}

/// Creates a table named by `unique(prefix)` with `columns` through `c`, and returns its name.
pub async fn create_table(c: &mut Conn, prefix: &str, columns: &str) -> String {
    let t = unique(prefix);
    c.query_drop(format!("CREATE TABLE {t} ({columns})"))
        .await
        .expect("create");
    t
}

/// Sums the samples of `metric` whose labels include every `label="value"` in `filter`.
pub fn metric_sum(text: &str, metric: &str, filter: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name_labels, value) = l.rsplit_once(' ')?;
            let (name, labels) = match name_labels.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (name_labels, ""),
            };
            (name == metric && filter.iter().all(|f| labels.contains(f)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// The server's error code, for an error the server (or rwsplit for it) sent.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `probe` every `every` until it gives `Ok`, for at most `within`; past that, panics with
/// `what` and the last `Err`.
pub async fn eventually<T, E: std::fmt::Display>(
    within: Duration,
    every: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{what}: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// A self-signed certificate and its key (PEM) for `localhost`, made by the openssl command
/// line in a fresh directory.
pub fn self_signed() -> (String, String) {
    let dir = std::env::temp_dir().join(unique("rwsplit_tls"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout", &key, "-out", &cert])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}
