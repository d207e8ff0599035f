//! The `kinko` command-line tool against a real `kinkod` process: real TLS 1.3 with the
//! development CA's client certificates, a real SoftHSM2 token, set up by `kinkod dev`.
//!
//! Every officer action goes through the built `kinko` binary, as an officer would run it; the
//! results are then checked by an independent path (gRPC directly, alloy's signer recovery).
//! The binary comes from `kinko_tests::bin`, which never runs a stale one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{TxKind, U256, address};
use kinko_intent::Intent;
use kinko_policy::PolicyHash;
use kinko_proto::v1 as pb;
use pb::admin_service_client::AdminServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;

use kinko_tests::{Daemon, channel, free_port, start, unique_label};

const HOT_WALLET: alloy_primitives::Address =
    address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

/// The `kinko` binary (see `kinko_tests::bin`).
fn kinko_bin() -> PathBuf {
    kinko_tests::bin("kinko")
}

/// What a `kinko` run printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kinko ARGS` as principal `who` (its development certificate) against `d`, with no
/// terminal and no passphrase in the environment.
fn kinko(d: &Daemon, who: &str, args: &[&str]) -> Run {
    let out = Command::new(kinko_bin())
        .args(args)
        .env("KINKO_SERVER", &d.addr)
        .env("KINKO_DEV_DIR", &d.dir)
        .env("KINKO_AS", who)
        .env_remove("KINKO_OFFICER_PASSPHRASE")
        .env_remove("KINKO_TLS_CA")
        .env_remove("KINKO_TLS_CERT")
        .env_remove("KINKO_TLS_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("kinko {args:?} as {who} -> {run:#?}");
    run
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn eth_transfer(nonce: u64, value_wei: u128, to: alloy_primitives::Address) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: 11_155_111,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(value_wei),
        access_list: Default::default(),
        input: Default::default(),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

async fn freeze_state(d: &Daemon) -> pb::FreezeState {
    AdminServiceClient::new(channel(d, "auditor").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn request(d: &Daemon, id: &str) -> pb::Request {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn officers_and_auditors_drive_kinkod_with_the_cli() {
    let bin = kinko_bin();
    assert!(bin.exists());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("cli"), free_port(), true);
    let policy = dir.join("policy.toml");
    let policy_bytes = std::fs::read(&policy).unwrap();
    let key_file = |who: &str| dir.join(format!("officers/{who}.key"));

    // The policy kinkod dev wrote pins the keys it created in the HSM.
    let r = kinko(&d, "alice", &["policy", "check", path(&policy)]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout
            .contains(&PolicyHash::of_file(&policy_bytes).to_hex()),
        "{}",
        r.stdout
    );
    assert_eq!(d.keys.len(), 3, "{:?}", d.keys);
    for (name, pk) in &d.keys {
        assert!(
            r.stdout.contains(&format!("{name} (") /* listed */)
                && r.stdout
                    .contains(&format!("public key pinned {}", hex::encode(pk))),
            "{name} not pinned to the HSM's key: {}",
            r.stdout
        );
    }
    // The requester submits with the CLI; the officer explains the payload offline first.
    let one_eth = 1_000_000_000_000_000_000u128;
    let payload = tmp.path().join("tx.hex");
    std::fs::write(&payload, hex::encode(eth_transfer(0, one_eth, HOT_WALLET))).unwrap();
    let r = kinko(
        &d,
        "alice",
        &[
            "policy",
            "explain",
            "--policy",
            path(&policy),
            "--key",
            "eth-dev",
            "--hex",
            path(&payload),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("matched rule \"eth-hot-refill\"")
            && r.stdout.contains("REQUIRES APPROVAL: 2 officer(s)"),
        "{}",
        r.stdout
    );
    let r = kinko(
        &d,
        "ledger",
        &[
            "request",
            "submit",
            "--key",
            "eth-dev",
            "--chain",
            "ethereum",
            "--payload",
            path(&payload),
            "--idempotency-key",
            "cli-1",
            "--requester-key",
            path(&dir.join("requesters/ledger.key")),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = r.stdout.lines().next().unwrap();
    assert!(first.ends_with("PENDING_APPROVAL"), "{first}");
    // A denied submission is not success for a script: exit status 3, and why on stderr.
    let stranger = tmp.path().join("stranger.hex");
    std::fs::write(
        &stranger,
        hex::encode(eth_transfer(
            7,
            one_eth,
            address!("0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"),
        )),
    )
    .unwrap();
    let denied = kinko(
        &d,
        "ledger",
        &[
            "request",
            "submit",
            "--key",
            "eth-dev",
            "--chain",
            "ethereum",
            "--payload",
            path(&stranger),
            "--idempotency-key",
            "cli-denied",
            "--requester-key",
            path(&dir.join("requesters/ledger.key")),
        ],
    );
    assert_eq!(denied.code, 3, "{denied:?}");
    // A certificate that does not name the server, and a server that is not there: the error
    // says which, not a bare "transport error".
    let r = kinko(
        &d,
        "ledger",
        &["request", "show", "x", "--tls-server-name", "kinko.example"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("certificate") && r.stderr.contains("transport error: "),
        "{r:?}"
    );
    let r = kinko(
        &d,
        "ledger",
        &["request", "show", "x", "--server", "https://localhost:1"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.to_lowercase().contains("refused"), "{r:?}");
    assert!(
        denied.stdout.lines().next().unwrap().ends_with("DENIED")
            && denied.stderr.contains("ended without a signature"),
        "{denied:?}"
    );
    let id = first
        .strip_prefix("request ")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // Refusals before anything is signed: a policy file other than the one in force; another
    // officer's key under alice's name.
    let edited = tmp.path().join("edited-policy.toml");
    let mut text = policy_bytes.clone();
    text.extend_from_slice(b"# an edit\n");
    std::fs::write(&edited, text).unwrap();
    let vote = |who: &str, key: &Path, policy: &Path, verb: &str| {
        kinko(
            &d,
            who,
            &[
                verb,
                &id,
                "--officer-key",
                path(key),
                "--policy",
                path(policy),
                "--yes",
            ],
        )
    };
    let r = vote("alice", &key_file("alice"), &edited, "approve");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("refusing to sign"), "{}", r.stderr);
    let r = vote("alice", &key_file("bob"), &policy, "approve");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("not the key your policy lists for \"alice\""),
        "{}",
        r.stderr
    );
    assert!(request(&d, &id).await.approvals.is_empty());

    // Alice approves: her client decoded the payload with the pinned key and signed its own
    // digest; the development key is accepted with a warning.
    let r = vote("alice", &key_file("alice"), &policy, "approve");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("unencrypted development key"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("intent digest (computed here)")
            && r.stdout
                .contains("1 ETH -> 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        "{}",
        r.stdout
    );
    let got = request(&d, &id).await;
    assert_eq!(got.state, pb::RequestState::PendingApproval as i32);
    assert_eq!(got.approvals.len(), 1);
    // Bob approves: quorum, the HSM signs.
    let r = vote("bob", &key_file("bob"), &policy, "approve");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("SIGNED"), "{}", r.stdout);
    let got = request(&d, &id).await;
    assert_eq!(got.state, pb::RequestState::Signed as i32, "{got:?}");
    assert!(
        r.stdout
            .contains(&format!("0x{}", hex::encode(&got.signed_transaction))),
        "{}",
        r.stdout
    );
    let env = TxEnvelope::decode_2718(&mut got.signed_transaction.as_slice()).unwrap();
    let intent: Intent = serde_json::from_str(&got.intent_json).unwrap();
    assert_eq!(
        env.recover_signer().unwrap().to_checksum(None),
        intent.signer.as_str(),
        "independent recovery"
    );

    // Any principal lists the keys; each matches the pin in the officer's policy, and the
    // address the CLI derives from the pin is the one the daemon shows and the one that signed.
    let signer = env.recover_signer().unwrap().to_checksum(None);
    let r = kinko(&d, "auditor", &["keys", "--policy", path(&policy)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (name, pk) in &d.keys {
        let line = r
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}  ")))
            .unwrap_or_else(|| panic!("{name} missing: {}", r.stdout));
        assert!(line.contains(&hex::encode(pk)), "{line}");
        assert!(line.contains("matches your policy (address "), "{line}");
    }
    let eth = r
        .stdout
        .lines()
        .find(|l| l.starts_with("eth-dev  "))
        .unwrap();
    assert!(
        eth.starts_with("eth-dev  ethereum 11155111")
            && eth.contains(&format!("address {signer}  "))
            && eth.ends_with(&format!("matches your policy (address {signer})")),
        "{eth}"
    );

    // The policy in force, as the daemon serves it, is the file kinkod dev wrote.
    let served = tmp.path().join("in-force.toml");
    let r = kinko(&d, "auditor", &["policy", "show", "--out", path(&served)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(&served).unwrap(), policy_bytes);
    assert!(
        r.stdout
            .contains(&PolicyHash::of_file(&policy_bytes).to_hex()),
        "{}",
        r.stdout
    );

    // Freeze: bob holds no freezer role and is refused by the daemon; carol freezes alone.
    let gov = |who: &str, cmd: &[&str]| {
        let key = key_file(who);
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend(["--officer-key", path(&key), "--policy", path(&policy)]);
        kinko(&d, who, &args)
    };
    let r = gov("bob", &["freeze"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("APPROVAL_INVALID"), "{}", r.stderr);
    assert!(!freeze_state(&d).await.frozen);
    let r = gov("carol", &["freeze"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("FROZEN"), "{}", r.stdout);
    let f = freeze_state(&d).await;
    assert!(f.frozen && f.frozen_by == "carol", "{f:?}");
    let r = kinko(&d, "auditor", &["freeze-status"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("FROZEN") && r.stdout.contains("frozen by carol"),
        "{}",
        r.stdout
    );

    // Unfreeze: two admins from two groups (alice: treasury, carol: risk), then a one-hour
    // delay in the development policy, so it is still frozen at the end of the test. The
    // second officer's CLI joins the unfreeze request the first one started.
    let r = gov("carol", &["unfreeze", "--veto"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("nothing to veto"), "{}", r.stderr);
    let r = gov("alice", &["unfreeze"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("pending_quorum"), "{}", r.stdout);
    let f = freeze_state(&d).await;
    assert!(f.frozen, "{f:?}");
    let unfreeze_id = f.unfreeze_request_id.clone();
    assert!(unfreeze_id.starts_with("unfreeze-"), "{f:?}");
    // Only a freezer may veto an unfreeze: bob's signed veto is refused when received, and
    // nothing is stored (it could never count, so it must not occupy bob's vote).
    let r = gov("bob", &["unfreeze", "--veto"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "vetoing unfreeze request {unfreeze_id} (lifting freeze"
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr
            .contains("[APPROVAL_INVALID] the unfreeze vote does not count: MissingRole"),
        "{}",
        r.stderr
    );
    assert_eq!(freeze_state(&d).await.unfreeze_approvals, 1);
    // Carol's approval completes the quorum between `quorum_from` and `quorum_by`.
    let quorum_from = jiff::Timestamp::now().as_second();
    let r = gov("carol", &["unfreeze"]);
    let quorum_by = jiff::Timestamp::now().as_second();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "approving unfreeze request {unfreeze_id} (lifting freeze {}) as carol",
            hex::encode(&f.freeze_id)
        )),
        "{}",
        r.stdout
    );
    // The daemon's governance status (in the reason): quorum reached, waiting out the delay.
    let status_json = r
        .stdout
        .lines()
        .find_map(|l| l.split_once("; unfreeze: ").map(|(_, j)| j))
        .unwrap_or_else(|| panic!("no unfreeze status: {}", r.stdout));
    let status: serde_json::Value = serde_json::from_str(status_json).unwrap();
    assert_eq!(status["state"], "waiting", "{status}");
    let effective: jiff::Timestamp = status["effective_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (quorum_from + 3600..=quorum_by + 3600).contains(&effective.as_second()),
        "lifts one hour after the quorum reached in [{quorum_from}, {quorum_by}]: {status}"
    );
    let f = freeze_state(&d).await;
    assert!(f.frozen, "the delay has not passed: {f:?}");
    // Until the quorum's instant is recorded with the vote that reached it, the status computes
    // it from the clock, so a later reading may name a second later (a known gap: the closing
    // note of the performance issue's session); never earlier, never more than a moment.
    assert!(
        (effective.as_second()..=effective.as_second() + 2).contains(&f.unfreeze_at_unix),
        "the freeze state names {} for an unfreeze the vote's answer put at {}: {f:?}",
        f.unfreeze_at_unix,
        effective.as_second()
    );
    assert_eq!(f.unfreeze_request_id, unfreeze_id);
    assert!(f.unfreeze_approvals >= 2, "{f:?}");

    // The auditor fetches the log and verifies it offline with the log key kinkod printed.
    let copy = tmp.path().join("audit-copy");
    let r = kinko(&d, "auditor", &["audit", "fetch", "--out", path(&copy)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", path(&copy), "--log-key", &d.vkey];
        args.extend_from_slice(extra);
        kinko(&d, "auditor", &args)
    };
    let r = verify(&[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("result:         OK"), "{}", r.stdout);
    assert!(r.stdout.contains("signatures:     1"), "{}", r.stdout);
    let kept = copy.join("checkpoint.note");
    let r = verify(&["--checkpoint", path(&kept)]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // Never into a directory that is not empty; never without the auditor role.
    let r = kinko(&d, "auditor", &["audit", "fetch", "--out", path(&copy)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    let r = kinko(
        &d,
        "alice",
        &["audit", "fetch", "--out", path(&tmp.path().join("x"))],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("ROLE_REQUIRED"), "{}", r.stderr);

    // One flipped byte in record 3 of the copy: verification fails and names the record.
    let seg = copy.join("segment-00000000000000000000.jsonl");
    let mut data = std::fs::read(&seg).unwrap();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    assert!(line_starts.len() > 5, "a few records were fetched");
    data[line_starts[3]] ^= 0x01;
    std::fs::write(&seg, data).unwrap();
    let r = verify(&[]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("record 3 (segment-00000000000000000000.jsonl:4)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("result:         FAILED"), "{}", r.stdout);
}

/// Scripts get JSON with stable fields and exit statuses that say what happened:
/// `request submit/show/watch --json`, a denial exiting 3 with `"state": "denied"`, and
/// `kinko health` exiting 0 while kinkod serves and 1 once it is gone.
#[tokio::test(flavor = "multi_thread")]
async fn scripts_read_json_and_exit_statuses_and_check_health() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("clijson"), free_port(), true);
    let requester_key = dir.join("requesters/ledger.key");
    let submit = |nonce: u64, to: alloy_primitives::Address, idem: &str| {
        let payload = format!(
            "0x{}",
            hex::encode(eth_transfer(nonce, 1_000_000_000_000_000_000, to))
        );
        kinko(
            &d,
            "ledger",
            &[
                "request",
                "submit",
                "--json",
                "--requester-key",
                path(&requester_key),
                "--key",
                "eth-dev",
                "--chain",
                "ethereum",
                "--payload",
                &payload,
                "--idempotency-key",
                idem,
            ],
        )
    };
    let json = |r: &Run| -> serde_json::Value {
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", r.stdout))
    };
    let r = submit(0, HOT_WALLET, "json-1");
    assert_eq!(r.code, 0, "{r:?}");
    let v = json(&r);
    assert_eq!(v["state"], "pending_approval", "{v:#}");
    assert_eq!(v["key"], "eth-dev");
    assert_eq!(v["rule"], "eth-hot-refill");
    assert_eq!(v["approvals_required"], 2);
    assert_eq!(v["intent"]["chain"], "ethereum", "{v:#}");
    assert_eq!(v["signed_transaction"], "");
    let id = v["request_id"].as_str().unwrap().to_string();

    // A denial: exit 3 and the JSON says so.
    let stranger = address!("0x00000000000000000000000000000000000000aa");
    let r = submit(1, stranger, "json-denied");
    assert_eq!(r.code, 3, "{r:?}");
    let v = json(&r);
    assert_eq!(v["state"], "denied", "{v:#}");
    assert!(!v["reason"].as_str().unwrap().is_empty(), "{v:#}");

    for officer in ["alice", "bob"] {
        let r = kinko(
            &d,
            officer,
            &[
                "approve",
                &id,
                "--officer-key",
                path(&dir.join(format!("officers/{officer}.key"))),
                "--policy",
                path(&dir.join("policy.toml")),
                "--yes",
            ],
        );
        assert_eq!(r.code, 0, "{r:?}");
    }
    let r = kinko(&d, "ledger", &["request", "show", &id, "--json"]);
    let v = json(&r);
    assert_eq!(v["state"], "signed", "{v:#}");
    assert!(
        v["signed_transaction"]
            .as_str()
            .unwrap()
            .starts_with("0x02"),
        "{v:#}"
    );
    assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
    let r = kinko(&d, "ledger", &["request", "watch", &id, "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let last = r.stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["state"], "signed");

    let r = kinko(&d, "auditor", &["health"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("serving"), "{r:?}");
    let r = kinko(&d, "auditor", &["health", "--json"]);
    assert_eq!(json(&r)["serving"], true);
    let (addr, dev) = (d.addr.clone(), d.dir.clone());
    drop(d);
    let out = Command::new(kinko_bin())
        .args(["health", "--json"])
        .env("KINKO_SERVER", &addr)
        .env("KINKO_DEV_DIR", &dev)
        .env("KINKO_AS", "auditor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serving"], false);
}
