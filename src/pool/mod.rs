//! Pools (the seed's "VM creation pool"): VMs of one image and flavor kept ready, handed to
//! owners on `acquire`, one per owner unless the pool allows more; an owner who comes back gets
//! the same VM (the seed's redirect to the existing desktop).
//!
//! This module holds what a caller says and gets back
//! ([`PoolSpec`](crate::pool::PoolSpec), [`Pool`](crate::pool::Pool),
//! [`Acquired`](crate::pool::Acquired), [`RefillReport`](crate::pool::RefillReport)) and the
//! pool's claim files ([`claims`](crate::pool::claims)); its operations are `Store` methods in
//! `crud` (create, change, delete), `acquire` (acquire, release), `refill` and `template`
//! (memory templates).

pub(crate) mod acquire;
pub mod claims;
pub(crate) mod crud;
pub(crate) mod idle;
pub(crate) mod logout;
pub(crate) mod plan;
pub(crate) mod refill;
pub(crate) mod session_limit;
pub(crate) mod template;

pub use logout::LoggedOut;
pub use session_limit::SESSION_END_REASON;

use crate::error::{Error, Result};
use crate::validate::{self, Limits};
use crate::vm::console::Console;
use crate::vm::{Accel, Vm};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// How ready a pool keeps its spares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Warmth {
    /// The clone is made, QEMU is not started: acquire boots it.
    #[default]
    Disk,
    /// Booted until ready, then paused: acquire resumes it.
    Paused,
    /// Clones of a memory template, each with its QEMU started and waiting for the template's
    /// state (`-incoming defer`): acquire loads the state and continues. The guest goes on
    /// from where the template was, without booting.
    Template,
}

impl Warmth {
    /// `disk`, `paused` or `template`.
    pub fn as_str(self) -> &'static str {
        match self {
            Warmth::Disk => "disk",
            Warmth::Paused => "paused",
            Warmth::Template => "template",
        }
    }
}

/// What `release` does with a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnRelease {
    /// The VM is destroyed; refill makes new spares.
    #[default]
    Destroy,
    /// The VM is wiped (destroyed) and a fresh clone takes its place among the spares at once,
    /// as Horizon's refresh at log-off.
    Reset,
}

impl OnRelease {
    /// `destroy` or `reset`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnRelease::Destroy => "destroy",
            OnRelease::Reset => "reset",
        }
    }
}

/// What the owner's logout (`Store::logout`) does with their desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnLogout {
    /// A persistent desktop: it stays theirs, as it is (the idle policy may put it to sleep).
    #[default]
    Keep,
    /// A fresh desktop each time (oVirt's stateless pools, Horizon's refresh at log-off): the
    /// desktop is released (as `release`: destroyed, or reset), their home stays.
    Refresh,
}

impl OnLogout {
    /// `keep` or `refresh`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnLogout::Keep => "keep",
            OnLogout::Refresh => "refresh",
        }
    }
}

fn one() -> u32 {
    1
}

fn ready_timeout() -> u32 {
    300
}

/// A pool's settings: what `create_pool` takes and `update_pool` changes (everything except
/// the name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Its name ([`validate::NAME_RULE`]).
    pub name: String,
    /// The image its VMs are cloned from.
    pub image_uuid: Uuid,
    /// Virtual CPUs of each VM.
    pub vcpus: u32,
    /// Memory of each VM, MiB.
    pub ram_mib: u64,
    /// Disk of each VM, GiB (`None`: the image's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u64>,
    /// How many unclaimed VMs refill keeps ready.
    #[serde(default)]
    pub spares: u32,
    /// Most VMs the pool has at once, spares included.
    pub max_vms: u32,
    /// Most VMs one owner holds at once.
    #[serde(default = "one")]
    pub max_per_owner: u32,
    /// How ready spares are kept.
    #[serde(default)]
    pub warmth: Warmth,
    /// What release does.
    #[serde(default)]
    pub on_release: OnRelease,
    /// What the owner's logout does with their desktop.
    #[serde(default)]
    pub on_logout: OnLogout,
    /// Text the guest prints on its serial console when it is ready (spares of warmth
    /// `paused` are paused, and templates saved, once it appears).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_marker: Option<String>,
    /// Without a marker: seconds after start at which the guest counts as ready. With one:
    /// extra seconds to wait after it appeared.
    #[serde(default)]
    pub ready_delay_s: u32,
    /// Longest wait for readiness, seconds; a spare that is not ready by then is discarded.
    #[serde(default = "ready_timeout")]
    pub ready_timeout_s: u32,
    /// Accelerator of the pool's VMs (`None`: the store's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<Accel>,
    /// Size of the home volume each owner gets with their desktop, GiB (`None`: no homes).
    /// An owner's home is made at this size on their first acquire and attached to every
    /// desktop of theirs in any pool that has homes; it is never removed by the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_gib: Option<u64>,
    /// Suspend a handed-out desktop nobody has looked at for this long, seconds (`None`:
    /// never): no console client connected, no hand-out and no console ticket asked for in
    /// that time. Its owner's next acquire wakes it where it was. Checked at each refill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_suspend_after_s: Option<u32>,
    /// The longest a desktop stays with its owner in one go, seconds (`None`: no limit),
    /// counted from the acquire that handed it out or brought it back to run. At the end
    /// the pool ends the session by its `on_logout`: `keep` suspends the desktop (the next
    /// acquire wakes it and starts a new session), `refresh` releases it. The end is fixed
    /// when the session starts (`Vm::session_ends_at`), so a change applies from the next
    /// session. Checked at each refill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_s: Option<u32>,
}

/// Longest marker accepted.
const MARKER_MAX: usize = 256;
/// Most VMs a pool may hold.
pub const MAX_VMS_CEILING: u32 = 10_000;
/// Shortest idle time before a suspend (a second: tests; desktops use minutes).
pub const IDLE_MIN_S: u32 = 1;
/// Longest idle time before a suspend (30 days).
pub const IDLE_MAX_S: u32 = 30 * 24 * 3600;
/// Shortest session (a few seconds: tests; desktops use hours).
pub const SESSION_MIN_S: u32 = 1;
/// Longest session (a year).
pub const SESSION_MAX_S: u32 = 366 * 24 * 3600;

impl PoolSpec {
    /// A pool of `image_uuid` with 1 vCPU, 512 MiB, no spares, at most 10 VMs, one per owner,
    /// warmth `disk`, release `destroy`.
    pub fn new(name: impl Into<String>, image_uuid: Uuid) -> Self {
        PoolSpec {
            name: name.into(),
            image_uuid,
            vcpus: 1,
            ram_mib: 512,
            disk_gib: None,
            spares: 0,
            max_vms: 10,
            max_per_owner: 1,
            warmth: Warmth::Disk,
            on_release: OnRelease::Destroy,
            on_logout: OnLogout::Keep,
            ready_marker: None,
            ready_delay_s: 0,
            ready_timeout_s: ready_timeout(),
            accel: None,
            home_gib: None,
            idle_suspend_after_s: None,
            max_session_s: None,
        }
    }

    /// Check every field against the store's limits.
    pub(crate) fn check(&self, limits: &Limits) -> Result<()> {
        validate::name("pool name", &self.name)?;
        limits.vcpus(u64::from(self.vcpus))?;
        limits.ram_mib(self.ram_mib)?;
        if let Some(d) = self.disk_gib {
            limits.disk_gib(d)?;
        }
        if let Some(h) = self.home_gib {
            if h == 0 {
                return Err(Error::invalid(
                    "home_gib 0: give a size, or null for no homes",
                ));
            }
            limits
                .disk_gib(h)
                .map_err(|e| Error::invalid(format!("home_gib: {e}")))?;
        }
        if let Some(i) = self.idle_suspend_after_s {
            if !(IDLE_MIN_S..=IDLE_MAX_S).contains(&i) {
                return Err(Error::invalid(format!(
                    "idle_suspend_after_s {i} is out of range {IDLE_MIN_S}..={IDLE_MAX_S} (null: never)"
                )));
            }
        }
        if let Some(m) = self.max_session_s {
            if !(SESSION_MIN_S..=SESSION_MAX_S).contains(&m) {
                return Err(Error::invalid(format!(
                    "max_session_s {m} is out of range {SESSION_MIN_S}..={SESSION_MAX_S} (null: no limit)"
                )));
            }
        }
        if self.max_vms == 0 || self.max_vms > MAX_VMS_CEILING {
            return Err(Error::invalid(format!(
                "max_vms {} is out of range 1..={MAX_VMS_CEILING}",
                self.max_vms
            )));
        }
        if self.spares > self.max_vms {
            return Err(Error::invalid(format!(
                "spares {} is more than max_vms {}",
                self.spares, self.max_vms
            )));
        }
        if self.max_per_owner == 0 || self.max_per_owner > self.max_vms {
            return Err(Error::invalid(format!(
                "max_per_owner {} is out of range 1..={} (max_vms)",
                self.max_per_owner, self.max_vms
            )));
        }
        if let Some(m) = &self.ready_marker {
            if m.is_empty() || m.len() > MARKER_MAX || m.contains(['\n', '\r', '\0']) {
                return Err(Error::invalid(format!(
                    "ready_marker must be 1-{MARKER_MAX} bytes of one line"
                )));
            }
        }
        if self.ready_delay_s > 3600 || self.ready_timeout_s == 0 || self.ready_timeout_s > 3600 {
            return Err(Error::invalid(format!(
                "ready_delay_s {} / ready_timeout_s {} out of range (0..=3600 / 1..=3600)",
                self.ready_delay_s, self.ready_timeout_s
            )));
        }
        Ok(())
    }
}

/// How many VMs a pool has, and in which condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Spares at the pool's warmth: paused, or waiting for a template's state (for warmth
    /// `disk`: every spare).
    pub spares_ready: u32,
    /// Spares booting towards readiness (warmth `paused`).
    pub spares_warming: u32,
    /// Spares below the pool's warmth (a clone not started yet) or of an older image, flavor
    /// or template (refill replaces them).
    pub spares_cold: u32,
    /// VMs held by owners.
    pub owned: u32,
    /// Every VM of the pool, and those being made.
    pub total: u32,
    /// Clones destroyed, never handed out, because their customization failed.
    pub customization_failures: u64,
    /// When the last one failed, and why.
    pub last_customization_failure: Option<String>,
}

/// A pool's memory template, as `Pool` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    /// The template image.
    pub image_uuid: Uuid,
    /// When it was made.
    pub made_at: String,
    /// Its RAM file.
    pub memory: std::path::PathBuf,
}

/// A pool: its settings and its VMs' condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its settings.
    pub spec: PoolSpec,
    /// When it was created.
    pub created_at: String,
    /// When its settings last changed.
    pub updated_at: String,
    /// Its VMs.
    pub status: PoolStatus,
    /// Its memory template, once built (warmth `template`).
    pub template: Option<TemplateInfo>,
}

/// Changes to a pool (`update_pool`); `None` keeps a setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolUpdate {
    #[allow(missing_docs)]
    pub image_uuid: Option<Uuid>,
    #[allow(missing_docs)]
    pub vcpus: Option<u32>,
    #[allow(missing_docs)]
    pub ram_mib: Option<u64>,
    /// `Some(None)` goes back to the image's size.
    pub disk_gib: Option<Option<u64>>,
    #[allow(missing_docs)]
    pub spares: Option<u32>,
    #[allow(missing_docs)]
    pub max_vms: Option<u32>,
    #[allow(missing_docs)]
    pub max_per_owner: Option<u32>,
    #[allow(missing_docs)]
    pub warmth: Option<Warmth>,
    #[allow(missing_docs)]
    pub on_release: Option<OnRelease>,
    #[allow(missing_docs)]
    pub on_logout: Option<OnLogout>,
    /// `Some(None)` removes the marker.
    pub ready_marker: Option<Option<String>>,
    #[allow(missing_docs)]
    pub ready_delay_s: Option<u32>,
    #[allow(missing_docs)]
    pub ready_timeout_s: Option<u32>,
    /// `Some(None)` goes back to the store's accelerator.
    pub accel: Option<Option<Accel>>,
    /// `Some(None)`: no homes from now on (existing homes stay).
    pub home_gib: Option<Option<u64>>,
    /// `Some(None)`: never suspend idle desktops.
    pub idle_suspend_after_s: Option<Option<u32>>,
    /// `Some(None)`: no session limit from the next session on.
    pub max_session_s: Option<Option<u32>>,
}

impl PoolUpdate {
    /// `spec` with these changes.
    pub fn apply(&self, spec: &PoolSpec) -> PoolSpec {
        let mut s = spec.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = v.clone(); } )* };
        }
        set!(
            image_uuid,
            vcpus,
            ram_mib,
            disk_gib,
            spares,
            max_vms,
            max_per_owner,
            warmth,
            on_release,
            on_logout,
            ready_marker,
            ready_delay_s,
            ready_timeout_s,
            accel,
            home_gib,
            idle_suspend_after_s,
            max_session_s
        );
        s
    }
}

/// Options of `acquire`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    /// Also make a console ticket valid this long (so a portal needs one call).
    pub console_ttl: Option<Duration>,
    /// Hand out another VM even though the owner holds one (up to the pool's
    /// `max_per_owner`); without it an owner always gets back the VM they hold.
    pub another: bool,
    /// The person the desktop is for (login, name, keyboard, time zone...), applied in the
    /// guest before the hand-out completes, where the image has an `on_clone` program. An
    /// owner who comes back to the VM they hold gets it as it is.
    pub user: Option<crate::vm::user::GuestUser>,
}

/// Which way `acquire` got the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquirePath {
    /// The owner already held it (resumed or started if needed).
    Redirect,
    /// A spare was claimed.
    Spare,
    /// None was left: made on the spot.
    Created,
}

impl AcquirePath {
    /// `redirect`, `spare` or `created`.
    pub fn as_str(self) -> &'static str {
        match self {
            AcquirePath::Redirect => "redirect",
            AcquirePath::Spare => "spare",
            AcquirePath::Created => "created",
        }
    }
}

/// What `acquire` hands back.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquired {
    /// The VM, running (or booting).
    pub vm: Vm,
    /// Which way it was got.
    pub path: AcquirePath,
    /// How ready it was when it was claimed or found: `paused`, `waiting` (a template clone
    /// whose QEMU waited), `booting`, `disk` (not started), `running`, `stopped`.
    pub was: &'static str,
    /// Each step and how long it took, in milliseconds.
    pub steps: Vec<(&'static str, f64)>,
    /// From the call to the VM running, milliseconds.
    pub total_ms: f64,
    /// The console ticket, when asked for.
    pub console: Option<Console>,
}

/// Options of `refill`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefillOptions {
    /// Most spares made (cloned and started) at once.
    pub parallel: usize,
}

impl Default for RefillOptions {
    fn default() -> Self {
        RefillOptions { parallel: 8 }
    }
}

/// What `refill` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefillReport {
    /// Spares made.
    pub created: u32,
    /// Spares brought to the pool's warmth (started, booted and paused, or waiting).
    pub warmed: u32,
    /// Spares removed (above the target, or of an older image, flavor or template).
    pub removed: u32,
    /// Whether a memory template was built.
    pub template_built: bool,
    /// Handed-out desktops suspended for being idle (`idle_suspend_after_s`).
    pub suspended: u32,
    /// Handed-out desktops whose session reached the pool's `max_session_s` (suspended or
    /// released, by `on_logout`).
    pub sessions_ended: u32,
    /// Spares now.
    pub spares: u32,
    /// What went wrong with single spares (the rest went on).
    pub errors: Vec<String>,
}

/// A refill's progress, for `refill --watch` and the C callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefillProgress {
    /// Spares ready.
    pub ready: u32,
    /// The target.
    pub target: u32,
    /// Spares being made or warmed.
    pub working: u32,
}

impl Acquired {
    pub(crate) fn step(&mut self, name: &'static str, since: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        crate::probes::step(name, now - *since);
        self.steps
            .push((name, (now - *since).as_secs_f64() * 1000.0));
        *since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        let l = Limits::default();
        let img = Uuid::new_v4();
        PoolSpec::new("desk", img).check(&l).unwrap();
        let mut p = PoolSpec::new("desk", img);
        p.spares = 11;
        assert!(p.check(&l).is_err());
        p.spares = 1;
        p.max_per_owner = 0;
        assert!(p.check(&l).is_err());
        p.max_per_owner = 1;
        p.ready_marker = Some("a\nb".into());
        assert!(p.check(&l).is_err());
        assert!(PoolSpec::new("../x", img).check(&l).is_err());
    }

    #[test]
    fn updates_apply() {
        let p = PoolSpec::new("desk", Uuid::new_v4());
        let u = PoolUpdate {
            spares: Some(3),
            ready_marker: Some(Some("up".into())),
            ..Default::default()
        };
        let q = u.apply(&p);
        assert_eq!(q.spares, 3);
        assert_eq!(q.ready_marker.as_deref(), Some("up"));
        assert_eq!(q.name, "desk");
    }
}
