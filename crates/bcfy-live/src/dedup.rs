//! A bounded memory of recently dispatched call ids.

use std::collections::{HashSet, VecDeque};

use bcfy_proto::CallId;

/// Remembers the last `capacity` call ids that were dispatched, forgetting the oldest first.
///
/// The cursor overlaps the previous poll by one second, so a poll returns again the calls of
/// that last second; this set is what drops them. It only needs to hold the ids of about one
/// second of traffic, and its memory never grows past `capacity` entries.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    set: HashSet<CallId>,
    order: VecDeque<CallId>,
}

impl RecentIds {
    /// An empty memory holding at most `capacity` ids (at least one).
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

    /// Records `id`; returns `false` when it was already known.
    pub(crate) fn insert(&mut self, id: CallId) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
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
        assert!(ids.insert(id(1)));
        assert!(!ids.insert(id(1)));
        assert!(ids.insert(id(2)));
        assert!(ids.insert(id(3)));
        assert!(ids.insert(id(4)));
        assert_eq!(ids.len(), 3);
        assert!(!ids.contains(&id(1)));
        assert!(ids.contains(&id(2)) && ids.contains(&id(3)) && ids.contains(&id(4)));
    }

    #[test]
    fn zero_capacity_still_holds_one() {
        let mut ids = RecentIds::new(0);
        assert!(ids.insert(id(1)));
        assert!(ids.contains(&id(1)));
        assert!(ids.insert(id(2)));
        assert!(!ids.contains(&id(1)));
    }
}
