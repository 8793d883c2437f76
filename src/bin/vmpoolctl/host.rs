//! `vmpoolctl host ...`: the store across a host's reboot (the `vmpool.service` unit runs
//! `host start` at boot and `host stop` at shutdown).

use super::out;
use clap::Subcommand;
use vmpool::ffi::wire;
use vmpool::store::HostReport;
use vmpool::Store;

#[derive(Subcommand)]
pub enum HostCmd {
    /// After the boot: recover, start the VMs marked to run, wake what host stop suspended (desktops wait for their owner), refill the pools
    Start,
    /// Before the shutdown: suspend every VM that runs, end the spares
    Stop,
}

fn list(what: &str, ids: &[uuid::Uuid]) -> vmpool::Result<()> {
    for u in ids {
        out(&format!("{what} {u}"))?;
    }
    Ok(())
}

pub fn run(store: &Store, cmd: HostCmd, json: bool) -> vmpool::Result<()> {
    let r: HostReport = match cmd {
        HostCmd::Start => store.host_start()?,
        HostCmd::Stop => store.host_stop()?,
    };
    if json {
        return out(&wire::to_string(&wire::HostOut::from(&r))?);
    }
    for c in &r.recovered {
        out(&format!("recovered: {c}"))?;
    }
    list("started", &r.started)?;
    list("woken", &r.woken)?;
    list("asleep until its owner returns:", &r.asleep)?;
    list("suspended", &r.suspended)?;
    list("ended", &r.ended)?;
    for p in &r.refilled {
        out(&format!("refilled pool {p}"))?;
    }
    // As a refill's: single VMs' errors are reported, the rest was done (exit status 0).
    for e in &r.errors {
        out(&format!("error: {e}"))?;
    }
    Ok(())
}
