//! Each clone of a memory template its own identity. A restored clone starts as a copy of
//! the template's running guest: its hostname, `/etc/machine-id`, SSH host keys and user-space
//! random state are the template's, the same for every tenant of the pool (only the kernel's
//! RNG reseeds, from the fresh vmgenid). Before a hand-out completes, the guest program the
//! image names in its `on_clone` tag (a recipe installs `/usr/lib/vmpool/on-clone`) runs
//! through the guest agent with a JSON document of the new identity on its standard input;
//! the hand-out waits for it to report done. A clone whose customization fails is destroyed,
//! never handed out. Firecracker's snapshot documentation leaves this to the caller; Horizon
//! calls its step ClonePrep.

use crate::error::{Error, Result};
use crate::store::catalog::records::VmRecord;
use crate::store::Store;
use crate::vm::user::GuestUser;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// The image tag naming the guest program that applies an identity.
pub const ON_CLONE_TAG: &str = "on_clone";

/// How long the customization may take, the agent's start included (a restored guest's
/// agent answers at once; under TCG a program run costs seconds).
pub const IDENTITY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the guest program gets on its standard input (and a cold boot finds in its NoCloud
/// seed as `vmpool.json`, see [`crate::vm::seed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The VM's UUID: the guest applies an identity once per instance (it records the last
    /// one it applied), so a VM's later boots keep their SSH host keys.
    pub instance_id: Uuid,
    /// The VM's hostname (from its alias).
    pub hostname: String,
    /// A new `/etc/machine-id`: 32 lowercase hex digits. None at a cold boot, which makes its
    /// own (the images ship an empty one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// 32 random bytes (hex) for the guest to mix into its user-space RNG.
    pub seed: String,
    /// The person the VM is for, when the caller named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::vm::user::GuestUser>,
}

/// A hostname from a VM's alias: lowercase letters, digits and inner hyphens, at most 63
/// characters (RFC 1123); `vm` when nothing is left.
pub fn hostname_from(alias: &str) -> String {
    let mut h: String = alias
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    h = h.trim_matches('-').to_owned();
    if h.is_empty() {
        "vm".into()
    } else {
        h
    }
}

impl Identity {
    /// A fresh identity for a restored clone `vm` called `alias` (random values from the
    /// OS's CSPRNG): it replaces all the template's.
    pub fn new(vm: Uuid, alias: &str) -> Identity {
        Identity {
            machine_id: Some(Uuid::new_v4().simple().to_string()),
            ..Identity::at_boot(vm, alias)
        }
    }

    /// The identity a cold boot of `vm` finds in its seed: the machine id is its first
    /// boot's own.
    pub fn at_boot(vm: Uuid, alias: &str) -> Identity {
        Identity {
            instance_id: vm,
            hostname: hostname_from(alias),
            machine_id: None,
            seed: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            user: None,
        }
    }
}

impl Store {
    /// The guest program that applies an identity in `rec`'s image (its `on_clone` tag).
    pub(crate) fn identity_program(&self, rec: &VmRecord) -> Option<String> {
        self.image_tag(rec.image_uuid, ON_CLONE_TAG)
    }

    /// Record the person VM `vm` is for (its next boots' seeds and identity steps carry it).
    pub(crate) fn set_user(&self, vm: Uuid, user: &GuestUser) -> Result<()> {
        let run = self.run_dir(&vm);
        let _lc = self.lifecycle_lock(&run)?;
        let mut rec = self.record(&vm)?;
        rec.user = Some(user.clone());
        self.catalog.put_vm(&rec)
    }

    /// Give VM `vm` its identity through `program` in the guest, and record that it has one:
    /// `fresh` for a restored clone, whose every value is the template's (a new machine id
    /// too); else the VM booted as itself and only its user is new.
    pub(crate) fn give_identity(&self, vm: Uuid, program: &str, fresh: bool) -> Result<Identity> {
        let rec = self.record(&vm)?;
        let base = if fresh {
            Identity::new(vm, &rec.alias)
        } else {
            Identity::at_boot(vm, &rec.alias)
        };
        let id = Identity {
            user: rec.user,
            ..base
        };
        let input = serde_json::to_vec(&id).map_err(|e| Error::json("an identity", e))?;
        crate::fail_point!("identity.exec");
        self.run_in_guest(vm, &[program], Some(&input), IDENTITY_TIMEOUT)?;
        let run = self.run_dir(&vm);
        let _lc = self.lifecycle_lock(&run)?;
        let mut rec = self.record(&vm)?;
        rec.identity_pending = None;
        self.catalog.put_vm(&rec)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_rfc1123() {
        assert_eq!(hostname_from("desk-1e43c5d5"), "desk-1e43c5d5");
        assert_eq!(hostname_from("Alice's Desk_2"), "alice-s-desk-2");
        assert_eq!(hostname_from("--"), "vm");
        assert_eq!(hostname_from(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn identities_differ() {
        let u = Uuid::new_v4();
        let (a, b) = (Identity::new(u, "a"), Identity::new(u, "a"));
        assert_ne!(a.machine_id, b.machine_id);
        assert_ne!(a.seed, b.seed);
        let m = a.machine_id.unwrap();
        assert_eq!(m.len(), 32);
        assert!(m
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(a.seed.len(), 64);
        assert_eq!(a.instance_id, u);
    }
}
