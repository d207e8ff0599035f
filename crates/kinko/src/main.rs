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
}

mod intent;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Intent(cmd) => intent::run(cmd),
    }
}
