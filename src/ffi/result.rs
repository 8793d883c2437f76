//! Result codes: the one table from the library's errors to the numbers of the C ABI
//! ([`map_error`], after rustls-ffi's `map_error`), and the failures only the C edge has
//! ([`CallError`]: a NULL pointer, a string that is not UTF-8, a contained panic).

use crate::error::Error;

/// Stable result codes shared by the C ABI (`vmpool_result`, a `uint32_t` in C), the CLI exit
/// status and the bindings' exception classes. Every value is below 64 so it fits an exit
/// status.
///
/// This enum is the one list of codes: [`vmpool_result::all`] and [`vmpool_result::name`] are
/// derived from it, the header is generated from it, and `tests/it/result_codes.rs` fails when
/// the tables in the Ruby and Python bindings or in the README differ from it. The numbers
/// never change once published; new codes get new numbers.
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

/// The code of a library error.
pub fn map_error(e: &Error) -> vmpool_result {
    use vmpool_result::*;
    match e {
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
        Error::Qmp { source, .. } => match source {
            crate::vm::qmp::QmpError::Timeout { .. } => VMPOOL_RESULT_TIMEOUT,
            _ => VMPOOL_RESULT_HYPERVISOR,
        },
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
        Error::Internal(_) | Error::Json { .. } => VMPOOL_RESULT_INTERNAL,
    }
}

/// How an entry point fails: as the library does, or in a way only the C edge can.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A required pointer argument was NULL; names the argument.
    #[error("{0} is NULL")]
    NullPointer(&'static str),
    /// A string argument was not UTF-8; names the argument.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A panic, contained at the boundary.
    #[error("panic: {0}")]
    Panic(String),
    /// The library's error.
    #[error(transparent)]
    Lib(#[from] Error),
}

impl CallError {
    /// Its result code.
    pub fn code(&self) -> vmpool_result {
        match self {
            CallError::NullPointer(_) => vmpool_result::VMPOOL_RESULT_NULL_POINTER,
            CallError::InvalidUtf8(_) => vmpool_result::VMPOOL_RESULT_INVALID_UTF8,
            CallError::Panic(_) => vmpool_result::VMPOOL_RESULT_PANIC,
            CallError::Lib(e) => map_error(e),
        }
    }
}

/// What entry points and their helpers return.
pub type CallResult<T> = std::result::Result<T, CallError>;
