//! Configuration: one TOML file, validated at load with errors that name the key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

/// What to do with a read when no replica qualifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReplicaPolicy {
    /// Send it to the primary (default).
    Primary,
    /// Fail the statement with a clear error.
    Error,
}

/// What a session's reads are guaranteed to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Replicas within the lag bound; a read right after a write may not see it.
    Eventual,
    /// After the session commits a write, its reads go only where that write already is.
    ReadYourWrites,
    /// Reads go to the primary.
    Strong,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Consistency> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eventual" => Some(Consistency::Eventual),
            "read_your_writes" => Some(Consistency::ReadYourWrites),
            "strong" => Some(Consistency::Strong),
            _ => None,
        }
    }
}

/// The auth plugin the proxy announces to clients in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPluginName {
    MysqlNativePassword,
    CachingSha2Password,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub users: Vec<UserConfig>,
    pub backends: Vec<BackendConfig>,
    /// Defaults for every backend's pool; each backend may override any field.
    pub pool: PoolConfig,
    pub routing: RoutingConfig,
    pub monitor: MonitorConfig,
    pub logging: LoggingConfig,
    pub admin: AdminConfig,
    pub insight: InsightConfig,
}

/// Query insight: per-digest statistics and the slow query log.
#[derive(Debug, Clone)]
pub struct InsightConfig {
    /// Distinct statement digests kept; more are counted under "(other)".
    pub max_digests: usize,
    /// Statements at least this slow are logged (target `rwsplit::slow`).
    pub slow_query_threshold: Duration,
}

/// The HTTP admin API (health, readiness, metrics, backends, config).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens; `None` when `listen = "off"`.
    pub listen: Option<SocketAddr>,
    /// When set, every endpoint but `/health` and `/ready` wants `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Connections served at once; more wait in the listen backlog (they would hold the file
    /// descriptors that MySQL clients need).
    pub max_connections: usize,
    /// A connection must send a whole request within this long of connecting or of its last
    /// response (a half-sent or trickled request, an idle keep-alive are closed).
    pub idle_timeout: Duration,
}

/// The certificate and key clients' TLS is served with, read when the config is (at start and
/// at each reload, so a reload picks up renewed files).
#[derive(Clone)]
pub struct ClientTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl ClientTls {
    fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<ClientTls, ConfigError> {
        let acceptor = crate::tls::acceptor(cert, key).map_err(|e| {
            let key = match e {
                crate::tls::TlsError::Key { .. } => "proxy.tls_key",
                _ => "proxy.tls_cert",
            };
            ConfigError::Invalid {
                key: key.into(),
                message: e.to_string(),
            }
        })?;
        Ok(ClientTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            acceptor,
        })
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// TLS offered to clients (`proxy.tls_cert`, `proxy.tls_key`).
    pub tls: Option<ClientTls>,
    /// Clients that do not ask for TLS are refused (3159), as with the server's
    /// `require_secure_transport`.
    pub tls_required: bool,
    /// A Unix socket clients on this host may connect to as well (an absolute path).
    pub socket: Option<std::path::PathBuf>,
    pub max_client_connections: usize,
    pub max_packet_size: u64,
    pub client_idle_timeout: Duration,
    pub handshake_timeout: Duration,
    /// A client that stops reading what it is sent, or stops sending a packet (or a `LOAD
    /// DATA LOCAL` file) it began, for this long is disconnected (the server's
    /// `net_write_timeout` / `net_read_timeout`): it would hold backend connections.
    pub net_timeout: Duration,
    pub auth_plugin: AuthPluginName,
    /// Overrides the version string mirrored from the primary.
    pub server_version: Option<String>,
    /// A statement running longer is killed on its backend (`KILL QUERY`); `None`: no limit.
    pub query_timeout: Option<Duration>,
    /// SO_REUSEPORT on the listeners, so a new rwsplit can start on the same port while the
    /// old one drains.
    pub reuse_port: bool,
    /// Runtime worker threads; `None`: one per CPU.
    pub worker_threads: Option<usize>,
    /// Binary-protocol prepared statements all sessions together may hold (rwsplit keeps each
    /// one's SQL to prepare it on any connection); past it COM_STMT_PREPARE gets error 1461.
    pub max_prepared_statements: usize,
}

impl ProxyConfig {
    /// Where clients connect, for logs and `check-config`: the TCP address, and the socket.
    pub fn listeners(&self) -> String {
        match &self.socket {
            Some(p) => format!("{} and {}", self.listen, p.display()),
            None => self.listen.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Resolved at load: from `password`, or from the environment variable named by `password_env`.
    pub password: String,
    /// This user's sessions start with this mode (`routing.consistency` unless set).
    pub consistency: Consistency,
    /// This user's statement time limit (`proxy.query_timeout` unless set; `None`: no limit).
    pub query_timeout: Option<Duration>,
    /// Whether this user's sessions share backend connections (`routing.multiplexing` unless set).
    pub multiplexing: bool,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    /// `host:port` as written, resolved when connecting; or the absolute path of the server's
    /// Unix socket (see `net`).
    pub address: String,
    pub role: Role,
    pub weight: u32,
    /// The effective lag bound for reads here (`routing.max_replica_lag` unless overridden).
    pub max_replica_lag: Duration,
    /// The effective pool settings (global `[pool]` with this backend's overrides applied).
    pub pool: PoolConfig,
    /// How connections to this server use TLS (`[backend_tls]`).
    pub tls: crate::tls::BackendTls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub min_idle: u32,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub connect_timeout: Duration,
    pub checkout_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub when_no_replica: NoReplicaPolicy,
    /// Replicas further behind than this take no reads (each backend may override it).
    pub max_replica_lag: Duration,
    /// The default consistency mode of sessions.
    pub consistency: Consistency,
    /// How a session's replica is chosen: least outstanding requests per unit of weight
    /// (default), or by weight alone.
    pub least_outstanding: bool,
    /// Sessions return their backend connections to the pool between statements when nothing
    /// pins them (transaction, temporary table, lock, user variable, ...). Off: a session keeps
    /// the connections it used until it ends (per user: `[[users]] multiplexing`).
    pub multiplexing: bool,
    /// How long a read-your-writes read waits on a replica for the session's last write
    /// before it goes to the primary instead.
    pub read_your_writes_wait: Duration,
    /// `START TRANSACTION READ ONLY` goes where a read would and stays there to its end.
    pub read_only_transactions_on_replica: bool,
}

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failed checks before a backend is marked down.
    pub fall: u32,
    /// Consecutive good checks before a down backend is marked up.
    pub rise: u32,
    /// Who the monitor logs in as; it needs REPLICATION CLIENT / SLAVE MONITOR (MariaDB) or
    /// REPLICATION CLIENT (MySQL) to read replica status. Defaults to the first `[[users]]`.
    pub user: String,
    pub password: String,
    /// `db.table` the monitor writes a timestamp to on the primary and reads on replicas, for
    /// sub-second lag. Off when unset.
    pub heartbeat_table: Option<String>,
    pub heartbeat_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `tracing` env-filter syntax, e.g. "info" or "rwsplit=debug".
    pub level: String,
    pub json: bool,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        raw.into_config()
    }

    pub fn primary(&self) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.role == Role::Primary)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// A TOML error by line and column, without the quoted line `toml` adds: that line may be a
/// password's (an unclosed quote), and this message goes to logs and to `POST /reload`.
fn parse_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|r| r.start.min(text.len()));
    let msg = e.message().trim();
    ConfigError::Parse(match at {
        Some(at) => {
            let before = &text.as_bytes()[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let col = at
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1)
                + 1;
            format!("TOML parse error at line {line}, column {col}: {msg}")
        }
        None => format!("TOML parse error: {msg}"),
    })
}

/// The file as written, before validation. Every table rejects unknown keys.
mod raw {
    use super::*;
    use serde::Deserialize;

    fn at_least_one(key: &str, n: u32) -> Result<u32, ConfigError> {
        if n == 0 {
            return Err(invalid(key, "must be at least 1"));
        }
        Ok(n)
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The longest duration a setting takes: 100 years.
    const MAX_DURATION_DAYS: f64 = 36500.0;

    /// Parses "500ms", "2s", "1.5s", "10m", "8h", "1d".
    pub fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
        let v = v.trim();
        let split = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("\"{v}\" has no unit; write e.g. \"500ms\", \"2s\", \"10m\""),
                )
            })?;
        let (num, unit) = v.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| invalid(key, format!("\"{v}\" is not a duration")))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            u => {
                return Err(invalid(
                    key,
                    format!("unknown unit \"{u}\" in \"{v}\" (use ms, s, m, h or d)"),
                ));
            }
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(invalid(key, format!("\"{v}\" is not a duration")));
        }
        // Longer ones are typos, and past about 10^14 days one would overflow a `Duration` or
        // a deadline computed from it (a panic).
        if secs > MAX_DURATION_DAYS * 86400.0 {
            return Err(invalid(
                key,
                format!("\"{v}\" is too long (at most {MAX_DURATION_DAYS}d)"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    /// Parses "1024", "512KiB", "64MiB", "1GiB".
    pub fn size(key: &str, v: &str) -> Result<u64, ConfigError> {
        let v = v.trim();
        let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        let (num, unit) = v.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| invalid(key, format!("\"{v}\" is not a size")))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" | "KB" => 1 << 10,
            "MiB" | "M" | "MB" => 1 << 20,
            "GiB" | "G" | "GB" => 1 << 30,
            u => {
                return Err(invalid(
                    key,
                    format!("unknown unit \"{u}\" (use KiB, MiB or GiB)"),
                ));
            }
        };
        n.checked_mul(mult).ok_or_else(|| invalid(key, "too large"))
    }

    fn nonzero(key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            return Err(invalid(key, "must be greater than 0"));
        }
        Ok(d)
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        proxy: Proxy,
        #[serde(default)]
        pool: Pool,
        #[serde(default)]
        routing: Routing,
        #[serde(default)]
        monitor: Monitor,
        #[serde(default)]
        logging: Logging,
        #[serde(default)]
        admin: Admin,
        #[serde(default)]
        insight: Insight,
        #[serde(default)]
        backend_tls: BackendTlsRaw,
        #[serde(default)]
        users: Vec<User>,
        #[serde(default)]
        backends: Vec<Backend>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Proxy {
        listen: Option<String>,
        socket: Option<String>,
        max_client_connections: Option<usize>,
        max_packet_size: Option<String>,
        client_idle_timeout: Option<String>,
        handshake_timeout: Option<String>,
        net_timeout: Option<String>,
        auth_plugin: Option<String>,
        server_version: Option<String>,
        query_timeout: Option<String>,
        reuse_port: Option<bool>,
        worker_threads: Option<usize>,
        max_prepared_statements: Option<usize>,
        tls_cert: Option<String>,
        tls_key: Option<String>,
        tls_required: Option<bool>,
    }

    #[derive(Deserialize, Default, Clone)]
    #[serde(deny_unknown_fields)]
    struct Pool {
        max_connections: Option<u32>,
        min_idle: Option<u32>,
        idle_timeout: Option<String>,
        max_lifetime: Option<String>,
        connect_timeout: Option<String>,
        checkout_timeout: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Routing {
        when_no_replica: Option<String>,
        max_replica_lag: Option<String>,
        consistency: Option<String>,
        read_your_writes_wait: Option<String>,
        replica_selection: Option<String>,
        read_only_transactions_on_replica: Option<bool>,
        multiplexing: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Monitor {
        interval: Option<String>,
        timeout: Option<String>,
        fall: Option<u32>,
        rise: Option<u32>,
        user: Option<String>,
        password: Option<String>,
        password_env: Option<String>,
        heartbeat_table: Option<String>,
        heartbeat_interval: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct BackendTlsRaw {
        mode: Option<String>,
        ca: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    }

    fn backend_tls(t: &BackendTlsRaw) -> Result<crate::tls::BackendTls, ConfigError> {
        use crate::tls::{BackendTls, BackendTlsMode, TlsError};
        let mode = match t.mode.as_deref() {
            None => BackendTlsMode::Disabled,
            Some(m) => BackendTlsMode::parse(m).ok_or_else(|| {
                invalid(
                    "backend_tls.mode",
                    format!(
                        "\"{m}\" is not \"disabled\", \"preferred\", \"required\", \"verify_ca\" or \"verify_identity\""
                    ),
                )
            })?,
        };
        if mode.verifies() && t.ca.is_none() {
            return Err(invalid(
                "backend_tls.ca",
                format!(
                    "mode \"{}\" checks the servers' certificates against a CA: give its PEM file",
                    mode.name()
                ),
            ));
        }
        let identity = match (&t.cert, &t.key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((Path::new(c.as_str()), Path::new(k.as_str()))),
            _ => {
                return Err(invalid(
                    "backend_tls.cert",
                    "give both cert and key, or neither",
                ));
            }
        };
        if t.ca.is_some() && !mode.verifies() && mode != BackendTlsMode::Disabled {
            return Err(invalid(
                "backend_tls.ca",
                format!(
                    "mode \"{}\" does not check certificates; \"verify_ca\" or \"verify_identity\" checks them against the CA",
                    mode.name()
                ),
            ));
        }
        if mode == BackendTlsMode::Disabled && (t.ca.is_some() || identity.is_some()) {
            return Err(invalid(
                "backend_tls.mode",
                "is \"disabled\" (the default) but ca, cert or key is set: set the mode too",
            ));
        }
        BackendTls::load(mode, t.ca.as_deref().map(Path::new), identity).map_err(|e| {
            let key = match e {
                TlsError::Ca { .. } => "backend_tls.ca",
                TlsError::Key { .. } => "backend_tls.key",
                _ => "backend_tls.cert",
            };
            invalid(key, e.to_string())
        })
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Insight {
        max_digests: Option<usize>,
        slow_query_threshold: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Admin {
        listen: Option<String>,
        token: Option<String>,
        token_env: Option<String>,
        max_connections: Option<usize>,
        idle_timeout: Option<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Logging {
        level: Option<String>,
        format: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct User {
        name: String,
        password: Option<String>,
        password_env: Option<String>,
        consistency: Option<String>,
        query_timeout: Option<String>,
        multiplexing: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Backend {
        name: String,
        address: String,
        role: String,
        weight: Option<u32>,
        max_replica_lag: Option<String>,
        pool: Option<Pool>,
    }

    fn dur(key: &str, v: &Option<String>, default: &str) -> Result<Duration, ConfigError> {
        duration(key, v.as_deref().unwrap_or(default))
    }

    fn pool(prefix: &str, p: &Pool, base: &PoolConfig) -> Result<PoolConfig, ConfigError> {
        let d = |name: &str, v: &Option<String>, def: Duration| -> Result<Duration, ConfigError> {
            let key = format!("{prefix}.{name}");
            match v {
                Some(v) => nonzero(&key, duration(&key, v)?),
                None => Ok(def),
            }
        };
        let c = PoolConfig {
            max_connections: p.max_connections.unwrap_or(base.max_connections),
            min_idle: p.min_idle.unwrap_or(base.min_idle),
            idle_timeout: d("idle_timeout", &p.idle_timeout, base.idle_timeout)?,
            max_lifetime: d("max_lifetime", &p.max_lifetime, base.max_lifetime)?,
            connect_timeout: d("connect_timeout", &p.connect_timeout, base.connect_timeout)?,
            checkout_timeout: d(
                "checkout_timeout",
                &p.checkout_timeout,
                base.checkout_timeout,
            )?,
        };
        if c.max_connections == 0 {
            return Err(invalid(
                format!("{prefix}.max_connections"),
                "must be at least 1",
            ));
        }
        if c.min_idle > c.max_connections {
            return Err(invalid(
                format!("{prefix}.min_idle"),
                format!(
                    "({}) is larger than max_connections ({})",
                    c.min_idle, c.max_connections
                ),
            ));
        }
        Ok(c)
    }

    /// A time limit where "0s" (or absent) means none.
    fn limit(key: &str, v: Option<&str>) -> Result<Option<Duration>, ConfigError> {
        match v {
            None => Ok(None),
            Some(v) => {
                let d = duration(key, v)?;
                Ok((!d.is_zero()).then_some(d))
            }
        }
    }

    fn consistency(
        key: &str,
        v: Option<&str>,
        default: Consistency,
    ) -> Result<Consistency, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => Consistency::parse(s).ok_or_else(|| {
                invalid(
                    key,
                    format!("\"{s}\" is not \"eventual\", \"read_your_writes\" or \"strong\""),
                )
            }),
        }
    }

    impl File {
        pub fn into_config(self) -> Result<Config, ConfigError> {
            let p = &self.proxy;
            let listen = p.listen.as_deref().unwrap_or("127.0.0.1:6033");
            let listen: SocketAddr = listen
                .parse()
                .map_err(|_| invalid("proxy.listen", format!("\"{listen}\" is not ip:port")))?;
            let max_packet_size = size(
                "proxy.max_packet_size",
                p.max_packet_size.as_deref().unwrap_or("64MiB"),
            )?;
            if !(1024..=1 << 30).contains(&max_packet_size) {
                return Err(invalid(
                    "proxy.max_packet_size",
                    "must be between 1KiB and 1GiB",
                ));
            }
            let auth_plugin = match p.auth_plugin.as_deref().unwrap_or("mysql_native_password") {
                "mysql_native_password" => AuthPluginName::MysqlNativePassword,
                "caching_sha2_password" => AuthPluginName::CachingSha2Password,
                o => {
                    return Err(invalid(
                        "proxy.auth_plugin",
                        format!("\"{o}\" is not mysql_native_password or caching_sha2_password"),
                    ));
                }
            };
            let socket = match p.socket.as_deref() {
                Some(s) if crate::net::fits_own_socket(std::path::Path::new(s)) => {
                    Some(std::path::PathBuf::from(s))
                }
                Some(s) => {
                    return Err(invalid(
                        "proxy.socket",
                        format!(
                            "\"{s}\" is not the absolute path of a socket file (under 100 bytes)"
                        ),
                    ));
                }
                None => None,
            };
            let tls = match (&p.tls_cert, &p.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some(ClientTls::load(
                    std::path::Path::new(cert),
                    std::path::Path::new(key),
                )?),
                _ => {
                    return Err(invalid(
                        "proxy.tls_cert",
                        "give both tls_cert and tls_key, or neither",
                    ));
                }
            };
            let tls_required = p.tls_required.unwrap_or(false);
            if tls_required && tls.is_none() {
                return Err(invalid("proxy.tls_required", "needs tls_cert and tls_key"));
            }
            let proxy = ProxyConfig {
                listen,
                socket,
                tls,
                tls_required,
                max_client_connections: match p.max_client_connections.unwrap_or(10_000) {
                    n @ 1..=1_000_000 => n,
                    n => {
                        return Err(invalid(
                            "proxy.max_client_connections",
                            format!("{n} is not between 1 and 1000000"),
                        ));
                    }
                },
                max_prepared_statements: p.max_prepared_statements.unwrap_or(500_000),
                max_packet_size,
                client_idle_timeout: nonzero(
                    "proxy.client_idle_timeout",
                    dur("proxy.client_idle_timeout", &p.client_idle_timeout, "8h")?,
                )?,
                handshake_timeout: nonzero(
                    "proxy.handshake_timeout",
                    dur("proxy.handshake_timeout", &p.handshake_timeout, "10s")?,
                )?,
                net_timeout: nonzero(
                    "proxy.net_timeout",
                    dur("proxy.net_timeout", &p.net_timeout, "60s")?,
                )?,
                auth_plugin,
                server_version: p.server_version.clone(),
                query_timeout: limit("proxy.query_timeout", p.query_timeout.as_deref())?,
                reuse_port: p.reuse_port.unwrap_or(true),
                worker_threads: match p.worker_threads {
                    Some(0) => return Err(invalid("proxy.worker_threads", "must be at least 1")),
                    n => n,
                },
            };
            let defaults = PoolConfig {
                max_connections: 200,
                min_idle: 0,
                idle_timeout: Duration::from_secs(600),
                max_lifetime: Duration::from_secs(1800),
                connect_timeout: Duration::from_secs(2),
                checkout_timeout: Duration::from_secs(5),
            };
            let pool_cfg = pool("pool", &self.pool, &defaults)?;
            let when_no_replica = match self.routing.when_no_replica.as_deref().unwrap_or("primary")
            {
                "primary" => NoReplicaPolicy::Primary,
                "error" => NoReplicaPolicy::Error,
                o => {
                    return Err(invalid(
                        "routing.when_no_replica",
                        format!("\"{o}\" is not \"primary\" or \"error\""),
                    ));
                }
            };
            let routing = RoutingConfig {
                when_no_replica,
                max_replica_lag: dur(
                    "routing.max_replica_lag",
                    &self.routing.max_replica_lag,
                    "10s",
                )?,
                consistency: consistency(
                    "routing.consistency",
                    self.routing.consistency.as_deref(),
                    Consistency::ReadYourWrites,
                )?,
                least_outstanding: match self
                    .routing
                    .replica_selection
                    .as_deref()
                    .unwrap_or("least_outstanding")
                {
                    "least_outstanding" => true,
                    "weighted" => false,
                    o => {
                        return Err(invalid(
                            "routing.replica_selection",
                            format!("\"{o}\" is not \"least_outstanding\" or \"weighted\""),
                        ));
                    }
                },
                read_your_writes_wait: dur(
                    "routing.read_your_writes_wait",
                    &self.routing.read_your_writes_wait,
                    "500ms",
                )?,
                read_only_transactions_on_replica: self
                    .routing
                    .read_only_transactions_on_replica
                    .unwrap_or(false),
                multiplexing: self.routing.multiplexing.unwrap_or(true),
            };
            let m = &self.monitor;
            let monitor = MonitorConfig {
                interval: nonzero(
                    "monitor.interval",
                    dur("monitor.interval", &m.interval, "1s")?,
                )?,
                timeout: nonzero("monitor.timeout", dur("monitor.timeout", &m.timeout, "1s")?)?,
                fall: at_least_one("monitor.fall", m.fall.unwrap_or(3))?,
                rise: at_least_one("monitor.rise", m.rise.unwrap_or(2))?,
                user: String::new(),
                password: String::new(),
                heartbeat_table: match &m.heartbeat_table {
                    None => None,
                    Some(t) => {
                        let ident = |x: &str| {
                            !x.is_empty()
                                && x.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                        };
                        match t.split_once('.') {
                            Some((db, tb)) if ident(db) && ident(tb) => Some(t.clone()),
                            _ => {
                                return Err(invalid(
                                    "monitor.heartbeat_table",
                                    format!(
                                        "\"{t}\" is not database.table (letters, digits, _ and $)"
                                    ),
                                ));
                            }
                        }
                    }
                },
                heartbeat_interval: nonzero(
                    "monitor.heartbeat_interval",
                    dur("monitor.heartbeat_interval", &m.heartbeat_interval, "250ms")?,
                )?,
            };
            let json = match self.logging.format.as_deref().unwrap_or("plain") {
                "plain" => false,
                "json" => true,
                o => {
                    return Err(invalid(
                        "logging.format",
                        format!("\"{o}\" is not \"plain\" or \"json\""),
                    ));
                }
            };
            let level = self.logging.level.clone().unwrap_or_else(|| "info".into());
            // A bare word that is no level is read by `tracing` as a module name, which logs
            // nothing at all: refused. Directives (`rwsplit=debug,info`) pass.
            let levels = ["trace", "debug", "info", "warn", "error", "off"];
            if !level.contains('=')
                && !level.contains(',')
                && !levels.contains(&level.trim().to_ascii_lowercase().as_str())
            {
                return Err(invalid(
                    "logging.level",
                    format!(
                        "\"{level}\" is not one of {} (or a filter such as \"rwsplit=debug\" or \"info,rwsplit=debug\")",
                        levels.join(", ")
                    ),
                ));
            }
            let logging = LoggingConfig { level, json };
            if self.users.is_empty() {
                return Err(invalid("users", "at least one [[users]] entry is required"));
            }
            let mut users = Vec::new();
            for (i, u) in self.users.iter().enumerate() {
                let key = format!("users[{i}]");
                if users.iter().any(|x: &UserConfig| x.name == u.name) {
                    return Err(invalid(
                        format!("{key}.name"),
                        format!("duplicate name \"{}\"", u.name),
                    ));
                }
                let password = match (&u.password, &u.password_env) {
                    (Some(p), None) => p.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        invalid(
                            format!("{key}.password_env"),
                            format!("environment variable {var} is not set"),
                        )
                    })?,
                    _ => return Err(invalid(key, "give exactly one of password or password_env")),
                };
                users.push(UserConfig {
                    name: u.name.clone(),
                    password,
                    consistency: consistency(
                        &format!("{key}.consistency"),
                        u.consistency.as_deref(),
                        routing.consistency,
                    )?,
                    query_timeout: match u.query_timeout.as_deref() {
                        Some(v) => limit(&format!("{key}.query_timeout"), Some(v))?,
                        None => proxy.query_timeout,
                    },
                    multiplexing: u.multiplexing.unwrap_or(routing.multiplexing),
                });
            }
            let mut monitor = monitor;
            match (&m.user, &m.password, &m.password_env) {
                (None, None, None) => {
                    monitor.user = users[0].name.clone();
                    monitor.password = users[0].password.clone();
                }
                (Some(u), Some(p), None) => {
                    monitor.user = u.clone();
                    monitor.password = p.clone();
                }
                (Some(u), None, Some(var)) => {
                    monitor.user = u.clone();
                    monitor.password = std::env::var(var).map_err(|_| {
                        invalid(
                            "monitor.password_env",
                            format!("environment variable {var} is not set"),
                        )
                    })?;
                }
                (None, _, _) => {
                    return Err(invalid(
                        "monitor.user",
                        "required when monitor.password or monitor.password_env is set",
                    ));
                }
                (Some(_), _, _) => {
                    return Err(invalid(
                        "monitor",
                        "give exactly one of password or password_env with user",
                    ));
                }
            }
            if self.backends.is_empty() {
                return Err(invalid(
                    "backends",
                    "at least one [[backends]] entry is required",
                ));
            }
            let tls = backend_tls(&self.backend_tls)?;
            let mut backends: Vec<BackendConfig> = Vec::new();
            for (i, b) in self.backends.iter().enumerate() {
                let key = format!("backends[{i}]");
                if backends.iter().any(|x| x.name == b.name) {
                    return Err(invalid(
                        format!("{key}.name"),
                        format!("duplicate name \"{}\"", b.name),
                    ));
                }
                if let Some(x) = backends.iter().find(|x| x.address == b.address) {
                    return Err(invalid(
                        format!("{key}.address"),
                        format!(
                            "\"{}\" is also backend \"{}\"'s: one server listed twice is both writable and not, a split brain",
                            b.address, x.name
                        ),
                    ));
                }
                if !crate::net::Endpoint::of(&b.address).is_valid() {
                    return Err(invalid(
                        format!("{key}.address"),
                        format!(
                            "\"{}\" is neither host:port nor the absolute path of a Unix socket (under 108 bytes)",
                            b.address
                        ),
                    ));
                }
                if proxy.socket.as_deref() == Some(std::path::Path::new(&b.address)) {
                    return Err(invalid(
                        format!("{key}.address"),
                        format!(
                            "\"{}\" is proxy.socket: rwsplit would connect to itself",
                            b.address
                        ),
                    ));
                }
                let role = match b.role.as_str() {
                    "primary" => Role::Primary,
                    "replica" => Role::Replica,
                    o => {
                        return Err(invalid(
                            format!("{key}.role"),
                            format!("\"{o}\" is not \"primary\" or \"replica\""),
                        ));
                    }
                };
                let pool = match &b.pool {
                    Some(p) => pool(&format!("{key}.pool"), p, &pool_cfg)?,
                    None => pool_cfg.clone(),
                };
                backends.push(BackendConfig {
                    name: b.name.clone(),
                    address: b.address.clone(),
                    role,
                    weight: b.weight.unwrap_or(1),
                    max_replica_lag: match &b.max_replica_lag {
                        Some(v) => duration(&format!("{key}.max_replica_lag"), v)?,
                        None => routing.max_replica_lag,
                    },
                    pool,
                    tls: tls.clone(),
                });
            }
            if backends.len() > crate::session::MAX_BACKENDS {
                return Err(invalid(
                    "backends",
                    format!(
                        "{} backends; at most {} are supported",
                        backends.len(),
                        crate::session::MAX_BACKENDS
                    ),
                ));
            }
            let primaries = backends.iter().filter(|b| b.role == Role::Primary).count();
            if primaries != 1 {
                return Err(invalid(
                    "backends",
                    format!("exactly one backend must have role = \"primary\" (found {primaries})"),
                ));
            }
            let a = &self.admin;
            let admin_listen: Option<SocketAddr> =
                match a.listen.as_deref().unwrap_or("127.0.0.1:6080") {
                    "off" => None,
                    l => Some(l.parse().map_err(|_| {
                        invalid("admin.listen", format!("\"{l}\" is not ip:port or \"off\""))
                    })?),
                };
            if let Some(admin) = admin_listen
                && admin.port() != 0
                && proxy.listen.port() == admin.port()
                && (proxy.listen.ip() == admin.ip()
                    || proxy.listen.ip().is_unspecified()
                    || admin.ip().is_unspecified())
            {
                return Err(invalid(
                    "admin.listen",
                    format!(
                        "{admin} is also proxy.listen: MySQL clients would reach the admin API"
                    ),
                ));
            }
            let token = match (&a.token, &a.token_env) {
                (None, None) => None,
                (Some(t), None) => Some(t.clone()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                    invalid(
                        "admin.token_env",
                        format!("environment variable {var} is not set"),
                    )
                })?),
                _ => return Err(invalid("admin", "give at most one of token or token_env")),
            };
            if token.as_deref() == Some("") {
                return Err(invalid("admin.token", "must not be empty"));
            }
            Ok(Config {
                proxy,
                users,
                backends,
                pool: pool_cfg,
                routing,
                monitor,
                logging,
                admin: AdminConfig {
                    listen: admin_listen,
                    token,
                    max_connections: match a.max_connections.unwrap_or(32) {
                        n @ 1..=100_000 => n,
                        _ => {
                            return Err(invalid(
                                "admin.max_connections",
                                "must be between 1 and 100000",
                            ));
                        }
                    },
                    idle_timeout: nonzero(
                        "admin.idle_timeout",
                        dur("admin.idle_timeout", &a.idle_timeout, "10s")?,
                    )?,
                },
                insight: InsightConfig {
                    max_digests: self.insight.max_digests.unwrap_or(5000).max(1),
                    slow_query_threshold: dur(
                        "insight.slow_query_threshold",
                        &self.insight.slow_query_threshold,
                        "1s",
                    )?,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[users]]
name = "app"
password = "app"
[[backends]]
name = "primary"
address = "127.0.0.1:3306"
role = "primary"
"#;

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn the_example_and_test_configs_load() {
        for text in [
            include_str!("../config/rwsplit.toml"),
            include_str!("../config/test.toml"),
        ] {
            let c = Config::from_toml_str(text).unwrap();
            assert_eq!(c.backends.len(), 3);
            assert_eq!(
                c.primary().map(|b| b.address.as_str()),
                Some("127.0.0.1:3306")
            );
        }
    }

    #[test]
    fn a_minimal_config_gets_the_defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:6033");
        assert_eq!(c.proxy.max_packet_size, 64 << 20);
        assert_eq!(c.pool.checkout_timeout, Duration::from_secs(5));
        assert_eq!(c.backends[0].pool, c.pool);
        assert_eq!(c.routing.when_no_replica, NoReplicaPolicy::Primary);
    }

    #[test]
    fn a_parse_error_does_not_quote_the_line_it_is_on() {
        let e = err(&MINIMAL.replace("password = \"app\"", "password = \"Sup3rS3cret!"));
        assert!(!e.contains("Sup3rS3cret"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        // Levels and filters pass.
        for level in ["debug", "WARN", "rwsplit=debug,info"] {
            Config::from_toml_str(&format!("[logging]\nlevel = \"{level}\"\n{MINIMAL}"))
                .unwrap_or_else(|e| panic!("{level}: {e}"));
        }
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let e = err(&MINIMAL.replace("address =", "adress = \"x:1\"\naddress ="));
        assert!(e.contains("adress"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let cases = [
            (
                MINIMAL.replace("127.0.0.1:3306", "127.0.0.1"),
                "backends[0].address",
            ),
            (
                MINIMAL.replace("\"primary\"\n", "\"leader\"\n"),
                "backends[0].role",
            ),
            (MINIMAL.replace("password = \"app\"", ""), "users[0]"),
            (
                MINIMAL.replace(
                    "password = \"app\"",
                    "password_env = \"RWSPLIT_NO_SUCH_VAR_X\"",
                ),
                "users[0].password_env",
            ),
            (
                format!("[pool]\nconnect_timeout = \"5\"\n{MINIMAL}"),
                "pool.connect_timeout",
            ),
            (
                format!("[pool]\nmin_idle = 5\nmax_connections = 2\n{MINIMAL}"),
                "pool.min_idle",
            ),
            (
                MINIMAL.replace("role = \"primary\"", "role = \"replica\""),
                "backends",
            ),
            (
                format!("[proxy]\nlisten = \"nope\"\n{MINIMAL}"),
                "proxy.listen",
            ),
            (
                format!("[proxy]\nsocket = \"rwsplit.sock\"\n{MINIMAL}"),
                "proxy.socket",
            ),
            (
                MINIMAL.replace("127.0.0.1:3306", "mysqld.sock"),
                "backends[0].address",
            ),
            (
                format!("[proxy]\nsocket = \"/run/x.sock\"\n{MINIMAL}")
                    .replace("127.0.0.1:3306", "/run/x.sock"),
                "backends[0].address",
            ),
            // One server listed twice.
            (
                format!(
                    "{MINIMAL}[[backends]]\nname = \"r\"\naddress = \"127.0.0.1:3306\"\nrole = \"replica\"\n"
                ),
                "backends[1].address",
            ),
            (
                format!("[admin]\nlisten = \"127.0.0.1:6033\"\n{MINIMAL}"),
                "admin.listen",
            ),
            (
                format!(
                    "[proxy]\nlisten = \"0.0.0.0:7000\"\n[admin]\nlisten = \"127.0.0.1:7000\"\n{MINIMAL}"
                ),
                "admin.listen",
            ),
            (
                format!("[proxy]\nmax_client_connections = 4611686018427387904\n{MINIMAL}"),
                "proxy.max_client_connections",
            ),
            (
                format!("[proxy]\nmax_client_connections = 0\n{MINIMAL}"),
                "proxy.max_client_connections",
            ),
            (
                format!("[proxy]\ntls_cert = \"/nonexistent/cert.pem\"\n{MINIMAL}"),
                "proxy.tls_cert",
            ),
            (
                format!(
                    "[proxy]\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"/nonexistent/k.pem\"\n{MINIMAL}"
                ),
                "proxy.tls_cert",
            ),
            (
                format!("[proxy]\ntls_required = true\n{MINIMAL}"),
                "proxy.tls_required",
            ),
            (
                format!("[admin]\nmax_connections = 0\n{MINIMAL}"),
                "admin.max_connections",
            ),
            (
                format!("[admin]\nidle_timeout = \"0s\"\n{MINIMAL}"),
                "admin.idle_timeout",
            ),
            (format!("[monitor]\nfall = 0\n{MINIMAL}"), "monitor.fall"),
            (format!("[monitor]\nrise = 0\n{MINIMAL}"), "monitor.rise"),
            (
                format!("[logging]\nlevel = \"debgu\"\n{MINIMAL}"),
                "logging.level",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn durations_and_sizes_parse() {
        use raw::{duration, size};
        assert_eq!(duration("k", "500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("k", "1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("k", "10m").unwrap(), Duration::from_secs(600));
        assert_eq!(duration("k", "8h").unwrap(), Duration::from_secs(8 * 3600));
        assert!(duration("k", "5").is_err());
        assert!(duration("k", "5y").is_err());
        // Past what a clock can count: an error naming the limit, not a panic.
        assert_eq!(
            duration("k", "36500d").unwrap(),
            Duration::from_secs(36500 * 86400)
        );
        for v in ["36501d", "100000000000000d", "99999999999999999999999999d"] {
            let e = duration("k", v).unwrap_err().to_string();
            assert!(e.contains("too long (at most 36500d)"), "{v}: {e}");
        }
        assert_eq!(size("k", "64MiB").unwrap(), 64 << 20);
        assert_eq!(size("k", "1024").unwrap(), 1024);
        assert!(size("k", "3 parsecs").is_err());
    }

    #[test]
    fn password_env_is_read_from_the_environment() {
        // SAFETY: this test's variable name is unique to it; no other thread reads it.
        unsafe { std::env::set_var("RWSPLIT_TEST_PW_ENV_1", "s3cret") };
        let c = Config::from_toml_str(&MINIMAL.replace(
            "password = \"app\"",
            "password_env = \"RWSPLIT_TEST_PW_ENV_1\"",
        ))
        .unwrap();
        assert_eq!(c.users[0].password, "s3cret");
    }

    #[test]
    fn the_monitor_logs_in_as_the_first_user_unless_told() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(
            (c.monitor.user.as_str(), c.monitor.password.as_str()),
            ("app", "app")
        );
        let c = Config::from_toml_str(&format!(
            "[monitor]\nuser = \"mon\"\npassword = \"pw\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            (c.monitor.user.as_str(), c.monitor.password.as_str()),
            ("mon", "pw")
        );
        let e = err(&format!("[monitor]\npassword = \"pw\"\n{MINIMAL}"));
        assert!(e.starts_with("monitor.user:"), "{e}");
    }

    #[test]
    fn max_replica_lag_has_a_default_and_per_backend_overrides() {
        let text = format!(
            "[routing]\nmax_replica_lag = \"3s\"\n{MINIMAL}\n[[backends]]\nname = \"r\"\n\
             address = \"127.0.0.1:3307\"\nrole = \"replica\"\nmax_replica_lag = \"500ms\"\n"
        );
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.backends[0].max_replica_lag, Duration::from_secs(3));
        assert_eq!(c.backends[1].max_replica_lag, Duration::from_millis(500));
        assert_eq!(
            Config::from_toml_str(MINIMAL)
                .unwrap()
                .routing
                .max_replica_lag,
            Duration::from_secs(10)
        );
        let e = err(&text.replace("500ms", "soon"));
        assert!(e.starts_with("backends[1].max_replica_lag:"), "{e}");
    }

    #[test]
    fn the_heartbeat_table_must_be_a_plain_database_dot_table() {
        let c = Config::from_toml_str(&format!(
            "[monitor]\nheartbeat_table = \"rwsplit.heartbeat\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            c.monitor.heartbeat_table.as_deref(),
            Some("rwsplit.heartbeat")
        );
        assert_eq!(c.monitor.heartbeat_interval, Duration::from_millis(250));
        for bad in ["heartbeat", "a.b; DROP TABLE x", ".t", "db."] {
            let e = err(&format!(
                "[monitor]\nheartbeat_table = \"{bad}\"\n{MINIMAL}"
            ));
            assert!(e.starts_with("monitor.heartbeat_table:"), "{bad}: {e}");
        }
    }
}
