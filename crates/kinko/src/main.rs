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
    /// Verify the audit log offline; inclusion and consistency proofs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

mod audit;
mod client;
mod intent;
mod officer;
mod request;

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Intent(cmd) => intent::run(cmd),
        Command::Request(cmd) => block_on(request::run(cmd)),
        Command::Approve(v) => block_on(officer::run(v, kinko_policy::Verdict::Approve)),
        Command::Reject(v) => block_on(officer::run(v, kinko_policy::Verdict::Reject)),
        Command::Audit(cmd) => audit::run(cmd),
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
