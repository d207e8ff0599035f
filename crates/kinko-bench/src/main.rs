//! `kinko-bench`: Kinko's whole signing path against raw PKCS#11 `C_Sign`, in one run.
//!
//! ```text
//! cargo build --release -p kinkod -p kinko-bench
//! cargo run --release -p kinko-bench -- --out docs/bench        # full run, ≈ 8 min
//! cargo run --release -p kinko-bench -- --quick                  # smoke run, < 1 min
//! ```
//!
//! See `docs/benchmarks.md`.

#![forbid(unsafe_code)]

mod bigstate;
mod daemon;
mod plot;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kinko_bench::stats::ratio;
use kinko_bench::{BenchError, procfs};
use secrecy::SecretString;
use serde::Serialize;

use crate::run::Phase;
use crate::workload::{Case, Client, World};

#[derive(Debug, Parser)]
#[command(
    name = "kinko-bench",
    about = "Measures a real kinkod (gRPC + mTLS, policy, approvals, audit, HSM) against raw C_Sign on the same SoftHSM2 token"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The kinkod binary to measure (default: `kinkod` next to this executable).
    #[arg(long)]
    kinkod: Option<PathBuf>,
    /// A short run (few requests, well under a minute) to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Fresh data directory for kinkod (must not exist; default: a new one under the temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Concurrent clients (each a requester and two officers) for the table's runs.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// kinkod's HSM session pool size; raw C_Sign uses as many sessions.
    #[arg(long, default_value_t = 4)]
    pool_size: usize,
    /// Client counts of the scaling run (Ethereum, end to end).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    scaling: Vec<usize>,
    /// Pending requests submitted at the end to measure kinkod's peak RSS (default: 10000, quick: 100).
    #[arg(long)]
    pending: Option<usize>,
    /// Write results.json and scaling.svg to this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The git revision of the kinkod measured (default: `git describe --always --dirty` here).
    #[arg(long)]
    revision: Option<String>,
    /// Profiling aid: skip the table and only run Ethereum end to end with `--clients` for this
    /// many seconds, after printing kinkod's pid and waiting `--attach-wait` seconds (attach
    /// `perf record -p PID` or `strace -c -f -p PID` then).
    #[arg(long)]
    e2e_only: Option<u64>,
    /// Also measure the PostgreSQL backend beside SQLite: a connection string to a cluster
    /// (e.g. from `scripts/pg-cluster.sh start DIR`) on which the bench creates a fresh
    /// database. The same daemon set-up (token, keys, policy) then runs the Ethereum sign stage
    /// and end to end once on each backend, one after the other.
    #[arg(long)]
    postgres: Option<String>,
    /// Also measure Ethereum with background witnessing: a `kinko-witness` (next to the kinkod
    /// binary) started beside kinkod, the same set-up given a `[witness]` policy naming it, and
    /// the sign stage and end to end run again (the rules are not `witnessed`: the cost of
    /// asking the witness in the background).
    #[arg(long)]
    witness: bool,
    /// Also measure Ethereum end to end on a big state: a store holding this many requests (each
    /// a withdrawal submitted and cancelled: three log records), built once by kinkod itself and cached in
    /// `--state-cache`; the run measures on a copy and compares with the fresh set-up's rate.
    #[arg(long)]
    big_state: Option<u64>,
    /// Where big states are cached (default: `kinko-bench-state` next to the kinkod binary).
    #[arg(long)]
    state_cache: Option<PathBuf>,
    /// Seconds to wait after printing kinkod's pid in `--e2e-only` mode.
    #[arg(long, default_value_t = 3)]
    attach_wait: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// (internal) Raw C_Sign on one token; prints ops/s. Run by the bench in a child process.
    #[command(hide = true)]
    RawSign {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        token_label: String,
        #[arg(long)]
        key_label: String,
        #[arg(long)]
        pin_file: PathBuf,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        warmup_ms: u64,
        #[arg(long)]
        run_ms: u64,
        #[arg(long)]
        ed25519: bool,
    },
}

/// How long each phase runs.
struct Sizes {
    raw_warmup: Duration,
    raw_run: Duration,
    sign_one: usize,
    sign_many: usize,
    paced_seconds: f64,
    e2e_warmup: Duration,
    e2e_measure: Duration,
    scaling_warmup: Duration,
    scaling_measure: Duration,
    pending: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                raw_warmup: Duration::from_millis(200),
                raw_run: Duration::from_millis(1000),
                sign_one: 10,
                sign_many: 40,
                paced_seconds: 0.5,
                e2e_warmup: Duration::from_millis(300),
                e2e_measure: Duration::from_millis(1500),
                scaling_warmup: Duration::from_millis(200),
                scaling_measure: Duration::from_millis(700),
                pending: 100,
            }
        } else {
            Sizes {
                raw_warmup: Duration::from_millis(500),
                raw_run: Duration::from_secs(4),
                sign_one: 150,
                sign_many: 1000,
                paced_seconds: 5.0,
                e2e_warmup: Duration::from_secs(1),
                e2e_measure: Duration::from_secs(10),
                scaling_warmup: Duration::from_secs(1),
                scaling_measure: Duration::from_secs(5),
                pending: 10_000,
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    mem_gib: f64,
    loadavg_start: String,
    loadavg_end: String,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    curve: String,
    signatures_per_withdrawal: u64,
    raw_c_sign_per_sec: f64,
    sign_one_client: Phase,
    sign_many_clients: Phase,
    sign_paced: Phase,
    sign_paced_target_rate: f64,
    end_to_end: Phase,
    /// Signatures per second of each phase divided by raw C_Sign per second.
    sign_one_vs_raw: Option<f64>,
    sign_many_vs_raw: Option<f64>,
    end_to_end_vs_raw: Option<f64>,
    daemon_peak_rss_bytes: u64,
    /// `/proc/loadavg` (1, 5, 15 min) when the case ended: the machine may be shared.
    loadavg: String,
}

#[derive(Debug, Serialize)]
struct ScalingPoint {
    clients: usize,
    loadavg: String,
    end_to_end: Phase,
    end_to_end_vs_raw: Option<f64>,
}

/// Ethereum on one store backend (the backends phase, `--postgres`; `--witness` adds SQLite
/// with background witnessing).
#[derive(Debug, Serialize)]
struct BackendResult {
    backend: &'static str,
    sign_many_clients: Phase,
    end_to_end: Phase,
}

/// Ethereum end to end on a copy of the cached big state (`--big-state`).
#[derive(Debug, Serialize)]
struct BigStateResult {
    requests: u64,
    log_records: u64,
    /// Seconds the build took, when this run built it (else it was cached).
    build_seconds: Option<f64>,
    /// From starting kinkod to its listening (it re-reads and checks the whole log and every
    /// stored request first).
    start_seconds: f64,
    end_to_end: Phase,
    /// The big state's rate divided by the fresh set-up's Ethereum end-to-end rate.
    vs_empty: Option<f64>,
    daemon_peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct PendingResult {
    requests: usize,
    submit: Phase,
    daemon_peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Results {
    revision: String,
    mode: &'static str,
    started_at: String,
    clients: usize,
    pool_size: usize,
    machine: Machine,
    raw_c_sign_per_sec: Vec<(String, f64)>,
    /// Raw `C_Sign` measured again after kinkod stopped: a large difference from the first
    /// measurement means the machine's load changed during the run.
    raw_c_sign_per_sec_after: Vec<(String, f64)>,
    cases: Vec<CaseResult>,
    scaling_case: String,
    scaling: Vec<ScalingPoint>,
    pending: PendingResult,
    /// SQLite beside PostgreSQL, when `--postgres` was given.
    backends: Vec<BackendResult>,
    /// The big state, when `--big-state` was given.
    big_state: Option<BigStateResult>,
    /// The performance targets and this run's verdicts.
    targets: Vec<kinko_bench::targets::Target>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::RawSign {
        module,
        token_label,
        key_label,
        pin_file,
        sessions,
        warmup_ms,
        run_ms,
        ed25519,
    }) = args.command
    {
        let result = std::fs::read_to_string(&pin_file)
            .map_err(|e| BenchError::io(pin_file.display().to_string(), e))
            .and_then(|pin| {
                kinko_hsm::testing::raw_sign_rate(
                    &module,
                    &token_label,
                    &SecretString::from(pin.trim().to_string()),
                    &key_label,
                    if ed25519 {
                        kinko_hsm::KeyKind::Ed25519
                    } else {
                        kinko_hsm::KeyKind::Secp256k1
                    },
                    sessions,
                    Duration::from_millis(warmup_ms),
                    Duration::from_millis(run_ms),
                )
                .map_err(|e| BenchError::Raw(e.to_string()))
            });
        return match result {
            Ok(r) => {
                println!("{}", r.ops_per_sec());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kinko-bench raw-sign: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinko-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(bench(args));
    drop(rt);
    kinko_hsm::finalize_modules();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinko-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine_start() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu,
        mem_gib,
        loadavg_start: loadavg(),
        loadavg_end: String::new(),
    }
}

fn revision(given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        std::process::Command::new("git")
            .args(["describe", "--always", "--dirty", "--abbrev=12"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    })
}

fn default_kinkod() -> Result<PathBuf, BenchError> {
    let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
    Ok(exe.with_file_name("kinkod"))
}

async fn bench(args: Args) -> Result<(), BenchError> {
    let sizes = Sizes::new(args.quick);
    let kinkod = match args.kinkod.clone() {
        Some(p) => p,
        None => default_kinkod()?,
    };
    if !kinkod.exists() {
        return Err(BenchError::Daemon(format!(
            "no kinkod at {} (build it with `cargo build --release -p kinkod` or give --kinkod)",
            kinkod.display()
        )));
    }
    if args.clients == 0 || args.scaling.contains(&0) {
        return Err(BenchError::Config(
            "client counts must be at least 1".into(),
        ));
    }
    let max_clients = args
        .scaling
        .iter()
        .copied()
        .chain([args.clients])
        .max()
        .unwrap_or(1);
    let pending_count = args
        .pending
        .unwrap_or(if args.quick { 100 } else { sizes.pending });
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "kinko-bench-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_second()
        )),
    };
    let mut machine = machine_start();
    let started_at = jiff::Timestamp::now().to_string();
    let revision = revision(args.revision.clone());
    eprintln!(
        "kinko-bench: kinkod {} (revision {revision}), data in {}, load {}",
        kinkod.display(),
        dir.display(),
        machine.loadavg_start
    );

    // Max pending: the sign-stage preparations leave requests pending, plus the RSS phase.
    let max_pending = pending_count
        .saturating_add(sizes.sign_many)
        .saturating_add(sizes.sign_one)
        .saturating_add(100_000);
    let setup = daemon::init(&kinkod, &dir, args.pool_size, max_pending)?;
    let result = measure(
        &args,
        &sizes,
        &kinkod,
        &setup,
        max_clients,
        pending_count,
        &mut machine,
        started_at,
        revision,
    )
    .await;
    if !args.keep && result.is_ok() {
        let _ = std::fs::remove_dir_all(&setup.dir);
    } else {
        eprintln!("kinko-bench: data kept in {}", setup.dir.display());
    }
    result
}

/// Resets kinkod's peak RSS so the next reading is one phase's; without it (a kernel or
/// permission that refuses `clear_refs`) the reading is the peak since kinkod started.
fn reset_peak_rss(pid: &str) {
    if let Err(e) = procfs::reset_peak_rss(pid) {
        eprintln!("kinko-bench: peak RSS is since kinkod started, not per phase: {e}");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

// The measurement's inputs are independent knobs; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    sizes: &Sizes,
    kinkod: &std::path::Path,
    setup: &daemon::Setup,
    max_clients: usize,
    pending_count: usize,
    machine: &mut Machine,
    started_at: String,
    revision: String,
) -> Result<(), BenchError> {
    // 1. Raw C_Sign first, with the daemon not running.
    let mut raw = Vec::new();
    for (curve, label, ed) in [
        ("secp256k1", "kinko-eth-dev", false),
        ("ed25519", "kinko-sol-dev", true),
    ] {
        let r = daemon::raw_sign(setup, label, ed, sizes.raw_warmup, sizes.raw_run)?;
        eprintln!(
            "kinko-bench: raw C_Sign {curve}, {} sessions: {r:.0}/s",
            setup.pool_size
        );
        raw.push((curve.to_string(), r));
    }
    let raw_of = |curve: &str| {
        raw.iter()
            .find(|(c, _)| c == curve)
            .map(|(_, r)| *r)
            .unwrap_or(0.0)
    };

    // 2. The daemon, and the clients (each a TLS connection per principal, made once).
    let d = daemon::start(kinkod, setup)?;
    let pid = d.pid();
    let world = Arc::new(World::new(setup)?);
    let mut clients = Vec::with_capacity(max_clients);
    for _ in 0..max_clients {
        clients.push(Client::connect(&world).await?);
    }
    let many = clients
        .get(..args.clients)
        .ok_or_else(|| BenchError::Config("clients".into()))?;

    if let Some(secs) = args.e2e_only {
        println!("kinkod pid {pid}");
        tokio::time::sleep(Duration::from_secs(args.attach_wait)).await;
        let p = run::end_to_end(
            &world,
            &pid,
            many,
            args.clients,
            Case::Eth,
            Duration::ZERO,
            Duration::from_secs(secs),
        )
        .await?;
        let started = run::NEXT.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "{} withdrawals in {:.1} s ({:.1}/s; {started} started), kinkod {:.2} cores, bench {:.2} cores, latency {:?}",
            p.ops, p.seconds, p.ops_per_sec, p.daemon_cores, p.bench_cores, p.latency
        );
        for (name, l) in &p.steps {
            println!("  {name}: p50 {:.2} ms, p99 {:.2} ms", l.p50_ms, l.p99_ms);
        }
        d.stop();
        return Ok(());
    }

    // 3. Per case: sign stage (1 client, C clients, paced at half the C-client rate), then end to end.
    let mut cases = Vec::new();
    for case in [Case::Eth, Case::Sol, Case::Btc(1), Case::Btc(10)] {
        let raw_rate = raw_of(case.curve());
        let sigs = case.signatures() as f64;
        // Fewer Bitcoin 10-input requests: each is ten signatures.
        let scale = if case == Case::Btc(10) { 4 } else { 1 };
        reset_peak_rss(&pid);
        eprintln!("kinko-bench: {} ...", case.name());
        let p = run::prepare(&world, many, case, (sizes.sign_one / scale).max(5)).await?;
        let sign_one = run::sign_stage(&pid, many, 1, p).await?;
        let p = run::prepare(&world, many, case, (sizes.sign_many / scale).max(10)).await?;
        let sign_many = run::sign_stage(&pid, many, args.clients, p).await?;
        let target = sign_many.ops_per_sec / 2.0;
        let paced_count = ((target * sizes.paced_seconds) as usize).max(10);
        let p = run::prepare(&world, many, case, paced_count).await?;
        let sign_paced = run::paced_sign(&pid, many, p, target).await?;
        let e2e = run::end_to_end(
            &world,
            &pid,
            many,
            args.clients,
            case,
            sizes.e2e_warmup,
            sizes.e2e_measure,
        )
        .await?;
        let rss = procfs::peak_rss(&pid)?;
        cases.push(CaseResult {
            case: case.name(),
            curve: case.curve().into(),
            signatures_per_withdrawal: case.signatures(),
            raw_c_sign_per_sec: raw_rate,
            sign_one_vs_raw: ratio(sign_one.ops_per_sec * sigs, raw_rate),
            sign_many_vs_raw: ratio(sign_many.ops_per_sec * sigs, raw_rate),
            end_to_end_vs_raw: ratio(e2e.ops_per_sec * sigs, raw_rate),
            sign_one_client: sign_one,
            sign_many_clients: sign_many,
            sign_paced,
            sign_paced_target_rate: target,
            end_to_end: e2e,
            daemon_peak_rss_bytes: rss,
            loadavg: loadavg(),
        });
    }

    // 4. Scaling: Ethereum end to end for each client count.
    let mut scaling = Vec::new();
    for &c in &args.scaling {
        let cs = clients
            .get(..c)
            .ok_or_else(|| BenchError::Config("clients".into()))?;
        eprintln!("kinko-bench: scaling, {c} clients ...");
        let p = run::end_to_end(
            &world,
            &pid,
            cs,
            c,
            Case::Eth,
            sizes.scaling_warmup,
            sizes.scaling_measure,
        )
        .await?;
        scaling.push(ScalingPoint {
            clients: c,
            loadavg: loadavg(),
            end_to_end_vs_raw: ratio(p.ops_per_sec, raw_of("secp256k1")),
            end_to_end: p,
        });
    }

    // 5. Peak RSS with many pending requests.
    eprintln!("kinko-bench: {pending_count} pending requests ...");
    reset_peak_rss(&pid);
    let submit = run::pending(&world, &pid, many, Case::Eth, pending_count).await?;
    let pending = PendingResult {
        requests: pending_count,
        submit,
        daemon_peak_rss_bytes: procfs::peak_rss(&pid)?,
    };

    // 6. Backends: the same set-up on SQLite (this daemon), then on a fresh PostgreSQL database.
    let mut backends = Vec::new();
    if args.postgres.is_some() || args.witness {
        eprintln!("kinko-bench: backends, SQLite ...");
        backends.push(backend("SQLite", &world, &pid, many, args.clients, sizes).await?);
    }
    if let Some(base) = &args.postgres {
        d.stop();
        let url = kinko_store::testing::create_database(
            base,
            &format!(
                "kinko_bench_{}_{}",
                std::process::id(),
                jiff::Timestamp::now().as_second()
            ),
        )
        .map_err(|e| BenchError::Config(format!("--postgres: {e}")))?;
        let config_path = setup.dir.join("kinkod.toml");
        let sqlite_config = std::fs::read_to_string(&config_path)
            .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
        let pg_config = kinko_bench::setup::postgres_config(&sqlite_config, &url)?;
        std::fs::write(&config_path, pg_config)
            .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
        eprintln!("kinko-bench: backends, PostgreSQL ...");
        let measured = async {
            let d = daemon::start(kinkod, setup)?;
            let pid = d.pid();
            let mut clients = Vec::with_capacity(args.clients);
            for _ in 0..args.clients {
                clients.push(Client::connect(&world).await?);
            }
            let r = backend("PostgreSQL", &world, &pid, &clients, args.clients, sizes).await;
            d.stop();
            r
        }
        .await;
        std::fs::write(&config_path, sqlite_config)
            .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
        backends.push(measured?);
    } else {
        d.stop();
    }
    if args.witness {
        eprintln!("kinko-bench: backends, SQLite with a witness ...");
        backends.push(witnessed(&world, args, sizes, kinkod, setup).await?);
    }
    // 7. The big state: Ethereum end to end on a copy of a store with a long history.
    let big_state = match args.big_state {
        Some(requests) => {
            let eth = cases
                .iter()
                .find(|c| c.case == Case::Eth.name())
                .map(|c| c.end_to_end.ops_per_sec);
            Some(big_state(args, sizes, kinkod, setup, requests, eth).await?)
        }
        None => None,
    };
    let mut raw_after = Vec::new();
    for (curve, label, ed) in [
        ("secp256k1", "kinko-eth-dev", false),
        ("ed25519", "kinko-sol-dev", true),
    ] {
        let r = daemon::raw_sign(setup, label, ed, sizes.raw_warmup, sizes.raw_run)?;
        eprintln!("kinko-bench: raw C_Sign {curve} again after the run: {r:.0}/s");
        raw_after.push((curve.to_string(), r));
    }
    machine.loadavg_end = loadavg();

    let results = Results {
        revision,
        mode: if args.quick { "quick" } else { "full" },
        started_at,
        clients: args.clients,
        pool_size: setup.pool_size,
        machine: std::mem::replace(
            machine,
            Machine {
                cores: 0,
                cpu: String::new(),
                mem_gib: 0.0,
                loadavg_start: String::new(),
                loadavg_end: String::new(),
            },
        ),
        raw_c_sign_per_sec: raw,
        raw_c_sign_per_sec_after: raw_after,
        cases,
        scaling_case: Case::Eth.name(),
        scaling,
        pending,
        backends,
        big_state,
        targets: Vec::new(),
    };
    let mut results = results;
    results.targets = targets(&results);
    print_table(&results);
    println!(
        "Targets ({} run):\n\n{}",
        results.mode,
        kinko_bench::targets::table(&results.targets)
    );
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| BenchError::io(out.display().to_string(), e))?;
        let json = serde_json::to_string_pretty(&results)
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let path = out.join("results.json");
        std::fs::write(&path, json + "\n")
            .map_err(|e| BenchError::io(path.display().to_string(), e))?;
        let points: Vec<(usize, f64)> = results
            .scaling
            .iter()
            .map(|p| (p.clients, p.end_to_end.ops_per_sec))
            .collect();
        let p99: Vec<(usize, f64)> = results
            .scaling
            .iter()
            .filter_map(|p| Some((p.clients, p.end_to_end.latency?.p99_ms)))
            .collect();
        plot::scaling(
            &out.join("scaling.svg"),
            &points,
            &p99,
            results
                .raw_c_sign_per_sec
                .iter()
                .find(|(c, _)| c == "secp256k1")
                .map(|(_, r)| *r)
                .unwrap_or(0.0),
            &results.revision,
        )?;
        eprintln!(
            "kinko-bench: wrote {}/results.json and scaling.svg",
            out.display()
        );
    }
    Ok(())
}

/// The performance targets (docs/benchmarks.md) against this run.
fn targets(r: &Results) -> Vec<kinko_bench::targets::Target> {
    use kinko_bench::targets::{Goal, Target, Unit};
    let of = |v: Option<f64>, why: &str| v.ok_or_else(|| why.to_string());
    let mut out = Vec::new();
    for c in &r.cases {
        let n = r.clients;
        out.push(Target {
            metric: format!("{} end to end, {n} clients, vs raw C_Sign", c.case),
            goal: Goal::AtLeast(0.25),
            unit: Unit::Percent,
            measured: of(c.end_to_end_vs_raw, "no raw rate"),
        });
        out.push(Target {
            metric: format!("{} sign stage, {n} clients, vs raw C_Sign", c.case),
            goal: Goal::AtLeast(0.60),
            unit: Unit::Percent,
            measured: of(c.sign_many_vs_raw, "no raw rate"),
        });
        out.push(Target {
            metric: format!("{} sign stage p50, one client", c.case),
            goal: Goal::AtMost(1.0),
            unit: Unit::Ms,
            measured: of(c.sign_one_client.latency.map(|l| l.p50_ms), "no samples"),
        });
        out.push(Target {
            metric: format!(
                "{} sign stage p99 at half the {n}-client rate ({:.0}/s)",
                c.case, c.sign_paced_target_rate
            ),
            goal: Goal::AtMost(5.0),
            unit: Unit::Ms,
            measured: of(c.sign_paced.latency.map(|l| l.p99_ms), "no samples"),
        });
        out.push(Target {
            metric: format!("{} kinkod CPU per end-to-end withdrawal", c.case),
            goal: Goal::AtMost(1.0),
            unit: Unit::Ms,
            measured: of(
                c.end_to_end.daemon_cpu_s_per_op.map(|s| s * 1000.0),
                "no withdrawals",
            ),
        });
    }
    let sqlite = r.backends.iter().find(|b| b.backend == "SQLite");
    let pg = r.backends.iter().find(|b| b.backend == "PostgreSQL");
    out.push(Target {
        metric: format!(
            "{} end to end on PostgreSQL vs SQLite, same run",
            Case::Eth.name()
        ),
        goal: Goal::AtLeast(0.80),
        unit: Unit::Percent,
        measured: match (sqlite, pg) {
            (Some(s), Some(p)) => of(
                ratio(p.end_to_end.ops_per_sec, s.end_to_end.ops_per_sec),
                "no SQLite rate",
            ),
            _ => Err("run with --postgres".into()),
        },
    });
    out.push(match &r.big_state {
        Some(b) => Target {
            metric: format!(
                "{} end to end with {} log records and {} stored requests vs a fresh store",
                Case::Eth.name(),
                b.log_records,
                b.requests
            ),
            goal: Goal::AtLeast(0.90),
            unit: Unit::Percent,
            measured: of(b.vs_empty, "no fresh-store rate"),
        },
        None => Target {
            metric: "rate with 1M log records and 1M stored requests vs empty".into(),
            goal: Goal::AtLeast(0.90),
            unit: Unit::Percent,
            measured: Err("run with --big-state 1000000".into()),
        },
    });
    out
}

/// Ethereum end to end with `--clients` on a copy of the cached big state (built first if it is
/// not cached), compared with `fresh` (the fresh set-up's rate).
async fn big_state(
    args: &Args,
    sizes: &Sizes,
    kinkod: &std::path::Path,
    setup: &daemon::Setup,
    requests: u64,
    fresh: Option<f64>,
) -> Result<BigStateResult, BenchError> {
    let cache = match &args.state_cache {
        Some(c) => c.clone(),
        None => kinkod
            .parent()
            .map(|p| p.join("kinko-bench-state"))
            .ok_or_else(|| BenchError::Config("give --state-cache".into()))?,
    };
    let build_seconds = bigstate::ensure(kinkod, &cache, requests, setup.pool_size).await?;
    let copy_dir = setup.dir.join("big-state");
    eprintln!("kinko-bench: big state, copying ...");
    let big = bigstate::copy(&cache, requests, &copy_dir, setup.pool_size, 200_000)?;
    let measured = async {
        eprintln!("kinko-bench: big state, starting kinkod ...");
        let started = std::time::Instant::now();
        let d = daemon::start_within(kinkod, &big, Duration::from_secs(1800))?;
        let start_seconds = started.elapsed().as_secs_f64();
        let pid = d.pid();
        reset_peak_rss(&pid);
        let world = Arc::new(World::new(&big)?);
        let log_records = bigstate::log_size(&world).await?;
        let mut clients = Vec::with_capacity(args.clients);
        for _ in 0..args.clients {
            clients.push(Client::connect(&world).await?);
        }
        eprintln!(
            "kinko-bench: big state ({log_records} records), started in {start_seconds:.1} s; end to end ..."
        );
        let end_to_end = run::end_to_end(
            &world,
            &pid,
            &clients,
            args.clients,
            Case::Eth,
            sizes.e2e_warmup,
            sizes.e2e_measure,
        )
        .await?;
        let rss = procfs::peak_rss(&pid)?;
        d.stop();
        Ok::<_, BenchError>(BigStateResult {
            requests,
            log_records,
            build_seconds,
            start_seconds,
            vs_empty: fresh.and_then(|f| ratio(end_to_end.ops_per_sec, f)),
            end_to_end,
            daemon_peak_rss_bytes: rss,
        })
    }
    .await;
    // The copy is as large as the state: never kept.
    let _ = std::fs::remove_dir_all(&copy_dir);
    measured
}

/// Ethereum on one backend: the sign stage with `clients` clients, then end to end.
async fn backend(
    name: &'static str,
    world: &Arc<World>,
    pid: &str,
    clients: &[Client],
    concurrency: usize,
    sizes: &Sizes,
) -> Result<BackendResult, BenchError> {
    let p = run::prepare(world, clients, Case::Eth, sizes.sign_many.max(10)).await?;
    let sign_many = run::sign_stage(pid, clients, concurrency, p).await?;
    let end_to_end = run::end_to_end(
        world,
        pid,
        clients,
        concurrency,
        Case::Eth,
        sizes.e2e_warmup,
        sizes.e2e_measure,
    )
    .await?;
    Ok(BackendResult {
        backend: name,
        sign_many_clients: sign_many,
        end_to_end,
    })
}

/// The `--witness` phase: a witness for the set-up's log, `[witness]` added to its config,
/// kinkod started on it and measured; the config is restored afterwards.
async fn witnessed(
    world: &Arc<World>,
    args: &Args,
    sizes: &Sizes,
    kinkod: &std::path::Path,
    setup: &daemon::Setup,
) -> Result<BackendResult, BenchError> {
    let log = std::fs::read_to_string(setup.dir.join("kinkod.log"))
        .map_err(|e| BenchError::io("kinkod.log", e))?;
    let vkey = log
        .lines()
        .find_map(|l| l.strip_prefix("kinkod: audit log key "))
        .ok_or_else(|| BenchError::Config("no log key in kinkod.log".into()))?
        .trim()
        .to_string();
    let witness_bin = kinkod.with_file_name("kinko-witness");
    let wdir = setup.dir.join("witness");
    let out = std::process::Command::new(&witness_bin)
        .arg("init")
        .arg(&wdir)
        .args(["--name", "bench.witness/w1", "--listen", "127.0.0.1:0"])
        .output()
        .map_err(|e| BenchError::io(witness_bin.display().to_string(), e))?;
    if !out.status.success() {
        return Err(BenchError::Config(format!(
            "kinko-witness init: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let wconfig = wdir.join("witness.toml");
    let mut text =
        std::fs::read_to_string(&wconfig).map_err(|e| BenchError::io("witness.toml", e))?;
    text.push_str(&format!("\n[[logs]]\nvkey = {vkey:?}\n"));
    std::fs::write(&wconfig, text).map_err(|e| BenchError::io("witness.toml", e))?;
    let mut witness = std::process::Command::new(&witness_bin)
        .args(["serve", "--config"])
        .arg(&wconfig)
        .env("KINKO_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io(witness_bin.display().to_string(), e))?;
    let line = {
        use std::io::BufRead as _;
        let stdout = witness
            .stdout
            .take()
            .ok_or_else(|| BenchError::Daemon("no witness stdout".into()))?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| BenchError::io("witness stdout", e))?;
        line
    };
    let Some((wkey, url)) = line
        .trim()
        .strip_prefix("kinko-witness ")
        .and_then(|l| l.split_once(" listening on "))
    else {
        let _ = witness.kill();
        return Err(BenchError::Daemon(format!("kinko-witness said {line:?}")));
    };
    std::fs::write(
        setup.dir.join("witness-policy"),
        format!("witness w1 {wkey} {url}\nquorum w1\n"),
    )
    .map_err(|e| BenchError::io("witness-policy", e))?;
    let config_path = setup.dir.join("kinkod.toml");
    let plain = std::fs::read_to_string(&config_path)
        .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
    std::fs::write(
        &config_path,
        format!("{plain}\n[witness]\npolicy = \"witness-policy\"\n"),
    )
    .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
    let measured = async {
        let d = daemon::start(kinkod, setup)?;
        let pid = d.pid();
        let mut clients = Vec::with_capacity(args.clients);
        for _ in 0..args.clients {
            clients.push(Client::connect(world).await?);
        }
        let r = backend(
            "SQLite + witness",
            world,
            &pid,
            &clients,
            args.clients,
            sizes,
        )
        .await;
        d.stop();
        r
    }
    .await;
    let _ = witness.kill();
    let _ = witness.wait();
    std::fs::write(&config_path, plain)
        .map_err(|e| BenchError::io(config_path.display().to_string(), e))?;
    measured
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", 100.0 * r))
        .unwrap_or_else(|| "–".into())
}

fn lat(p: &Phase) -> String {
    match &p.latency {
        Some(l) => format!("{:.2} | {:.2} | {:.2}", l.p50_ms, l.p99_ms, l.p999_ms),
        None => "– | – | –".into(),
    }
}

fn cpu_ms(v: Option<f64>) -> String {
    v.map(|s| format!("{:.2}", s * 1000.0))
        .unwrap_or_else(|| "–".into())
}

fn print_table(r: &Results) {
    println!(
        "\nkinko-bench ({} run), kinkod {}, {} cores ({}), {:.1} GiB, load {} → {}; {} clients, pool {} sessions\n",
        r.mode,
        r.revision,
        r.machine.cores,
        r.machine.cpu,
        r.machine.mem_gib,
        r.machine.loadavg_start,
        r.machine.loadavg_end,
        r.clients,
        r.pool_size
    );
    println!(
        "| case | stage | ops/s | sigs/s vs raw | p50 ms | p99 ms | p99.9 ms | kinkod CPU ms/op | bench CPU ms/op | kinkod peak RSS MiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in &r.cases {
        println!(
            "| {} | raw C_Sign ({} sessions) | {:.0} | 100% | | | | | | |",
            c.case, r.pool_size, c.raw_c_sign_per_sec
        );
        let row = |stage: String, p: &Phase, vs: Option<f64>| {
            println!(
                "| {} | {stage} | {:.0} | {} | {} | {} | {} | |",
                c.case,
                p.ops_per_sec,
                pct(vs),
                lat(p),
                cpu_ms(p.daemon_cpu_s_per_op),
                cpu_ms(p.bench_cpu_s_per_op),
            );
        };
        row(
            "sign stage, 1 client".into(),
            &c.sign_one_client,
            c.sign_one_vs_raw,
        );
        row(
            format!("sign stage, {} clients", r.clients),
            &c.sign_many_clients,
            c.sign_many_vs_raw,
        );
        row(
            format!("sign stage paced at {:.0}/s", c.sign_paced_target_rate),
            &c.sign_paced,
            ratio(
                c.sign_paced.ops_per_sec * c.signatures_per_withdrawal as f64,
                c.raw_c_sign_per_sec,
            ),
        );
        println!(
            "| {} | end to end, {} clients | {:.0} | {} | {} | {} | {} | {:.0} |",
            c.case,
            r.clients,
            c.end_to_end.ops_per_sec,
            pct(c.end_to_end_vs_raw),
            lat(&c.end_to_end),
            cpu_ms(c.end_to_end.daemon_cpu_s_per_op),
            cpu_ms(c.end_to_end.bench_cpu_s_per_op),
            mib(c.daemon_peak_rss_bytes)
        );
        for (name, l) in &c.end_to_end.steps {
            println!(
                "| {} | — {name} | | | {:.2} | {:.2} | {:.2} | | | |",
                c.case, l.p50_ms, l.p99_ms, l.p999_ms
            );
        }
    }
    println!("\nScaling ({}, end to end):\n", r.scaling_case);
    println!(
        "| clients | withdrawals/s | vs raw | p50 ms | p99 ms | p99.9 ms | kinkod cores | bench cores |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in &r.scaling {
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} |",
            p.clients,
            p.end_to_end.ops_per_sec,
            pct(p.end_to_end_vs_raw),
            lat(&p.end_to_end),
            p.end_to_end.daemon_cores,
            p.end_to_end.bench_cores
        );
    }
    if !r.backends.is_empty() {
        let raw = r
            .raw_c_sign_per_sec
            .iter()
            .find(|(c, _)| c == "secp256k1")
            .map(|(_, v)| *v)
            .unwrap_or(0.0);
        let sqlite = r.backends.first().map(|b| b.end_to_end.ops_per_sec);
        println!(
            "\nBackends ({}, {} clients, one after the other; PostgreSQL's own CPU is not in kinkod's):\n",
            Case::Eth.name(),
            r.clients
        );
        println!(
            "| backend | stage | ops/s | vs raw | vs SQLite | p50 ms | p99 ms | p99.9 ms | kinkod CPU ms/op |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for b in &r.backends {
            for (stage, p) in [
                ("sign stage", &b.sign_many_clients),
                ("end to end", &b.end_to_end),
            ] {
                let base = if stage == "end to end" {
                    sqlite
                } else {
                    r.backends.first().map(|b| b.sign_many_clients.ops_per_sec)
                };
                println!(
                    "| {} | {stage} | {:.0} | {} | {} | {} | {} |",
                    b.backend,
                    p.ops_per_sec,
                    pct(ratio(p.ops_per_sec, raw)),
                    pct(base.and_then(|s| ratio(p.ops_per_sec, s))),
                    lat(p),
                    cpu_ms(p.daemon_cpu_s_per_op),
                );
            }
        }
    }
    if let Some(b) = &r.big_state {
        let fresh = r
            .cases
            .iter()
            .find(|c| c.case == Case::Eth.name())
            .map(|c| c.end_to_end.ops_per_sec)
            .unwrap_or(0.0);
        println!(
            "\nBig state ({}, {} clients, end to end): {} stored requests, {} log records{}; kinkod started in {:.1} s (peak RSS {:.0} MiB)\n",
            Case::Eth.name(),
            r.clients,
            b.requests,
            b.log_records,
            b.build_seconds
                .map(|s| format!(", built by this run in {s:.0} s"))
                .unwrap_or_else(|| ", cached".into()),
            b.start_seconds,
            mib(b.daemon_peak_rss_bytes)
        );
        println!("| store | ops/s | vs fresh | p50 ms | p99 ms | p99.9 ms | kinkod CPU ms/op |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!(
            "| fresh (this run's {} case) | {fresh:.0} | 100% | | | | |",
            Case::Eth.name()
        );
        println!(
            "| big | {:.0} | {} | {} | {} |",
            b.end_to_end.ops_per_sec,
            pct(b.vs_empty),
            lat(&b.end_to_end),
            cpu_ms(b.end_to_end.daemon_cpu_s_per_op)
        );
    }
    let after: Vec<String> = r
        .raw_c_sign_per_sec_after
        .iter()
        .map(|(c, v)| format!("{c} {v:.0}/s"))
        .collect();
    println!(
        "\nRaw C_Sign measured again after kinkod stopped: {}",
        after.join(", ")
    );
    println!(
        "\n{} pending requests submitted at {:.0}/s; kinkod peak RSS while submitting them: {:.0} MiB\n",
        r.pending.requests,
        r.pending.submit.ops_per_sec,
        mib(r.pending.daemon_peak_rss_bytes)
    );
}
