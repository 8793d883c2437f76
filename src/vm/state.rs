//! A VM's lifecycle states and the one table of which changes are allowed
//! ([`State::valid_transition`]) and which states each operation accepts ([`Op::accepts`]).
//! Every write of a VM's state, by a lifecycle call or by the supervisor, goes through
//! [`State::to`]; every operation's check goes through [`Op::check`].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running (never started, or ended cleanly).
    Stopped,
    /// QEMU is being started.
    Starting,
    /// Running.
    Running,
    /// QEMU runs, the guest's CPUs are paused.
    Paused,
    /// Being shut down.
    Stopping,
    /// QEMU ended abnormally (crashed, killed, out of memory); `last_exit` says how.
    Failed,
}

impl State {
    /// The name used in JSON and tables (`stopped`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Failed => "failed",
        }
    }

    /// Whether a QEMU process belongs to this state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Starting | State::Running | State::Paused | State::Stopping
        )
    }
}

impl State {
    /// Whether the record may go from `self` to `next`. The table, in words: only a start
    /// leaves the resting states; a start ends running, paused (restored or asked to start
    /// paused), failed, or stopped (QEMU ended at once, cleanly); the guest's CPUs pause and
    /// resume while QEMU runs; any state with a QEMU may be asked to stop, and may end (the
    /// supervisor sees QEMU exit, cleanly or not); a run's end recorded late (by the
    /// supervisor after recovery wrote one) may correct a resting state; staying put is always
    /// allowed.
    pub fn valid_transition(self, next: State) -> bool {
        use State::*;
        self == next
            || matches!(
                (self, next),
                (Stopped | Failed, Starting)
                    | (Starting, Running | Paused)
                    | (Running, Paused)
                    | (Paused, Running)
                    | (Starting | Running | Paused, Stopping)
                    | (Starting | Running | Paused | Stopping, Stopped | Failed)
                    | (Stopped, Failed)
                    | (Failed, Stopped)
            )
    }

    /// `next`, if the table allows it from here; otherwise an internal error naming both
    /// (a caller that checked with [`Op::check`] never sees it).
    pub fn to(self, next: State, vm: &Uuid) -> Result<State> {
        if self.valid_transition(next) {
            Ok(next)
        } else {
            Err(Error::Internal(format!(
                "VM {vm}: no transition from {} to {}",
                self.as_str(),
                next.as_str()
            )))
        }
    }
}

/// The operations that depend on a VM's live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Start QEMU.
    Start,
    /// Reset the guest (the reset button).
    Reboot,
    /// Pause the guest's CPUs.
    Pause,
    /// Resume the guest's CPUs.
    Resume,
    /// Save a running VM's memory and devices as a pool's template.
    Save,
    /// Ask for a console ticket.
    Console,
    /// Take a screenshot.
    Screenshot,
}

impl Op {
    /// The live states this operation accepts.
    pub fn accepts(self) -> &'static [State] {
        use State::*;
        match self {
            Op::Start => &[Stopped, Failed],
            Op::Reboot | Op::Pause | Op::Resume | Op::Save | Op::Screenshot => &[Running, Paused],
            Op::Console => &[Starting, Running, Paused],
        }
    }

    /// The name used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Reboot => "reboot",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Save => "saving",
            Op::Console => "a console",
            Op::Screenshot => "a screenshot",
        }
    }

    /// `Ok` if the VM's live state `live` accepts this operation; otherwise `INVALID_STATE`
    /// naming what it is and what the operation needs.
    pub fn check(self, vm: &Uuid, live: State) -> Result<()> {
        if self.accepts().contains(&live) {
            return Ok(());
        }
        Err(Error::InvalidState(format!(
            "VM {vm} is {}; {} needs it {}",
            live.as_str(),
            self.as_str(),
            self.accepts()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    const ALL: [State; 6] = [Stopped, Starting, Running, Paused, Stopping, Failed];

    #[test]
    fn the_table() {
        let allowed: Vec<(State, State)> = ALL
            .iter()
            .flat_map(|&a| ALL.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a != b && a.valid_transition(b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Stopped, Starting),
                (Stopped, Failed),
                (Starting, Stopped),
                (Starting, Running),
                (Starting, Paused),
                (Starting, Stopping),
                (Starting, Failed),
                (Running, Stopped),
                (Running, Paused),
                (Running, Stopping),
                (Running, Failed),
                (Paused, Stopped),
                (Paused, Running),
                (Paused, Stopping),
                (Paused, Failed),
                (Stopping, Stopped),
                (Stopping, Failed),
                (Failed, Stopped),
                (Failed, Starting),
            ]
        );
    }

    #[test]
    fn only_a_start_leaves_rest_and_every_run_can_end() {
        for s in ALL {
            assert!(s.valid_transition(s));
            if !s.is_active() {
                for t in ALL.iter().filter(|t| t.is_active()) {
                    // Only a start makes a QEMU.
                    assert_eq!(s.valid_transition(*t), *t == Starting, "{s:?} -> {t:?}");
                }
            } else {
                assert!(
                    s.valid_transition(Stopped) && s.valid_transition(Failed),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn an_invalid_write_is_refused_by_name() {
        let id = Uuid::nil();
        assert_eq!(
            Stopped.to(Running, &id).unwrap_err().code().name(),
            "INTERNAL"
        );
        assert_eq!(
            Stopping.to(Paused, &id).unwrap_err().code().name(),
            "INTERNAL"
        );
        assert_eq!(Paused.to(Running, &id).unwrap(), Running);
    }

    #[test]
    fn operations_accept_what_they_need() {
        let id = Uuid::nil();
        for op in [Op::Reboot, Op::Pause, Op::Resume, Op::Save] {
            assert!(op.check(&id, Running).is_ok() && op.check(&id, Paused).is_ok());
            for s in [Stopped, Starting, Stopping, Failed] {
                let e = op.check(&id, s).unwrap_err();
                assert_eq!(e.code().name(), "INVALID_STATE");
                assert!(e.to_string().contains(s.as_str()), "{e}");
            }
        }
        assert!(Op::Start.check(&id, Failed).is_ok());
        assert!(Op::Start.check(&id, Running).is_err());
        assert!(Op::Console.check(&id, Starting).is_ok());
        assert!(Op::Console.check(&id, Stopped).is_err());
    }
}
