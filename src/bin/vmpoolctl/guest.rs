//! `vmpoolctl guest ...`: the guest agent of a running VM, for an operator (as Proxmox's
//! `qm guest exec`). What the guest answers is the guest's word: shown, never acted on.

use super::{out, raw_out, uuid_arg};
use clap::Subcommand;
use std::time::Duration;
use vmpool::Store;

#[derive(Subcommand)]
pub enum GuestCmd {
    /// Answer whether the VM's guest agent is up (waits at most --timeout)
    Ping {
        /// VM uuid
        uuid: String,
        /// Seconds to wait for the agent
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Run a program in the guest through its agent. Its output is printed as it came and this
    /// command exits with its exit status (as ssh does); with --json, one object instead.
    Exec {
        /// VM uuid
        uuid: String,
        /// Seconds the program has to finish
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The program and its arguments (after --). Its exit status becomes this command's, so
        /// it can coincide with one of vmpoolctl's own codes (64 for usage)
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

pub fn run(store: &Store, cmd: GuestCmd, json: bool) -> vmpool::Result<()> {
    match cmd {
        GuestCmd::Ping { uuid, timeout } => {
            let vm = uuid_arg("VM uuid", &uuid)?;
            store.agent_wait(vm, Duration::from_secs(timeout))?;
            if json {
                out(r#"{"agent":"up"}"#)
            } else {
                out(&format!("the guest agent of VM {vm} answers"))
            }
        }
        GuestCmd::Exec {
            uuid,
            timeout,
            argv,
        } => {
            let vm = uuid_arg("VM uuid", &uuid)?;
            let args: Vec<&str> = argv.iter().map(String::as_str).collect();
            let r = store.agent_exec(vm, &args, Duration::from_secs(timeout))?;
            // A program ended by a signal exits as a shell reports it: 128 + the signal. A
            // status the guest made up beyond 0..=255 (a Windows NTSTATUS, a lie) is a failure,
            // never truncated into 0.
            let status = match (r.exit_code, r.signal) {
                (Some(c @ 0..=255), _) => c,
                (None, Some(sig)) => 128 + sig.clamp(1, 127),
                _ => 1,
            };
            if json {
                out(&serde_json::json!({
                    "exit_code": r.exit_code,
                    "signal": r.signal,
                    "stdout": String::from_utf8_lossy(&r.stdout),
                    "stderr": String::from_utf8_lossy(&r.stderr),
                })
                .to_string())?;
            } else {
                use std::io::{IsTerminal, Write};
                // The guest's bytes may carry terminal escapes (a fake prompt, OSC 52 writing
                // the operator's clipboard): on a terminal they are shown, not obeyed.
                if std::io::stdout().is_terminal() {
                    raw_out(shown(&r.stdout).as_bytes())?;
                } else {
                    raw_out(&r.stdout)?;
                }
                let mut err = std::io::stderr();
                if err.is_terminal() {
                    let _ = err.write_all(shown(&r.stderr).as_bytes());
                } else {
                    let _ = err.write_all(&r.stderr);
                }
            }
            std::process::exit(status)
        }
    }
}

/// Text for a terminal: control characters other than newline and tab escaped (`\u{1b}`).
fn shown(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for c in String::from_utf8_lossy(b).chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
