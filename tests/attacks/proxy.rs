//! A malicious proxy between the officer's CLI and kinkod (THREATS.md: blind signing, the
//! Bybit pattern): it shows the request's honest intent but serves another payload, or serves
//! the payload with another digest. The officer's `kinko approve` decodes the payload itself,
//! compares, and refuses to sign; nothing reaches the daemon.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::approval_service_server::{ApprovalService, ApprovalServiceServer};
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::{bin, channel, eth_transfer, free_port, pb, start, submission, unique_label};
use tonic::transport::{Certificate, Channel, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

#[derive(Clone, Copy)]
enum Tamper {
    /// Honest intent and digest, the attacker's payload.
    Payload,
    /// Honest payload and intent, the digest of another intent.
    Digest,
}

struct Proxy {
    upstream: ApprovalServiceClient<Channel>,
    tamper: Tamper,
    evil_payload: Vec<u8>,
    forwarded_votes: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl ApprovalService for Proxy {
    async fn list_pending(
        &self,
        req: Request<pb::ListPendingRequest>,
    ) -> Result<Response<pb::ListPendingResponse>, Status> {
        self.upstream.clone().list_pending(req.into_inner()).await
    }

    async fn get_request(
        &self,
        req: Request<pb::RequestId>,
    ) -> Result<Response<pb::Request>, Status> {
        let mut r = self
            .upstream
            .clone()
            .get_request(req.into_inner())
            .await?
            .into_inner();
        match self.tamper {
            Tamper::Payload => r.payload = self.evil_payload.clone(),
            Tamper::Digest => r.intent_digest = vec![0x42; 32],
        }
        Ok(Response::new(r))
    }

    async fn approve(
        &self,
        req: Request<pb::SignedApproval>,
    ) -> Result<Response<pb::Request>, Status> {
        self.forwarded_votes.fetch_add(1, Ordering::SeqCst);
        self.upstream.clone().approve(req.into_inner()).await
    }

    async fn reject(
        &self,
        req: Request<pb::SignedApproval>,
    ) -> Result<Response<pb::Request>, Status> {
        self.forwarded_votes.fetch_add(1, Ordering::SeqCst);
        self.upstream.clone().reject(req.into_inner()).await
    }
}

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

    for tamper in [Tamper::Payload, Tamper::Digest] {
        // The proxy terminates TLS with the server's own certificate (a compromised front end).
        let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read("tls/server.pem"),
                read("tls/server.key"),
            ))
            .client_ca_root(Certificate::from_pem(read("tls/ca.pem")));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let proxy = Proxy {
            upstream: ApprovalServiceClient::new(channel(&d, "alice").await),
            tamper,
            evil_payload: eth_transfer(0, 100_000_000_000_000_000_000, attacker),
            forwarded_votes: Arc::clone(&forwarded),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(ApprovalServiceServer::new(proxy))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
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
        server.abort();
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
        assert_eq!(forwarded.load(Ordering::SeqCst), 0, "{text}");
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
