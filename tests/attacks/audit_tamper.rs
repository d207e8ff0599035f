//! The audit log edited, truncated or replaced while kinkod is down.
