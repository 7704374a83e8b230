//! The engine: synchronous, tokio-free inference over one batch of token sequences.
//!
//! This layer owns the contract the layers above depend on: [`Batch`] in, one pooled
//! vector per row out. Pooling and normalisation live here too ([`pooling`]).

mod onnx;
pub mod pooling;
mod runtime;

pub use onnx::{build_session, OnnxEngine, SessionThreads, SharedWeights};
pub use runtime::{
    note_onnxruntime_version, onnxruntime_version, ort_environment, resolve_ort_library,
};

use std::sync::Arc;

/// Token ids of one input, special tokens included, already truncated.
pub type TokenIds = Vec<u32>;

/// One forward pass worth of inputs. Rows may differ in length; the engine pads.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub rows: Vec<TokenIds>,
}

impl Batch {
    /// Length of the longest row: what every row is padded to.
    pub fn max_len(&self) -> usize {
        self.rows.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Token slots the forward pass computes: longest row times rows.
    pub fn padded_tokens(&self) -> usize {
        self.max_len() * self.rows.len()
    }

    /// Tokens that carry input (not padding).
    pub fn real_tokens(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// Why a batch failed. `Clone` so one failure fans out to every request in the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load the model: {0}")]
    Load(Arc<str>),
    #[error("inference failed: {0}")]
    Inference(Arc<str>),
    #[error("the engine panicked while running this batch")]
    Panicked,
}

impl EngineError {
    pub fn load(e: impl std::fmt::Display) -> Self {
        EngineError::Load(e.to_string().into())
    }
    pub fn inference(e: impl std::fmt::Display) -> Self {
        EngineError::Inference(e.to_string().into())
    }
}

/// A loaded model that turns a batch into one mean-pooled (not normalised) vector per row.
///
/// `&mut self` because an ONNX Runtime session runs one batch at a time; concurrency comes
/// from owning several engines, never from sharing one.
pub trait Engine: Send {
    fn embed(&mut self, batch: &Batch) -> Result<Vec<Vec<f32>>, EngineError>;
}

/// Builds engines for forward passes on `width` cores (the argument): at start, and again
/// to replace one that panicked.
pub type EngineFactory = Arc<dyn Fn(usize) -> Result<Box<dyn Engine>, EngineError> + Send + Sync>;

/// Builds ONNX Runtime sessions of the model and executor settings of a configuration,
/// sharing pre-packed weights between the sessions it builds.
pub fn onnx_factory(
    model: &crate::config::ModelConfig,
    exec: &crate::config::ExecutorConfig,
) -> EngineFactory {
    let (model, exec) = (model.clone(), exec.clone());
    let shared = SharedWeights::new();
    Arc::new(move |width| {
        OnnxEngine::load(&model, &exec, width, &shared).map(|e| Box::new(e) as Box<dyn Engine>)
    })
}
