//! The state of a call's windows after a decision, held inline.

use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use smallvec::SmallVec;

use crate::window::WindowKind;

/// The state of one window after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUsage {
    /// The window kind.
    pub kind: WindowKind,
    /// The maximum number of units the window allows.
    pub limit: u64,
    /// The units still available in the window after the decision.
    pub remaining: u64,
    /// When the window ends and its counter starts again from zero.
    pub reset_at: DateTime<Utc>,
}

/// How many windows a decision stores without allocating: minute, hour and day, the usual
/// limits. A decision with week or month limits too keeps its windows on the heap.
const INLINE: usize = 3;

/// The state of every limited window of a decision, shortest first: at most one window of each
/// kind.
///
/// Up to three windows are held inline rather than on the heap, so that a decision with the
/// usual limits allocates nothing and stays cheap to move. Reads like a slice of
/// [`WindowUsage`] (it dereferences to one) and is built from an iterator:
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use highway_ratelimit::store::{WindowUsage, Windows};
/// use highway_ratelimit::window::WindowKind;
///
/// let minute = WindowUsage {
///     kind: WindowKind::Minute,
///     limit: 10,
///     remaining: 9,
///     reset_at: Utc.with_ymd_and_hms(2026, 11, 23, 9, 1, 0).unwrap(),
/// };
/// let windows: Windows = [minute].into_iter().collect();
/// assert_eq!(windows.len(), 1);
/// assert_eq!(windows[0].remaining, 9);
/// assert!(windows.iter().all(|window| window.limit == 10));
/// ```
#[derive(Clone)]
pub struct Windows(SmallVec<[WindowUsage; INLINE]>);

impl Windows {
    /// Returns an empty list.
    pub const fn new() -> Self {
        Windows(SmallVec::new_const())
    }

    /// Returns an empty list with room for `capacity` windows, which allocates only when
    /// `capacity` is more than three.
    pub fn with_capacity(capacity: usize) -> Self {
        Windows(SmallVec::with_capacity(capacity))
    }

    /// Appends the state of a window.
    #[inline]
    pub fn push(&mut self, usage: WindowUsage) {
        self.0.push(usage);
    }

    /// Returns the windows as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[WindowUsage] {
        &self.0
    }
}

impl Default for Windows {
    fn default() -> Self {
        Windows::new()
    }
}

impl Deref for Windows {
    type Target = [WindowUsage];

    fn deref(&self) -> &[WindowUsage] {
        self.as_slice()
    }
}

impl AsRef<[WindowUsage]> for Windows {
    fn as_ref(&self) -> &[WindowUsage] {
        self.as_slice()
    }
}

impl PartialEq for Windows {
    fn eq(&self, other: &Windows) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Windows {}

impl PartialEq<[WindowUsage]> for Windows {
    fn eq(&self, other: &[WindowUsage]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<WindowUsage>> for Windows {
    fn eq(&self, other: &Vec<WindowUsage>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl FromIterator<WindowUsage> for Windows {
    fn from_iter<I: IntoIterator<Item = WindowUsage>>(iter: I) -> Self {
        Windows(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Windows {
    type Item = &'a WindowUsage;
    type IntoIter = std::slice::Iter<'a, WindowUsage>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl From<Windows> for Vec<WindowUsage> {
    fn from(windows: Windows) -> Vec<WindowUsage> {
        windows.0.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn usage(kind: WindowKind, remaining: u64) -> WindowUsage {
        WindowUsage {
            kind,
            limit: 100,
            remaining,
            reset_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn keeps_kinds_in_order() {
        for count in 0..=WindowKind::ALL.len() {
            let windows: Windows = WindowKind::ALL[..count]
                .iter()
                .enumerate()
                .map(|(index, &kind)| usage(kind, index as u64))
                .collect();
            assert_eq!(windows.len(), count);
            assert_eq!(windows.0.spilled(), count > INLINE);
            let kinds: Vec<WindowKind> = windows.iter().map(|window| window.kind).collect();
            assert_eq!(kinds, WindowKind::ALL[..count]);
            let remaining: Vec<u64> = Vec::from(windows.clone())
                .into_iter()
                .map(|window| window.remaining)
                .collect();
            assert_eq!(remaining, (0..count as u64).collect::<Vec<_>>());
        }
    }

    #[test]
    fn compares_only_the_windows_held() {
        let mut left = Windows::new();
        left.push(usage(WindowKind::Day, 3));
        let mut right: Windows = [usage(WindowKind::Hour, 1)].into_iter().collect();
        assert_ne!(left, right);
        right = [usage(WindowKind::Day, 3)].into_iter().collect();
        assert_eq!(left, right);
        assert_eq!(left, vec![usage(WindowKind::Day, 3)]);
        assert!(Windows::new().is_empty());
        assert_eq!(format!("{:?}", Windows::new()), "[]");
    }

    #[test]
    fn five_windows_equal_their_vec() {
        let all: Vec<WindowUsage> = WindowKind::ALL.map(|kind| usage(kind, 1)).to_vec();
        let spilled: Windows = all.iter().copied().collect();
        assert!(spilled.0.spilled(), "five windows are on the heap");
        assert_eq!(spilled, all);
    }

    /// `SmallVec::from_vec` moves a vector of at most three places inline, so a list on the heap
    /// with fewer windows than `INLINE` is built from `with_capacity` here.
    #[test]
    fn short_heap_list_equals_inline() {
        let all: Vec<WindowUsage> = WindowKind::ALL.map(|kind| usage(kind, 1)).to_vec();
        let mut spilled = Windows::with_capacity(WindowKind::ALL.len());
        spilled.push(all[0]);
        spilled.push(all[1]);
        let inline: Windows = all[..2].iter().copied().collect();

        assert!(spilled.0.spilled(), "the list is on the heap");
        assert!(!inline.0.spilled(), "the list is inline");
        assert_eq!(spilled, inline);
        assert_eq!(format!("{spilled:?}"), format!("{inline:?}"));
        assert_eq!(spilled.clone(), inline);
        assert_eq!(Vec::from(spilled), Vec::from(inline));
    }

    #[test]
    fn with_capacity_allocates_past_three() {
        for capacity in 0..=WindowKind::ALL.len() {
            let windows = Windows::with_capacity(capacity);
            assert!(windows.is_empty(), "capacity {capacity}");
            assert_eq!(
                windows.0.spilled(),
                capacity > INLINE,
                "capacity {capacity}"
            );
        }
    }
}
