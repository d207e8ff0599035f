//! The targets' verdicts and the table the bench prints.
#![allow(clippy::unwrap_used, missing_docs)]

use kinko_bench::targets::{Goal, Target, Unit, table};

fn t(goal: Goal, unit: Unit, measured: Result<f64, String>) -> Target {
    Target {
        metric: "m".into(),
        goal,
        unit,
        measured,
    }
}

#[test]
fn verdicts_follow_the_goal_at_its_edge() {
    assert_eq!(
        t(Goal::AtLeast(0.25), Unit::Percent, Ok(0.25)).met(),
        Some(true)
    );
    assert_eq!(
        t(Goal::AtLeast(0.25), Unit::Percent, Ok(0.249)).met(),
        Some(false)
    );
    assert_eq!(t(Goal::AtMost(1.0), Unit::Ms, Ok(1.0)).met(), Some(true));
    assert_eq!(t(Goal::AtMost(1.0), Unit::Ms, Ok(1.01)).met(), Some(false));
    assert_eq!(t(Goal::AtMost(1.0), Unit::Ms, Err("x".into())).met(), None);
}

#[test]
fn the_table_says_what_was_met_missed_and_not_measured() {
    let targets = [
        t(Goal::AtLeast(0.25), Unit::Percent, Ok(0.034)),
        t(Goal::AtMost(5.0), Unit::Ms, Ok(4.2)),
        t(
            Goal::AtLeast(0.8),
            Unit::Percent,
            Err("run with --postgres".into()),
        ),
    ];
    let text = table(&targets);
    assert!(
        text.contains("| m | ≥ 25.0% | 3.4% | **not met** |"),
        "{text}"
    );
    assert!(text.contains("| m | ≤ 5.00 ms | 4.20 ms | met |"), "{text}");
    assert!(
        text.contains("| m | ≥ 80.0% | – (run with --postgres) | not measured |"),
        "{text}"
    );
    assert!(
        text.contains("1 of 2 measured targets met (1 not measured in this run)."),
        "{text}"
    );
}
