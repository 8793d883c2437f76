//! A pool's idle policy (`idle_suspend_after_s`): a handed-out desktop nobody has looked at
//! for that long is suspended (`vm/suspend.rs`), and its owner's next acquire wakes it. "Looked
//! at" is what the run directory says (`vm/supervisor/clients.rs`): a console client connected
//! now (QEMU's SPICE events, followed by the supervisor), or a hand-out or console ticket
//! within the time. Checked at each refill, which a portal runs every few seconds.

use crate::store::catalog::records::PoolRecord;
use crate::store::Store;
use crate::vm::supervisor::clients;

impl Store {
    /// Suspend the pool's handed-out desktops idle for `after_s` seconds or more. Returns how
    /// many were suspended, and what went wrong with others (they keep running).
    pub(crate) fn suspend_idle(&self, rec: &PoolRecord, after_s: u32) -> (u32, Vec<String>) {
        let desktops = match self.running_desktops(rec) {
            Ok(d) => d,
            Err(e) => return (0, vec![format!("idle desktops: {e}")]),
        };
        let now = clients::now_s();
        let (mut done, mut errors) = (0, Vec::new());
        for r in desktops {
            let Ok(run) = self.run_dir(&r.uuid).open() else {
                continue;
            };
            let Some(since) = clients::idle_since(&run, now) else {
                continue;
            };
            if now.saturating_sub(since) < u64::from(after_s) {
                continue;
            }
            // Asked again under the VM's lock: an owner back in between keeps it.
            let still = |d: &crate::safe_fs::Dir| {
                clients::idle_since(d, now)
                    .is_some_and(|s| clients::now_s().saturating_sub(s) >= u64::from(after_s))
            };
            match self.suspend_vm_if(r.uuid, "idle", still) {
                Ok(_) => done += 1,
                // Woken, stopped or changed meanwhile: nothing to do.
                Err(crate::Error::InvalidState(_)) => {}
                Err(e) => errors.push(format!("suspending idle VM {}: {e}", r.uuid)),
            }
        }
        (done, errors)
    }

    /// Note that someone asked for the VM now (a hand-out, a console ticket): its idle time
    /// starts again. Best effort.
    pub(crate) fn mark_seen(&self, vm: &uuid::Uuid) {
        if let Ok(d) = self.run_dir(vm).open() {
            let _ = clients::mark_seen(&d);
        }
    }
}
