//! Who is looking at a VM: the console clients QEMU has, as the supervisor follows them from
//! QEMU's `SPICE_CONNECTED` and `SPICE_DISCONNECTED` events, and when anyone last asked for
//! the VM (a hand-out, a console ticket). A pool's idle policy reads both
//! (`pool/idle.rs`). Each has one writer: `clients.json` the supervisor, `seen` the library,
//! so neither overwrites the other's news.

use crate::safe_fs::Dir;
use crate::vm::runtime::PRIVATE;
use serde::{Deserialize, Serialize};

/// `run/<uuid>/clients.json`, written by the supervisor.
pub const CLIENTS: &str = "clients.json";
/// `run/<uuid>/seen`, written by the library: seconds since the epoch.
pub const SEEN: &str = "seen";

/// The console connections of the current run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clients {
    /// Open SPICE channel connections (a client opens several).
    pub connected: u32,
    /// When that number last changed (or the run began), seconds since the epoch.
    pub changed_at: u64,
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Clients {
    /// After a QMP event `name`: the new count, if the event is about a console client.
    pub fn after(self, name: &str, now: u64) -> Option<Clients> {
        let connected = match name {
            "SPICE_CONNECTED" | "VNC_CONNECTED" => self.connected.saturating_add(1),
            "SPICE_DISCONNECTED" | "VNC_DISCONNECTED" => self.connected.saturating_sub(1),
            _ => return None,
        };
        Some(Clients {
            connected,
            changed_at: now,
        })
    }

    /// Write them (the supervisor).
    pub fn write(&self, run: &Dir) -> crate::Result<()> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        write_hint(run, CLIENTS, &bytes)
    }

    /// What the supervisor last wrote, if anything.
    pub fn read(run: &Dir) -> Option<Clients> {
        run.read(CLIENTS, 4096)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// Note that someone asked for the VM just now (the library).
pub fn mark_seen(run: &Dir) -> crate::Result<()> {
    write_hint(run, SEEN, now_s().to_string().as_bytes())
}

/// Replace `name` whole (a temp file renamed over it: a reader sees the old or the new), but
/// without `write_atomic`'s two fsyncs: these files are hints an acquire writes on its fast
/// path, and one lost in a crash only restarts an idle clock.
fn write_hint(run: &Dir, name: &str, bytes: &[u8]) -> crate::Result<()> {
    use std::io::Write;
    let tmp = format!(
        "{}{}-{name}",
        crate::fsutil::TMP_PREFIX,
        crate::fsutil::token()
    );
    let written = run.create(&tmp, PRIVATE).and_then(|mut f| {
        f.write_all(bytes).map_err(|e| crate::Error::Io {
            context: format!("writing {}", run.display(&tmp)),
            source: e,
        })
    });
    match written.and_then(|()| run.rename(&tmp, name)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = run.remove(&tmp);
            Err(e)
        }
    }
}

/// When someone last asked for the VM, if ever in this run.
pub fn seen(run: &Dir) -> Option<u64> {
    run.read(SEEN, 64)
        .ok()
        .flatten()
        .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
}

/// Since when nobody has looked at the VM (seconds since the epoch), or `None` while a
/// console client is connected. A run with no record of either counts from `fallback`.
pub fn idle_since(run: &Dir, fallback: u64) -> Option<u64> {
    let c = Clients::read(run);
    if c.is_some_and(|c| c.connected > 0) {
        return None;
    }
    let since = c.map_or(fallback, |c| c.changed_at);
    Some(since.max(seen(run).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_counts_from_connect_to_disconnect() {
        let c = Clients::default();
        let c = c.after("SPICE_CONNECTED", 10).unwrap();
        let c = c.after("SPICE_CONNECTED", 11).unwrap();
        assert_eq!(
            c,
            Clients {
                connected: 2,
                changed_at: 11
            }
        );
        let c = c.after("SPICE_DISCONNECTED", 12).unwrap();
        let c = c.after("SPICE_DISCONNECTED", 13).unwrap();
        assert_eq!(
            c,
            Clients {
                connected: 0,
                changed_at: 13
            }
        );
        // A stray disconnect never wraps; other events are not about clients.
        assert_eq!(c.after("SPICE_DISCONNECTED", 14).unwrap().connected, 0);
        assert_eq!(c.after("STOP", 15), None);
    }
}
