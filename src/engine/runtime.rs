//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`).

use super::EngineError;
use ort::environment::Environment;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const LIB_NAME: &str = "libonnxruntime.so";

/// Picks the library: the config key, then `ORT_DYLIB_PATH`, then where `make setup` puts
/// it (`lib/` under the working directory or above the executable). The error lists every
/// place that was tried, so a user knows what to fix.
pub fn resolve_ort_library(configured: Option<&Path>) -> Result<PathBuf, EngineError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(p) = configured {
        candidates.push(("model.ort_library".into(), p.to_owned()));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(("ORT_DYLIB_PATH".into(), PathBuf::from(p)));
    }
    candidates.push((
        "working directory".into(),
        PathBuf::from("lib").join(LIB_NAME),
    ));
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        // target/{debug,release}/concur -> ../../lib ; /app/bin/concur -> ../lib ; /app/concur -> lib
        for up in ["lib", "../lib", "../../lib", "../../../lib"] {
            candidates.push((
                "next to the executable".into(),
                exe_dir.join(up).join(LIB_NAME),
            ));
        }
    }
    for (source, path) in candidates {
        if path.is_file() {
            return Ok(path);
        }
        tried.push(format!("{} ({source})", path.display()));
    }
    Err(EngineError::load(format!(
        "ONNX Runtime library not found; tried: {}. Run `make setup`, set ORT_DYLIB_PATH, or set model.ort_library",
        tried.join(", ")
    )))
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The process-wide ONNX Runtime environment, created on first use from `library`.
///
/// ONNX Runtime allows one library per process, so later calls get the first environment
/// whatever path they pass.
pub fn ort_environment(library: &Path) -> Result<Environment, EngineError> {
    ENVIRONMENT
        .get_or_init(|| {
            let builder = ort::init_from(library)
                .map_err(|e| format!("cannot load {}: {e}", library.display()))?;
            builder
                .with_name("concur")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))
        })
        .clone()
        .map_err(EngineError::load)
}
