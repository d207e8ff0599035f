//! What was already signed: the velocity history a decision reads.
//!
//! The history is keyed by (signing key, asset). [`VelocityLedger`] keeps each series sorted by
//! time with prefix sums, so a window total is two binary searches and one subtraction —
//! O(log n), no scan — however long the history is. The store can implement
//! [`VelocityHistory`] over its own tables instead, as long as it answers the same question.

use std::collections::HashMap;

use jiff::Timestamp;
use kinko_intent::Amount;

use crate::error::PolicyError;
use crate::model::AssetId;

/// The most entries one (key, asset) series of a [`VelocityLedger`] holds.
pub const MAX_ENTRIES_PER_SERIES: usize = 10_000_000;

/// The total and count of what was signed in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotals {
    /// Sum of the amounts, in base units.
    pub total: Amount,
    /// Number of signatures.
    pub count: u64,
}

/// The history could not be read; evaluation then denies (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("velocity history unavailable: {0}")]
pub struct HistoryUnavailable(pub String);

/// Answers "how much was signed with this key, for this asset, after this instant?".
pub trait VelocityHistory {
    /// Total and count of entries for `(key, asset)` with a time strictly after `since`
    /// (including any dated in the future, so a clock step back cannot hide them).
    fn totals_since(
        &self,
        key: &str,
        asset: &AssetId,
        since: Timestamp,
    ) -> Result<WindowTotals, HistoryUnavailable>;
}

/// One (key, asset) series: times ascending, `prefix[i]` = sum of the first `i` amounts.
// INVARIANT: times is sorted ascending; prefix.len() == times.len() + 1; prefix[0] == 0;
// prefix is non-decreasing and prefix[i+1] - prefix[i] is the i-th amount.
#[derive(Debug, Clone)]
struct Series {
    times: Vec<Timestamp>,
    prefix: Vec<Amount>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            times: Vec::new(),
            prefix: vec![Amount::ZERO],
        }
    }
}

impl Series {
    fn last_total(&self) -> Amount {
        self.prefix.last().copied().unwrap_or(Amount::ZERO)
    }

    fn totals_since(&self, since: Timestamp) -> WindowTotals {
        let n = self.times.len();
        let idx = self.times.partition_point(|t| *t <= since);
        let at = self.prefix.get(idx).copied().unwrap_or(Amount::ZERO);
        WindowTotals {
            // Non-decreasing prefix sums: the subtraction cannot underflow.
            total: self.last_total().checked_sub(at).unwrap_or(Amount::ZERO),
            count: u64::try_from(n.saturating_sub(idx)).unwrap_or(u64::MAX),
        }
    }

    /// Inserts keeping the order; appends are O(1), a late entry rebuilds the suffix.
    fn insert(&mut self, at: Timestamp, amount: Amount) -> Option<()> {
        // The new grand total bounds every prefix sum: if it fits, nothing below can overflow,
        // and a failure here leaves the series unchanged.
        let grand = self.last_total().checked_add(amount)?;
        let pos = self.times.partition_point(|t| *t <= at);
        if pos == self.times.len() {
            self.times.push(at);
            self.prefix.push(grand);
            return Some(());
        }
        let suffix: Vec<Amount> = self
            .prefix
            .windows(2)
            .skip(pos)
            .filter_map(|w| match w {
                [lo, hi] => hi.checked_sub(*lo),
                _ => None,
            })
            .collect();
        self.times.insert(pos, at);
        self.prefix.truncate(pos + 1);
        let mut running = self.prefix.last().copied().unwrap_or(Amount::ZERO);
        for a in std::iter::once(amount).chain(suffix) {
            running = running.checked_add(a)?;
            self.prefix.push(running);
        }
        Some(())
    }
}

/// An in-memory velocity history with O(log n) window queries.
#[derive(Debug, Clone, Default)]
pub struct VelocityLedger {
    series: HashMap<String, HashMap<AssetId, Series>>,
}

impl VelocityLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a signature of `amount` with `key` for `asset` at `at`.
    pub fn record(
        &mut self,
        key: &str,
        asset: &AssetId,
        at: Timestamp,
        amount: Amount,
    ) -> Result<(), PolicyError> {
        let series = self
            .series
            .entry(key.to_string())
            .or_default()
            .entry(asset.clone())
            .or_default();
        if series.times.len() >= MAX_ENTRIES_PER_SERIES {
            return Err(PolicyError::VelocityFull {
                key: key.to_string(),
                asset: asset.to_string(),
            });
        }
        series
            .insert(at, amount)
            .ok_or_else(|| PolicyError::VelocityOverflow {
                key: key.to_string(),
                asset: asset.to_string(),
            })
    }

    /// Drops entries at or before `before` (older than every window the policy uses), keeping
    /// the totals of the rest exact.
    pub fn prune_through(&mut self, before: Timestamp) {
        for by_asset in self.series.values_mut() {
            for s in by_asset.values_mut() {
                let idx = s.times.partition_point(|t| *t <= before);
                if idx == 0 {
                    continue;
                }
                let base = s.prefix.get(idx).copied().unwrap_or(Amount::ZERO);
                s.times.drain(..idx);
                s.prefix.drain(..idx);
                for p in &mut s.prefix {
                    *p = p.checked_sub(base).unwrap_or(Amount::ZERO);
                }
            }
        }
    }

    /// Number of entries across all series.
    pub fn len(&self) -> usize {
        self.series
            .values()
            .flat_map(|m| m.values())
            .map(|s| s.times.len())
            .sum()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VelocityHistory for VelocityLedger {
    fn totals_since(
        &self,
        key: &str,
        asset: &AssetId,
        since: Timestamp,
    ) -> Result<WindowTotals, HistoryUnavailable> {
        Ok(self
            .series
            .get(key)
            .and_then(|m| m.get(asset))
            .map(|s| s.totals_since(since))
            .unwrap_or_default())
    }
}

/// A history plus entries not (yet) in it: what a signing claim checks against inside its
/// transaction — the shared ledger of committed signatures, and the reservations made since
/// the ledger's last look, some of them by earlier claims of the same uncommitted transaction.
/// The ledger itself is never changed with entries that may still roll back.
pub struct WithPending<'a> {
    base: &'a dyn VelocityHistory,
    pending: Vec<(String, AssetId, Timestamp, Amount)>,
}

impl<'a> WithPending<'a> {
    /// `base` and nothing pending yet.
    pub fn new(base: &'a dyn VelocityHistory) -> Self {
        WithPending {
            base,
            pending: Vec::new(),
        }
    }

    /// Adds an entry of `amount` with `key` for `asset` at `at`.
    pub fn add(&mut self, key: &str, asset: &AssetId, at: Timestamp, amount: Amount) {
        self.pending
            .push((key.to_string(), asset.clone(), at, amount));
    }
}

impl std::fmt::Debug for WithPending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithPending")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl VelocityHistory for WithPending<'_> {
    fn totals_since(
        &self,
        key: &str,
        asset: &AssetId,
        since: Timestamp,
    ) -> Result<WindowTotals, HistoryUnavailable> {
        let mut t = self.base.totals_since(key, asset, since)?;
        for (k, a, at, amount) in &self.pending {
            if k == key && a == asset && *at > since {
                t.total = t.total.checked_add(*amount).ok_or_else(|| {
                    HistoryUnavailable(format!("velocity total of {key} in {asset} overflows"))
                })?;
                t.count = t.count.saturating_add(1);
            }
        }
        Ok(t)
    }
}

/// A history with nothing in it (for `kinko policy explain` without a store).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyHistory;

impl VelocityHistory for EmptyHistory {
    fn totals_since(
        &self,
        _: &str,
        _: &AssetId,
        _: Timestamp,
    ) -> Result<WindowTotals, HistoryUnavailable> {
        Ok(WindowTotals::default())
    }
}
