//! An upgrade: a store, audit log and token written by an earlier kinkod
//! (`tests/fixtures/upgrade-*`, made by `scripts/make-upgrade-fixture.sh` at the revision its
//! FIXTURE file names) open under this one. Its schema is migrated, its log verifies, the
//! withdrawal it signed is still signed, the one it left pending (with an approval that has
//! since expired) is approved again and signed by this kinkod, and the auditor verifies the
//! whole history, old records and new. Nothing here depends on when the fixture was made.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kinko_policy::Verdict;
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;

use kinko_tests::{channel, copy_dir, free_port, officer_approval, replace_in, start_with_env};

/// Every fixture directory.
fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("upgrade-"))
        })
        .collect();
    out.sort();
    out
}

fn fixture_field(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("FIXTURE")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("FIXTURE has no {key}"))
        .to_string()
}

/// Git keeps no file modes beyond the executable bit: the fixture's secrets get theirs back,
/// as a restore from backup would keep them.
fn restore_modes(dir: &Path) {
    for sub in ["hsm", "officers", "requesters", "tls"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if sub != "tls" || name.ends_with(".key") {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_and_log_written_by_the_previous_release_open_and_keep_signing() {
    let fixtures = fixtures();
    assert!(!fixtures.is_empty(), "no upgrade fixture in tests/fixtures");
    for fixture in fixtures {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        copy_dir(&fixture, root);
        let data = root.join("data");
        restore_modes(&data);
        // The token directory moved with the fixture.
        let conf = root.join("softhsm/softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                root.join("softhsm/tokens").display()
            ),
        )
        .unwrap();
        let port = free_port();
        replace_in(
            &data.join("kinkod.toml"),
            "listen = \"127.0.0.1:47555\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        // The fixture is older than a day: without this its pending request would expire at
        // the first tick (an operator upgrading within the day keeps the default).
        let mut config = std::fs::read_to_string(data.join("kinkod.toml")).unwrap();
        config.push_str("\n[limits]\npending_expiry_secs = 3153600000\n");
        std::fs::write(data.join("kinkod.toml"), config).unwrap();
        let (signed, pending) = (
            fixture_field(root, "signed"),
            fixture_field(root, "pending"),
        );
        let revision = fixture_field(root, "revision");
        let size_before = {
            let c = rusqlite::Connection::open(data.join("kinko.db")).unwrap();
            c.query_row("SELECT count(*) FROM log_records", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        };

        // Reading the old store with this kinkod's read-only commands migrates nothing: they
        // refuse, say why, and leave the file as the old release wrote it.
        let version = || {
            rusqlite::Connection::open(data.join("kinko.db"))
                .unwrap()
                .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let old_version = version();
        let export = root.join("export-before");
        let o = Command::new(kinko_tests::bin("kinkod"))
            .arg("--config")
            .arg(data.join("kinkod.toml"))
            .args(["export-log", "--out"])
            .arg(&export)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{revision}: {stderr}");
        assert!(stderr.contains("written by an earlier kinkod"), "{stderr}");
        assert_eq!(
            version(),
            old_version,
            "{revision}: export-log migrated the store"
        );
        assert!(!export.exists());

        let conf_s = conf.to_str().unwrap().to_string();
        let d = start_with_env(
            &data,
            "unused",
            port,
            false,
            &[("SOFTHSM2_CONF", conf_s.as_str())],
        );
        let mut ledger = WithdrawalServiceClient::new(channel(&d, "ledger").await);
        let get = |id: &str| pb::RequestId {
            request_id: id.to_string(),
        };
        let old = ledger.get_request(get(&signed)).await.unwrap().into_inner();
        assert_eq!(
            old.state,
            pb::RequestState::Signed as i32,
            "{revision}: {old:?}"
        );
        assert!(!old.signed_transaction.is_empty(), "{revision}");
        let waiting = ledger
            .get_request(get(&pending))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(waiting.state, pb::RequestState::PendingApproval as i32);
        assert_eq!(waiting.approvals.len(), 1, "{waiting:?}");

        // The approval given under the old release is still recorded (it stopped counting
        // once its rule's 4 h lifetime passed); alice approves again and bob makes the quorum,
        // and the new release signs the request the old one left pending.
        let a = officer_approval(&d, "alice", &pending, Verdict::Approve).await;
        ApprovalServiceClient::new(channel(&d, "alice").await)
            .approve(a)
            .await
            .unwrap();
        let b = officer_approval(&d, "bob", &pending, Verdict::Approve).await;
        let r = ApprovalServiceClient::new(channel(&d, "bob").await)
            .approve(b)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.state,
            pb::RequestState::Signed as i32,
            "{revision}: {r:?}"
        );
        drop(d);

        // The schema was brought up to date (witness cosignatures came after the fixture).
        let c = rusqlite::Connection::open(data.join("kinko.db")).unwrap();
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'log_cosignatures'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "{revision}: migration not applied");
        let size_after: i64 = c
            .query_row("SELECT count(*) FROM log_records", [], |r| r.get(0))
            .unwrap();
        assert!(size_after > size_before, "{revision}");
        drop(c);

        // The auditor verifies old and new records together.
        let out = root.join("audit");
        kinko_tests::export_log(&data, &out);
        let vkey = std::fs::read_to_string(data.join("audit-log.vkey")).unwrap();
        let verify = Command::new(kinko_tests::bin("kinko"))
            .args(["audit", "verify"])
            .arg(&out)
            .args(["--log-key", vkey.trim()])
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{revision}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}
