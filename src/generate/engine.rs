//! The decoder: one ONNX Runtime session of the exported model and the key/value cache it
//! updates in place. Synchronous and tokio-free, like the embedding engine.
//!
//! The graph (`models/export_llm.py`) takes `input_ids [rows, seq]`, `seqlens_k [rows]`
//! (each row's tokens after the step, minus one), `total_sequence_length` and, per layer,
//! `past_key_values.{L}.{key,value}`; it returns the logits of each row's last position
//! and `present.{L}.{key,value}`. Past and present are bound to the same view of the
//! cache, so GroupQueryAttention appends each row's keys and values at its own length:
//! nothing is copied per step.

use super::kv::{KvCache, KvShape};
use crate::engine::{
    build_session, ort_environment, resolve_ort_library, EngineError, SessionThreads,
};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{Shape, Tensor, TensorRefMut};
use ort::AsPointer;
use serde::Deserialize;
use std::ffi::{CStr, CString};
use std::path::Path;

/// What `generation.json` (written by the export) says about the model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub max_position: usize,
    pub eos_token_id: u32,
    pub im_start_id: u32,
    pub im_end_id: u32,
    /// Tokens that end a sequence (end of text and `<|im_end|>`).
    pub stop_token_ids: Vec<u32>,
    /// How the weights were mapped from the GGUF file (e.g. the exact Q4_1 blocks).
    #[serde(default)]
    pub weights: String,
    #[serde(default, alias = "default_system_message", alias = "system")]
    pub default_system: Option<String>,
}

impl ModelSpec {
    pub fn load(dir: &Path) -> Result<ModelSpec, EngineError> {
        let path = dir.join("generation.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EngineError::load(format!(
                "{}: {e}; run `make setup` to export the model",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| EngineError::load(format!("{}: {e}", path.display())))
    }
}

/// One forward pass: `rows` rows from `first_row`, each with the same number of new
/// tokens after `past[i]` tokens already in its cache.
#[derive(Debug, Clone)]
pub struct Forward<'a> {
    pub first_row: usize,
    pub tokens: &'a [&'a [u32]],
    pub past: &'a [usize],
}

/// What the scheduler needs of a decoder: forward passes over rows of a cache that stays
/// in place, and moving a row. [`GenEngine`] is the real one; tests of the scheduler use
/// a fake whose "cache" is each row's token history.
pub trait Decoder: Send {
    /// The logits of each row's last new token, `[rows x vocab]` row-major.
    fn forward(&mut self, step: &Forward<'_>) -> Result<Vec<f32>, EngineError>;
    /// Moves a sequence's cache from row `from` to row `to` (its first `len` positions).
    fn move_row(&mut self, from: usize, to: usize, len: usize);
}

/// The loaded decoder and its cache.
pub struct GenEngine {
    session: Session,
    kv: KvCache,
    spec: ModelSpec,
    /// Input and output names of the cache, built once (`[layer][key, value]`).
    past_names: Vec<[CString; 2]>,
    present_names: Vec<[CString; 2]>,
    cpu: MemoryInfo<'static>,
}

impl GenEngine {
    /// Loads `dir/model.onnx` for steps on `threads` intra-op threads, with a cache of
    /// `slots` rows of `max_context` tokens.
    pub fn load(
        dir: &Path,
        ort_library: Option<&Path>,
        threads: SessionThreads,
        slots: usize,
        max_context: usize,
    ) -> Result<GenEngine, EngineError> {
        let spec = ModelSpec::load(dir)?;
        if max_context > spec.max_position {
            return Err(EngineError::load(format!(
                "generation.max_context {max_context} exceeds the model's {} positions",
                spec.max_position
            )));
        }
        let env = ort_environment(&resolve_ort_library(ort_library)?)?;
        let session = build_session(&env, &dir.join("model.onnx"), threads, None)?;
        let name = |s: String| CString::new(s).expect("no NUL in a tensor name");
        let kinds = ["key", "value"];
        let past_names = (0..spec.num_layers)
            .map(|l| kinds.map(|k| name(format!("past_key_values.{l}.{k}"))))
            .collect();
        let present_names = (0..spec.num_layers)
            .map(|l| kinds.map(|k| name(format!("present.{l}.{k}"))))
            .collect();
        let shape = KvShape {
            layers: spec.num_layers,
            slots,
            kv_heads: spec.num_kv_heads,
            max_context,
            head_dim: spec.head_dim,
        };
        let cpu = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(EngineError::load)?;
        Ok(GenEngine {
            session,
            kv: KvCache::new(shape),
            spec,
            past_names,
            present_names,
            cpu,
        })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    pub fn kv_shape(&self) -> KvShape {
        self.kv.shape()
    }
}

impl Decoder for GenEngine {
    fn move_row(&mut self, from: usize, to: usize, len: usize) {
        self.kv.move_row(from, to, len)
    }

    fn forward(&mut self, step: &Forward<'_>) -> Result<Vec<f32>, EngineError> {
        let rows = step.tokens.len();
        let seq = step.tokens.first().map_or(0, |t| t.len());
        let shape = self.kv.shape();
        if rows == 0
            || seq == 0
            || step.past.len() != rows
            || step.tokens.iter().any(|t| t.len() != seq)
        {
            return Err(EngineError::inference(
                "a step needs rows of equal, non-zero length",
            ));
        }
        if step.first_row + rows > shape.slots
            || step.past.iter().any(|&p| p + seq > shape.max_context)
        {
            return Err(EngineError::inference("a step does not fit the cache"));
        }
        let ids: Vec<i64> = step
            .tokens
            .iter()
            .flat_map(|t| t.iter().map(|&x| i64::from(x)))
            .collect();
        let seqlens: Vec<i32> = step.past.iter().map(|&p| (p + seq - 1) as i32).collect();
        let total = step.past.iter().max().copied().unwrap_or(0) + seq;
        let err = EngineError::inference;
        let mut binding = self.session.create_binding().map_err(err)?;
        binding
            .bind_input(
                "input_ids",
                &Tensor::from_array(([rows, seq], ids)).map_err(err)?,
            )
            .map_err(err)?;
        binding
            .bind_input(
                "seqlens_k",
                &Tensor::from_array(([rows], seqlens)).map_err(err)?,
            )
            .map_err(err)?;
        let total = Tensor::from_array(ndarray::arr0(total as i32).into_dyn()).map_err(err)?;
        binding
            .bind_input("total_sequence_length", &total)
            .map_err(err)?;
        // The logits go to a buffer of ours, bound like the cache through the C API:
        // `ort` pairs the outputs ONNX Runtime returns with the names it bound itself, and
        // the cache outputs are bound behind its back (see `bind_raw`), so it must bind
        // none (it would pair 61 values with one name: a debug assertion, or the first
        // cache output read as the logits).
        let vocab = self.spec.vocab_size;
        let mut logits = vec![0f32; rows * vocab];
        // SAFETY: `logits` is neither moved nor reallocated until the view is dropped,
        // below, after the run.
        let logits_view = unsafe {
            TensorRefMut::<f32>::from_raw(
                self.cpu.clone(),
                logits.as_mut_ptr().cast(),
                Shape::new([rows as i64, vocab as i64]),
            )
        }
        .map_err(err)?;
        bind_raw(&mut binding, None, c"logits", logits_view.ptr())?;
        // The views must live until the run has finished: ONNX Runtime holds raw pointers.
        let mut views = Vec::with_capacity(2 * shape.layers);
        let dims = Shape::new([
            rows as i64,
            shape.kv_heads as i64,
            shape.max_context as i64,
            shape.head_dim as i64,
        ]);
        for layer in 0..shape.layers {
            for kind in 0..2 {
                let ptr = self.kv.rows_ptr(layer, kind, step.first_row, rows);
                // SAFETY: `ptr` points at `rows` whole rows of a buffer that lives as long as
                // `self.kv` (never reallocated); the view is dropped before this returns.
                let view = unsafe {
                    TensorRefMut::<f32>::from_raw(self.cpu.clone(), ptr.cast(), dims.clone())
                }
                .map_err(err)?;
                bind_raw(
                    &mut binding,
                    Some(&self.past_names[layer][kind]),
                    &self.present_names[layer][kind],
                    view.ptr(),
                )?;
                views.push(view);
            }
        }
        // ONNX Runtime checks that each output fits the buffer bound to it: a logits
        // shape other than `[rows, vocab]` is an error here.
        self.session.run_binding(&binding).map_err(err)?;
        drop(binding);
        drop(views);
        drop(logits_view);
        Ok(logits)
    }
}

/// Binds a view as the output `output` and, when given, the input `input` too (a cache
/// view is both past and present). `ort`'s safe binding copies borrowed inputs and
/// refuses borrowed outputs, which would defeat the in-place update, so this goes through
/// the C API with the view's own `OrtValue`.
fn bind_raw(
    binding: &mut ort::session::IoBinding,
    input: Option<&CStr>,
    output: &CStr,
    value: *const ort::sys::OrtValue,
) -> Result<(), EngineError> {
    let api = ort::api();
    // SAFETY: the binding and value pointers are valid (both owned by the caller, which
    // keeps the value alive until after the run); the names are NUL-terminated.
    unsafe {
        if let Some(input) = input {
            let status = (api.BindInput)(binding.ptr_mut(), input.as_ptr(), value);
            ort::Error::result_from_status(status).map_err(EngineError::inference)?;
        }
        let status = (api.BindOutput)(binding.ptr_mut(), output.as_ptr(), value);
        ort::Error::result_from_status(status).map_err(EngineError::inference)?;
    }
    Ok(())
}
