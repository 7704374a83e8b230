//! Build-time facts for the `concur_build_info` series: the git commit and the rustc
//! version, as `VERGEN_GIT_SHA` and `VERGEN_RUSTC_SEMVER`. Outside a git checkout (a source
//! tarball, the Docker build context) vergen warns and emits a placeholder instead of failing.
//!
//! Fuzz builds (`--cfg fuzzing`) skip the commit: it would make every commit rebuild the
//! sanitizer-instrumented library (minutes) although no parser changed.

use vergen_gitcl::{Emitter, GitclBuilder, RustcBuilder};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rustc = RustcBuilder::default().semver(true).build()?;
    let mut emitter = Emitter::default();
    emitter.add_instructions(&rustc)?;
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if std::env::var_os("CARGO_CFG_FUZZING").is_none() {
        let git = GitclBuilder::default().sha(true).build()?;
        emitter.add_instructions(&git)?;
    }
    emitter.emit()?;
    Ok(())
}
