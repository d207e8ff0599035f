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

/// Opens a TCP connection to kinkod from `source` (another loopback address: the attacker's
/// host) and holds it without ever sending a byte of TLS.
async fn idle_from(source: std::net::IpAddr, port: u16) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(std::net::SocketAddr::new(source, 0)).ok()?;
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .ok()
}

/// An unauthenticated attacker holds 1,100 half-open connections and keeps reopening the ones
/// kinkod closes; an officer's freeze still lands within a second (against 45cc78c it took
/// 3.6 s and 6.6 s, and could be held off). One address never takes the handshake slots of
/// others, and a client that stops watching frees its watch slot.
#[tokio::test(flavor = "multi_thread")]
async fn an_officer_freezes_within_a_second_while_a_flood_holds_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-conn"), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str("\n[limits]\nmax_watches_per_principal = 2\n");
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    // Watch streams are bounded per principal (on a pending request: a watch of a final one ends
    // at once); one that is dropped frees its slot.
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                0,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            "watched",
        ))
        .await
        .unwrap()
        .into_inner();
    let id = pb::RequestId {
        request_id: r.request_id.clone(),
    };
    let w1 = ledger.watch_request(id.clone()).await.unwrap();
    let _w2 = ledger.watch_request(id.clone()).await.unwrap();
    let err = ledger.watch_request(id.clone()).await.unwrap_err();
    assert_eq!(reason(&err), "TOO_MANY_WATCHES", "{err:?}");
    drop(w1);
    let mut freed = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ledger.watch_request(id.clone()).await.is_ok() {
            freed = true;
            break;
        }
    }
    assert!(freed, "a dropped watch never freed its slot");

    let attacker: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut held = Vec::new();
    for _ in 0..1_100 {
        if let Some(s) = idle_from(attacker, port).await {
            held.push(s);
        }
    }
    assert!(
        held.len() >= 1_000,
        "only {} connections opened",
        held.len()
    );
    // And keeps reopening as fast as it can while the officer acts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reopen = {
        let stop = std::sync::Arc::clone(&stop);
        tokio::spawn(async move {
            let mut opened = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(s) = idle_from(attacker, port).await {
                    opened += 1;
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(6)).await;
                        drop(s);
                    });
                }
            }
            opened
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let f = pb::admin_service_client::AdminServiceClient::new(channel(&d, "carol").await)
        .freeze(kinko_tests::governance(
            &d,
            "carol",
            kinko_tests::Subject::Freeze {
                request_id: "under-flood".into(),
            },
            kinko_tests::Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reopened = reopen.await.unwrap();
    assert!(f.frozen);
    assert!(
        took < Duration::from_secs(1),
        "the freeze took {took:?} under the flood"
    );
    assert!(reopened > 0);
    drop(held);

    // The same from the officer's own address (one NAT, say): the attacker's half-open
    // connections are the oldest, and make way for the officer's handshake.
    let own: std::net::IpAddr = [127, 0, 0, 1].into();
    let mut held = Vec::new();
    for _ in 0..1_100 {
        if let Some(s) = idle_from(own, port).await {
            held.push(s);
        }
    }
    let started = Instant::now();
    let f = pb::admin_service_client::AdminServiceClient::new(channel(&d, "carol").await)
        .freeze(kinko_tests::governance(
            &d,
            "carol",
            kinko_tests::Subject::Freeze {
                request_id: "under-flood-2".into(),
            },
            kinko_tests::Verdict::Approve,
        ))
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert!(f.frozen);
    assert!(
        took < Duration::from_secs(1),
        "the freeze took {took:?} under a flood from the officer's own address"
    );
    drop(held);
}

/// Denied requests are bounded per requester: past the daily cap a denied request is refused
/// and nothing is stored (each could carry 256 KiB); allowed requests still go through.
#[tokio::test(flavor = "multi_thread")]
async fn denied_requests_cannot_fill_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("atk-deny"), free_port());
    init(&dir, &label, port, |dir| {
        let mut config = std::fs::read_to_string(dir.join("kinkod.toml")).unwrap();
        config.push_str("\n[limits]\nmax_denied_per_requester_per_day = 5\n");
        std::fs::write(dir.join("kinkod.toml"), config).unwrap();
    });
    let d = start(&dir, &label, port, false);
    let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
    let unknown = address!("0x1111111111111111111111111111111111111111");
    for n in 0..5 {
        let r = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(n, 1_000, unknown),
                &format!("deny-{n}"),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.state, pb::RequestState::Denied as i32);
    }
    for n in 5..50 {
        let err = ledger
            .submit_withdrawal(submission(
                &dir,
                "eth-dev",
                Chain::Ethereum,
                eth_transfer(n, 1_000, unknown),
                &format!("deny-{n}"),
            ))
            .await
            .unwrap_err();
        assert_eq!(reason(&err), "TOO_MANY_DENIED", "{err:?}");
        assert!(err.message().contains("not stored"), "{err:?}");
    }
    let store = kinko_tests::open_store(&dir);
    assert_eq!(store.count_denied_since("ledger", 0).unwrap(), 5);
    drop(store);
    // An allowed request still goes through.
    let r = ledger
        .submit_withdrawal(submission(
            &dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(
                0,
                1_000,
                address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ),
            "allowed",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.state, pb::RequestState::PendingApproval as i32);
}
