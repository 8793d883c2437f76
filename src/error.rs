//! One error type for the whole library, and the stable result codes it maps to.
//!
//! The numbers in [`ResultCode`] are part of the C ABI and of the CLI (its exit status is the
//! code), so they never change once published; new codes get new numbers.

use std::io;

/// Stable result codes shared by the C ABI (`vmpool_result`), the CLI exit status and the
/// bindings' exception classes. Every value is below 64 so it fits an exit status.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The data did not match the sha256 the caller gave.
    VMPOOL_RESULT_CHECKSUM_MISMATCH = 20,
    /// The image file is truncated or structurally broken.
    VMPOOL_RESULT_CORRUPT_IMAGE = 21,
    /// The image is in a format (or uses a feature of one) that vmpool does not take.
    VMPOOL_RESULT_UNSUPPORTED_FORMAT = 22,
    /// The store or platform cannot do this (e.g. built without ZFS support).
    VMPOOL_RESULT_UNSUPPORTED = 30,
    /// An operating-system I/O error.
    VMPOOL_RESULT_IO = 31,
    /// The file system or pool is full.
    VMPOOL_RESULT_NO_SPACE = 32,
    /// The operating system refused access.
    VMPOOL_RESULT_PERMISSION_DENIED = 33,
    /// The storage back end (libzfs, a btrfs ioctl) reported an error.
    VMPOOL_RESULT_BACKEND = 34,
    /// A bug: the library panicked. The panic was contained; the message says where.
    VMPOOL_RESULT_PANIC = 40,
    /// A bug or an impossible state that is not a panic.
    VMPOOL_RESULT_INTERNAL = 41,
}

pub use vmpool_result as ResultCode;

impl vmpool_result {
    /// The symbolic name without prefix, e.g. `"NOT_FOUND"`: what the CLI and bindings print.
    pub fn name(self) -> &'static str {
        use vmpool_result::*;
        match self {
            VMPOOL_RESULT_OK => "OK",
            VMPOOL_RESULT_NULL_POINTER => "NULL_POINTER",
            VMPOOL_RESULT_INVALID_UTF8 => "INVALID_UTF8",
            VMPOOL_RESULT_STRING_TOO_LONG => "STRING_TOO_LONG",
            VMPOOL_RESULT_INVALID_JSON => "INVALID_JSON",
            VMPOOL_RESULT_INVALID_ARGUMENT => "INVALID_ARGUMENT",
            VMPOOL_RESULT_NOT_FOUND => "NOT_FOUND",
            VMPOOL_RESULT_ALREADY_EXISTS => "ALREADY_EXISTS",
            VMPOOL_RESULT_IN_USE => "IN_USE",
            VMPOOL_RESULT_NOT_A_STORE => "NOT_A_STORE",
            VMPOOL_RESULT_BUSY => "BUSY",
            VMPOOL_RESULT_CANCELLED => "CANCELLED",
            VMPOOL_RESULT_CHECKSUM_MISMATCH => "CHECKSUM_MISMATCH",
            VMPOOL_RESULT_CORRUPT_IMAGE => "CORRUPT_IMAGE",
            VMPOOL_RESULT_UNSUPPORTED_FORMAT => "UNSUPPORTED_FORMAT",
            VMPOOL_RESULT_UNSUPPORTED => "UNSUPPORTED",
            VMPOOL_RESULT_IO => "IO",
            VMPOOL_RESULT_NO_SPACE => "NO_SPACE",
            VMPOOL_RESULT_PERMISSION_DENIED => "PERMISSION_DENIED",
            VMPOOL_RESULT_BACKEND => "BACKEND",
            VMPOOL_RESULT_PANIC => "PANIC",
            VMPOOL_RESULT_INTERNAL => "INTERNAL",
        }
    }

    /// Every code, for the bindings' tests and the documentation table.
    pub const ALL: [vmpool_result; 22] = {
        use vmpool_result::*;
        [
            VMPOOL_RESULT_OK,
            VMPOOL_RESULT_NULL_POINTER,
            VMPOOL_RESULT_INVALID_UTF8,
            VMPOOL_RESULT_STRING_TOO_LONG,
            VMPOOL_RESULT_INVALID_JSON,
            VMPOOL_RESULT_INVALID_ARGUMENT,
            VMPOOL_RESULT_NOT_FOUND,
            VMPOOL_RESULT_ALREADY_EXISTS,
            VMPOOL_RESULT_IN_USE,
            VMPOOL_RESULT_NOT_A_STORE,
            VMPOOL_RESULT_BUSY,
            VMPOOL_RESULT_CANCELLED,
            VMPOOL_RESULT_CHECKSUM_MISMATCH,
            VMPOOL_RESULT_CORRUPT_IMAGE,
            VMPOOL_RESULT_UNSUPPORTED_FORMAT,
            VMPOOL_RESULT_UNSUPPORTED,
            VMPOOL_RESULT_IO,
            VMPOOL_RESULT_NO_SPACE,
            VMPOOL_RESULT_PERMISSION_DENIED,
            VMPOOL_RESULT_BACKEND,
            VMPOOL_RESULT_PANIC,
            VMPOOL_RESULT_INTERNAL,
        ]
    };
}

/// Everything that can go wrong. Messages name the object involved (uuid, path, dataset) so a
/// log line at 3 a.m. says what failed without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is NULL")]
    NullPointer(&'static str),
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("{what} is longer than {max} bytes")]
    StringTooLong { what: &'static str, max: usize },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    NotAStore(String),
    #[error("{0}")]
    Busy(String),
    #[error("cancelled by the caller")]
    Cancelled,
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch { expected: String, actual: String },
    #[error("{0}")]
    CorruptImage(String),
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{0}")]
    Backend(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("panic: {0}")]
    Panic(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// Attach "what we were doing, on which path" to an `io::Error`.
pub trait IoContext<T> {
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
