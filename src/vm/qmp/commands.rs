//! The QMP commands vmpool sends, one typed method each over the client's one `request`
//! (as Incus's `qmp/commands.go` does over its `Run`): arguments are Rust values, replies are
//! parsed into types, and no other module builds QMP JSON. Names and shapes follow QEMU 10's
//! `qapi/*.json` schema.

use super::{protocol, Deadline, Qmp, QmpError};
use serde_json::{json, Map, Value};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// How long one command may take (QEMU answers in milliseconds; this bounds a hung QEMU).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One drive's I/O counters as QEMU counts them (`query-blockstats`). QEMU may lie about
/// them; they are reported, never acted on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BlockStats {
    /// The drive's id (`disk0` for the VM's disk, `seed`, a home's device id).
    pub id: String,
    /// Bytes read by the guest.
    pub rd_bytes: u64,
    /// Bytes written by the guest.
    pub wr_bytes: u64,
    /// Read requests.
    pub rd_operations: u64,
    /// Write requests.
    pub wr_operations: u64,
}

/// At most this many drives are taken from one reply (a VM has three).
pub const BLOCKSTATS_MAX: usize = 16;

/// `query-blockstats`'s reply as [`BlockStats`]: a drive is named by its `-drive` id, else
/// the device's id in `/machine/peripheral/`, else its node's name; a name is kept only if it
/// is short and plain, and an entry without one or with a counter that is no count is an error.
pub(crate) fn parse_blockstats(v: &Value) -> Result<Vec<BlockStats>, QmpError> {
    let list = v
        .as_array()
        .ok_or_else(|| protocol("query-blockstats did not return a list"))?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let mut out = Vec::new();
    for e in list.iter().take(BLOCKSTATS_MAX) {
        let device = e.get("device").and_then(Value::as_str).unwrap_or("");
        let qdev = e
            .get("qdev")
            .and_then(Value::as_str)
            .and_then(|q| q.strip_prefix("/machine/peripheral/"))
            .map(|q| q.split('/').next().unwrap_or(""))
            .unwrap_or("");
        let node = e.get("node-name").and_then(Value::as_str).unwrap_or("");
        let id = [device, qdev, node]
            .into_iter()
            .find(|s| plain(s))
            .ok_or_else(|| protocol("query-blockstats: a drive without a plain name"))?;
        let stats = e
            .get("stats")
            .ok_or_else(|| protocol(format!("query-blockstats: drive {id} without stats")))?;
        let n = |k: &str| {
            stats.get(k).and_then(Value::as_u64).ok_or_else(|| {
                protocol(format!("query-blockstats: drive {id}: {k} is not a count"))
            })
        };
        out.push(BlockStats {
            id: id.to_owned(),
            rd_bytes: n("rd_bytes")?,
            wr_bytes: n("wr_bytes")?,
            rd_operations: n("rd_operations")?,
            wr_operations: n("wr_operations")?,
        });
    }
    Ok(out)
}

/// The guest's run state (`query-status`'s `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// The CPUs run.
    Running,
    /// Stopped by a command (`stop`, `-S`).
    Paused,
    /// Waiting for an incoming migration (`-incoming defer`).
    InMigrate,
    /// Any other state QEMU names (`postmigrate`, `shutdown`, `internal-error`, ...).
    Other(String),
}

/// Where a migration stands (`query-migrate`'s `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// Finished.
    Completed,
    /// Failed, with QEMU's reason.
    Failed(String),
    /// Cancelled.
    Cancelled,
    /// Not finished (`setup`, `active`, `device`, ...), or none started.
    InProgress(String),
}

/// A display protocol whose password a console ticket sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// SPICE.
    Spice,
    /// VNC.
    Vnc,
}

impl Display {
    fn as_str(self) -> &'static str {
        match self {
            Display::Spice => "spice",
            Display::Vnc => "vnc",
        }
    }
}

impl Qmp {
    /// Run `command` with `args` (an object) and the default timeout.
    fn run(&mut self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.request(command, args, &[], &Deadline::new(COMMAND_TIMEOUT))
    }

    /// `run` for commands that return nothing of interest.
    fn run_unit(&mut self, command: &str, args: Option<Value>) -> Result<(), QmpError> {
        self.run(command, args).map(drop)
    }

    /// Pause the CPUs.
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.run_unit("stop", None)
    }

    /// Continue the CPUs.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.run_unit("cont", None)
    }

    /// Press the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.run_unit("system_powerdown", None)
    }

    /// Reset the machine (the reset button).
    pub fn system_reset(&mut self) -> Result<(), QmpError> {
        self.run_unit("system_reset", None)
    }

    /// End QEMU (its reply may be lost: QEMU resets the connection as it goes).
    pub fn quit(&mut self) -> Result<(), QmpError> {
        self.run_unit("quit", None)
    }

    /// The guest's run state.
    pub fn query_status(&mut self) -> Result<RunStatus, QmpError> {
        let v = self.run("query-status", None)?;
        Ok(
            match v
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| protocol(format!("query-status without a status: {v}")))?
            {
                "running" => RunStatus::Running,
                "paused" => RunStatus::Paused,
                "inmigrate" => RunStatus::InMigrate,
                other => RunStatus::Other(other.to_owned()),
            },
        )
    }

    /// Set the console password of `display` (the previous one stops working).
    pub fn set_password(&mut self, display: Display, password: &str) -> Result<(), QmpError> {
        self.run_unit(
            "set_password",
            Some(json!({"protocol": display.as_str(), "password": password})),
        )
    }

    /// Make `display`'s password expire `after` from now.
    pub fn expire_password(&mut self, display: Display, after: Duration) -> Result<(), QmpError> {
        self.run_unit(
            "expire_password",
            Some(json!({"protocol": display.as_str(), "time": format!("+{}", after.as_secs())})),
        )
    }

    /// Save the screen as PNG into fd set `fdset` (see [`Qmp::add_fd`]): QEMU writes into
    /// the descriptor it was given, never to a path of its choosing.
    pub fn screendump_png(&mut self, fdset: u64) -> Result<(), QmpError> {
        self.run_unit(
            "screendump",
            Some(json!({"filename": format!("/dev/fdset/{fdset}"), "format": "png"})),
        )
    }

    /// Turn `x-ignore-shared` on or off: a migration then skips RAM that is a shared file
    /// (a memory template's), which the other side maps itself.
    pub fn set_ignore_shared(&mut self, on: bool) -> Result<(), QmpError> {
        self.run_unit(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [{"capability": "x-ignore-shared", "state": on}]})),
        )
    }

    /// Start migrating out to the file in fd set `fdset` (opened write-only by the caller).
    pub fn migrate_to_fdset(&mut self, fdset: u64) -> Result<(), QmpError> {
        self.run_unit(
            "migrate",
            Some(json!({"uri": format!("file:/dev/fdset/{fdset},offset=0")})),
        )
    }

    /// Start loading a migration from the file in fd set `fdset` (opened read-only by the
    /// caller) into a QEMU started with `-incoming defer`.
    pub fn migrate_incoming_from_fdset(&mut self, fdset: u64) -> Result<(), QmpError> {
        self.run_unit(
            "migrate-incoming",
            Some(json!({"uri": format!("file:/dev/fdset/{fdset},offset=0")})),
        )
    }

    /// Migrate at most `bytes_per_s` (QEMU's default is 128 MiB/s, meant for a network: a
    /// suspend to a local file should go as fast as the disk takes it).
    pub fn set_max_bandwidth(&mut self, bytes_per_s: u64) -> Result<(), QmpError> {
        self.run_unit(
            "migrate-set-parameters",
            Some(json!({ "max-bandwidth": bytes_per_s })),
        )
    }

    /// Cancel the outgoing migration in progress (a no-op when none is).
    pub fn migrate_cancel(&mut self) -> Result<(), QmpError> {
        self.run_unit("migrate_cancel", None)
    }

    /// Where the current migration stands.
    pub fn query_migrate(&mut self) -> Result<MigrationStatus, QmpError> {
        let m = self.run("query-migrate", None)?;
        Ok(match m.get("status").and_then(Value::as_str) {
            Some("completed") => MigrationStatus::Completed,
            Some("failed") => MigrationStatus::Failed(
                m.get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or("QEMU gave no reason")
                    .to_owned(),
            ),
            Some("cancelled") => MigrationStatus::Cancelled,
            Some(other) => MigrationStatus::InProgress(other.to_owned()),
            None => MigrationStatus::InProgress("none".into()),
        })
    }

    /// Pass an open file descriptor to QEMU under `name` (`getfd` with SCM_RIGHTS). QEMU
    /// keeps its own duplicate; a name already in use is replaced.
    pub fn getfd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        self.request(
            "getfd",
            Some(json!({ "fdname": name })),
            &[fd.as_raw_fd()],
            &Deadline::new(COMMAND_TIMEOUT),
        )
        .map(drop)
    }

    /// Put an open file descriptor into a new fd set (`add-fd` with SCM_RIGHTS); returns the
    /// set's id `N`, usable as the path `/dev/fdset/N` (whose access mode must match the
    /// descriptor's).
    pub fn add_fd(&mut self, fd: BorrowedFd<'_>) -> Result<u64, QmpError> {
        let reply = self.request(
            "add-fd",
            Some(Value::Object(Map::new())),
            &[fd.as_raw_fd()],
            &Deadline::new(COMMAND_TIMEOUT),
        )?;
        reply
            .get("fdset-id")
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol(format!("add-fd returned no fdset-id: {reply}")))
    }

    /// Close QEMU's descriptors of fd set `fdset`.
    pub fn remove_fd(&mut self, fdset: u64) -> Result<(), QmpError> {
        self.run_unit("remove-fd", Some(json!({ "fdset-id": fdset })))
    }

    /// Hand a connected client socket (passed before with [`Qmp::getfd`] as `fdname`) to the
    /// SPICE server, which then asks it for the ticket like any other client.
    pub fn add_spice_client(&mut self, fdname: &str) -> Result<(), QmpError> {
        self.run_unit(
            "add_client",
            Some(json!({"protocol": "spice", "fdname": fdname, "skipauth": false})),
        )
    }

    /// Add a user-mode network back end `id`; `restrict`: the guest reaches nothing
    /// (`restrict=on`).
    pub fn netdev_add_user(&mut self, id: &str, restrict: bool) -> Result<(), QmpError> {
        self.run_unit(
            "netdev_add",
            Some(json!({"type": "user", "id": id, "restrict": restrict})),
        )
    }

    /// Plug a virtio network card `id` with `mac` on back end `netdev` into PCIe port `bus`.
    pub fn device_add_virtio_net(
        &mut self,
        id: &str,
        netdev: &str,
        mac: &str,
        bus: &str,
    ) -> Result<(), QmpError> {
        self.run_unit(
            "device_add",
            Some(
                json!({"driver": "virtio-net-pci", "netdev": netdev, "mac": mac,
                         "bus": bus, "id": id}),
            ),
        )
    }

    /// Add a block node `node` of `format` (`raw`, `qcow2`) over fd set `fdset` (a regular
    /// file, or a block device when `device`). A qcow2 node gets no backing file: the only
    /// qcow2 disks plugged this way are home volumes, clones of a blank image, so what the
    /// backing would give is zeros, and QEMU (in its zone) could not open it by name anyway.
    pub fn blockdev_add_fdset(
        &mut self,
        node: &str,
        format: &str,
        fdset: u64,
        device: bool,
    ) -> Result<(), QmpError> {
        let file = json!({
            "driver": if device { "host_device" } else { "file" },
            "filename": format!("/dev/fdset/{fdset}"),
        });
        let mut args = json!({"node-name": node, "driver": format, "file": file,
                              "discard": "unmap"});
        if format == "qcow2" {
            args["backing"] = Value::Null;
        }
        self.run_unit("blockdev-add", Some(args))
    }

    /// Remove block node `node` (after its device is gone).
    pub fn blockdev_del(&mut self, node: &str) -> Result<(), QmpError> {
        self.run_unit("blockdev-del", Some(json!({ "node-name": node })))
    }

    /// Plug a virtio disk `id` over block node `node`, with guest-visible `serial`, into
    /// PCIe port `bus`.
    pub fn device_add_virtio_blk(
        &mut self,
        id: &str,
        node: &str,
        serial: &str,
        bus: &str,
    ) -> Result<(), QmpError> {
        self.run_unit(
            "device_add",
            Some(
                json!({"driver": "virtio-blk-pci", "drive": node, "serial": serial,
                        "bus": bus, "id": id}),
            ),
        )
    }

    /// Each drive's I/O counters (`query-blockstats`), answered within `timeout`.
    pub fn query_blockstats(&mut self, timeout: Duration) -> Result<Vec<BlockStats>, QmpError> {
        let v = self.request("query-blockstats", None, &[], &Deadline::new(timeout))?;
        parse_blockstats(&v)
    }

    /// Whether a device the user named `id` is plugged in (`/machine/peripheral/<id>`).
    pub fn has_device(&mut self, id: &str) -> Result<bool, QmpError> {
        let list = self.run("qom-list", Some(json!({"path": "/machine/peripheral"})))?;
        Ok(list.as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p.get("name").and_then(Value::as_str) == Some(id))
        }))
    }
}
