//! The ONNX Runtime engine: one `ort` session, padding, the forward pass, mean pooling.

use super::{pooling, runtime, Batch, Engine, EngineError};
use crate::config::{ExecutorConfig, ModelConfig};
use ort::environment::ThreadManager;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights};
use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

const OUTPUT: &str = "last_hidden_state";

/// Weights shared by every session of a process: ONNX Runtime pre-packs each MatMul's
/// weights once into this container, and sessions loaded with it reuse them, so a second
/// session of another width costs little memory. Clone it; clones share the container.
///
/// The container is made on first use: ONNX Runtime's library must be loaded first.
#[derive(Clone)]
pub struct SharedWeights(Arc<OnceLock<PrepackedWeights>>);

impl SharedWeights {
    pub fn new() -> SharedWeights {
        SharedWeights(Arc::new(OnceLock::new()))
    }

    fn container(&self) -> &PrepackedWeights {
        self.0.get_or_init(PrepackedWeights::new)
    }
}

impl Default for SharedWeights {
    fn default() -> Self {
        SharedWeights::new()
    }
}

/// Starts ONNX Runtime's intra-op threads with the inference nice value, like the
/// strategy's own threads: otherwise a wide batch's helper threads would outrank the event
/// loop while the thread that called the engine does not.
struct NicedThreads(i32);

impl ThreadManager for NicedThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let nice = self.0;
        std::thread::Builder::new()
            .name("concur-ort".into())
            .spawn(move || {
                crate::threads::lower_current_thread(nice);
                work();
            })
            .map_err(ort::Error::wrap)
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        let _ = thread.join();
        Ok(())
    }
}

/// The threads of one session: `intra` run one forward pass together.
#[derive(Debug, Clone, Copy)]
pub struct SessionThreads {
    pub intra: usize,
    pub inter: usize,
    pub spinning: bool,
    /// Nice value of ONNX Runtime's own threads (0 = unchanged).
    pub nice: i32,
}

/// Loads the model at `path` with every graph optimization, on `threads`, sharing
/// pre-packed weights through `prepacked` when given.
pub fn build_session(
    env: &ort::environment::Environment,
    path: &std::path::Path,
    threads: SessionThreads,
    prepacked: Option<&PrepackedWeights>,
) -> Result<Session, EngineError> {
    Session::builder(env)
        .and_then(|b| {
            b.with_optimization_level(GraphOptimizationLevel::All)
                .map_err(Into::into)
        })
        .and_then(|b| b.with_intra_threads(threads.intra).map_err(Into::into))
        .and_then(|b| b.with_inter_threads(threads.inter).map_err(Into::into))
        // Spinning threads burn a core while idle; with several sessions on few cores
        // that steals time from the session doing work, so it is a setting.
        .and_then(|b| {
            b.with_intra_op_spinning(threads.spinning)
                .map_err(Into::into)
        })
        .and_then(|b| match prepacked {
            Some(p) => b.with_prepacked_weights(p).map_err(Into::into),
            None => Ok(b),
        })
        .and_then(|b| {
            b.with_thread_manager(NicedThreads(threads.nice))
                .map_err(Into::into)
        })
        .and_then(|mut b| b.commit_from_file(path))
        .map_err(|e: ort::Error| EngineError::load(format!("{}: {e}", path.display())))
}

/// One ONNX Runtime session of the sentence-embedding model.
pub struct OnnxEngine {
    session: Session,
    /// Whether the exported graph takes `token_type_ids` (all zeros for one-segment input).
    wants_token_types: bool,
}

impl OnnxEngine {
    /// Loads the configured model variant for forward passes on `width` cores (intra-op
    /// threads), sharing pre-packed weights with every session loaded with `shared`.
    pub fn load(
        model: &ModelConfig,
        exec: &ExecutorConfig,
        width: usize,
        shared: &SharedWeights,
    ) -> Result<Self, EngineError> {
        let library = runtime::resolve_ort_library(model.ort_library.as_deref())?;
        let env = runtime::ort_environment(&library)?;
        let path = model.model_path();
        if !path.is_file() {
            return Err(EngineError::load(format!(
                "model file {} not found; run `make setup` to export it",
                path.display()
            )));
        }
        let threads = SessionThreads {
            intra: width,
            inter: exec.inter_op_threads,
            spinning: exec.intra_op_spinning,
            nice: exec.inference_nice,
        };
        let session = build_session(&env, &path, threads, Some(shared.container()))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in ["input_ids", "attention_mask"] {
            if !names.contains(&required) {
                return Err(EngineError::load(format!(
                    "{} has no input `{required}` (inputs: {names:?})",
                    path.display()
                )));
            }
        }
        if !session.outputs().iter().any(|o| o.name() == OUTPUT) {
            return Err(EngineError::load(format!(
                "{} has no output `{OUTPUT}`",
                path.display()
            )));
        }
        let wants_token_types = names.contains(&"token_type_ids");
        Ok(OnnxEngine {
            session,
            wants_token_types,
        })
    }
}

/// Right-pads every row to the longest with id 0 and mask 0.
fn pad(batch: &Batch) -> (Vec<i64>, Vec<i64>, usize) {
    let seq = batch.max_len();
    let mut ids = vec![0i64; batch.rows.len() * seq];
    let mut mask = vec![0i64; batch.rows.len() * seq];
    for (r, row) in batch.rows.iter().enumerate() {
        for (c, &id) in row.iter().enumerate() {
            ids[r * seq + c] = i64::from(id);
            mask[r * seq + c] = 1;
        }
    }
    (ids, mask, seq)
}

impl Engine for OnnxEngine {
    fn embed(&mut self, batch: &Batch) -> Result<Vec<Vec<f32>>, EngineError> {
        if batch.rows.is_empty() {
            return Ok(Vec::new());
        }
        if batch.rows.iter().any(Vec::is_empty) {
            return Err(EngineError::inference("a row has no tokens"));
        }
        let rows = batch.rows.len();
        let (ids, mask, seq) = pad(batch);
        let shape = [rows, seq];
        let tensor =
            |data: Vec<i64>| Tensor::from_array((shape, data)).map_err(EngineError::inference);
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), tensor(ids)?.into()),
            ("attention_mask".into(), tensor(mask)?.into()),
        ];
        if self.wants_token_types {
            inputs.push(("token_type_ids".into(), tensor(vec![0; rows * seq])?.into()));
        }
        let outputs = self.session.run(inputs).map_err(EngineError::inference)?;
        let value = outputs
            .get(OUTPUT)
            .ok_or_else(|| EngineError::inference(format!("no output `{OUTPUT}`")))?;
        let (out_shape, hidden) = value
            .try_extract_tensor::<f32>()
            .map_err(EngineError::inference)?;
        let dims: &[i64] = out_shape;
        let [b, s, d] = dims else {
            return Err(EngineError::inference(format!(
                "unexpected output shape {dims:?}"
            )));
        };
        if *b as usize != rows || *s as usize != seq {
            return Err(EngineError::inference(format!(
                "output shape {dims:?} does not match the batch [{rows}, {seq}, _]"
            )));
        }
        let dim = *d as usize;
        Ok(batch
            .rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                pooling::mean_pool(&hidden[r * seq * dim..(r + 1) * seq * dim], dim, row.len())
            })
            .collect())
    }
}
