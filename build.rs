//! Build-time facts for the `concur_build_info` series: the git commit and the rustc
//! version, as `VERGEN_GIT_SHA` and `VERGEN_RUSTC_SEMVER`. Outside a git checkout (a source
//! tarball, the Docker build context) vergen warns and emits a placeholder instead of failing.

use vergen_gitcl::{Emitter, GitclBuilder, RustcBuilder};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let git = GitclBuilder::default().sha(true).build()?;
    let rustc = RustcBuilder::default().semver(true).build()?;
    Emitter::default()
        .add_instructions(&git)?
        .add_instructions(&rustc)?
        .emit()?;
    Ok(())
}
