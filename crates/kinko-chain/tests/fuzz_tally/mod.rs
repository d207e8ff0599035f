//! Counts what a fuzz corpus replay exercised, so that a replay whose inputs all take one path
//! (every input refused, say, so that no invariant of a decoded intent is ever checked) fails
//! instead of passing vacuously.

/// Inputs replayed through a body's `check`, and how many of them it accepted (decoded). The
/// rest were refused, and the body asserts each refusal is a typed error with a message.
pub(crate) struct Tally {
    check: fn(&[u8]) -> bool,
    pub(crate) inputs: usize,
    pub(crate) decoded: usize,
}

impl Tally {
    pub(crate) fn new(check: fn(&[u8]) -> bool) -> Self {
        Self {
            check,
            inputs: 0,
            decoded: 0,
        }
    }

    pub(crate) fn run(&mut self, data: &[u8]) {
        self.inputs += 1;
        if (self.check)(data) {
            self.decoded += 1;
        }
    }

    /// Both paths ran: at least `at_least_decoded` inputs decoded (their invariants were
    /// checked), and at least one was refused (its error was checked).
    pub(crate) fn assert_both_paths(&self, at_least_decoded: usize) {
        assert!(
            self.decoded >= at_least_decoded,
            "only {} of {} inputs decoded, expected at least {at_least_decoded}",
            self.decoded,
            self.inputs
        );
        assert!(
            self.decoded < self.inputs,
            "all {} inputs decoded: no refusal was checked",
            self.inputs
        );
    }
}
