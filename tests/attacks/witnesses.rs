//! Witnesses (docs/witness.md): real `kinko-witness` processes cosigning a real kinkod's log.
//! A database restored from an older backup — with the replica's own seen-checkpoint file
//! restored with it, which defeats the local check — is refused against what the witnesses
//! cosigned, and so is a history forked from it; a witness that is down or hangs holds back
//! only the signatures whose rule wants them witnessed, and those fail closed.

use std::path::Path;
use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Verdict, WitnessProcess, channel, configure_witnesses, eth_transfer, free_port, init,
    officer_approval, pb, reason, replace_in, start, start_fails, start_witness, submission,
    unique_label,
};

use crate::audit_tamper::{copy_db, pg_copy, pg_database, sign_one};

/// The log's origin: the key name of its verifier key.
fn origin(vkey: &str) -> &str {
    vkey.split('+').next().unwrap()
}

/// Waits until `w` has cosigned a checkpoint of at least `size` records of the log.
async fn until_cosigned(w: &WitnessProcess, origin: &str, size: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while w.cosigned_size(origin) < size {
        assert!(
            std::time::Instant::now() < deadline,
            "witness did not reach size {size} (has {})",
            w.cosigned_size(origin)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the store of the kinkod in `dir` keeps a cosignature of a checkpoint of at
/// least `size` records.
async fn until_kept(dir: &Path, size: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let store = kinko_tests::open_store(dir);
    while store
        .witnessed_sizes()
        .unwrap()
        .iter()
        .all(|(_, s)| *s < size)
    {
        assert!(std::time::Instant::now() < deadline, "no cosignature kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number of records in the log of the kinkod in `dir` (its store read directly).
fn log_size(dir: &Path) -> u64 {
    let store = kinko_tests::open_store(dir);
    store.read_log_lines(0, usize::MAX).unwrap().len() as u64
}

fn backup(dir: &Path, to: &Path) -> Option<String> {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(
        dir.join("seen-checkpoint.note"),
        to.join("seen-checkpoint.note"),
    )
    .unwrap();
    match pg_database(dir) {
        Some(db) => {
            let bk = format!("{db}_wbackup");
            pg_copy(&db, &bk);
            Some(bk)
        }
        None => {
            copy_db(dir, to);
            None
        }
    }
}

fn restore(from: &Path, dir: &Path, pg_backup: &Option<String>) {
    std::fs::copy(
        from.join("seen-checkpoint.note"),
        dir.join("seen-checkpoint.note"),
    )
    .unwrap();
    match (pg_database(dir), pg_backup) {
        (Some(db), Some(bk)) => pg_copy(bk, &db),
        _ => copy_db(from, dir),
    }
}

/// A kinkod with one witness (quorum: it), one withdrawal signed, the witness's cosignature
/// of the newest checkpoint kept in the store.
struct Witnessed {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    label: String,
    port: u16,
    vkey: String,
    w: WitnessProcess,
    d: kinko_tests::Daemon,
    size: u64,
}

async fn witnessed(tag: &str) -> Witnessed {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label(tag), free_port());
    let d = start(&dir, &label, port, true);
    let vkey = d.vkey.clone();
    drop(d);
    let w = start_witness(&tmp.path().join("w1"), "witness.test/w1", &vkey);
    configure_witnesses(&dir, &[("w1", &w)], "quorum w1", 10_000);
    let d = start(&dir, &label, port, false);
    sign_one(&d, 0).await;
    let size = log_size_running(&d).await;
    until_cosigned(&w, origin(&vkey), size).await;
    until_kept(&dir, size).await;
    Witnessed {
        tmp,
        dir,
        label,
        port,
        vkey,
        w,
        d,
        size,
    }
}

/// The old hole: a database and this replica's seen-checkpoint file restored together from a
/// backup start fine without witnesses. With a witness, kinkod refuses: the witness cosigned a
/// larger log. And a history forked from the backup (signed while the witness was not asked)
/// is refused as inconsistent with what it cosigned.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_database_and_its_seen_file_are_refused_against_the_witness() {
    // The backup holds the witness's cosignature of its newest checkpoint: by its own account
    // it is fully witnessed (only the witness knows what came after).
    let Witnessed {
        tmp,
        dir,
        label,
        port,
        vkey,
        w,
        d,
        size: _,
    } = witnessed("wit-restore").await;
    // The backup (kinkod stopped): the database and the seen-checkpoint file together.
    drop(d);
    let bk = tmp.path().join("backup");
    let pg_backup = backup(&dir, &bk);
    let backed_up = log_size(&dir);
    let d = start(&dir, &label, port, false);
    sign_one(&d, 1).await;
    let grown = log_size_running(&d).await;
    until_cosigned(&w, origin(&vkey), grown).await;
    drop(d);
    restore(&bk, &dir, &pg_backup);
    assert_eq!(log_size(&dir), backed_up);
    let err = start_fails(&dir);
    assert!(
        err.contains("a witness holds a history this log does not extend")
            && err.contains(&format!(
                "witness w1: it cosigned a checkpoint of size {}",
                w.cosigned_size(origin(&vkey))
            ))
            && err.contains(&format!("this log holds {backed_up} records")),
        "{err}"
    );
    // The restored history continued without the witness (its section removed), past the
    // size the witness holds: a fork of the log under the same key.
    let config = dir.join("kinkod.toml");
    let with_witness = std::fs::read_to_string(&config).unwrap();
    replace_in(&config, "[witness]", "[witness_disabled]");
    let plain = std::fs::read_to_string(&config)
        .unwrap()
        .split("\n[witness_disabled]")
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&config, plain).unwrap();
    let d = start(&dir, &label, port, false);
    for nonce in 1..4 {
        sign_one(&d, nonce).await;
    }
    assert!(log_size_running(&d).await > grown);
    drop(d);
    std::fs::write(&config, with_witness).unwrap();
    let err = start_fails(&dir);
    assert!(
        err.contains("a witness holds a history this log does not extend")
            && err.contains("refused checkpoint")
            && err.contains("as inconsistent with the checkpoint of size"),
        "{err}"
    );
}

/// The size of the newest checkpoint of a running kinkod, once one covers every record (read
/// from its store).
async fn log_size_running(d: &kinko_tests::Daemon) -> u64 {
    // A signature's commit carries a checkpoint covering it.
    let store = kinko_tests::open_store(&d.dir);
    store.read_log_lines(0, usize::MAX).unwrap().len() as u64
}

/// Submits `wei` to the first hot wallet and has alice and bob approve; returns the request id
/// and the final answer of the last approval.
async fn withdraw(
    d: &kinko_tests::Daemon,
    nonce: u64,
    wei: u128,
) -> (String, Result<pb::Request, tonic::Status>) {
    let r = WithdrawalServiceClient::new(channel(d, "ledger").await)
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                nonce,
                wei,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            &format!("witnessed-{nonce}"),
        ))
        .await
        .unwrap()
        .into_inner();
    ApprovalServiceClient::new(channel(d, "alice").await)
        .approve(officer_approval(d, "alice", &r.request_id, Verdict::Approve).await)
        .await
        .unwrap();
    let last = ApprovalServiceClient::new(channel(d, "bob").await)
        .approve(officer_approval(d, "bob", &r.request_id, Verdict::Approve).await)
        .await
        .map(tonic::Response::into_inner);
    (r.request_id, last)
}

async fn state_of(d: &kinko_tests::Daemon, id: &str) -> (i32, String) {
    let r = WithdrawalServiceClient::new(channel(d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.state, r.final_reason)
}

const ETH: u128 = 1_000_000_000_000_000_000;

/// Two witnesses, quorum both. Below the threshold (1 ETH) signatures are witnessed in the
/// background and never wait; above it (`witnessed = true`) the HSM is not used until both
/// cosigned a checkpoint covering the `signing_authorized` record. With one witness hung
/// (SIGSTOP) or down (killed), small withdrawals still sign, and a large one fails closed with
/// WITNESS_UNAVAILABLE and no signature; once the witness is back, a large one signs.
#[tokio::test(flavor = "multi_thread")]
async fn a_witness_down_or_hung_blocks_only_the_signatures_that_require_witnesses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port, metrics_port) = (unique_label("wit-down"), free_port(), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str(&format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
        ));
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
        // Up to 1 ETH as before; above it, up to 100 ETH, only witnessed.
        let policy = dir.join("policy.toml");
        replace_in(&policy, "max_amount = \"100\"", "max_amount = \"1\"");
        replace_in(
            &policy,
            "[[rules]]\nname = \"btc-hot-refill\"",
            "[[rules]]\nname = \"eth-large-witnessed\"\nchain = \"ethereum\"\nasset = \"ETH\"\nkinds = [\"transfer\"]\ndestination_book = \"eth-hot\"\nmin_amount = \"1\"\nmax_amount = \"100\"\nmax_fee = \"0.01\"\napprovals = { count = 2, roles = [\"approver\"], lifetime = \"4h\" }\nwitnessed = true\n\n[[rules]]\nname = \"btc-hot-refill\"",
        );
    });
    let d = start(&dir, &label, port, false);
    let vkey = d.vkey.clone();
    drop(d);
    let w1 = start_witness(&tmp.path().join("w1"), "witness.test/w1", &vkey);
    let w2 = start_witness(&tmp.path().join("w2"), "witness.test/w2", &vkey);
    configure_witnesses(
        &dir,
        &[("w1", &w1), ("w2", &w2)],
        "group both all w1 w2\nquorum both",
        4_000,
    );
    let d = start(&dir, &label, port, false);
    let (_, small) = withdraw(&d, 0, ETH / 10).await;
    assert_eq!(small.unwrap().state, pb::RequestState::Signed as i32);
    let (_, large) = withdraw(&d, 1, 2 * ETH).await;
    assert_eq!(large.unwrap().state, pb::RequestState::Signed as i32);
    // The large signature was released only after both witnesses cosigned its authorization.
    let size = log_size_running(&d).await;
    assert!(w1.cosigned_size(origin(&vkey)) >= size - 2);
    assert!(w2.cosigned_size(origin(&vkey)) >= size - 2);

    // w2 hangs: accepts connections, never answers.
    w2.pause();
    let t = std::time::Instant::now();
    let (_, small) = withdraw(&d, 2, ETH / 10).await;
    assert_eq!(small.unwrap().state, pb::RequestState::Signed as i32);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "a small withdrawal waited for the witnesses"
    );
    let (id, large) = withdraw(&d, 3, 2 * ETH).await;
    let refused = large.unwrap_err();
    assert_eq!(reason(&refused), "WITNESS_UNAVAILABLE", "{refused:?}");
    let (state, why) = state_of(&d, &id).await;
    assert_eq!(state, pb::RequestState::Failed as i32);
    assert!(why.contains("witness quorum did not cosign"), "{why}");
    // No signature was made for it: the log has no signature_produced record for the request.
    let records = kinko_tests::audit_records(&d).await;
    assert!(
        !records
            .iter()
            .any(|r| kinko_tests::event_type(r) == "signature_produced"
                && r.to_string().contains(&id)),
        "a signature was produced without the witness quorum"
    );

    // The metrics show the quorum behind, and w2's failures.
    let metric = |page: &str, name: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in {page}"))
            .parse()
            .unwrap()
    };
    let page = kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics").await;
    assert!(
        metric(&page, "kinko_witness_behind_seconds") > 0.0,
        "{page}"
    );
    assert!(
        metric(&page, "kinko_witness_unwitnessed_records") > 0.0,
        "{page}"
    );
    assert!(
        metric(
            &page,
            "kinko_witness_requests_total{witness=\"w2\",outcome=\"failed\"}"
        ) >= 1.0,
        "{page}"
    );
    assert_eq!(metric(&page, "kinko_witness_conflict"), 0.0);

    // w2 back: a large withdrawal signs again.
    w2.resume();
    let (_, large) = withdraw(&d, 4, 2 * ETH).await;
    assert_eq!(large.unwrap().state, pb::RequestState::Signed as i32);

    // Caught up: nothing behind.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = kinko_tests::https_get(&d, metrics_port, "auditor", "/metrics").await;
        if metric(&page, "kinko_witness_behind_seconds") == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // w1 down (killed): the same as hung, refused sooner.
    drop(w1);
    let (_, small) = withdraw(&d, 5, ETH / 10).await;
    assert_eq!(small.unwrap().state, pb::RequestState::Signed as i32);
    let (_, large) = withdraw(&d, 6, 2 * ETH).await;
    assert_eq!(reason(&large.unwrap_err()), "WITNESS_UNAVAILABLE");
}

/// Runs `kinko ARGS` as `who` against `d`: (exit code, stdout + stderr).
fn kinko(d: &kinko_tests::Daemon, who: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(kinko_tests::bin("kinko"))
        .args(args)
        .env("KINKO_SERVER", &d.addr)
        .env("KINKO_DEV_DIR", &d.dir)
        .env("KINKO_AS", who)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("kinko {args:?} -> {text}");
    (out.status.code().unwrap_or(-1), text)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The auditor's side. `kinko audit fetch --witnessed` brings the newest checkpoint the
/// witness quorum cosigned, and `verify --witness-policy` accepts it; a policy whose quorum
/// the log's checkpoints lack (another witness, which never saw this log) is refused, naming
/// the records not covered. One withdrawal's proof bundle checks alone, and fails once its
/// cosignature is removed or the record is altered.
#[tokio::test(flavor = "multi_thread")]
async fn the_auditor_requires_the_witness_quorum_and_checks_one_withdrawal_alone() {
    let Witnessed {
        tmp,
        vkey,
        w,
        d,
        size,
        ..
    } = witnessed("wit-audit").await;

    // The auditor's policy: this log, this witness (no URL needed offline).
    let policy = tmp.path().join("auditor-policy");
    std::fs::write(
        &policy,
        format!("log {vkey}\nwitness w1 {}\nquorum w1\n", w.vkey),
    )
    .unwrap();
    let copy = tmp.path().join("copy");
    let (code, out) = kinko(
        &d,
        "auditor",
        &["audit", "fetch", "--witnessed", "--out", p(&copy)],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = kinko(
        &d,
        "auditor",
        &[
            "audit",
            "verify",
            p(&copy),
            "--log-key",
            &vkey,
            "--witness-policy",
            p(&policy),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("result:         OK"), "{out}");
    assert!(
        out.contains(&format!("witnessed:      up to size {size}")),
        "{out}"
    );

    // A policy naming a witness that never cosigned this log: refused, records named.
    let stranger = start_witness(&tmp.path().join("w9"), "witness.test/w9", &vkey);
    let strict = tmp.path().join("strict-policy");
    std::fs::write(
        &strict,
        format!(
            "log {vkey}\nwitness w1 {}\nwitness w9 {}\ngroup both all w1 w9\nquorum both\n",
            w.vkey, stranger.vkey
        ),
    )
    .unwrap();
    let (code, out) = kinko(
        &d,
        "auditor",
        &[
            "audit",
            "verify",
            p(&copy),
            "--log-key",
            &vkey,
            "--witness-policy",
            p(&strict),
        ],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "records 0 to {} are not covered by a checkpoint cosigned by the witness quorum",
            size - 1
        )),
        "{out}"
    );

    // One withdrawal's proof bundle.
    let records = kinko_tests::audit_records(&d).await;
    let request_id = records
        .iter()
        .find(|r| kinko_tests::event_type(r) == "signature_produced")
        .map(|r| r["event"]["request_id"].as_str().unwrap().to_string())
        .unwrap();
    let bundle = tmp.path().join("bundle.json");
    let (code, out) = kinko(
        &d,
        "auditor",
        &[
            "audit",
            "prove",
            "--request",
            &request_id,
            "--dir",
            p(&copy),
            "--log-key",
            &vkey,
            "--witness-policy",
            p(&policy),
            "--bundle",
            p(&bundle),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let check = |file: &Path, policy: &Path| {
        kinko(
            &d,
            "auditor",
            &[
                "audit",
                "check-proof",
                p(file),
                "--log-key",
                &vkey,
                "--witness-policy",
                p(policy),
            ],
        )
    };
    let (code, out) = check(&bundle, &policy);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cosigned by the witness quorum"), "{out}");
    assert!(out.contains(&request_id), "{out}");
    // Without the witness's cosignature line: refused under the policy.
    let mut b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let note = b["checkpoint"].as_str().unwrap().to_string();
    let stripped: String = note
        .lines()
        .filter(|l| !l.starts_with("\u{2014} witness.test/w1 "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped, note);
    b["checkpoint"] = stripped.into();
    let unwitnessed = tmp.path().join("unwitnessed.json");
    std::fs::write(&unwitnessed, b.to_string()).unwrap();
    let (code, out) = check(&unwitnessed, &policy);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("lacks the witness quorum"), "{out}");
    // The record altered: refused.
    let mut b: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&bundle).unwrap()).unwrap();
    let record = b["record"]
        .as_str()
        .unwrap()
        .replace(&request_id, "r-forged");
    b["record"] = record.into();
    let forged = tmp.path().join("forged.json");
    std::fs::write(&forged, b.to_string()).unwrap();
    let (code, out) = check(&forged, &policy);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("the proof does not verify"), "{out}");
}
