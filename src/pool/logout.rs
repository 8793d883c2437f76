//! An owner's logout (the portal's sign-out, a broker's session end): each pool's
//! `on_logout` says what becomes of the desktops the owner holds there: `keep` leaves them as
//! they are (the same desktop next time; the idle policy may put it to sleep), `refresh`
//! releases them (the pool's `on_release`: destroyed, or destroyed with a fresh spare made at
//! once), so the next acquire hands out a fresh one. An owner's home is never touched: it is
//! attached to whichever desktop they get next (a desktop asleep with it wakes first, so
//! that its last writes, in the guest's saved memory, reach the home: see `release`).

use crate::error::Result;
use crate::pool::OnLogout;
use crate::store::Store;
use crate::validate;
use uuid::Uuid;

/// What `logout` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedOut {
    /// Desktops left as they are (`on_logout: keep`).
    pub kept: Vec<Uuid>,
    /// Desktops released, for a fresh one next time (`on_logout: refresh`).
    pub refreshed: Vec<Uuid>,
}

impl Store {
    /// The owner logged out: apply each pool's `on_logout` to the desktops they hold there.
    /// A release that fails stops the call with its error (the desktops released before it
    /// stay released; a second call finishes the rest).
    pub fn logout(&self, owner: &str) -> Result<LoggedOut> {
        validate::name("owner", owner)?;
        let mut out = LoggedOut::default();
        for rec in self.catalog.pools()? {
            if rec.deleting {
                continue;
            }
            let held = self.pool_dir(&rec.spec.name).owned(owner)?;
            for u in held {
                // An entry whose VM is gone (deleted behind the pool's back) is not a desktop.
                if self.catalog.vm(&u)?.is_none() {
                    continue;
                }
                match rec.spec.on_logout {
                    OnLogout::Keep => out.kept.push(u),
                    OnLogout::Refresh => {
                        self.release(u)?;
                        out.refreshed.push(u);
                    }
                }
            }
        }
        Ok(out)
    }
}
