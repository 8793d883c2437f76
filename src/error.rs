//! One error type for the whole library, and the stable result codes it maps to.
//!
//! The numbers in [`ResultCode`] are part of the C ABI and of the CLI (its exit status is the
//! code), so they never change once published; new codes get new numbers.

use std::io;

/// Stable result codes shared by the C ABI (`vmpool_result`, a `uint32_t` in C), the CLI exit
/// status and the bindings' exception classes. Every value is below 64 so it fits an exit
/// status.
///
/// This enum is the one list of codes: [`vmpool_result::all`] and [`vmpool_result::name`] are
/// derived from it, the header is generated from it, and `tests/result_codes.rs` fails when
/// the tables in the Ruby and Python bindings or in the README differ from it.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::IntoStaticStr)]
pub enum vmpool_result {
    /// Success.
    VMPOOL_RESULT_OK = 0,
    /// A required pointer argument was NULL.
    VMPOOL_RESULT_NULL_POINTER = 1,
    /// A string argument was not valid UTF-8.
    VMPOOL_RESULT_INVALID_UTF8 = 2,
    /// A string argument was longer than the library accepts (no NUL within the limit).
    VMPOOL_RESULT_STRING_TOO_LONG = 3,
    /// A JSON argument did not parse, had an unknown key or a value of the wrong type.
    VMPOOL_RESULT_INVALID_JSON = 4,
    /// An argument parsed but its value is refused (bad uuid, name, size, URI, ...).
    VMPOOL_RESULT_INVALID_ARGUMENT = 5,
    /// The image, VM or store named does not exist.
    VMPOOL_RESULT_NOT_FOUND = 10,
    /// Something with that identity already exists (or is being created right now).
    VMPOOL_RESULT_ALREADY_EXISTS = 11,
    /// The object is still used (an image with VMs cloned from it).
    VMPOOL_RESULT_IN_USE = 12,
    /// The path or dataset exists but is not a vmpool store.
    VMPOOL_RESULT_NOT_A_STORE = 13,
    /// Another operation holds what this one needs; try again.
    VMPOOL_RESULT_BUSY = 14,
    /// The caller's progress callback asked to stop.
    VMPOOL_RESULT_CANCELLED = 15,
    /// The VM is not in a state that allows this (pausing a stopped VM, changing the CPUs of
    /// a running one, a console of a VM that does not run); the message says which state.
    VMPOOL_RESULT_INVALID_STATE = 16,
    /// The VM is already running (or being started by someone else).
    VMPOOL_RESULT_ALREADY_RUNNING = 17,
    /// An operation did not finish in the time it had (QEMU did not answer, a guest did not
    /// shut down).
    VMPOOL_RESULT_TIMEOUT = 18,
    /// The pool is at its maximum number of VMs, or the owner holds as many of its VMs as
    /// the pool allows.
    VMPOOL_RESULT_POOL_EXHAUSTED = 19,
    /// The data did not match the sha256 the caller gave.
    VMPOOL_RESULT_CHECKSUM_MISMATCH = 20,
    /// The image file is truncated or structurally broken.
    VMPOOL_RESULT_CORRUPT_IMAGE = 21,
    /// The image is in a format (or uses a feature of one) that vmpool does not take.
    VMPOOL_RESULT_UNSUPPORTED_FORMAT = 22,
    /// The store or platform cannot do this (e.g. built without ZFS support, or a store
    /// written by a newer vmpool).
    VMPOOL_RESULT_UNSUPPORTED = 30,
    /// An operating-system I/O error.
    VMPOOL_RESULT_IO = 31,
    /// The file system or pool is full.
    VMPOOL_RESULT_NO_SPACE = 32,
    /// The operating system refused access.
    VMPOOL_RESULT_PERMISSION_DENIED = 33,
    /// The storage back end (libzfs, a btrfs ioctl) reported an error.
    VMPOOL_RESULT_BACKEND = 34,
    /// QEMU could not be started or failed (the message has QEMU's own words).
    VMPOOL_RESULT_HYPERVISOR = 35,
    /// A bug: the library panicked. The panic was contained; the message says where.
    VMPOOL_RESULT_PANIC = 40,
    /// A bug or an impossible state that is not a panic.
    VMPOOL_RESULT_INTERNAL = 41,
}

pub use vmpool_result as ResultCode;

impl vmpool_result {
    /// The symbolic name without prefix, e.g. `"NOT_FOUND"`: what the CLI and bindings print.
    pub fn name(self) -> &'static str {
        let full: &'static str = self.into();
        full.strip_prefix("VMPOOL_RESULT_").unwrap_or(full)
    }

    /// Every code, in numeric order (for the bindings' tests and the documentation table).
    pub fn all() -> impl Iterator<Item = vmpool_result> {
        <vmpool_result as strum::IntoEnumIterator>::iter()
    }

    /// The code with this number, if there is one.
    pub fn from_u32(n: u32) -> Option<vmpool_result> {
        Self::all().find(|c| *c as u32 == n)
    }
}

/// Everything that can go wrong. Messages name the object involved (uuid, path, dataset) so a
/// log line at 3 a.m. says what failed without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required pointer argument was NULL (C ABI only); names the argument.
    #[error("{0} is NULL")]
    NullPointer(&'static str),
    /// A string argument was not UTF-8; names the argument.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A string argument was too long.
    #[error("{what} is longer than {max} bytes")]
    StringTooLong {
        /// Which argument.
        what: &'static str,
        /// The longest accepted, in bytes.
        max: usize,
    },
    /// A JSON argument did not parse or did not fit its schema.
    #[error("{0}")]
    InvalidJson(String),
    /// An argument's value is refused.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object named does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of object ("image", "VM", "dataset", ...).
        kind: &'static str,
        /// Its identity.
        id: String,
    },
    /// Something with that identity already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The object is still used by others.
    #[error("{0}")]
    InUse(String),
    /// The location is not a vmpool store.
    #[error("{0}")]
    NotAStore(String),
    /// Another operation holds what this one needs.
    #[error("{0}")]
    Busy(String),
    /// The caller's progress callback asked to stop.
    #[error("cancelled by the caller")]
    Cancelled,
    /// The VM's state does not allow this.
    #[error("{0}")]
    InvalidState(String),
    /// The VM already runs.
    #[error("{0}")]
    AlreadyRunning(String),
    /// Out of time.
    #[error("{0}")]
    Timeout(String),
    /// QEMU failed.
    #[error("{0}")]
    Hypervisor(String),
    /// A pool has no VM left to give.
    #[error("{0}")]
    PoolExhausted(String),
    /// The data's sha256 differs from the one the caller gave.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// What the caller said.
        expected: String,
        /// What the data hashes to.
        actual: String,
    },
    /// The image is truncated or broken.
    #[error("{0}")]
    CorruptImage(String),
    /// The image format (or a feature of it) is not taken.
    #[error("{0}")]
    UnsupportedFormat(String),
    /// The store or platform cannot do this.
    #[error("{0}")]
    Unsupported(String),
    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, on which path.
        context: String,
        /// The error the system call reported.
        source: io::Error,
    },
    /// The storage back end reported an error.
    #[error("{0}")]
    Backend(String),
    /// A bug or impossible state.
    #[error("internal error: {0}")]
    Internal(String),
    /// A contained panic (C ABI only).
    #[error("panic: {0}")]
    Panic(String),
}

/// The library's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable result code of this error.
    pub fn code(&self) -> vmpool_result {
        use vmpool_result::*;
        match self {
            Error::NullPointer(_) => VMPOOL_RESULT_NULL_POINTER,
            Error::InvalidUtf8(_) => VMPOOL_RESULT_INVALID_UTF8,
            Error::StringTooLong { .. } => VMPOOL_RESULT_STRING_TOO_LONG,
            Error::InvalidJson(_) => VMPOOL_RESULT_INVALID_JSON,
            Error::InvalidArgument(_) => VMPOOL_RESULT_INVALID_ARGUMENT,
            Error::NotFound { .. } => VMPOOL_RESULT_NOT_FOUND,
            Error::AlreadyExists(_) => VMPOOL_RESULT_ALREADY_EXISTS,
            Error::InUse(_) => VMPOOL_RESULT_IN_USE,
            Error::NotAStore(_) => VMPOOL_RESULT_NOT_A_STORE,
            Error::Busy(_) => VMPOOL_RESULT_BUSY,
            Error::Cancelled => VMPOOL_RESULT_CANCELLED,
            Error::InvalidState(_) => VMPOOL_RESULT_INVALID_STATE,
            Error::AlreadyRunning(_) => VMPOOL_RESULT_ALREADY_RUNNING,
            Error::Timeout(_) => VMPOOL_RESULT_TIMEOUT,
            Error::Hypervisor(_) => VMPOOL_RESULT_HYPERVISOR,
            Error::PoolExhausted(_) => VMPOOL_RESULT_POOL_EXHAUSTED,
            Error::ChecksumMismatch { .. } => VMPOOL_RESULT_CHECKSUM_MISMATCH,
            Error::CorruptImage(_) => VMPOOL_RESULT_CORRUPT_IMAGE,
            Error::UnsupportedFormat(_) => VMPOOL_RESULT_UNSUPPORTED_FORMAT,
            Error::Unsupported(_) => VMPOOL_RESULT_UNSUPPORTED,
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => VMPOOL_RESULT_NO_SPACE,
                Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                    VMPOOL_RESULT_PERMISSION_DENIED
                }
                _ => VMPOOL_RESULT_IO,
            },
            Error::Backend(_) => VMPOOL_RESULT_BACKEND,
            Error::Internal(_) => VMPOOL_RESULT_INTERNAL,
            Error::Panic(_) => VMPOOL_RESULT_PANIC,
        }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// An [`Error::NotFound`].
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// Attach "what we were doing, on which path" to an `io::Error`.
pub trait IoContext<T> {
    /// Turn the error into an [`Error::Io`] with this context.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io {
            context: context(),
            source: io::Error::from(errno),
        })
    }
}
