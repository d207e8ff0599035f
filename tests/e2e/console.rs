//! The officer's console in a real browser: Debian's headless Chromium driven through
//! chromedriver, with Chromium's virtual WebAuthn authenticator, against a real kinkod.
//!
//! carol enrols a passkey in the console, the line it prints goes into a policy proposal that
//! the governance quorum installs, and from then on carol approves in the browser: a withdrawal
//! she approves (beside alice's CLI approval) is signed; one she rejects is rejected. Through a
//! proxy that serves another payload than the daemon's intent shows, the console shows the
//! mismatch and keeps the approve button disabled, and nothing reaches the daemon.
//! With `KINKO_WRITE_SCREENSHOTS=1` the main screens are saved to docs/console/.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::address;
use kinko_intent::Chain;
use kinko_tests::pb::admin_service_client::AdminServiceClient;
use kinko_tests::pb::approval_service_client::ApprovalServiceClient;
use kinko_tests::pb::withdrawal_service_client::WithdrawalServiceClient;
use kinko_tests::webdriver::Browser;
use kinko_tests::{
    Daemon, Subject, Tamper, Verdict, channel, eth_transfer, free_port, governance, init,
    officer_approval, pb, replace_in, start, submission, tampering_proxy, unique_label,
};

/// A running `kinko console`; killed when dropped.
struct Console {
    child: Child,
    url: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kinko console` as carol, with `policy` as her copy, talking to `server`.
fn console(d: &Daemon, server: &str, policy: &Path, port: u16) -> Console {
    console_with(d, server, policy, port, &[])
}

/// [`console`] with extra arguments.
fn console_with(d: &Daemon, server: &str, policy: &Path, port: u16, extra: &[&str]) -> Console {
    let mut child = Command::new(kinko_tests::bin("kinko"))
        .args([
            "console",
            "--server",
            server,
            "--officer",
            "carol",
            "--policy",
        ])
        .arg(policy)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("KINKO_DEV_DIR", &d.dir)
        .env("KINKO_AS", "carol")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("kinko console: open ")
        .unwrap_or_else(|| panic!("kinko console said {line:?}"))
        .to_string();
    Console { child, url }
}

fn shot(b: &Browser, name: &str) {
    if std::env::var_os("KINKO_WRITE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        b.screenshot(&dir.join(format!("{name}.png")));
    }
}

async fn submit(d: &Daemon, nonce: u64, wei: u128, to: alloy_primitives::Address) -> String {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .submit_withdrawal(submission(
            &d.dir,
            "eth-dev",
            Chain::Ethereum,
            eth_transfer(nonce, wei, to),
            &format!("console-{nonce}"),
        ))
        .await
        .unwrap()
        .into_inner()
        .request_id
}

async fn state(d: &Daemon, id: &str) -> i32 {
    WithdrawalServiceClient::new(channel(d, "ledger").await)
        .get_request(pb::RequestId {
            request_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .state
}

#[tokio::test(flavor = "multi_thread")]
async fn an_officer_enrols_a_passkey_through_governance_then_approves_and_rejects_in_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (label, port) = (unique_label("console"), free_port());
    init(&dir, &label, port, |dir| {
        replace_in(
            &dir.join("policy.toml"),
            "time_lock = \"1h\"",
            "time_lock = \"2s\"",
        );
    });
    let d = start(&dir, &label, port, false);
    let server = d.addr.clone();
    let carol_policy = tmp.path().join("carol-policy.toml");
    std::fs::copy(dir.join("policy.toml"), &carol_policy).unwrap();

    // 1. Enrolment: the console makes a passkey on the (virtual) platform authenticator and
    //    prints the policy line.
    let browser = tokio::task::spawn_blocking(Browser::start).await.unwrap();
    let authenticator = browser.add_virtual_authenticator();
    let cport = free_port();
    let c = console(&d, &server, &carol_policy, cport);
    browser.goto(&c.url);
    browser.wait_for_text("#who", "Officer carol");
    let button = browser.wait_for("#enrol-button");
    shot(&browser, "enrol");
    browser.click(&button);
    let line = browser.wait_for_text("#enrol-result", "passkey = {");
    assert_eq!(browser.credentials(&authenticator).len(), 1);
    assert!(
        line.contains(&format!("origins = [\"http://localhost:{cport}\"]")),
        "{line}"
    );
    shot(&browser, "enrolled");
    drop(c);

    // 2. Governance installs it: the new policy is the current one with carol's Ed25519 key
    //    replaced by the passkey line; alice and carol (two groups) approve, 2 s time-lock.
    let text = std::fs::read_to_string(dir.join("policy.toml")).unwrap();
    let at = text.find("id = \"carol\"").unwrap();
    let key_at = at + text[at..].find("public_key = \"").unwrap();
    let key_end = key_at + text[key_at..].find('\n').unwrap();
    let new_text = format!("{}{}{}", &text[..key_at], line.trim(), &text[key_end..]);
    let new = kinko_policy::Policy::from_toml(new_text.as_bytes()).unwrap();
    let mut admin = AdminServiceClient::new(channel(&d, "admin").await);
    let p = admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: new_text.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let install = Subject::InstallPolicy {
        request_id: p.proposal_id.clone(),
        new_policy_hash: new.hash(),
    };
    for officer in ["alice", "carol"] {
        AdminServiceClient::new(channel(&d, officer).await)
            .approve_policy(governance(&d, officer, install.clone(), Verdict::Approve))
            .await
            .unwrap();
    }
    let mut installed = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let info = admin
            .get_policy(pb::GetPolicyRequest {})
            .await
            .unwrap()
            .into_inner();
        if info.policy_hash == new.hash().0 {
            installed = true;
            break;
        }
    }
    assert!(installed, "the passkey policy was not installed");
    std::fs::write(&carol_policy, &new_text).unwrap();

    // 3. Approve in the browser: alice approves with the CLI path, carol with her passkey.
    let hot = address!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
    let first = submit(&d, 0, 1_000_000_000_000_000, hot).await;
    ApprovalServiceClient::new(channel(&d, "alice").await)
        .approve(officer_approval(&d, "alice", &first, Verdict::Approve).await)
        .await
        .unwrap();
    let c = console(&d, &server, &carol_policy, cport);
    browser.goto(&c.url);
    let article = format!("#req-{first}");
    browser.wait_for(&article);
    let page = browser.page_text();
    assert!(
        page.contains("0.001 ETH"),
        "the amount with its decimals: {page}"
    );
    assert!(
        page.contains("development hot wallet"),
        "the book name: {page}"
    );
    assert!(page.contains("Digest agrees with the daemon"), "{page}");
    shot(&browser, "pending");
    let approve = browser.wait_for(&format!("{article} button.approve"));
    assert!(browser.enabled(&approve));
    browser.click(&approve);
    browser.wait_for_text("#status", "Approved");
    assert_eq!(state(&d, &first).await, pb::RequestState::Signed as i32);

    // 4. Reject in the browser.
    let second = submit(&d, 1, 2_000_000_000_000_000, hot).await;
    browser.goto(&c.url);
    let reject = browser.wait_for(&format!("#req-{second} button.reject"));
    browser.click(&reject);
    browser.wait_for_text("#status", "Rejected");
    assert_eq!(state(&d, &second).await, pb::RequestState::Rejected as i32);
    drop(c);

    // 5. Through a proxy that serves another payload: the console shows the mismatch, the
    //    approve button stays disabled, and nothing reaches the daemon.
    let third = submit(&d, 2, 3_000_000_000_000_000, hot).await;
    let proxy = tampering_proxy(
        &d,
        "carol",
        Tamper::Payload(eth_transfer(
            2,
            100_000_000_000_000_000_000,
            address!("0x2222222222222222222222222222222222222222"),
        )),
    )
    .await;
    let proxy_port = proxy.port;
    let c = console(
        &d,
        &format!("https://localhost:{proxy_port}"),
        &carol_policy,
        cport,
    );
    browser.goto(&c.url);
    let article = format!("#req-{third}");
    browser.wait_for(&article);
    let page = browser.page_text();
    assert!(page.contains("DIGEST MISMATCH"), "{page}");
    assert!(page.contains("Do not approve"), "{page}");
    shot(&browser, "mismatch");
    let approve = browser.wait_for(&format!("{article} button.approve"));
    assert!(
        !browser.enabled(&approve),
        "the approve button is enabled on a mismatch"
    );
    drop(c);
    assert_eq!(proxy.forwarded_votes.load(Ordering::SeqCst), 0);
    drop(proxy);
    assert_eq!(
        state(&d, &third).await,
        pb::RequestState::PendingApproval as i32
    );

    // 6. Governance in the browser: review a proposal as a diff and approve it; freeze; vote to
    //    lift the freeze.
    let smaller = new_text.replacen("max_amount = \"100\"", "max_amount = \"50\"", 1);
    assert_ne!(smaller, new_text);
    let proposal = admin
        .propose_policy(pb::ProposePolicyRequest {
            policy_text: smaller.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let c = console(&d, &server, &carol_policy, cport);
    browser.goto(&c.url);
    let input = browser.wait_for("#proposal-id");
    browser.type_into(&input, &proposal.proposal_id);
    browser.click(&browser.wait_for("#proposal-review"));
    let diff = browser.wait_for_text("#proposal-diff", "max_amount");
    assert!(
        diff.contains("-max_amount = \"100\"") && diff.contains("+max_amount = \"50\""),
        "{diff}"
    );
    shot(&browser, "policy-review");
    browser.click(&browser.wait_for("#proposal-approve"));
    browser.wait_for_text("#status", "1 of 2 approvals");
    browser.click(&browser.wait_for("#freeze-button"));
    browser.wait_for_text("#status", "signing is frozen");
    let frozen = AdminServiceClient::new(channel(&d, "carol").await)
        .get_freeze_state(pb::ListKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(frozen.frozen && frozen.frozen_by == "carol", "{frozen:?}");
    browser.wait_for_text("#freeze-state", "FROZEN by carol");
    shot(&browser, "frozen");
    browser.click(&browser.wait_for("#unfreeze-button"));
    browser.wait_for_text("#status", "1 approval(s), still frozen");
    drop(c);
    drop(browser);
}

/// One raw HTTP/1.1 request to the console: (status, body).
fn raw(port: u16, request: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The console's guards, without a browser: the page carries its CSP and pins its script; the
/// API refuses a call without the session token, from another Host (DNS rebinding), a change
/// from another Origin, and ends the session after the idle timeout.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_refuses_other_pages_other_hosts_and_idle_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = start(&dir, &unique_label("console-guards"), free_port(), true);
    let cport = free_port();
    let c = console_with(
        &d,
        &d.addr,
        &dir.join("policy.toml"),
        cport,
        &["--idle-timeout", "2"],
    );
    let token = c.url.split("?t=").nth(1).unwrap().to_string();
    let host = format!("localhost:{cport}");
    let (status, page) = raw(
        cport,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{page}"
    );
    assert!(lower.contains("x-content-type-options: nosniff"), "{page}");
    assert!(page.contains("integrity=\"sha256-"), "{page}");
    let get = |h: &str, t: &str| {
        raw(
            cport,
            &format!(
                "GET /api/pending HTTP/1.1\r\nHost: {h}\r\nX-Kinko-Token: {t}\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    assert_eq!(get(&host, &token).0, 200);
    assert_eq!(get(&host, "wrong").0, 401);
    assert_eq!(get("evil.example:80", &token).0, 403);
    let post = |origin: &str| {
        let body = "{}";
        raw(
            cport,
            &format!(
                "POST /api/approve HTTP/1.1\r\nHost: {host}\r\nX-Kinko-Token: {token}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    assert_eq!(post("http://evil.example").0, 403);
    // From the console's own origin the call gets as far as the request's checks.
    let (status, text) = post(&format!("http://localhost:{cport}"));
    assert_eq!(status, 422, "{text}");
    // Idle past the timeout: the session is over, even with the token.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, text) = get(&host, &token);
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("idle"), "{text}");
    // A console never serves beyond loopback.
    let out = Command::new(kinko_tests::bin("kinko"))
        .args([
            "console",
            "--server",
            &d.addr,
            "--officer",
            "carol",
            "--policy",
        ])
        .arg(dir.join("policy.toml"))
        .args(["--listen", "0.0.0.0:0"])
        .env("KINKO_DEV_DIR", &d.dir)
        .env("KINKO_AS", "carol")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
