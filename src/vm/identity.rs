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
use crate::store::Store;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// The image tag naming the guest program that applies an identity.
pub const ON_CLONE_TAG: &str = "on_clone";

/// How long the customization may take, the agent's start included (a restored guest's
/// agent answers at once; under TCG a program run costs seconds).
pub const IDENTITY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the guest program gets on its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The VM's hostname (from its alias).
    pub hostname: String,
    /// A new `/etc/machine-id`: 32 lowercase hex digits.
    pub machine_id: String,
    /// 32 random bytes (hex) for the guest to mix into its user-space RNG.
    pub seed: String,
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
    /// A fresh identity for a VM called `alias` (random values from the OS's CSPRNG).
    pub fn new(alias: &str) -> Identity {
        let seed = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        Identity {
            hostname: hostname_from(alias),
            machine_id: Uuid::new_v4().simple().to_string(),
            seed,
        }
    }
}

impl Store {
    /// Give VM `vm` (a restored clone whose record says its identity is pending) its own
    /// identity through `program` in the guest, and record that it has one.
    pub(crate) fn give_identity(&self, vm: Uuid, program: &str) -> Result<Identity> {
        let alias = self.record(&vm)?.alias;
        let id = Identity::new(&alias);
        let input = serde_json::to_vec(&id).map_err(|e| Error::json("an identity", e))?;
        self.agent_wait(vm, IDENTITY_TIMEOUT)?;
        let mut agent = self.agent(vm, IDENTITY_TIMEOUT)?;
        let r = agent
            .exec_with_input(&[program], Some(&input), IDENTITY_TIMEOUT)
            .map_err(|e| Error::Hypervisor(format!("VM {vm}: {program}: {e}")))?;
        if r.exit_code != Some(0) {
            let said: String = String::from_utf8_lossy(&r.stderr)
                .chars()
                .take(500)
                .collect();
            return Err(Error::Hypervisor(format!(
                "VM {vm}: {program} ended with {:?} (signal {:?}): {said}",
                r.exit_code, r.signal
            )));
        }
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
        let (a, b) = (Identity::new("a"), Identity::new("a"));
        assert_ne!(a.machine_id, b.machine_id);
        assert_ne!(a.seed, b.seed);
        assert_eq!(a.machine_id.len(), 32);
        assert!(a
            .machine_id
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(a.seed.len(), 64);
    }
}
