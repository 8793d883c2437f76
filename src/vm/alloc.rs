//! What each VM is given once and keeps: its uid (from the store's range) and, with TCP
//! SPICE, a free port while it runs.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::lock::{self, Mode};
use crate::store::catalog::records::VmRecord;
use crate::store::Store;
use crate::vm::config::SpiceAddr;

impl Store {
    /// The first uid of the store's range on this host, claimed once (`vm::uids`).
    pub(crate) fn uid_base(&self) -> Result<u32> {
        self.uid_base
            .get_or_try_init(|| {
                let id = self.id.clone();
                crate::vm::uids::claim(
                    &crate::vm::uids::registry_dir(),
                    &id,
                    self.catalog_dir(),
                    self.run.uid_base,
                    self.run.uid_count,
                    |r| {
                        crate::store::store_id(&r.catalog).is_ok_and(|s| s == r.store)
                            && r.catalog.join("store.json").is_file()
                    },
                )
            })
            .copied()
    }

    /// The VM's uid, chosen once (the lowest of the store's range no VM has) and kept in its
    /// record. A uid outside the store's range (a record from before ranges were claimed per
    /// host) is replaced.
    pub(crate) fn ensure_uid(&self, r: &mut VmRecord) -> Result<u32> {
        let base = self.uid_base()?;
        let range = base..base.saturating_add(self.run.uid_count);
        if let Some(u) = r.uid.filter(|u| range.contains(u)) {
            return Ok(u);
        }
        // One uid per VM: the lowest of the store's range that no VM has.
        fsutil::mkdirs(&self.catalog_dir().join("run"))?;
        let _l = lock::lock(
            &self.catalog_dir().join("run").join(".uids.lock"),
            Mode::Exclusive,
        )?;
        let used: std::collections::BTreeSet<u32> = self
            .catalog
            .vms(None)?
            .iter()
            .filter_map(|v| v.uid)
            .collect();
        let uid = range.clone().find(|u| !used.contains(u)).ok_or_else(|| {
            Error::Busy(format!(
                "all {} uids from {base} are taken; raise the store's uid_count",
                self.run.uid_count
            ))
        })?;
        r.uid = Some(uid);
        self.catalog.put_vm(r)?;
        Ok(uid)
    }

    /// A port of `ports` that no running VM of this store has and that can be bound now.
    pub(crate) fn free_port(&self, addr: std::net::IpAddr, ports: (u16, u16)) -> Result<u16> {
        let taken: Vec<u16> = self
            .catalog
            .vms(None)?
            .iter()
            .filter_map(|r| match r.run.as_ref().map(|x| &x.spice) {
                Some(SpiceAddr::Tcp { port, .. }) if self.live(r).state.is_active() => Some(*port),
                _ => None,
            })
            .collect();
        (ports.0..=ports.1)
            .filter(|p| !taken.contains(p))
            .find(|p| std::net::TcpListener::bind((addr, *p)).is_ok())
            .ok_or_else(|| {
                Error::Busy(format!(
                    "no free SPICE port in {}-{} on {addr}",
                    ports.0, ports.1
                ))
            })
    }
}
