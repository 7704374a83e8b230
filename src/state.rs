//! What every request handler shares.

use crate::chat::ChatBot;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::reload::Reloader;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Everything that exists once the model is loaded. Replaced whole by a reload.
pub struct Services {
    pub pipeline: Pipeline,
    pub chat: Option<Arc<ChatBot>>,
    /// The generative model's scheduler, when `generation.enabled`. It outlives reloads:
    /// its key/value cache stays in place; a reload only sends it new rules.
    pub generator: Option<crate::generate::Generator>,
    /// The body of `GET /info`, built at start and at each reload.
    pub info: serde_json::Value,
}

/// Shared by every connection of one server.
pub struct AppState {
    /// The live configuration. Swapped whole by a reload; a request loads it once and
    /// keeps that snapshot to the end, so it never sees half of two configs.
    config: ArcSwap<Config>,
    pub metrics: Arc<Metrics>,
    /// Set when loading finishes (until then `/health` answers and `/ready` does not), and
    /// replaced by each reload. Read lock-free by every request.
    services: ArcSwapOption<Services>,
    /// Set once the server has loaded; switches the live configuration.
    reloader: OnceLock<Arc<Reloader>>,
    /// Set when shutdown begins, so `/ready` turns 503 before connections are refused.
    draining: AtomicBool,
}

impl AppState {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> AppState {
        AppState {
            config: ArcSwap::new(config),
            metrics,
            services: ArcSwapOption::empty(),
            reloader: OnceLock::new(),
            draining: AtomicBool::new(false),
        }
    }

    /// The live configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn services(&self) -> Option<Arc<Services>> {
        self.services.load_full()
    }

    /// Makes `services` (and the `config` they were built from) live.
    pub fn set_services(&self, config: Arc<Config>, services: Services) {
        self.config.store(config);
        self.services.store(Some(Arc::new(services)));
    }

    pub fn reloader(&self) -> Option<&Arc<Reloader>> {
        self.reloader.get()
    }

    pub fn set_reloader(&self, reloader: Arc<Reloader>) {
        let _ = self.reloader.set(reloader);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether `name` refers to the served model (the short or the hub name).
    pub fn is_served_model(&self, name: &str) -> bool {
        names_model(name, &self.config.load().model.name)
    }
}

/// Whether `name` refers to the model `served`: its short name or a hub name ending in it.
pub fn names_model(name: &str, served: &str) -> bool {
    name == served || name.rsplit('/').next() == Some(served)
}
