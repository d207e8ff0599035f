//! Exhaustion: a flood of pending requests, oversized messages, many idle connections, a client
//! that never reads its stream. Limits hold, memory stays bounded, other clients are served.

use std::time::{Duration, Instant};

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::audit_service_client::AuditServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{
    Daemon, channel, eth_transfer, free_port, init, pb, reason, start, submission, unique_label,
};

/// The daemon's peak resident set, in MiB (VmHWM).
fn peak_rss_mib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024
}

/// One quick call that must be served.
async fn served(d: &Daemon) -> Duration {
    let started = Instant::now();
    let mut c = ApprovalServiceClient::new(channel(d, "carol").await);
    c.list_pending(pb::ListPendingRequest {
        limit: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn floods_and_slow_clients_do_not_take_the_daemon_down() {
    let pending = if crate::slow() { 10_000 } else { 1_000 };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-dos"), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str(
            "\n[limits]\nmax_pending_per_requester = 20000\ncalls_per_second_per_principal = 0.0\n",
        );
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");

    // A flood of pending requests from a compromised pipeline, 8 at a time.
    let ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let mut c = ledger.clone();
        let dir = dir.clone();
        tasks.push(tokio::spawn(async move {
            for n in (worker..pending).step_by(8) {
                let r = c
                    .submit_withdrawal(submission(
                        &dir,
                        "eth-dev",
                        Chain::Ethereum,
                        eth_transfer(n, 1, hot),
                        &format!("flood-{n}"),
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Officers page through them; the whole queue is there.
    let mut officer = ApprovalServiceClient::new(channel(&d, "alice").await);
    let (mut seen, mut after) = (0u64, String::new());
    loop {
        let page = officer
            .list_pending(pb::ListPendingRequest {
                limit: 500,
                after_request_id: after.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen += page.requests.len() as u64;
        if page.next_after_request_id.is_empty() {
            break;
        }
        after = page.next_after_request_id;
    }
    assert_eq!(seen, pending);
    let rss = peak_rss_mib(&d);
    eprintln!("kinkod peak RSS {rss} MiB with {pending} pending requests");
    assert!(
        rss <= 150,
        "peak RSS {rss} MiB with {pending} pending requests"
    );

    // An oversized message is refused by the transport; the daemon keeps serving.
    let mut big = ledger.clone();
    let err = big
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            vec![0u8; 2 * 1024 * 1024],
            "huge",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{err:?}"
    );
    // Just over the payload limit but within the message limit: a typed refusal.
    let err = big
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            vec![0u8; 300 * 1024],
            "large",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            reason(&err).as_str(),
            "INVALID_REQUEST" | "UNDECODABLE_PAYLOAD"
        ),
        "{err:?}"
    );
    assert!(served(&d).await < Duration::from_secs(5));

    // Many idle connections that never start TLS: others are still served promptly.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    assert!(served(&d).await < Duration::from_secs(5));

    // A client that opens the audit stream and never reads it: the daemon neither buffers the
    // whole log for it nor stops serving others.
    let mut lazy = AuditServiceClient::new(channel(&d, "auditor").await);
    let stalled = lazy
        .stream_records(pb::StreamRecordsRequest { from_sequence: 0 })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(served(&d).await < Duration::from_secs(5));
    let rss = peak_rss_mib(&d);
    assert!(rss <= 150, "peak RSS {rss} MiB");
    drop(stalled);
    drop(idle);
}
