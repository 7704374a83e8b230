//! The server's life: bind, load, accept, drain. [`Server::run`] takes the shutdown
//! signal as an argument so tests can stop it.
//!
//! Shutdown, in order: `/ready` turns 503; after `shutdown_grace` the listeners close;
//! open connections finish their requests (up to `drain_timeout`); the batcher empties its
//! queue; replaced executors finish; the live executor joins its threads.
//!
//! While serving, `SIGHUP` (when [`Server::reload_on_sighup`]) and `POST /admin/reload`
//! switch the configuration live through the [`Reloader`].

use crate::batcher;
use crate::chat::ChatBot;
use crate::config::{Config, ConfigSource};
use crate::connections::{ConnectionLimits, Connections};
use crate::engine::{onnx_factory, EngineError, EngineFactory};
use crate::executor::Executor;
use crate::http::Scope;
use crate::info;
use crate::lag;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::reload::{Reloader, Started};
use crate::state::{AppState, Services};
use crate::threads::ThreadBudget;
use crate::tokenize::TextTokenizer;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Startup(String),
    #[error("shut down while loading")]
    Cancelled,
}

/// A configured server, not yet running.
pub struct Server {
    config: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    factory: Option<EngineFactory>,
    source: Option<ConfigSource>,
    sighup: bool,
}

impl Server {
    pub fn new(config: Config, listener: TcpListener) -> Server {
        Server {
            config,
            listener,
            admin: None,
            factory: None,
            source: None,
            sighup: false,
        }
    }

    /// Where the configuration came from, so a reload can read it again. Without it,
    /// reloads are refused.
    pub fn config_source(mut self, source: ConfigSource) -> Server {
        self.source = Some(source);
        self
    }

    /// Reloads the configuration on `SIGHUP` (the binary does; tests in one process must
    /// not, since a signal reaches every server in it).
    pub fn reload_on_sighup(mut self) -> Server {
        self.sighup = true;
        self
    }

    /// A second listener that serves only health, readiness, info and metrics.
    pub fn admin_listener(mut self, listener: TcpListener) -> Server {
        self.admin = Some(listener);
        self
    }

    /// Replaces how engines are built (the ONNX model by default); tests use it to wrap the
    /// real engine with fault injection.
    pub fn engine_factory(mut self, factory: EngineFactory) -> Server {
        self.factory = Some(factory);
        self
    }

    /// Serves until `shutdown` is cancelled, then drains. Errors only if loading fails.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let config = Arc::new(self.config);
        let metrics = Arc::new(Metrics::new(
            config.executor.strategy.as_str(),
            &config.model.name,
        ));
        let state = Arc::new(AppState::new(config.clone(), metrics.clone()));
        let stop_probe = CancellationToken::new();
        tokio::spawn(lag::probe(
            config.server.event_loop_probe_interval,
            metrics.clone(),
            stop_probe.clone(),
        ));
        let listen = self.listener.local_addr().ok();
        let limits = ConnectionLimits::resolve(&config.server);
        let connections = Connections::new(state.clone(), &limits);
        // Accept before loading: /health answers at once, /ready once the model is in.
        let stop_accepting = CancellationToken::new();
        let loops = start_listeners(&connections, self.listener, self.admin, &stop_accepting);
        let tracker = TaskTracker::new();
        let stop_batcher = CancellationToken::new();
        let custom_factory = self.factory.clone();
        let factory = self
            .factory
            .unwrap_or_else(|| onnx_factory(&config.model, &config.executor));
        let loaded = tokio::select! {
            r = load(&config, &metrics, factory, &tracker, &stop_batcher, &limits) => r,
            _ = shutdown.cancelled() => Err(ServeError::Cancelled),
        };
        let (services, executor, budget) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("startup failed: {e}");
                stop_accepting.cancel();
                stop_probe.cancel();
                return Err(e);
            }
        };
        let reloader = Arc::new(Reloader::new(Started {
            source: self.source,
            custom_factory,
            connections: limits,
            retiring: tracker.clone(),
            executor,
            budget,
        }));
        state.set_reloader(reloader.clone());
        state.set_services(config, services);
        if self.sighup {
            tokio::spawn(reload_on_hangup(state.clone(), shutdown.clone()));
        }
        tracing::info!(listen = ?listen, "ready");
        shutdown.cancelled().await;
        let drain = Drain {
            state,
            connections,
            loops,
            stop_accepting,
            stop_batcher,
            tracker,
            reloader,
        };
        drain.run().await;
        stop_probe.cancel();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Starts the public listener's accept loop, and the admin one if any. Both share the
/// connection cap.
fn start_listeners(
    connections: &Arc<Connections>,
    public: TcpListener,
    admin: Option<TcpListener>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let scope = if admin.is_some() {
        Scope::Public
    } else {
        Scope::All
    };
    let mut loops = vec![connections.listen(public, scope, stop.clone())];
    if let Some(admin) = admin {
        loops.push(connections.listen(admin, Scope::Admin, stop.clone()));
    }
    loops
}

/// What a graceful shutdown has to stop, in order.
struct Drain {
    state: Arc<AppState>,
    connections: Arc<Connections>,
    loops: Vec<JoinHandle<()>>,
    stop_accepting: CancellationToken,
    stop_batcher: CancellationToken,
    tracker: TaskTracker,
    reloader: Arc<Reloader>,
}

impl Drain {
    async fn run(self) {
        let config = self.state.config();
        let server = &config.server;
        let deadline = Instant::now() + server.drain_timeout + server.shutdown_grace;
        tracing::info!("shutting down: not ready any more");
        self.state.start_draining();
        // Time for load balancers to see /ready fail before connections are refused.
        sleep(server.shutdown_grace).await;
        self.stop_accepting.cancel();
        for l in self.loops {
            let _ = l.await;
        }
        self.connections.drain(server.drain_timeout).await;
        self.stop_batcher.cancel();
        self.tracker.close();
        if timeout_at(deadline, self.tracker.wait()).await.is_err() {
            tracing::warn!("the batch queue did not drain before the deadline");
        }
        let executor = self.reloader.executor().await;
        let _ = tokio::task::spawn_blocking(move || executor.shutdown()).await;
    }
}

/// Serves `config` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    Server::new(config, listener).run(shutdown).await
}

async fn timeout_at<F: std::future::Future>(deadline: Instant, f: F) -> Result<F::Output, ()> {
    timeout(deadline.saturating_duration_since(Instant::now()), f)
        .await
        .map_err(|_| ())
}

/// Reloads the configuration on every `SIGHUP` until shutdown.
async fn reload_on_hangup(state: Arc<AppState>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler; reload with POST /admin/reload");
        return;
    };
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => {}
            () = shutdown.cancelled() => return,
        }
        tracing::info!("SIGHUP: reloading the configuration");
        if let Some(reloader) = state.reloader() {
            // The outcome is logged and counted by the reloader.
            let _ = reloader.reload(&state, "", false).await;
        }
    }
}

/// Loads the tokenizer, the engines and the knowledge base; starts the batcher.
async fn load(
    config: &Arc<Config>,
    metrics: &Arc<Metrics>,
    factory: EngineFactory,
    tracker: &TaskTracker,
    stop_batcher: &CancellationToken,
    limits: &ConnectionLimits,
) -> Result<(Services, Arc<Executor>, ThreadBudget), ServeError> {
    let budget = ThreadBudget::compute(config);
    budget.log(config.executor.strategy);
    let tokenizer =
        TextTokenizer::load(&config.model.tokenizer_path(), config.model.max_seq_length)
            .map_err(ServeError::Startup)?;
    let (exec_config, m, ladder) = (
        config.executor.clone(),
        metrics.clone(),
        budget.ladder.clone(),
    );
    let engines = metrics.startup_work("engines");
    // Loading sessions reads and optimises the model: blocking work, off the event loop.
    let executor =
        tokio::task::spawn_blocking(move || Executor::start(&exec_config, ladder, factory, m))
            .await
            .map_err(|e| ServeError::Startup(format!("engine loading panicked: {e}")))??;
    drop(engines);
    metrics.set_build_info(&crate::engine::onnxruntime_version());
    let executor = Arc::new(executor);
    let handle = batcher::spawn(
        &config.batching,
        executor.clone(),
        metrics.clone(),
        tracker,
        stop_batcher.clone(),
    );
    let pipeline = Pipeline::new(Arc::new(tokenizer), handle, metrics.clone());
    let chat = if config.chat.enabled {
        // Its batches run through the request path but are not requests (see Metrics).
        let _kb = metrics.startup_work("knowledge_base");
        let bot = ChatBot::build(&config.chat, &pipeline, config.limits.max_inputs)
            .await
            .map_err(ServeError::Startup)?;
        tracing::info!(entries = bot.len(), "knowledge base embedded");
        Some(Arc::new(bot))
    } else {
        None
    };
    let generator = start_generator(config, &executor, metrics).await?;
    let mut info = info::build(
        config,
        &budget,
        executor.footprint(),
        chat.as_deref(),
        limits,
        1,
    );
    info::add_generation(&mut info, config, generator.as_ref());
    Ok((
        Services {
            pipeline,
            chat,
            generator,
            info,
        },
        executor,
        budget,
    ))
}

/// Loads the generative model and starts its scheduler, when `generation.enabled`.
async fn start_generator(
    config: &Arc<Config>,
    executor: &Arc<Executor>,
    metrics: &Arc<Metrics>,
) -> Result<Option<crate::generate::Generator>, ServeError> {
    if !config.generation.enabled {
        return Ok(None);
    }
    let _work = metrics.startup_work("generation");
    let (c, e, m) = (config.clone(), executor.clone(), metrics.clone());
    let runtime = tokio::runtime::Handle::current();
    let generator = tokio::task::spawn_blocking(move || {
        crate::generate::start(
            &c.generation,
            c.model.ort_library.as_deref(),
            e,
            c.executor.inference_nice,
            m,
            &runtime,
        )
    })
    .await
    .map_err(|e| ServeError::Startup(format!("loading the generative model panicked: {e}")))?
    .map_err(|e| ServeError::Startup(e.to_string()))?;
    tracing::info!(model = generator.model_name(), "generative model loaded");
    Ok(Some(generator))
}
