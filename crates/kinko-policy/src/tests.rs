//! Unit tests of the velocity ledger's prefix sums and of pending entries over it.
#![allow(clippy::unwrap_used)]

use jiff::Timestamp;
use kinko_intent::{Amount, Chain};
use proptest::prelude::*;

use crate::velocity::{VelocityHistory, VelocityLedger};
use crate::{AssetId, PolicyError};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap()
}

/// The naive answer: a linear scan.
fn scan(entries: &[(i64, u64)], since: i64) -> (u128, u64) {
    let e: Vec<_> = entries.iter().filter(|(at, _)| *at > since).collect();
    (e.iter().map(|(_, a)| u128::from(*a)).sum(), e.len() as u64)
}

proptest! {
    /// Window totals from the prefix sums equal a linear scan, for entries recorded in any
    /// order, before and after pruning.
    #[test]
    fn totals_equal_a_linear_scan(
        entries in proptest::collection::vec((0i64..1000, 0u64..1_000_000), 0..200),
        sinces in proptest::collection::vec(-1i64..1001, 1..20),
        prune in 0i64..1000,
    ) {
        let asset = AssetId::Native(Chain::Ethereum);
        let mut l = VelocityLedger::new();
        for (at, a) in &entries {
            l.record("k", &asset, t(*at), Amount::from_u64(*a)).unwrap();
        }
        prop_assert_eq!(l.len(), entries.len());
        for s in &sinces {
            let got = l.totals_since("k", &asset, t(*s)).unwrap();
            let (total, count) = scan(&entries, *s);
            prop_assert_eq!(got.total, Amount::from_u128(total));
            prop_assert_eq!(got.count, count);
        }
        l.prune_through(t(prune));
        let kept: Vec<(i64, u64)> = entries.iter().copied().filter(|(at, _)| *at > prune).collect();
        prop_assert_eq!(l.len(), kept.len());
        for s in &sinces {
            let got = l.totals_since("k", &asset, t(*s)).unwrap();
            let (total, count) = scan(&kept, *s);
            prop_assert_eq!(got.total, Amount::from_u128(total));
            prop_assert_eq!(got.count, count);
        }
        // Other keys and assets are separate series.
        prop_assert_eq!(l.totals_since("other", &asset, t(-1)).unwrap().count, 0);
        prop_assert_eq!(l.totals_since("k", &AssetId::Native(Chain::Bitcoin), t(-1)).unwrap().count, 0);
    }
}

#[test]
fn overflowing_totals_are_refused_and_leave_the_series_unchanged() {
    let asset = AssetId::Native(Chain::Ethereum);
    let mut l = VelocityLedger::new();
    l.record("k", &asset, t(10), Amount::MAX).unwrap();
    for at in [5, 20] {
        let e = l
            .record("k", &asset, t(at), Amount::from_u64(1))
            .unwrap_err();
        assert!(matches!(e, PolicyError::VelocityOverflow { .. }));
    }
    let got = l.totals_since("k", &asset, t(0)).unwrap();
    assert_eq!((got.total, got.count), (Amount::MAX, 1));
}

proptest! {
    /// A ledger with pending entries answers as one ledger holding both, and the base ledger
    /// is left as it was.
    #[test]
    fn pending_entries_count_as_if_recorded(
        committed in proptest::collection::vec((0i64..1000, 0u64..1_000_000), 0..100),
        pending in proptest::collection::vec((0i64..1000, 0u64..1_000_000, any::<bool>()), 0..20),
        sinces in proptest::collection::vec(-1i64..1001, 1..20),
    ) {
        let eth = AssetId::Native(Chain::Ethereum);
        let btc = AssetId::Native(Chain::Bitcoin);
        let mut base = VelocityLedger::new();
        for (at, a) in &committed {
            base.record("k", &eth, t(*at), Amount::from_u64(*a)).unwrap();
        }
        let before = base.len();
        let mut both = base.clone();
        let mut over = crate::WithPending::new(&base);
        for (at, a, other_asset) in &pending {
            let asset = if *other_asset { &btc } else { &eth };
            over.add("k", asset, t(*at), Amount::from_u64(*a));
            both.record("k", asset, t(*at), Amount::from_u64(*a)).unwrap();
        }
        for s in &sinces {
            for asset in [&eth, &btc] {
                prop_assert_eq!(
                    over.totals_since("k", asset, t(*s)).unwrap(),
                    both.totals_since("k", asset, t(*s)).unwrap()
                );
            }
            prop_assert_eq!(over.totals_since("other", &eth, t(*s)).unwrap().count, 0);
        }
        prop_assert_eq!(base.len(), before);
    }
}
