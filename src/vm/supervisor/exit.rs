//! How a QEMU run ended, from what the supervisor saw, and why vmpool ended it.

use crate::vm::LastExit;
use serde::{Deserialize, Serialize};

/// Why vmpool ended QEMU, written to `run/<uuid>/intent` (as JSON) before it acts, so that
/// the supervisor tells a requested stop from a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A stop: ACPI first, SIGKILL after the timeout; or `quit` after saving a template.
    Stop,
    /// SIGKILL at once.
    Kill,
    /// `quit` after the guest's state was saved to go on later (`vm/suspend.rs`); the run
    /// ends `suspended` if that state is complete.
    Suspend,
}

impl Intent {
    /// The file's bytes.
    pub fn encode(self) -> Vec<u8> {
        serde_json::to_vec(&self).unwrap_or_default()
    }

    /// Read the file's bytes: JSON, or the plain word older versions wrote.
    pub fn decode(bytes: &[u8]) -> Option<Intent> {
        serde_json::from_slice(bytes)
            .ok()
            .or(match std::str::from_utf8(bytes).ok()?.trim() {
                "kill" => Some(Intent::Kill),
                s if s.starts_with("stop") => Some(Intent::Stop),
                _ => None,
            })
    }
}

/// Decide how a QEMU run ended from what was seen: its wait status, the reason of the last
/// `SHUTDOWN` event, what vmpool asked for (`intent`), its stderr, and whether the kernel
/// killed it for memory.
pub fn classify(
    status: Option<i32>,
    signal: Option<i32>,
    shutdown: Option<&str>,
    intent: Option<Intent>,
    stderr_tail: &str,
    oom: bool,
) -> LastExit {
    let sig_name = |s: i32| {
        nix::sys::signal::Signal::try_from(s)
            .map(|n| format!("{n}"))
            .unwrap_or_else(|_| format!("signal {s}"))
    };
    let tail = stderr_tail.trim();
    let with_tail = |r: String| {
        if tail.is_empty() {
            r
        } else {
            format!("{r}: {tail}")
        }
    };
    let (clean, reason) = match (intent, signal, status, shutdown) {
        (Some(Intent::Kill), _, _, _) => (true, "killed on request".to_owned()),
        (Some(Intent::Suspend), _, _, _) => (true, "suspended".to_owned()),
        (Some(Intent::Stop), Some(9), _, _) => (
            true,
            "stopped on request (killed after the shutdown timeout)".to_owned(),
        ),
        (Some(Intent::Stop), _, _, _) => (true, "stopped on request".to_owned()),
        (None, Some(s), _, _) if oom => (
            false,
            format!("out of memory: the kernel killed QEMU ({})", sig_name(s)),
        ),
        (None, Some(s), _, _) => (false, format!("QEMU was killed by {}", sig_name(s))),
        (None, None, Some(0), Some("guest-shutdown")) => (true, "the guest powered off".to_owned()),
        (None, None, Some(0), Some("host-qmp-quit")) => (true, "quit over QMP".to_owned()),
        (None, None, Some(0), Some(r)) => (true, format!("QEMU shut down ({r})")),
        (None, None, Some(0), None) => (true, "QEMU exited".to_owned()),
        (None, None, Some(c), _) => (false, with_tail(format!("QEMU exited with status {c}"))),
        (None, None, None, _) => (false, "QEMU ended in an unknown way".to_owned()),
    };
    LastExit {
        at: crate::now_rfc3339(),
        clean,
        reason,
        signal,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_runs_end() {
        let c = |st, sig, sh, intent, oom| classify(st, sig, sh, intent, "", oom);
        let e = c(Some(0), None, Some("guest-shutdown"), None, false);
        assert!(e.clean && e.reason.contains("powered off"), "{e:?}");
        let e = c(None, Some(9), None, None, false);
        assert!(!e.clean && e.reason.contains("SIGKILL"), "{e:?}");
        let e = c(None, Some(9), None, None, true);
        assert!(!e.clean && e.reason.contains("out of memory"), "{e:?}");
        let e = c(None, Some(9), None, Some(Intent::Stop), false);
        assert!(e.clean && e.reason.contains("timeout"), "{e:?}");
        let e = c(None, Some(9), None, Some(Intent::Kill), false);
        assert!(e.clean, "{e:?}");
        let e = classify(
            Some(1),
            None,
            None,
            None,
            "qemu: could not open disk",
            false,
        );
        assert!(
            !e.clean && e.reason.contains("status 1: qemu: could not open disk"),
            "{e:?}"
        );
        assert_eq!(e.status, Some(1));
    }

    #[test]
    fn intents_round_trip_and_old_words_are_read() {
        for i in [Intent::Stop, Intent::Kill] {
            assert_eq!(Intent::decode(&i.encode()), Some(i));
        }
        assert_eq!(Intent::decode(b"stop\n"), Some(Intent::Stop));
        assert_eq!(Intent::decode(b"kill"), Some(Intent::Kill));
        assert_eq!(Intent::decode(b"\"explode\""), None);
    }
}
