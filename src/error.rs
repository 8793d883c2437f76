//! One error type for the whole library. Errors carry what was being done and, where there is
//! one, the error that caused it (`source()`); they become result codes only at the C edge
//! ([`crate::ffi::result`]), which holds the table of codes.

use std::io;

pub use crate::ffi::result::vmpool_result;
pub use vmpool_result as ResultCode;

/// Everything that can go wrong. Messages name the object involved (uuid, path, dataset) so a
/// log line at 3 a.m. says what failed without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A value of ours could not be written or read as JSON (a bug, or a file another
    /// version wrote).
    #[error("internal error: {context}: {source}")]
    Json {
        /// What was being written or read.
        context: String,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// A QMP call to a VM's QEMU failed; a timeout is `TIMEOUT`, anything else
    /// `HYPERVISOR`.
    #[error("{}", qmp_message(vm, what, source))]
    Qmp {
        /// The VM.
        vm: uuid::Uuid,
        /// What was asked of QEMU.
        what: String,
        /// How the call failed.
        source: crate::vm::qmp::QmpError,
    },
}

/// The library's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The result code the C ABI (and the CLI's exit status) gives this error: the table is
    /// [`crate::ffi::result::map_error`].
    pub fn code(&self) -> vmpool_result {
        crate::ffi::result::map_error(self)
    }

    /// An [`Error::Json`].
    pub fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Json {
            context: context.into(),
            source,
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

fn qmp_message(vm: &uuid::Uuid, what: &str, e: &crate::vm::qmp::QmpError) -> String {
    match e {
        crate::vm::qmp::QmpError::Timeout { .. } => {
            format!("VM {vm}: QEMU did not answer {what} in time ({e})")
        }
        other => format!("VM {vm}: {what}: {other}"),
    }
}
