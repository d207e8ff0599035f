//! The big state: a set-up whose store holds many requests and log records, to measure whether
//! the signing path slows as history grows. Built once by kinkod itself over gRPC — Ethereum
//! withdrawals to the hot wallet, each submitted and then cancelled by the requester: a stored
//! request with three log records (`request_received`, `decision`, `request_cancelled`) — and
//! kept in a cache directory; each run measures on a copy, so the cached state never changes.
//! (Cancelled rather than denied: a requester's denials are capped per day, and a million of
//! them in one day is no history an exchange has.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kinko_bench::BenchError;
use kinko_proto::v1 as pb;

use crate::daemon::{self, Setup};
use crate::workload::{Client, World, expect_state, rpc};

/// Bumped whenever what a cached state holds, or how it is laid out, changes.
const FORMAT: u32 = 2;

/// Clients submitting while the state is built.
const BUILD_CLIENTS: usize = 16;

/// The cache entry for `requests` cancelled requests.
pub(crate) fn entry(cache: &Path, requests: u64) -> PathBuf {
    cache.join(format!("cancelled-{requests}-v{FORMAT}"))
}

/// Makes the cached state for `requests` requests unless it is there. Returns how long the
/// build took (`None`: it was cached).
pub(crate) async fn ensure(
    kinkod: &Path,
    cache: &Path,
    requests: u64,
    pool_size: usize,
) -> Result<Option<f64>, BenchError> {
    let done = entry(cache, requests);
    if done.join("READY").exists() {
        eprintln!("kinko-bench: big state cached in {}", done.display());
        return Ok(None);
    }
    std::fs::create_dir_all(cache).map_err(|e| BenchError::io(cache.display().to_string(), e))?;
    let building = cache.join(format!(
        "cancelled-{requests}-v{FORMAT}.building-{}",
        std::process::id()
    ));
    eprintln!(
        "kinko-bench: building the big state ({requests} cancelled requests) in {} — once; later runs reuse it",
        building.display()
    );
    let started = Instant::now();
    let setup = daemon::init(kinkod, &building, pool_size, 1000)?;
    let d = daemon::start(kinkod, &setup)?;
    let world = Arc::new(World::new(&setup)?);
    let left = Arc::new(AtomicU64::new(requests));
    let made = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..BUILD_CLIENTS {
        let client = Client::connect(&world).await?;
        let (world, left, made) = (world.clone(), left.clone(), made.clone());
        tasks.push(tokio::spawn(async move {
            let mut ledger = client.ledger;
            while let Ok(n) =
                left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            {
                let r = ledger
                    .submit_withdrawal(world.state_submission(n)?)
                    .await
                    .map_err(|s| rpc("submit (big state)", s))?
                    .into_inner();
                expect_state(&r, pb::RequestState::PendingApproval, "submit (big state)")?;
                let r = ledger
                    .cancel_request(pb::CancelRequestRequest {
                        request_id: r.request_id,
                        reason: "kinko-bench big state".into(),
                    })
                    .await
                    .map_err(|s| rpc("cancel (big state)", s))?
                    .into_inner();
                expect_state(&r, pb::RequestState::Cancelled, "cancel (big state)")?;
                let m = made.fetch_add(1, Ordering::Relaxed) + 1;
                if m % (requests / 20).max(1) == 0 {
                    eprintln!("kinko-bench: big state {m}/{requests}");
                }
            }
            Ok::<(), BenchError>(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| BenchError::Workload(format!("client task: {e}")))??;
    }
    d.stop();
    write(
        &setup.dir.join("setup.json"),
        &serde_json::json!({
            "port": setup.port,
            "token_label": setup.token_label,
            "keys": setup.keys.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect::<std::collections::BTreeMap<_, _>>(),
        })
        .to_string(),
    )?;
    write(&setup.dir.join("READY"), "")?;
    std::fs::rename(&setup.dir, &done)
        .map_err(|e| BenchError::io(done.display().to_string(), e))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "kinko-bench: big state built in {secs:.0} s ({:.0} requests/s)",
        requests as f64 / secs
    );
    Ok(Some(secs))
}

/// A copy of the cached state in `dest` (which must not exist), ready to start: its own
/// SoftHSM2 configuration, a free port, the run's pool size and limits.
pub(crate) fn copy(
    cache: &Path,
    requests: u64,
    dest: &Path,
    pool_size: usize,
    max_pending: usize,
) -> Result<Setup, BenchError> {
    let from = entry(cache, requests);
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(dest)
        .output()
        .map_err(|e| BenchError::io("running cp", e))?;
    if !out.status.success() {
        return Err(BenchError::io(
            format!("copying {} to {}", from.display(), dest.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    let dir = dest
        .canonicalize()
        .map_err(|e| BenchError::io(dest.display().to_string(), e))?;
    let softhsm_conf = daemon::softhsm_conf(&dir)?;
    let saved: serde_json::Value = serde_json::from_str(&read(&dir.join("setup.json"))?)
        .map_err(|e| BenchError::Config(format!("setup.json: {e}")))?;
    let field = |k: &str| {
        saved[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BenchError::Config(format!("setup.json has no {k}")))
    };
    let mut keys = std::collections::HashMap::new();
    for (name, v) in saved["keys"]
        .as_object()
        .ok_or_else(|| BenchError::Config("setup.json has no keys".into()))?
    {
        let pk = v
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| BenchError::Config(format!("setup.json: key {name}")))?;
        keys.insert(name.clone(), pk);
    }
    let old_port = saved["port"]
        .as_u64()
        .ok_or_else(|| BenchError::Config("setup.json has no port".into()))?;
    let port = daemon::free_port()?;
    let config_path = dir.join("kinkod.toml");
    let config = read(&config_path)?.replace(
        &format!("127.0.0.1:{old_port}"),
        &format!("127.0.0.1:{port}"),
    );
    let (config, module) = kinko_bench::setup::bench_config(&config, pool_size, max_pending)?;
    write(&config_path, &config)?;
    Ok(Setup {
        dir,
        port,
        token_label: field("token_label")?,
        softhsm_conf,
        module,
        pool_size,
        keys,
    })
}

/// The log's size as kinkod's latest checkpoint states it (kinkod signs one covering every
/// record when it starts).
pub(crate) async fn log_size(world: &World) -> Result<u64, BenchError> {
    let mut audit = kinko_proto::v1::audit_service_client::AuditServiceClient::new(
        world.channel("auditor").await?,
    );
    Ok(audit
        .latest_checkpoint(pb::CheckpointRequest::default())
        .await
        .map_err(|s| rpc("latest checkpoint", s))?
        .into_inner()
        .tree_size)
}

fn read(path: &Path) -> Result<String, BenchError> {
    std::fs::read_to_string(path).map_err(|e| BenchError::io(path.display().to_string(), e))
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|e| BenchError::io(path.display().to_string(), e))
}
