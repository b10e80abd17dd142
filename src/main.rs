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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::CheckConfig { path }) = cli.command {
        return match Config::load(&path) {
            Ok(c) => {
                println!(
                    "{}: OK ({} backends, {} users, listening on {})",
                    path.display(),
                    c.backends.len(),
                    c.users.len(),
                    c.proxy.listen
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = rwsplit::server::bind(&config).await?;
        let admin = rwsplit::admin::bind(&config).await?;
        tracing::info!(listen = %config.proxy.listen, admin = ?config.admin.listen, backends = config.backends.len(), "rwsplit listening");
        let shared = rwsplit::server::build(config);
        if let Some(admin) = admin {
            tokio::spawn(rwsplit::admin::serve(admin, shared.clone()));
        }
        rwsplit::server::serve(listener, shared, shutdown_signal()).await;
        tracing::info!("rwsplit stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
