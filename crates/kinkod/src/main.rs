//! `kinkod`: Kinko's signing daemon.
//!
//! ```text
//! kinkod --config /etc/kinko/kinkod.toml     # production: everything from the config
//! kinkod dev --data-dir .kinko-dev           # development: make everything on first run, then serve
//! ```
//!
//! The request path, one module each: [`tls`] (listener, TLS 1.3, client certificates) →
//! [`auth`] (principal and role) → [`service`] (gRPC) → [`engine`] (requester signature,
//! decode, policy, approvals, audit, HSM) → [`status`] (errors to gRPC statuses).
//!
//! Modules use only modules to their left (no cycles): `config` `status` `failpoint` `committed`
//! `rate` `metrics` `dev` → `tls` → `auth` `engine` → `service` `metrics_listener` → `main`.

#![forbid(unsafe_code)]

mod auth;
mod committed;
mod config;
mod dev;
mod engine;
mod events;
mod failpoint;
mod metrics;
mod metrics_listener;
mod notify;
mod rate;
mod rebuild;
mod service;
mod setup;
mod status;
mod tls;
mod witnessing;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kinko_audit::note::CheckpointSigner;
use kinko_audit::record::{self as rec, Event};
use kinko_hsm::{Hsm, PublicKey};
use kinko_policy::Policy;
use kinko_proto::v1 as pb;

use crate::config::Config;
use crate::engine::Engine;

#[derive(Debug, Parser)]
#[command(name = "kinkod", version, about = "Kinko signing daemon")]
struct Args {
    /// The configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Args::command().debug_assert();
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Development set-up: on first run, create a SoftHSM2 token, a local CA and certificates,
    /// officer and requester keys, signing keys and the log key, and a development policy, all
    /// under DATA_DIR; then serve. NOT for production.
    Dev {
        /// Where everything is created.
        #[arg(long, default_value = ".kinko-dev")]
        data_dir: PathBuf,
        /// The gRPC listen address.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: std::net::SocketAddr,
        /// The SoftHSM2 token label.
        #[arg(long, default_value = "kinko-dev")]
        token_label: String,
        /// Create everything and exit without serving.
        #[arg(long)]
        init_only: bool,
        /// Keep the store in this PostgreSQL database (a connection string) instead of
        /// DATA_DIR/kinko.db.
        #[arg(long)]
        store_postgres: Option<String>,
    },
    /// Write a commented production configuration (DIR/kinkod.toml, every key listed) and a
    /// starting policy (STATE_DIR/policy.toml: deny by default, placeholders for the officers
    /// and the requester). Never overwrites. Next: docs/install.md.
    Init {
        /// Where to write kinkod.toml.
        #[arg(long, default_value = "/etc/kinko")]
        dir: PathBuf,
        /// Where kinkod keeps its state: the SQLite store, the newest checkpoint seen and the
        /// policy file (rewritten by governance).
        #[arg(long, default_value = "/var/lib/kinko")]
        state_dir: PathBuf,
        /// The audit log's name in its checkpoints, e.g. kinko.example.com/log.
        #[arg(long)]
        origin: String,
        /// The gRPC listen address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: std::net::SocketAddr,
        /// The PKCS#11 module of the HSM.
        #[arg(long)]
        module: PathBuf,
        /// The label of the token the keys live on.
        #[arg(long)]
        token_label: String,
    },
    /// Check the configuration, the policy, the TLS files, the PIN's permissions, the token (a
    /// capability probe with session keys), the log key and every signing key, and say what to
    /// fix; starts nothing, creates nothing. Exit status 1 when anything fails.
    CheckConfig,
    /// Make a key on the configured token, with only CKA_SIGN (sensitive, never extractable):
    /// the audit-log key (--log-key), or a signing key, printed as the policy's [[keys]] block.
    /// Only before the first start: afterwards keys are created through governance, so that the
    /// log records who approved them.
    CreateKey {
        /// Make the audit-log key ([audit] log_key_label, Ed25519); prints its verifier key.
        #[arg(long, conflicts_with_all = ["name", "chain", "network", "hsm_label"])]
        log_key: bool,
        /// The key's name in the policy.
        #[arg(long, required_unless_present = "log_key")]
        name: Option<String>,
        /// ethereum, bitcoin or solana.
        #[arg(long, required_unless_present = "log_key")]
        chain: Option<kinko_intent::Chain>,
        /// The network: an EIP-155 chain id, bitcoin/testnet/signet/regtest, mainnet-beta/devnet.
        #[arg(long, required_unless_present = "log_key")]
        network: Option<String>,
        /// The object label on the token (default kinko-NAME).
        #[arg(long)]
        hsm_label: Option<String>,
    },
    /// Write a consistent copy of the SQLite store (state and audit log) to a new file, while
    /// kinkod runs or not; checks the copy's integrity and prints how many records it holds.
    /// (PostgreSQL: pg_dump or pg_basebackup, docs/ha.md.)
    Backup {
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the policy in force as installed (from the store) to standard output.
    InstalledPolicy,
    /// Write the audit log held in the store as the documented files (one segment and
    /// checkpoints.jsonl) into a new directory, for `kinko audit verify`. Needs neither the HSM
    /// nor a running kinkod; run it with kinkod stopped or running.
    ExportLog {
        /// The directory to write (created if missing; must not hold a log).
        #[arg(long)]
        out: PathBuf,
    },
    /// Archive the audit log incrementally into DIR, for write-once storage: the records not
    /// archived yet become a new segment file (existing segments are never rewritten, and are
    /// first compared with the store's records: a mismatch is refused), and checkpoints.jsonl is
    /// replaced. Run it daily with kinkod running or stopped; `kinko audit verify DIR` checks
    /// the archive alone.
    ArchiveLog {
        /// The archive directory (created if missing).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Rebuild the state from the audit log alone into a NEW database (the log outranks the
    /// store): requests, verdicts, claims, velocity, signed transactions, the freeze, governance
    /// and installed policies, replayed record by record. Run with kinkod stopped; swap the new
    /// database in for the configured one; the next start verifies it like any other.
    Rebuild {
        /// The new database file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Import, once, the audit log an earlier kinkod kept in files (`[audit] dir`) into the
    /// store, whose log must be empty. The records and checkpoints are copied as they are; the
    /// next start verifies them against the log key like any history.
    ImportLog {
        /// The directory of the file log (segment-*.jsonl, checkpoints.jsonl).
        #[arg(long)]
        from: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // `[log] format` from the configuration, when it loads; a configuration that does not load
    // is reported below, in text.
    let format = args
        .config
        .as_deref()
        .and_then(|p| Config::load(p).ok())
        .map(|c| c.log.format)
        .unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // cryptoki logs an ERROR for every vendor mechanism it has no name for while listing
        // mechanisms; kinko-hsm reports real failures itself.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,cryptoki::mechanism=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        // Colour codes only on a terminal: a log file or journald gets plain text.
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinkod: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let config_path = match args.command {
            Some(Command::Dev {
                data_dir,
                listen,
                token_label,
                init_only,
                store_postgres,
            }) => {
                let path =
                    dev::ensure(&data_dir, listen, &token_label, store_postgres.as_deref()).await?;
                if init_only {
                    return Ok(());
                }
                path
            }
            Some(Command::Init {
                dir,
                state_dir,
                origin,
                listen,
                module,
                token_label,
            }) => {
                return setup::init(&setup::InitOptions {
                    dir,
                    state_dir,
                    origin,
                    listen,
                    module,
                    token_label,
                });
            }
            Some(Command::CheckConfig) => {
                let path = args.config.ok_or("give --config FILE")?;
                return if setup::check_config(&path).await {
                    Ok(())
                } else {
                    Err(String::new())
                };
            }
            Some(Command::CreateKey {
                log_key,
                name,
                chain,
                network,
                hsm_label,
            }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let what = if log_key {
                    setup::NewKey::Log
                } else {
                    let name = name.ok_or("give --name")?;
                    setup::NewKey::Signing {
                        hsm_label: hsm_label.unwrap_or_else(|| format!("kinko-{name}")),
                        name,
                        chain: chain.ok_or("give --chain")?,
                        network: network.ok_or("give --network")?,
                    }
                };
                return setup::create_key(&config, what).await;
            }
            Some(Command::Backup { out }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let kinko_store::Location::Sqlite(db) = config.store.location()? else {
                    return Err(
                        "kinkod backup copies an SQLite store; back up PostgreSQL with pg_dump or pg_basebackup (docs/ha.md, \"Backup and restore\")".into(),
                    );
                };
                let records = kinko_store::Store::sqlite_backup(&db, &out)
                    .map_err(|e| format!("backing up {}: {e}", db.display()))?;
                eprintln!(
                    "kinkod: wrote {} ({records} audit records; integrity ok). Do not copy {} with it",
                    out.display(),
                    config.store.seen_checkpoint.display()
                );
                return Ok(());
            }
            Some(Command::InstalledPolicy) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let store =
                    kinko_store::Store::open_existing(&config.store.location()?).map_err(|e| format!("{}: {e}", config.store.describe()))?;
                let p = store
                    .installed_policy()
                    .map_err(|e| e.to_string())?
                    .ok_or("no policy installed yet (kinkod has not started on this store)")?;
                print!("{}", p.policy_text);
                return Ok(());
            }
            Some(Command::ExportLog { out }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let store =
                    kinko_store::Store::open_existing(&config.store.location()?).map_err(|e| format!("{}: {e}", config.store.describe()))?;
                let (records, checkpoints) = store
                    .export_log(&out)
                    .map_err(|e| format!("{}: {e}", out.display()))?;
                eprintln!(
                    "kinkod: wrote {records} records and {checkpoints} checkpoints to {}",
                    out.display()
                );
                return Ok(());
            }
            Some(Command::ArchiveLog { dir }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let store = kinko_store::Store::open_existing(&config.store.location()?)
                    .map_err(|e| format!("{}: {e}", config.store.describe()))?;
                let (now, total) = store
                    .archive_log(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
                eprintln!(
                    "kinkod: archived {now} new records into {} ({total} in all)",
                    dir.display()
                );
                return Ok(());
            }
            Some(Command::Rebuild { out }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let store =
                    kinko_store::Store::open_at(&config.store.location()?).map_err(|e| format!("{}: {e}", config.store.describe()))?;
                let r = rebuild::rebuild(&store, &out).map_err(|e| e.to_string())?;
                eprintln!(
                    "kinkod: rebuilt {} from {} records: {} requests ({} signed), {} verdicts, {} policies installed, signing {}",
                    out.display(),
                    r.records,
                    r.requests,
                    r.signed,
                    r.verdicts,
                    r.policies,
                    if r.frozen { "FROZEN" } else { "not frozen" }
                );
                for p in &r.dropped_proposals {
                    eprintln!(
                        "kinkod: policy proposal {p} never installed and its text is not in the log: propose it again"
                    );
                }
                return Ok(());
            }
            Some(Command::ImportLog { from }) => {
                let config = Config::load(&args.config.ok_or("give --config FILE")?)?;
                let store =
                    kinko_store::Store::open_at(&config.store.location()?).map_err(|e| format!("{}: {e}", config.store.describe()))?;
                let (records, checkpoints) = import_log(&store, &from)?;
                eprintln!(
                    "kinkod: imported {records} records and {checkpoints} checkpoints from {}; \
                     the next start verifies them",
                    from.display()
                );
                return Ok(());
            }
            None => args
                .config
                .ok_or("give --config FILE, or run `kinkod dev` for a development set-up")?,
        };
        run(Config::load(&config_path)?, &config_path).await
    });
    // Every task (and every HSM handle it held) is gone once the runtime is; then the module is
    // finalized before the exit handlers run (see `finalize_modules`).
    drop(rt);
    kinko_hsm::finalize_modules();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kinkod: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Refuses a log older than the newest checkpoint this kinkod has seen (kept in
/// `[store] seen_checkpoint`): a database restored from an older backup, or replaced, would
/// forget what was signed. Returns the size of the checkpoint seen (0 without one).
fn check_seen_checkpoint(
    config: &Config,
    store: &kinko_store::Store,
    key: &kinko_audit::note::VerifierKey,
) -> Result<u64, String> {
    let path = &config.store.seen_checkpoint;
    let note = match std::fs::read_to_string(path) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let cp = kinko_audit::note::Checkpoint::open(&note, key, Some(&config.audit.origin)).map_err(
        |e| {
            format!(
                "{}: {e} (it is not a checkpoint of this log; was the log key or origin changed?)",
                path.display()
            )
        },
    )?;
    let held = store.log_size();
    let refuse = |what: String| {
        format!(
            "the audit log in the store {} {what}, but this kinkod saw a signed checkpoint of {} \
             records (kept in {}): the database was restored from an older backup or replaced, and \
             would forget what was signed. kinkod will not start: restore the newest backup \
             (docs/ha.md); remove {} only if this history is knowingly the one to continue",
            config.store.describe(),
            cp.size,
            path.display(),
            path.display()
        )
    };
    if held < cp.size {
        return Err(refuse(format!("holds {held} records")));
    }
    let root = store.root_at(cp.size).map_err(|e| e.to_string())?;
    if root != cp.root {
        return Err(refuse(format!(
            "holds another history in its first {} records",
            cp.size
        )));
    }
    Ok(cp.size)
}

/// Refuses to start when the seen-checkpoint file cannot be written: the check against an older
/// restored database would silently stop (under the systemd unit only /var/lib/kinko is
/// writable).
fn seen_checkpoint_writable(path: &std::path::Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let probe = dir.join(format!(".kinkod-write-test-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "[store] seen_checkpoint {}: kinkod cannot write in {} ({e}); without this file a database restored from an older backup would not be caught. Point seen_checkpoint at kinkod's state directory (e.g. /var/lib/kinko/seen-checkpoint.note)",
            path.display(),
            dir.display()
        )),
    }
}

/// Whether `dir` holds segments of a file log (an earlier kinkod's).
fn has_segments(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("segment-"))
    })
}

/// Refuses to start on an empty log in the store next to a file log with history: that
/// history would be abandoned silently.
fn legacy_log_check(config: &Config, store: &kinko_store::Store) -> Result<(), String> {
    match &config.audit.dir {
        Some(dir) if has_segments(dir) && store.log_size() == 0 => Err(format!(
            "{} holds an audit log kept in files by an earlier kinkod, and the store's log is \
             empty. Import it once (kinkod --config FILE import-log --from {}), or remove \
             [audit] dir from the config to start a new history",
            dir.display(),
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Reads a file log (segments in order, complete lines only; checkpoints.jsonl) and imports
/// it into the store.
fn import_log(store: &kinko_store::Store, dir: &std::path::Path) -> Result<(u64, u64), String> {
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| at(&e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl"))
        })
        .collect();
    segments.sort();
    let mut lines = Vec::new();
    for seg in &segments {
        let data = std::fs::read_to_string(seg).map_err(|e| format!("{}: {e}", seg.display()))?;
        // A torn tail (bytes after the last newline) was never acknowledged: left out.
        let complete = data.rfind('\n').map_or("", |i| &data[..i]);
        lines.extend(
            complete
                .split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let cps_path = dir.join(kinko_audit::log::CHECKPOINTS_FILE);
    let cps_text =
        std::fs::read_to_string(&cps_path).map_err(|e| format!("{}: {e}", cps_path.display()))?;
    let mut notes = Vec::new();
    for line in cps_text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}: {e}", cps_path.display()))?;
        let note = v["note"]
            .as_str()
            .ok_or_else(|| format!("{}: a line without a note", cps_path.display()))?;
        notes.push(note.to_string());
    }
    store.import_log(&lines, &notes).map_err(|e| at(&e))
}

/// Signs checkpoints with the log key in the HSM (on the thread that commits them).
struct HsmCheckpointSigner {
    hsm: Hsm,
    label: String,
    public_key: [u8; 32],
}

impl CheckpointSigner for HsmCheckpointSigner {
    type Error = kinko_hsm::HsmError;
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Self::Error> {
        self.hsm.sign_ed25519_blocking(&self.label, msg)
    }
    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }
}

async fn run(config: Config, config_path: &std::path::Path) -> Result<(), String> {
    let policy_path = config.policy.path.clone();
    let mut policy_text =
        std::fs::read(&policy_path).map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let mut policy =
        Policy::from_toml(&policy_text).map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let mut policy_hash = policy.hash().0.to_vec();
    let store = Arc::new(
        kinko_store::Store::open_at(&config.store.location()?)
            .map_err(|e| format!("{}: {e}", config.store.describe()))?,
    );
    let installed = store.installed_policy().map_err(|e| e.to_string())?;
    let stale = config.store.postgres.is_some()
        && store
            .installed_policies()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|earlier| earlier.policy_hash == policy_hash);
    if let Some(p) = &installed
        && p.policy_hash != policy_hash
        && stale
    {
        // Replicas share one store: another replica installed a policy through governance while
        // this one was down, and this file holds a policy installed earlier. The store's
        // installed policy is the one in force (it is checked against the log below); the file
        // follows it. A file that holds a policy never installed is still refused below.
        tracing::warn!(
            path = %policy_path.display(),
            installed = hex::encode(&p.policy_hash),
            "the policy file is not the policy installed in the shared store: it is replaced by the installed policy"
        );
        engine::write_atomically(&policy_path, p.policy_text.as_bytes())
            .map_err(|e| format!("{}: {e}", policy_path.display()))?;
        policy_text = p.policy_text.clone().into_bytes();
        policy = Policy::from_toml(&policy_text)
            .map_err(|e| format!("the installed policy does not load: {e}"))?;
        policy_hash = policy.hash().0.to_vec();
    }
    if let Some(p) = &installed
        && p.policy_hash != policy_hash
    {
        return Err(format!(
            "the policy file {} (hash {}) is not the installed policy (hash {}{}). A policy changes only \
             through governance (kinko policy propose / approve); an edited file is refused. To restore \
             the installed policy: kinkod --config FILE installed-policy > {}",
            policy_path.display(),
            hex::encode(&policy_hash),
            hex::encode(&p.policy_hash),
            p.proposal_id
                .as_ref()
                .map(|id| format!(", installed by proposal {id}"))
                .unwrap_or_default(),
            policy_path.display(),
        ));
    }

    // Address-book entries count from when their policy was installed (not its text's times).
    policy = engine::settled_policy(
        policy,
        &store.installed_policies().map_err(|e| e.to_string())?,
    );
    let hsm = Hsm::open(&config.hsm).await.map_err(|e| e.to_string())?;
    hsm.probe()
        .await
        .map_err(|e| e.to_string())?
        .require(&setup::needed_kinds(&policy))
        .map_err(|e| e.to_string())?;
    for k in policy.keys() {
        engine::check_not_log_key(k, &config.audit.log_key_label)?;
    }
    let (keys, _) = engine::load_keys(&hsm, &policy, false).await?;
    let PublicKey::Ed25519(log_pk) = hsm
        .public_key(&config.audit.log_key_label)
        .await
        .map_err(|e| format!("log key {}: {e}", config.audit.log_key_label))?
    else {
        return Err(format!(
            "log key {} is not an Ed25519 key",
            config.audit.log_key_label
        ));
    };
    let signer = HsmCheckpointSigner {
        hsm: hsm.clone(),
        label: config.audit.log_key_label.clone(),
        public_key: log_pk.to_bytes(),
    };
    legacy_log_check(&config, &store)?;
    let problems = store.durability_problems().map_err(|e| e.to_string())?;
    if !problems.is_empty() {
        let list = problems.join("; ");
        if config.store.dangerous_allow_unsafe_durability {
            tracing::error!(
                problems = list,
                "the store can lose committed transactions; starting anyway because [store] dangerous_allow_unsafe_durability = true"
            );
        } else {
            return Err(format!(
                "the store {} can lose committed transactions: {list}. A lost commit can forget a \
                 signed nonce and sign it again, so kinkod will not start (docs/ha.md lists the \
                 settings; [store] dangerous_allow_unsafe_durability = true overrides this)",
                config.store.describe()
            ));
        }
    }
    // One log line per record committed from here on (the audit log is the record).
    store.on_committed(events::log_record);
    // The log lives in the store: every record re-read and checked against its newest signed
    // checkpoint before anything else.
    {
        let store = Arc::clone(&store);
        let origin = config.audit.origin.clone();
        tokio::task::spawn_blocking(move || {
            store.open_log(kinko_store::log::LogConfig::new(origin), signer)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "{}: {e}. kinkod will not start on a history that does not verify: restore the \
                 database from backup and run `kinko audit verify` with the checkpoints the \
                 auditors kept",
                config.store.describe()
            )
        })?;
    }
    let audit = Arc::clone(&store);
    let verifier_key = audit.verifier_key().map_err(|e| e.to_string())?;
    let seen_size = check_seen_checkpoint(&config, &store, &verifier_key)?;
    seen_checkpoint_writable(&config.store.seen_checkpoint)?;
    // Auditors need this verifier key (out of band) to check checkpoints.
    eprintln!("kinkod: audit log key {verifier_key}");
    match audit.last_policy_installed() {
        Some((seq, logged)) if logged != policy_hash => {
            return Err(format!(
                "the policy file {} (hash {}) is not the policy the audit log last installed (record {seq}, hash {}); \
                 kinkod refuses to enforce a policy that did not go through governance",
                policy_path.display(),
                hex::encode(&policy_hash),
                hex::encode(&logged)
            ));
        }
        Some(_) => {}
        None if audit.log_size() > 0 => {
            return Err(
                "the audit log has records but no installed policy; it is not a log this daemon wrote".into(),
            );
        }
        None if installed.is_some() => {
            return Err(format!(
                "the store {} has state (an installed policy) but its audit log is empty: the log \
                 was emptied. kinkod will not start; restore the database from backup",
                config.store.describe()
            ));
        }
        None => {
            // A new log starts with the keys in use and the policy in force, so that an auditor
            // can re-verify every later signature from the log alone.
            let text = String::from_utf8(policy_text.clone())
                .map_err(|e| format!("policy is not UTF-8: {e}"))?;
            let mut first: Vec<Event> = keys
                .values()
                .map(|k| {
                    Event::KeyCreated(rec::KeyCreated {
                        key_name: k.name.clone(),
                        chain: k.chain,
                        public_key: rec::HexBytes(k.public_key.clone()),
                        address: k.address.clone(),
                        approvals: Vec::new(),
                    })
                })
                .collect();
            first.push(Event::PolicyInstalled(rec::PolicyInstalled {
                policy_hash: rec::HexBytes(policy_hash.clone()),
                policy_text: text,
                approvals: Vec::new(),
            }));
            // The bootstrap policy and its records: one commit.
            let bootstrap = installed.is_none().then(|| kinko_store::InstalledPolicy {
                policy_hash: policy_hash.clone(),
                policy_text: String::from_utf8_lossy(&policy_text).into_owned(),
                proposal_id: None,
                installed_at: jiff::Timestamp::now().as_second(),
            });
            let a = Arc::clone(&audit);
            tokio::task::spawn_blocking(move || {
                a.commit("kinkod", move |tx| {
                    if let Some(p) = &bootstrap {
                        tx.install_policy(p)?;
                    }
                    Ok(((), first))
                })
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot record the initial keys and policy: {e}"))?;
        }
    }
    if store
        .installed_policy()
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Err(format!(
            "the store {} has a history in its audit log but no installed policy: it was edited. \
             kinkod will not start; restore it from backup",
            config.store.describe()
        ));
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let witnessing = config
        .witness
        .as_ref()
        .map(witnessing::Witnessing::load)
        .transpose()?
        .map(Arc::new);
    let engine = Engine::new(
        store,
        hsm,
        engine::Live {
            policy: Arc::new(policy),
            keys,
        },
        engine::EngineLimits {
            max_pending_per_requester: u64::try_from(config.limits.max_pending_per_requester)
                .unwrap_or(u64::MAX),
            max_denied_per_requester_per_day: u64::try_from(
                config.limits.max_denied_per_requester_per_day,
            )
            .unwrap_or(u64::MAX),
            pending_expiry_secs: config.limits.pending_expiry_secs,
        },
        Arc::clone(&metrics),
        policy_path,
    )?
    .with_log_key_label(&config.audit.log_key_label)
    .with_seen_checkpoint(config.store.seen_checkpoint.clone(), seen_size)
    .with_witnessing(witnessing)
    .with_replica(&config.store.replica.clone().unwrap_or_else(|| {
        // /proc/sys is hidden by the unit's ProcSubset=pid; /etc/hostname is readable there.
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| {
                tracing::warn!("no host name readable: set [store] replica");
                "localhost".into()
            });
        format!("{host}:{}", config.server.listen.port())
    }));
    // One read of the log at start: recovery, then the store checked against it.
    // Log and state read at one instant: no other replica commits meanwhile.
    let started_checks = Arc::clone(engine.store());
    let ((restored, failed), last_build) = started_checks
        .exclusively(|| -> Result<_, String> {
            let facts = engine.read_log().map_err(|e| e.to_string())?;
            let recovered = engine.recover(&facts).map_err(|e| e.to_string())?;
            // The log outranks the store: a store edited behind kinkod is refused before any
            // signing.
            engine
                .check_store_against_log(&facts)
                .map_err(|e| e.to_string())?;
            Ok((recovered, facts.last_build.clone()))
        })
        .map_err(|e| e.to_string())??;
    // Which build signs from here: recorded before serving when it is not the last recorded.
    record_build(engine.store(), engine.replica(), last_build).await?;
    if restored > 0 {
        tracing::warn!(
            restored,
            "requests whose signature was logged before a stop were restored as signed from the log"
        );
    }
    if failed > 0 {
        tracing::warn!(
            failed,
            "requests interrupted between authorization and signature were failed explicitly"
        );
    }
    // The witnesses: a log older than, or forked from, what one of them cosigned is refused
    // here (a witness that cannot be reached is noted, and asked again in the background).
    if let Some(w) = engine.witnessing() {
        match w.start_round(engine.store()).await {
            Ok(q) => tracing::info!(quorum_size = q, "witnesses asked at start"),
            Err(e) => tracing::warn!(error = e, "witnesses could not be asked at start"),
        }
        if let Some(why) = w.conflict() {
            return Err(format!(
                "a witness holds a history this log does not extend, so kinkod will not start: {why}. \
                 See docs/witness.md (\"A witness conflict\")"
            ));
        }
    }
    // Every start check passed: this log is the newest this kinkod has seen.
    engine.remember_checkpoint();
    let engine = Arc::new(engine);
    {
        // Governance delays and request expiry advance on their own.
        let engine = Arc::clone(&engine);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(2));
            loop {
                every.tick().await;
                if let Err(e) = engine.tick().await {
                    tracing::warn!(reason = e.message, "background governance and expiry step");
                }
            }
        });
    }
    if let Some(w) = engine.witnessing() {
        // New checkpoints go to the witnesses in the background (a `witnessed` rule's signature
        // waits for them in its own signing step).
        let (w, store) = (Arc::clone(w), Arc::clone(engine.store()));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = w.round(&store).await {
                    tracing::warn!(error = e, "witnessing round");
                }
            }
        });
    }
    let principals = Arc::new(
        auth::Principals::new(&config.principals, &config.tls.revoked_sha256).with_rate_limit(
            config.limits.calls_per_second_per_principal,
            config.limits.call_burst_per_principal,
            Arc::clone(&metrics),
        ),
    );
    let api = service::Api {
        engine: Arc::clone(&engine),
        principals: Arc::clone(&principals),
        watches: Arc::new(service::Watches::new(
            config.limits.max_watches_per_principal,
        )),
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::withdrawal_service_server::WithdrawalServiceServer<service::Api>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(kinko_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| e.to_string())?;
    let limit = config.limits.max_message_bytes;
    let tls = Arc::new(tls::LiveTls::load(&config.tls)?);
    if let Some(m) = &config.metrics {
        let listener = tls::bind(m.listen).await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "kinkod: metrics on https://{local}/metrics (client certificate with the metrics or auditor role)"
        );
        tokio::spawn(metrics_listener::serve(
            listener,
            Arc::clone(&tls),
            Arc::clone(&principals),
            Arc::clone(&engine),
        ));
    }
    if let Some(h) = &config.health {
        let listener = tls::bind(h.listen).await?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "kinkod: health on http://{local}/healthz (no client certificate; ok or unavailable, nothing else)"
        );
        tokio::spawn(metrics_listener::serve_health(
            listener,
            Arc::clone(&engine),
        ));
    }
    let listener = tls::bind(config.server.listen).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%local, "kinkod listening (TLS 1.3, client certificates required)");
    eprintln!("kinkod: listening on {local}");
    notify::notify(&format!("READY=1\nSTATUS=serving on {local}"));
    notify::spawn_watchdog();
    spawn_reloader(
        config_path.to_path_buf(),
        Arc::clone(&tls),
        Arc::clone(&principals),
    );
    tonic::transport::Server::builder()
        .timeout(std::time::Duration::from_secs(
            config.limits.request_timeout_secs,
        ))
        .concurrency_limit_per_connection(config.limits.max_concurrent_per_principal)
        .add_service(health)
        .add_service(reflection)
        .add_service(
            pb::withdrawal_service_server::WithdrawalServiceServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::approval_service_server::ApprovalServiceServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::admin_service_server::AdminServiceServer::new(api.clone())
                .max_decoding_message_size(limit),
        )
        .add_service(
            pb::audit_service_server::AuditServiceServer::new(api).max_decoding_message_size(limit),
        )
        .serve_with_incoming_shutdown(tls::incoming(listener, tls), shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Appends a `daemon_started` record (version, SHA-256 of this executable, replica) when this
/// executable is not the build the log last recorded, so that an auditor sees which build
/// made every later signature (compare with the release's SHA256SUMS).
async fn record_build(
    store: &Arc<kinko_store::Store>,
    replica: &str,
    last: Option<Vec<u8>>,
) -> Result<(), String> {
    let digest = tokio::task::spawn_blocking(|| -> Result<Vec<u8>, String> {
        use sha2::Digest as _;
        let mut f = std::fs::File::open("/proc/self/exe")
            .map_err(|e| format!("reading this executable to record its hash: {e}"))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)
                .map_err(|e| format!("reading this executable to record its hash: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or_default());
        }
        Ok(h.finalize().to_vec())
    })
    .await
    .map_err(|e| e.to_string())??;
    tracing::info!(
        binary_sha256 = hex::encode(&digest),
        version = env!("CARGO_PKG_VERSION"),
        "this build"
    );
    if last.as_deref() == Some(digest.as_slice()) {
        return Ok(());
    }
    let event = Event::DaemonStarted(rec::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        binary_sha256: rec::HexBytes(digest),
        replica: replica.to_string(),
    });
    let s = Arc::clone(store);
    tokio::task::spawn_blocking(move || s.commit("kinkod", move |_| Ok(((), vec![event]))))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot record this build in the audit log: {e}"))?;
    Ok(())
}

/// SIGINT or SIGTERM (what systemd sends): stop accepting, finish the calls in flight, exit.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new calls; calls in flight finish");
    eprintln!("kinkod: shutting down");
    notify::notify("STOPPING=1");
}

/// SIGHUP (`systemctl reload kinkod`): re-reads the configuration file and replaces the TLS
/// certificate, key and client CA, the pinned principals and the revocation list. Connections
/// and calls in flight are untouched; a configuration that does not load, or TLS files that do
/// not, change nothing and are logged. Other settings take effect at the next start.
fn spawn_reloader(config_path: PathBuf, tls: Arc<tls::LiveTls>, principals: Arc<auth::Principals>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: reloads need a restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            notify::notify("RELOADING=1");
            let result = Config::load(&config_path).and_then(|c| {
                tls.reload(&c.tls)?;
                principals.reload(&c.principals, &c.tls.revoked_sha256);
                Ok(c)
            });
            match result {
                Ok(c) => {
                    tracing::info!(
                        config = %config_path.display(),
                        principals = c.principals.len(),
                        revoked = c.tls.revoked_sha256.len(),
                        "reloaded TLS files, principals and revocations (other settings need a restart)"
                    );
                    eprintln!(
                        "kinkod: reloaded TLS and principals from {}",
                        config_path.display()
                    );
                }
                Err(e) => {
                    tracing::error!(
                        config = %config_path.display(),
                        error = e,
                        "reload refused: the configuration in use stays"
                    );
                    eprintln!("kinkod: reload refused, nothing changed: {e}");
                }
            }
            notify::notify("READY=1");
        }
    });
}
