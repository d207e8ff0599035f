use super::*;

/// Every backend: SQLite, and PostgreSQL on the test cluster (`KINKO_TEST_PG_URL`, which
/// `scripts/test-all.sh` sets). Without it the test fails, unless the PostgreSQL half is skipped
/// knowingly with `KINKO_ALLOW_SKIP=postgres` (or `1`).
fn stores() -> Vec<(tempfile::TempDir, Store)> {
    let mut out = vec![store()];
    match crate::testing::postgres_url() {
        Some(_) => {
            let url = crate::testing::fresh_database("store").unwrap();
            out.push((
                tempfile::tempdir().unwrap(),
                Store::open_postgres(&url).unwrap(),
            ));
        }
        None => pg_required(),
    }
    out
}

/// Without the test cluster a PostgreSQL test fails, unless skipped knowingly.
fn pg_required() {
    assert!(
        std::env::var("KINKO_ALLOW_SKIP")
            .is_ok_and(|v| v.trim() == "1" || v.split(',').any(|n| n.trim() == "postgres")),
        "KINKO_TEST_PG_URL is not set: start a cluster (scripts/pg-cluster.sh start DIR) or set KINKO_ALLOW_SKIP=postgres"
    );
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("kinko.db")).unwrap();
    (dir, s)
}

fn new_request(id: &str, idem: &str, payload: &[u8]) -> NewRequest {
    NewRequest {
        id: id.into(),
        requester: "ledger".into(),
        idempotency_key: idem.into(),
        key_name: "eth-cold".into(),
        chain: kinko_intent::Chain::Ethereum,
        network: "1".into(),
        payload: payload.to_vec(),
        reference: "withdrawal 42".into(),
        requester_signature: vec![7; 64],
        intent_json: "{}".into(),
        intent_digest: [1; 32],
        policy_hash: [2; 32],
        decision_json: "{}".into(),
        state: RequestState::PendingApproval,
        final_reason: None,
        now: 1_700_000_000,
    }
}

fn approval(req: &str, officer: &str) -> StoredApproval {
    StoredApproval {
        request_id: req.into(),
        officer_id: officer.into(),
        approve: true,
        message: b"signed approval message".to_vec(),
        signature: vec![9; 64],
        received_at: 1_700_000_100,
    }
}

#[test]
fn requests_round_trip_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinko.db");
    {
        let s = Store::open(&path).unwrap();
        let Inserted::Created(r) = s
            .insert_request(&new_request("r1", "i1", b"payload"))
            .unwrap()
        else {
            panic!("expected a new request")
        };
        assert_eq!(r.state, RequestState::PendingApproval);
        s.add_approval(&approval("r1", "alice")).unwrap();
    }
    let s = Store::open(&path).unwrap();
    let r = s.get_request("r1").unwrap();
    assert_eq!(r.new, new_request("r1", "i1", b"payload"));
    assert_eq!(s.approvals("r1").unwrap(), vec![approval("r1", "alice")]);
    assert_eq!(
        s.list_by_state(RequestState::PendingApproval)
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        s.get_request("nope"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn idempotency_returns_the_same_request_and_refuses_a_different_payload() {
    for (_d, s) in stores() {
        s.insert_request(&new_request("r1", "i1", b"payload"))
            .unwrap();
        let again = s
            .insert_request(&new_request("r2", "i1", b"payload"))
            .unwrap();
        assert!(
            matches!(again, Inserted::Existing(ref r) if r.new.id == "r1"),
            "{again:?}"
        );
        let err = s
            .insert_request(&new_request("r3", "i1", b"other payload"))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::IdempotencyConflict { ref existing, .. } if existing == "r1")
        );
        // Another requester may use the same idempotency key.
        let mut other = new_request("r4", "i1", b"payload");
        other.requester = "other-ledger".into();
        assert!(matches!(
            s.insert_request(&other).unwrap(),
            Inserted::Created(_)
        ));
    }
}

#[test]
fn transitions_are_compare_and_set() {
    for (_d, s) in stores() {
        s.insert_request(&new_request("r1", "i1", b"p")).unwrap();
        let err = s
            .transition(
                "r1",
                &[RequestState::Approved],
                RequestState::Signing,
                None,
                1,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::WrongState {
                actual: RequestState::PendingApproval,
                ..
            }
        ));
        let r = s
            .transition(
                "r1",
                &[RequestState::PendingApproval],
                RequestState::Rejected,
                Some("officer bob rejected"),
                5,
            )
            .unwrap();
        assert_eq!(r.state, RequestState::Rejected);
        assert_eq!(r.final_reason.as_deref(), Some("officer bob rejected"));
        assert_eq!(r.updated_at, 5);
        // Approvals after a final state are refused.
        assert!(matches!(
            s.add_approval(&approval("r1", "alice")),
            Err(StoreError::WrongState { .. })
        ));
    }
}

#[test]
fn one_verdict_per_officer() {
    for (_d, s) in stores() {
        s.insert_request(&new_request("r1", "i1", b"p")).unwrap();
        s.add_approval(&approval("r1", "alice")).unwrap();
        assert!(matches!(
            s.add_approval(&approval("r1", "alice")),
            Err(StoreError::DuplicateApproval { .. })
        ));
        s.add_approval(&approval("r1", "bob")).unwrap();
        let officers: Vec<_> = s
            .approvals("r1")
            .unwrap()
            .into_iter()
            .map(|a| a.officer_id)
            .collect();
        assert_eq!(officers, ["alice", "bob"]);
    }
}

fn claim(req: &str, replay: &str, digest: &str) -> SigningClaim {
    SigningClaim {
        replica: "test".into(),
        request_id: req.into(),
        key_name: "eth-cold".into(),
        replay_keys: vec![replay.into()],
        digests: vec![digest.into()],
        reservations: vec![Reservation {
            key_name: "eth-cold".into(),
            asset: "ethereum:native".into(),
            amount: kinko_intent::Amount::from_u64(1000),
            at: 100,
            request_id: req.into(),
        }],
        now: 100,
    }
}

#[test]
fn signing_claims_refuse_reused_nonces_and_digests_and_change_nothing() {
    for (_d, s) in stores() {
        for (id, idem) in [("r1", "i1"), ("r2", "i2"), ("r3", "i3")] {
            s.insert_request(&new_request(id, idem, id.as_bytes()))
                .unwrap();
            s.transition(
                id,
                &[RequestState::PendingApproval],
                RequestState::Approved,
                None,
                1,
            )
            .unwrap();
        }
        s.claim_signing(&claim("r1", "nonce:5", "aa")).unwrap();
        assert_eq!(s.get_request("r1").unwrap().state, RequestState::Signing);
        // A claim is made once: the request left Approved.
        assert!(matches!(
            s.claim_signing(&claim("r1", "nonce:5", "aa")),
            Err(StoreError::WrongState { .. })
        ));
        // Same nonce, other request.
        let err = s.claim_signing(&claim("r2", "nonce:5", "bb")).unwrap_err();
        assert!(
            matches!(err, StoreError::ReplayConflict { what: "replay key", ref other, .. } if other == "r1"),
            "{err:?}"
        );
        // Same digest, other request.
        let err = s.claim_signing(&claim("r3", "nonce:6", "aa")).unwrap_err();
        assert!(
            matches!(err, StoreError::ReplayConflict { what: "digest", .. }),
            "{err:?}"
        );
        // The refused claims changed nothing: states, reservations, guards.
        assert_eq!(s.get_request("r2").unwrap().state, RequestState::Approved);
        assert_eq!(s.get_request("r3").unwrap().state, RequestState::Approved);
        assert_eq!(
            s.reservations_since("eth-cold", "ethereum:native", 0)
                .unwrap()
                .len(),
            1
        );
        s.claim_signing(&claim("r3", "nonce:6", "cc")).unwrap();
        let signed = s.record_signed("r1", b"raw tx", "0xhash", 101).unwrap();
        assert_eq!(signed.state, RequestState::Signed);
        assert_eq!(signed.signed_transaction.as_deref(), Some(&b"raw tx"[..]));
        assert!(matches!(
            s.record_signed("r1", b"raw tx", "0xhash", 102),
            Err(StoreError::WrongState { .. })
        ));
    }
}

#[test]
fn reservations_are_selected_by_window() {
    for (_d, s) in stores() {
        for (i, at) in [(1, 10), (2, 20), (3, 30)] {
            let id = format!("r{i}");
            s.insert_request(&new_request(&id, &id, id.as_bytes()))
                .unwrap();
            s.transition(
                &id,
                &[RequestState::PendingApproval],
                RequestState::Approved,
                None,
                1,
            )
            .unwrap();
            let mut c = claim(&id, &format!("nonce:{i}"), &format!("d{i}"));
            c.reservations[0].at = at;
            s.claim_signing(&c).unwrap();
        }
        let got: Vec<i64> = s
            .reservations_since("eth-cold", "ethereum:native", 20)
            .unwrap()
            .iter()
            .map(|r| r.at)
            .collect();
        assert_eq!(got, [20, 30]);
        assert!(
            s.reservations_since("eth-cold", "bitcoin:native", 0)
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn freeze_state_persists() {
    for (_d, s) in stores() {
        assert!(!s.freeze_state().unwrap().frozen);
        let f = FreezeState {
            frozen: true,
            by: "carol".into(),
            reason: "incident".into(),
            since: 9,
            freeze_id: vec![7; 32],
        };
        s.set_freeze(&f).unwrap();
        assert_eq!(s.freeze_state().unwrap(), f);
    }
}

#[test]
fn a_new_freeze_or_an_unfreeze_closes_every_open_unfreeze_request() {
    for (_d, s) in stores() {
        let a = StoredApproval {
            request_id: "unf-1".into(),
            officer_id: "alice".into(),
            approve: true,
            message: vec![1],
            signature: vec![2; 64],
            received_at: 10,
        };
        s.add_governance_approval("unf-1", GovernanceKind::Unfreeze, &a)
            .unwrap();
        s.set_governance_state("unf-1", GovernanceState::Waiting, Some(11))
            .unwrap();
        assert_eq!(
            s.open_governance(GovernanceKind::Unfreeze)
                .unwrap()
                .unwrap()
                .id,
            "unf-1"
        );
        s.set_freeze(&FreezeState {
            frozen: true,
            by: "carol".into(),
            reason: "again".into(),
            since: 12,
            freeze_id: vec![8; 32],
        })
        .unwrap();
        assert_eq!(s.open_governance(GovernanceKind::Unfreeze).unwrap(), None);
        assert_eq!(
            s.governance("unf-1").unwrap().unwrap().state,
            GovernanceState::Superseded
        );
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinko.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", migrations::CURRENT + 1)
        .unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::SchemaTooNew { .. })
    ));
}

/// The operator's read-only commands open a store with [`Store::open_existing`]: a mistyped
/// path creates nothing, an empty database or an older schema is refused (a backup copy is
/// never migrated by reading it), and a write through it fails and changes nothing; reading
/// works. Both backends.
#[test]
fn open_existing_reads_only_and_never_creates_or_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    let err = Store::open_existing(&Location::Sqlite(missing.clone())).unwrap_err();
    assert!(err.to_string().contains("no store at"), "{err}");
    assert!(
        !missing.exists(),
        "a store was created at the mistyped path"
    );

    let path = dir.path().join("kinko.db");
    let s = Store::open(&path).unwrap();
    s.insert_request(&new_request("r-1", "key-1", b"payload"))
        .unwrap();
    drop(s);
    let ro = Store::open_existing(&Location::Sqlite(path.clone())).unwrap();
    assert_eq!(ro.get_request("r-1").unwrap().new.idempotency_key, "key-1");
    assert!(
        ro.insert_request(&new_request("r-2", "key-2", b"payload"))
            .is_err(),
        "a write through a read-only store succeeded"
    );
    drop(ro);
    assert!(matches!(
        Store::open(&path).unwrap().get_request("r-2"),
        Err(StoreError::NotFound(_))
    ));

    // An older schema: refused, and left at its version.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", migrations::CURRENT - 1)
        .unwrap();
    drop(conn);
    let err = Store::open_existing(&Location::Sqlite(path.clone())).unwrap_err();
    assert!(
        err.to_string().contains("written by an earlier kinkod"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrations::CURRENT - 1, "the store was migrated");

    // A file that is no store.
    let empty = dir.path().join("empty.db");
    drop(rusqlite::Connection::open(&empty).unwrap());
    let err = Store::open_existing(&Location::Sqlite(empty)).unwrap_err();
    assert!(err.to_string().contains("not a Kinko store"), "{err}");

    let Some(base) = crate::testing::postgres_url() else {
        return pg_required();
    };
    let _ = base;
    let blank = crate::testing::fresh_database("blank").unwrap();
    let err = Store::open_existing(&Location::Postgres(blank.clone())).unwrap_err();
    assert!(err.to_string().contains("no Kinko store"), "{err}");
    let url = crate::testing::fresh_database("existing").unwrap();
    Store::open_postgres(&url)
        .unwrap()
        .insert_request(&new_request("r-1", "key-1", b"payload"))
        .unwrap();
    let ro = Store::open_existing(&Location::Postgres(url.clone())).unwrap();
    assert_eq!(ro.get_request("r-1").unwrap().new.idempotency_key, "key-1");
    assert!(
        ro.insert_request(&new_request("r-2", "key-2", b"payload"))
            .is_err()
    );
    drop(ro);
    let supported = migrations::PG_MIGRATIONS.len() as i64;
    crate::testing::sql(&url, "UPDATE kinko_schema SET version = 1").unwrap();
    if supported > 1 {
        let err = Store::open_existing(&Location::Postgres(url.clone())).unwrap_err();
        assert!(
            err.to_string().contains("written by an earlier kinkod"),
            "{err}"
        );
    }
}

/// Counting a requester's denials of the last day (at every submission) reads the index
/// alone: a store holding years of denied requests does not make each submission slower.
#[test]
fn the_daily_denial_count_reads_only_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinko.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            crate::tx::COUNT_DENIED_SINCE
        ))
        .unwrap()
        .query_map(rusqlite::params!["ledger", 0i64], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        plan,
        vec![
            "SEARCH requests USING COVERING INDEX requests_by_requester_state_created \
             (requester=? AND state=? AND created_at>?)"
                .to_string()
        ]
    );
}

/// PostgreSQL: a database migrated by an older Kinko (schema version 1, before `claimed_by`)
/// opens migrated to the current version with its rows kept; one written by a newer Kinko is
/// refused, as on SQLite.
#[test]
fn postgresql_migrates_an_older_schema_and_refuses_a_newer_one() {
    if crate::testing::postgres_url().is_none() {
        return pg_required();
    }
    let url = crate::testing::fresh_database("schema").unwrap();
    let s = Store::open_postgres(&url).unwrap();
    s.insert_request(&new_request("r-old", "old-key", b"payload"))
        .unwrap();
    drop(s);
    // As version 1 left it (before `claimed_by`, with the narrower requester index, and
    // without witness cosignatures).
    crate::testing::sql(
        &url,
        "ALTER TABLE requests DROP COLUMN claimed_by; \
         DROP TABLE log_cosignatures; \
         DROP INDEX requests_by_requester_state_created; \
         CREATE INDEX requests_by_requester_state ON requests (requester, state); \
         UPDATE kinko_schema SET version = 1",
    )
    .unwrap();
    let s = Store::open_postgres(&url).unwrap();
    assert_eq!(
        s.get_request("r-old").unwrap().new.idempotency_key,
        "old-key"
    );
    assert!(s.signing_held().unwrap().is_empty(), "claimed_by is back");
    assert_eq!(
        s.count_denied_since("ledger", 0).unwrap(),
        0,
        "the index is back"
    );
    drop(s);
    let supported = migrations::PG_MIGRATIONS.len() as i64;
    crate::testing::sql(
        &url,
        &format!("UPDATE kinko_schema SET version = {}", supported + 1),
    )
    .unwrap();
    match Store::open_postgres(&url) {
        Err(StoreError::SchemaTooNew {
            found,
            supported: s,
        }) => {
            assert_eq!((found, s), (supported + 1, supported));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn governance_requests_keep_one_verdict_per_officer_and_the_first_quorum_instant() {
    for (_d, s) in stores() {
        let g = s
            .add_governance_approval(
                "unfreeze-1",
                GovernanceKind::Unfreeze,
                &approval("unfreeze-1", "alice"),
            )
            .unwrap();
        assert_eq!(
            (g.kind.as_str(), g.state.as_str(), g.quorum_reached_at),
            ("unfreeze", "pending", None)
        );
        assert!(matches!(
            s.add_governance_approval(
                "unfreeze-1",
                GovernanceKind::Unfreeze,
                &approval("unfreeze-1", "alice")
            ),
            Err(StoreError::DuplicateApproval { .. })
        ));
        // Another kind under the same id is refused.
        assert!(
            s.add_governance_approval(
                "unfreeze-1",
                GovernanceKind::InstallPolicy,
                &approval("unfreeze-1", "bob")
            )
            .is_err()
        );
        s.add_governance_approval(
            "unfreeze-1",
            GovernanceKind::Unfreeze,
            &approval("unfreeze-1", "bob"),
        )
        .unwrap();
        s.set_governance_state("unfreeze-1", GovernanceState::Waiting, Some(100))
            .unwrap();
        s.set_governance_state("unfreeze-1", GovernanceState::Waiting, Some(200))
            .unwrap();
        let g = s.governance("unfreeze-1").unwrap().unwrap();
        assert_eq!(
            g.quorum_reached_at,
            Some(100),
            "the first quorum instant is kept"
        );
        let officers: Vec<_> = s
            .governance_approvals("unfreeze-1")
            .unwrap()
            .into_iter()
            .map(|a| a.officer_id)
            .collect();
        assert_eq!(officers, ["alice", "bob"]);
        assert!(s.governance("nope").unwrap().is_none());
    }
}

fn proposal(id: &str, hash: u8, at: i64) -> PolicyProposal {
    PolicyProposal {
        id: id.into(),
        policy_hash: vec![hash; 32],
        policy_text: format!("version = 1 # {id}"),
        base_policy_hash: vec![1; 32],
        proposed_by: "admin".into(),
        created_at: at,
    }
}

#[test]
fn installing_a_proposal_makes_it_the_policy_in_force_and_supersedes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinko.db");
    {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.installed_policy().unwrap(), None);
        let initial = InstalledPolicy {
            policy_hash: vec![1; 32],
            policy_text: "initial".into(),
            proposal_id: None,
            installed_at: 10,
        };
        s.install_policy(&initial).unwrap();
        assert_eq!(s.installed_policy().unwrap(), Some(initial));
        s.insert_policy_proposal(&proposal("p1", 2, 20)).unwrap();
        s.insert_policy_proposal(&proposal("p2", 3, 30)).unwrap();
        assert!(
            s.insert_policy_proposal(&proposal("p1", 4, 40)).is_err(),
            "a proposal id is never reused"
        );
        assert_eq!(
            s.policy_proposal("p1").unwrap(),
            Some(proposal("p1", 2, 20))
        );
        assert_eq!(
            s.open_governance(GovernanceKind::InstallPolicy)
                .unwrap()
                .unwrap()
                .id,
            "p2"
        );
        s.add_governance_approval(
            "p1",
            GovernanceKind::InstallPolicy,
            &approval("p1", "alice"),
        )
        .unwrap();
        s.install_policy(&InstalledPolicy {
            policy_hash: vec![2; 32],
            policy_text: "version = 1 # p1".into(),
            proposal_id: Some("p1".into()),
            installed_at: 50,
        })
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    let now = s.installed_policy().unwrap().unwrap();
    assert_eq!(
        (now.policy_hash, now.proposal_id.as_deref()),
        (vec![2; 32], Some("p1"))
    );
    assert_eq!(
        s.governance("p1").unwrap().unwrap().state,
        GovernanceState::Effective
    );
    assert_eq!(
        s.governance("p2").unwrap().unwrap().state,
        GovernanceState::Superseded
    );
    assert_eq!(
        s.open_governance(GovernanceKind::InstallPolicy).unwrap(),
        None
    );
    assert!(s.policy_proposal("nope").unwrap().is_none());
}

#[test]
fn old_pending_requests_are_found_for_expiry_and_counted_by_state() {
    for (_d, s) in stores() {
        let mut old = new_request("old", "i1", b"a");
        old.now = 100;
        let mut young = new_request("young", "i2", b"b");
        young.now = 200;
        let mut denied = new_request("denied", "i3", b"c");
        denied.now = 50;
        denied.state = RequestState::Denied;
        for r in [&old, &young, &denied] {
            s.insert_request(r).unwrap();
        }
        assert_eq!(s.pending_created_before(150).unwrap(), ["old"]);
        assert_eq!(s.pending_created_before(201).unwrap(), ["old", "young"]);
        let mut counts = s.count_by_state().unwrap();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("denied".to_string(), 1),
                ("pending_approval".to_string(), 2)
            ]
        );
    }
}

#[test]
fn pending_requests_are_listed_a_page_at_a_time_oldest_first() {
    for (_d, s) in stores() {
        for i in 0..5i64 {
            let mut r = new_request(&format!("r{i}"), &format!("i{i}"), b"x");
            r.now = 100 + i / 2; // pairs share a second: the id breaks ties
            s.insert_request(&r).unwrap();
        }
        let page = |after: Option<&str>| -> Vec<String> {
            s.list_by_state_page(RequestState::PendingApproval, after, 2)
                .unwrap()
                .into_iter()
                .map(|r| r.new.id)
                .collect()
        };
        assert_eq!(page(None), ["r0", "r1"]);
        assert_eq!(page(Some("r1")), ["r2", "r3"]);
        assert_eq!(page(Some("r3")), ["r4"]);
        assert!(page(Some("r4")).is_empty());
    }
}

mod log {
    //! The audit log held in the store: a step and its records commit together, the log
    //! reopens verified, an edited log is refused, and an export verifies offline.

    use super::*;
    use kinko_audit::note::SoftwareSigner;
    use kinko_audit::record::{Event, Refusal};

    const ORIGIN: &str = "kinko.test/log";

    fn signer() -> SoftwareSigner {
        SoftwareSigner::from_seed(&[9; 32])
    }

    /// Every backend, its log open.
    fn all_logged() -> Vec<(tempfile::TempDir, Store)> {
        stores()
            .into_iter()
            .map(|(d, s)| {
                s.open_log(crate::log::LogConfig::new(ORIGIN), signer())
                    .unwrap();
                (d, s)
            })
            .collect()
    }

    fn logged() -> (tempfile::TempDir, Store) {
        let (d, s) = store();
        s.open_log(crate::log::LogConfig::new(ORIGIN), signer())
            .unwrap();
        (d, s)
    }

    fn refusal(n: usize) -> Event {
        Event::Refusal(Refusal {
            request_id: None,
            code: "TEST".into(),
            message: "x".repeat(n),
        })
    }

    /// Steps committed from many threads at once are grouped into fewer transactions (group
    /// commit), and each caller gets its own outcome: a step that fails leaves neither its
    /// state nor its records, while the steps committed in the same transaction keep theirs;
    /// the log then reopens verified.
    #[test]
    fn concurrent_steps_share_commits_and_a_failing_step_undoes_only_itself() {
        for (_d, s) in all_logged() {
            let s = std::sync::Arc::new(s);
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let s = std::sync::Arc::clone(&s);
                    std::thread::spawn(move || {
                        (0..25)
                            .map(|j| {
                                let id = format!("g-{t}-{j}");
                                let fails = j % 5 == 4;
                                let request = new_request(&id, &id, id.as_bytes());
                                let out = s.commit("ledger", move |tx| {
                                    tx.insert_request(&request)?;
                                    if fails {
                                        return Err(StoreError::NotFound("deliberately".into()));
                                    }
                                    Ok(((), vec![refusal(1)]))
                                });
                                (id, fails, out.map(|(_, a)| a.len()))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let outcomes: Vec<_> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let mut committed = 0;
            for (id, fails, out) in &outcomes {
                if *fails {
                    assert!(matches!(out, Err(StoreError::NotFound(_))), "{id}: {out:?}");
                    assert!(
                        matches!(s.get_request(id), Err(StoreError::NotFound(_))),
                        "{id}: a failed step left its state"
                    );
                } else {
                    assert_eq!(out.as_ref().ok(), Some(&1), "{id}");
                    assert_eq!(s.get_request(id).unwrap().new.id, *id);
                    committed += 1;
                }
            }
            assert_eq!(committed, 160);
            assert_eq!(s.log_size(), 160, "only the committed steps' records");
            let (batches, steps) = s.commit_counts();
            assert_eq!(steps, 200);
            assert!(batches < steps, "no two steps shared a commit ({batches})");
            eprintln!("group commit: {steps} steps in {batches} transactions");
            // Every record reads back and the tree over them is the one the checkpoint signs.
            let note = s.checkpoint().unwrap();
            assert_eq!(s.read_log_lines(0, 200).unwrap().len(), 160);
            assert!(note.contains("\n160\n"), "{note}");
        }
    }

    #[test]
    fn a_step_and_its_records_commit_together_or_not_at_all() {
        for (_d, s) in all_logged() {
            let empty_root = s.root_at(s.log_size()).unwrap();
            let (inserted, appended) = s
                .commit("ledger", move |tx| {
                    let i = tx.insert_request(&new_request("r1", "i1", b"a"))?;
                    Ok((i, vec![refusal(1), refusal(2)]))
                })
                .unwrap();
            assert!(matches!(inserted, Inserted::Created(_)));
            assert_eq!(
                appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
                [0, 1],
                "sequence numbers from 0, in order"
            );
            assert_eq!(s.log_size(), 2);
            let root = s.root_at(2).unwrap();
            assert_ne!(root, empty_root);

            // A record too large to log: the request it came with is not stored either.
            let err = s
                .commit("ledger", move |tx| {
                    tx.insert_request(&new_request("r2", "i2", b"b"))?;
                    Ok(((), vec![refusal(2 << 20)]))
                })
                .unwrap_err();
            assert!(matches!(err, StoreError::Log(_)), "{err:?}");
            assert!(matches!(s.get_request("r2"), Err(StoreError::NotFound(_))));
            assert_eq!(s.log_size(), 2, "the tree forgot the uncommitted leaf");
            assert_eq!(s.root_at(2).unwrap(), root);

            // A step that fails logs nothing.
            let err = s
                .commit("ledger", move |tx| {
                    tx.transition("r1", &[RequestState::Signed], RequestState::Failed, None, 1)?;
                    Ok(((), vec![refusal(3)]))
                })
                .unwrap_err();
            assert!(matches!(err, StoreError::WrongState { .. }), "{err:?}");
            assert_eq!(s.log_size(), 2);
            assert_eq!(s.read_log_lines(0, 10).unwrap().len(), 2);

            // The next record takes the next number, and its leaf is the hash of its line.
            let (_, appended) = s
                .commit("ledger", move |_| Ok(((), vec![refusal(4)])))
                .unwrap();
            assert_eq!(appended[0].seq, 2);
            let line = s.read_log_lines(2, 1).unwrap().remove(0);
            assert_eq!(
                appended[0].leaf_hash,
                kinko_audit::merkle::leaf_hash(line.as_bytes())
            );
        }
    }

    #[test]
    fn a_signature_record_commits_with_a_checkpoint_covering_it() {
        for (_d, s) in all_logged() {
            s.commit("ledger", move |_| Ok(((), vec![refusal(1)])))
                .unwrap();
            let before = s.latest_checkpoint_sized().unwrap().0;
            assert_eq!(before, 0, "a refusal does not need a checkpoint");
            let produced = Event::SignatureProduced(kinko_audit::record::SignatureProduced {
                request_id: "r1".into(),
                key_name: "k".into(),
                signatures: Vec::new(),
                signed_payload: None,
                transaction_id: None,
            });
            let (_, appended) = s
                .commit("kinkod", move |_| Ok(((), vec![produced])))
                .unwrap();
            let note = appended[0].checkpoint.clone().expect("a checkpoint");
            let key = s.verifier_key().unwrap();
            let cp = kinko_audit::note::Checkpoint::open(&note, &key, Some(ORIGIN)).unwrap();
            assert_eq!(cp.size, 2);
            assert_eq!(cp.root, s.root_at(2).unwrap());
            assert_eq!(s.latest_checkpoint_sized().unwrap().0, 2);
        }
    }

    #[test]
    fn the_log_reopens_verified_and_an_edited_or_truncated_log_is_refused() {
        let (d, s) = logged();
        for n in 0..5 {
            s.commit("ledger", move |_| Ok(((), vec![refusal(n)])))
                .unwrap();
        }
        s.checkpoint().unwrap();
        let root = s.root_at(5).unwrap();
        drop(s);
        let path = d.path().join("kinko.db");
        let reopen = || {
            let s = Store::open(&path).unwrap();
            s.open_log(crate::log::LogConfig::new(ORIGIN), signer())
                .map(|()| s)
        };
        let s = reopen().unwrap();
        assert_eq!(s.log_size(), 5);
        assert_eq!(s.root_at(5).unwrap(), root);
        drop(s);

        let conn = rusqlite::Connection::open(&path).unwrap();
        // The triggers refuse an edit from a bug...
        assert!(
            conn.execute("DELETE FROM log_records WHERE seq = 4", [])
                .is_err()
        );
        // ...and an editor who drops them is caught at the next start.
        conn.execute_batch(
            "DROP TRIGGER log_records_append_only_update; DROP TRIGGER log_records_append_only_delete;",
        )
        .unwrap();
        let original: String = conn
            .query_row("SELECT line FROM log_records WHERE seq = 2", [], |r| {
                r.get(0)
            })
            .unwrap();
        conn.execute(
            "UPDATE log_records SET line = replace(line, '\"TEST\"', '\"TSET\"') WHERE seq = 2",
            [],
        )
        .unwrap();
        let err = reopen().unwrap_err();
        assert!(
            err.to_string().contains("record 2"),
            "names the record: {err}"
        );
        conn.execute(
            "UPDATE log_records SET line = ?1 WHERE seq = 2",
            [&original],
        )
        .unwrap();
        reopen().unwrap();
        // The last record deleted: shorter than the checkpoint signed.
        conn.execute("DELETE FROM log_records WHERE seq = 4", [])
            .unwrap();
        let err = reopen().unwrap_err();
        assert!(
            err.to_string()
                .contains("holds 4 records but a checkpoint of 5 was signed"),
            "{err}"
        );
    }

    #[test]
    fn an_export_is_the_documented_files_and_verifies_offline() {
        let (d, s) = logged();
        for n in 0..3 {
            s.commit("ledger", move |_| Ok(((), vec![refusal(n)])))
                .unwrap();
        }
        s.checkpoint().unwrap();
        let out = d.path().join("export");
        assert_eq!(s.export_log(&out).unwrap(), (3, 2));
        let key = s.verifier_key().unwrap();
        let report = kinko_audit::verify::verify_dir(&out, &key, Default::default()).unwrap();
        assert!(report.failures.is_empty(), "{report}");
        assert_eq!(report.records, 3);
        // Never over an existing log.
        assert!(s.export_log(&out).is_err());
        // And the export imports into an empty store as the same log.
        let (_d2, other) = store();
        let lines: Vec<String> =
            std::fs::read_to_string(out.join("segment-00000000000000000000.jsonl"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
        let notes: Vec<String> = std::fs::read_to_string(out.join("checkpoints.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["note"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(other.import_log(&lines, &notes).unwrap(), (3, 2));
        other
            .open_log(crate::log::LogConfig::new(ORIGIN), signer())
            .unwrap();
        assert_eq!(other.root_at(3).unwrap(), s.root_at(3).unwrap());
    }

    /// Two stores on one PostgreSQL database, as two kinkod replicas.
    fn replicas() -> Option<(Store, Store)> {
        replicas_at().map(|(a, b, _)| (a, b))
    }

    fn replicas_at() -> Option<(Store, Store, String)> {
        crate::testing::postgres_url()?;
        let url = crate::testing::fresh_database("replicas").unwrap();
        let a = Store::open_postgres(&url).unwrap();
        a.open_log(crate::log::LogConfig::new(ORIGIN), signer())
            .unwrap();
        let b = Store::open_postgres(&url).unwrap();
        b.open_log(crate::log::LogConfig::new(ORIGIN), signer())
            .unwrap();
        Some((a, b, url))
    }

    /// The database connection lost (PostgreSQL restarted, the network broke): while the
    /// database cannot be reached every call fails and changes nothing; once it can, the first
    /// call after the reconnect pause reconnects by itself and the log carries on with no gap.
    #[test]
    fn a_lost_connection_fails_closed_and_the_store_reconnects_by_itself() {
        let Some((s, _b, url)) = replicas_at() else {
            return pg_required();
        };
        s.commit("ledger", move |_| Ok(((), vec![refusal(1)])))
            .unwrap();
        let name = url
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("dbname="))
            .unwrap()
            .to_string();
        let base = crate::testing::postgres_url().unwrap();
        let admin = |sql: &str| crate::testing::sql(&base, sql).unwrap();
        admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
        admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ));
        std::thread::sleep(std::time::Duration::from_millis(300));
        for _ in 0..3 {
            let err = s
                .commit("ledger", move |_| Ok(((), vec![refusal(2)])))
                .unwrap_err();
            assert!(matches!(err, StoreError::Postgres(_)), "{err:?}");
        }
        assert_eq!(s.log_size(), 1, "nothing was appended");
        admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
        // After a failed attempt to connect, calls fail at once for a pause (no queue of
        // connect timeouts behind the store's mutex); the first call after it reconnects.
        std::thread::sleep(crate::db::PG_RECONNECT_PAUSE);
        let (_, appended) = s
            .commit("ledger", move |_| Ok(((), vec![refusal(3)])))
            .unwrap();
        assert_eq!(appended[0].seq, 1);
        assert_eq!(s.read_log_lines(0, 10).unwrap().len(), 2);
    }

    #[test]
    fn replicas_append_to_one_sequence_and_one_tree() {
        let Some((a, b)) = replicas() else {
            return pg_required();
        };
        let mut seqs = Vec::new();
        for round in 0..5 {
            for (s, n) in [(&a, 2), (&b, 1)] {
                let (_, appended) = s
                    .commit("ledger", move |_| {
                        Ok(((), (0..n).map(|i| refusal(round * 10 + i)).collect()))
                    })
                    .unwrap();
                seqs.extend(appended.iter().map(|x| x.seq));
            }
        }
        // One sequence, no gap and no fork: 1 opening checkpoint, then 15 records.
        assert_eq!(seqs, (0..15).collect::<Vec<u64>>());
        // Each replica's tree is the other's once it has seen the same records.
        a.checkpoint().unwrap();
        b.checkpoint().unwrap();
        assert_eq!(a.log_size(), 15);
        assert_eq!(b.log_size(), 15);
        assert_eq!(a.root_at(15).unwrap(), b.root_at(15).unwrap());
        // Either replica's checkpoint covers the other's records and verifies.
        let key = a.verifier_key().unwrap();
        let note = b.latest_checkpoint().unwrap();
        let cp = kinko_audit::note::Checkpoint::open(&note, &key, Some(ORIGIN)).unwrap();
        assert_eq!((cp.size, cp.root), (15, a.root_at(15).unwrap()));
        // And the whole log, exported from one replica, verifies offline.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        assert_eq!(a.export_log(&out).unwrap().0, 15);
        let report = kinko_audit::verify::verify_dir(&out, &key, Default::default()).unwrap();
        assert!(report.failures.is_empty(), "{report}");
    }

    #[test]
    fn a_nonce_claimed_on_one_replica_is_refused_on_the_other() {
        let Some((a, b)) = replicas() else {
            return pg_required();
        };
        a.insert_request(&new_request("r1", "i1", b"a")).unwrap();
        b.insert_request(&new_request("r2", "i2", b"b")).unwrap();
        a.commit("kinkod", move |tx| {
            tx.claim_signing(&claim("r1", "nonce:5", "aa"))?;
            Ok(((), vec![refusal(1)]))
        })
        .unwrap();
        let err = b
            .commit("kinkod", move |tx| {
                tx.claim_signing(&claim("r2", "nonce:5", "bb"))?;
                Ok(((), vec![refusal(2)]))
            })
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::ReplayConflict { other, .. } if other == "r1"),
            "{err:?}"
        );
        assert_eq!(
            b.get_request("r2").unwrap().state,
            RequestState::PendingApproval
        );
    }

    #[test]
    fn concurrent_commits_on_two_replicas_never_fork_the_log() {
        let Some((a, b, url)) = replicas_at() else {
            return pg_required();
        };
        let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
        let workers: Vec<_> = [std::sync::Arc::clone(&a), std::sync::Arc::clone(&b)]
            .into_iter()
            .map(|s| {
                std::thread::spawn(move || {
                    for i in 0..40 {
                        s.commit("ledger", move |_| Ok(((), vec![refusal(i)])))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        a.checkpoint().unwrap();
        b.checkpoint().unwrap();
        assert_eq!((a.log_size(), b.log_size()), (80, 80));
        assert_eq!(a.root_at(80).unwrap(), b.root_at(80).unwrap());
        // A third replica opening the database verifies every record and checkpoint.
        let c = Store::open_postgres(&url).unwrap();
        c.open_log(crate::log::LogConfig::new(ORIGIN), signer())
            .unwrap();
        assert_eq!(c.log_size(), 80);
        assert_eq!(c.root_at(80).unwrap(), a.root_at(80).unwrap());
    }
}

/// Settings that can lose a committed transaction are reported: none on SQLite as the store
/// opens it, none on the test cluster, and `synchronous_commit = off` on a PostgreSQL database.
#[test]
fn settings_that_can_lose_a_commit_are_reported() {
    let (_d, s) = store();
    assert!(s.durability_problems().unwrap().is_empty());
    let Some(_) = crate::testing::postgres_url() else {
        return pg_required();
    };
    let url = crate::testing::fresh_database("durability").unwrap();
    let pg = Store::open_postgres(&url).unwrap();
    assert_eq!(pg.durability_problems().unwrap(), Vec::<String>::new());
    let name = url
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap();
    crate::db::Pg::connect(&url, None)
        .unwrap()
        .batch(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .unwrap();
    let pg = Store::open_postgres(&url).unwrap();
    let problems = pg.durability_problems().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("synchronous_commit = off"),
        "{problems:?}"
    );
}

/// A CA, and a server certificate it signed for `localhost` only (PEM).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// TLS to PostgreSQL, against a TLS-only cluster of the test's own: with the CA that signed the
/// server's certificate the store opens and commits; in the clear the server refuses; with
/// another CA, or a host name the certificate does not carry, the store refuses the server; a
/// connection string asking for TLS with no CA to verify it is refused before connecting.
#[test]
fn tls_to_postgresql_is_verified_against_the_configured_ca() {
    if crate::testing::postgres_url().is_none() {
        return pg_required();
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_material();
    let (other_ca, _, _) = tls_material();
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("server.crt"), &cert).unwrap();
    std::fs::write(certs.join("server.key"), &key).unwrap();
    let pg = crate::testing::Cluster::start(
        &tmp.path().join("pg"),
        &[("KINKO_PG_TLS_DIR", certs.to_str().unwrap())],
    )
    .unwrap();
    let base = pg.url.clone();
    // Connection strings name the host the certificate carries.
    let base = base.replace("host=127.0.0.1", "host=localhost");

    let pem = ca.as_bytes();
    let url = {
        let pg = crate::db::Pg::connect(&base, Some(crate::db::tls_config(pem).unwrap())).unwrap();
        pg.batch("CREATE DATABASE tls_test").unwrap();
        base.replace("dbname=postgres", "dbname=tls_test")
    };
    // Over TLS, the store migrates, writes and reads.
    let s = Store::open_postgres_tls(&url, Some(pem)).unwrap();
    assert!(s.durability_problems().unwrap().is_empty());
    assert!(s.signing_held().unwrap().is_empty());

    let err = |r: Result<Store, StoreError>| match r {
        Ok(_) => panic!("opened"),
        Err(e) => e.to_string(),
    };
    let clear = err(Store::open_postgres(&url));
    assert!(clear.contains("no encryption"), "{clear}");
    let other = err(Store::open_postgres_tls(&url, Some(other_ca.as_bytes())));
    assert!(other.contains("invalid peer certificate"), "{other}");
    let wrong_name = err(Store::open_postgres_tls(
        &url.replace("host=localhost", "host=127.0.0.1"),
        Some(pem),
    ));
    assert!(wrong_name.contains("not valid for name"), "{wrong_name}");
    let no_ca = err(Store::open_postgres(&format!("{url} sslmode=require")));
    assert!(no_ca.contains("no CA is configured"), "{no_ca}");
    let not_pem = err(Store::open_postgres_tls(&url, Some(b"not a certificate")));
    assert!(not_pem.contains("no certificate"), "{not_pem}");
}
