//! The guest agent of a VM, for callers of the store: connected through the VM's sockets
//! directory (root's), never by a path the VM could change.

use super::{Agent, AgentError};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::vm::runtime;
use std::time::Duration;
use uuid::Uuid;

/// What a program run in the guest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExec {
    /// Its exit status, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
}

fn agent_error(vm: &Uuid, what: &str, e: AgentError) -> Error {
    match e {
        AgentError::Timeout(_) => Error::Timeout(format!("VM {vm}: {what}: {e}")),
        other => Error::Hypervisor(format!("VM {vm}: {what}: {other}")),
    }
}

impl Store {
    /// A synchronised connection to the VM's guest agent; `TIMEOUT` if no agent answers
    /// within `timeout` (the guest has none, or has not started it yet).
    pub fn agent(&self, vm: Uuid, timeout: Duration) -> Result<Agent> {
        let run = self.run_dir(&vm);
        let dir = run.open_sockets()?.ok_or_else(|| {
            Error::InvalidState(format!("VM {vm} has no agent socket (it does not run)"))
        })?;
        let stream = dir.connect(
            runtime::names::AGENT_SOCKET,
            Some(crate::safe_fs::TrustRule::current().owner),
        )?;
        Agent::from_stream(stream, timeout).map_err(|e| agent_error(&vm, "the guest agent", e))
    }

    /// Wait until the VM's guest agent answers a ping, for at most `timeout`.
    pub fn agent_wait(&self, vm: Uuid, timeout: Duration) -> Result<()> {
        let until = std::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let attempt = self
                .agent(
                    vm,
                    left.min(Duration::from_secs(5))
                        .max(Duration::from_millis(100)),
                )
                .and_then(|mut a| {
                    a.ping(Duration::from_secs(5))
                        .map_err(|e| agent_error(&vm, "guest-ping", e))
                });
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if left.is_zero() => {
                    return Err(match e {
                        Error::Timeout(_) => Error::Timeout(format!(
                            "VM {vm}: no guest agent answered within {timeout:?}"
                        )),
                        other => other,
                    })
                }
                Err(Error::InvalidState(m)) => return Err(Error::InvalidState(m)),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// Run `argv` in the guest through its agent and wait for it within `timeout`.
    pub fn agent_exec(&self, vm: Uuid, argv: &[&str], timeout: Duration) -> Result<AgentExec> {
        let mut a = self.agent(vm, timeout)?;
        a.exec(argv, timeout)
            .map_err(|e| agent_error(&vm, &format!("running {argv:?}"), e))
    }

    /// Read a file of the guest (at most `max` bytes) through its agent.
    pub fn agent_read_file(
        &self,
        vm: Uuid,
        path: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let mut a = self.agent(vm, timeout)?;
        a.read_file(path, max, timeout)
            .map_err(|e| agent_error(&vm, &format!("reading {path}"), e))
    }

    /// Run `argv` in the guest through its agent (waiting up to `timeout` for the agent to
    /// answer), with `input` on its standard input; an error unless it exits 0, with what it
    /// said on stderr.
    pub(crate) fn run_in_guest(
        &self,
        vm: Uuid,
        argv: &[&str],
        input: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<()> {
        let program = argv.first().copied().unwrap_or_default();
        self.agent_wait(vm, timeout)?;
        let mut agent = self.agent(vm, timeout)?;
        let r = agent
            .exec_with_input(argv, input, timeout)
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
        Ok(())
    }
}
