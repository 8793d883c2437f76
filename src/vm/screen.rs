//! What a running VM shows: console tickets for SPICE (a fresh password per request, made to
//! expire, as Proxmox hands them out) and screenshots.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::Store;
use crate::vm::console::{self, Console};
use crate::vm::lifecycle::{qmp_error, QMP_TIMEOUT};
use crate::vm::State;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

impl Store {
    /// A console ticket valid for `ttl`: a new random SPICE password, set with QMP and made
    /// to expire; the previous ticket stops working.
    pub fn console(&self, uuid: Uuid, ttl: Duration) -> Result<Console> {
        if ttl < console::TTL_MIN || ttl > console::TTL_MAX {
            return Err(Error::invalid(format!(
                "console ttl of {} s is out of range {}..={} s",
                ttl.as_secs(),
                console::TTL_MIN.as_secs(),
                console::TTL_MAX.as_secs()
            )));
        }
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        let info = match (self.run_info(&r, &run), live) {
            (Some(i), State::Running | State::Paused | State::Starting) => i,
            _ => {
                return Err(Error::InvalidState(format!(
                    "VM {uuid} is {}; a console needs it running",
                    live.as_str()
                )))
            }
        };
        let password = console::new_password();
        let mut q = self.qmp(&uuid, &run)?;
        q.execute(
            "set_password",
            Some(serde_json::json!({"protocol": "spice", "password": password})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(&uuid, "set_password", e))?;
        q.execute(
            "expire_password",
            Some(serde_json::json!({"protocol": "spice", "time": format!("+{}", ttl.as_secs())})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(&uuid, "expire_password", e))?;
        let expires = std::time::SystemTime::now() + ttl;
        Ok(Console {
            uri: console::uri(&info.spice),
            vv: console::vv_file(&info.spice, &password, &r.alias),
            addr: info.spice,
            password,
            expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
            expires_at_unix: expires
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Save the VM's screen as a PNG file at `dest` (QMP `screendump`).
    pub fn screenshot(&self, uuid: Uuid, dest: &Path) -> Result<()> {
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        if !matches!(live, State::Running | State::Paused) {
            return Err(Error::InvalidState(format!(
                "VM {uuid} is {}; a screenshot needs it running",
                live.as_str()
            )));
        }
        // QEMU may write only in its own directory: dump there, then copy.
        let tmp = run
            .qemu_dir()
            .join(format!(".screen-{}.png", fsutil::token()));
        let res = self
            .qmp_call(
                &uuid,
                &run,
                "screendump",
                Some(serde_json::json!({"filename": tmp, "format": "png"})),
            )
            .and_then(|_| {
                std::fs::copy(&tmp, dest)
                    .map(drop)
                    .ctx(|| format!("copying the screenshot to {}", dest.display()))
            });
        let _ = std::fs::remove_file(&tmp);
        res
    }
}
