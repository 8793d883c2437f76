//! `vmpoolctl home ...`: owners' home volumes.

use super::{out, show, table};
use clap::Subcommand;
use vmpool::ffi::wire;
use vmpool::Store;

#[derive(Subcommand)]
pub enum HomeCmd {
    /// Make an owner's home volume
    Create {
        /// Owner
        owner: String,
        /// Size in GiB
        #[arg(long)]
        size_gib: u64,
    },
    /// List home volumes
    List,
    /// Show an owner's home volume
    Get {
        /// Owner
        owner: String,
    },
    /// Grow an owner's home volume (never shrinks; refused while a running VM has it)
    Resize {
        /// Owner
        owner: String,
        /// New size in GiB
        #[arg(long)]
        size_gib: u64,
    },
    /// Delete an owner's home volume and everything on it
    Delete {
        /// Owner
        owner: String,
    },
}

fn gib(g: u64) -> vmpool::Result<u64> {
    g.checked_mul(1 << 30)
        .ok_or_else(|| vmpool::Error::invalid(format!("--size-gib {g} is too large")))
}

pub fn run(store: &Store, cmd: HomeCmd, json: bool) -> vmpool::Result<()> {
    match cmd {
        HomeCmd::Create { owner, size_gib } => {
            let h = store.create_home(&owner, gib(size_gib)?)?;
            show(&wire::HomeOut::from(&h), json)
        }
        HomeCmd::List => {
            let list = store.homes()?;
            if json {
                return out(&wire::homes(&list)?);
            }
            out(&table(
                &["OWNER", "SIZE", "METHOD", "ATTACHED TO", "CREATED"],
                list.iter()
                    .map(|h| {
                        vec![
                            h.owner.clone(),
                            format!("{} MiB", h.size_bytes >> 20),
                            h.clone_method.clone(),
                            h.attached_to.map(|u| u.to_string()).unwrap_or("-".into()),
                            h.created_at.clone(),
                        ]
                    })
                    .collect(),
            ))
        }
        HomeCmd::Get { owner } => show(&wire::HomeOut::from(&store.home(&owner)?), json),
        HomeCmd::Resize { owner, size_gib } => {
            let h = store.resize_home(&owner, gib(size_gib)?)?;
            show(&wire::HomeOut::from(&h), json)
        }
        HomeCmd::Delete { owner } => {
            store.delete_home(&owner)?;
            if json {
                Ok(())
            } else {
                out(&format!("deleted {owner}'s home volume"))
            }
        }
    }
}
