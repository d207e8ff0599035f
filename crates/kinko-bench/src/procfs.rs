//! Readers for `/proc/PID/stat` (CPU time) and `/proc/PID/status` (peak RSS), per proc(5).

use crate::BenchError;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`. Linux reports them in
/// `USER_HZ`, which is 100 on every architecture Linux supports for user space (proc(5),
/// `sysconf(_SC_CLK_TCK)`); the bench forbids `unsafe` and so does not call `sysconf` itself.
pub const USER_HZ: u64 = 100;

/// User and system CPU time of a process, all threads together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    /// `utime`, field 14, in clock ticks.
    pub user: u64,
    /// `stime`, field 15, in clock ticks.
    pub system: u64,
}

impl CpuTicks {
    /// User plus system time, seconds.
    pub fn seconds(&self) -> f64 {
        self.user.saturating_add(self.system) as f64 / USER_HZ as f64
    }

    /// The CPU time used between `earlier` and `self`, seconds (0 if the counters went back).
    pub fn seconds_since(&self, earlier: &CpuTicks) -> f64 {
        let user = self.user.saturating_sub(earlier.user);
        let system = self.system.saturating_sub(earlier.system);
        user.saturating_add(system) as f64 / USER_HZ as f64
    }
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted after the **last** `)`.
pub fn parse_stat(text: &str) -> Result<CpuTicks, BenchError> {
    let (_, rest) = text
        .rsplit_once(')')
        .ok_or_else(|| BenchError::Proc("stat: no ')' after the command name".into()))?;
    // After the name come field 3 (state) onwards: utime is field 14, stime field 15, i.e. the
    // 12th and 13th after the name (0-based 11 and 12).
    let mut fields = rest.split_ascii_whitespace();
    let mut take = |n: usize, name: &str| -> Result<u64, BenchError> {
        fields
            .nth(n)
            .ok_or_else(|| BenchError::Proc(format!("stat: no {name} field")))?
            .parse::<u64>()
            .map_err(|e| BenchError::Proc(format!("stat: {name}: {e}")))
    };
    let user = take(11, "utime")?;
    let system = take(0, "stime")?;
    Ok(CpuTicks { user, system })
}

/// Parses the `VmHWM:` (peak resident set size) line of `/proc/PID/status`, in bytes.
pub fn parse_vm_hwm(text: &str) -> Result<u64, BenchError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or_else(|| BenchError::Proc("status: no VmHWM line".into()))?;
    let mut parts = line.split_ascii_whitespace();
    let kib: u64 = parts
        .next()
        .ok_or_else(|| BenchError::Proc("status: VmHWM has no value".into()))?
        .parse()
        .map_err(|e| BenchError::Proc(format!("status: VmHWM: {e}")))?;
    match parts.next() {
        Some("kB") => kib
            .checked_mul(1024)
            .ok_or_else(|| BenchError::Proc("status: VmHWM overflows".into())),
        other => Err(BenchError::Proc(format!(
            "status: VmHWM unit {other:?}, expected kB"
        ))),
    }
}

/// CPU time of process `pid` (`"self"` for this process).
pub fn cpu(pid: &str) -> Result<CpuTicks, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(path, e))?;
    parse_stat(&text)
}

/// Peak resident set size of process `pid`, bytes.
pub fn peak_rss(pid: &str) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(path, e))?;
    parse_vm_hwm(&text)
}

/// Resets the peak RSS of `pid` to its current RSS (writes 5 to `/proc/PID/clear_refs`,
/// proc(5), Linux ≥ 4.0), so the next [`peak_rss`] is the peak of one phase.
pub fn reset_peak_rss(pid: &str) -> Result<(), BenchError> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, b"5").map_err(|e| BenchError::io(path, e))
}
