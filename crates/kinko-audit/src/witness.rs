//! The core of a witness ([C2SP tlog-witness] `add-checkpoint`), pure: parsing a request body
//! and deciding, from the witness's record of the latest checkpoint it cosigned for the log,
//! whether to cosign — with the HTTP status the spec gives each refusal. The service around it
//! (HTTP, its own durable state, the cosigning key) persists the new checkpoint atomically with
//! this check before it answers.
//!
//! A request body is `old <size>\n`, at most 63 consistency-proof lines (one base64 hash each),
//! an empty line, then the signed checkpoint.
//!
//! [C2SP tlog-witness]: https://c2sp.org/tlog-witness

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::merkle::{HASH_LEN, Hash, empty_root, hashes_equal, verify_consistency};
use crate::note::{Checkpoint, MAX_NOTE_LEN, VerifierKey, open_note, split_note};

/// The most consistency-proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body accepted: the size line, a full proof and a checkpoint note.
pub const MAX_BODY_LEN: usize = 64 + MAX_PROOF_LINES * 46 + MAX_NOTE_LEN;

/// A parsed `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size of the checkpoint the client believes the witness cosigned last.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint.
    pub note: &'a str,
}

/// Why the witness does not cosign, with the status the spec assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body is malformed, or `old` is larger than the checkpoint's size.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the checkpoint's origin is not a log this witness knows.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no valid signature by a key trusted for the origin.
    #[error("no valid signature by the log's key: {0}")]
    Forbidden(String),
    /// 409: `old` is not the size of the latest checkpoint cosigned for this log.
    #[error("the latest checkpoint cosigned for this log has size {latest}")]
    Conflict {
        /// That size (0 if none was cosigned).
        latest: u64,
    },
    /// 422: the checkpoint is not consistent with the latest one cosigned (a bad proof, a
    /// different root at the same size, a non-empty proof from size 0, a size-0 checkpoint
    /// whose root is not the empty tree's).
    #[error("not consistent: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Unprocessable(_) => 422,
        }
    }

    /// The response body and its content type: for 409 the latest size and a newline
    /// (`text/x.tlog.size`), otherwise the reason as plain text.
    pub fn body(&self) -> (String, &'static str) {
        match self {
            Refusal::Conflict { latest } => (format!("{latest}\n"), "text/x.tlog.size"),
            other => (format!("{other}\n"), "text/plain; charset=utf-8"),
        }
    }
}

fn bad(why: impl Into<String>) -> Refusal {
    Refusal::BadRequest(why.into())
}

/// Parses an `add-checkpoint` request body.
pub fn parse_add_checkpoint(body: &[u8]) -> Result<AddCheckpoint<'_>, Refusal> {
    if body.len() > MAX_BODY_LEN {
        return Err(bad("request body too long"));
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("request body is not UTF-8"))?;
    let (first, mut rest) = text
        .split_once('\n')
        .ok_or_else(|| bad("no old size line"))?;
    let digits = first
        .strip_prefix("old ")
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(bad("the old size must be a decimal with no leading zeroes"));
    }
    let old: u64 = digits
        .parse()
        .map_err(|_| bad("the old size is out of range"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let raw = B64
            .decode(line)
            .map_err(|_| bad("a proof line is not base64"))?;
        let hash: Hash = raw
            .try_into()
            .map_err(|_| bad(format!("a proof line is not a {HASH_LEN}-byte hash")))?;
        proof.push(hash);
    }
    Ok(AddCheckpoint {
        old,
        proof,
        note: rest,
    })
}

/// A log the witness knows: its origin and the key its checkpoints are signed with.
#[derive(Debug, Clone)]
pub struct KnownLog {
    /// The checkpoint origin line.
    pub origin: String,
    /// The log's verifier key.
    pub key: VerifierKey,
}

/// Decides a request against the known logs and, for the checkpoint's log, the latest
/// checkpoint this witness cosigned (`latest`: size and root; `None` if it never cosigned
/// one). Returns the checkpoint to cosign — the caller persists it as the new latest, in the
/// same transaction as it read `latest` — or the refusal.
pub fn check<'a>(
    req: &AddCheckpoint<'_>,
    logs: &'a [KnownLog],
    latest: impl FnOnce(&'a KnownLog) -> Option<(u64, Hash)>,
) -> Result<Checkpoint, Refusal> {
    let (text, _) = split_note(req.note).map_err(|e| bad(format!("checkpoint: {e}")))?;
    let cp = Checkpoint::parse_text(text).map_err(|e| bad(format!("checkpoint: {e}")))?;
    let log = logs
        .iter()
        .find(|l| l.origin == cp.origin)
        .ok_or_else(|| Refusal::UnknownOrigin(cp.origin.clone()))?;
    open_note(req.note, &log.key).map_err(|e| match e {
        Error::NoteUnsigned { .. } | Error::NoteBadSignature { .. } => {
            Refusal::Forbidden(e.to_string())
        }
        other => bad(format!("checkpoint: {other}")),
    })?;
    if req.old > cp.size {
        return Err(bad(format!(
            "old size {} is larger than the checkpoint's {}",
            req.old, cp.size
        )));
    }
    let (latest_size, latest_root) = latest(log).unwrap_or((0, empty_root()));
    if req.old != latest_size {
        return Err(Refusal::Conflict {
            latest: latest_size,
        });
    }
    if cp.size == 0 && !hashes_equal(&cp.root, &empty_root()) {
        return Err(Refusal::Unprocessable(
            "a checkpoint of size 0 must have the empty tree's root".into(),
        ));
    }
    if req.old == 0 {
        if !req.proof.is_empty() {
            return Err(Refusal::Unprocessable(
                "a proof from size 0 must be empty".into(),
            ));
        }
        return Ok(cp);
    }
    verify_consistency(req.old, cp.size, &latest_root, &cp.root, &req.proof)
        .map_err(|e| Refusal::Unprocessable(e.to_string()))?;
    Ok(cp)
}

#[cfg(test)]
#[path = "witness_tests.rs"]
mod tests;
