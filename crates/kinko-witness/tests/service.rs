//! The witness service over real HTTP on 127.0.0.1 with its SQLite state: cosigning a growing
//! log, the refusals of the C2SP tlog-witness text, a split view (two trees under one origin
//! and key: the second is refused), state that survives a restart, and two racing requests
//! from the same old size of which exactly one is cosigned.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kinko_audit::cosignature::CosignerKey;
use kinko_audit::merkle::MerkleTree;
use kinko_audit::note::{Checkpoint, CheckpointSigner as _, SoftwareSigner, VerifierKey};
use kinko_audit::witness::KnownLog;
use kinko_witness::Witness;
use kinko_witness::client::{Outcome, add_checkpoint};

const ORIGIN: &str = "kinko.test/audit";
const NAME: &str = "witness.test/w1";

fn log_signer() -> SoftwareSigner {
    SoftwareSigner::from_seed(&[1; 32])
}

fn witness_signer() -> SoftwareSigner {
    SoftwareSigner::from_seed(&[2; 32])
}

fn cosigner() -> CosignerKey {
    CosignerKey::new(NAME, &witness_signer().public_key()).unwrap()
}

fn logs() -> Vec<KnownLog> {
    vec![KnownLog {
        origin: ORIGIN.into(),
        key: VerifierKey::new(ORIGIN, &log_signer().public_key()).unwrap(),
    }]
}

fn tree(n: u64, tag: &str) -> MerkleTree {
    let mut t = MerkleTree::new();
    for i in 0..n {
        t.append(format!("{tag} record {i}").as_bytes());
    }
    t
}

fn signed(t: &MerkleTree, size: u64) -> String {
    Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: t.root_at(size).unwrap(),
        extensions: Vec::new(),
    }
    .sign(ORIGIN, &log_signer())
    .unwrap()
}

fn body(t: &MerkleTree, old: u64, size: u64) -> Vec<u8> {
    let mut b = format!("old {old}\n");
    if old > 0 && old <= size {
        for h in t.consistency_proof(old, size).unwrap() {
            b.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
            b.push('\n');
        }
    }
    b.push('\n');
    b.push_str(&signed(t, size));
    b.into_bytes()
}

async fn start(db: &std::path::Path) -> (String, tokio::task::JoinHandle<()>) {
    let w = Witness::open(NAME, witness_signer(), logs(), db).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(kinko_witness::server::serve(listener, Arc::new(w)));
    (url, task)
}

async fn ask(url: &str, body: Vec<u8>) -> Outcome {
    add_checkpoint(url, body, Duration::from_secs(10))
        .await
        .unwrap()
}

fn cosigned(t: &MerkleTree, size: u64, outcome: Outcome) {
    let Outcome::Cosigned(lines) = outcome else {
        panic!("not cosigned: {outcome:?}");
    };
    let note = signed(t, size) + &lines;
    cosigner().verify_note(&note).unwrap();
}

#[tokio::test]
async fn a_growing_log_is_cosigned_and_every_refusal_has_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("witness.db");
    let (url, task) = start(&db).await;
    let t = tree(20, "a");
    cosigned(&t, 5, ask(&url, body(&t, 0, 5)).await);
    cosigned(&t, 9, ask(&url, body(&t, 5, 9)).await);
    // The same checkpoint again (old = its size, empty proof) is cosigned again.
    cosigned(&t, 9, ask(&url, body(&t, 9, 9)).await);
    // A stale old size: 409 with the latest size, which the log adopts and retries with.
    assert_eq!(ask(&url, body(&t, 5, 12)).await, Outcome::Conflict(9));
    cosigned(&t, 12, ask(&url, body(&t, 9, 12)).await);
    // Going back is a 400 (old larger than the checkpoint).
    let Outcome::Refused(400, _) = ask(&url, body(&t, 12, 9)).await else {
        panic!("rollback not refused")
    };
    // A checkpoint signed by another key: 403.
    let mut forged = b"old 12\n\n".to_vec();
    forged.extend_from_slice(
        Checkpoint {
            origin: ORIGIN.into(),
            size: 14,
            root: t.root_at(14).unwrap(),
            extensions: Vec::new(),
        }
        .sign(ORIGIN, &SoftwareSigner::from_seed(&[3; 32]))
        .unwrap()
        .as_bytes(),
    );
    assert!(matches!(ask(&url, forged).await, Outcome::Refused(403, _)));
    // An unknown origin: 404.
    let other = Checkpoint {
        origin: "other.test/log".into(),
        size: 1,
        root: t.root_at(1).unwrap(),
        extensions: Vec::new(),
    }
    .sign("other.test/log", &log_signer())
    .unwrap();
    assert!(matches!(
        ask(&url, format!("old 0\n\n{other}").into_bytes()).await,
        Outcome::Refused(404, _)
    ));
    // Garbage: 400; GET: 405; another path: 404.
    assert!(matches!(
        ask(&url, b"hello".to_vec()).await,
        Outcome::Refused(400, _)
    ));
    let (authority, _) = kinko_witness::client::endpoint(&url).unwrap();
    let raw = raw_http(
        &authority,
        "GET /add-checkpoint HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    let raw = raw_http(&authority, "GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    task.abort();
}

async fn raw_http(authority: &str, req: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_split_view_is_refused_and_the_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("witness.db");
    let honest = tree(30, "honest");
    // The same first 10 records, then a different history, under the same origin and key.
    let mut forked = tree(10, "honest");
    for i in 10..30 {
        forked.append(format!("forked record {i}").as_bytes());
    }
    {
        let (url, task) = start(&db).await;
        cosigned(&honest, 10, ask(&url, body(&honest, 0, 10)).await);
        cosigned(&honest, 20, ask(&url, body(&honest, 10, 20)).await);
        // The fork at the same size: 422 (a different root at the size last cosigned).
        let Outcome::Refused(422, why) = ask(&url, body(&forked, 20, 20)).await else {
            panic!("fork at the same size cosigned")
        };
        assert!(!why.is_empty());
        // The fork grown further: its proof from 20 does not lead from the cosigned root.
        assert!(matches!(
            ask(&url, body(&forked, 20, 25)).await,
            Outcome::Refused(422, _)
        ));
        task.abort();
    }
    // After a restart the witness still holds size 20 of the honest tree.
    let (url, task) = start(&db).await;
    assert_eq!(ask(&url, body(&honest, 0, 25)).await, Outcome::Conflict(20));
    assert!(matches!(
        ask(&url, body(&forked, 20, 30)).await,
        Outcome::Refused(422, _)
    ));
    cosigned(&honest, 30, ask(&url, body(&honest, 20, 30)).await);
    task.abort();
    let w = Witness::open(NAME, witness_signer(), logs(), &db).unwrap();
    let (size, note) = w.latest(ORIGIN).unwrap().unwrap();
    assert_eq!(size, 30);
    assert_eq!(note, signed(&honest, 30));
}

#[tokio::test]
async fn of_two_requests_from_the_same_old_size_exactly_one_is_cosigned() {
    let a = tree(16, "a");
    let b = {
        let mut t = tree(8, "a");
        for i in 8..16 {
            t.append(format!("b record {i}").as_bytes());
        }
        t
    };
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let (url, task) = start(&dir.path().join("witness.db")).await;
        cosigned(&a, 8, ask(&url, body(&a, 0, 8)).await);
        let (x, y) = tokio::join!(ask(&url, body(&a, 8, 12)), ask(&url, body(&b, 8, 12)));
        let (won, lost, tree) = match (&x, &y) {
            (Outcome::Cosigned(_), other) => (x.clone(), other.clone(), &a),
            (other, Outcome::Cosigned(_)) => (y.clone(), other.clone(), &b),
            _ => panic!("round {round}: neither cosigned: {x:?} {y:?}"),
        };
        cosigned(tree, 12, won);
        // The loser saw the winner's size (409) or, if it came second at the same size
        // after adopting it, a different root (422): never a cosignature.
        assert!(
            matches!(lost, Outcome::Conflict(12) | Outcome::Refused(422, _)),
            "round {round}: {lost:?}"
        );
        task.abort();
    }
}
