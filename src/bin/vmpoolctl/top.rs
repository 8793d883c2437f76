//! `vmpoolctl top`: which desktop eats the host. Every VM that runs, busiest first, with the
//! CPU it used over the last interval (from two `vm_stats` samples: the library gives
//! counters, rates are the reader's), its memory and its disk traffic, redrawn in place on a
//! terminal. `--json` prints one line per interval instead, for scripts.

use super::{human, out, table};
use clap::Args;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::vm::stats::VmStats;
use vmpool::{Error, Store};

#[derive(Args)]
pub struct TopArgs {
    /// Seconds between samples (0.2 to 3600)
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many intervals (0: until interrupted)
    #[arg(long, default_value_t = 0)]
    count: u32,
}

/// One VM over one interval.
#[derive(serde::Serialize)]
struct Row {
    uuid: Uuid,
    alias: String,
    owner: String,
    pool: Option<String>,
    /// CPU used over the interval, in percent of one host CPU.
    cpu_pct: f64,
    pss_bytes: u64,
    zone_bytes: Option<u64>,
    read_bytes_per_s: f64,
    written_bytes_per_s: f64,
}

/// Every running VM's sample, and when it was taken.
fn sample(store: &Store) -> vmpool::Result<HashMap<Uuid, (VmStats, Instant)>> {
    let mut all = HashMap::new();
    for vm in store.vms(None)? {
        if !vm.state.is_active() {
            continue;
        }
        // A VM deleted or stopped since the list is simply not shown.
        if let Ok(s) = store.vm_stats(vm.uuid) {
            if s.cpu_time_us.is_some() {
                all.insert(vm.uuid, (s, Instant::now()));
            }
        }
    }
    Ok(all)
}

fn disk_bytes(s: &VmStats) -> (u64, u64) {
    s.disks.iter().fold((0, 0), |(r, w), d| {
        (r.saturating_add(d.rd_bytes), w.saturating_add(d.wr_bytes))
    })
}

/// The rows of the VMs sampled both times (a VM that started meanwhile shows next time),
/// busiest first. A counter that went back (a new QEMU: a restart, a wake) counts from zero.
fn rows(
    before: &HashMap<Uuid, (VmStats, Instant)>,
    now: &HashMap<Uuid, (VmStats, Instant)>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = now
        .iter()
        .filter_map(|(u, (s, t))| {
            let (p, pt) = before.get(u)?;
            // Two counts of CPU time are not comparable (a zone's cgroup that appeared or went).
            if s.cpu_source != p.cpu_source {
                return None;
            }
            let secs = t.duration_since(*pt).as_secs_f64().max(1e-3);
            let delta = |a: u64, b: u64| if a >= b { a - b } else { a } as f64;
            let cpu = delta(s.cpu_time_us?, p.cpu_time_us?);
            let ((r, w), (pr, pw)) = (disk_bytes(s), disk_bytes(p));
            Some(Row {
                uuid: *u,
                alias: s.alias.clone(),
                owner: s.owner.clone(),
                pool: s.pool.clone(),
                cpu_pct: cpu / 1e6 / secs * 100.0,
                pss_bytes: s.memory.map_or(0, |m| m.pss_bytes),
                zone_bytes: s.memory.and_then(|m| m.zone_bytes),
                read_bytes_per_s: delta(r, pr) / secs,
                written_bytes_per_s: delta(w, pw) / secs,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
    rows
}

fn per_s(b: f64) -> String {
    format!("{}/s", human(b as u64))
}

pub fn run(store: &Store, a: TopArgs, json: bool) -> vmpool::Result<()> {
    if !(0.2..=3600.0).contains(&a.interval) {
        return Err(Error::invalid(format!(
            "interval of {} s is out of range 0.2..=3600 s",
            a.interval
        )));
    }
    let redraw = !json && std::io::stdout().is_terminal();
    let mut before = sample(store)?;
    let mut shown = 0;
    loop {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        let now = sample(store)?;
        let rows = rows(&before, &now);
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        if json {
            let line =
                serde_json::json!({"at": at.to_string(), "interval_s": a.interval, "vms": rows});
            out(&line.to_string())?;
        } else {
            let cpu: f64 = rows.iter().map(|r| r.cpu_pct).sum();
            let body = table(
                &[
                    "UUID", "ALIAS", "OWNER", "POOL", "CPU%", "MEMORY", "ZONE", "READ", "WRITTEN",
                ],
                rows.iter()
                    .map(|r| {
                        vec![
                            r.uuid.to_string(),
                            r.alias.clone(),
                            r.owner.clone(),
                            r.pool.clone().unwrap_or_default(),
                            format!("{:.1}", r.cpu_pct),
                            human(r.pss_bytes),
                            r.zone_bytes.map_or("-".into(), human),
                            per_s(r.read_bytes_per_s),
                            per_s(r.written_bytes_per_s),
                        ]
                    })
                    .collect(),
            );
            let head = format!(
                "vmpool top  {at}  {} running  CPU {cpu:.1}% of one host CPU  every {} s",
                rows.len(),
                a.interval
            );
            // Home and clear: the screen is redrawn in place, as top does.
            let clear = if redraw { "\x1b[H\x1b[2J" } else { "" };
            out(&format!("{clear}{head}\n{body}"))?;
        }
        shown += 1;
        if a.count != 0 && shown >= a.count {
            return Ok(());
        }
        before = now;
    }
}
