//! Two kinkod replicas on one PostgreSQL database (and one HSM token): clients spread over both.
//! Safety never rests on which replica answers: a nonce signed through one is refused through
//! the other, a freeze through one stops the other, the velocity limit counts every replica's
//! signatures, one replica's death leaves the other serving the same history, and the log —
//! one sequence written by both — verifies offline. Needs the test cluster
//! (`KINKO_TEST_PG_URL`, which scripts/test-all.sh sets); without it the test fails unless
//! `KINKO_ALLOW_SKIP=postgres` says to skip it knowingly.

use std::path::Path;
use std::process::Command;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, Subject, Verdict, bin, channel, eth_transfer, export_log, free_port, governance,
    officer_approval, pb, reason, replace_in, start, submission, unique_label,
};

/// Exports the log of `dir`'s store into `out` and verifies it offline with `kinko audit verify`.
pub(crate) fn verify_offline(dir: &Path, out: &Path, vkey: &str) {
    let exported = export_log(dir, out);
    let out = Command::new(bin("kinko"))
        .args(["audit", "verify"])
        .arg(&exported)
        .args(["--log-key", vkey])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A withdrawal of 1,000 wei to the development hot wallet with `nonce`, through `d`.
pub(crate) async fn try_submit(
    d: &Daemon,
    nonce: u64,
    idem: &str,
) -> Result<pb::Request, tonic::Status> {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                nonce,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            idem,
        ))
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) async fn submit(d: &Daemon, nonce: u64, idem: &str) -> pb::Request {
    try_submit(d, nonce, idem).await.unwrap()
}

async fn approve(d: &Daemon, officer: &str, id: &str) -> Result<pb::Request, tonic::Status> {
    ApprovalServiceClient::new(channel(d, officer).await)
        .approve(officer_approval(d, officer, id, Verdict::Approve).await)
        .await
        .map(tonic::Response::into_inner)
}

async fn get(d: &Daemon, id: &str) -> pb::Request {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Two data directories on one fresh PostgreSQL database and one token (B a copy of A with
/// another port); `max_count` is the daily limit of the development policy's hot-wallet rule.
pub(crate) struct Pair {
    pub(crate) url: String,
    pub(crate) label: String,
    pub(crate) dir_a: std::path::PathBuf,
    pub(crate) dir_b: std::path::PathBuf,
    pub(crate) port_a: u16,
    pub(crate) port_b: u16,
}

/// Whether to run a replica test: on the suite's PostgreSQL run (`KINKO_TEST_BACKEND=postgres`)
/// with the test cluster there (else fails, unless skipped knowingly). The SQLite run leaves
/// these tests to the PostgreSQL run, saying so.
pub(crate) fn cluster() -> bool {
    if kinko_store::testing::postgres_url().is_some() && kinko_tests::on_postgres() {
        return true;
    }
    if kinko_store::testing::postgres_url().is_some() {
        eprintln!(
            "PostgreSQL only: this test runs in the suite's PostgreSQL run (KINKO_TEST_BACKEND=postgres)"
        );
        return false;
    }
    assert!(
        std::env::var("KINKO_ALLOW_SKIP")
            .is_ok_and(|v| v.trim() == "1" || v.split(',').any(|n| n.trim() == "postgres")),
        "KINKO_TEST_PG_URL is not set: start a cluster (scripts/pg-cluster.sh start DIR) or set KINKO_ALLOW_SKIP=postgres"
    );
    eprintln!("SKIPPED (KINKO_ALLOW_SKIP): no PostgreSQL test cluster");
    false
}

fn pair(tmp: &Path, max_count: &str) -> Pair {
    pair_with(tmp, max_count, |_| {})
}

fn pair_with(tmp: &Path, max_count: &str, edit: impl FnOnce(&Path)) -> Pair {
    let url = kinko_store::testing::fresh_database("replicas").unwrap();
    pair_on(tmp, url, max_count, edit)
}

/// [`pair_with`] on the database at `url`.
pub(crate) fn pair_on(tmp: &Path, url: String, max_count: &str, edit: impl FnOnce(&Path)) -> Pair {
    kinko_hsm::testing::ensure_softhsm2_conf().unwrap();
    let (dir_a, dir_b) = (tmp.join("a"), tmp.join("b"));
    let (label, port_a, port_b) = (unique_label("replicas"), free_port(), free_port());
    let status = Command::new(bin("kinkod"))
        .args(["dev", "--init-only", "--data-dir"])
        .arg(&dir_a)
        .args(["--listen", &format!("127.0.0.1:{port_a}")])
        .args(["--token-label", &label, "--store-postgres", &url])
        .env("RUST_LOG", "warn")
        .status()
        .unwrap();
    assert!(status.success());
    replace_in(
        &dir_a.join("policy.toml"),
        "max_count = 50",
        &format!("max_count = {max_count}"),
    );
    edit(&dir_a);
    // Replica B: the same configuration, certificates, policy and token; another port.
    kinko_tests::copy_dir(&dir_a, &dir_b);
    replace_in(
        &dir_b.join("kinkod.toml"),
        &format!("127.0.0.1:{port_a}"),
        &format!("127.0.0.1:{port_b}"),
    );
    Pair {
        url,
        label,
        dir_a,
        dir_b,
        port_a,
        port_b,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_history_and_never_sign_twice() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Two withdrawals a day through this key, whichever replica signs them.
    let Pair {
        url,
        label,
        dir_a,
        dir_b,
        port_a,
        port_b,
    } = pair(tmp.path(), "2");
    // A database that can lose an acknowledged commit is refused, unless overridden by name.
    let name = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_string();
    kinko_store::testing::sql(
        &url,
        &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
    )
    .unwrap();
    let err = kinko_tests::start_fails(&dir_a);
    assert!(
        err.contains("can lose committed transactions: synchronous_commit = off")
            && err.contains("dangerous_allow_unsafe_durability"),
        "{err}"
    );
    kinko_store::testing::sql(
        &url,
        &format!("ALTER DATABASE {name} RESET synchronous_commit"),
    )
    .unwrap();
    let a = start(&dir_a, &label, port_a, false);
    let b = start(&dir_b, &label, port_b, false);
    assert_eq!(a.vkey, b.vkey, "one log key, one log");

    // A withdrawal submitted to A, approved once through each: signed.
    let first = submit(&a, 0, "r-1").await;
    approve(&b, "alice", &first.request_id).await.unwrap();
    let signed = approve(&a, "bob", &first.request_id).await.unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");
    assert_eq!(
        get(&b, &first.request_id).await.signed_transaction,
        signed.signed_transaction
    );

    // The same nonce again, entirely through B: refused, never signed.
    let again = submit(&b, 0, "r-1-again").await;
    approve(&b, "alice", &again.request_id).await.unwrap();
    let err = approve(&b, "bob", &again.request_id).await.unwrap_err();
    assert_eq!(reason(&err), "REPLAY_CONFLICT", "{err:?}");

    // The third of a day (the limit is two) submitted through A while one is signed, then the
    // second signed through B: A denies the third — the limit counts both replicas' signatures.
    let third = submit(&a, 2, "r-3").await;
    let second = submit(&b, 1, "r-2").await;
    approve(&b, "alice", &second.request_id).await.unwrap();
    let s2 = approve(&b, "bob", &second.request_id).await.unwrap();
    assert_eq!(s2.state, pb::RequestState::Signed as i32, "{s2:?}");
    let err = match approve(&a, "alice", &third.request_id).await {
        Err(e) => e,
        Ok(_) => approve(&a, "bob", &third.request_id).await.unwrap_err(),
    };
    assert_eq!(reason(&err), "POLICY_DENIED", "{err:?}");
    // And a fourth, submitted through A now, is denied at once.
    let fourth = try_submit(&a, 3, "r-4").await;
    match fourth {
        Err(e) => assert_eq!(reason(&e), "POLICY_DENIED", "{e:?}"),
        Ok(r) => assert_eq!(
            r.state,
            pb::RequestState::Denied as i32,
            "the fourth of a day was not denied"
        ),
    }
    assert!(
        get(&b, &third.request_id)
            .await
            .signed_transaction
            .is_empty()
    );

    // A freeze through B stops A.
    let f = AdminServiceClient::new(channel(&b, "carol").await)
        .freeze(governance(
            &b,
            "carol",
            Subject::Freeze {
                request_id: "freeze-replicas".into(),
            },
            Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(f.frozen);
    let frozen = AdminServiceClient::new(channel(&a, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(frozen.freeze_id, f.freeze_id, "A sees B's freeze");

    // A dies (kill -9); B serves the same history.
    a.kill9();
    assert_eq!(
        get(&b, &first.request_id).await.state,
        pb::RequestState::Signed as i32
    );
    let vkey = b.vkey.clone();
    drop(b);

    // One log, written by both, verifies offline.
    verify_offline(&dir_b, &tmp.path().join("exported"), &vkey);
}

/// Failover: withdrawals spread over two replicas while either is killed (`kill -9`) at random
/// moments and restarted: no request or digest signed twice, every signature a client received
/// in the log, every acknowledged approval kept, the survivor signing again within 5 s of each
/// kill (the distribution is printed), and the log verifies offline. Fast: 3 kills;
/// `KINKO_SLOW_TESTS=1`: 20 kills over at least 500 withdrawals.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_either_replica_under_load_loses_and_duplicates_nothing() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::faults::{Lcg, Seen, check, load, one_withdrawal};

    if !cluster() {
        return;
    }
    // Slow: 20 kills over 500+ accepted withdrawals, about 25 signatures between kills.
    let (kills, min_withdrawals, per_round) = if crate::slow() {
        (20, 500, 25)
    } else {
        (3, 0, 1)
    };
    let seed = jiff::Timestamp::now().as_nanosecond() as u64;
    eprintln!("replica kill -9 test seed {seed}");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let p = pair(tmp.path(), "100000");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let next_nonce = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let dirs = [(p.dir_a.clone(), p.port_a), (p.dir_b.clone(), p.port_b)];
    let mut up: [Option<Arc<Daemon>>; 2] = [
        Some(Arc::new(start(&dirs[0].0, &p.label, dirs[0].1, false))),
        Some(Arc::new(start(&dirs[1].0, &p.label, dirs[1].1, false))),
    ];
    let mut resumed = Vec::new();
    let mut round = 0;
    loop {
        let started = seen.lock().unwrap().withdrawals_started;
        if round >= kills && started >= min_withdrawals {
            break;
        }
        let workers: Vec<_> = up
            .iter()
            .flatten()
            .flat_map(|d| load(Arc::clone(d), 2, Arc::clone(&next_nonce), Arc::clone(&seen)))
            .collect();
        let before = seen.lock().unwrap().signed.len();
        for _ in 0..600 {
            if seen.lock().unwrap().signed.len() > before + per_round {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.next(800))).await;
        let victim = usize::try_from(rng.next(2)).unwrap();
        let killed = up[victim].take().unwrap();
        let status = Command::new("kill")
            .args(["-9", &killed.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let at = Instant::now();
        // The survivor signs a withdrawal of its own: how long until it does.
        let survivor = Arc::clone(up[1 - victim].as_ref().unwrap());
        let probe = Mutex::new(Seen::default());
        loop {
            let n = next_nonce.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            one_withdrawal(&survivor.dir, &survivor, n, &probe).await;
            if !probe.lock().unwrap().signed.is_empty() {
                break;
            }
            assert!(
                at.elapsed() < Duration::from_secs(30),
                "the survivor did not sign within 30 s of the kill"
            );
        }
        resumed.push(at.elapsed());
        {
            let probe = probe.into_inner().unwrap();
            let mut s = seen.lock().unwrap();
            s.signed.extend(probe.signed);
            s.approvals.extend(probe.approvals);
        }
        for w in &workers {
            w.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        drop(killed);
        up[victim] = Some(Arc::new(start(
            &dirs[victim].0,
            &p.label,
            dirs[victim].1,
            false,
        )));
        round += 1;
    }
    let s = seen.lock().unwrap().clone();
    resumed.sort();
    eprintln!(
        "{round} kills, {} withdrawals accepted, {} signatures received, {} approvals acknowledged, \
         refusals {:?}; survivor signing again after (ms): {:?}",
        s.withdrawals_started,
        s.signed.len(),
        s.approvals.len(),
        s.refused,
        resumed.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    assert!(!s.signed.is_empty(), "the load signed nothing");
    assert!(
        resumed.iter().all(|t| *t < Duration::from_secs(5)),
        "the survivor took more than 5 s to sign again: {resumed:?}"
    );
    for d in up.iter().flatten() {
        check(d, &s).await;
    }
    let vkey = up[0].as_ref().unwrap().vkey.clone();
    drop(up);
    verify_offline(&p.dir_a, &tmp.path().join("exported"), &vkey);
    let _ = p.url;
}

/// The policy in force on `d`, as its answer about a proposal reports it.
async fn current_policy(d: &Daemon, proposal_id: &str) -> Vec<u8> {
    AdminServiceClient::new(channel(d, "auditor").await)
        .get_policy_proposal(pb::ProposalId {
            proposal_id: proposal_id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .current_policy_hash
}

/// A policy installed through governance on one replica is followed by the other within a few
/// seconds (its background tick loads it, keys included, and rewrites its policy file), and the
/// other signs under it; until then the other's claims are refused (the policy in force is
/// checked inside the claim's transaction).
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_installed_through_one_replica_is_followed_by_the_other() {
    use std::time::{Duration, Instant};

    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = pair_with(tmp.path(), "50", |dir| {
        replace_in(
            &dir.join("policy.toml"),
            "time_lock = \"1h\"",
            "time_lock = \"2s\"",
        );
    });
    let a = start(&p.dir_a, &p.label, p.port_a, false);
    let b = start(&p.dir_b, &p.label, p.port_b, false);
    let old_text = std::fs::read_to_string(p.dir_a.join("policy.toml")).unwrap();
    let new_text = old_text.replacen("max_amount = \"100\"", "max_amount = \"99\"", 1);
    let new = kinko_policy::Policy::from_toml(new_text.as_bytes()).unwrap();
    let proposal = AdminServiceClient::new(channel(&a, "admin").await)
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: new_text.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let install = Subject::InstallPolicy {
        request_id: proposal.proposal_id.clone(),
        new_policy_hash: new.hash(),
    };
    for officer in ["alice", "carol"] {
        AdminServiceClient::new(channel(&a, officer).await)
            .approve_policy(governance(&a, officer, install.clone(), Verdict::Approve))
            .await
            .unwrap();
    }
    // A installs it once the time-lock has passed; B follows.
    let since = Instant::now();
    loop {
        if current_policy(&a, &proposal.proposal_id).await == new.hash().0
            && current_policy(&b, &proposal.proposal_id).await == new.hash().0
        {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "the installed policy was not in force on both replicas within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        std::fs::read_to_string(p.dir_b.join("policy.toml")).unwrap(),
        new_text,
        "B's policy file follows"
    );
    // B signs under the new policy.
    let r = submit(&b, 0, "after-install").await;
    assert_eq!(r.policy_hash, new.hash().0);
    approve(&b, "alice", &r.request_id).await.unwrap();
    let signed = approve(&b, "bob", &r.request_id).await.unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");

    // A replica that was down through the installation starts with the policy the shared store
    // installed (checked against the log), and its file follows.
    drop(b);
    std::fs::write(p.dir_b.join("policy.toml"), &old_text).unwrap();
    let b = start(&p.dir_b, &p.label, p.port_b, false);
    assert_eq!(
        current_policy(&b, &proposal.proposal_id).await,
        new.hash().0
    );
    assert_eq!(
        std::fs::read_to_string(p.dir_b.join("policy.toml")).unwrap(),
        new_text
    );
    drop(a);
}

/// A replica that starts while another is between a request's claim and its signature leaves
/// that request alone (recovery takes only its own claims and old ones): the other replica
/// finishes and releases the signature. Before claims named their replica, the starting replica
/// failed it, and the signature was never released.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_starting_never_fails_a_request_another_is_signing() {
    use std::time::Duration;

    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = pair(tmp.path(), "50");
    // A holds each signing 8 s between its committed claim and the HSM.
    let a = std::sync::Arc::new(kinko_tests::start_with_env(
        &p.dir_a,
        &p.label,
        p.port_a,
        false,
        &[("KINKO_FAILPOINT", "pause:after_signing_authorized")],
    ));
    let b = start(&p.dir_b, &p.label, p.port_b, false);
    let r = submit(&a, 0, "in-flight").await;
    approve(&a, "alice", &r.request_id).await.unwrap();
    let signing = {
        let (a, id) = (std::sync::Arc::clone(&a), r.request_id.clone());
        tokio::spawn(async move { approve(&a, "bob", &id).await })
    };
    let mut state = 0;
    for _ in 0..50 {
        state = get(&b, &r.request_id).await.state;
        if state == pb::RequestState::Approved as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state,
        pb::RequestState::Approved as i32,
        "A holds the claim (signing is reported as approved)"
    );
    // B restarts while A is paused mid-signing.
    drop(b);
    let b = start(&p.dir_b, &p.label, p.port_b, false);
    assert_eq!(
        get(&b, &r.request_id).await.state,
        pb::RequestState::Approved as i32,
        "B's recovery left A's claim alone"
    );
    let signed = signing.await.unwrap().unwrap();
    assert_eq!(signed.state, pb::RequestState::Signed as i32, "{signed:?}");
    assert_eq!(
        get(&b, &r.request_id).await.signed_transaction,
        signed.signed_transaction
    );
}

/// Two replicas race for the last signature of a day: A authorizes the third of a day (the
/// limit is two) while it sees one signature, then holds before its claim; meanwhile B signs the
/// second. A's claim — its transaction re-reads every replica's reservations under the write
/// lock — is denied, and nothing is signed. Without that re-check, A's authorization alone would
/// have signed a third.
#[tokio::test(flavor = "multi_thread")]
async fn the_velocity_limit_holds_when_two_replicas_race_for_the_last_signature() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = pair(tmp.path(), "2");
    let a = std::sync::Arc::new(kinko_tests::start_with_env(
        &p.dir_a,
        &p.label,
        p.port_a,
        false,
        &[("KINKO_FAILPOINT", "pause:before_claim")],
    ));
    let b = start(&p.dir_b, &p.label, p.port_b, false);
    // One of two signed, through B.
    let first = submit(&b, 0, "race-1").await;
    approve(&b, "alice", &first.request_id).await.unwrap();
    let s1 = approve(&b, "bob", &first.request_id).await.unwrap();
    assert_eq!(s1.state, pb::RequestState::Signed as i32, "{s1:?}");
    // Both remaining requests pending, one on each replica.
    let on_a = submit(&a, 1, "race-a").await;
    let on_b = submit(&b, 2, "race-b").await;
    approve(&a, "alice", &on_a.request_id).await.unwrap();
    approve(&b, "alice", &on_b.request_id).await.unwrap();
    // A authorizes (it sees one signature of two) and holds 8 s before its claim.
    let racing = {
        let (a, id) = (std::sync::Arc::clone(&a), on_a.request_id.clone());
        tokio::spawn(async move { approve(&a, "bob", &id).await })
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    // Meanwhile B signs the second of the day.
    let s2 = approve(&b, "bob", &on_b.request_id).await.unwrap();
    assert_eq!(s2.state, pb::RequestState::Signed as i32, "{s2:?}");
    let err = racing.await.unwrap().unwrap_err();
    assert_eq!(reason(&err), "POLICY_DENIED", "{err:?}");
    assert!(err.message().contains("denied at signing time"), "{err:?}");
    assert!(
        get(&b, &on_a.request_id)
            .await
            .signed_transaction
            .is_empty()
    );
}
