//! Lowering the CPU priority of inference threads.
//!
//! On a machine with few cores, inference threads and tokio's workers compete for the
//! same CPUs; when a request arrives, the kernel may let a forward pass finish its time
//! slice before the event loop runs. A higher nice value for inference threads makes the
//! kernel prefer the event loop, which is what keeps event-loop lag low; throughput is
//! unchanged because the event loop needs little CPU.

/// Sets the calling thread's nice value (only ever raised: lowering needs privileges).
pub(super) fn lower_current_thread(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if result != 0 {
        tracing::warn!(
            "cannot set inference thread nice value to {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
}
