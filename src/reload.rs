//! Live reconfiguration: `SIGHUP` or `POST /admin/reload` re-reads the configuration and
//! switches to it while serving, with nothing dropped.
//!
//! One reload, in order (reloads are serialised):
//! 1. Read the source again (file + start-time `--set`s + the overrides of earlier
//!    reloads + this reload's own TOML) and validate it whole; compare it with the live config key by key. An invalid config, or
//!    one that changes a key that cannot change live, is refused: nothing happens.
//! 2. If the executor or the model changed, build the new executor and warm every session
//!    while the old one keeps serving.
//! 3. Swap it into the batcher between two batches: queued inputs go to the new one,
//!    batches in flight finish on the old one, which is then shut down (threads joined).
//! 4. Retune or re-embed the chat bot, then make the new config, `/info` and the
//!    `strategy` label live at once, and count the generation up.

use crate::chat::ChatBot;
use crate::config::{self, Change, Config, ConfigError, ConfigSource};
use crate::connections::ConnectionLimits;
use crate::engine::{onnx_factory, EngineError, EngineFactory};
use crate::executor::Executor;
use crate::info;
use crate::metrics::{Metrics, ReloadOutcome};
use crate::state::{AppState, Services};
use crate::threads::ThreadBudget;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

/// What an applied (or unchanged) reload did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Applied {
    /// The live generation after the reload (unchanged when nothing differed).
    pub generation: u64,
    /// Every key whose value changed, as named in the TOML file.
    pub changed: Vec<Change>,
    /// Time from the request to the new config being live, in milliseconds.
    pub took_ms: f64,
}

/// Why a reload did not take effect. The old configuration stays in every case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("this server was started without a configuration source to reload")]
    NoSource,
    #[error("{message}")]
    Invalid {
        key: Option<String>,
        message: String,
    },
    #[error("`{key}` cannot change while serving (restart to change it); nothing was changed")]
    NotLive { key: String },
    #[error("the new configuration could not start, the old one stays: {0}")]
    Failed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
}

impl ReloadError {
    fn outcome(&self) -> ReloadOutcome {
        match self {
            ReloadError::Failed(_) | ReloadError::ShuttingDown => ReloadOutcome::Failed,
            _ => ReloadOutcome::Rejected,
        }
    }
}

impl From<ConfigError> for ReloadError {
    fn from(e: ConfigError) -> Self {
        let key = match &e {
            ConfigError::Invalid { key, .. } => Some((*key).to_string()),
            _ => None,
        };
        ReloadError::Invalid {
            key,
            message: e.to_string(),
        }
    }
}

/// The executor in use and what it was built from.
struct Live {
    executor: Arc<Executor>,
    budget: ThreadBudget,
    generation: u64,
    /// The TOML of every reload so far, merged: a reload changes what is live, so a later
    /// one that sets another key keeps it. `reset` drops them (back to file + `--set`s).
    overrides: toml::Table,
}

/// Owns the live executor; swaps it, and everything built from the config, on reload.
pub struct Reloader {
    source: Option<ConfigSource>,
    /// Set when tests inject engines: reloads keep using it instead of the ONNX model.
    custom_factory: Option<EngineFactory>,
    connections: ConnectionLimits,
    /// Replaced executors finishing their last batches; shutdown waits for them.
    retiring: TaskTracker,
    /// A tokio mutex: held across the whole reload, so reloads are serialised.
    live: Mutex<Live>,
}

/// What the server hands the reloader once it has loaded.
pub struct Started {
    pub source: Option<ConfigSource>,
    pub custom_factory: Option<EngineFactory>,
    pub connections: ConnectionLimits,
    pub retiring: TaskTracker,
    pub executor: Arc<Executor>,
    pub budget: ThreadBudget,
}

impl Reloader {
    pub fn new(s: Started) -> Reloader {
        Reloader {
            source: s.source,
            custom_factory: s.custom_factory,
            connections: s.connections,
            retiring: s.retiring,
            live: Mutex::new(Live {
                executor: s.executor,
                budget: s.budget,
                generation: 1,
                overrides: toml::Table::new(),
            }),
        }
    }

    /// The executor in use (waits for a reload in progress).
    pub async fn executor(&self) -> Arc<Executor> {
        self.live.lock().await.executor.clone()
    }

    /// Re-reads the configuration with the overrides of earlier reloads (none after
    /// `reset`) and `extra` TOML on top, and switches to it.
    pub async fn reload(
        &self,
        state: &AppState,
        extra: &str,
        reset: bool,
    ) -> Result<Applied, ReloadError> {
        let started = Instant::now();
        let mut live = self.live.lock().await;
        let result = self.apply(state, &mut live, extra, reset).await;
        let outcome = match &result {
            Ok(a) if a.changed.is_empty() => ReloadOutcome::Unchanged,
            Ok(_) => ReloadOutcome::Applied,
            Err(e) => e.outcome(),
        };
        state.metrics.reload.count(outcome);
        match &result {
            Ok(a) => tracing::info!(
                generation = a.generation,
                changed = ?a.changed.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
                "reload {}", outcome.as_str()
            ),
            Err(e) => tracing::warn!("reload {}: {e}", outcome.as_str()),
        }
        result.map(|mut a| {
            a.took_ms = started.elapsed().as_secs_f64() * 1e3;
            a
        })
    }

    async fn apply(
        &self,
        state: &AppState,
        live: &mut Live,
        extra: &str,
        reset: bool,
    ) -> Result<Applied, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let mut overrides = match reset {
            true => toml::Table::new(),
            false => live.overrides.clone(),
        };
        config::merge_toml(&mut overrides, config::parse_overrides(extra)?);
        let new = Arc::new(source.load_with(&overrides)?);
        let old = state.config();
        let changed = config::changes(&old, &new);
        if let Some(c) = changed.iter().find(|c| !c.is_live()) {
            return Err(ReloadError::NotLive { key: c.key.clone() });
        }
        let services = state.services().ok_or(ReloadError::ShuttingDown)?;
        if state.is_draining() {
            return Err(ReloadError::ShuttingDown);
        }
        if changed.is_empty() {
            live.overrides = overrides;
            return Ok(Applied {
                generation: live.generation,
                changed,
                took_ms: 0.0,
            });
        }
        let rebuild = changed
            .iter()
            .any(|c| c.key.starts_with("executor.") || c.key == "model.variant");
        let (executor, budget) = match rebuild {
            true => self.start_executor(&new, &state.metrics).await?,
            false => (live.executor.clone(), live.budget.clone()),
        };
        let batcher = services.pipeline.batcher();
        let Some(replaced) = batcher.swap(executor.clone(), &new.batching).await else {
            self.retire(executor);
            return Err(ReloadError::ShuttingDown);
        };
        if rebuild {
            self.retire(replaced);
        }
        state.metrics.set_strategy(new.executor.strategy.as_str());
        *live = Live {
            executor,
            budget,
            generation: live.generation + 1,
            overrides,
        };
        let chat = self.chat(&services, &new, &changed).await;
        let info = info::build(
            &new,
            &live.budget,
            live.executor.footprint(),
            chat.as_deref(),
            &self.connections,
            live.generation,
        );
        let generator = services.generator.clone();
        if let Some(g) = &generator {
            if rebuild {
                g.set_executor(live.executor.clone()).await;
            }
            if changed.iter().any(|c| c.key.starts_with("generation.")) {
                g.set_policy(&new.generation).await;
            }
        }
        let mut info = info;
        info::add_generation(&mut info, &new, generator.as_ref());
        let pipeline = services.pipeline.clone();
        state.set_services(
            new,
            Services {
                pipeline,
                chat,
                generator,
                info,
            },
        );
        state.metrics.reload.generation.set(live.generation as i64);
        Ok(Applied {
            generation: live.generation,
            changed,
            took_ms: 0.0,
        })
    }

    /// Builds and warms the executor of `config` off the event loop.
    async fn start_executor(
        &self,
        config: &Arc<Config>,
        metrics: &Arc<Metrics>,
    ) -> Result<(Arc<Executor>, ThreadBudget), ReloadError> {
        let budget = ThreadBudget::compute(config);
        budget.log(config.executor.strategy);
        let factory = self
            .custom_factory
            .clone()
            .unwrap_or_else(|| onnx_factory(&config.model, &config.executor));
        let (exec, ladder, m) = (
            config.executor.clone(),
            budget.ladder.clone(),
            metrics.clone(),
        );
        let executor = tokio::task::spawn_blocking(move || {
            let executor = Executor::start(&exec, ladder, factory, m)?;
            if let Err(e) = executor.warm() {
                executor.shutdown();
                return Err(e);
            }
            Ok::<_, EngineError>(executor)
        })
        .await
        .map_err(|e| ReloadError::Failed(format!("engine loading panicked: {e}")))?
        .map_err(|e| ReloadError::Failed(e.to_string()))?;
        Ok((Arc::new(executor), budget))
    }

    /// Shuts `old` down once its last batches have finished, joining its threads, then
    /// gives the memory of its sessions back to the system.
    fn retire(&self, old: Arc<Executor>) {
        self.retiring.spawn(async move {
            old.idle().await;
            let _ = tokio::task::spawn_blocking(move || {
                old.shutdown();
                drop(old);
                release_free_memory();
            })
            .await;
        });
    }

    /// The chat bot for `new`: the same one retuned, or re-embedded when the model changed
    /// (its vectors come from the model). If re-embedding fails the old vectors stay.
    async fn chat(
        &self,
        services: &Services,
        new: &Config,
        changed: &[Change],
    ) -> Option<Arc<ChatBot>> {
        let bot = services.chat.clone()?;
        if changed.iter().any(|c| c.key == "model.variant") {
            let rebuilt = ChatBot::build(&new.chat, &services.pipeline, new.limits.max_inputs);
            match rebuilt.await {
                Ok(fresh) => return Some(Arc::new(fresh)),
                Err(e) => tracing::warn!("kept the knowledge base's old vectors: {e}"),
            }
        }
        bot.retune(&new.chat);
        Some(bot)
    }
}

/// Returns freed heap memory to the system. glibc keeps what a dropped session freed in its
/// arenas (the sessions were built on other threads, so mostly not at the top of the main
/// heap); without this, every reload would leave the process as large as two executors.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
