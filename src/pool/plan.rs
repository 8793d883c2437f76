//! The decisions of a pool, as pure functions with their tests: how a spare stands against
//! the pool's warmth, which spare an acquire takes first, what a refill round removes, warms
//! and makes. The operations (`crud`, `acquire`, `refill`) gather the facts and act.

use super::Warmth;
use crate::vm::State;

/// Where one of a pool's VMs stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Handed out to an owner.
    Owned,
    /// A spare at the pool's warmth, ready to hand out.
    Ready,
    /// A spare on its way to the pool's warmth.
    Warming,
    /// A spare below the pool's warmth (or outdated), nobody bringing it up.
    Cold,
}

/// How an unowned, current spare in live state `live` stands in a pool kept at `warmth`.
/// `restoring`: a memory template clone waiting for the template's state.
pub(crate) fn standing(warmth: Warmth, live: State, restoring: bool) -> Standing {
    match (warmth, live) {
        (Warmth::Disk, State::Stopped) => Standing::Ready,
        (Warmth::Disk, _) => Standing::Cold,
        (Warmth::Paused, State::Paused) => Standing::Ready,
        (Warmth::Paused, State::Running | State::Starting) => Standing::Warming,
        (Warmth::Template, State::Paused) if restoring => Standing::Ready,
        (Warmth::Template, State::Starting) => Standing::Warming,
        _ => Standing::Cold,
    }
}

/// The order an acquire tries spares in (lower first) and what the hand-out reports the
/// spare was (`was`); `None` for a spare being stopped, which is never taken.
pub(crate) fn spare_rank(live: State, restoring: bool) -> Option<(u8, &'static str)> {
    Some(match (live, restoring) {
        (State::Paused, true) => (0, "waiting"),
        (State::Paused, false) => (0, "paused"),
        (State::Running, _) => (1, "booting"),
        (State::Starting, _) => (2, "booting"),
        (State::Stopped, _) => (3, "disk"),
        (State::Failed, _) => (4, "disk"),
        // A spare is never suspended; one that is (by hand) wakes after the rest.
        (State::Suspended, _) => (5, "suspended"),
        (State::Stopping, _) => return None,
    })
}

/// The order a refill keeps spares in (warmest first); the coldest go first when there
/// are too many.
pub(crate) fn keep_order(s: Standing) -> u8 {
    match s {
        Standing::Ready => 0,
        Standing::Warming => 1,
        Standing::Cold | Standing::Owned => 2,
    }
}

/// How many spares, of `kept` (current ones) plus `making` (being made), go beyond the
/// pool's `target`: that many of the coldest are removed.
pub(crate) fn beyond_target(kept: usize, making: usize, target: usize) -> usize {
    (kept + making).saturating_sub(target)
}

/// How many spares to make: what the target lacks, within the `room` the pool's maximum
/// leaves.
pub(crate) fn to_make(kept: usize, making: usize, target: usize, room: usize) -> usize {
    target.saturating_sub(kept + making).min(room)
}

/// What a refill does with a spare it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpareAction {
    /// Ready: offer it (again: its offer may have been lost in a crash).
    Offer,
    /// Below the pool's warmth: warm it (unless someone already is).
    Warm,
    /// Nothing to do.
    Leave,
}

/// What a refill does with a kept spare standing `s` in a pool kept at `warmth`.
pub(crate) fn spare_action(warmth: Warmth, s: Standing) -> SpareAction {
    match (warmth, s) {
        (_, Standing::Ready) => SpareAction::Offer,
        (Warmth::Disk, _) | (_, Standing::Owned) => SpareAction::Leave,
        (_, Standing::Warming | Standing::Cold) => SpareAction::Warm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WARMTHS: [Warmth; 3] = [Warmth::Disk, Warmth::Paused, Warmth::Template];

    #[test]
    fn a_spare_is_ready_only_at_its_pools_warmth() {
        assert_eq!(
            standing(Warmth::Disk, State::Stopped, false),
            Standing::Ready
        );
        assert_eq!(
            standing(Warmth::Disk, State::Running, false),
            Standing::Cold
        );
        assert_eq!(
            standing(Warmth::Paused, State::Paused, false),
            Standing::Ready
        );
        assert_eq!(
            standing(Warmth::Paused, State::Running, false),
            Standing::Warming
        );
        assert_eq!(
            standing(Warmth::Paused, State::Stopped, false),
            Standing::Cold
        );
        // A template pool's spare is ready only while it waits for the template's state.
        assert_eq!(
            standing(Warmth::Template, State::Paused, true),
            Standing::Ready
        );
        assert_eq!(
            standing(Warmth::Template, State::Paused, false),
            Standing::Cold
        );
        assert_eq!(
            standing(Warmth::Template, State::Starting, true),
            Standing::Warming
        );
        for w in WARMTHS {
            assert_eq!(standing(w, State::Failed, false), Standing::Cold);
            assert_eq!(standing(w, State::Stopping, true), Standing::Cold);
        }
    }

    #[test]
    fn acquire_takes_the_warmest_spare_and_never_a_stopping_one() {
        let order = [
            (State::Paused, true),
            (State::Running, false),
            (State::Starting, false),
            (State::Stopped, false),
            (State::Failed, false),
        ];
        let ranks: Vec<u8> = order
            .iter()
            .map(|&(s, r)| spare_rank(s, r).unwrap().0)
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert_eq!(spare_rank(State::Paused, false), Some((0, "paused")));
        assert_eq!(spare_rank(State::Paused, true), Some((0, "waiting")));
        assert_eq!(spare_rank(State::Stopping, false), None);
    }

    #[test]
    fn a_refill_removes_the_coldest_beyond_the_target_and_makes_what_lacks() {
        assert_eq!(beyond_target(5, 0, 3), 2);
        assert_eq!(beyond_target(2, 2, 3), 1);
        assert_eq!(beyond_target(1, 0, 3), 0);
        assert_eq!(to_make(1, 0, 3, 10), 2);
        assert_eq!(to_make(1, 1, 3, 10), 1);
        // The pool's maximum bounds what is made.
        assert_eq!(to_make(0, 0, 5, 2), 2);
        assert_eq!(to_make(4, 0, 3, 10), 0);
        let mut s = [Standing::Cold, Standing::Ready, Standing::Warming];
        s.sort_by_key(|s| keep_order(*s));
        assert_eq!(s, [Standing::Ready, Standing::Warming, Standing::Cold]);
    }

    #[test]
    fn a_refill_offers_ready_spares_and_warms_cold_ones_unless_kept_on_disk() {
        for w in WARMTHS {
            assert_eq!(spare_action(w, Standing::Ready), SpareAction::Offer);
            assert_eq!(spare_action(w, Standing::Owned), SpareAction::Leave);
        }
        assert_eq!(
            spare_action(Warmth::Disk, Standing::Cold),
            SpareAction::Leave
        );
        assert_eq!(
            spare_action(Warmth::Paused, Standing::Cold),
            SpareAction::Warm
        );
        assert_eq!(
            spare_action(Warmth::Template, Standing::Warming),
            SpareAction::Warm
        );
    }
}
