//! `kinko intent decode`: decode a payload locally and print its intent as JSON.

use std::process::ExitCode;

use clap::Subcommand;

/// Intent commands.
#[derive(Debug, Subcommand)]
pub(crate) enum IntentCommand {
    /// Decode an unsigned payload and print the intent as JSON (being written).
    Decode {
        /// ethereum, bitcoin or solana.
        #[arg(long)]
        chain: String,
    },
}

pub(crate) fn run(cmd: IntentCommand) -> ExitCode {
    match cmd {
        IntentCommand::Decode { chain } => {
            eprintln!("kinko intent decode --chain {chain}: not available in this build yet");
            ExitCode::from(2)
        }
    }
}
