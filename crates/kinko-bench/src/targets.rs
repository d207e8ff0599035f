//! The performance targets (docs/benchmarks.md, "Targets"): each a measured value against a
//! goal, judged met, not met, or not measured in this run.

use serde::Serialize;

/// What a target asks of its measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    /// At least this much (ratios as fractions: 0.25 is 25%).
    AtLeast(f64),
    /// At most this much.
    AtMost(f64),
}

/// How a value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// A ratio, shown as a percentage.
    Percent,
    /// Milliseconds.
    Ms,
}

/// One target and what this run measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured, e.g. "ethereum-eip1559 end to end, 8 clients, vs raw C_Sign".
    pub metric: String,
    /// The goal.
    pub goal: Goal,
    /// The unit of goal and measurement.
    pub unit: Unit,
    /// The measurement, or None when this run did not measure it (and why).
    pub measured: Result<f64, String>,
}

impl Target {
    /// Whether the goal is met; None when not measured.
    pub fn met(&self) -> Option<bool> {
        let m = *self.measured.as_ref().ok()?;
        Some(match self.goal {
            Goal::AtLeast(g) => m >= g,
            Goal::AtMost(g) => m <= g,
        })
    }

    fn show(&self, v: f64) -> String {
        match self.unit {
            Unit::Percent => format!("{:.1}%", v * 100.0),
            Unit::Ms => format!("{v:.2} ms"),
        }
    }

    /// One Markdown table row: metric, goal, measured, verdict.
    pub fn row(&self) -> String {
        let goal = match self.goal {
            Goal::AtLeast(g) => format!("≥ {}", self.show(g)),
            Goal::AtMost(g) => format!("≤ {}", self.show(g)),
        };
        let (measured, verdict) = match (&self.measured, self.met()) {
            (Ok(v), Some(true)) => (self.show(*v), "met"),
            (Ok(v), _) => (self.show(*v), "**not met**"),
            (Err(why), _) => (format!("– ({why})"), "not measured"),
        };
        format!("| {} | {goal} | {measured} | {verdict} |", self.metric)
    }
}

/// The targets table, header included.
pub fn table(targets: &[Target]) -> String {
    let mut out = String::from("| target | goal | measured | verdict |\n|---|---|---:|---|\n");
    for t in targets {
        out.push_str(&t.row());
        out.push('\n');
    }
    let met = targets.iter().filter(|t| t.met() == Some(true)).count();
    let measured = targets.iter().filter(|t| t.measured.is_ok()).count();
    out.push_str(&format!(
        "\n{met} of {measured} measured targets met ({} not measured in this run).\n",
        targets.len() - measured
    ));
    out
}
