//! A pool's session limit (`max_session_s`): a desktop stays with its owner for at most that
//! long in one go. Its end (`session_ends_at` in the VM's record) is fixed when the session
//! starts: at the hand-out, or when the acquire brings the desktop back to run (`hand_over`);
//! a desktop that runs for its owner without one (woken or started by other calls than an
//! acquire, or running when the pool got its limit) gets one at the next refill. A start after
//! the end drops it (`start_locked`): a desktop put to sleep at its end and woken by a plain
//! start is not ended again at once. A stop and start before the end keeps it. The end is
//! enforced whatever the pool's limit is now: a change applies from the next session. A
//! portal reads the end to warn its user.
//!
//! At the end the pool ends the session the way the owner's logout would, except that `keep`
//! also puts the desktop to sleep (otherwise nothing would end): `keep` suspends it, so its
//! RAM is free and its owner's next acquire wakes it where it was, starting a new session;
//! `refresh` releases it, so the next acquire hands out a fresh one (the home stays). Checked
//! at each refill, like the idle policy.

use crate::pool::OnLogout;
use crate::store::catalog::records::{PoolRecord, VmRecord};
use crate::store::Store;
use std::time::SystemTime;

/// The reason a suspended desktop's record gives when its session reached the pool's limit.
pub const SESSION_END_REASON: &str = "session limit";

/// Whether the record's session end has passed (an end that does not parse, written by
/// hand, has: a limit is never silently lifted).
pub(crate) fn passed(r: &VmRecord) -> bool {
    let now = SystemTime::now();
    r.session_ends_at
        .as_deref()
        .is_some_and(|s| humantime::parse_rfc3339(s).map_or(true, |t| t <= now))
}

/// When a session of `max_s` seconds that starts now ends, RFC 3339.
pub(crate) fn end_after(max_s: u32) -> String {
    let at = SystemTime::now() + std::time::Duration::from_secs(u64::from(max_s));
    humantime::format_rfc3339_seconds(at).to_string()
}

impl Store {
    /// End the sessions of the pool's desktops whose `session_ends_at` has passed. Returns
    /// how many were ended, and what went wrong with others (they keep running; the next
    /// refill tries again).
    pub(crate) fn end_sessions(&self, rec: &PoolRecord, max_s: Option<u32>) -> (u32, Vec<String>) {
        let desktops = match self.running_desktops(rec) {
            Ok(d) => d,
            Err(e) => return (0, vec![format!("session limits: {e}")]),
        };
        let (mut done, mut errors) = (0, Vec::new());
        for r in desktops {
            let u = r.uuid;
            if r.session_ends_at.is_none() {
                if let Some(max_s) = max_s {
                    if let Err(e) = self.begin_session(u, max_s) {
                        errors.push(format!("starting the session of VM {u}: {e}"));
                    }
                }
                continue;
            }
            if !passed(&r) {
                continue;
            }
            // Asked again at the moment it happens: a stop, or a new session (the owner's
            // acquire woke it since), keeps it.
            let still = || {
                self.catalog
                    .vm(&u)
                    .ok()
                    .flatten()
                    .is_some_and(|x| !x.owner.is_empty() && passed(&x))
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
        if r.owner.is_empty() || !r.state.is_active() || r.session_ends_at.is_some() {
            return Ok(());
        }
        r.session_ends_at = Some(end_after(max_s));
        self.catalog.put_vm(&r)
    }
}
