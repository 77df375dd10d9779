//! The index being served, swapped atomically on refresh.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::index::{Decision, DeviceMd5, RtaIndex};

/// What one request reads: an index and the users forgotten since it was built.
#[derive(Debug)]
pub struct Snapshot {
    index: Arc<RtaIndex>,
    /// Users forgotten since the index was built (sorted), kept only while they are
    /// in it.
    forgotten: Vec<u128>,
    generation: u64,
}

impl Snapshot {
    /// The decision for a user and a campaign; `None` if no active campaign has this
    /// id. A forgotten user gets no. No heap allocation.
    pub fn decide(&self, campaign: &str, device: DeviceMd5) -> Option<Decision<'_>> {
        let decision = self.index.decide(campaign, device)?;
        if decision.bid()
            && !self.forgotten.is_empty()
            && self.forgotten.binary_search(&device.key()).is_ok()
        {
            return Some(self.index.no());
        }
        Some(decision)
    }

    /// The index.
    pub fn index(&self) -> &RtaIndex {
        &self.index
    }

    /// Users forgotten since the index was built and still in it.
    pub fn forgotten(&self) -> usize {
        self.forgotten.len()
    }

    /// 1 for the first index served, plus one per replacement or forget.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The RTA index being served. Readers take the whole current [`Snapshot`] (an `Arc`
/// clone under a read lock held for that clone only), so a reader sees either the old
/// index or the new one, never a mix; a replacement is built entirely before it is
/// swapped in.
#[derive(Debug)]
pub struct LiveIndex {
    current: RwLock<Arc<Snapshot>>,
    /// Serialises writers, so that a forget is never lost to a concurrent replace.
    writer: Mutex<()>,
}

impl LiveIndex {
    /// Serves `index`.
    pub fn new(index: RtaIndex) -> Self {
        Self {
            current: RwLock::new(Arc::new(Snapshot {
                index: Arc::new(index),
                forgotten: Vec::new(),
                generation: 1,
            })),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a whole snapshot: the only write is one assignment.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn store(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let new = Arc::new(snapshot);
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        // The old snapshot is freed here (or by its last reader), not under the lock.
        old
    }

    /// Replaces the index by a newly built one; returns the new generation. Users
    /// forgotten since the previous build stay suppressed if the new index still has
    /// them (build with the full suppression list to fold them in).
    pub fn replace(&self, index: RtaIndex) -> u64 {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.load();
        let forgotten: Vec<u128> = old
            .forgotten
            .iter()
            .copied()
            .filter(|&k| index.contains(DeviceMd5::from_key(k)))
            .collect();
        let generation = old.generation + 1;
        drop(old);
        let previous = self.store(Snapshot {
            index: Arc::new(index),
            forgotten,
            generation,
        });
        drop(previous);
        generation
    }

    /// Suppresses users at once (an opt-out or a deletion that arrived after the
    /// index was built): from the next request on they get no for every campaign.
    /// Returns how many of them were in the index.
    pub fn forget(&self, devices: &[DeviceMd5]) -> usize {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.load();
        let mut forgotten = old.forgotten.clone();
        let before = forgotten.len();
        forgotten.extend(
            devices
                .iter()
                .filter(|d| old.index.contains(**d))
                .map(|d| d.key()),
        );
        forgotten.sort_unstable();
        forgotten.dedup();
        let added = forgotten.len() - before;
        let snapshot = Snapshot {
            index: Arc::clone(&old.index),
            forgotten,
            generation: old.generation + 1,
        };
        drop(old);
        self.store(snapshot);
        added
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::rta::CampaignList;

    fn d(i: u8) -> DeviceMd5 {
        DeviceMd5::from_bytes([i; 16])
    }

    fn index(members: Vec<DeviceMd5>) -> RtaIndex {
        RtaIndex::build(vec![CampaignList::new("C1").tier(1.0, members)], &[]).unwrap()
    }

    #[test]
    fn forget_is_immediate_and_survives_a_stale_rebuild() {
        let live = LiveIndex::new(index(vec![d(1), d(2)]));
        assert!(live.load().decide("C1", d(1)).unwrap().bid());
        assert_eq!(live.forget(&[d(1), d(1), d(7)]), 1);
        assert!(!live.load().decide("C1", d(1)).unwrap().bid());
        assert!(live.load().decide("C1", d(2)).unwrap().bid());
        // A rebuild from lists that still hold the user keeps them suppressed.
        live.replace(index(vec![d(1), d(2), d(3)]));
        assert!(!live.load().decide("C1", d(1)).unwrap().bid());
        assert_eq!(live.load().forgotten(), 1);
        // A rebuild without them drops them from the overlay.
        live.replace(index(vec![d(2)]));
        assert_eq!(live.load().forgotten(), 0);
        assert_eq!(live.load().generation(), 4);
    }
}
