//! `kinko`: the command-line tool for requesters, officers and auditors.
//!
//! Each subcommand lives in its own module; `main` only parses and dispatches.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kinko: hardware-backed cold-wallet signing. Inspect intents, check policies, verify the log.
#[derive(Debug, Parser)]
#[command(name = "kinko", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode unsigned payloads into intents, locally.
    #[command(subcommand)]
    Intent(intent::IntentCommand),
    /// Submit and follow withdrawal requests (the withdrawal pipeline's role).
    #[command(subcommand)]
    Request(request::RequestCommand),
    /// Approve a request: decode its payload locally, show it, sign over your own digest.
    Approve(officer::Vote),
    /// Reject a request (signed like an approval).
    Reject(officer::Vote),
    /// Fetch the audit log (auditor) and verify it offline; inclusion and consistency proofs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Officer keys: make one (passphrase-encrypted), print its public key.
    #[command(subcommand)]
    Officer(officer_key::OfficerCommand),
    /// Requester keys (the withdrawal pipeline's): make one, print its public key.
    #[command(subcommand)]
    Requester(request::RequesterCommand),
    /// Stop all signing at once (one officer with a freeze role; signed with your officer key).
    Freeze(governance::Signer),
    /// Approve lifting the freeze (a quorum, then a delay), or veto it.
    Unfreeze {
        #[command(flatten)]
        signer: governance::Signer,
        /// Veto the unfreeze in progress (a signed reject) instead of approving it.
        #[arg(long)]
        veto: bool,
    },
    /// Is kinkod serving? Asks its gRPC health service over mTLS with your certificate.
    /// Exit status 0 serving, 1 not serving or unreachable (the cause on stderr); for
    /// monitoring scripts and a container's health check.
    Health {
        #[command(flatten)]
        connect: client::Connect,
        /// Print {"server": …, "serving": true|false} instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Whether signing is frozen, and the unfreeze in progress.
    FreezeStatus {
        #[command(flatten)]
        connect: client::Connect,
    },
    /// The daemon's signing keys: name, chain, network, public key, address.
    Keys {
        #[command(flatten)]
        connect: client::Connect,
        /// Compare each key with the public key your copy of the policy pins (exit 1 when one
        /// differs or is missing).
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
    },
    /// Check and explain policies offline; show, propose and approve the policy in force.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The approval console in your browser, served by this Kinko on localhost: requests
    /// decoded here, approvals with your passkey (docs/console.md).
    Console(console::ConsoleArgs),
}

mod audit;
mod client;
mod console;
mod governance;
mod intent;
mod officer;
mod officer_key;
mod policy;
mod policy_file;
mod request;

/// `kinko health`: the gRPC health of kinkod's withdrawal service.
async fn health(connect: client::Connect, json: bool) -> Result<ExitCode, String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let server = connect.server.clone();
    let answer = async {
        let mut c = tonic_health::pb::health_client::HealthClient::new(connect.channel().await?);
        let r = c
            .check(tonic_health::pb::HealthCheckRequest {
                service: "kinko.v1.WithdrawalService".into(),
            })
            .await
            .map_err(client::show_status)?
            .into_inner();
        Ok::<bool, String>(r.status == ServingStatus::Serving as i32)
    }
    .await;
    let serving = match &answer {
        Ok(s) => *s,
        Err(e) => {
            eprintln!("kinko: {e}");
            false
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "server": server, "serving": serving })
        );
    } else if serving {
        println!("kinkod at {server}: serving");
    } else {
        println!("kinkod at {server}: NOT serving");
    }
    Ok(if serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs an async command on a small runtime; errors print and exit 1.
fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kinko: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinko: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`block_on`] for a command that chooses its exit status.
fn block_on_code(f: impl std::future::Future<Output = Result<ExitCode, String>>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let r = block_on(async {
        code = f.await?;
        Ok(())
    });
    if r == ExitCode::SUCCESS { code } else { r }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Intent(cmd) => intent::run(cmd),
        Command::Request(cmd) => block_on_code(request::run(cmd)),
        Command::Approve(v) => block_on(officer::run(v, kinko_policy::Verdict::Approve)),
        Command::Reject(v) => block_on(officer::run(v, kinko_policy::Verdict::Reject)),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Requester(cmd) => match request::run_requester(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kinko: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Officer(cmd) => match officer_key::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kinko: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Freeze(signer) => block_on(governance::freeze(signer)),
        Command::Unfreeze { signer, veto } => block_on(governance::unfreeze(signer, veto)),
        Command::FreezeStatus { connect } => block_on(governance::freeze_status(connect)),
        Command::Health { connect, json } => block_on_code(health(connect, json)),
        Command::Keys { connect, policy } => block_on(governance::keys(connect, policy)),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Console(args) => block_on(console::run(args)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
