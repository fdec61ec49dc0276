//! A bounded memory of recently dispatched call ids.

use std::collections::{HashSet, VecDeque};

use bcfy_proto::CallId;

/// Remembers the call ids that were dispatched recently, forgetting the oldest first.
///
/// The cursor overlaps the previous poll by one second, so a poll returns again the calls of
/// that last second; this set is what drops them. It holds at least `capacity` ids, and never
/// forgets one whose call the next poll can return again (`ts` at or after the cursor), however
/// many calls that second held: a count alone would let a busy second (5,000 calls/s against
/// 4,096 ids) be delivered twice. So its memory is `capacity` plus one second of traffic.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    set: HashSet<CallId>,
    /// Ids in insertion order with the `ts` they were dispatched at.
    order: VecDeque<(i64, CallId)>,
}

impl RecentIds {
    /// An empty memory holding at least `capacity` ids (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            set: HashSet::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
        }
    }

    /// Whether `id` was dispatched recently.
    pub(crate) fn contains(&self, id: &CallId) -> bool {
        self.set.contains(id)
    }

    /// Records `id`, dispatched at `ts`; past capacity, forgets the oldest ids whose `ts` is
    /// before `keep_from` (the cursor: the next poll returns calls from that second on).
    /// Returns `false` when `id` was already known.
    pub(crate) fn insert(&mut self, id: CallId, ts: i64, keep_from: i64) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        while self.order.len() >= self.capacity
            && self.order.front().is_some_and(|(t, _)| *t < keep_from)
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(id.clone());
        self.order.push_back((ts, id));
        true
    }

    /// Number of ids currently remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcfy_proto::NodeId;

    fn id(n: u64) -> CallId {
        CallId::new(NodeId::new(7), &format!("1700000000-{n}"), None)
    }

    #[test]
    fn remembers_and_forgets_oldest_first() {
        let mut ids = RecentIds::new(3);
        assert!(ids.insert(id(1), 1, 1));
        assert!(!ids.insert(id(1), 1, 1));
        assert!(ids.insert(id(2), 2, 2));
        assert!(ids.insert(id(3), 3, 3));
        assert!(ids.insert(id(4), 4, 4));
        assert_eq!(ids.len(), 3);
        assert!(!ids.contains(&id(1)));
        assert!(ids.contains(&id(2)) && ids.contains(&id(3)) && ids.contains(&id(4)));
    }

    #[test]
    fn a_second_busier_than_capacity_is_remembered_whole() {
        let mut ids = RecentIds::new(3);
        for n in 0..10 {
            assert!(ids.insert(id(n), 50, 50));
        }
        assert_eq!(ids.len(), 10, "every call of the cursor's second is kept");
        assert!((0..10).all(|n| ids.contains(&id(n))));
        // The cursor moves on: the old second is forgotten down to capacity.
        assert!(ids.insert(id(10), 51, 51));
        assert_eq!(ids.len(), 3);
        assert!(ids.contains(&id(10)) && !ids.contains(&id(0)));
    }

    #[test]
    fn zero_capacity_still_holds_one() {
        let mut ids = RecentIds::new(0);
        assert!(ids.insert(id(1), 1, 1));
        assert!(ids.contains(&id(1)));
        assert!(ids.insert(id(2), 2, 2));
        assert!(!ids.contains(&id(1)));
    }
}
