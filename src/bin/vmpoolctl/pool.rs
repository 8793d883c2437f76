//! `vmpoolctl pool ...`: pools of ready VMs.

use super::{out, read_payload, show, table, uuid_arg};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vmpool::ffi::wire;
use vmpool::pool::{AcquireOptions, RefillOptions, RefillProgress};
use vmpool::{Error, Store};

#[derive(Subcommand)]
pub enum PoolCmd {
    /// Create a pool from a JSON payload file (- for stdin), as vmpool_pool_create takes
    Create {
        /// Payload file or -
        file: String,
    },
    /// List pools with their spares and owned VMs
    List,
    /// Show one pool
    Get {
        /// Pool name
        name: String,
    },
    /// Change a pool from a JSON file (- for stdin) of the keys to change
    Update {
        /// Pool name
        name: String,
        /// Changes file or -
        file: String,
    },
    /// Delete a pool, its spares and templates (refused while owners hold VMs)
    Delete {
        /// Pool name
        name: String,
    },
    /// Get a running VM of the pool for an owner (theirs if they hold one)
    Acquire {
        /// Pool name
        name: String,
        /// Who gets it
        #[arg(long)]
        owner: String,
        /// Also make a console ticket
        #[arg(long)]
        console: bool,
        /// Console ticket lifetime, seconds
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Another VM although the owner holds one (up to max_per_owner)
        #[arg(long)]
        another: bool,
        /// The person it is for, as JSON: {"login", "full_name", "password_hash", "ssh_keys",
        /// "locale", "keyboard", "timezone"}
        #[arg(long)]
        user: Option<String>,
    },
    /// Give a VM back to its pool (destroyed, or reset to a fresh spare)
    Release {
        /// VM uuid
        uuid: String,
    },
    /// The owner logged out: each pool's on_logout keeps their desktop or releases it for a fresh one
    Logout {
        /// Owner
        #[arg(long)]
        owner: String,
    },
    /// Bring the pool's spares to its target; --watch keeps doing it until SIGTERM
    Refill {
        /// Pool name
        name: String,
        /// Keep the pool filled, as a service, until SIGTERM or SIGINT
        #[arg(long)]
        watch: bool,
        /// Seconds between checks with --watch
        #[arg(long, default_value_t = 5)]
        interval: u64,
        /// Spares made at once
        #[arg(long, default_value_t = 8)]
        parallel: usize,
    },
}

pub fn run(store: &Store, cmd: PoolCmd, json: bool) -> vmpool::Result<()> {
    match cmd {
        PoolCmd::Create { file } => {
            let p = store.create_pool(&wire::pool_spec(&read_payload(&file)?)?)?;
            if json {
                out(&wire::to_string(&wire::PoolOut::from(&p))?)
            } else {
                out(&format!(
                    "created pool {}: image {}, {} vCPU, {} MiB, {} spares ({}), at most {} VMs, {} per owner",
                    p.spec.name,
                    p.spec.image_uuid,
                    p.spec.vcpus,
                    p.spec.ram_mib,
                    p.spec.spares,
                    p.spec.warmth.as_str(),
                    p.spec.max_vms,
                    p.spec.max_per_owner
                ))
            }
        }
        PoolCmd::List => {
            let list = store.pools()?;
            if json {
                return out(&wire::pools(&list)?);
            }
            out(&table(
                &[
                    "NAME", "IMAGE", "FLAVOR", "WARMTH", "READY", "WARMING", "COLD", "OWNED",
                    "TOTAL", "MAX",
                ],
                list.iter()
                    .map(|p| {
                        let s = &p.spec;
                        vec![
                            s.name.clone(),
                            s.image_uuid.to_string()[..8].to_string(),
                            format!("{}x{}M", s.vcpus, s.ram_mib),
                            s.warmth.as_str().into(),
                            format!("{}/{}", p.status.spares_ready, s.spares),
                            p.status.spares_warming.to_string(),
                            p.status.spares_cold.to_string(),
                            p.status.owned.to_string(),
                            p.status.total.to_string(),
                            s.max_vms.to_string(),
                        ]
                    })
                    .collect(),
            ))
        }
        PoolCmd::Get { name } => show(&wire::PoolOut::from(&store.pool(&name)?), json),
        PoolCmd::Update { name, file } => {
            let p = store.update_pool(&name, &wire::pool_update(&read_payload(&file)?)?)?;
            show(&wire::PoolOut::from(&p), json)
        }
        PoolCmd::Delete { name } => {
            store.delete_pool(&name)?;
            if json {
                Ok(())
            } else {
                out(&format!("deleted pool {name}"))
            }
        }
        PoolCmd::Acquire {
            name,
            owner,
            console,
            ttl,
            another,
            user,
        } => {
            let user = user
                .map(|u| {
                    serde_json::from_str(&u)
                        .map_err(|e| vmpool::Error::InvalidJson(format!("--user: {e}")))
                })
                .transpose()?;
            let opts = AcquireOptions {
                console_ttl: console.then(|| Duration::from_secs(ttl)),
                another,
                user,
            };
            let a = store.acquire(&name, &owner, &opts)?;
            if json {
                return out(&wire::to_string(&wire::AcquiredOut::from(&a))?);
            }
            let steps: Vec<String> = a
                .steps
                .iter()
                .map(|(s, ms)| format!("{s} {ms:.1} ms"))
                .collect();
            out(&format!(
                "VM {} ({}) for {owner}: {} ({}), {} in {:.1} ms [{}]",
                a.vm.uuid,
                a.vm.alias,
                a.path.as_str(),
                a.was,
                a.vm.state.as_str(),
                a.total_ms,
                steps.join(", ")
            ))?;
            if let Some(c) = &a.console {
                out(&format!(
                    "console: {} password {} (until {})",
                    c.uri, c.password, c.expires_at
                ))?;
            }
            Ok(())
        }
        PoolCmd::Release { uuid } => {
            store.release(uuid_arg("VM uuid", &uuid)?)?;
            if json {
                Ok(())
            } else {
                out(&format!("released VM {uuid}"))
            }
        }
        PoolCmd::Logout { owner } => {
            let r = store.logout(&owner)?;
            if json {
                return out(&wire::to_string(&wire::LogoutOut::from(&r))?);
            }
            for u in &r.kept {
                out(&format!("kept VM {u}"))?;
            }
            for u in &r.refreshed {
                out(&format!("released VM {u} (a fresh desktop next time)"))?;
            }
            Ok(())
        }
        PoolCmd::Refill {
            name,
            watch,
            interval,
            parallel,
        } => refill(store, &name, watch, interval, parallel, json),
    }
}

fn refill(
    store: &Store,
    name: &str,
    watch: bool,
    interval: u64,
    parallel: usize,
    json: bool,
) -> vmpool::Result<()> {
    let opts = RefillOptions { parallel };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| Error::Io {
            context: "installing the signal handler".into(),
            source: e,
        })?;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} pool {prefix}: {pos}/{len} spares ready {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(name.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    let show_progress = |p: RefillProgress| {
        bar.set_length(u64::from(p.target));
        bar.set_position(u64::from(p.ready));
        bar.set_message(if p.working > 0 {
            format!("({} being made or warmed)", p.working)
        } else {
            String::new()
        });
    };
    loop {
        let r = store.refill(name, &opts, &show_progress, &stop)?;
        let line = if json {
            wire::to_string(&wire::RefillOut::from(&r))?
        } else {
            let mut l = format!(
                "pool {name}: {} spares ready; made {}, warmed {}, removed {}{}",
                r.spares,
                r.created,
                r.warmed,
                r.removed,
                if r.template_built {
                    ", built its memory template"
                } else {
                    ""
                }
            );
            if r.suspended > 0 {
                l.push_str(&format!("; suspended {} idle desktop(s)", r.suspended));
            }
            if r.sessions_ended > 0 {
                l.push_str(&format!(
                    "; ended {} session(s) at the pool's limit",
                    r.sessions_ended
                ));
            }
            for e in &r.errors {
                l.push_str(&format!("\n  error: {e}"));
            }
            l
        };
        if !watch
            || r.created + r.removed + r.warmed + r.suspended + r.sessions_ended > 0
            || !r.errors.is_empty()
        {
            bar.suspend(|| out(&line))?;
        }
        if !watch {
            break;
        }
        // Sleep in small steps so that SIGTERM ends the service within a moment.
        for _ in 0..interval.max(1) * 10 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(())
}
