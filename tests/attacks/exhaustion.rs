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
        // The pending cap is exactly the flood's size; the rate limit is off here so the flood
        // runs at full speed (it is tested on its own below).
        config.push_str(&format!(
            "\n[limits]\nmax_pending_per_requester = {pending}\ncalls_per_second_per_principal = 0.0\n"
        ));
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
    // The queue is full: one more is refused, not queued.
    let err = ledger
        .clone()
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(pending, 1, hot),
            "one-too-many",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "TOO_MANY_PENDING", "{err:?}");
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
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(
        err.message()
            .contains("decoded message length too large: found 2097"),
        "{err:?}"
    );
    assert!(
        err.message().contains("the limit is: 524288 bytes"),
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
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(reason(&err), "INVALID_REQUEST", "{err:?}");
    assert_eq!(
        err.message(),
        format!(
            "[INVALID_REQUEST] payload must be 1..={} bytes",
            kinko_chain::MAX_PAYLOAD_LEN
        )
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

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_requester_hits_its_pending_cap_and_its_rate_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-lim"), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str(
            "\n[limits]\nmax_pending_per_requester = 3\ncalls_per_second_per_principal = 1.0\ncall_burst_per_principal = 8.0\n",
        );
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);

    // Pending cap: three requests wait for officers; the fourth is refused, typed and logged.
    let mut ids = Vec::new();
    for n in 0..3u64 {
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(n, 1, hot),
                &format!("cap-{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
        ids.push(r.request_id);
    }
    let err = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(3, 1, hot),
            "cap-3",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(reason(&err), "TOO_MANY_PENDING", "{err:?}");
    assert_eq!(
        err.message(),
        "[TOO_MANY_PENDING] ledger already has 3 requests pending approval"
    );

    // Rate limit: 1 call a second, bursts of 8 (4 spent above). A rapid run is cut off.
    let mut served = 0;
    let limited = loop {
        match ledger
            .get_request(pb::RequestId {
                request_id: ids[0].clone(),
            })
            .await
        {
            Ok(_) => served += 1,
            Err(e) => break e,
        }
        assert!(served < 20, "20 rapid calls were all served");
    };
    assert!(served >= 3, "cut off early, after {served} calls");
    assert_eq!(
        limited.code(),
        tonic::Code::ResourceExhausted,
        "{limited:?}"
    );
    assert_eq!(reason(&limited), "RATE_LIMITED", "{limited:?}");
    assert_eq!(
        limited.message(),
        "[RATE_LIMITED] ledger exceeds 1 calls per second; slow down and retry"
    );
    // Another principal is still served meanwhile; the requester again after a pause.
    let mut officer = ApprovalServiceClient::new(channel(&d, "alice").await);
    let queue = officer
        .list_pending(pb::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .requests;
    assert_eq!(queue.len(), 3, "the refused fourth was never queued");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ledger
        .get_request(pb::RequestId {
            request_id: ids[0].clone(),
        })
        .await
        .unwrap();
    // The pending-cap refusal reached the engine and is in the audit log.
    let records = kinko_tests::audit_records(&d).await;
    assert!(
        records
            .iter()
            .any(|r| kinko_tests::event_type(r) == "refusal"
                && r["event"]["code"] == "TOO_MANY_PENDING"
                && r["event"]["message"] == "ledger already has 3 requests pending approval"),
        "no TOO_MANY_PENDING refusal logged"
    );
}
