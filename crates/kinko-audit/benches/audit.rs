//! `cargo bench -p kinko-audit`: durable appends per second (1 and 16 writers, group commit),
//! and verification speed over a generated log of 1,000,000 records (set
//! `KINKO_AUDIT_BENCH_RECORDS` for another size), against the cost of just hashing the records
//! and verifying the signatures they carry.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kinko_audit::log::CHECKPOINTS_FILE;
use kinko_audit::merkle::{CompactRange, leaf_hash};
use kinko_audit::note::Checkpoint;
use kinko_audit::record::{Event, Record};
use kinko_audit::verify::{VerifyOptions, verify_dir};

const RUN: Duration = Duration::from_secs(2);

fn appends_per_second(writers: usize, signature_events: bool) -> (f64, usize) {
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let log = Arc::new(open(dir.path()));
    for e in bootstrap_events() {
        log.append("kinkod", e).unwrap();
    }
    let events: Arc<Vec<Event>> = Arc::new(withdrawal_events(0, &[1, 2]));
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let log = Arc::clone(&log);
            let events = Arc::clone(&events);
            std::thread::spawn(move || {
                let mut n = 0usize;
                // request_received (no checkpoint) or signature_produced (one per batch).
                let e = if signature_events {
                    events.last().unwrap().clone()
                } else {
                    events[0].clone()
                };
                while start.elapsed() < RUN {
                    log.append("bench", e.clone()).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    drop(log);
    let cps = std::fs::read_to_string(dir.path().join(CHECKPOINTS_FILE))
        .unwrap()
        .lines()
        .count();
    (total as f64 / secs, cps)
}

/// Writes a log of about `n` records straight to files (bootstrap + withdrawals), with a
/// signed checkpoint every 1000 records, as the daemon would leave it.
fn generate(dir: &Path, n: u64) -> (u64, Vec<Vec<u8>>, Vec<String>) {
    let signer = log_signer();
    let mut seg =
        BufWriter::new(File::create(dir.join("segment-00000000000000000000.jsonl")).unwrap());
    let mut range = CompactRange::new();
    let mut lines = Vec::new();
    let mut notes = Vec::new();
    let mut seq = 0u64;
    let mut w = 0u64;
    let policy = policy_text(&[1, 2, 3], "bench");
    let mut events = vec![install(&policy, None, &[]), bootstrap_events().remove(1)];
    events.reverse();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    while seq < n {
        if events.is_empty() {
            // Every withdrawal distinct: approvals bind the request id and intent digest.
            events = withdrawal(w, &policy, &[1, 2]);
            events.reverse();
            w += 1;
        }
        let Some(event) = events.pop() else { break };
        let line = Record {
            seq,
            time_ms: t0 + seq,
            principal: "requester".into(),
            event,
        }
        .encode()
        .unwrap();
        seg.write_all(&line).unwrap();
        seg.write_all(b"\n").unwrap();
        range.push(leaf_hash(&line)).unwrap();
        lines.push(line);
        seq += 1;
        if seq.is_multiple_of(1000) || (events.is_empty() && seq >= n) {
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: seq,
                root: range.root(),
                extensions: vec![],
            };
            notes.push(cp.sign(ORIGIN, &signer).unwrap());
        }
    }
    // Finish the last withdrawal so every signature is authorized and covered.
    while let Some(event) = events.pop() {
        let line = Record {
            seq,
            time_ms: t0 + seq,
            principal: "requester".into(),
            event,
        }
        .encode()
        .unwrap();
        seg.write_all(&line).unwrap();
        seg.write_all(b"\n").unwrap();
        range.push(leaf_hash(&line)).unwrap();
        lines.push(line);
        seq += 1;
    }
    let cp = Checkpoint {
        origin: ORIGIN.into(),
        size: seq,
        root: range.root(),
        extensions: vec![],
    };
    notes.push(cp.sign(ORIGIN, &signer).unwrap());
    seg.flush().unwrap();
    let mut cps = BufWriter::new(File::create(dir.join(CHECKPOINTS_FILE)).unwrap());
    for note in &notes {
        let v = serde_json::json!({ "note": note });
        cps.write_all(&kinko_intent::to_canonical_json(&v).unwrap())
            .unwrap();
        cps.write_all(b"\n").unwrap();
    }
    cps.flush().unwrap();
    (seq, lines, notes)
}

/// The floor: hash every line into the tree and verify every signature the records carry
/// (approvals, HSM signatures, checkpoints), with no parsing beyond finding the signatures.
fn baseline(lines: &[Vec<u8>], notes: &[String]) -> Duration {
    use ed25519_dalek::{Signature, VerifyingKey};
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    // Extract the signatures outside the timed section.
    let mut ed: Vec<(VerifyingKey, Vec<u8>, Signature)> = Vec::new();
    let mut ec: Vec<(k256::ecdsa::VerifyingKey, Vec<u8>, k256::ecdsa::Signature)> = Vec::new();
    for line in lines {
        let r = Record::decode(line).unwrap();
        let approvals = match &r.event {
            Event::Approval(a) => vec![a.approval.clone()],
            Event::SigningAuthorized(a) => a.approvals.clone(),
            Event::KeyCreated(k) => k.approvals.clone(),
            _ => vec![],
        };
        for a in approvals {
            ed.push((
                VerifyingKey::from_bytes(&a.public_key.0.clone().try_into().unwrap()).unwrap(),
                a.message.0.clone(),
                Signature::from_bytes(&a.signature.0.clone().try_into().unwrap()),
            ));
        }
        if let Event::SignatureProduced(s) = &r.event {
            for p in &s.signatures {
                if let kinko_intent::SigningInput::EcdsaSecp256k1 {
                    digest, public_key, ..
                } = &p.input
                {
                    ec.push((
                        k256::ecdsa::VerifyingKey::from_sec1_bytes(
                            &hex::decode(public_key).unwrap(),
                        )
                        .unwrap(),
                        hex::decode(digest).unwrap(),
                        k256::ecdsa::Signature::from_slice(&p.signature.0).unwrap(),
                    ));
                }
            }
        }
    }
    let key = log_key();
    let start = Instant::now();
    let mut range = CompactRange::new();
    for line in lines {
        range.push(leaf_hash(line)).unwrap();
    }
    for (k, m, s) in &ed {
        k.verify_strict(m, s).unwrap();
    }
    for (k, d, s) in &ec {
        k.verify_prehash(d, s).unwrap();
    }
    for n in notes {
        Checkpoint::open(n, &key, None).unwrap();
    }
    std::hint::black_box(range.root());
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // fsync latency on a shared machine swings by an order of magnitude from minute to minute:
    // alternate 1 and 16 writers and compare medians.
    println!(
        "## Durable appends (fdatasync per batch, group commit), {}s per run, 1 and 16 writers alternated",
        RUN.as_secs()
    );
    println!("| event | writers | median appends/s | runs | checkpoints signed (last run) |");
    println!("|---|---|---|---|---|");
    for sig in [false, true] {
        let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut cps = [0usize; 2];
        for _ in 0..3 {
            for (i, writers) in [1usize, 16].into_iter().enumerate() {
                let (rate, c) = appends_per_second(writers, sig);
                runs[i].push(rate);
                cps[i] = c;
            }
        }
        let kind = if sig {
            "signature_produced (checkpoint per batch)"
        } else {
            "request_received"
        };
        let mut medians = [0f64; 2];
        for (i, writers) in [1usize, 16].into_iter().enumerate() {
            let mut v = runs[i].clone();
            v.sort_by(f64::total_cmp);
            medians[i] = v[v.len() / 2];
            let all: Vec<String> = runs[i].iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "| {kind} | {writers} | {:.0} | {} | {} |",
                medians[i],
                all.join(", "),
                cps[i]
            );
        }
        println!(
            "| {kind} | 16 / 1 | {:.1}x | {} | |",
            medians[1] / medians[0],
            runs[1]
                .iter()
                .zip(&runs[0])
                .map(|(a, b)| format!("{:.1}x", a / b))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!();

    let n: u64 = std::env::var("KINKO_AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if n == 0 {
        return;
    }
    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let t = Instant::now();
    let (records, lines, notes) = generate(dir.path(), n);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "## Verification of a generated log: {records} records, {:.0} MiB, {} checkpoints (generated in {:.1}s)",
        bytes as f64 / (1u64 << 20) as f64,
        notes.len(),
        t.elapsed().as_secs_f64()
    );
    // The machine may be shared: alternate the two passes and keep the fastest of each.
    let rounds: usize = std::env::var("KINKO_AUDIT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut bases = Vec::new();
    let mut fulls = Vec::new();
    let mut policies = Vec::new();
    for _ in 0..rounds.max(1) {
        bases.push(baseline(&lines, &notes));
        let t = Instant::now();
        let report = verify_dir(dir.path(), &log_key(), VerifyOptions::default()).unwrap();
        fulls.push(t.elapsed());
        assert!(report.ok(), "{report}");
        assert_eq!(report.records, records);
        let mut check = kinko_audit::policy_check::PolicyCheck::new();
        let t = Instant::now();
        let report = verify_dir(
            dir.path(),
            &log_key(),
            VerifyOptions {
                authorization: Some(&mut check),
                ..Default::default()
            },
        )
        .unwrap();
        policies.push(t.elapsed());
        assert!(report.ok(), "{report}");
    }
    let policy = policies.iter().min().copied().unwrap_or_default();
    let base = bases.iter().min().copied().unwrap_or_default();
    let full = fulls.iter().min().copied().unwrap_or_default();
    println!(
        "| pass | fastest of {} | records/s | all runs |",
        bases.len()
    );
    println!("|---|---|---|---|");
    let all = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| hashing + signature verification only (floor) | {:.2}s | {:.0} | {} |",
        base.as_secs_f64(),
        records as f64 / base.as_secs_f64(),
        all(&bases)
    );
    println!(
        "| verify_dir (read, parse, canonical check, tree, checkpoints, signatures, semantics) | {:.2}s | {:.0} | {} |",
        full.as_secs_f64(),
        records as f64 / full.as_secs_f64(),
        all(&fulls)
    );
    println!(
        "| verify_dir + PolicyCheck (re-decode payloads, policy rules, quorum) | {:.2}s | {:.0} | {} |",
        policy.as_secs_f64(),
        records as f64 / policy.as_secs_f64(),
        all(&policies)
    );
    println!(
        "verify_dir / floor: {:.2}x; with PolicyCheck: {:.2}x",
        full.as_secs_f64() / base.as_secs_f64(),
        policy.as_secs_f64() / base.as_secs_f64()
    );
    // What the daemon pays at start: re-read, re-check and re-hash every record, check the
    // last checkpoint.
    let t = Instant::now();
    let log = open(dir.path());
    assert_eq!(log.size(), records);
    println!(
        "AuditLog::open (recovery check) of the same log: {:.2}s",
        t.elapsed().as_secs_f64()
    );
}
