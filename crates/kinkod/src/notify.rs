//! systemd's notification protocol (`sd_notify(3)`), without libsystemd: one datagram per
//! message to the socket in `NOTIFY_SOCKET`. kinkod says `READY=1` once it serves (after its log
//! verified), pings `WATCHDOG=1` at half the `WatchdogSec=` interval, `RELOADING=1` around a
//! SIGHUP reload and `STOPPING=1` when it shuts down. Without `NOTIFY_SOCKET` every call does
//! nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where to send notifications, if systemd asked for them.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?;
        let to = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes()).ok()?
        } else {
            SocketAddr::from_pathname(path).ok()?
        };
        match UnixDatagram::unbound() {
            Ok(socket) => Some(Notifier { socket, to }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot notify systemd");
                None
            }
        }
    }

    /// Sends one notification (`KEY=value` lines).
    pub(crate) fn send(&self, msg: &str) {
        if let Err(e) = self.socket.send_to_addr(msg.as_bytes(), &self.to) {
            tracing::warn!(error = %e, msg, "notifying systemd failed");
        }
    }
}

/// Sends `msg` when systemd asked for notifications.
pub(crate) fn notify(msg: &str) {
    if let Some(n) = Notifier::from_env() {
        n.send(msg);
    }
}

/// The watchdog interval systemd expects pings within (`WATCHDOG_USEC`, for this process
/// when `WATCHDOG_PID` is set).
pub(crate) fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog at half its interval for as long as the runtime runs its tasks: a
/// kinkod whose runtime is stuck stops pinging and systemd restarts it. (A store or HSM that
/// does not answer is not a reason for a restart: kinkod refuses to sign and says so.)
pub(crate) fn spawn_watchdog() {
    let (Some(every), Some(n)) = (watchdog_interval(), Notifier::from_env()) else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every / 2);
        loop {
            tick.tick().await;
            n.send("WATCHDOG=1");
        }
    });
}
