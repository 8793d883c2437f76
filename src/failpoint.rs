//! Named fault-injection points, so tests can fail or kill an operation at each of its steps
//! and check what the store looks like afterwards.
//!
//! `VMPOOL_FAILPOINTS=name=action[,name=action...]` arms them for a whole process (read at each
//! check, so a child process can be armed from its environment); [`arm`] arms one for the
//! current thread only (for tests running in parallel threads). Actions: `error` returns an
//! internal error from that step; `kill` sends SIGKILL to the process, as an OOM killer or an
//! impatient operator would. Unarmed points cost one environment lookup.

use crate::error::{Error, Result};
use std::cell::RefCell;

thread_local! {
    static ARMED: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// Arm `name` with `action` on this thread until [`disarm_all`].
pub fn arm(name: &str, action: &str) {
    ARMED.with(|a| a.borrow_mut().push((name.to_owned(), action.to_owned())));
}

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

/// Check the point `name`.
pub fn hit(name: &str) -> Result<()> {
    match action(name).as_deref() {
        None => Ok(()),
        Some("error") => Err(Error::Internal(format!("failpoint {name}"))),
        Some("kill") => {
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!("SIGKILL returned")
        }
        Some(other) => Err(Error::Internal(format!(
            "failpoint {name} has unknown action {other:?}"
        ))),
    }
}
