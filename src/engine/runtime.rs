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
            let environment = builder
                .with_name("concur")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
            if let Some(version) = library_version(library) {
                let _ = LIBRARY_VERSION.set(version);
            }
            Ok(environment)
        })
        .clone()
        .map_err(EngineError::load)
}

/// The loaded library's release, asked once when the environment is built.
static LIBRARY_VERSION: OnceLock<String> = OnceLock::new();

/// The loaded ONNX Runtime's release ("1.31.1"), or "unknown" before the environment exists
/// (or when a custom engine never loads it).
pub fn onnxruntime_version() -> String {
    LIBRARY_VERSION
        .get()
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

/// Records the release of a library loaded by another process (a child of the
/// `processes` strategy) when this one never loads it; the first value set stays.
pub fn note_onnxruntime_version(version: &str) {
    let _ = LIBRARY_VERSION.set(version.to_string());
}

/// Asks the library ort loaded for its release. ort keeps `GetVersionString` to itself (its
/// build-info string names no release), so this looks up the C API's entry point in the
/// library already in the process.
#[cfg(unix)]
fn library_version(library: &Path) -> Option<String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(library.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD returns a handle only to a library already loaded (by ort, from
    // this path), never loads another copy; `OrtGetApiBase` has this signature in every
    // ONNX Runtime release; `GetVersionString` returns a static NUL-terminated string.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = (!symbol.is_null()).then(|| {
            let api_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(symbol);
            let version = ((*api_base()).GetVersionString)();
            CStr::from_ptr(version).to_string_lossy().into_owned()
        });
        libc::dlclose(handle);
        version
    }
}

#[cfg(not(unix))]
fn library_version(_library: &Path) -> Option<String> {
    None
}
