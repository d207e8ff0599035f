//! A malicious proxy between the officer's CLI and kinkod (THREATS.md: blind signing, the
//! Bybit pattern): it shows the request's honest intent but serves another payload, or serves
//! the payload with another digest. The officer's `kinko approve` decodes the payload itself,
//! compares, and refuses to sign; nothing reaches the daemon.

use std::process::Command;
use std::sync::atomic::Ordering;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Tamper, bin, channel, eth_transfer, free_port, pb, start, submission, tampering_proxy,
    unique_label,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_showing_one_intent_and_serving_another_payload_gets_no_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("atk-proxy"), free_port(), true);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let attacker = address!("0x2222222222222222222222222222222222222222");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(0, 1_000, hot),
            "proxied",
        ))
        .await
        .unwrap()
        .into_inner();
    let id = r.request_id;

    for tamper in [
        Tamper::Payload(eth_transfer(0, 100_000_000_000_000_000_000, attacker)),
        Tamper::Digest,
    ] {
        // The proxy terminates TLS with the server's own certificate (a compromised front end).
        let proxy = tampering_proxy(&d, "alice", tamper).await;
        let proxy_port = proxy.port;
        let out = tokio::task::spawn_blocking({
            let dir = dir.clone();
            let id = id.clone();
            move || {
                Command::new(bin("kinko"))
                    .args(["approve", &id, "--server"])
                    .arg(format!("https://localhost:{proxy_port}"))
                    .arg("--dev-dir")
                    .arg(&dir)
                    .args(["--as", "alice", "--officer-key"])
                    .arg(dir.join("officers/alice.key"))
                    .arg("--policy")
                    .arg(dir.join("policy.toml"))
                    .arg("--yes")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "the CLI signed through the proxy: {text}"
        );
        eprintln!("kinko approve through the proxy: {text}");
        assert!(text.contains("NOT signing"), "the refusal says why: {text}");
        assert_eq!(proxy.forwarded_votes.load(Ordering::SeqCst), 0, "{text}");
    }
    // The daemon never saw an approval.
    let r = ledger
        .get_request(pb::RequestId { request_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
    assert!(r.approvals.is_empty());
}
