//! Uid ranges of the stores of one host. Each VM's QEMU runs as a uid of its store's range;
//! two stores must never hand out the same uid, or one tenant's QEMU could write another's
//! disk. So every store that isolates VMs claims its range in a registry kept by the host
//! (`/var/lib/vmpool-host/uid-ranges.json`, under a lock), as `/etc/subuid` does for user
//! namespaces: a store keeps its range for its life; a range whose store is gone (its catalog
//! no longer holds a store of that id) is free again.

use crate::error::{Error, Result};
use crate::safe_fs::{Dir, TrustRule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The first uid of the lowest range.
pub const FIRST: u32 = 2_000_000;

/// Where the registry is; `VMPOOL_HOST_DIR` moves it (for a test host of its own).
pub fn registry_dir() -> PathBuf {
    std::env::var_os("VMPOOL_HOST_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/vmpool-host"))
}

const FILE: &str = "uid-ranges.json";
const LOCK: &str = "uid-ranges.lock";

/// One store's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The store's id.
    pub store: String,
    /// Its catalog, where its liveness is checked.
    pub catalog: PathBuf,
    /// First uid.
    pub base: u32,
    /// How many.
    pub count: u32,
}

impl Range {
    fn end(&self) -> u64 {
        u64::from(self.base) + u64::from(self.count)
    }

    fn overlaps(&self, base: u32, count: u32) -> bool {
        u64::from(base) < self.end() && u64::from(self.base) < u64::from(base) + u64::from(count)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    ranges: Vec<Range>,
}

/// Where a store that asks for `count` uids (at `want` if given) gets them among `others`:
/// `want` if it is free, else an error naming the store in the way; without `want` the
/// lowest free range from [`FIRST`] whose start is a multiple of `count` past it.
pub fn choose(others: &[Range], want: Option<u32>, count: u32) -> Result<u32> {
    let fits = |b: u32| u64::from(b) + u64::from(count) < u64::from(u32::MAX);
    if let Some(b) = want {
        if let Some(o) = others.iter().find(|o| o.overlaps(b, count)) {
            return Err(Error::InUse(format!(
                "uids {b}-{} overlap those of the store at {} ({}-{}); choose another uid_base",
                u64::from(b) + u64::from(count) - 1,
                o.catalog.display(),
                o.base,
                o.end() - 1
            )));
        }
        return Ok(b);
    }
    let step = u64::from(count.max(1));
    let mut b = u64::from(FIRST);
    while b + step < u64::from(u32::MAX) {
        let base = b as u32;
        match others.iter().find(|o| o.overlaps(base, count)) {
            None if fits(base) => return Ok(base),
            // Past the one in the way, on the grid.
            Some(o) => b += (o.end() - b).div_ceil(step) * step,
            None => break,
        }
    }
    Err(Error::Busy(format!(
        "no free range of {count} uids is left on this host"
    )))
}

/// The range of the store `store` (catalog `catalog`) in the registry at `registry` (the
/// host's: [`registry_dir`]), claimed now if it has none: at `want` if the store names one,
/// else the lowest free. `alive` says whether a recorded range's store still exists.
pub fn claim(
    registry: &Path,
    store: &str,
    catalog: &Path,
    want: Option<u32>,
    count: u32,
    alive: impl Fn(&Range) -> bool,
) -> Result<u32> {
    let dir = Dir::trusted(registry, TrustRule::current(), Some(0o700))?;
    let _lock = crate::lock::lock(&dir.path().join(LOCK), crate::lock::Mode::Exclusive)?;
    let mut reg: Registry = match dir.read(FILE, 16 << 20)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| Error::json(dir.display(FILE), e))?,
        None => Registry::default(),
    };
    let before = reg.ranges.len();
    reg.ranges.retain(|r| r.store == store || alive(r));
    let mine = reg.ranges.iter().position(|r| r.store == store);
    let others: Vec<Range> = reg
        .ranges
        .iter()
        .filter(|r| r.store != store)
        .cloned()
        .collect();
    let base = match mine.map(|i| reg.ranges[i].clone()) {
        Some(r) if want.is_none_or(|w| w == r.base) && r.count == count => {
            if reg.ranges.len() == before {
                return Ok(r.base);
            }
            r.base
        }
        Some(r) => choose(&others, Some(want.unwrap_or(r.base)), count)?,
        None => choose(&others, want, count)?,
    };
    reg.ranges.retain(|r| r.store != store);
    reg.ranges.push(Range {
        store: store.to_owned(),
        catalog: catalog.to_owned(),
        base,
        count,
    });
    reg.ranges.sort_by_key(|r| r.base);
    let bytes = serde_json::to_vec_pretty(&reg).map_err(|e| Error::json("the uid registry", e))?;
    dir.write_atomic(FILE, &bytes, 0o644)?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(store: &str, base: u32, count: u32) -> Range {
        Range {
            store: store.into(),
            catalog: format!("/s/{store}").into(),
            base,
            count,
        }
    }

    #[test]
    fn ranges_never_overlap() {
        assert_eq!(choose(&[], None, 65536).unwrap(), FIRST);
        let a = r("a", FIRST, 65536);
        assert_eq!(
            choose(std::slice::from_ref(&a), None, 65536).unwrap(),
            FIRST + 65536
        );
        // A gap too small is skipped; the grid is kept.
        let b = r("b", FIRST + 2 * 65536, 100);
        assert_eq!(
            choose(&[a.clone(), b.clone()], None, 65536).unwrap(),
            FIRST + 65536
        );
        assert_eq!(
            choose(&[a.clone(), b.clone()], None, 2 * 65536).unwrap(),
            FIRST + 4 * 65536
        );
        // Asked for: given if free, refused by name if not.
        assert_eq!(
            choose(std::slice::from_ref(&a), Some(3_000_000), 10).unwrap(),
            3_000_000
        );
        let e = choose(std::slice::from_ref(&a), Some(FIRST + 65535), 10).unwrap_err();
        assert!(e.to_string().contains("/s/a"), "{e}");
        assert!(choose(&[r("c", FIRST, u32::MAX - FIRST - 1)], None, 65536).is_err());
    }

    #[test]
    fn a_claim_is_kept_and_a_dead_store_frees_its_range() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("host");
        let claim = |s: &str, c: &str, w, n, alive: &dyn Fn(&Range) -> bool| {
            claim(&reg, s, Path::new(c), w, n, alive)
        };
        let live = |r: &Range| r.store != "gone";
        let a = claim("a", "/s/a", None, 1000, &live).unwrap();
        assert_eq!(claim("a", "/s/a", None, 1000, &live).unwrap(), a);
        let gone = claim("gone", "/s/gone", None, 1000, &|_| true).unwrap();
        assert_ne!(gone, a);
        // "gone" is dead now: its range goes to the next claimant.
        assert_eq!(claim("b", "/s/b", None, 1000, &live).unwrap(), gone);
        assert!(claim("c", "/s/c", Some(a), 10, &live).is_err());
    }
}
