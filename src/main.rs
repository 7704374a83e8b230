//! The `concur` command: `serve`, `bench`, `check-config`, `reload`, `openapi` (and the
//! hidden `__worker`, a child of the `processes` strategy). Thin: everything else is the
//! library, so tests drive the same code.

mod reload_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use concur::config::{Config, ConfigSource};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "concur",
    version,
    about = "A CPU inference server for comparing concurrency strategies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The TOML configuration file.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Override any key, e.g. `--set executor.strategy=rayon --set batching.max_wait_ms=2`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Shorthand for `--set executor.strategy=...`.
    #[arg(long)]
    strategy: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP until SIGTERM or SIGINT, then drain; SIGHUP reloads the configuration.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Measure the raw engine (no HTTP) over a corpus: the ceiling the server aims at.
    Bench {
        #[command(flatten)]
        config: ConfigArgs,
        /// Corpus: JSON lines with a `text` field, or plain text lines.
        #[arg(long, default_value = "loadtest/corpus/chat.jsonl")]
        corpus: PathBuf,
        /// Seconds to measure, after a short warm-up.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and print the result.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Ask a running server to reload its configuration (POST /admin/reload), optionally
    /// with TOML overrides, and print what changed.
    Reload(reload_cmd::ReloadArgs),
    /// Print the OpenAPI document a server with this configuration serves at /openapi.json.
    Openapi {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// A child of the `processes` strategy, started by the server; not for people.
    #[command(name = "__worker", hide = true)]
    Worker {
        /// The child's end of the socket to the server.
        #[arg(long)]
        fd: i32,
        /// The server's process id; the child exits if its parent is not that process.
        #[arg(long)]
        parent: u32,
    },
}

impl ConfigArgs {
    fn load(&self, listen: Option<&str>) -> Result<Config> {
        Ok(self.source(listen).load()?)
    }

    /// The file and overrides, kept so the server can read them again on reload.
    fn source(&self, listen: Option<&str>) -> ConfigSource {
        let mut overrides = self.set.clone();
        if let Some(s) = &self.strategy {
            overrides.push(format!("executor.strategy=\"{s}\""));
        }
        if let Some(l) = listen {
            overrides.push(format!("server.listen=\"{l}\""));
        }
        ConfigSource::file(&self.config, overrides)
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve { config, listen } => {
            let source = config.source(listen.as_deref());
            serve(source.load()?, source)
        }
        Command::Bench {
            config,
            corpus,
            seconds,
            json,
        } => bench(config.load(None)?, &corpus, seconds, json),
        Command::CheckConfig { config } => {
            let c = config.load(None)?;
            println!("{c:#?}");
            Ok(())
        }
        Command::Reload(args) => reload_cmd::run(args),
        Command::Worker { fd, parent } => {
            std::process::exit(concur::executor::worker_main(fd, parent))
        }
        Command::Openapi { config } => {
            let doc =
                concur::http::openapi::document(&config.load(None)?, concur::http::Scope::All);
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
    }
}

fn serve(config: Config, source: ConfigSource) -> Result<()> {
    // Each connection holds a file descriptor: start with the most the system allows this
    // process (the default connection cap is derived from it).
    match concur::connections::limit::raise_open_file_limit() {
        Ok(limit) => tracing::debug!(open_file_limit = limit, "raised the open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.executor.tokio_worker_threads {
        runtime.worker_threads(n);
    }
    runtime.thread_name("concur-tokio").enable_all();
    runtime.build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let mut server = concur::Server::new(config.clone(), listener)
            .config_source(source)
            .reload_on_sighup();
        if let Some(admin) = config.server.admin_listen {
            let l = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin}"))?;
            server = server.admin_listener(l);
        }
        tracing::info!(listen = %config.server.listen, strategy = config.executor.strategy.as_str(), "starting");
        // The live page is where the metrics are: the admin listener when there is one.
        let page = config.server.admin_listen.unwrap_or(config.server.listen);
        tracing::info!("live page: http://{page}/");
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signal(shutdown.clone()));
        server.run(shutdown).await?;
        Ok(())
    })
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    shutdown.cancel();
}

fn bench(config: Config, corpus: &std::path::Path, seconds: f64, json: bool) -> Result<()> {
    let texts = concur::bench::load_corpus(corpus).map_err(anyhow::Error::msg)?;
    let report = concur::bench::run(&config, &texts, Duration::from_secs_f64(seconds))
        .map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let l = &report.batch_latency_seconds;
        println!(
            "{:.1} sequences/s ({} sequences in {} batches, {:.1}s); mean batch {:.1}, padding {:.1}%\nbatch latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            report.sequences_per_second,
            report.sequences,
            report.batches,
            report.seconds,
            report.mean_batch_size,
            report.padding_ratio * 100.0,
            l.p50 * 1e3,
            l.p90 * 1e3,
            l.p99 * 1e3,
            l.max * 1e3
        );
    }
    Ok(())
}
