//! `kinko-witness`: a C2SP tlog-witness for Kinko's audit log. See docs/witness.md.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use kinko_audit::cosignature::CosignerKey;
use kinko_audit::note::CheckpointSigner as _;
use kinko_witness::Witness;
use kinko_witness::config::{Config, new_key, read_key};

/// A witness for transparency logs: cosigns a log's checkpoint only if it is consistent with
/// every checkpoint of that log it cosigned before (C2SP tlog-witness, tlog-cosignature).
#[derive(Debug, Parser)]
#[command(name = "kinko-witness", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a witness in DIR: a new key (witness.key, mode 0600) and witness.toml with no log
    /// yet; prints the witness's public key (vkey) to give to logs and auditors.
    Init {
        /// The directory (created if missing; must not hold a witness already).
        dir: PathBuf,
        /// The witness's name, e.g. witness.example.org/kinko (the key name in cosignatures).
        #[arg(long)]
        name: String,
        /// The listening address written to witness.toml.
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: String,
    },
    /// Print the witness's public key (vkey).
    Vkey {
        /// The configuration file.
        #[arg(long, default_value = "witness.toml")]
        config: PathBuf,
    },
    /// Serve POST /add-checkpoint.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "witness.toml")]
        config: PathBuf,
    },
}

fn load(
    config: &std::path::Path,
) -> Result<(Config, CosignerKey, kinko_audit::note::SoftwareSigner), String> {
    let c = Config::load(config)?;
    let signer = read_key(&c.key_file)?;
    let key = CosignerKey::new(&c.name, &signer.public_key()).map_err(|e| format!("name: {e}"))?;
    Ok((c, key, signer))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Init { dir, name, listen } => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let cfg = dir.join("witness.toml");
            if cfg.exists() {
                return Err(format!("{}: exists; not overwritten", cfg.display()));
            }
            // The name is checked before a key is made for it.
            let probe = [9u8; 32];
            CosignerKey::new(
                &name,
                &kinko_audit::note::SoftwareSigner::from_seed(&probe).public_key(),
            )
            .map_err(|e| format!("--name: {e}"))?;
            let signer = new_key(&dir.join("witness.key"))?;
            let key = CosignerKey::new(&name, &signer.public_key()).map_err(|e| e.to_string())?;
            let text = format!(
                "# kinko-witness configuration (docs/witness.md).\nname = {name:?}\nlisten = {listen:?}\nkey_file = \"witness.key\"\nstate = \"witness.db\"\n\n# Every log this witness cosigns for: its checkpoint key (origin = the key name).\n# [[logs]]\n# vkey = \"kinko.example.org/log+8f3a1c2d+AQ...\"\n"
            );
            std::fs::write(&cfg, text).map_err(|e| format!("{}: {e}", cfg.display()))?;
            println!("{key}");
            eprintln!(
                "kinko-witness: created {} and its key; add the logs to witness, then `kinko-witness serve --config {}`",
                cfg.display(),
                cfg.display()
            );
            Ok(())
        }
        Command::Vkey { config } => {
            let (_, key, _) = load(&config)?;
            println!("{key}");
            Ok(())
        }
        Command::Serve { config } => {
            let (c, key, signer) = load(&config)?;
            let logs = c.known_logs()?;
            if logs.is_empty() {
                return Err(format!("{}: no [[logs]] to witness", config.display()));
            }
            let witness = Witness::open(&c.name, signer, logs, &c.state)
                .map_err(|e| format!("{}: {e}", c.state.display()))?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&c.listen)
                    .await
                    .map_err(|e| format!("listen {}: {e}", c.listen))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                // One line for whoever started it (tests read the address from it).
                println!("kinko-witness {key} listening on http://{addr}");
                tracing::info!(%addr, "serving");
                tokio::select! {
                    () = kinko_witness::server::serve(listener, Arc::new(witness)) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                Ok::<_, String>(())
            })
        }
    }
}

fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KINKO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinko-witness: {e}");
            ExitCode::FAILURE
        }
    }
}
