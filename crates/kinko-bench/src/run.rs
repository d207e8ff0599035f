//! The measured phases: sign stage (closed loop and paced), end to end, pending requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kinko_bench::stats::{Latency, per_op, per_second};
use kinko_bench::{BenchError, procfs};
use kinko_proto::v1 as pb;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::workload::{Case, Client, OFFICERS, World, expect_state, rpc};

/// Withdrawal numbers: unique across the whole run (nonces, outpoints, idempotency keys).
pub(crate) static NEXT: AtomicU64 = AtomicU64::new(0);

fn next() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// CPU of the daemon and of this process, read together.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    daemon: procfs::CpuTicks,
    bench: procfs::CpuTicks,
    at: Instant,
}

impl CpuMark {
    pub(crate) fn now(pid: &str) -> Result<CpuMark, BenchError> {
        Ok(CpuMark {
            daemon: procfs::cpu(pid)?,
            bench: procfs::cpu("self")?,
            at: Instant::now(),
        })
    }
}

/// What one measured phase produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    /// Completed operations (signings or withdrawals) in the window.
    pub(crate) ops: u64,
    pub(crate) seconds: f64,
    pub(crate) ops_per_sec: f64,
    /// Latency of the measured operation (the second Approve call, or the whole withdrawal).
    pub(crate) latency: Option<Latency>,
    /// Latency of each step of a withdrawal (end to end only).
    pub(crate) steps: Vec<(String, Latency)>,
    pub(crate) daemon_cpu_s_per_op: Option<f64>,
    pub(crate) bench_cpu_s_per_op: Option<f64>,
    /// Daemon CPU use over the window, in cores (1.0 = one core busy).
    pub(crate) daemon_cores: f64,
    pub(crate) bench_cores: f64,
}

fn phase(
    ops: u64,
    from: &CpuMark,
    to: &CpuMark,
    latency: Option<Latency>,
    steps: Vec<(String, Latency)>,
) -> Phase {
    let seconds = to.at.duration_since(from.at).as_secs_f64();
    let d = to.daemon.seconds_since(&from.daemon);
    let b = to.bench.seconds_since(&from.bench);
    Phase {
        ops,
        seconds,
        ops_per_sec: per_second(ops, seconds).unwrap_or(0.0),
        latency,
        steps,
        daemon_cpu_s_per_op: per_op(d, ops),
        bench_cpu_s_per_op: per_op(b, ops),
        daemon_cores: if seconds > 0.0 { d / seconds } else { 0.0 },
        bench_cores: if seconds > 0.0 { b / seconds } else { 0.0 },
    }
}

/// A request with the first approval in, and the second officer's signed approval ready.
pub(crate) struct Prepared {
    second: pb::SignedApproval,
}

/// Officer `o` fetches the request, decodes it locally and signs an approval.
async fn fetch_and_sign(
    world: &World,
    client: &mut Client,
    case: Case,
    o: usize,
    id: &str,
) -> Result<pb::SignedApproval, BenchError> {
    let officer = OFFICERS
        .get(o)
        .ok_or_else(|| BenchError::Workload("officer".into()))?;
    let c = client
        .officers
        .get_mut(o)
        .ok_or_else(|| BenchError::Workload("officer client".into()))?;
    let req = c
        .get_request(pb::RequestId {
            request_id: id.into(),
        })
        .await
        .map_err(|s| rpc("get", s))?
        .into_inner();
    world.approval(case, officer, &req)
}

async fn submit(world: &World, client: &mut Client, case: Case) -> Result<String, BenchError> {
    let sub = world.submission(case, next())?;
    let r = client
        .ledger
        .submit_withdrawal(sub)
        .await
        .map_err(|s| rpc("submit", s))?
        .into_inner();
    expect_state(&r, pb::RequestState::PendingApproval, "submit")?;
    Ok(r.request_id)
}

async fn approve(
    client: &mut Client,
    o: usize,
    a: pb::SignedApproval,
    want: pb::RequestState,
) -> Result<(), BenchError> {
    let c = client
        .officers
        .get_mut(o)
        .ok_or_else(|| BenchError::Workload("officer client".into()))?;
    let r = c
        .approve(a)
        .await
        .map_err(|s| rpc("approve", s))?
        .into_inner();
    expect_state(&r, want, "approve")
}

/// Submits `count` requests with `clients` concurrently and records the first approval of
/// each; the second officer's approval is signed and kept for the sign stage.
pub(crate) async fn prepare(
    world: &Arc<World>,
    clients: &[Client],
    case: Case,
    count: usize,
) -> Result<Vec<Prepared>, BenchError> {
    let left = Arc::new(AtomicU64::new(count as u64));
    let out = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut tasks = Vec::new();
    for client in clients {
        let (world, mut client, left, out) =
            (world.clone(), client.clone(), left.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let id = submit(&world, &mut client, case).await?;
                let first = fetch_and_sign(&world, &mut client, case, 0, &id).await?;
                approve(&mut client, 0, first, pb::RequestState::PendingApproval).await?;
                let second = fetch_and_sign(&world, &mut client, case, 1, &id).await?;
                out.lock().await.push(Prepared { second });
            }
            Ok::<(), BenchError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| BenchError::Workload(format!("client task: {e}")))??;
    }
    let v = std::mem::take(&mut *out.lock().await);
    Ok(v)
}

/// The sign stage, closed loop: `concurrency` clients send the prepared second approvals
/// (each makes kinkod sign) as fast as the daemon answers.
pub(crate) async fn sign_stage(
    pid: &str,
    clients: &[Client],
    concurrency: usize,
    prepared: Vec<Prepared>,
) -> Result<Phase, BenchError> {
    let queue = Arc::new(Mutex::new(prepared));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = CpuMark::now(pid)?;
    let mut tasks = Vec::new();
    for client in clients.iter().take(concurrency) {
        let (mut client, queue, samples) = (client.clone(), queue.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(p) = queue.lock().await.pop() else {
                    break;
                };
                let t = Instant::now();
                approve(&mut client, 1, p.second, pb::RequestState::Signed).await?;
                samples.lock().await.push(t.elapsed());
            }
            Ok::<(), BenchError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| BenchError::Workload(format!("client task: {e}")))??;
    }
    let end = CpuMark::now(pid)?;
    let mut samples = std::mem::take(&mut *samples.lock().await);
    let ops = samples.len() as u64;
    Ok(phase(
        ops,
        &start,
        &end,
        Latency::of(&mut samples),
        Vec::new(),
    ))
}

/// The sign stage, open loop at `rate` signings per second (arrivals evenly spaced, each call
/// on its own task, so a slow answer does not delay the next arrival).
pub(crate) async fn paced_sign(
    pid: &str,
    clients: &[Client],
    prepared: Vec<Prepared>,
    rate: f64,
) -> Result<Phase, BenchError> {
    if !rate.is_finite() || rate <= 0.0 || clients.is_empty() {
        return Err(BenchError::Workload(
            "paced run needs a rate and clients".into(),
        ));
    }
    let interval = Duration::try_from_secs_f64(1.0 / rate)
        .map_err(|e| BenchError::Workload(format!("paced rate {rate}: {e}")))?;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = CpuMark::now(pid)?;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for (i, p) in prepared.into_iter().enumerate() {
        tick.tick().await;
        let Some(client) = clients.get(i % clients.len()) else {
            break;
        };
        let (mut client, samples) = (client.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            approve(&mut client, 1, p.second, pb::RequestState::Signed).await?;
            samples.lock().await.push(t.elapsed());
            Ok::<(), BenchError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| BenchError::Workload(format!("client task: {e}")))??;
    }
    let end = CpuMark::now(pid)?;
    let mut samples = std::mem::take(&mut *samples.lock().await);
    let ops = samples.len() as u64;
    Ok(phase(
        ops,
        &start,
        &end,
        Latency::of(&mut samples),
        Vec::new(),
    ))
}

/// Names of the timed steps of one withdrawal, in order.
pub(crate) const STEPS: [&str; 5] = [
    "submit (requester-signed)",
    "officer 1: fetch + decode + sign",
    "officer 1: Approve",
    "officer 2: fetch + decode + sign",
    "officer 2: Approve → signed",
];

struct Done {
    start: Instant,
    end: Instant,
    steps: [Duration; 5],
}

/// One whole withdrawal: submit, two officers each fetch, decode, sign and approve.
async fn withdrawal(world: &World, client: &mut Client, case: Case) -> Result<Done, BenchError> {
    let start = Instant::now();
    let id = submit(world, client, case).await?;
    let t1 = Instant::now();
    let a = fetch_and_sign(world, client, case, 0, &id).await?;
    let t2 = Instant::now();
    approve(client, 0, a, pb::RequestState::PendingApproval).await?;
    let t3 = Instant::now();
    let b = fetch_and_sign(world, client, case, 1, &id).await?;
    let t4 = Instant::now();
    approve(client, 1, b, pb::RequestState::Signed).await?;
    let end = Instant::now();
    Ok(Done {
        start,
        end,
        steps: [t1 - start, t2 - t1, t3 - t2, t4 - t3, end - t4],
    })
}

/// End to end, closed loop: `concurrency` clients each run whole withdrawals back to back for
/// `warmup + measure`; withdrawals that start after the warm-up and end inside the window count.
pub(crate) async fn end_to_end(
    world: &Arc<World>,
    pid: &str,
    clients: &[Client],
    concurrency: usize,
    case: Case,
    warmup: Duration,
    measure: Duration,
) -> Result<Phase, BenchError> {
    let t0 = Instant::now();
    let from = t0 + warmup;
    let until = from + measure;
    let mut tasks = Vec::new();
    for client in clients.iter().take(concurrency) {
        let (world, mut client) = (world.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while Instant::now() < until {
                done.push(withdrawal(&world, &mut client, case).await?);
            }
            Ok::<Vec<Done>, BenchError>(done)
        }));
    }
    tokio::time::sleep_until(from.into()).await;
    let start = CpuMark::now(pid)?;
    tokio::time::sleep_until(until.into()).await;
    let end = CpuMark::now(pid)?;
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| BenchError::Workload(format!("client task: {e}")))??,
        );
    }
    let ops = all
        .iter()
        .filter(|d| d.end >= start.at && d.end <= end.at)
        .count() as u64;
    let inside: Vec<&Done> = all
        .iter()
        .filter(|d| d.start >= start.at && d.end <= end.at)
        .collect();
    let mut total: Vec<Duration> = inside.iter().map(|d| d.end - d.start).collect();
    let mut steps = Vec::new();
    for (i, name) in STEPS.iter().enumerate() {
        let mut s: Vec<Duration> = inside
            .iter()
            .filter_map(|d| d.steps.get(i).copied())
            .collect();
        if let Some(l) = Latency::of(&mut s) {
            steps.push(((*name).to_string(), l));
        }
    }
    Ok(phase(ops, &start, &end, Latency::of(&mut total), steps))
}

/// Submits `count` withdrawals that stay pending (no approvals), `concurrency` at a time.
pub(crate) async fn pending(
    world: &Arc<World>,
    pid: &str,
    clients: &[Client],
    case: Case,
    count: usize,
) -> Result<Phase, BenchError> {
    let left = Arc::new(AtomicU64::new(count as u64));
    let start = CpuMark::now(pid)?;
    let mut tasks = Vec::new();
    for client in clients {
        let (world, mut client, left) = (world.clone(), client.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                submit(&world, &mut client, case).await?;
                n += 1;
            }
            Ok::<u64, BenchError>(n)
        }));
    }
    let mut ops = 0u64;
    for t in tasks {
        ops += t
            .await
            .map_err(|e| BenchError::Workload(format!("client task: {e}")))??;
    }
    let end = CpuMark::now(pid)?;
    Ok(phase(ops, &start, &end, None, Vec::new()))
}
