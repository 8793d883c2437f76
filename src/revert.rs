//! One undo mechanism for every multi-step operation, after Incus's `revert` package: each
//! step that creates something registers how to remove it; on success the caller commits
//! and nothing is undone; on failure (an error, an early return, a panic) the registered
//! steps run in reverse order, so exactly what this call made is removed and nothing else.
//!
//! ```
//! # use vmpool::revert::Revert;
//! # fn make() -> vmpool::Result<()> { Ok(()) }
//! # fn remove() -> vmpool::Result<()> { Ok(()) }
//! let mut r = Revert::new();
//! make()?;
//! r.add("remove the thing", remove);
//! // ... later steps; an error returned here undoes `make` ...
//! r.commit();
//! # Ok::<(), vmpool::Error>(())
//! ```
//!
//! A step that fails to undo is reported by [`Revert::rollback`](crate::revert::Revert::rollback), so that a caller holding a
//! journal entry keeps it and crash recovery finishes the job later.

use crate::error::Result;

type Undo<'a> = Box<dyn FnOnce() -> Result<()> + 'a>;

/// Undo steps registered so far; run in reverse on drop unless committed.
#[must_use = "a Revert undoes its steps when dropped; call commit() on success"]
pub struct Revert<'a> {
    steps: Vec<(String, Undo<'a>)>,
}

impl Default for Revert<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Revert<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|(w, _)| w))
            .finish()
    }
}

impl<'a> Revert<'a> {
    /// Nothing to undo yet.
    pub fn new() -> Self {
        Revert { steps: Vec::new() }
    }

    /// Register how to undo the step that just succeeded. `what` describes it for reports.
    pub fn add(&mut self, what: impl Into<String>, undo: impl FnOnce() -> Result<()> + 'a) {
        self.steps.push((what.into(), Box::new(undo)));
    }

    /// The operation succeeded: forget every undo step.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Undo every step now, newest first, going on after a failure. `Err` lists the steps
    /// that could not be undone (with why).
    pub fn rollback(mut self) -> std::result::Result<(), Vec<String>> {
        let failed = self.run();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    fn run(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo() {
                failed.push(format!("{what}: {e}"));
            }
        }
        failed
    }
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        // Errors here have no one to go to; callers that care use rollback().
        let _ = self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::cell::RefCell;

    #[test]
    fn runs_in_reverse_unless_committed() {
        let log = RefCell::new(Vec::new());
        {
            let mut r = Revert::new();
            r.add("a", || {
                log.borrow_mut().push("a");
                Ok(())
            });
            r.add("b", || {
                log.borrow_mut().push("b");
                Ok(())
            });
        }
        assert_eq!(*log.borrow(), ["b", "a"]);
        log.borrow_mut().clear();
        let mut r = Revert::new();
        r.add("a", || {
            log.borrow_mut().push("a");
            Ok(())
        });
        r.commit();
        assert!(log.borrow().is_empty());
    }

    #[test]
    fn rollback_reports_failures_and_goes_on() {
        let log = RefCell::new(Vec::new());
        let mut r = Revert::new();
        r.add("first", || {
            log.borrow_mut().push("first");
            Ok(())
        });
        r.add("second", || Err(Error::Internal("stuck".into())));
        let failed = r.rollback().unwrap_err();
        assert_eq!(failed, ["second: internal error: stuck"]);
        assert_eq!(*log.borrow(), ["first"]);
    }
}
