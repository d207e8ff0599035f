//! The policy file's schema as serde structs (`deny_unknown_fields` everywhere). Each list entry
//! is deserialized on its own so that one bad entry does not hide the problems of the others;
//! the fields that need semantic checks keep their span so the check can name the line.

use serde::Deserialize;
use toml::Spanned;

/// `[[officers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOfficer {
    pub(crate) id: Spanned<String>,
    pub(crate) name: Spanned<String>,
    pub(crate) roles: Spanned<Vec<Spanned<String>>>,
    pub(crate) group: Spanned<String>,
    pub(crate) public_key: Option<Spanned<String>>,
    pub(crate) passkey: Option<Spanned<RawPasskey>>,
}

/// `passkey = { … }` of an officer: a WebAuthn ES256 credential.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPasskey {
    pub(crate) public_key: String,
    pub(crate) rp_id: String,
    pub(crate) origins: Vec<String>,
    pub(crate) credential_id: String,
}

/// `[[requesters]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequester {
    pub(crate) id: Spanned<String>,
    pub(crate) public_key: Spanned<String>,
    pub(crate) keys: Option<Vec<Spanned<String>>>,
}

/// `[[keys]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub(crate) name: Spanned<String>,
    pub(crate) chain: Spanned<String>,
    pub(crate) network: Spanned<String>,
    pub(crate) hsm_label: Spanned<String>,
    #[serde(default)]
    pub(crate) public_key: Option<Spanned<String>>,
}

/// `[[tokens]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawToken {
    pub(crate) chain: Spanned<String>,
    pub(crate) contract: Spanned<String>,
    pub(crate) symbol: Spanned<String>,
    pub(crate) decimals: Spanned<u8>,
}

/// `[[address_books]]` without its entries (deserialized one by one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBook {
    pub(crate) name: Spanned<String>,
    pub(crate) chain: Spanned<String>,
    pub(crate) cool_down: Spanned<String>,
}

/// `[[address_books.entries]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntry {
    pub(crate) address: Spanned<String>,
    pub(crate) label: Spanned<String>,
    pub(crate) added_at: Spanned<String>,
}

/// An approval quorum.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuorum {
    pub(crate) count: Spanned<u32>,
    pub(crate) roles: Spanned<Vec<Spanned<String>>>,
    pub(crate) distinct_groups: Option<Spanned<u32>>,
    pub(crate) lifetime: Spanned<String>,
    pub(crate) reject_blocks: Option<bool>,
}

/// A rule's time window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub(crate) zone: Spanned<String>,
    pub(crate) days: Spanned<Vec<Spanned<String>>>,
    pub(crate) from: Spanned<String>,
    pub(crate) until: Spanned<String>,
}

/// A rule's velocity limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVelocity {
    pub(crate) window: Spanned<String>,
    pub(crate) max_total: Option<Spanned<String>>,
    pub(crate) max_count: Option<Spanned<u64>>,
}

/// `[[rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    pub(crate) name: Spanned<String>,
    pub(crate) keys: Option<Vec<Spanned<String>>>,
    pub(crate) chain: Option<Spanned<String>>,
    pub(crate) asset: Option<Spanned<String>>,
    pub(crate) kinds: Option<Vec<Spanned<String>>>,
    pub(crate) destination_book: Option<Spanned<String>>,
    pub(crate) min_amount: Option<Spanned<String>>,
    pub(crate) max_amount: Option<Spanned<String>>,
    pub(crate) max_fee: Option<Spanned<String>>,
    pub(crate) max_fee_bps: Option<Spanned<u32>>,
    pub(crate) windows: Option<Vec<Spanned<RawWindow>>>,
    pub(crate) velocity: Option<Vec<Spanned<RawVelocity>>>,
    pub(crate) deny: Option<Spanned<String>>,
    pub(crate) approvals: Option<Spanned<RawQuorum>>,
    pub(crate) witnessed: Option<Spanned<bool>>,
}

/// `[governance.install]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstall {
    pub(crate) quorum: Spanned<RawQuorum>,
    pub(crate) time_lock: Spanned<String>,
    pub(crate) veto_roles: Option<Vec<Spanned<String>>>,
}

/// `[governance.freeze]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFreeze {
    pub(crate) roles: Spanned<Vec<Spanned<String>>>,
    pub(crate) lifetime: Spanned<String>,
}

/// `[governance.unfreeze]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUnfreeze {
    pub(crate) quorum: Spanned<RawQuorum>,
    pub(crate) delay: Spanned<String>,
}

/// `[governance]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGovernance {
    pub(crate) install: Spanned<RawInstall>,
    pub(crate) freeze: Spanned<RawFreeze>,
    pub(crate) unfreeze: Spanned<RawUnfreeze>,
}
