//! Starting one child: a socketpair, `EXE __worker --fd 3 --parent PID`, the setup, and
//! its hello.

use super::ipc::{Hello, Reply, Request, Setup};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The descriptor the child finds its end of the socket on.
const CHILD_FD: i32 = 3;

/// How long a child may take to load its sessions and say hello. Generous: several
/// children load at once on a machine that may be busy.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// What every child of one executor is started with.
pub(super) struct Spec {
    pub exe: PathBuf,
    pub setup: Setup,
    pub batch_timeout: Duration,
}

/// A running child and the parent's end of its socket.
pub(super) struct Child {
    pub process: std::process::Child,
    pub socket: UnixStream,
    pub hello: Hello,
    /// Reused for every frame to and from this child.
    pub buf: Vec<u8>,
    pub started: Instant,
}

impl Child {
    /// Starts a child and waits for its hello.
    ///
    /// Call it from a thread that outlives the child: `PR_SET_PDEATHSIG` fires when the
    /// *thread* that forked exits, not the process.
    pub fn start(spec: &Spec) -> Result<Child, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&spec.exe);
        cmd.arg("__worker")
            .args(["--fd", &CHILD_FD.to_string()])
            .args(["--parent", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls: dup2, fcntl, prctl.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CHILD_FD {
                    // dup2 onto itself keeps close-on-exec set: clear it instead.
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CHILD_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Dies with the server, even on SIGKILL of the server.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let process = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.exe.display()))?;
        // Only the child holds its end now: its death reads as EOF here.
        drop(theirs);
        let mut child = Child {
            process,
            socket: ours,
            hello: Hello {
                pid: 0,
                rss_bytes: 0,
                onnxruntime: String::new(),
            },
            buf: Vec::new(),
            started: Instant::now(),
        };
        match child.handshake(&spec.setup) {
            Ok(hello) => {
                child.hello = hello;
                Ok(child)
            }
            Err(why) => {
                let status = child.kill();
                Err(format!("{why} (child {})", describe(status)))
            }
        }
    }

    fn handshake(&mut self, setup: &Setup) -> Result<Hello, String> {
        let io = |e: io::Error| format!("no hello: {e}");
        self.socket
            .set_read_timeout(Some(START_TIMEOUT))
            .map_err(io)?;
        Request::Setup(setup.clone())
            .write(&mut self.socket, &mut self.buf)
            .map_err(io)?;
        match Reply::read(&mut self.socket, &mut self.buf).map_err(io)? {
            (Reply::Hello(hello), _) => Ok(hello),
            (Reply::LoadFailed(message), _) => Err(message),
            (other, _) => Err(format!("unexpected first reply {other:?}")),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGKILLs the child (if it still runs) and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.process.kill();
        self.process.wait().ok()
    }

    /// Closes the socket, so the child exits on EOF, and reaps it; SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        self.reap(grace)
    }

    /// Waits up to `grace` for the child to exit (it is dying: its socket said EOF), then
    /// SIGKILLs it; returns how it ended.
    pub fn reap(&mut self, grace: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.process.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
        self.kill()
    }
}

/// "exited with code 3", "killed by signal 11 (SIGSEGV)".
pub(super) fn describe(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "exit status unknown".into();
    };
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => format!("killed by signal {sig} ({})", signal_name(sig)),
        None => format!("ended: {status}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "other",
    }
}
