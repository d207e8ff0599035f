//! The statistics the bench prints, on known inputs (no timing here).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use kinko_bench::procfs::{CpuTicks, parse_stat, parse_vm_hwm};
use kinko_bench::stats::{Latency, PerMille, per_op, per_second, percentile_sorted, ratio};

/// Wikipedia, "Percentile", nearest-rank method, worked example 1: the ordered list
/// 15, 20, 35, 40, 50 has 5th percentile 15, 30th 20, 40th 20, 50th 35, 100th 50.
#[test]
fn nearest_rank_matches_the_worked_example() {
    let list = [15, 20, 35, 40, 50];
    let p = |q| percentile_sorted(&list, PerMille::new(q).unwrap()).unwrap();
    assert_eq!(p(50), 15); // 5th percentile
    assert_eq!(p(300), 20);
    assert_eq!(p(400), 20);
    assert_eq!(p(500), 35);
    assert_eq!(p(1000), 50);
}

/// Wikipedia, "Percentile", nearest-rank method, worked example 2: 3, 6, 7, 8, 8, 10, 13, 15,
/// 16, 20 has 25th percentile 7, 50th 8, 75th 15, 100th 20.
#[test]
fn nearest_rank_matches_the_second_worked_example() {
    let list = [3, 6, 7, 8, 8, 10, 13, 15, 16, 20];
    let p = |q| percentile_sorted(&list, PerMille::new(q).unwrap()).unwrap();
    assert_eq!(p(250), 7);
    assert_eq!(p(500), 8);
    assert_eq!(p(750), 15);
    assert_eq!(p(1000), 20);
}

#[test]
fn percentiles_of_one_to_a_thousand_milliseconds() {
    // 1..=1000 ms in a scrambled order (a permutation: 7 is coprime with 1000).
    let mut samples: Vec<Duration> = (0..1000u64)
        .map(|i| Duration::from_millis((i * 7) % 1000 + 1))
        .collect();
    let l = Latency::of(&mut samples).unwrap();
    // By definition: at least 50% of samples ≤ 500 ms, 99% ≤ 990 ms, 99.9% ≤ 999 ms.
    assert_eq!(l.count, 1000);
    assert_eq!(l.p50_ms, 500.0);
    assert_eq!(l.p99_ms, 990.0);
    assert_eq!(l.p999_ms, 999.0);
    assert_eq!(l.max_ms, 1000.0);
    assert!((l.mean_ms - 500.5).abs() < 1e-9, "{}", l.mean_ms); // (1 + 1000) / 2
}

#[test]
fn small_and_empty_sample_sets() {
    assert!(Latency::of(&mut []).is_none());
    let mut one = [Duration::from_micros(250)];
    let l = Latency::of(&mut one).unwrap();
    assert_eq!((l.p50_ms, l.p99_ms, l.p999_ms), (0.25, 0.25, 0.25));
    assert!(percentile_sorted::<u32>(&[], PerMille::P50).is_none());
    assert!(PerMille::new(0).is_none());
    assert!(PerMille::new(1001).is_none());
}

#[test]
fn rates_and_ratios() {
    assert_eq!(per_second(1500, 3.0), Some(500.0));
    assert_eq!(per_second(10, 0.0), None);
    assert_eq!(per_second(10, f64::NAN), None);
    // The reference: 6.8k/s raw on two sessions; 4,080/s is 60% of it.
    assert_eq!(ratio(4080.0, 6800.0), Some(0.6));
    assert_eq!(ratio(1.0, 0.0), None);
    assert_eq!(per_op(2.5, 1000), Some(0.0025));
    assert_eq!(per_op(2.5, 0), None);
}

/// A `/proc/PID/stat` line in the layout of proc(5): pid, (comm), state, ppid, pgrp, session,
/// tty_nr, tpgid, flags, minflt, cminflt, majflt, cmajflt, utime (14), stime (15), ...
/// The command name holds a space and a ')' to check fields are counted after the last ')'.
#[test]
fn stat_fields_14_and_15() {
    let line = "4242 (kin kod) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 567 0 0 20 0 9 0 100 \
                123456789 4000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
    let t = parse_stat(line).unwrap();
    assert_eq!(
        t,
        CpuTicks {
            user: 1234,
            system: 567
        }
    );
    assert!((t.seconds() - 18.01).abs() < 1e-9);
    let earlier = CpuTicks {
        user: 1000,
        system: 500,
    };
    assert!((t.seconds_since(&earlier) - 3.01).abs() < 1e-9);
    assert!(parse_stat("4242 no-parens S 1").is_err());
    assert!(parse_stat("4242 (short) S 1 2").is_err());
}

#[test]
fn vm_hwm_in_bytes() {
    let status = "Name:\tkinkod\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n";
    assert_eq!(parse_vm_hwm(status).unwrap(), 51200 * 1024);
    assert!(parse_vm_hwm("Name:\tkinkod\n").is_err());
    assert!(parse_vm_hwm("VmHWM:\t 12 MB\n").is_err());
}
