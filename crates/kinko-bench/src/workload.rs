//! What the clients send: requester-signed withdrawals of each case, and officer approvals made
//! the way an officer's client makes them (fetch the raw payload, decode it locally with the
//! public key printed at set-up, sign over the digest computed here).

use std::collections::HashMap;
use std::str::FromStr;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{TxKind, U256};
use bitcoin::hashes::Hash as _;
use ed25519_dalek::SigningKey;
use kinko_bench::BenchError;
use kinko_intent::{Chain, Network};
use kinko_policy::request::RequestToSign;
use kinko_policy::{ApprovalMessage, Policy, SignedApproval, Subject, Verdict};
use kinko_proto::v1 as pb;
use pb::approval_service_client::ApprovalServiceClient;
use pb::withdrawal_service_client::WithdrawalServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::daemon::Setup;

/// The development policy's hot wallets (its address books), which the bench rules allow.
const ETH_HOT: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const BTC_HOT: &str = "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx";
const SOL_HOT: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";

/// One kind of withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// Ethereum EIP-1559 transfer of 1 gwei (secp256k1, one signature).
    Eth,
    /// Solana System Program transfer of 1 lamport (Ed25519, one signature).
    Sol,
    /// Bitcoin P2WPKH PSBT with this many inputs (secp256k1, one signature per input).
    Btc(u8),
}

impl Case {
    pub(crate) fn name(self) -> String {
        match self {
            Case::Eth => "ethereum-eip1559".into(),
            Case::Sol => "solana-transfer".into(),
            Case::Btc(n) => format!("bitcoin-psbt-{n}in"),
        }
    }
    pub(crate) fn curve(self) -> &'static str {
        match self {
            Case::Sol => "ed25519",
            Case::Eth | Case::Btc(_) => "secp256k1",
        }
    }
    fn key_name(self) -> &'static str {
        match self {
            Case::Eth => "eth-dev",
            Case::Sol => "sol-dev",
            Case::Btc(_) => "btc-dev",
        }
    }
    fn chain(self) -> Chain {
        match self {
            Case::Eth => Chain::Ethereum,
            Case::Sol => Chain::Solana,
            Case::Btc(_) => Chain::Bitcoin,
        }
    }
    fn network(self) -> &'static str {
        match self {
            Case::Eth => "11155111",
            Case::Sol => "devnet",
            Case::Btc(_) => "testnet",
        }
    }
    /// HSM signatures per withdrawal.
    pub(crate) fn signatures(self) -> u64 {
        match self {
            Case::Btc(n) => u64::from(n),
            Case::Eth | Case::Sol => 1,
        }
    }
}

/// An unsigned EIP-1559 transfer of 1 gwei to `to` with nonce `n` (Sepolia).
fn eth_transfer(n: u64, to: alloy_primitives::Address) -> Vec<u8> {
    let tx = TxEip1559 {
        chain_id: 11_155_111,
        nonce: n,
        gas_limit: 21_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value: U256::from(1_000_000_000u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    out
}

/// Everything the clients share: keys, policy, TLS identities.
pub(crate) struct World {
    addr: String,
    ca: Vec<u8>,
    identities: HashMap<String, (Vec<u8>, Vec<u8>)>,
    policy: Policy,
    requester: SigningKey,
    officers: HashMap<String, SigningKey>,
    keys: HashMap<String, Vec<u8>>,
    btc_own: bitcoin::ScriptBuf,
    btc_hot: bitcoin::ScriptBuf,
    sol_hot: [u8; 32],
    sol_key: [u8; 32],
}

fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>, BenchError> {
    std::fs::read(path).map_err(|e| BenchError::io(path.display().to_string(), e))
}

fn seed_key(path: &std::path::Path) -> Result<SigningKey, BenchError> {
    let text = read_bytes(path)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(String::from_utf8_lossy(&text).trim(), &mut seed)
        .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn wl(e: impl std::fmt::Display) -> BenchError {
    BenchError::Workload(e.to_string())
}

/// Officers who approve, in order: the first approval leaves the request pending, the second
/// meets the 2-of-N quorum and makes the daemon sign.
pub(crate) const OFFICERS: [&str; 2] = ["alice", "bob"];

impl World {
    pub(crate) fn new(setup: &Setup) -> Result<World, BenchError> {
        let dir = &setup.dir;
        let mut identities = HashMap::new();
        for who in ["ledger", "alice", "bob", "auditor"] {
            identities.insert(
                who.to_string(),
                (
                    read_bytes(&dir.join(format!("tls/{who}.pem")))?,
                    read_bytes(&dir.join(format!("tls/{who}.key")))?,
                ),
            );
        }
        let mut officers = HashMap::new();
        for who in OFFICERS {
            officers.insert(
                who.to_string(),
                seed_key(&dir.join(format!("officers/{who}.key")))?,
            );
        }
        let policy = Policy::from_toml(&read_bytes(&dir.join("policy.toml"))?)
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let btc_pk = setup
            .keys
            .get("btc-dev")
            .ok_or_else(|| BenchError::Config("no btc-dev key".into()))?;
        let btc_pk = bitcoin::CompressedPublicKey::from_slice(btc_pk).map_err(wl)?;
        let btc_hot = bitcoin::Address::from_str(BTC_HOT)
            .map_err(wl)?
            .require_network(bitcoin::Network::Testnet)
            .map_err(wl)?
            .script_pubkey();
        let sol_hot: [u8; 32] = bitcoin::base58::decode(SOL_HOT)
            .map_err(wl)?
            .try_into()
            .map_err(|_| wl("Solana hot wallet is not 32 bytes"))?;
        let sol_key: [u8; 32] = setup
            .keys
            .get("sol-dev")
            .ok_or_else(|| BenchError::Config("no sol-dev key".into()))?
            .as_slice()
            .try_into()
            .map_err(|_| wl("sol-dev key is not 32 bytes"))?;
        Ok(World {
            addr: format!("https://localhost:{}", setup.port),
            ca: read_bytes(&dir.join("tls/ca.pem"))?,
            identities,
            policy,
            requester: seed_key(&dir.join("requesters/ledger.key"))?,
            officers,
            keys: setup.keys.clone(),
            btc_own: bitcoin::ScriptBuf::new_p2wpkh(&btc_pk.wpubkey_hash()),
            btc_hot,
            sol_hot,
            sol_key,
        })
    }

    /// A TLS 1.3 channel with principal `who`'s client certificate (one handshake, reused).
    pub(crate) async fn channel(&self, who: &str) -> Result<Channel, BenchError> {
        let (cert, key) = self
            .identities
            .get(who)
            .ok_or_else(|| BenchError::Config(format!("no identity {who}")))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name("localhost");
        Channel::from_shared(self.addr.clone())
            .map_err(wl)?
            .tls_config(tls)
            .map_err(wl)?
            .connect()
            .await
            .map_err(|e| BenchError::Daemon(format!("connecting as {who}: {e}")))
    }

    /// The unsigned payload of withdrawal number `n` (unique nonce, outpoints or blockhash, so
    /// no replay guard refuses it).
    pub(crate) fn payload(&self, case: Case, n: u64) -> Result<Vec<u8>, BenchError> {
        match case {
            Case::Eth => Ok(eth_transfer(
                n,
                alloy_primitives::Address::from_str(ETH_HOT).map_err(wl)?,
            )),
            Case::Sol => {
                // Legacy message, one System Program transfer (wire format:
                // https://solana.com/docs/core/transactions); the blockhash carries `n`.
                let mut blockhash = [7u8; 32];
                blockhash[..8].copy_from_slice(&n.to_be_bytes());
                let mut m = vec![1u8, 0, 1, 3];
                m.extend_from_slice(&self.sol_key);
                m.extend_from_slice(&self.sol_hot);
                m.extend_from_slice(&[0u8; 32]);
                m.extend_from_slice(&blockhash);
                m.extend_from_slice(&[1, 2, 2, 0, 1, 12]);
                m.extend_from_slice(&2u32.to_le_bytes());
                m.extend_from_slice(&1u64.to_le_bytes());
                Ok(m)
            }
            Case::Btc(inputs) => {
                use bitcoin::{
                    Amount, OutPoint, Sequence, Transaction, TxIn, TxOut, Txid, Witness, absolute,
                    transaction,
                };
                let per_input = 1_000_000u64;
                let total = per_input
                    .checked_mul(u64::from(inputs))
                    .ok_or_else(|| wl("input total overflows"))?;
                let send = 500_000u64;
                let change = total
                    .checked_sub(send + 10_000)
                    .ok_or_else(|| wl("inputs do not cover the output and fee"))?;
                let tx = Transaction {
                    version: transaction::Version::TWO,
                    lock_time: absolute::LockTime::ZERO,
                    input: (0..inputs)
                        .map(|i| {
                            let mut txid = [0xb7u8; 32];
                            txid[..8].copy_from_slice(&n.to_be_bytes());
                            txid[8] = i;
                            TxIn {
                                previous_output: OutPoint {
                                    txid: Txid::from_byte_array(txid),
                                    vout: u32::from(i),
                                },
                                script_sig: bitcoin::ScriptBuf::new(),
                                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                                witness: Witness::new(),
                            }
                        })
                        .collect(),
                    output: vec![
                        TxOut {
                            value: Amount::from_sat(send),
                            script_pubkey: self.btc_hot.clone(),
                        },
                        TxOut {
                            value: Amount::from_sat(change),
                            script_pubkey: self.btc_own.clone(),
                        },
                    ],
                };
                let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx).map_err(wl)?;
                for input in &mut psbt.inputs {
                    input.witness_utxo = Some(TxOut {
                        value: Amount::from_sat(per_input),
                        script_pubkey: self.btc_own.clone(),
                    });
                }
                Ok(psbt.serialize())
            }
        }
    }

    /// The requester pipeline's submission of withdrawal `n`, signed with the requester key.
    pub(crate) fn submission(
        &self,
        case: Case,
        n: u64,
    ) -> Result<pb::SubmitWithdrawalRequest, BenchError> {
        self.signed_submission(case, format!("bench-{n}"), self.payload(case, n)?)
    }

    /// Ethereum withdrawal `n` to the hot wallet for the big state (its own idempotency keys,
    /// `state-N`, never those of a run's withdrawals).
    pub(crate) fn state_submission(
        &self,
        n: u64,
    ) -> Result<pb::SubmitWithdrawalRequest, BenchError> {
        let payload = eth_transfer(n, alloy_primitives::Address::from_str(ETH_HOT).map_err(wl)?);
        self.signed_submission(Case::Eth, format!("state-{n}"), payload)
    }

    fn signed_submission(
        &self,
        case: Case,
        idem: String,
        payload: Vec<u8>,
    ) -> Result<pb::SubmitWithdrawalRequest, BenchError> {
        let reference = format!("kinko-bench withdrawal {idem}");
        let sig = RequestToSign {
            requester_id: "ledger",
            key_name: case.key_name(),
            chain: case.chain(),
            idempotency_key: &idem,
            reference: &reference,
            payload: &payload,
        }
        .sign(&self.requester)
        .map_err(wl)?;
        let chain = match case.chain() {
            Chain::Ethereum => pb::Chain::Ethereum,
            Chain::Bitcoin => pb::Chain::Bitcoin,
            Chain::Solana => pb::Chain::Solana,
        };
        Ok(pb::SubmitWithdrawalRequest {
            key_name: case.key_name().into(),
            chain: chain as i32,
            payload,
            idempotency_key: idem,
            reference,
            requester_signature: sig.to_vec(),
        })
    }

    /// What an officer's client does with a fetched request: decode the raw payload locally
    /// with the public key printed at set-up, check the daemon shows that intent, and sign an
    /// approval over the digest computed here.
    pub(crate) fn approval(
        &self,
        case: Case,
        officer: &str,
        req: &pb::Request,
    ) -> Result<pb::SignedApproval, BenchError> {
        let network = Network::new(case.network()).map_err(wl)?;
        let public_key = self
            .keys
            .get(case.key_name())
            .ok_or_else(|| wl("unknown key"))?;
        let ctx = kinko_chain::DecodeContext {
            network: &network,
            public_key,
            tokens: self.policy.token_registry(),
        };
        let mine = kinko_chain::decode(case.chain(), &req.payload, &ctx).map_err(wl)?;
        let digest = mine.digest().map_err(wl)?;
        if digest.0.as_slice() != req.intent_digest.as_slice() {
            return Err(wl(format!(
                "request {}: the daemon's intent digest is not the one decoded here",
                req.request_id
            )));
        }
        let now = jiff::Timestamp::now().as_second();
        let msg = ApprovalMessage {
            policy_hash: self.policy.hash(),
            subject: Subject::Withdrawal {
                request_id: req.request_id.clone(),
                intent_digest: digest,
            },
            officer_id: officer.into(),
            verdict: Verdict::Approve,
            issued_at: now,
            expires_at: now.saturating_add(3600),
        };
        let key = self
            .officers
            .get(officer)
            .ok_or_else(|| wl(format!("no key for officer {officer}")))?;
        let signed = SignedApproval::sign(&msg, key).map_err(wl)?;
        Ok(pb::SignedApproval {
            request_id: req.request_id.clone(),
            officer_id: officer.into(),
            message: signed.message,
            signature: signed.signature.to_vec(),
        })
    }
}

/// One concurrent client: the requester pipeline and two officers, each on its own connection.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) ledger: WithdrawalServiceClient<Channel>,
    pub(crate) officers: [ApprovalServiceClient<Channel>; 2],
}

impl Client {
    pub(crate) async fn connect(world: &World) -> Result<Client, BenchError> {
        Ok(Client {
            ledger: WithdrawalServiceClient::new(world.channel("ledger").await?),
            officers: [
                ApprovalServiceClient::new(world.channel(OFFICERS[0]).await?),
                ApprovalServiceClient::new(world.channel(OFFICERS[1]).await?),
            ],
        })
    }
}

/// A gRPC failure, with kinkod's stable reason code when it sent one.
pub(crate) fn rpc(step: &'static str, s: tonic::Status) -> BenchError {
    let reason = s
        .metadata()
        .get("kinko-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    BenchError::Rpc {
        step,
        code: s.code(),
        message: format!("{reason} {}", s.message()),
    }
}

/// The state kinkod reports, checked.
pub(crate) fn expect_state(
    r: &pb::Request,
    want: pb::RequestState,
    step: &str,
) -> Result<(), BenchError> {
    if r.state == want as i32 {
        Ok(())
    } else {
        Err(wl(format!(
            "{step}: request {} is in state {} (expected {want:?}): {}",
            r.request_id, r.state, r.final_reason
        )))
    }
}
