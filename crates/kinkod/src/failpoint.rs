//! Crash points for the fault tests. With `KINKO_FAILPOINT=<name>` in its environment, kinkod
//! aborts the process — as `kill -9` would: no destructor, no flush — the first time a request
//! reaches the named step of the signing path, so a test can stop it exactly between two
//! durable steps and check what a restart makes of it. A crash point only ever stops the
//! daemon; it never skips a check. `KINKO_FAILPOINT=pause:NAME` holds the request at NAME for
//! 8 s instead (for a test in which another replica acts meanwhile); `slow:NAME` holds every
//! request there for 0.5 s (a slow disk: concurrent claims then meet in one group commit).
//! Never set it outside tests.
//!
//! | name | where |
//! |---|---|
//! | `before_claim` | the signing-time authorization holds as this replica sees it (quorum, policy, velocity); nothing is committed (the claim's transaction checks freeze, policy and velocity again) |
//! | `in_claim_transaction` | inside the claim's transaction (a blocking thread, the store's write lock held), before its checks; nothing of it is committed |
//! | `after_signing_authorized` | the claim (nonces, digests, velocity) and `signing_authorized` are committed (one transaction); the HSM has not been asked |
//! | `after_hsm_signed` | the HSM signed and the transaction is finalized; nothing of it is committed |
//! | `after_signature_produced` | `signature_produced` and the signed state are committed (one transaction); the client has no answer yet |
//! | `before_install_commit` | a policy installation (governance) is about to commit its records and the installation; nothing of it is committed |

use std::sync::OnceLock;

/// The crash point names, in the order a signing reaches them, then the others.
pub(crate) const POINTS: [&str; 6] = [
    "before_claim",
    "in_claim_transaction",
    "after_signing_authorized",
    "after_hsm_signed",
    "after_signature_produced",
    "before_install_commit",
];

/// Aborts the process if `name` is the configured crash point; with `KINKO_FAILPOINT=pause:NAME`
/// holds the request there for 8 s instead (another replica can act meanwhile), with
/// `slow:NAME` 0.5 s each time.
pub(crate) fn hit(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    let point = POINT.get_or_init(|| {
        let p = std::env::var("KINKO_FAILPOINT").ok()?;
        let name = p.trim_start_matches("pause:").trim_start_matches("slow:");
        if POINTS.contains(&name) {
            tracing::warn!(point = p, "crash point armed (a test set KINKO_FAILPOINT)");
            Some(p)
        } else {
            tracing::error!(point = p, "unknown KINKO_FAILPOINT ignored");
            None
        }
    });
    match point.as_deref() {
        Some(p) if p == name => {
            eprintln!("kinkod: crash point {name} reached: aborting");
            std::process::abort();
        }
        Some(p) if p.strip_prefix("pause:") == Some(name) => {
            eprintln!("kinkod: pause point {name} reached: holding 8 s");
            std::thread::sleep(std::time::Duration::from_secs(8));
        }
        Some(p) if p.strip_prefix("slow:") == Some(name) => {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        _ => {}
    }
}
