//! Faults: `kill -9` of kinkod at random moments while withdrawals and approvals flow. After
//! every restart: the log verifies (kinkod would not start otherwise); every signature a client
//! received is in the log; no request and no digest is signed twice; every velocity reservation
//! belongs to one authorized request, once; every approval the daemon acknowledged is still there.
//! Fast variant: 3 kills; `KINKO_SLOW_TESTS=1`: 20 kills over at least 500 withdrawals.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Verdict, audit_records, channel, eth_transfer, event_type, free_port, init,
    officer_approval, pb, replace_in, start, submission, try_channel, try_officer_approval,
    unique_label,
};

/// What clients were told by the daemon before it died.
#[derive(Default, Clone)]
pub(crate) struct Seen {
    /// Request id → the signed transaction a client received.
    pub(crate) signed: HashMap<String, Vec<u8>>,
    /// (request id, officer) of every approval the daemon acknowledged.
    pub(crate) approvals: HashSet<(String, String)>,
    /// Withdrawals the daemon accepted (submissions answered with a request).
    pub(crate) withdrawals_started: u64,
    /// Refusals the daemon answered with, by `code/REASON` (a dead daemon's transport errors
    /// are not counted: nothing answered).
    pub(crate) refused: std::collections::BTreeMap<String, u64>,
}

impl Seen {
    fn refusal(&mut self, status: &tonic::Status) {
        if status.code() == tonic::Code::Unknown || status.code() == tonic::Code::Cancelled {
            return; // transport: the daemon died or was cut off mid-call
        }
        *self
            .refused
            .entry(format!(
                "{:?}/{}",
                status.code(),
                kinko_tests::reason(status)
            ))
            .or_default() += 1;
    }
}

/// A tiny deterministic generator (the seed is printed, so a failure can be replayed).
pub(crate) struct Lcg(pub(crate) u64);
impl Lcg {
    pub(crate) fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// One withdrawal through `d`: submit, then both officers approve. Whether the daemon answered
/// every call (false: it refused one, or it is down).
pub(crate) async fn one_withdrawal(
    d_dir: &std::path::Path,
    d: &Daemon,
    nonce: u64,
    seen: &Mutex<Seen>,
) -> bool {
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let Ok(ch) = try_channel(d, "ledger").await else {
        return false;
    };
    let mut ledger = WithdrawalServiceClient::new(ch);
    let id = match ledger
        .submit_withdrawal(submission(
            d_dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(nonce, 1_000, hot),
            &format!("kill-{nonce}"),
        ))
        .await
    {
        Ok(r) => r.into_inner().request_id,
        Err(e) => {
            seen.lock().unwrap().refusal(&e);
            return false;
        }
    };
    seen.lock().unwrap().withdrawals_started += 1;
    for officer in ["alice", "bob"] {
        let Ok(ch) = try_channel(d, officer).await else {
            return false;
        };
        let Ok(approval) = try_officer_approval(d, officer, &id, Verdict::Approve).await else {
            return false;
        };
        match ApprovalServiceClient::new(ch).approve(approval).await {
            Ok(r) => {
                let r = r.into_inner();
                let mut s = seen.lock().unwrap();
                s.approvals.insert((id.clone(), officer.to_string()));
                if r.state == pb::RequestState::Signed as i32 {
                    s.signed.insert(id.clone(), r.signed_transaction);
                }
            }
            Err(e) => {
                seen.lock().unwrap().refusal(&e);
                return false;
            }
        }
    }
    true
}

/// Runs withdrawals on `workers` tasks until aborted; nonces from `next_nonce`. A worker whose
/// daemon does not answer waits 100 ms before the next try (no spinning against a dead port).
pub(crate) fn load(
    d: Arc<Daemon>,
    workers: u64,
    next_nonce: Arc<std::sync::atomic::AtomicU64>,
    seen: Arc<Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (d, next_nonce, seen) =
                (Arc::clone(&d), Arc::clone(&next_nonce), Arc::clone(&seen));
            tokio::spawn(async move {
                loop {
                    let n = next_nonce.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !one_withdrawal(&d.dir, &d, n, &seen).await {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect()
}

/// Every invariant, checked against the log (over the API) and the store.
pub(crate) async fn check(d: &Daemon, seen: &Seen) {
    // The daemons still finish requests the stopped clients left in flight, so every read is
    // ordered: the reservations first, then the log (a claim and its `signing_authorized` record
    // commit together, so each reservation read here has its record in the later log), then the
    // reservations again for the signatures in that log.
    let store = kinko_tests::open_store(&d.dir);
    let mut per_request: HashMap<String, u32> = HashMap::new();
    for r in store.all_reservations_since(0).unwrap() {
        *per_request.entry(r.request_id).or_default() += 1;
    }
    let records = audit_records(d).await;
    let mut produced: HashMap<String, Vec<u8>> = HashMap::new();
    let mut authorized: HashMap<String, u32> = HashMap::new();
    let mut digests = HashSet::new();
    for r in &records {
        let id = r["event"]["request_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event_type(r) {
            "signing_authorized" => *authorized.entry(id).or_default() += 1,
            "signature_produced" => {
                let tx = hex::decode(r["event"]["signed_payload"].as_str().unwrap()).unwrap();
                assert!(
                    produced.insert(id.clone(), tx).is_none(),
                    "request {id} signed twice"
                );
                for s in r["event"]["signatures"].as_array().unwrap() {
                    let digest = s["input"]["digest"].as_str().unwrap().to_string();
                    assert!(
                        digests.insert(digest.clone()),
                        "digest {digest} signed twice"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(
        authorized.values().all(|n| *n == 1),
        "a request was authorized twice"
    );
    for (id, tx) in &seen.signed {
        assert_eq!(
            produced.get(id),
            Some(tx),
            "a signature a client received ({id}) is not in the log"
        );
    }
    for (id, n) in &per_request {
        assert_eq!(*n, 1, "request {id} reserved velocity {n} times");
        if !authorized.contains_key(id) {
            // Killed between the durable claim and the `signing_authorized` record: nothing was
            // signed (the HSM runs only after that record), and recovery failed the request
            // explicitly. Its reservation and nonce stay claimed: fail closed.
            let r = store.get_request(id).unwrap();
            assert_eq!(
                r.state,
                kinko_store::RequestState::Failed,
                "a reservation without a signing authorization: {id}"
            );
            assert!(
                r.final_reason
                    .unwrap_or_default()
                    .contains("kinkod stopped")
            );
        }
    }
    let reserved_after: HashSet<String> = store
        .all_reservations_since(0)
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    for id in produced.keys() {
        assert!(
            reserved_after.contains(id),
            "signed {id} without a reservation"
        );
    }
    for (id, officer) in &seen.approvals {
        assert!(
            store
                .approvals(id)
                .unwrap()
                .iter()
                .any(|a| &a.officer_id == officer),
            "the acknowledged approval of {officer} on {id} is lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let (kills, min_withdrawals) = if crate::slow() { (20, 500) } else { (3, 0) };
    let seed = jiff::Timestamp::now().as_nanosecond() as u64;
    eprintln!("kill -9 test seed {seed}");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-kill"), free_port());
    init(&dir, &label, port, |dir| {
        replace_in(
            &dir.join("policy.toml"),
            "max_count = 50",
            "max_count = 100000",
        );
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next_nonce = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut round = 0;
    loop {
        let d = Arc::new(start(&dir, &label, port, false));
        let snapshot = seen.lock().unwrap().clone();
        check(&d, &snapshot).await;
        let started = seen.lock().unwrap().withdrawals_started;
        if round >= kills && started >= min_withdrawals {
            break;
        }
        let workers = load(
            Arc::clone(&d),
            4,
            Arc::clone(&next_nonce),
            Arc::clone(&seen),
        );
        // Let the load make progress (one more signature, or 20 s on a busy machine), then kill
        // at a random moment while requests are in flight.
        let before = seen.lock().unwrap().signed.len();
        for _ in 0..200 {
            if seen.lock().unwrap().signed.len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next(1200))).await;
        // kill -9, while requests are in flight.
        let pid = d.pid();
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for w in &workers {
            w.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        drop(d);
        round += 1;
    }
    let s = seen.lock().unwrap();
    eprintln!(
        "{round} kills, {} withdrawals accepted, {} signatures received, {} approvals acknowledged",
        s.withdrawals_started,
        s.signed.len(),
        s.approvals.len()
    );
    assert!(!s.signed.is_empty(), "the load signed nothing");
    // The auditor's offline verifier agrees: structure, checkpoints and every quorum.
    crate::replicas::verify_offline(
        &dir,
        &tmp.path().join("exported"),
        &start_vkey(&dir, &label, port),
    );
}

/// Starts kinkod once more to read its log key, and stops it (the verifier reads the files).
fn start_vkey(dir: &std::path::Path, label: &str, port: u16) -> String {
    let d = start(dir, label, port, false);
    d.vkey.clone()
}

/// A crash at each step between two durable records of the signing path (a crash point, see
/// crates/kinkod/src/failpoint.rs), then a restart: the request ends as the log says. Signed when
/// `signature_produced` is in the log (its signed transaction may be out: reporting it failed
/// would invite a second valid transaction), failed otherwise; either way its nonce stays
/// claimed and the log verifies offline.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_any_two_durable_steps_recovers_to_what_the_log_says() {
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    for point in [
        "after_signing_authorized",
        "after_hsm_signed",
        "after_signature_produced",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (label, port) = (unique_label("crash"), free_port());
        init(&dir, &label, port, |_| {});
        let d =
            kinko_tests::start_with_env(&dir, &label, port, false, &[("KINKO_FAILPOINT", point)]);
        let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(0, 1_000, hot),
                "crash-1",
            ))
            .await
            .unwrap()
            .into_inner();
        let id = r.request_id.clone();
        for officer in ["alice", "bob"] {
            let a = officer_approval(&d, officer, &id, Verdict::Approve).await;
            let result = ApprovalServiceClient::new(channel(&d, officer).await)
                .approve(a)
                .await;
            if officer == "bob" {
                // The daemon died at the crash point while answering.
                assert!(result.is_err(), "{point}: {result:?}");
            } else {
                result.unwrap();
            }
        }
        d.kill9();

        let d = start(&dir, &label, port, false);
        let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
        let now = ledger
            .get_request(pb::RequestId {
                request_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let records = audit_records(&d).await;
        let of = |t: &str| -> Vec<&serde_json::Value> {
            records
                .iter()
                .filter(|r| event_type(r) == t && r["event"]["request_id"] == id.as_str())
                .collect()
        };
        match point {
            "after_signature_produced" => {
                assert_eq!(
                    now.state,
                    pb::RequestState::Signed as i32,
                    "{point}: {now:?}"
                );
                let produced = of("signature_produced");
                assert_eq!(produced.len(), 1, "{point}");
                let logged =
                    hex::decode(produced[0]["event"]["signed_payload"].as_str().unwrap()).unwrap();
                assert_eq!(now.signed_transaction, logged, "{point}");
                assert_eq!(
                    now.transaction_id,
                    produced[0]["event"]["transaction_id"].as_str().unwrap(),
                    "{point}"
                );
                assert!(now.transaction_id.starts_with("0x"), "{now:?}");
            }
            _ => {
                assert_eq!(
                    now.state,
                    pb::RequestState::Failed as i32,
                    "{point}: {now:?}"
                );
                assert!(
                    now.final_reason.contains("no signature left the signer"),
                    "{point}: {now:?}"
                );
                assert!(now.signed_transaction.is_empty(), "{point}");
                assert!(of("signature_produced").is_empty(), "{point}");
                // The claim and its record are one commit: never one without the other.
                assert_eq!(of("signing_authorized").len(), 1, "{point}");
                let failed = of("refusal");
                assert!(
                    failed
                        .iter()
                        .any(|r| r["event"]["code"] == "SIGNING_FAILED"),
                    "{point}: the failure is in the log: {failed:?}"
                );
            }
        }
        // The nonce stays claimed: the same transaction under a new request is never signed.
        let again = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(0, 1_000, hot),
                "crash-2",
            ))
            .await
            .unwrap()
            .into_inner();
        ApprovalServiceClient::new(channel(&d, "alice").await)
            .approve(officer_approval(&d, "alice", &again.request_id, Verdict::Approve).await)
            .await
            .unwrap();
        let err = ApprovalServiceClient::new(channel(&d, "bob").await)
            .approve(officer_approval(&d, "bob", &again.request_id, Verdict::Approve).await)
            .await
            .unwrap_err();
        assert_eq!(
            kinko_tests::reason(&err),
            "REPLAY_CONFLICT",
            "{point}: {err:?}"
        );
        let copy = tmp.path().join("audit-copy");
        crate::drill::fetch_and_verify(&d, &d.addr, &copy, &dir);
    }
}
