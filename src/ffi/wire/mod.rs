//! The JSON wire format of the C ABI: what callers send (strict: unknown keys are refused by
//! name, values of the wrong type are refused) and what they get back. `vmpoolctl --json`
//! prints these same serialisations, byte for byte.
//!
//! These types are the only place JSON meets the typed API: inputs become
//! [`VmSpec`](crate::VmSpec) and [`ImportRequest`](crate::ImportRequest), outputs are made
//! from [`Image`](crate::Image), [`Vm`](crate::Vm), [`StoreInfo`](crate::StoreInfo) and
//! [`Recovery`](crate::Recovery). The field order of the outputs is part of the format (callers diff it).

use crate::driver::{Detail, DiskKind};
use crate::error::{Error, Result};
use crate::image::{DiskFormat, Image, ImportRequest, Tags};
use crate::store::{Recovery, StartOptions, StoreInfo, VmStatus, VmUpdate};
use crate::validate;
use crate::vm::config::SpiceAddr;
use crate::vm::console::Console;
use crate::vm::runtime::RunInfo;
use crate::vm::LastExit;
use crate::vm::{Accel, Firmware, Vm, VmSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod homes;
mod pools;
pub use homes::*;
pub use pools::*;
#[cfg(feature = "schema")]
mod schema;
#[cfg(feature = "schema")]
pub use schema::schema;

/// Longest VM payload accepted, in bytes.
pub const PAYLOAD_MAX: usize = 64 * 1024;

/// `vmpool_vm_create` input. Integers are signed so that a negative count is reported as out
/// of range rather than as a JSON type error.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct VmPayload {
    uuid: Option<String>,
    alias: String,
    owner: String,
    image_uuid: String,
    vcpus: i64,
    ram_mib: i64,
    disk_gib: Option<i64>,
    firmware: Option<Firmware>,
    accel: Option<Accel>,
    cpu_cap_pct: Option<i64>,
    memory_cap_mib: Option<i64>,
    io: Option<crate::zone::IoLimits>,
    prealloc: Option<bool>,
    user: Option<crate::vm::user::GuestUser>,
}

pub(crate) fn non_negative(field: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::invalid(format!("{field} {v} is negative")))
}

/// Parse a VM create payload into a spec (its values are checked by the store).
pub fn vm_spec(json: &str) -> Result<VmSpec> {
    if json.len() > PAYLOAD_MAX {
        return Err(Error::StringTooLong {
            what: "VM payload",
            max: PAYLOAD_MAX,
        });
    }
    let p: VmPayload =
        serde_json::from_str(json).map_err(|e| Error::InvalidJson(format!("VM payload: {e}")))?;
    let vcpus = non_negative("vcpus", p.vcpus)?;
    Ok(VmSpec {
        uuid: p.uuid.map(|u| validate::uuid("uuid", &u)).transpose()?,
        alias: p.alias,
        owner: p.owner,
        image_uuid: validate::uuid("image_uuid", &p.image_uuid)?,
        vcpus: u32::try_from(vcpus)
            .map_err(|_| Error::invalid(format!("vcpus {vcpus} is out of range")))?,
        ram_mib: non_negative("ram_mib", p.ram_mib)?,
        disk_gib: p
            .disk_gib
            .map(|d| non_negative("disk_gib", d))
            .transpose()?,
        firmware: p.firmware.unwrap_or_default(),
        accel: p.accel,
        caps: crate::vm::Caps {
            cpu_pct: p
                .cpu_cap_pct
                .map(|c| {
                    non_negative("cpu_cap_pct", c).and_then(|c| {
                        u32::try_from(c)
                            .map_err(|_| Error::invalid(format!("cpu_cap_pct {c} is out of range")))
                    })
                })
                .transpose()?,
            memory_mib: p
                .memory_cap_mib
                .map(|m| non_negative("memory_cap_mib", m))
                .transpose()?,
            io: p.io,
            prealloc: p.prealloc.unwrap_or(false),
        },
        user: p.user,
    })
}

/// `manifest_json` of `vmpool_image_import`: every field optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct ImportManifest {
    uuid: Option<String>,
    name: Option<String>,
    version: Option<String>,
    os: Option<String>,
    sha256: Option<String>,
    format: Option<DiskFormat>,
    size_bytes: Option<u64>,
    tags: Option<Tags>,
}

/// Parse an import manifest (NULL or empty: all defaults).
pub fn import_request(json: Option<&str>) -> Result<ImportRequest> {
    let m: ImportManifest = match json.map(str::trim) {
        None | Some("") => ImportManifest::default(),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::InvalidJson(format!("image manifest: {e}")))?,
    };
    Ok(ImportRequest {
        uuid: m.uuid.map(|u| validate::uuid("uuid", &u)).transpose()?,
        name: m.name,
        version: m.version,
        os: m.os,
        sha256: m.sha256,
        format: m.format,
        size_bytes: m.size_bytes,
        tags: m.tags.unwrap_or_default(),
    })
}

/// An image as JSON (`vmpool_image_get`, `vmpool_image_import`, list elements).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ImageOut<'a> {
    uuid: &'a uuid::Uuid,
    name: &'a str,
    version: &'a str,
    os: &'a str,
    format: DiskFormat,
    size_bytes: u64,
    sha256: &'a str,
    created_at: &'a str,
    tags: &'a Tags,
    disk_format: DiskFormat,
    disk: &'a str,
}

impl<'a> From<&'a Image> for ImageOut<'a> {
    fn from(m: &'a Image) -> Self {
        ImageOut {
            uuid: &m.uuid,
            name: &m.name,
            version: &m.version,
            os: &m.os,
            format: m.format,
            size_bytes: m.size_bytes,
            sha256: &m.sha256,
            created_at: &m.created_at,
            tags: &m.tags,
            disk_format: m.disk_format,
            disk: &m.disk,
        }
    }
}

/// A VM as JSON (`vmpool_vm_get`, `vmpool_vm_create`, list elements).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VmOut<'a> {
    uuid: &'a uuid::Uuid,
    alias: &'a str,
    owner: &'a str,
    image_uuid: &'a uuid::Uuid,
    vcpus: u32,
    ram_mib: u64,
    disk_gib: u64,
    created_at: &'a str,
    state: &'static str,
    disk_path: &'a str,
    disk_format: DiskFormat,
    disk_size_bytes: u64,
    clone_method: &'a str,
    firmware: Firmware,
    accel: Option<Accel>,
    mac: &'a str,
    vmgenid: &'a uuid::Uuid,
    last_exit: Option<&'a LastExit>,
    caps: &'a crate::vm::Caps,
    pool: Option<&'a str>,
    user: Option<UserOut<'a>>,
    suspended: Option<SuspendedOut<'a>>,
    autoboot: bool,
    session_ends_at: Option<&'a str>,
}

/// While a VM is `suspended`: when and why, and what its saved state takes on disk.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SuspendedOut<'a> {
    at: &'a str,
    reason: &'a str,
    bytes: u64,
}

/// Who a VM is for, as JSON: what the guest shows of them (never their password hash or keys).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserOut<'a> {
    login: &'a str,
    full_name: Option<&'a str>,
    locale: Option<&'a str>,
    keyboard: Option<&'a str>,
    timezone: Option<&'a str>,
}

impl<'a> From<&'a Vm> for VmOut<'a> {
    fn from(v: &'a Vm) -> Self {
        VmOut {
            uuid: &v.uuid,
            alias: &v.alias,
            owner: &v.owner,
            image_uuid: &v.image_uuid,
            vcpus: v.vcpus,
            ram_mib: v.ram_mib,
            disk_gib: v.disk_gib,
            created_at: &v.created_at,
            state: v.state.as_str(),
            disk_path: &v.disk_path,
            disk_format: v.disk_format,
            disk_size_bytes: v.disk_size_bytes,
            clone_method: &v.clone_method,
            firmware: v.firmware,
            accel: v.accel,
            mac: &v.mac,
            vmgenid: &v.vmgenid,
            last_exit: v.last_exit.as_ref(),
            caps: &v.caps,
            pool: v.pool.as_deref(),
            user: v.user.as_ref().map(|u| UserOut {
                login: &u.login,
                full_name: u.full_name.as_deref(),
                locale: u.locale.as_deref(),
                keyboard: u.keyboard.as_deref(),
                timezone: u.timezone.as_deref(),
            }),
            suspended: v.suspended.as_ref().map(|x| SuspendedOut {
                at: &x.at,
                reason: &x.reason,
                bytes: x.bytes,
            }),
            autoboot: v.autoboot,
            session_ends_at: v.session_ends_at.as_deref(),
        }
    }
}

/// A VM's status as JSON (`vmpool_vm_status`): the VM (live state) and its current run.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VmStatusOut<'a> {
    vm: VmOut<'a>,
    run: Option<&'a RunInfo>,
    uptime_s: Option<u64>,
    serial_log: &'a Path,
}

impl<'a> From<&'a VmStatus> for VmStatusOut<'a> {
    fn from(s: &'a VmStatus) -> Self {
        VmStatusOut {
            vm: VmOut::from(&s.vm),
            run: s.run.as_ref(),
            uptime_s: s.uptime_s,
            serial_log: &s.serial_log,
        }
    }
}

/// A console ticket as JSON (`vmpool_vm_console`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ConsoleOut<'a> {
    /// `unix` or `tcp`.
    kind: &'static str,
    /// The socket path, for `unix`.
    path: Option<&'a Path>,
    /// Host and port, for `tcp`.
    host: Option<String>,
    port: Option<u16>,
    uri: &'a str,
    password: &'a str,
    expires_at: &'a str,
    expires_at_unix: u64,
    vv: &'a str,
}

impl<'a> From<&'a Console> for ConsoleOut<'a> {
    fn from(c: &'a Console) -> Self {
        let (kind, path, host, port) = match &c.addr {
            SpiceAddr::Unix { path } => ("unix", Some(path.as_path()), None, None),
            SpiceAddr::Tcp { host, port } => ("tcp", None, Some(host.to_string()), Some(*port)),
        };
        ConsoleOut {
            kind,
            path,
            host,
            port,
            uri: &c.uri,
            password: &c.password,
            expires_at: &c.expires_at,
            expires_at_unix: c.expires_at_unix,
            vv: &c.vv,
        }
    }
}

/// `vmpool_vm_start` options: `{"accel": "tcg"}` (all optional; unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct StartIn {
    accel: Option<Accel>,
}

/// Parse start options (NULL or empty: defaults).
pub fn start_options(json: Option<&str>) -> Result<StartOptions> {
    let s: StartIn = match json.map(str::trim) {
        None | Some("") => StartIn::default(),
        Some(j) => serde_json::from_str(j)
            .map_err(|e| Error::InvalidJson(format!("start options: {e}")))?,
    };
    Ok(StartOptions { accel: s.accel })
}

/// `vmpool_vm_update` input: `{"vcpus": 4, "ram_mib": 4096, "disk_gib": 40}` (any of them).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct UpdateIn {
    vcpus: Option<i64>,
    ram_mib: Option<i64>,
    disk_gib: Option<i64>,
}

/// Parse an update.
pub fn vm_update(json: &str) -> Result<VmUpdate> {
    let u: UpdateIn =
        serde_json::from_str(json).map_err(|e| Error::InvalidJson(format!("VM update: {e}")))?;
    let vcpus = u.vcpus.map(|v| non_negative("vcpus", v)).transpose()?;
    Ok(VmUpdate {
        vcpus: vcpus
            .map(|v| {
                u32::try_from(v).map_err(|_| Error::invalid(format!("vcpus {v} is out of range")))
            })
            .transpose()?,
        ram_mib: u.ram_mib.map(|v| non_negative("ram_mib", v)).transpose()?,
        disk_gib: u
            .disk_gib
            .map(|v| non_negative("disk_gib", v))
            .transpose()?,
    })
}

/// What a recovery did, as JSON (`vmpool_store_recover`, `last_recovery` of the info).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RecoveryOut<'a> {
    cleaned: &'a [String],
    errors: &'a [String],
    kept: &'a [String],
}

impl<'a> From<&'a Recovery> for RecoveryOut<'a> {
    fn from(r: &'a Recovery) -> Self {
        RecoveryOut {
            cleaned: &r.cleaned,
            errors: &r.errors,
            kept: &r.kept,
        }
    }
}

/// What a host start or stop did, as JSON (`vmpool_host_start`, `vmpool_host_stop`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HostOut<'a> {
    recovered: &'a [String],
    started: &'a [uuid::Uuid],
    woken: &'a [uuid::Uuid],
    asleep: &'a [uuid::Uuid],
    refilled: &'a [String],
    suspended: &'a [uuid::Uuid],
    ended: &'a [uuid::Uuid],
    errors: &'a [String],
}

impl<'a> From<&'a crate::store::HostReport> for HostOut<'a> {
    fn from(r: &'a crate::store::HostReport) -> Self {
        HostOut {
            recovered: &r.recovered,
            started: &r.started,
            woken: &r.woken,
            asleep: &r.asleep,
            refilled: &r.refilled,
            suspended: &r.suspended,
            ended: &r.ended,
            errors: &r.errors,
        }
    }
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
struct LimitsOut {
    max_vcpus: u32,
    min_ram_mib: u64,
    max_ram_mib: u64,
    max_disk_gib: u64,
    max_image_gib: u64,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
struct CapabilitiesOut {
    clone_methods: Vec<&'static str>,
    keeps_qcow2: bool,
    thick: bool,
    disk_kind: &'static str,
    clone_syncs_catalog: bool,
    options: serde_json::Map<String, serde_json::Value>,
}

/// A store's details as JSON (`vmpool_store_info`).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StoreInfoOut<'a> {
    uri: &'a str,
    driver: &'static str,
    catalog: &'a Path,
    details: serde_json::Map<String, serde_json::Value>,
    limits: LimitsOut,
    last_recovery: RecoveryOut<'a>,
    version: &'static str,
    capabilities: CapabilitiesOut,
}

fn detail(d: &Detail) -> serde_json::Value {
    match d {
        Detail::Path(p) => p.display().to_string().into(),
        Detail::Text(t) => t.clone().into(),
        Detail::Bool(b) => (*b).into(),
        Detail::Unknown => serde_json::Value::Null,
    }
}

impl<'a> From<&'a StoreInfo> for StoreInfoOut<'a> {
    fn from(i: &'a StoreInfo) -> Self {
        let c = &i.capabilities;
        StoreInfoOut {
            uri: &i.uri,
            driver: i.driver,
            catalog: &i.catalog,
            details: i
                .details
                .iter()
                .map(|(k, v)| ((*k).to_owned(), detail(v)))
                .collect(),
            limits: LimitsOut {
                max_vcpus: i.limits.max_vcpus,
                min_ram_mib: i.limits.min_ram_mib,
                max_ram_mib: i.limits.max_ram_mib,
                max_disk_gib: i.limits.max_disk_gib,
                max_image_gib: i.limits.max_image_gib,
            },
            last_recovery: RecoveryOut::from(&i.last_recovery),
            version: i.version,
            capabilities: CapabilitiesOut {
                clone_methods: c.clone_methods.iter().map(|m| m.as_str()).collect(),
                keeps_qcow2: c.keeps_qcow2,
                thick: c.thick,
                disk_kind: match c.disk_kind {
                    DiskKind::File => "file",
                    DiskKind::BlockDevice => "block-device",
                },
                clone_syncs_catalog: c.clone_syncs_catalog,
                options: c
                    .options
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                    .collect(),
            },
        }
    }
}

/// Serialise a wire value compactly: what every `*_out` string and `vmpoolctl --json` is.
pub fn to_string<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::json("a result", e))
}

/// A list of images as JSON.
pub fn images(list: &[Image]) -> Result<String> {
    to_string(&list.iter().map(ImageOut::from).collect::<Vec<_>>())
}

/// A list of VMs as JSON.
pub fn vms(list: &[Vm]) -> Result<String> {
    to_string(&list.iter().map(VmOut::from).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab";

    #[test]
    fn payloads() {
        let ok = format!(
            r#"{{"alias":"a","owner":"o","image_uuid":"{IMG}","vcpus":2,"ram_mib":2048,"disk_gib":20}}"#
        );
        let s = vm_spec(&ok).unwrap();
        assert_eq!((s.vcpus, s.ram_mib, s.disk_gib), (2, 2048, Some(20)));
        let e = vm_spec(&ok.replace("\"vcpus\"", "\"cpus\"")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_JSON);
        assert!(e.to_string().contains("cpus"), "{e}");
        let e = vm_spec(&ok.replace(":2,", ":-1,")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let e = vm_spec(&ok.replace(":2,", ":99999999999,")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let e = vm_spec(&ok.replace(IMG, "nope")).unwrap_err();
        assert!(e.to_string().contains("image_uuid"), "{e}");
    }

    #[test]
    fn manifests() {
        assert_eq!(import_request(None).unwrap(), ImportRequest::default());
        assert_eq!(import_request(Some(" ")).unwrap(), ImportRequest::default());
        let e = import_request(Some(r#"{"name":"x","colour":"red"}"#)).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(import_request(Some("{")).is_err());
        let r = import_request(Some(r#"{"name":"d","tags":{"a":1}}"#)).unwrap();
        assert_eq!(r.name.as_deref(), Some("d"));
        assert_eq!(r.tags["a"], 1);
    }
}
