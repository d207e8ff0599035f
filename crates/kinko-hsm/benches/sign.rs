//! Raw `C_Sign` against kinko-hsm's pooled sign-and-verify, in one run, on a fresh SoftHSM2
//! token. Prints a table; run with `cargo bench -p kinko-hsm`.
//!
//! * raw: N OS threads, each with its own logged-in session, calling `C_Sign` in a loop
//!   (secp256k1: `CKM_ECDSA` over a 32-byte prehash; Ed25519: `CKM_EDDSA` over 32 bytes).
//! * kinko: a pool of N sessions, 4·N tokio tasks calling `sign_secp256k1_prehash` (sign,
//!   verify in software, normalize to low-S, recovery id) or `sign_ed25519` (sign, verify).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use kinko_hsm::KeyKind;
use kinko_hsm::testing::{TestToken, module_path};

const RUN: Duration = Duration::from_secs(2);
/// Raw and pooled runs alternate this many times per cell; the table shows the medians, so a
/// change in background load hits both sides alike.
const ROUNDS: usize = 5;
const WARMUP: Duration = Duration::from_millis(300);

fn raw_ops_per_sec(token: &TestToken, label: &str, kind: KeyKind, sessions: usize) -> f64 {
    let ctx = kinko_hsm::load_module(&module_path()).unwrap();
    let slot = kinko_hsm::find_token(&ctx, &token.label).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..sessions {
        let session = ctx.open_rw_session(slot).unwrap();
        let _ = session.login(UserType::User, Some(&token.user_pin));
        let key = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()[0];
        let (stop, count, measuring) = (stop.clone(), count.clone(), measuring.clone());
        threads.push(std::thread::spawn(move || {
            let mut data = [t as u8; 32];
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                data[..8].copy_from_slice(&i.to_be_bytes());
                let mech = match kind {
                    KeyKind::Secp256k1 => Mechanism::Ecdsa,
                    KeyKind::Ed25519 => {
                        Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
                    }
                };
                let sig = session.sign(&mech, key, &data).unwrap();
                std::hint::black_box(sig);
                if measuring.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    std::thread::sleep(WARMUP);
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    std::thread::sleep(RUN);
    let n = count.load(Ordering::SeqCst);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    n as f64 / elapsed.as_secs_f64()
}

fn pooled_ops_per_sec(
    rt: &tokio::runtime::Runtime,
    token: &TestToken,
    label: &'static str,
    kind: KeyKind,
    sessions: usize,
) -> f64 {
    rt.block_on(async {
        let hsm = token.open(sessions).await.unwrap();
        hsm.public_key(label).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let measuring = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..(4 * sessions) {
            let (hsm, stop, count, measuring) =
                (hsm.clone(), stop.clone(), count.clone(), measuring.clone());
            tasks.push(tokio::spawn(async move {
                let mut data = [t as u8; 32];
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    data[..8].copy_from_slice(&i.to_be_bytes());
                    match kind {
                        KeyKind::Secp256k1 => {
                            let s = hsm.sign_secp256k1_prehash(label, data).await.unwrap();
                            std::hint::black_box(s);
                        }
                        KeyKind::Ed25519 => {
                            let s = hsm.sign_ed25519(label, &data).await.unwrap();
                            std::hint::black_box(s);
                        }
                    }
                    if measuring.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            }));
        }
        tokio::time::sleep(WARMUP).await;
        measuring.store(true, Ordering::SeqCst);
        let start = Instant::now();
        tokio::time::sleep(RUN).await;
        let n = count.load(Ordering::SeqCst);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        n as f64 / elapsed.as_secs_f64()
    })
}

fn main() {
    // `cargo test --benches` runs bench binaries with --test-ish flags; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("kinko-hsm sign bench: run with `cargo bench -p kinko-hsm`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .unwrap();
    let token = TestToken::new().unwrap();
    rt.block_on(async {
        let hsm = token.open(1).await.unwrap();
        hsm.generate_key("bench-k1", KeyKind::Secp256k1)
            .await
            .unwrap();
        hsm.generate_key("bench-ed", KeyKind::Ed25519)
            .await
            .unwrap();
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    println!(
        "SoftHSM2 {} ; {cores} cores ; medians of {ROUNDS} alternating {} s runs per side",
        module_path().display(),
        RUN.as_secs()
    );
    println!("| curve | sessions | raw C_Sign ops/s | kinko sign+verify ops/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (curve, label, kind) in [
        (
            "secp256k1 (+low-S, recovery id)",
            "bench-k1",
            KeyKind::Secp256k1,
        ),
        ("Ed25519", "bench-ed", KeyKind::Ed25519),
    ] {
        for sessions in [1, cores] {
            let mut raws = Vec::new();
            let mut pooleds = Vec::new();
            for _ in 0..ROUNDS {
                raws.push(raw_ops_per_sec(&token, label, kind, sessions));
                pooleds.push(pooled_ops_per_sec(&rt, &token, label, kind, sessions));
            }
            let raw = median(&mut raws);
            let pooled = median(&mut pooleds);
            println!(
                "| {curve} | {sessions} | {raw:.0} | {pooled:.0} | {:.1}% |",
                100.0 * pooled / raw
            );
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
