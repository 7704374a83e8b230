//! What every request handler shares.

use crate::chat::ChatBot;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Everything that exists once the model is loaded.
pub struct Services {
    pub pipeline: Pipeline,
    pub chat: Option<Arc<ChatBot>>,
    /// The body of `GET /info`, built once.
    pub info: serde_json::Value,
}

/// Shared by every connection of one server.
pub struct AppState {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Set once, when loading finishes: until then `/health` answers and `/ready` does not.
    /// A `OnceLock` because it is written once and then read by every request lock-free.
    services: OnceLock<Services>,
    /// Set when shutdown begins, so `/ready` turns 503 before connections are refused.
    draining: AtomicBool,
}

impl AppState {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> AppState {
        AppState {
            config,
            metrics,
            services: OnceLock::new(),
            draining: AtomicBool::new(false),
        }
    }

    pub fn services(&self) -> Option<&Services> {
        self.services.get()
    }

    pub fn set_services(&self, services: Services) {
        if self.services.set(services).is_err() {
            tracing::error!("services were set twice; keeping the first");
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether `name` refers to the served model (the short or the hub name).
    pub fn is_served_model(&self, name: &str) -> bool {
        names_model(name, &self.config.model.name)
    }
}

/// Whether `name` refers to the model `served`: its short name or a hub name ending in it.
pub fn names_model(name: &str, served: &str) -> bool {
    name == served || name.rsplit('/').next() == Some(served)
}
