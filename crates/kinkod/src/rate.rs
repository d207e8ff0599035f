//! A token bucket: the per-principal call rate (`auth`) and the rate of logged refusals
//! (`engine`). A leaf module.

use std::time::Instant;

/// A token bucket: `rate` takes per second on average, bursts up to `burst`.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens.
    pub(crate) fn full(burst: f64) -> Bucket {
        Bucket {
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Refills at `rate` per second up to `burst`, then takes one token if there is one.
    pub(crate) fn take(&mut self, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
