//! Pools on the wire: the create payload, the update, acquire and refill options (strict, as
//! every input), and the pool, acquire result and refill report (outputs).

use super::{non_negative, ConsoleOut, VmOut};
use crate::error::{Error, Result};
use crate::pool::{
    AcquireOptions, Acquired, OnLogout, OnRelease, Pool, PoolSpec, PoolUpdate, RefillOptions,
    RefillReport, Warmth,
};
use crate::validate;
use crate::vm::Accel;
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// A key that may be given as `null` to clear a setting: absent is `None`, `null` is
/// `Some(None)`.
fn clearable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn u32_of(field: &str, v: i64) -> Result<u32> {
    let n = non_negative(field, v)?;
    u32::try_from(n).map_err(|_| Error::invalid(format!("{field} {n} is out of range")))
}

/// `vmpool_pool_create` input.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct PoolPayload {
    name: String,
    image_uuid: String,
    vcpus: i64,
    ram_mib: i64,
    disk_gib: Option<i64>,
    spares: Option<i64>,
    max_vms: i64,
    max_per_owner: Option<i64>,
    warmth: Option<Warmth>,
    on_release: Option<OnRelease>,
    on_logout: Option<OnLogout>,
    ready_marker: Option<String>,
    ready_delay_s: Option<i64>,
    ready_timeout_s: Option<i64>,
    accel: Option<Accel>,
    home_gib: Option<i64>,
    idle_suspend_after_s: Option<i64>,
    max_session_s: Option<i64>,
}

/// Parse a pool create payload (its values are checked by the store).
pub fn pool_spec(json: &str) -> Result<PoolSpec> {
    let p: PoolPayload =
        serde_json::from_str(json).map_err(|e| Error::InvalidJson(format!("pool payload: {e}")))?;
    let mut s = PoolSpec::new(p.name, validate::uuid("image_uuid", &p.image_uuid)?);
    s.vcpus = u32_of("vcpus", p.vcpus)?;
    s.ram_mib = non_negative("ram_mib", p.ram_mib)?;
    s.disk_gib = p
        .disk_gib
        .map(|d| non_negative("disk_gib", d))
        .transpose()?;
    s.max_vms = u32_of("max_vms", p.max_vms)?;
    if let Some(v) = p.spares {
        s.spares = u32_of("spares", v)?;
    }
    if let Some(v) = p.max_per_owner {
        s.max_per_owner = u32_of("max_per_owner", v)?;
    }
    if let Some(v) = p.warmth {
        s.warmth = v;
    }
    if let Some(v) = p.on_release {
        s.on_release = v;
    }
    if let Some(v) = p.on_logout {
        s.on_logout = v;
    }
    s.ready_marker = p.ready_marker;
    if let Some(v) = p.ready_delay_s {
        s.ready_delay_s = u32_of("ready_delay_s", v)?;
    }
    if let Some(v) = p.ready_timeout_s {
        s.ready_timeout_s = u32_of("ready_timeout_s", v)?;
    }
    s.accel = p.accel;
    s.home_gib = p
        .home_gib
        .map(|d| non_negative("home_gib", d))
        .transpose()?;
    s.idle_suspend_after_s = p
        .idle_suspend_after_s
        .map(|v| u32_of("idle_suspend_after_s", v))
        .transpose()?;
    s.max_session_s = p
        .max_session_s
        .map(|v| u32_of("max_session_s", v))
        .transpose()?;
    Ok(s)
}

/// `vmpool_pool_update` input: any of the create keys except `name`; `disk_gib`,
/// `ready_marker` and `accel` may be `null` (back to the default).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct PoolChanges {
    image_uuid: Option<String>,
    vcpus: Option<i64>,
    ram_mib: Option<i64>,
    #[serde(default, deserialize_with = "clearable")]
    disk_gib: Option<Option<i64>>,
    spares: Option<i64>,
    max_vms: Option<i64>,
    max_per_owner: Option<i64>,
    warmth: Option<Warmth>,
    on_release: Option<OnRelease>,
    on_logout: Option<OnLogout>,
    #[serde(default, deserialize_with = "clearable")]
    ready_marker: Option<Option<String>>,
    ready_delay_s: Option<i64>,
    ready_timeout_s: Option<i64>,
    #[serde(default, deserialize_with = "clearable")]
    accel: Option<Option<Accel>>,
    #[serde(default, deserialize_with = "clearable")]
    home_gib: Option<Option<i64>>,
    #[serde(default, deserialize_with = "clearable")]
    idle_suspend_after_s: Option<Option<i64>>,
    #[serde(default, deserialize_with = "clearable")]
    max_session_s: Option<Option<i64>>,
}

/// Parse a pool update.
pub fn pool_update(json: &str) -> Result<PoolUpdate> {
    let c: PoolChanges =
        serde_json::from_str(json).map_err(|e| Error::InvalidJson(format!("pool update: {e}")))?;
    let u32s = |f: &str, v: Option<i64>| v.map(|v| u32_of(f, v)).transpose();
    Ok(PoolUpdate {
        image_uuid: c
            .image_uuid
            .map(|u| validate::uuid("image_uuid", &u))
            .transpose()?,
        vcpus: u32s("vcpus", c.vcpus)?,
        ram_mib: c.ram_mib.map(|v| non_negative("ram_mib", v)).transpose()?,
        disk_gib: c
            .disk_gib
            .map(|d| d.map(|d| non_negative("disk_gib", d)).transpose())
            .transpose()?,
        spares: u32s("spares", c.spares)?,
        max_vms: u32s("max_vms", c.max_vms)?,
        max_per_owner: u32s("max_per_owner", c.max_per_owner)?,
        warmth: c.warmth,
        on_release: c.on_release,
        on_logout: c.on_logout,
        ready_marker: c.ready_marker,
        ready_delay_s: u32s("ready_delay_s", c.ready_delay_s)?,
        ready_timeout_s: u32s("ready_timeout_s", c.ready_timeout_s)?,
        accel: c.accel,
        home_gib: c
            .home_gib
            .map(|d| d.map(|d| non_negative("home_gib", d)).transpose())
            .transpose()?,
        idle_suspend_after_s: c
            .idle_suspend_after_s
            .map(|v| v.map(|v| u32_of("idle_suspend_after_s", v)).transpose())
            .transpose()?,
        max_session_s: c
            .max_session_s
            .map(|v| v.map(|v| u32_of("max_session_s", v)).transpose())
            .transpose()?,
    })
}

/// `vmpool_pool_acquire` options: `{"console_ttl": 600, "another": false, "user": {...}}`
/// (all optional).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct AcquireIn {
    console_ttl: Option<i64>,
    another: Option<bool>,
    user: Option<crate::vm::user::GuestUser>,
}

/// Parse acquire options (NULL or empty: defaults).
pub fn acquire_options(json: Option<&str>) -> Result<AcquireOptions> {
    let a: AcquireIn = match json.map(str::trim) {
        None | Some("") => AcquireIn::default(),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::InvalidJson(format!("acquire options: {e}")))?,
    };
    Ok(AcquireOptions {
        console_ttl: a
            .console_ttl
            .map(|t| non_negative("console_ttl", t).map(std::time::Duration::from_secs))
            .transpose()?,
        another: a.another.unwrap_or(false),
        user: a.user,
    })
}

/// `vmpool_pool_refill` options: `{"parallel": 8}` (optional).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RefillIn {
    parallel: Option<i64>,
}

/// Parse refill options (NULL or empty: defaults).
pub fn refill_options(json: Option<&str>) -> Result<RefillOptions> {
    let r: RefillIn = match json.map(str::trim) {
        None | Some("") => RefillIn::default(),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::InvalidJson(format!("refill options: {e}")))?,
    };
    let mut o = RefillOptions::default();
    if let Some(p) = r.parallel {
        let p = non_negative("parallel", p)?;
        if !(1..=64).contains(&p) {
            return Err(Error::invalid(format!(
                "parallel {p} is out of range 1..=64"
            )));
        }
        o.parallel = p as usize;
    }
    Ok(o)
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
struct StatusOut<'a> {
    spares_ready: u32,
    spares_warming: u32,
    spares_cold: u32,
    owned: u32,
    total: u32,
    customization_failures: u64,
    last_customization_failure: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
struct TemplateOut<'a> {
    image_uuid: &'a uuid::Uuid,
    made_at: &'a str,
    memory: &'a Path,
}

/// A pool as JSON (`vmpool_pool_get`, list elements).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PoolOut<'a> {
    name: &'a str,
    image_uuid: &'a uuid::Uuid,
    vcpus: u32,
    ram_mib: u64,
    disk_gib: Option<u64>,
    spares: u32,
    max_vms: u32,
    max_per_owner: u32,
    warmth: Warmth,
    on_release: OnRelease,
    on_logout: OnLogout,
    ready_marker: Option<&'a str>,
    ready_delay_s: u32,
    ready_timeout_s: u32,
    accel: Option<Accel>,
    home_gib: Option<u64>,
    idle_suspend_after_s: Option<u32>,
    max_session_s: Option<u32>,
    created_at: &'a str,
    updated_at: &'a str,
    status: StatusOut<'a>,
    template: Option<TemplateOut<'a>>,
}

impl<'a> From<&'a Pool> for PoolOut<'a> {
    fn from(p: &'a Pool) -> Self {
        let s = &p.spec;
        PoolOut {
            name: &s.name,
            image_uuid: &s.image_uuid,
            vcpus: s.vcpus,
            ram_mib: s.ram_mib,
            disk_gib: s.disk_gib,
            spares: s.spares,
            max_vms: s.max_vms,
            max_per_owner: s.max_per_owner,
            warmth: s.warmth,
            on_release: s.on_release,
            on_logout: s.on_logout,
            ready_marker: s.ready_marker.as_deref(),
            ready_delay_s: s.ready_delay_s,
            ready_timeout_s: s.ready_timeout_s,
            accel: s.accel,
            home_gib: s.home_gib,
            idle_suspend_after_s: s.idle_suspend_after_s,
            max_session_s: s.max_session_s,
            created_at: &p.created_at,
            updated_at: &p.updated_at,
            status: StatusOut {
                spares_ready: p.status.spares_ready,
                spares_warming: p.status.spares_warming,
                spares_cold: p.status.spares_cold,
                owned: p.status.owned,
                total: p.status.total,
                customization_failures: p.status.customization_failures,
                last_customization_failure: p.status.last_customization_failure.as_deref(),
            },
            template: p.template.as_ref().map(|t| TemplateOut {
                image_uuid: &t.image_uuid,
                made_at: &t.made_at,
                memory: &t.memory,
            }),
        }
    }
}

/// A list of pools as JSON.
pub fn pools(list: &[Pool]) -> Result<String> {
    super::to_string(&list.iter().map(PoolOut::from).collect::<Vec<_>>())
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
struct StepOut {
    step: &'static str,
    ms: f64,
}

/// What `vmpool_pool_logout` returns.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LogoutOut<'a> {
    kept: &'a [uuid::Uuid],
    refreshed: &'a [uuid::Uuid],
}

impl<'a> From<&'a crate::pool::LoggedOut> for LogoutOut<'a> {
    fn from(r: &'a crate::pool::LoggedOut) -> Self {
        LogoutOut {
            kept: &r.kept,
            refreshed: &r.refreshed,
        }
    }
}

/// What `vmpool_pool_acquire` returns.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AcquiredOut<'a> {
    vm: VmOut<'a>,
    path: &'static str,
    was: &'static str,
    steps: Vec<StepOut>,
    total_ms: f64,
    console: Option<ConsoleOut<'a>>,
}

/// Milliseconds to the microsecond: enough for people, short for JSON.
fn ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl<'a> From<&'a Acquired> for AcquiredOut<'a> {
    fn from(a: &'a Acquired) -> Self {
        AcquiredOut {
            vm: VmOut::from(&a.vm),
            path: a.path.as_str(),
            was: a.was,
            steps: a
                .steps
                .iter()
                .map(|(step, t)| StepOut { step, ms: ms(*t) })
                .collect(),
            total_ms: ms(a.total_ms),
            console: a.console.as_ref().map(ConsoleOut::from),
        }
    }
}

/// What `vmpool_pool_refill` returns.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RefillOut<'a> {
    created: u32,
    warmed: u32,
    removed: u32,
    template_built: bool,
    suspended: u32,
    sessions_ended: u32,
    spares: u32,
    errors: &'a [String],
}

impl<'a> From<&'a RefillReport> for RefillOut<'a> {
    fn from(r: &'a RefillReport) -> Self {
        RefillOut {
            created: r.created,
            warmed: r.warmed,
            removed: r.removed,
            template_built: r.template_built,
            suspended: r.suspended,
            sessions_ended: r.sessions_ended,
            spares: r.spares,
            errors: &r.errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab";

    #[test]
    fn payloads_and_changes() {
        let p = pool_spec(&format!(
            r#"{{"name":"desk","image_uuid":"{IMG}","vcpus":1,"ram_mib":256,"max_vms":9,"warmth":"template"}}"#
        ))
        .unwrap();
        assert_eq!(
            (p.max_vms, p.warmth, p.max_per_owner),
            (9, Warmth::Template, 1)
        );
        let e = pool_spec(&format!(
            r#"{{"name":"d","image_uuid":"{IMG}","vcpus":1,"ram_mib":256,"max_vms":9,"size":1}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("size"), "{e}");
        let e = pool_spec(&format!(
            r#"{{"name":"d","image_uuid":"{IMG}","vcpus":1,"ram_mib":256,"max_vms":-1}}"#
        ))
        .unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let u = pool_update(r#"{"spares":3,"ready_marker":null}"#).unwrap();
        assert_eq!(u.spares, Some(3));
        assert_eq!(u.ready_marker, Some(None));
        assert_eq!(u.accel, None);
        assert!(pool_update(r#"{"name":"x"}"#).is_err());
        assert!(
            acquire_options(Some(r#"{"console_ttl":60,"another":true}"#))
                .unwrap()
                .another
        );
        assert!(refill_options(Some(r#"{"parallel":0}"#)).is_err());
    }
}
