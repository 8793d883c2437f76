//! Named fault-injection points, so tests can fail or kill an operation at each of its steps
//! and check what the store looks like afterwards.
//!
//! Compiled only with the `failpoints` cargo feature, which the test suite enables (the crate
//! lists itself as a dev-dependency with it) and release and `make install` builds never do:
//! without it [`fail_point!`](crate::fail_point) expands to nothing, and no point name is in
//! the binary.
//!
//! `VMPOOL_FAILPOINTS=name=action[,name=action...]` arms points for a whole process (read at
//! each check, so a child process can be armed from its environment); `arm` arms one for
//! the current thread only (for tests running in parallel threads). Actions: `error` returns
//! an internal error from that step; `kill` sends SIGKILL to the process, as an OOM killer or
//! an impatient operator would.

/// Check the named fault-injection point: with the `failpoints` feature, return an error from
/// the enclosing function (or SIGKILL the process) when the point is armed; without it,
/// nothing at all.
#[macro_export]
#[doc(hidden)]
macro_rules! fail_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoint::hit($name)?;
    };
}

#[cfg(feature = "failpoints")]
pub use armed::*;

#[cfg(feature = "failpoints")]
mod armed {
    use crate::error::{Error, Result};
    use std::cell::RefCell;

    thread_local! {
        static ARMED: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
    }

    /// Arm `name` with `action` on this thread until [`disarm_all`].
    pub fn arm(name: &str, action: &str) {
        ARMED.with(|a| a.borrow_mut().push((name.to_owned(), action.to_owned())));
    }

    /// Disarm every point armed on this thread.
    pub fn disarm_all() {
        ARMED.with(|a| a.borrow_mut().clear());
    }

    fn action(name: &str) -> Option<String> {
        if let Some(a) = ARMED.with(|a| {
            a.borrow()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a.clone())
        }) {
            return Some(a);
        }
        let env = std::env::var("VMPOOL_FAILPOINTS").ok()?;
        env.split(',').find_map(|p| {
            p.split_once('=')
                .filter(|(n, _)| *n == name)
                .map(|(_, a)| a.to_owned())
        })
    }

    /// Check the point `name` (use [`fail_point!`](crate::fail_point)).
    pub fn hit(name: &str) -> Result<()> {
        match action(name).as_deref() {
            None => Ok(()),
            Some("error") => Err(Error::Internal(format!("failpoint {name}"))),
            Some("kill") => {
                // SAFETY: raise() has no memory-safety preconditions; SIGKILL ends the process.
                unsafe { libc::raise(libc::SIGKILL) };
                unreachable!("SIGKILL returned")
            }
            Some(other) => Err(Error::Internal(format!(
                "failpoint {name} has unknown action {other:?}"
            ))),
        }
    }
}
