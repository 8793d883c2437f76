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
//! 3. binds QEMU's sockets in the VM's sockets directory (root's: QEMU creates no socket and
//!    names no path), and hands them to QEMU as descriptors: vmpool's QMP socket, a socket
//!    pair for its own event monitor and one for its commands; with SPICE on a unix socket it
//!    accepts the clients and hands each to QEMU (`spice.rs`);
//! 4. waits for QEMU's event monitor, then reports ready (or QEMU's own error);
//! 5. copies the serial console (QEMU's stdout) into `serial.log`, rotated at a size bound,
//!    and QEMU's stderr into `qemu.log` (keeping the last lines for the exit reason); follows
//!    events (`SHUTDOWN` and its reason, `STOP`, `RESUME`);
//! 6. when QEMU ends, records in the VM record, under the VM's lifecycle lock, how it ended
//!    ([`exit::classify`]): a guest power-off or a stop asked for through vmpool is `stopped`;
//!    anything else (a signal, a non-zero exit, out of memory) is `failed`, with the reason.

pub mod clients;
mod exit;
mod locate;
mod logs;
mod spice;

pub use exit::{classify, Intent};
pub use locate::{binary, find_program};

use crate::error::{Error, Result};
use crate::lock::{self, Mode};
use crate::safe_fs::{Dir, Kind, TrustRule};
use crate::store::catalog::Catalog;
use crate::vm::qmp::{Message, Qmp};
use crate::vm::runtime::{self, names, RunDir, RunInfo, PRIVATE};
use crate::vm::State;
use logs::{copy_stream, tail_text, RotatingLog};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
    /// The directory of the VM's sockets (made by `start`, root's).
    pub sockets: PathBuf,
    /// Rotate `serial.log` at this size.
    pub serial_log_bytes: u64,
    /// The accelerator (for `run.json`).
    pub accel: crate::vm::Accel,
    /// Where SPICE listens (for `run.json`).
    pub spice: crate::vm::config::SpiceAddr,
    /// The VM's zone, when the store isolates VMs.
    #[serde(default)]
    pub zone: Option<crate::zone::ZoneSpec>,
    /// Hand QEMU the run directory's NoCloud seed, read-only, as `qemu::SEED_FD`.
    #[serde(default)]
    pub seed: bool,
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

/// `run/<uuid>/intent`: why vmpool ended QEMU ([`Intent`], JSON).
pub const INTENT: &str = "intent";

/// `run/<uuid>/run.json`: the current run's [`RunInfo`], written by the supervisor.
pub const RUN_INFO: &str = "run.json";

/// Largest launch file read.
const LAUNCH_MAX: u64 = 1 << 20;
/// How long QEMU may take to open its event monitor after starting.
const STARTUP: Duration = Duration::from_secs(60);
/// Largest `qemu.log` kept.
const QEMU_LOG_MAX: u64 = 256 << 10;

/// Write why vmpool ends QEMU, for the supervisor's record of how it ended.
pub fn write_intent(run: &Dir, intent: Intent) -> Result<()> {
    run.write_atomic(INTENT, &intent.encode(), PRIVATE)
}

/// What vmpool said it was doing when QEMU ended.
pub fn read_intent(run: &Dir) -> Option<Intent> {
    run.read(INTENT, 4096)
        .ok()
        .flatten()
        .and_then(|b| Intent::decode(&b))
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
    let launch: LaunchFile = match Dir::open_path(Path::new(dir))
        .and_then(|d| d.read(names::LAUNCH, LAUNCH_MAX))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b.unwrap_or_default()).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => {
            let r = Ready::Error {
                message: format!("cannot read {dir}/{}: {e}", names::LAUNCH),
            };
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            return 1;
        }
    };
    let run = RunDir::at(Path::new(dir), &launch.sockets);
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
            let mut ready = Some(File::from(wr));
            match supervise(&run, &launch, &mut ready) {
                Ok(()) => 0,
                Err(e) => {
                    // Whatever failed before the report, `start` hears it in our words.
                    report(
                        &mut ready,
                        &Ready::Error {
                            message: e.to_string(),
                        },
                    );
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

fn report(ready: &mut Option<File>, r: &Ready) {
    if let Some(mut f) = ready.take() {
        let _ = writeln!(f, "{}", serde_json::to_string(r).unwrap_or_default());
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
    // The run begins with nobody looking.
    let mut clients = clients::Clients {
        connected: 0,
        changed_at: clients::now_s(),
    };
    if let Ok(d) = run.open() {
        let _ = clients.write(&d);
    }
    loop {
        match qmp.next_event(Duration::from_secs(3600)) {
            Ok(Message::Event { name, .. }) if name.contains("CONNECTED") => {
                if let Some(c) = clients.after(&name, clients::now_s()) {
                    clients = c;
                    if let Ok(d) = run.open() {
                        let _ = clients.write(&d);
                    }
                }
            }
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
            r.state = from.to(to, vm)?;
            c.put_vm(&r)?;
        }
    }
    Ok(())
}

/// QEMU's sockets, made before it starts: the ends it gets, and ours.
struct Sockets {
    /// vmpool's QMP socket, listening (QEMU accepts on it).
    qmp: std::os::unix::net::UnixListener,
    /// The event monitor: QEMU's end, ours.
    events: (UnixStream, UnixStream),
    /// The command monitor: QEMU's end, ours.
    control: (UnixStream, UnixStream),
    /// SPICE's socket, when SPICE listens on one (the supervisor accepts on it).
    spice: Option<std::os::unix::net::UnixListener>,
    /// vmpool's guest agent socket, listening (QEMU accepts on it).
    agent: std::os::unix::net::UnixListener,
}

impl Sockets {
    fn bind(launch: &LaunchFile) -> Result<Sockets> {
        let dir = Dir::trusted(&launch.sockets, TrustRule::current(), None)?;
        let pair = || {
            UnixStream::pair().map_err(|e| Error::Io {
                context: "making a socket pair for QEMU's monitor".into(),
                source: e,
            })
        };
        Ok(Sockets {
            qmp: dir.bind(names::QMP_SOCKET)?,
            events: pair()?,
            control: pair()?,
            spice: match launch.spice {
                crate::vm::config::SpiceAddr::Unix { .. } => Some(dir.bind(names::SPICE_SOCKET)?),
                crate::vm::config::SpiceAddr::Tcp { .. } => None,
            },
            agent: dir.bind(names::AGENT_SOCKET)?,
        })
    }

    /// QEMU's descriptors, in the order of `qemu::{QMP_FD, EVENTS_FD, CONTROL_FD,
    /// AGENT_FD}`.
    fn for_qemu(&self) -> [BorrowedFd<'_>; 4] {
        [
            self.qmp.as_fd(),
            self.events.0.as_fd(),
            self.control.0.as_fd(),
            self.agent.as_fd(),
        ]
    }
}

/// Start QEMU (in its zone when there is one), with `fds` as its descriptors 3, 4, 5, 6
/// (and 7, the seed, when there is one).
fn spawn_qemu(
    launch: &LaunchFile,
    fds: &[BorrowedFd<'_>],
    supervisor_pid: u32,
) -> Result<crate::zone::Booted> {
    let zone = crate::zone::HostZone::default();
    if let Some(spec) = &launch.zone {
        use crate::zone::Zone;
        // A zone left by a run that crashed is reused (create is idempotent).
        zone.create(spec)
            .map_err(|e| Error::Hypervisor(format!("cannot create the VM's zone: {e}")))?;
        let program = find_program(&launch.qemu)?;
        return zone.boot(spec, &program, &launch.args, fds);
    }
    let passed = crate::zone::PassedFds::new(fds)?;
    let mut cmd = Command::new(&launch.qemu);
    cmd.args(&launch.args)
        .current_dir("/")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, kill, dup2).
    unsafe {
        cmd.pre_exec(move || {
            // QEMU dies with this thread, which lives until QEMU is reaped.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() as u32 != supervisor_pid {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            if !passed.install() {
                return Err(std::io::Error::last_os_error());
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
        .map_err(|e| Error::Hypervisor(format!("cannot start {}: {e}", launch.qemu.display())))
}

fn supervise(run: &RunDir, launch: &LaunchFile, ready: &mut Option<File>) -> Result<()> {
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
    let dir = Arc::new(run.open()?);
    let supervisor_pid = std::process::id();
    let sockets = Sockets::bind(launch).map_err(|e| fail(ready, e.to_string()))?;
    let zone = crate::zone::HostZone::default();
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
    // The seed, opened here (root's run directory, no link followed) and read through this
    // descriptor only: QEMU never names a path of ours.
    let seed = if launch.seed {
        Some(
            dir.open_with(names::SEED, Kind::File, libc::O_RDONLY)
                .map_err(|e| fail(ready, format!("the NoCloud seed: {e}")))?,
        )
    } else {
        None
    };
    let mut fds = sockets.for_qemu().to_vec();
    fds.extend(seed.as_ref().map(|f| f.as_fd()));
    let booted = match spawn_qemu(launch, &fds, supervisor_pid) {
        Ok(c) => c,
        Err(e) => {
            destroy_zone();
            return Err(fail(ready, e.to_string()));
        }
    };
    // Only QEMU holds its ends now: when it ends, our ends see it.
    let Sockets {
        qmp,
        events: (_, events),
        control: (_, control),
        spice,
        agent,
    } = sockets;
    drop((qmp, agent, seed));
    let qemu_pid = booted.pid;
    let child = Child(nix::unistd::Pid::from_raw(qemu_pid as i32));
    let qemu_start = runtime::start_ticks(qemu_pid).unwrap_or(0);
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let (out, err) = (booted.stdout, booted.stderr);
    let serial_log = RotatingLog::new(
        dir.clone(),
        names::SERIAL_LOG,
        Some(names::SERIAL_LOG_OLD),
        launch.serial_log_bytes,
    );
    let qemu_log = RotatingLog::new(dir.clone(), names::QEMU_LOG, None, QEMU_LOG_MAX);
    let t_out = std::thread::spawn(move || copy_stream(out, serial_log, None));
    let tail2 = tail.clone();
    let t_err = std::thread::spawn(move || copy_stream(err, qemu_log, Some(tail2)));

    // QEMU greets on its monitors once it runs; a bad option makes it exit first, which
    // closes its end of the pair.
    let monitors = Qmp::from_stream(events, STARTUP, "QEMU's event monitor").and_then(|ev| {
        Qmp::from_stream(control, STARTUP, "QEMU's command monitor").map(|c| (ev, c))
    });
    let (qmp, control) = match monitors {
        Ok(m) => m,
        Err(e) => {
            // Reaped once: a `try_wait` that saw the end has taken the status with it.
            let ended = match child.try_wait() {
                Some(st) => Some(st),
                None if e.is_closed() => Some(child.wait()?),
                None => None,
            };
            if let Some(st) = ended {
                let _ = t_err.join();
                let ended = classify(st.code(), st.signal(), None, None, &tail_text(&tail), oom());
                destroy_zone();
                return Err(fail(ready, ended.reason));
            }
            child.kill();
            let _ = child.wait();
            destroy_zone();
            return Err(fail(
                ready,
                format!("QEMU did not open its monitor within {STARTUP:?}: {e}"),
            ));
        }
    };
    if let Some(listener) = spice {
        std::thread::spawn(move || spice::serve(listener, control));
    }
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
        let _ = dir.write_atomic(RUN_INFO, &b, PRIVATE);
    }
    // A stop or kill asked for before the facts above were there (the process that started
    // us died, and someone else ended the VM) found no QEMU to signal: its intent, written
    // before it looked for them, is here now (see `kill_qemu_locked`).
    if matches!(read_intent(&dir), Some(Intent::Kill | Intent::Stop)) {
        child.kill();
    }
    report(
        ready,
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
    let oom = status.signal() == Some(libc::SIGKILL) && oom();
    destroy_zone();
    // The intent is read under the lock: a holder may still be writing or withdrawing it.
    let _lc = lock::lock(&run.lock(), Mode::Exclusive)?;
    let intent = read_intent(&dir);
    let exit = classify(
        status.code(),
        status.signal(),
        shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref(),
        intent,
        &tail_text(&tail),
        oom,
    );
    eprintln!("vmpool-supervisor {}: {}", launch.vm, exit.reason);
    let c = Catalog::open(&launch.catalog)?;
    if let Some(mut r) = c.vm(&launch.vm)? {
        let end = if crate::vm::suspend::ends_suspended(&dir, &r, intent) {
            State::Suspended
        } else if exit.clean {
            State::Stopped
        } else {
            State::Failed
        };
        r.state = r.state.to(end, &launch.vm)?;
        r.last_exit = Some(exit);
        r.run = None;
        c.put_vm(&r)?;
    }
    run.clean_after_run();
    Ok(())
}
