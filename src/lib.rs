//! rwsplit: a MySQL/MariaDB read/write-splitting connection proxy.
//!
//! The data path of one statement: `session` reads the command, `classify` says what it is,
//! `route` picks the backend from the `monitor`'s snapshot, `pool` lends a connection that
//! `session::state` brings to the session's state, and the response is copied back frame by
//! frame (`protocol::response` knows where it ends). See DESIGN.md.

pub mod admin;
pub mod classify;
pub mod config;
pub mod error;
pub mod insight;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod pool;
pub mod protocol;
pub mod reload;
pub mod route;
pub mod server;
pub mod session;
pub mod tls;

/// The log filter with rustls's own records at `error` unless the filter names rustls: it
/// warns of what any client may send (an IP address as the TLS server name, which node mysql2
/// does at every connect; garbage in a handshake), without a session or client address, and
/// such a client already gets its own "login refused" line.
fn with_quiet_tls(level: &str) -> String {
    if level.contains("rustls") || level.trim() == "off" {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    }
}

/// Sets up `tracing` from the config's `[logging]` section; `RUST_LOG` overrides the level.
pub fn init_logging(cfg: &config::LoggingConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_tls(&cfg.level)));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::stdout().is_terminal());
    if cfg.json {
        // The session is each line's `span`. No `spans` list: it would name only entered spans,
        // and the session's is the parent of its command loop's events without being entered
        // (see `Session::span`), so those lines would list none.
        let _ = builder.json().with_span_list(false).try_init();
    } else {
        let _ = builder.try_init();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustls_logs_only_errors_unless_the_filter_names_it() {
        assert_eq!(super::with_quiet_tls("info"), "info,rustls=error");
        assert_eq!(
            super::with_quiet_tls("info,rustls=debug"),
            "info,rustls=debug"
        );
        assert_eq!(super::with_quiet_tls("off"), "off");
    }
}
