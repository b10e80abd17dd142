//! Configuration: one TOML file, validated at load with errors that name the key.
//! STUB: the public API below is fixed; the implementation is being written.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
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
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub max_client_connections: usize,
    pub max_packet_size: u64,
    pub client_idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub auth_plugin: AuthPluginName,
    /// Overrides the version string mirrored from the primary.
    pub server_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// Resolved at load: from `password`, or from the environment variable named by `password_env`.
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    /// `host:port` as written; resolved when connecting.
    pub address: String,
    pub role: Role,
    pub weight: u32,
    /// The effective pool settings (global `[pool]` with this backend's overrides applied).
    pub pool: PoolConfig,
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
}

#[derive(Debug, Clone)]
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
        let _ = text;
        Err(ConfigError::Parse("not implemented".into()))
    }

    pub fn primary(&self) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.role == Role::Primary)
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}
