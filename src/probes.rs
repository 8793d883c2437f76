//! Static probes (USDT, issue 22): where an operation of the library, and each of its steps,
//! spends its time, for `bpftrace`, `perf` and `bcc` to attach to while the library runs, at
//! no cost when nobody does (a `nop` and an ELF note per probe site).
//!
//! One provider, `vmpool`, and four probes (docs/probes.md lists their arguments):
//! `op__start` and `op__done` around the operations that make, run and hand out VMs (import,
//! VM create, start, stop, kill, delete, suspend, resume, acquire, release, refill, home
//! create and delete), `step__done` for each timed step
//! of one (an acquire's `lock`, `claim`, `start`, ...), `qmp__done` for every QMP command.
//! An operation has an id, unique in its process, that its steps and QMP calls carry (the
//! innermost operation of their thread; 0 outside any), so a script can group them; one
//! that runs within another (an acquire's wake, a refill's suspends) names it as its parent.
//!
//! On Linux the probes are SystemTap SDT notes, from the `probe` crate (the probe sites are
//! inline assembly no other crate spares us, and it is small and kept). On illumos they would
//! be DTrace USDT probes (Oxide's `usdt` crate is the model); there the `probe` crate compiles
//! them to nothing, and nothing here was built for illumos.
//!
//! Strings are handed over as NUL-terminated copies of at most 63 bytes on the stack: no
//! allocation on any path, traced or not. Untraced, an operation costs the copies of its name
//! and subject and two clock reads, a QMP command one copy and two clock reads.
//! (`probe_lazy!`'s semaphores would skip even those; not used, since whether bpftrace 0.17
//! raises them when it attaches to a library file rather than a pid is not checked here.)

use crate::error::Result;
use std::cell::Cell;
use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static NEXT_OP: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The innermost operation running on this thread (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// A probe's string argument: a C string of at most 63 bytes.
struct CArg([u8; 64]);

impl CArg {
    fn new(s: impl Display) -> CArg {
        let mut b = [0u8; 64];
        // Whatever does not fit is cut (write! stops with an error, which is the point).
        let _ = write!(&mut b[..63], "{s}");
        CArg(b)
    }

    /// Its address, as the probe's argument register takes it.
    fn arg(&self) -> isize {
        self.0.as_ptr() as isize
    }
}

fn nanos(d: Duration) -> isize {
    isize::try_from(d.as_nanos()).unwrap_or(isize::MAX)
}

/// Restores the thread's current operation when its operation ends (also by a panic).
struct Scope(u64);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// The result code `op__done` gives an operation that panicked (the C ABI then answers
/// `VMPOOL_RESULT_PANIC`): no code of `vmpool_result`.
pub const PANICKED: isize = -1;

/// An operation between its `op__start` and its `op__done`; dropped without [`Running::done`]
/// (a panic unwinding through it), it fires `op__done` with [`PANICKED`].
struct Running {
    id: u64,
    name: CArg,
    subject: CArg,
    t0: Instant,
    ended: bool,
}

impl Running {
    fn done(mut self, code: isize) {
        self.fire(code);
        self.ended = true;
    }

    fn fire(&self, code: isize) {
        let (n, s) = (self.name.arg(), self.subject.arg());
        let took = nanos(self.t0.elapsed());
        probe::probe!(vmpool, op__done, self.id as isize, n, s, code, took);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.ended {
            self.fire(PANICKED);
        }
    }
}

/// Run operation `name` on `subject` (a uuid, a pool's name, a file) between `op__start`
/// (with the id of the operation it runs within, 0 for none) and `op__done` (its result
/// code, 0 for success, and its duration in nanoseconds).
pub(crate) fn op<T>(
    name: &'static str,
    subject: impl Display,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let id = NEXT_OP.fetch_add(1, Ordering::Relaxed);
    let parent = CURRENT.with(|c| c.replace(id));
    let _scope = Scope(parent);
    let running = Running {
        id,
        name: CArg::new(name),
        subject: CArg::new(subject),
        t0: Instant::now(),
        ended: false,
    };
    let (n, s) = (running.name.arg(), running.subject.arg());
    probe::probe!(vmpool, op__start, id as isize, n, s, parent as isize);
    let r = f();
    running.done(match &r {
        Ok(_) => 0,
        Err(e) => e.code() as isize,
    });
    r
}

/// The operation running on this thread (0: none), for [`within`] on its worker threads.
pub(crate) fn current() -> u64 {
    CURRENT.with(Cell::get)
}

/// Run `f` (on a worker thread of operation `id`) as part of that operation: its steps and
/// QMP calls carry `id`.
pub(crate) fn within<T>(id: u64, f: impl FnOnce() -> T) -> T {
    let _scope = Scope(CURRENT.with(|c| c.replace(id)));
    f()
}

/// Step `name` of the current operation took `took`.
pub(crate) fn step(name: &'static str, took: Duration) {
    let id = CURRENT.with(Cell::get);
    let n = CArg::new(name);
    probe::probe!(vmpool, step__done, id as isize, n.arg(), nanos(took));
}

/// QMP command `command` of the current operation: its success (1 or 0) and duration.
pub(crate) fn qmp<T, E>(command: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let t0 = Instant::now();
    let r = f();
    let took = nanos(t0.elapsed());
    let id = CURRENT.with(Cell::get);
    let c = CArg::new(command);
    probe::probe!(
        vmpool,
        qmp__done,
        id as isize,
        c.arg(),
        isize::from(r.is_ok()),
        took
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_cut_to_63_bytes_and_terminated() {
        let long = "x".repeat(200);
        let a = CArg::new(&long);
        assert_eq!(a.0.iter().position(|&b| b == 0), Some(63));
        let u = uuid::Uuid::nil();
        let a = CArg::new(u);
        assert_eq!(&a.0[..37], b"00000000-0000-0000-0000-000000000000\0");
    }

    #[test]
    fn a_panic_restores_the_current_operation() {
        let r = std::panic::catch_unwind(|| op("panics", "x", || -> Result<()> { panic!("boom") }));
        assert!(r.is_err());
        assert_eq!(CURRENT.with(Cell::get), 0);
    }

    #[test]
    fn operations_nest_and_restore_the_current_one() {
        let seen = op("outer", "a", || {
            let outer = CURRENT.with(Cell::get);
            let inner = op("inner", "b", || Ok(CURRENT.with(Cell::get)))?;
            assert_ne!(inner, outer);
            assert_eq!(CURRENT.with(Cell::get), outer);
            Ok(outer)
        })
        .unwrap();
        assert_ne!(seen, 0);
        assert_eq!(CURRENT.with(Cell::get), 0);
        let failed: Result<()> = op("failing", "c", || Err(crate::Error::invalid("no")));
        assert!(failed.is_err());
        assert_eq!(CURRENT.with(Cell::get), 0);
    }
}
