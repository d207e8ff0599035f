//! `kinko intent decode`: decode a payload locally and print its intent as JSON.
//!
//! Operators and officers run this on their own machine to see what a payload does before
//! anything is submitted: the decoding and the `intent_digest` are computed here, from the
//! exact bytes, by the same `kinko-chain` code the daemon runs.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Subcommand, ValueEnum};
use kinko_chain::{ChainError, DecodeContext, MAX_PAYLOAD_LEN};
use kinko_intent::{Chain, Intent, Network, TokenInfo, TokenRegistry};
use serde::{Deserialize, Serialize};

/// Largest input file accepted: base64 of the largest payload, with room for whitespace.
pub(crate) const MAX_INPUT_LEN: usize = MAX_PAYLOAD_LEN * 2 + 4096;

/// Largest token registry file accepted.
const MAX_TOKENS_LEN: usize = 4 * 1024 * 1024;

/// Exit code when the payload is refused by the decoder.
const EXIT_REFUSED: u8 = 2;

/// Exit code for unreadable input, bad arguments or a malformed token file.
const EXIT_USAGE: u8 = 1;

/// Intent commands.
#[derive(Debug, Subcommand)]
pub(crate) enum IntentCommand {
    /// Decode an unsigned payload and print its intent as JSON.
    ///
    /// Reads FILE (or standard input for `-`): hex (with or without 0x), base64, or — for Safe
    /// transactions on Ethereum — EIP-712 typed-data JSON with primary type SafeTx. Prints
    /// `{"intent": …, "intent_digest": "…"}` (pretty JSON) on standard output, and the human
    /// rendering officers read on standard error unless --no-render.
    ///
    /// The intent_digest is SHA-256("kinko/intent/v1\n" || canonical JSON of .intent); see
    /// docs/intents.md to recompute it independently.
    ///
    /// Exit status: 0 decoded; 2 refused by the decoder (the typed reason is printed);
    /// 1 unreadable input, malformed arguments or token file.
    #[command(verbatim_doc_comment)]
    Decode(DecodeArgs),
}

/// Arguments of `kinko intent decode`.
#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// The chain family of the payload.
    #[arg(long, value_enum)]
    chain: ChainArg,
    /// The network the signing key is configured for; required, never guessed from the
    /// payload. Ethereum: the decimal EIP-155 chain id (1 = mainnet, 11155111 = Sepolia, …);
    /// Bitcoin: bitcoin, testnet, testnet4, signet or regtest; Solana: mainnet-beta, devnet,
    /// testnet or localnet. A payload for another network is refused.
    #[arg(long)]
    network: String,
    /// The signing key's public key, hex: SEC1 secp256k1 (33 or 65 bytes) for Ethereum and
    /// Bitcoin — for a Safe, the owner key — or the 32-byte Ed25519 key for Solana. The
    /// signer's address is derived from it.
    #[arg(long = "public-key")]
    public_key: String,
    /// A JSON token registry to name ERC-20 / SPL tokens: an array of
    /// {"chain": "ethereum", "contract": "0x…", "symbol": "USDC", "decimals": 6}.
    /// Tokens not in it are shown by contract address with unknown decimals.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// How the input is encoded. `auto`: JSON if it starts with `{`, else hex if it is only
    /// hex digits (after an optional 0x), else base64.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    format: InputFormat,
    /// Do not print the human rendering on standard error.
    #[arg(long)]
    no_render: bool,
    /// The payload file, or `-` for standard input.
    input: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChainArg {
    Ethereum,
    Bitcoin,
    Solana,
}

impl From<ChainArg> for Chain {
    fn from(c: ChainArg) -> Self {
        match c {
            ChainArg::Ethereum => Chain::Ethereum,
            ChainArg::Bitcoin => Chain::Bitcoin,
            ChainArg::Solana => Chain::Solana,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    Auto,
    Hex,
    Base64,
    Json,
}

/// Why the command failed.
#[derive(Debug)]
enum CliError {
    /// Bad input or arguments (exit 1).
    Usage(String),
    /// The decoder refused the payload (exit 2).
    Refused(ChainError),
}

/// One entry of the `--tokens` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    chain: Chain,
    contract: String,
    symbol: String,
    decimals: u8,
}

/// What `decode` prints on standard output.
#[derive(Debug, Serialize)]
struct Output<'a> {
    intent: &'a Intent,
    intent_digest: String,
}

pub(crate) fn run(cmd: IntentCommand) -> ExitCode {
    match cmd {
        IntentCommand::Decode(args) => match decode(&args) {
            Ok((json, rendering)) => {
                println!("{json}");
                if !args.no_render {
                    eprint!("{rendering}");
                }
                ExitCode::SUCCESS
            }
            Err(CliError::Usage(msg)) => {
                eprintln!("error: {msg}");
                ExitCode::from(EXIT_USAGE)
            }
            Err(CliError::Refused(e)) => {
                eprintln!("refused: {e}");
                ExitCode::from(EXIT_REFUSED)
            }
        },
    }
}

fn read_limited(path: &PathBuf, limit: usize, what: &str) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let io = |e: std::io::Error| CliError::Usage(format!("cannot read {what}: {e}"));
    let take = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(take)
            .read_to_end(&mut buf)
            .map_err(io)?;
    } else {
        std::fs::File::open(path)
            .map_err(io)?
            .take(take)
            .read_to_end(&mut buf)
            .map_err(io)?;
    }
    if buf.len() > limit {
        return Err(CliError::Usage(format!(
            "{what} is larger than {limit} bytes"
        )));
    }
    Ok(buf)
}

/// Turns the input text into payload bytes.
fn payload_bytes(input: &[u8], format: InputFormat) -> Result<Vec<u8>, CliError> {
    let text = std::str::from_utf8(input)
        .map_err(|_| CliError::Usage("input is not UTF-8 text (hex, base64 or JSON)".into()))?;
    let trimmed = text.trim();
    let format = match format {
        InputFormat::Auto if trimmed.starts_with('{') => InputFormat::Json,
        InputFormat::Auto => {
            let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
            if digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                InputFormat::Hex
            } else {
                InputFormat::Base64
            }
        }
        other => other,
    };
    match format {
        InputFormat::Json => Ok(trimmed.as_bytes().to_vec()),
        InputFormat::Hex => {
            let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
            hex::decode(digits).map_err(|e| CliError::Usage(format!("invalid hex: {e}")))
        }
        InputFormat::Base64 => {
            let compact: String = trimmed.split_ascii_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| CliError::Usage(format!("invalid base64: {e}")))
        }
        InputFormat::Auto => Err(CliError::Usage("unreachable input format".into())),
    }
}

fn parse_public_key(s: &str) -> Result<Vec<u8>, CliError> {
    let s = s.trim();
    hex::decode(s.strip_prefix("0x").unwrap_or(s))
        .map_err(|e| CliError::Usage(format!("--public-key is not hex: {e}")))
}

fn parse_tokens(bytes: &[u8]) -> Result<TokenRegistry, CliError> {
    let entries: Vec<TokenEntry> =
        serde_json::from_slice(bytes).map_err(|e| CliError::Usage(format!("token file: {e}")))?;
    let mut registry = TokenRegistry::new();
    for t in entries {
        registry.insert(
            t.chain,
            &t.contract,
            TokenInfo {
                symbol: t.symbol,
                decimals: t.decimals,
            },
        );
    }
    Ok(registry)
}

/// Runs the decoder; returns the JSON for standard output and the rendering.
fn decode(args: &DecodeArgs) -> Result<(String, String), CliError> {
    let network = Network::new(args.network.clone())
        .map_err(|e| CliError::Usage(format!("--network: {e}")))?;
    let public_key = parse_public_key(&args.public_key)?;
    let tokens = match &args.tokens {
        Some(path) => parse_tokens(&read_limited(path, MAX_TOKENS_LEN, "token file")?)?,
        None => TokenRegistry::new(),
    };
    let input = read_limited(&args.input, MAX_INPUT_LEN, "input")?;
    let payload = payload_bytes(&input, args.format)?;
    decode_payload(args.chain.into(), &network, &public_key, &tokens, &payload)
}

fn decode_payload(
    chain: Chain,
    network: &Network,
    public_key: &[u8],
    tokens: &TokenRegistry,
    payload: &[u8],
) -> Result<(String, String), CliError> {
    let ctx = DecodeContext {
        network,
        public_key,
        tokens,
    };
    let intent = kinko_chain::decode(chain, payload, &ctx).map_err(CliError::Refused)?;
    let digest = intent
        .digest()
        .map_err(|e| CliError::Usage(format!("cannot encode the intent: {e}")))?;
    let out = Output {
        intent: &intent,
        intent_digest: digest.to_hex(),
    };
    let json = serde_json::to_string_pretty(&out)
        .map_err(|e| CliError::Usage(format!("cannot print the intent: {e}")))?;
    let rendering = format!("{}intent digest: {digest}\n", intent.render());
    Ok((json, rendering))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The EIP-155 example's signing payload (https://eips.ethereum.org/EIPS/eip-155).
    const EIP155: &str = "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080";
    /// The compressed public key of the EIP-155 example's private key 0x4646…46.
    const EIP155_PK: &str = "024bc2a31265153f07e70e0bab08724e6b85e217f8cd628ceb62974247bb493382";

    fn run_on(payload: &[u8], network: &str) -> Result<(String, String), CliError> {
        decode_payload(
            Chain::Ethereum,
            &Network::new(network).unwrap(),
            &parse_public_key(EIP155_PK).unwrap(),
            &TokenRegistry::new(),
            payload,
        )
    }

    #[test]
    fn input_formats_agree() {
        let raw = hex::decode(EIP155).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        for (text, format) in [
            (EIP155.to_string(), InputFormat::Auto),
            (format!("0x{EIP155}\n"), InputFormat::Auto),
            (format!("  {}\n", EIP155.to_uppercase()), InputFormat::Hex),
            (b64.clone(), InputFormat::Auto),
            (b64, InputFormat::Base64),
        ] {
            assert_eq!(
                payload_bytes(text.as_bytes(), format).unwrap(),
                raw,
                "{text}"
            );
        }
        assert_eq!(
            payload_bytes(b" {\"a\":1}\n", InputFormat::Auto).unwrap(),
            b"{\"a\":1}"
        );
        assert!(payload_bytes(b"0xabc", InputFormat::Hex).is_err());
        assert!(payload_bytes(&[0xff, 0xfe], InputFormat::Auto).is_err());
    }

    #[test]
    fn prints_intent_and_a_digest_that_recomputes() {
        let (json, rendering) = run_on(&hex::decode(EIP155).unwrap(), "1").unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let intent: Intent = serde_json::from_value(v["intent"].clone()).unwrap();
        assert_eq!(intent.kind.as_str(), "transfer");
        // The EIP-155 example's sender.
        assert_eq!(
            intent.signer.as_str(),
            "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F"
        );
        // Amounts in base units as decimal strings.
        assert_eq!(v["intent"]["transfers"][0]["amount"], "1000000000000000000");
        assert_eq!(
            v["intent_digest"].as_str().unwrap(),
            intent.digest().unwrap().to_hex()
        );
        assert!(
            rendering.contains("send:     1 ETH -> 0x3535353535353535353535353535353535353535")
        );
        assert!(rendering.contains("intent digest: "));
    }

    #[test]
    fn refusals_are_typed() {
        let err = run_on(&hex::decode(EIP155).unwrap(), "5").unwrap_err();
        match err {
            CliError::Refused(e) => assert!(e.to_string().contains("chain id 1"), "{e}"),
            CliError::Usage(m) => panic!("{m}"),
        }
    }

    #[test]
    fn token_file() {
        let reg = parse_tokens(
            br#"[{"chain":"ethereum","contract":"0xdAC17F958D2ee523a2206206994597C13D831ec7","symbol":"USDT","decimals":6}]"#,
        )
        .unwrap();
        assert_eq!(
            reg.get(
                Chain::Ethereum,
                "0xdac17f958d2ee523a2206206994597c13d831ec7"
            )
            .unwrap()
            .decimals,
            6
        );
        assert!(
            parse_tokens(
                br#"[{"chain":"ethereum","contract":"0x","symbol":"X","decimals":6,"x":1}]"#
            )
            .is_err()
        );
    }
}
