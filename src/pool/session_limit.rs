//! A pool's session limit (`max_session_s`): a desktop stays with its owner for at most that
//! long in one go. Its end (`session_ends_at` in the VM's record) is fixed when the session
//! starts: at the hand-out, or when the acquire brings the desktop back to run (`hand_over`);
//! a desktop that runs for its owner without one (woken or started by other calls than an
//! acquire, or running when the pool got its limit) gets one at the next refill. An end that
//! is not after the current run's start belongs to an earlier run: a new run is a new
//! session. A portal reads the end to warn its user. At the end the pool ends the
//! session the way the owner's logout would, except that `keep` also puts the desktop to sleep
//! (otherwise nothing would end): `keep` suspends it, so its RAM is free and its owner's next
//! acquire wakes it where it was, starting a new session; `refresh` releases it, so the next
//! acquire hands out a fresh one (the home stays). Checked at each refill, like the idle policy.

use crate::pool::plan::Standing;
use crate::pool::OnLogout;
use crate::store::catalog::records::{PoolRecord, VmRecord};
use crate::store::Store;
use crate::vm::State;
use std::time::SystemTime;

/// The reason a suspended desktop's record gives when its session reached the pool's limit.
pub const SESSION_END_REASON: &str = "session limit";

/// The end of the record's current session: its `session_ends_at`, unless that is of an
/// earlier run (the run started at or after it).
pub(crate) fn current_end(r: &VmRecord) -> Option<&str> {
    let end = r.session_ends_at.as_deref()?;
    let started = r
        .run
        .as_ref()
        .and_then(|i| humantime::parse_rfc3339(&i.started_at).ok());
    match (humantime::parse_rfc3339(end), started) {
        (Ok(e), Some(s)) if s >= e => None,
        _ => Some(end),
    }
}

/// When a session of `max_s` seconds that starts now ends, RFC 3339.
pub(crate) fn end_after(max_s: u32) -> String {
    let at = SystemTime::now() + std::time::Duration::from_secs(u64::from(max_s));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Whether the record's current session is over at `now`. An end that does not parse (written
/// by hand) counts as over: a limit is never silently lifted.
fn over(r: &VmRecord, now: SystemTime) -> bool {
    current_end(r).is_some_and(|s| humantime::parse_rfc3339(s).map_or(true, |t| t <= now))
}

impl Store {
    /// End the sessions of the pool's desktops whose `session_ends_at` has passed. Returns
    /// how many were ended, and what went wrong with others (they keep running; the next
    /// refill tries again).
    pub(crate) fn end_sessions(&self, rec: &PoolRecord, max_s: u32) -> (u32, Vec<String>) {
        let dir = self.pool_dir(&rec.spec.name);
        let members = match dir.lock().and_then(|_l| self.members(rec, &dir)) {
            Ok(m) => m,
            Err(e) => return (0, vec![format!("session limits: {e}")]),
        };
        let (mut done, mut errors) = (0, Vec::new());
        for (r, standing, live) in members {
            if standing != Standing::Owned
                || !matches!(live, State::Running | State::Paused)
                || r.suspended.is_some()
                || r.restore.is_some()
            {
                continue;
            }
            let u = r.uuid;
            if current_end(&r).is_none() {
                if let Err(e) = self.begin_session(u, max_s) {
                    errors.push(format!("starting the session of VM {u}: {e}"));
                }
                continue;
            }
            if !over(&r, SystemTime::now()) {
                continue;
            }
            // Asked again at the moment it happens: a stop, or a new session (the owner's
            // acquire woke it since), keeps it.
            let still = || {
                self.catalog
                    .vm(&u)
                    .ok()
                    .flatten()
                    .is_some_and(|x| !x.owner.is_empty() && over(&x, SystemTime::now()))
            };
            let ended = match rec.spec.on_logout {
                OnLogout::Keep => self
                    .suspend_vm_if(u, SESSION_END_REASON, |_| still())
                    .map(drop),
                OnLogout::Refresh if still() => self.release(u),
                OnLogout::Refresh => continue,
            };
            match ended {
                Ok(()) => done += 1,
                // Woken, stopped or changed meanwhile: nothing to do.
                Err(crate::Error::InvalidState(_) | crate::Error::NotFound { .. }) => {}
                Err(e) => errors.push(format!("ending the session of VM {u}: {e}")),
            }
        }
        (done, errors)
    }

    /// Give a desktop that runs for its owner without a session end one, from now; under
    /// its lifecycle lock, asked again there.
    fn begin_session(&self, u: uuid::Uuid, max_s: u32) -> crate::Result<()> {
        let _lc = self.lifecycle_lock(&self.run_dir(&u))?;
        let mut r = self.record(&u)?;
        if r.owner.is_empty() || !r.state.is_active() || current_end(&r).is_some() {
            return Ok(());
        }
        r.session_ends_at = Some(end_after(max_s));
        self.catalog.put_vm(&r)
    }
}
