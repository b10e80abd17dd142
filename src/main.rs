//! The command line: parse it and call into the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rwsplit::config::Config;

#[derive(Parser)]
#[command(
    name = "rwsplit",
    version,
    about = "MySQL/MariaDB read/write-splitting proxy"
)]
struct Cli {
    /// Path to the TOML config file.
    #[arg(long, short, default_value = "config/rwsplit.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a config file and exit (non-zero with a message naming the bad key).
    CheckConfig { path: PathBuf },
    /// Print the backends and their pools as a table, from a running rwsplit's admin API.
    Status {
        /// The admin API address (default: `admin.listen` of the config file).
        #[arg(long)]
        admin: Option<String>,
        /// Bearer token (default: `admin.token` of the config file, or $RWSPLIT_ADMIN_TOKEN).
        #[arg(long)]
        token: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Status { admin, token }) = &cli.command {
        let (addr, token) = match admin {
            Some(a) => (a.clone(), token.clone()),
            None => {
                let c = Config::load(&cli.config)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", cli.config.display()))?;
                let addr = c
                    .admin
                    .listen
                    .map(|a| a.to_string())
                    .context("admin.listen is off in the config; give --admin ADDRESS")?;
                (addr, token.clone().or(c.admin.token))
            }
        };
        let token = token.or_else(|| std::env::var("RWSPLIT_ADMIN_TOKEN").ok());
        let body = rwsplit::admin::fetch(&addr, "/backends", token.as_deref())
            .with_context(|| format!("asking rwsplit's admin API at {addr}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).context("reading /backends")?;
        print!("{}", rwsplit::admin::backends_table(&v));
        return Ok(());
    }
    if let Some(Cmd::CheckConfig { path }) = cli.command {
        return match Config::load(&path) {
            Ok(c) => {
                println!(
                    "{}: OK ({} backends, {} users, listening on {})",
                    path.display(),
                    c.backends.len(),
                    c.users.len(),
                    c.proxy.listeners()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                std::process::exit(2);
            }
        };
    }
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", cli.config.display());
            std::process::exit(2);
        }
    };
    rwsplit::init_logging(&config.logging);
    rwsplit::server::raise_open_files_limit(&config);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.proxy.worker_threads {
        rt.worker_threads(n);
    }
    let rt = rt
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = rwsplit::server::bind(&config).await?;
        let admin = rwsplit::admin::bind(&config).await?;
        let (listen, admin_listen, n) = (
            config.proxy.listeners(),
            config.admin.listen,
            config.backends.len(),
        );
        let shared = rwsplit::server::build(config);
        let _ = shared.config_path.set(cli.config.clone());
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let shared = shared.clone();
            let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match rwsplit::reload::reload_file(&shared).await {
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "config reload (SIGHUP) refused"),
                    }
                }
            });
        }
        if let Some(admin) = admin {
            tokio::spawn(rwsplit::admin::serve(admin, shared.clone()));
        }
        let shutdown = shutdown_signal()?;
        // Logged once signals are handled: scripts wait for this line before sending SIGHUP.
        tracing::info!(%listen, admin = ?admin_listen, backends = n, "rwsplit listening");
        rwsplit::server::serve(listener, shared, shutdown).await;
        tracing::info!("rwsplit stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (not when the
/// future is first polled), so a signal that comes early is not the default "terminate".
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            // A second signal while sessions drain: stop now, as servers do.
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                tracing::warn!("second shutdown signal: exiting without waiting for sessions");
                std::process::exit(1);
            });
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
