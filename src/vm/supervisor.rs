//! The per-VM supervisor (`vmpool-supervisor RUN_DIR`, in the spirit of conmon or Kata's
//! shim): QEMU's parent for as long as it runs, so that someone notices how it ended.
//!
//! `start` writes `launch.json` into the VM's run directory and runs the supervisor, which:
//! 1. forks at once; the first half waits for the second to report and relays that one JSON
//!    line ([`Ready`]) on its stdout to `start`, then exits (so the caller reaps it, and the
//!    real supervisor, reparented to init, never becomes a zombie of a Puma worker);
//! 2. in a new session, takes `supervisor.lock` for its whole life (its liveness, see
//!    `runtime`), and starts QEMU with `PR_SET_PDEATHSIG`: if the supervisor is killed, so is
//!    QEMU, and the VM's status says so (no QEMU runs unwatched);
//! 3. waits for QEMU's event monitor, then reports ready (or QEMU's own error);
//! 4. copies the serial console (QEMU's stdout) into `serial.log`, rotated at a size bound,
//!    and QEMU's stderr into `qemu.log` (keeping the last lines for the exit reason); follows
//!    events (`SHUTDOWN` and its reason, `STOP`, `RESUME`);
//! 5. when QEMU ends, records in the VM record, under the VM's lifecycle lock, how it ended
//!    ([`classify`]): a guest power-off or a stop asked for through vmpool is `stopped`;
//!    anything else (a signal, a non-zero exit, out of memory) is `failed`, with the reason.

use crate::error::{Error, Result};
use crate::lock::{self, Mode};
use crate::store::catalog::Catalog;
use crate::vm::qmp::{Message, Qmp};
use crate::vm::runtime::{self, RunDir, RunInfo};
use crate::vm::{LastExit, State};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What `start` asks the supervisor to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchFile {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Its arguments ([`crate::vm::qemu::command_line`]).
    pub args: Vec<String>,
    /// The store's catalog directory (for the record).
    pub catalog: PathBuf,
    /// The VM.
    pub vm: Uuid,
    /// Rotate `serial.log` at this size.
    pub serial_log_bytes: u64,
    /// The accelerator (for `run.json`).
    pub accel: crate::vm::Accel,
    /// Where SPICE listens (for `run.json`).
    pub spice: crate::vm::config::SpiceAddr,
    /// The VM's zone, when the store isolates VMs.
    #[serde(default)]
    pub zone: Option<crate::zone::ZoneSpec>,
}

/// The one line the supervisor reports to `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Ready {
    /// QEMU runs and its monitor answers.
    Ok {
        /// The supervisor.
        supervisor_pid: u32,
        /// QEMU.
        qemu_pid: u32,
        /// QEMU's start time in clock ticks.
        qemu_start: u64,
    },
    /// QEMU could not be started; why.
    Error {
        /// For people: QEMU's own words where there are some.
        message: String,
    },
}

/// Why vmpool ended QEMU, written to `run/<uuid>/intent` before it acts, so that the
/// supervisor tells a requested stop from a crash.
pub const INTENT: &str = "intent";

/// `run/<uuid>/run.json`: the current run's [`RunInfo`], written by the supervisor.
pub const RUN_INFO: &str = "run.json";

/// How long QEMU may take to open its event monitor after starting.
const STARTUP: Duration = Duration::from_secs(60);
/// Bytes of QEMU's stderr kept for an exit reason.
const STDERR_TAIL: usize = 2048;
/// Largest `qemu.log` kept.
const QEMU_LOG_MAX: u64 = 256 << 10;

/// Decide how a QEMU run ended from what was seen: its wait status, the reason of the last
/// `SHUTDOWN` event, what vmpool asked for (`intent`), its stderr, and whether the kernel
/// killed it for memory.
pub fn classify(
    status: Option<i32>,
    signal: Option<i32>,
    shutdown: Option<&str>,
    intent: Option<&str>,
    stderr_tail: &str,
    oom: bool,
) -> LastExit {
    let sig_name = |s: i32| {
        nix::sys::signal::Signal::try_from(s)
            .map(|n| format!("{n}"))
            .unwrap_or_else(|_| format!("signal {s}"))
    };
    let tail = stderr_tail.trim();
    let with_tail = |r: String| {
        if tail.is_empty() {
            r
        } else {
            format!("{r}: {tail}")
        }
    };
    let (clean, reason) = match (intent, signal, status, shutdown) {
        (Some("kill"), _, _, _) => (true, "killed on request".to_owned()),
        (Some("stop"), Some(9), _, _) => (
            true,
            "stopped on request (killed after the shutdown timeout)".to_owned(),
        ),
        (Some(i), _, _, _) if i.starts_with("stop") => (true, "stopped on request".to_owned()),
        (_, Some(s), _, _) if oom => (
            false,
            format!("out of memory: the kernel killed QEMU ({})", sig_name(s)),
        ),
        (_, Some(s), _, _) => (false, format!("QEMU was killed by {}", sig_name(s))),
        (_, None, Some(0), Some("guest-shutdown")) => (true, "the guest powered off".to_owned()),
        (_, None, Some(0), Some("host-qmp-quit")) => (true, "quit over QMP".to_owned()),
        (_, None, Some(0), Some(r)) => (true, format!("QEMU shut down ({r})")),
        (_, None, Some(0), None) => (true, "QEMU exited".to_owned()),
        (_, None, Some(c), _) => (false, with_tail(format!("QEMU exited with status {c}"))),
        (_, None, None, _) => (false, "QEMU ended in an unknown way".to_owned()),
    };
    LastExit {
        at: crate::now_rfc3339(),
        clean,
        reason,
        signal,
        status,
    }
}

/// Close every descriptor above stderr that the caller left open without close-on-exec (a
/// Puma worker's sockets, the lock `flock(1)` holds around a job, a jobserver pipe): this
/// process and its QEMU outlive the caller by days, and must neither keep such a lock held
/// nor a listening socket open. Called first thing, before this process opens anything.
fn close_inherited_descriptors() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors; none above 2 belongs to this process
        // yet (nothing has been opened since exec; std opens none before main).
        if unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } == 0 {
            return;
        }
    }
    // Kernels before 5.9 (and other systems): one by one, as /proc lists them; the list is
    // read whole first, so closing its own directory descriptor is harmless (EBADF).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // SAFETY: as above: no descriptor above 2 is in use by this process.
        unsafe { libc::close(fd) };
    }
}

/// The supervisor's `main`; returns the process exit status.
pub fn main(args: &[String]) -> i32 {
    close_inherited_descriptors();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: vmpool-supervisor RUN_DIR (started by vmpool, not by hand)");
        return 64;
    };
    let run = RunDir::at(Path::new(dir));
    let launch: LaunchFile = match std::fs::read(run.launch())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            let r = Ready::Error {
                message: format!("cannot read {}: {e}", run.launch().display()),
            };
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            return 1;
        }
    };
    // Close-on-exec: QEMU must not inherit the write end, or the first half never sees EOF.
    let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vmpool-supervisor: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: nothing has started a thread in this process yet (main runs single-threaded
    // until here), so the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(wr);
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(
                &mut std::io::BufReader::new(File::from(rd)),
                &mut line,
            );
            let line = line.trim().to_owned();
            let ok = matches!(serde_json::from_str::<Ready>(&line), Ok(Ready::Ok { .. }));
            let out = if line.is_empty() {
                serde_json::to_string(&Ready::Error {
                    message: "the supervisor ended before reporting (see supervisor.log)".into(),
                })
                .unwrap_or_default()
            } else {
                line
            };
            println!("{out}");
            i32::from(!ok)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(rd);
            let _ = nix::unistd::setsid();
            // Our stdout is the pipe `start` reads; only the first half writes to it, so
            // `start` sees its end as soon as that half exits.
            if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
                use std::os::unix::io::AsRawFd;
                let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
                let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
            }
            match supervise(&run, &launch, File::from(wr)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("vmpool-supervisor {}: {e}", launch.vm);
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("vmpool-supervisor: fork: {e}");
            1
        }
    }
}

/// QEMU, our child, waited for with `waitpid` (it may have been made by `clone`).
struct Child(nix::unistd::Pid);

impl Child {
    fn status(ws: nix::sys::wait::WaitStatus) -> Option<std::process::ExitStatus> {
        use nix::sys::wait::WaitStatus;
        match ws {
            WaitStatus::Exited(_, code) => {
                Some(std::process::ExitStatus::from_raw((code & 0xff) << 8))
            }
            WaitStatus::Signaled(_, sig, _) => Some(std::process::ExitStatus::from_raw(sig as i32)),
            _ => None,
        }
    }

    fn try_wait(&self) -> Option<std::process::ExitStatus> {
        nix::sys::wait::waitpid(self.0, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
            .ok()
            .and_then(Self::status)
    }

    fn wait(&self) -> Result<std::process::ExitStatus> {
        loop {
            match nix::sys::wait::waitpid(self.0, None) {
                Ok(ws) => {
                    if let Some(st) = Self::status(ws) {
                        return Ok(st);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("waiting for QEMU (pid {})", self.0),
                        source: e.into(),
                    })
                }
            }
        }
    }

    fn kill(&self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::SIGKILL);
    }
}

/// The absolute path of `program` (searched on PATH when it has no slash): `execve` in the
/// zone does not search.
fn find_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return Ok(program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Hypervisor(format!("{} is not on PATH", program.display())))
}

fn report(ready: &mut Option<File>, r: &Ready) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{}", serde_json::to_string(r).unwrap_or_default());
    }
}

/// Appends to `path`, moving it to `old` once it passes `max` bytes.
struct RotatingLog {
    path: PathBuf,
    old: Option<PathBuf>,
    max: u64,
    file: Option<File>,
    size: u64,
}

impl RotatingLog {
    fn new(path: PathBuf, old: Option<PathBuf>, max: u64) -> Self {
        RotatingLog {
            path,
            old,
            max,
            file: None,
            size: 0,
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.file.is_none() {
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(data);
            self.size += data.len() as u64;
        }
        if self.size >= self.max {
            self.file = None;
            match &self.old {
                Some(old) => {
                    let _ = std::fs::rename(&self.path, old);
                }
                // No previous part: keep the newest half.
                None => {
                    if let Ok(b) = std::fs::read(&self.path) {
                        let keep = &b[b.len() / 2..];
                        let _ = std::fs::write(&self.path, keep);
                    }
                }
            }
        }
    }
}

fn copy_stream(mut from: impl Read, mut log: RotatingLog, tail: Option<Arc<Mutex<VecDeque<u8>>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                log.write(&buf[..n]);
                if let Some(t) = &tail {
                    let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend(&buf[..n]);
                    while t.len() > STDERR_TAIL {
                        t.pop_front();
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Follow the event monitor: remember the last SHUTDOWN reason; mirror STOP/RESUME into the
/// record when nobody else is changing it (a guest-side pause, say).
fn follow_events(
    mut qmp: Qmp,
    shutdown: Arc<Mutex<Option<String>>>,
    run: RunDir,
    catalog: PathBuf,
    vm: Uuid,
) {
    loop {
        match qmp.next_event(Duration::from_secs(3600)) {
            Ok(Message::Event { name, data, .. }) => match name.as_str() {
                "SHUTDOWN" => {
                    let reason = data
                        .get("reason")
                        .and_then(|r| r.as_str())
                        .unwrap_or("unknown")
                        .to_owned();
                    *shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                }
                "STOP" | "RESUME" => {
                    let (from, to) = if name == "STOP" {
                        (State::Running, State::Paused)
                    } else {
                        (State::Paused, State::Running)
                    };
                    let _ = mirror_state(&run, &catalog, &vm, from, to);
                }
                _ => {}
            },
            Ok(_) => {}
            Err(crate::vm::qmp::QmpError::Timeout { .. }) => {}
            Err(_) => break,
        }
    }
}

fn mirror_state(run: &RunDir, catalog: &Path, vm: &Uuid, from: State, to: State) -> Result<()> {
    // Only when the lifecycle lock is free: a holder is changing the state itself.
    let Some(_lc) = runtime::try_lock(&run.lock())? else {
        return Ok(());
    };
    let c = Catalog::open(catalog)?;
    if let Some(mut r) = c.vm(vm)? {
        if r.state == from {
            r.state = to;
            c.put_vm(&r)?;
        }
    }
    Ok(())
}

fn supervise(run: &RunDir, launch: &LaunchFile, ready: File) -> Result<()> {
    let mut ready = Some(ready);
    let fail = |ready: &mut Option<File>, message: String| {
        report(
            ready,
            &Ready::Error {
                message: message.clone(),
            },
        );
        Error::Hypervisor(message)
    };
    let _alive = lock::lock(&run.supervisor_lock(), Mode::Exclusive)?;
    let _ = std::fs::remove_file(run.path().join(INTENT));
    let supervisor_pid = std::process::id();
    let mut cmd = Command::new(&launch.qemu);
    cmd.args(&launch.args)
        .current_dir(run.qemu_dir())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let zone = crate::zone::linux::LinuxZone;
    let spawned = match &launch.zone {
        Some(spec) => {
            use crate::zone::Zone;
            // A zone left by a run that crashed is reused (create is idempotent).
            zone.create(spec)
                .map_err(|e| fail(&mut ready, format!("cannot create the VM's zone: {e}")))?;
            let program =
                find_program(&launch.qemu).map_err(|e| fail(&mut ready, e.to_string()))?;
            zone.boot(spec, &program, &launch.args)
        }
        None => {
            // SAFETY: the closure runs in the forked child before exec and calls only
            // async-signal-safe functions (prctl, getppid, kill).
            unsafe {
                cmd.pre_exec(move || {
                    // QEMU dies with this thread, which lives until QEMU is reaped.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() as u32 != supervisor_pid {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                    Ok(())
                });
            }
            cmd.spawn()
                .map(|mut c| crate::zone::Booted {
                    pid: c.id(),
                    stdout: File::from(std::os::fd::OwnedFd::from(
                        c.stdout.take().expect("stdout was piped"),
                    )),
                    stderr: File::from(std::os::fd::OwnedFd::from(
                        c.stderr.take().expect("stderr was piped"),
                    )),
                })
                .map_err(|e| {
                    Error::Hypervisor(format!("cannot start {}: {e}", launch.qemu.display()))
                })
        }
    };
    let destroy_zone = || {
        if let Some(spec) = &launch.zone {
            use crate::zone::Zone;
            if let Err(e) = zone.destroy(spec) {
                eprintln!("vmpool-supervisor {}: {e}", launch.vm);
            }
        }
    };
    let oom = || {
        use crate::zone::Zone;
        launch.zone.as_ref().is_some_and(|s| zone.oom_killed(s))
    };
    let booted = match spawned {
        Ok(c) => c,
        Err(e) => {
            destroy_zone();
            return Err(fail(&mut ready, e.to_string()));
        }
    };
    let qemu_pid = booted.pid;
    let child = Child(nix::unistd::Pid::from_raw(qemu_pid as i32));
    let qemu_start = runtime::start_ticks(qemu_pid).unwrap_or(0);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (out, err) = (booted.stdout, booted.stderr);
    let serial_log = RotatingLog::new(
        run.serial_log(),
        Some(run.serial_log_old()),
        launch.serial_log_bytes,
    );
    let qemu_log = RotatingLog::new(run.qemu_log(), None, QEMU_LOG_MAX);
    let t_out = std::thread::spawn(move || copy_stream(out, serial_log, None));
    let tail2 = tail.clone();
    let t_err = std::thread::spawn(move || copy_stream(err, qemu_log, Some(tail2)));
    let tail_text = |t: &Arc<Mutex<VecDeque<u8>>>| {
        let t = t.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = t.iter().copied().collect();
        String::from_utf8_lossy(&bytes)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ")
    };

    // Wait for the event monitor, watching QEMU: a bad option makes it exit at once.
    let started = Instant::now();
    let qmp = loop {
        if let Some(st) = child.try_wait() {
            let _ = t_err.join();
            let ended = classify(st.code(), st.signal(), None, None, &tail_text(&tail), oom());
            destroy_zone();
            return Err(fail(&mut ready, ended.reason));
        }
        match Qmp::connect(&run.events(), Duration::from_millis(200)) {
            Ok(q) => break q,
            Err(_) if started.elapsed() < STARTUP => {}
            Err(e) => {
                child.kill();
                let _ = child.wait();
                destroy_zone();
                return Err(fail(
                    &mut ready,
                    format!("QEMU did not open its monitor within {STARTUP:?}: {e}"),
                ));
            }
        }
    };
    // The run's facts, for the VM's status even if the process that asked for the start
    // is gone before it could record them.
    let info = RunInfo {
        supervisor_pid,
        qemu_pid,
        qemu_start,
        started_at: crate::now_rfc3339(),
        accel: launch.accel,
        spice: launch.spice.clone(),
    };
    if let Ok(b) = serde_json::to_vec(&info) {
        let _ = crate::fsutil::write_atomic(run.path(), RUN_INFO, &b);
    }
    report(
        &mut ready,
        &Ready::Ok {
            supervisor_pid,
            qemu_pid,
            qemu_start,
        },
    );

    let shutdown = Arc::new(Mutex::new(None));
    {
        let (shutdown, run, catalog, vm) = (
            shutdown.clone(),
            run.clone(),
            launch.catalog.clone(),
            launch.vm,
        );
        std::thread::spawn(move || follow_events(qmp, shutdown, run, catalog, vm));
    }

    let status = child.wait()?;
    let _ = t_out.join();
    let _ = t_err.join();
    let intent = std::fs::read_to_string(run.path().join(INTENT)).ok();
    let oom = status.signal() == Some(libc::SIGKILL) && oom();
    destroy_zone();
    let exit = classify(
        status.code(),
        status.signal(),
        shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref(),
        intent.as_deref().map(str::trim),
        &tail_text(&tail),
        oom,
    );
    eprintln!("vmpool-supervisor {}: {}", launch.vm, exit.reason);
    let _lc = lock::lock(&run.lock(), Mode::Exclusive)?;
    let c = Catalog::open(&launch.catalog)?;
    if let Some(mut r) = c.vm(&launch.vm)? {
        r.state = if exit.clean {
            State::Stopped
        } else {
            State::Failed
        };
        r.last_exit = Some(exit);
        r.run = None;
        c.put_vm(&r)?;
    }
    run.clean_after_run();
    let _ = std::fs::remove_file(run.path().join(INTENT));
    let _ = std::fs::remove_file(run.path().join(RUN_INFO));
    Ok(())
}

/// Where the `vmpool-supervisor` binary is: `$VMPOOL_SUPERVISOR`; else next to the binary or
/// shared library that holds this code (`target/debug/`, `/usr/local/lib/`), one level up
/// (test binaries live in `target/debug/deps/`) or in `../libexec/vmpool/` (`make install`);
/// else on `PATH`.
pub fn binary() -> Result<PathBuf> {
    const NAME: &str = "vmpool-supervisor";
    if let Some(p) = std::env::var_os("VMPOOL_SUPERVISOR").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    if let Some(here) = own_image() {
        if let Some(dir) = here.parent() {
            for c in [
                dir.join(NAME),
                dir.join("..").join(NAME),
                dir.join("../libexec/vmpool").join(NAME),
            ] {
                if c.is_file() {
                    return Ok(c);
                }
                tried.push(c.display().to_string());
            }
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let c = dir.join(NAME);
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(Error::Unsupported(format!(
        "cannot find {NAME} (tried {} and PATH); install it (make install) or set VMPOOL_SUPERVISOR",
        tried.join(", ")
    )))
}

/// The file (shared library or executable) this code was loaded from.
fn own_image() -> Option<PathBuf> {
    let mut info: libc::Dl_info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr only reads the address (of a function in this object) and writes the
    // struct we own; on success dli_fname is a NUL-terminated path owned by the loader.
    let ok = unsafe { libc::dladdr(binary as *const libc::c_void, &mut info) };
    if ok == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: see above; copied at once.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let p = PathBuf::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
    );
    std::fs::canonicalize(&p).ok().or(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_runs_end() {
        let c = |st, sig, sh, intent, oom| classify(st, sig, sh, intent, "", oom);
        let e = c(Some(0), None, Some("guest-shutdown"), None, false);
        assert!(e.clean && e.reason.contains("powered off"), "{e:?}");
        let e = c(None, Some(9), None, None, false);
        assert!(!e.clean && e.reason.contains("SIGKILL"), "{e:?}");
        let e = c(None, Some(9), None, None, true);
        assert!(!e.clean && e.reason.contains("out of memory"), "{e:?}");
        let e = c(None, Some(9), None, Some("stop"), false);
        assert!(e.clean && e.reason.contains("timeout"), "{e:?}");
        let e = c(None, Some(9), None, Some("kill"), false);
        assert!(e.clean, "{e:?}");
        let e = classify(
            Some(1),
            None,
            None,
            None,
            "qemu: could not open disk",
            false,
        );
        assert!(
            !e.clean && e.reason.contains("status 1: qemu: could not open disk"),
            "{e:?}"
        );
        assert_eq!(e.status, Some(1));
    }
}
