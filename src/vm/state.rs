//! A VM's lifecycle states and the one table of which changes are allowed
//! ([`State::valid_transition`]) and which states each operation accepts ([`Op::accepts`]).
//! Every write of a VM's state, by a lifecycle call or by the supervisor, goes through
//! [`State::to`]; every operation's check goes through [`Op::check`].

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Asleep: the guest's memory and device state saved in the store, no QEMU; the next
    /// start (or an acquire by its owner) goes on from where it was.
    Suspended,
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
            State::Suspended => "suspended",
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
    /// supervisor sees QEMU exit, cleanly or not); a run that saved its state ends
    /// suspended, a start resumes it, and a suspended VM whose state is thrown away (or
    /// gone) rests stopped; a run's end recorded late (by the supervisor after recovery wrote
    /// one) may correct a resting state; staying put is always allowed.
    pub fn valid_transition(self, next: State) -> bool {
        use State::*;
        self == next
            || matches!(
                (self, next),
                (Stopped | Failed | Suspended, Starting)
                    | (Starting, Running | Paused)
                    | (Running, Paused)
                    | (Paused, Running)
                    | (Starting | Running | Paused, Stopping)
                    | (
                        Starting | Running | Paused | Stopping,
                        Stopped | Failed | Suspended
                    )
                    | (Suspended, Stopped)
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
    /// Save a running VM's memory and devices to go on later, and end its QEMU.
    Suspend,
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
            Op::Start => &[Stopped, Failed, Suspended],
            Op::Reboot | Op::Pause | Op::Resume | Op::Save | Op::Suspend | Op::Screenshot => {
                &[Running, Paused]
            }
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
            Op::Suspend => "suspend",
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

/// What the host says about a VM whose record is active: asked lazily, in the order
/// [`live`] needs, since each answer costs a system call or a file read.
pub trait Evidence {
    /// The VM's supervisor holds its lock (it runs).
    fn supervised(&self) -> bool;
    /// The supervisor wrote the run's facts (QEMU came up).
    fn started(&self) -> bool;
    /// Another process holds the VM's lifecycle lock (a change is in flight).
    fn changing(&self) -> bool;
    /// The recorded QEMU (pid and start time) still runs.
    fn qemu_alive(&self) -> bool;
}

/// The state a VM whose record says `recorded` is really in, or `None` when its supervisor
/// and QEMU are gone without a word (the record is then `failed`). `restoring`: a memory
/// template clone, whose QEMU starts paused waiting for the template's state.
///
/// The record says what vmpool last did; the supervisor's lock and QEMU's process say what
/// is. A start whose caller died is running (or paused) if its supervisor came up,
/// `starting` while someone holds the lifecycle lock, `stopped` if nothing was started.
pub fn live(recorded: State, restoring: bool, ev: &impl Evidence) -> Option<State> {
    if !recorded.is_active() {
        return Some(recorded);
    }
    let supervised = ev.supervised();
    if recorded == State::Starting {
        if supervised {
            return Some(match (ev.started(), restoring) {
                (true, true) => State::Paused,
                (true, false) => State::Running,
                (false, _) => State::Starting,
            });
        }
        return Some(if ev.changing() {
            State::Starting
        } else {
            State::Stopped
        });
    }
    if supervised || ev.changing() || ev.qemu_alive() {
        return Some(recorded);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    const ALL: [State; 7] = [
        Stopped, Starting, Running, Paused, Stopping, Failed, Suspended,
    ];

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
                (Starting, Suspended),
                (Running, Stopped),
                (Running, Paused),
                (Running, Stopping),
                (Running, Failed),
                (Running, Suspended),
                (Paused, Stopped),
                (Paused, Running),
                (Paused, Stopping),
                (Paused, Failed),
                (Paused, Suspended),
                (Stopping, Stopped),
                (Stopping, Failed),
                (Stopping, Suspended),
                (Failed, Stopped),
                (Failed, Starting),
                (Suspended, Stopped),
                (Suspended, Starting),
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

    /// Evidence as plain answers; asking a question that `live` should not need panics.
    struct Facts {
        supervised: Option<bool>,
        started: Option<bool>,
        changing: Option<bool>,
        qemu_alive: Option<bool>,
    }

    impl Evidence for Facts {
        fn supervised(&self) -> bool {
            self.supervised.expect("supervised asked")
        }
        fn started(&self) -> bool {
            self.started.expect("started asked")
        }
        fn changing(&self) -> bool {
            self.changing.expect("changing asked")
        }
        fn qemu_alive(&self) -> bool {
            self.qemu_alive.expect("qemu_alive asked")
        }
    }

    fn facts(
        sup: Option<bool>,
        started: Option<bool>,
        chg: Option<bool>,
        alive: Option<bool>,
    ) -> Facts {
        Facts {
            supervised: sup,
            started,
            changing: chg,
            qemu_alive: alive,
        }
    }

    #[test]
    fn resting_records_are_believed_without_asking() {
        let none = facts(None, None, None, None);
        assert_eq!(live(Stopped, false, &none), Some(Stopped));
        assert_eq!(live(Failed, true, &none), Some(Failed));
    }

    #[test]
    fn a_start_is_judged_by_its_supervisor_then_by_its_lock() {
        let up = |started| facts(Some(true), Some(started), None, None);
        assert_eq!(live(Starting, false, &up(true)), Some(Running));
        assert_eq!(live(Starting, true, &up(true)), Some(Paused));
        assert_eq!(live(Starting, false, &up(false)), Some(Starting));
        let down = |changing| facts(Some(false), None, Some(changing), None);
        assert_eq!(live(Starting, false, &down(true)), Some(Starting));
        // The starter died before its supervisor came up: nothing runs.
        assert_eq!(live(Starting, false, &down(false)), Some(Stopped));
    }

    #[test]
    fn a_run_without_supervisor_lock_or_qemu_has_vanished() {
        for s in [Running, Paused, Stopping] {
            assert_eq!(
                live(s, false, &facts(Some(true), None, None, None)),
                Some(s)
            );
            assert_eq!(
                live(s, false, &facts(Some(false), None, Some(true), None)),
                Some(s)
            );
            assert_eq!(
                live(s, false, &facts(Some(false), None, Some(false), Some(true))),
                Some(s)
            );
            assert_eq!(
                live(
                    s,
                    false,
                    &facts(Some(false), None, Some(false), Some(false))
                ),
                None
            );
        }
    }

    #[test]
    fn operations_accept_what_they_need() {
        let id = Uuid::nil();
        for op in [Op::Reboot, Op::Pause, Op::Resume, Op::Save, Op::Suspend] {
            assert!(op.check(&id, Running).is_ok() && op.check(&id, Paused).is_ok());
            for s in [Stopped, Starting, Stopping, Failed, Suspended] {
                let e = op.check(&id, s).unwrap_err();
                assert_eq!(e.code().name(), "INVALID_STATE");
                assert!(e.to_string().contains(s.as_str()), "{e}");
            }
        }
        assert!(Op::Start.check(&id, Failed).is_ok());
        assert!(Op::Start.check(&id, Suspended).is_ok());
        assert!(Op::Start.check(&id, Running).is_err());
        assert!(Op::Console.check(&id, Starting).is_ok());
        assert!(Op::Console.check(&id, Stopped).is_err());
    }
}
