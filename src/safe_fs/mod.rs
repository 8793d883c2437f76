//! Acting in directories without trusting their contents: every root-run file operation on a
//! VM's run directory, its sockets, a memory template's files or a VM's disk goes through here.
//!
//! A compromised QEMU (or any local user, for world-writable places such as `/dev/shm`) may
//! turn any name it can write into a symlink, a FIFO or a device between two calls of ours.
//! So nothing here resolves a path that another uid could change:
//! - a directory is opened once ([`Dir`](crate::safe_fs::Dir)), from `/` down, each component with `O_NOFOLLOW`
//!   and checked with `fstat` for its owner and mode ([`Dir::trusted`](crate::safe_fs::Dir::trusted)); later operations are
//!   relative to its descriptor;
//! - names below it are resolved by `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS` (on kernels before 5.6: `openat` with `O_NOFOLLOW`, and only
//!   single-component names are accepted, so the two are equivalent);
//! - what is opened is checked with `fstat` for its type (a FIFO named like a log is never
//!   opened for writing, which would block; a device is never read);
//! - ownership changes use `fchownat` on a descriptor (`AT_EMPTY_PATH`), never a path;
//! - removal of a tree walks descriptors, never follows a link and never crosses a mount;
//! - unix sockets are bound and connected through `/proc/self/fd/N/<name>` of the directory's
//!   descriptor (which also makes their path short whatever the directory's length), and a
//!   socket we connect to is first opened `O_PATH | O_NOFOLLOW` and checked to be a socket of
//!   the expected owner ([`Dir::connect`](crate::safe_fs::Dir::connect)).
//!
//! The rules are written down in `docs/security.md`; `tests/it/security.rs` performs the attacks.

mod dir;
mod trusted;

pub use dir::{fchown, Dir, Kind};
pub use trusted::{chown_path, TrustRule};

#[cfg(test)]
mod tests;
