//! Loading a policy file: parse, check every entry, report every problem with its line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use ed25519_dalek::VerifyingKey;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kinko_intent::{Address, Amount, Chain, IntentKind, Network, TokenInfo, TokenRegistry};
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::error::{Diagnostic, Diagnostics, PolicyError};
use crate::model::{
    AddressBook, AssetId, BookEntry, FreezeGovernance, Governance, InstallGovernance, KeyEntry,
    Officer, Policy, PolicyHash, QuorumRequirement, Requester, Rule, RuleAction, TimeWindow,
    UnfreezeGovernance, VelocityLimit, normalize_address,
};
use crate::raw::{
    RawBook, RawEntry, RawGovernance, RawKey, RawOfficer, RawQuorum, RawRequester, RawRule,
    RawToken, RawVelocity, RawWindow,
};

/// The largest policy file accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 16 * 1024 * 1024;
/// The most officers a policy may list.
pub const MAX_OFFICERS: usize = 256;
/// The most requesters a policy may list.
pub const MAX_REQUESTERS: usize = 256;
/// The most signing keys a policy may list.
pub const MAX_KEYS: usize = 4096;
/// The most tokens a policy may list.
pub const MAX_TOKENS: usize = 4096;
/// The most address books a policy may list.
pub const MAX_BOOKS: usize = 256;
/// The most entries of one address book.
pub const MAX_BOOK_ENTRIES: usize = 100_000;
/// The most rules a policy may list.
pub const MAX_RULES: usize = 1024;
/// The most items in any small list (roles, keys of a rule, days, windows, velocity limits…).
pub const MAX_LIST: usize = 64;
/// The largest `max_fee_bps`: 10,000 basis points, a fee as large as the amount.
pub const MAX_FEE_BPS: u32 = 10_000;
/// The longest free-text field (names, labels, reasons), in bytes.
pub const MAX_TEXT: usize = 512;
/// The longest approval lifetime, time-lock, delay, cool-down or velocity window: 400 days.
pub const MAX_DURATION_SECS: i64 = 400 * 86_400;

/// Maps byte offsets to 1-based line and column numbers.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }
    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = text
            .get(start..offset)
            .map_or(1, |s| s.chars().count().saturating_add(1));
        (line, column)
    }
}

struct Loader<'t> {
    text: &'t str,
    lines: LineIndex,
    diags: Vec<(usize, Diagnostic)>,
    /// Names of keys and books declared in the file, valid or not, so that a reference to an
    /// entry that has its own error is not reported a second time.
    declared_keys: BTreeSet<String>,
    declared_books: BTreeSet<String>,
    /// Whether some officer entry was invalid (then quorum reachability is not judged, so one
    /// bad key is not also reported as every quorum it belongs to).
    officers_incomplete: bool,
}

impl<'t> Loader<'t> {
    fn err(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = self.lines.position(self.text, span.start);
        self.diags.push((
            span.start,
            Diagnostic {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(self.text, span.start).0
    }

    fn de<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>, what: &str) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(e) => {
                let at = e.span().unwrap_or(span);
                self.err(&at, format!("{what}: {}", e.message()));
                None
            }
        }
    }

    fn de_list<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        what: &str,
        max: usize,
    ) -> Vec<(Range<usize>, T)> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.err(
                &span,
                format!("`{what}` must be an array of tables ([[{what}]])"),
            );
            return Vec::new();
        };
        if items.len() > max {
            self.err(&span, format!("at most {max} `{what}` entries are allowed"));
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let s = item.span();
            if what == "keys"
                && let Some(n) = peek_name(&item)
            {
                self.declared_keys.insert(n);
            }
            if let Some(v) = self.de(item, what) {
                out.push((s, v));
            }
        }
        out
    }

    // ---- field checks -------------------------------------------------------------------

    fn id(&mut self, s: &Spanned<String>, what: &str) -> Option<String> {
        let v = s.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && v.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Some(v.clone())
        } else {
            self.err(
                &s.span(),
                format!(
                    "{what} {v:?} is not a valid identifier: 1 to 64 characters of [a-z0-9._-], \
                     starting with a letter or digit"
                ),
            );
            None
        }
    }

    fn text(&mut self, s: &Spanned<String>, what: &str) -> Option<String> {
        let v = s.get_ref();
        if v.trim().is_empty() || v.len() > MAX_TEXT || v.chars().any(char::is_control) {
            self.err(
                &s.span(),
                format!("{what} must be 1 to {MAX_TEXT} bytes of text without control characters"),
            );
            None
        } else {
            Some(v.clone())
        }
    }

    fn chain(&mut self, s: &Spanned<String>) -> Option<Chain> {
        match s.get_ref().parse::<Chain>() {
            Ok(c) => Some(c),
            Err(e) => {
                self.err(&s.span(), e);
                None
            }
        }
    }

    fn duration(
        &mut self,
        s: &Spanned<String>,
        what: &str,
        allow_zero: bool,
    ) -> Option<SignedDuration> {
        match s.get_ref().parse::<SignedDuration>() {
            Ok(d)
                if d.is_negative()
                    || (!allow_zero && d.is_zero())
                    || d.as_secs() > MAX_DURATION_SECS
                    || d.subsec_nanos() != 0 =>
            {
                self.err(
                    &s.span(),
                    format!(
                        "{what} {:?} must be {} whole seconds and at most 400 days",
                        s.get_ref(),
                        if allow_zero { "0 or more" } else { "1 or more" }
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    &s.span(),
                    format!(
                        "{what} {:?} is not a duration such as \"24h\" or \"90m\": {e}",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn public_key(&mut self, s: &Spanned<String>) -> Option<VerifyingKey> {
        let mut bytes = [0u8; 32];
        if hex::decode_to_slice(s.get_ref(), &mut bytes).is_err() {
            self.err(
                &s.span(),
                "public_key must be 64 hex characters (a 32-byte Ed25519 key)",
            );
            return None;
        }
        match VerifyingKey::from_bytes(&bytes) {
            Ok(k) if !k.is_weak() => Some(k),
            Ok(_) => {
                self.err(&s.span(), "public_key is a weak (small-order) Ed25519 key");
                None
            }
            Err(_) => {
                self.err(&s.span(), "public_key is not a valid Ed25519 point");
                None
            }
        }
    }

    fn passkey(
        &mut self,
        s: &Spanned<crate::raw::RawPasskey>,
    ) -> Option<crate::webauthn::PasskeyKey> {
        let p = s.get_ref();
        let mut ok = true;
        let public_key = match hex::decode(&p.public_key)
            .ok()
            .and_then(|b| crate::webauthn::PasskeyKey::parse_public_key(&b).ok())
        {
            Some(k) => Some(k),
            None => {
                self.err(
                    &s.span(),
                    "passkey.public_key must be a P-256 point in hex (65 bytes uncompressed, 04…, as the console shows it)",
                );
                None
            }
        };
        let rp_id_ok = !p.rp_id.is_empty()
            && p.rp_id.len() <= 253
            && p.rp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !rp_id_ok {
            self.err(
                &s.span(),
                "passkey.rp_id must be a host name (e.g. localhost)",
            );
            ok = false;
        }
        if p.origins.is_empty() || p.origins.len() > 8 {
            self.err(&s.span(), "passkey.origins: between 1 and 8 origins");
            ok = false;
        }
        for o in &p.origins {
            let fits = origin_parts(o).is_some_and(|(scheme, host)| {
                host == p.rp_id && (scheme == "https" || host == "localhost")
            });
            if !fits {
                self.err(
                    &s.span(),
                    format!(
                        "passkey origin {o:?} must be https://{}[:PORT] (or http://localhost:PORT for a console on the officer's own machine), with no path",
                        p.rp_id
                    ),
                );
                ok = false;
            }
        }
        let credential_id = base64url_decode(&p.credential_id);
        if credential_id
            .as_ref()
            .is_none_or(|c| c.is_empty() || c.len() > 1023)
        {
            self.err(
                &s.span(),
                "passkey.credential_id must be base64url (no padding), as the console shows it",
            );
            ok = false;
        }
        match (ok, public_key, credential_id) {
            (true, Some(public_key), Some(credential_id)) => Some(crate::webauthn::PasskeyKey {
                public_key,
                rp_id: p.rp_id.clone(),
                origins: p.origins.clone(),
                credential_id,
            }),
            _ => None,
        }
    }

    fn address(&mut self, chain: Chain, s: &Spanned<String>) -> Option<String> {
        let v = s.get_ref();
        let ok = Address::new(v.as_str()).is_ok()
            && match chain {
                Chain::Ethereum => {
                    v.len() == 42
                        && v.starts_with("0x")
                        && v.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
                }
                Chain::Bitcoin => {
                    (14..=90).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric())
                }
                Chain::Solana => {
                    (32..=44).contains(&v.len())
                        && v.bytes().all(|b| {
                            b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l')
                        })
                }
            };
        if ok {
            Some(normalize_address(chain, v))
        } else {
            let want = match chain {
                Chain::Ethereum => "0x followed by 40 hex digits",
                Chain::Bitcoin => "a base58 or bech32 address",
                Chain::Solana => "a base58 public key (32 to 44 characters)",
            };
            self.err(
                &s.span(),
                format!("{v:?} is not a valid {chain} address: expected {want}"),
            );
            None
        }
    }

    fn list_len<T>(
        &mut self,
        span: &Range<usize>,
        list: &[T],
        what: &str,
        non_empty: bool,
    ) -> bool {
        if list.len() > MAX_LIST {
            self.err(span, format!("{what}: at most {MAX_LIST} items"));
            false
        } else if non_empty && list.is_empty() {
            self.err(span, format!("{what} must not be empty"));
            false
        } else {
            true
        }
    }
}

/// Parses and validates a policy file. On failure, the error lists every problem found, each
/// with its line: TOML syntax errors first (all that the parser recovers from), otherwise schema
/// errors (one per malformed entry) and semantic errors (all of them).
pub(crate) fn load(bytes: &[u8]) -> Result<Policy, PolicyError> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge(bytes.len()));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(PolicyError::Invalid(Diagnostics(vec![Diagnostic {
                line,
                column: 1,
                message: "the policy file is not valid UTF-8".to_string(),
            }])));
        }
    };
    let mut l = Loader {
        text,
        lines: LineIndex::new(text),
        diags: Vec::new(),
        declared_keys: BTreeSet::new(),
        declared_books: BTreeSet::new(),
        officers_incomplete: false,
    };
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            l.err(&span, format!("TOML syntax: {}", e.message()));
        }
        return Err(finish(l));
    }
    let root_span = root.span();
    let root = root.into_inner();

    let mut version = None;
    let mut description = None;
    let mut raw_officers = Vec::new();
    let mut raw_requesters = Vec::new();
    let mut raw_keys = Vec::new();
    let mut raw_tokens = Vec::new();
    let mut raw_books = Vec::new();
    let mut raw_rules = Vec::new();
    let mut raw_gov = None;
    for (key, value) in root {
        let kspan = key.span();
        match key.get_ref().as_ref() {
            "version" => version = l.de::<Spanned<u32>>(value, "version"),
            "description" => description = l.de::<Spanned<String>>(value, "description"),
            "officers" => {
                let n = value.get_ref().as_array().map_or(0, |a| a.len());
                raw_officers = l.de_list::<RawOfficer>(value, "officers", MAX_OFFICERS);
                l.officers_incomplete |= raw_officers.len() != n;
            }
            "requesters" => {
                raw_requesters = l.de_list::<RawRequester>(value, "requesters", MAX_REQUESTERS)
            }
            "keys" => raw_keys = l.de_list::<RawKey>(value, "keys", MAX_KEYS),
            "tokens" => raw_tokens = l.de_list::<RawToken>(value, "tokens", MAX_TOKENS),
            "address_books" => raw_books = load_books_raw(&mut l, value),
            "rules" => raw_rules = l.de_list::<RawRule>(value, "rules", MAX_RULES),
            "governance" => raw_gov = l.de::<Spanned<RawGovernance>>(value, "governance"),
            other => l.err(
                &kspan,
                format!(
                    "unknown top-level key {other:?}: expected version, description, officers, \
                     requesters, keys, tokens, address_books, rules or governance"
                ),
            ),
        }
    }
    match &version {
        Some(v) if *v.get_ref() == 1 => {}
        Some(v) => l.err(
            &v.span(),
            "unsupported policy version: this Kinko reads `version = 1`",
        ),
        None => l.err(&(0..0), "missing `version = 1`"),
    }
    let description = description
        .and_then(|d| l.text(&d, "description"))
        .unwrap_or_default();

    let officers = check_officers(&mut l, raw_officers);
    let keys = check_keys(&mut l, raw_keys);
    let requesters = check_requesters(&mut l, raw_requesters, &officers, &keys);
    let (tokens, token_count, symbols) = check_tokens(&mut l, raw_tokens);
    let books = check_books(&mut l, raw_books);
    let rules = check_rules(&mut l, raw_rules, &officers, &keys, &symbols, &books);
    let governance = match raw_gov {
        Some(g) => check_governance(&mut l, g, &officers),
        None => {
            l.err(
                &(root_span.end..root_span.end),
                "missing [governance] section",
            );
            None
        }
    };
    if officers.is_empty() {
        l.err(&(0..0), "the policy lists no [[officers]]");
    }

    match governance {
        Some(governance) if l.diags.is_empty() => Ok(Policy {
            hash: PolicyHash::of_file(bytes),
            description,
            officers,
            requesters,
            keys,
            tokens,
            token_count,
            books,
            rules,
            governance,
        }),
        _ => Err(finish(l)),
    }
}

/// The `name` string of a table entry, if it has one.
fn peek_name(item: &Spanned<DeValue<'_>>) -> Option<String> {
    let DeValue::Table(t) = item.get_ref() else {
        return None;
    };
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == "name")
        .and_then(|(_, v)| v.get_ref().as_str().map(str::to_string))
}

fn finish(mut l: Loader<'_>) -> PolicyError {
    l.diags.sort_by_key(|(offset, _)| *offset);
    PolicyError::Invalid(Diagnostics(l.diags.into_iter().map(|(_, d)| d).collect()))
}

/// An address book header and its entries, each with its span.
type RawBookWithEntries = (Range<usize>, RawBook, Vec<(Range<usize>, RawEntry)>);

fn load_books_raw(l: &mut Loader<'_>, value: Spanned<DeValue<'_>>) -> Vec<RawBookWithEntries> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        l.err(
            &span,
            "`address_books` must be an array of tables ([[address_books]])",
        );
        return Vec::new();
    };
    if items.len() > MAX_BOOKS {
        l.err(
            &span,
            format!("at most {MAX_BOOKS} address books are allowed"),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for item in items {
        let ispan = item.span();
        if let Some(n) = peek_name(&item) {
            l.declared_books.insert(n);
        }
        let DeValue::Table(table) = item.into_inner() else {
            l.err(&ispan, "each address book must be a table");
            continue;
        };
        let mut entries = None;
        let mut rest = DeTable::new();
        for (k, v) in table {
            if k.get_ref().as_ref() == "entries" {
                entries = Some(v);
            } else {
                rest.insert(k, v);
            }
        }
        let book = l.de::<RawBook>(
            Spanned::new(ispan.clone(), DeValue::Table(rest)),
            "address_books",
        );
        let entries = match entries {
            Some(e) => l.de_list::<RawEntry>(e, "address_books.entries", MAX_BOOK_ENTRIES),
            None => Vec::new(),
        };
        if let Some(book) = book {
            out.push((ispan, book, entries));
        }
    }
    out
}

fn check_officers(
    l: &mut Loader<'_>,
    raw: Vec<(Range<usize>, RawOfficer)>,
) -> BTreeMap<String, Officer> {
    let mut out = BTreeMap::new();
    let mut keys_seen: HashMap<Vec<u8>, String> = HashMap::new();
    let before = l.diags.len();
    for (span, o) in raw {
        let id = l.id(&o.id, "officer id");
        let name = l.text(&o.name, "officer name");
        let group = l.id(&o.group, "officer group");
        let mut roles = Vec::new();
        if l.list_len(&o.roles.span(), o.roles.get_ref(), "officer roles", true) {
            for r in o.roles.get_ref() {
                if let Some(r) = l.id(r, "role") {
                    if roles.contains(&r) {
                        l.err(&o.roles.span(), format!("role {r:?} is listed twice"));
                    }
                    roles.push(r);
                }
            }
        }
        let (pk, passkey, key_span) = match (&o.public_key, &o.passkey) {
            (Some(k), None) => (l.public_key(k), None, k.span()),
            (None, Some(p)) => (None, l.passkey(p), p.span()),
            _ => {
                l.err(
                    &span,
                    "an officer needs exactly one of public_key (Ed25519, the CLI) and passkey (WebAuthn, the console)",
                );
                (None, None, span.clone())
            }
        };
        let key_bytes = pk.map(|k| k.to_bytes().to_vec()).or_else(|| {
            passkey
                .as_ref()
                .map(|p: &crate::webauthn::PasskeyKey| p.sec1())
        });
        if let Some(bytes) = key_bytes.clone()
            && let Some(other) = keys_seen.insert(bytes, o.id.get_ref().clone())
        {
            l.err(
                &key_span,
                format!("the key is already the key of {other:?}: every officer needs its own key"),
            );
        }
        if let Some(id) = &id
            && out.contains_key(id)
        {
            l.err(&o.id.span(), format!("officer id {id:?} is listed twice"));
            continue;
        }
        if let (Some(id), Some(name), Some(group), Some(_)) = (id, name, group, key_bytes) {
            let line = l.line(&span);
            out.insert(
                id.clone(),
                Officer {
                    id,
                    name,
                    roles,
                    group,
                    public_key: pk,
                    passkey,
                    line,
                },
            );
        }
    }
    if l.diags.len() > before {
        l.officers_incomplete = true;
    }
    out
}

fn check_keys(l: &mut Loader<'_>, raw: Vec<(Range<usize>, RawKey)>) -> BTreeMap<String, KeyEntry> {
    let mut out = BTreeMap::new();
    let mut labels = BTreeSet::new();
    for (span, k) in raw {
        let name = l.id(&k.name, "key name");
        if let Some(n) = &name {
            l.declared_keys.insert(n.clone());
        }
        let chain = l.chain(&k.chain);
        let network = match Network::new(k.network.get_ref().as_str()) {
            Ok(n) => Some(n),
            Err(e) => {
                l.err(&k.network.span(), e.to_string());
                None
            }
        };
        let label = l.text(&k.hsm_label, "hsm_label");
        if let Some(label) = &label
            && !labels.insert(label.clone())
        {
            l.err(
                &k.hsm_label.span(),
                format!("hsm_label {label:?} is used by two keys"),
            );
        }
        if let Some(n) = &name
            && out.contains_key(n)
        {
            l.err(&k.name.span(), format!("key name {n:?} is listed twice"));
            continue;
        }
        let public_key = match &k.public_key {
            None => None,
            Some(pk) => match (hex::decode(pk.get_ref()), chain) {
                (Ok(b), Some(Chain::Ethereum | Chain::Bitcoin))
                    if b.len() == 33 && (b[0] == 2 || b[0] == 3) =>
                {
                    Some(b)
                }
                (Ok(b), Some(Chain::Solana)) if b.len() == 32 => Some(b),
                _ => {
                    l.err(
                        &pk.span(),
                        "public_key must be hex: a 33-byte compressed secp256k1 key for ethereum and bitcoin, 32 bytes for solana",
                    );
                    None
                }
            },
        };
        if let (Some(name), Some(chain), Some(network), Some(hsm_label)) =
            (name, chain, network, label)
        {
            let line = l.line(&span);
            out.insert(
                name.clone(),
                KeyEntry {
                    name,
                    chain,
                    network,
                    hsm_label,
                    public_key,
                    line,
                },
            );
        }
    }
    out
}

fn check_requesters(
    l: &mut Loader<'_>,
    raw: Vec<(Range<usize>, RawRequester)>,
    officers: &BTreeMap<String, Officer>,
    keys: &BTreeMap<String, KeyEntry>,
) -> BTreeMap<String, Requester> {
    let mut out = BTreeMap::new();
    let officer_keys: HashMap<[u8; 32], &str> = officers
        .values()
        .filter_map(|o| o.public_key.map(|k| (k.to_bytes(), o.id.as_str())))
        .collect();
    let mut seen_keys = HashMap::new();
    for (span, r) in raw {
        let id = l.id(&r.id, "requester id");
        if let Some(id) = &id {
            if officers.contains_key(id) {
                l.err(&r.id.span(), format!("requester id {id:?} is also an officer id: a requester must never count as an approver"));
            }
            if out.contains_key(id) {
                l.err(&r.id.span(), format!("requester id {id:?} is listed twice"));
                continue;
            }
        }
        let pk = l.public_key(&r.public_key);
        if let Some(pk) = &pk {
            if let Some(o) = officer_keys.get(&pk.to_bytes()) {
                l.err(
                    &r.public_key.span(),
                    format!("public_key is also the key of officer {o:?}"),
                );
            }
            if let Some(o) = seen_keys.insert(pk.to_bytes(), r.id.get_ref().clone()) {
                l.err(
                    &r.public_key.span(),
                    format!("public_key is also the key of requester {o:?}"),
                );
            }
        }
        let mut allowed = None;
        if let Some(list) = &r.keys
            && l.list_len(&r.id.span(), list, "requester keys", true)
        {
            let mut v = Vec::new();
            for k in list {
                if keys.contains_key(k.get_ref()) {
                    v.push(k.get_ref().clone());
                } else if !l.declared_keys.contains(k.get_ref()) {
                    l.err(&k.span(), format!("unknown signing key {:?}", k.get_ref()));
                }
            }
            allowed = Some(v);
        }
        if let (Some(id), Some(public_key)) = (id, pk) {
            let line = l.line(&span);
            out.insert(
                id.clone(),
                Requester {
                    id,
                    public_key,
                    keys: allowed,
                    line,
                },
            );
        }
    }
    out
}

/// Token symbols by (chain, symbol) → contract and decimals.
type Symbols = BTreeMap<(Chain, String), (String, u8)>;

fn check_tokens(
    l: &mut Loader<'_>,
    raw: Vec<(Range<usize>, RawToken)>,
) -> (TokenRegistry, usize, Symbols) {
    let mut reg = TokenRegistry::new();
    let mut symbols: Symbols = BTreeMap::new();
    let mut contracts = BTreeSet::new();
    for (_, t) in raw {
        let Some(chain) = l.chain(&t.chain) else {
            continue;
        };
        let contract = l.address(chain, &t.contract);
        let sym = t.symbol.get_ref();
        let sym_ok = !sym.is_empty()
            && sym.len() <= 16
            && sym
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !sym_ok {
            l.err(
                &t.symbol.span(),
                "symbol must be 1 to 16 characters of [A-Za-z0-9._-]",
            );
        }
        if *t.decimals.get_ref() > 77 {
            l.err(&t.decimals.span(), "decimals must be at most 77");
        }
        let native = kinko_intent::native_asset(chain).display_symbol();
        if sym.eq_ignore_ascii_case(&native) {
            l.err(
                &t.symbol.span(),
                format!("symbol {sym:?} is the native asset of {chain}"),
            );
        }
        let Some(contract) = contract else { continue };
        if !contracts.insert((chain, contract.clone())) {
            l.err(
                &t.contract.span(),
                format!("token {contract} on {chain} is listed twice"),
            );
            continue;
        }
        if symbols.contains_key(&(chain, sym.clone())) {
            l.err(
                &t.symbol.span(),
                format!("symbol {sym:?} is used by two tokens on {chain}"),
            );
            continue;
        }
        if sym_ok {
            symbols.insert(
                (chain, sym.clone()),
                (contract.clone(), *t.decimals.get_ref()),
            );
            reg.insert(
                chain,
                &contract,
                TokenInfo {
                    symbol: sym.clone(),
                    decimals: *t.decimals.get_ref(),
                },
            );
        }
    }
    let count = symbols.len();
    (reg, count, symbols)
}

fn check_books(l: &mut Loader<'_>, raw: Vec<RawBookWithEntries>) -> BTreeMap<String, AddressBook> {
    let mut out = BTreeMap::new();
    for (span, b, entries) in raw {
        let name = l.id(&b.name, "address book name");
        if let Some(n) = &name {
            l.declared_books.insert(n.clone());
        }
        let chain = l.chain(&b.chain);
        let cool_down = l.duration(&b.cool_down, "cool_down", true);
        let mut map = HashMap::with_capacity(entries.len());
        if let Some(chain) = chain {
            for (espan, e) in entries {
                let addr = l.address(chain, &e.address);
                let label = l.text(&e.label, "label");
                let added_at = match e.added_at.get_ref().parse::<Timestamp>() {
                    Ok(t) => Some(t),
                    Err(err) => {
                        l.err(
                            &e.added_at.span(),
                            format!("added_at must be an RFC 3339 time such as \"2026-01-05T00:00:00Z\": {err}"),
                        );
                        None
                    }
                };
                let (Some(addr), Some(label), Some(added_at)) = (addr, label, added_at) else {
                    continue;
                };
                if map.contains_key(&addr) {
                    l.err(
                        &e.address.span(),
                        format!("{} is listed twice in this book", e.address.get_ref()),
                    );
                    continue;
                }
                let line = l.line(&espan);
                map.insert(
                    addr,
                    BookEntry {
                        address: e.address.get_ref().clone(),
                        label,
                        added_at,
                        line,
                    },
                );
            }
        }
        if let Some(n) = &name
            && out.contains_key(n)
        {
            l.err(
                &b.name.span(),
                format!("address book {n:?} is listed twice"),
            );
            continue;
        }
        if let (Some(name), Some(chain), Some(cool_down)) = (name, chain, cool_down) {
            let line = l.line(&span);
            out.insert(
                name.clone(),
                AddressBook {
                    name,
                    chain,
                    cool_down,
                    entries: map,
                    line,
                },
            );
        }
    }
    out
}

fn check_roles(
    l: &mut Loader<'_>,
    roles: &Spanned<Vec<Spanned<String>>>,
    officers: &BTreeMap<String, Officer>,
) -> Option<Vec<String>> {
    if !l.list_len(&roles.span(), roles.get_ref(), "roles", true) {
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for r in roles.get_ref() {
        if !officers.values().any(|o| o.roles.contains(r.get_ref())) {
            l.err(
                &r.span(),
                format!("no officer holds the role {:?}", r.get_ref()),
            );
            ok = false;
        } else {
            out.push(r.get_ref().clone());
        }
    }
    ok.then_some(out)
}

fn check_quorum(
    l: &mut Loader<'_>,
    q: &Spanned<RawQuorum>,
    officers: &BTreeMap<String, Officer>,
) -> Option<QuorumRequirement> {
    let span = q.span();
    let q = q.get_ref();
    let roles = check_roles(l, &q.roles, officers);
    let lifetime = l.duration(&q.lifetime, "lifetime", false);
    let count = *q.count.get_ref();
    let groups = q.distinct_groups.as_ref().map_or(0, |g| *g.get_ref());
    if count == 0 {
        l.err(&q.count.span(), "count must be at least 1");
    }
    if let (Some(g), true) = (&q.distinct_groups, groups > count) {
        l.err(
            &g.span(),
            format!("distinct_groups ({groups}) cannot exceed count ({count})"),
        );
    }
    let roles = roles?;
    let eligible: Vec<&Officer> = officers
        .values()
        .filter(|o| o.has_any_role(&roles))
        .collect();
    let eligible_groups: BTreeSet<&str> = eligible.iter().map(|o| o.group.as_str()).collect();
    if l.officers_incomplete {
        return None;
    }
    if usize::try_from(count).unwrap_or(usize::MAX) > eligible.len() {
        l.err(&q.count.span(), format!(
            "count {count} can never be reached: only {} officer(s) hold one of the roles {roles:?}",
            eligible.len()
        ));
        return None;
    }
    if usize::try_from(groups).unwrap_or(usize::MAX) > eligible_groups.len() {
        l.err(&span, format!(
            "distinct_groups {groups} can never be reached: officers with the roles {roles:?} are in {} group(s)",
            eligible_groups.len()
        ));
        return None;
    }
    if count == 0 || groups > count {
        return None;
    }
    Some(QuorumRequirement {
        count,
        roles,
        distinct_groups: groups,
        lifetime: lifetime?,
        reject_blocks: q.reject_blocks.unwrap_or(true),
    })
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn parse_clock(l: &mut Loader<'_>, s: &Spanned<String>, allow_24: bool) -> Option<Time> {
    let v = s.get_ref();
    if allow_24 && v == "24:00" {
        return Some(Time::MAX);
    }
    let b = v.as_bytes();
    let ok = b.len() == 5 && b.get(2) == Some(&b':');
    let hh = v.get(0..2).and_then(|h| h.parse::<i8>().ok());
    let mm = v.get(3..5).and_then(|m| m.parse::<i8>().ok());
    match (ok, hh, mm) {
        (true, Some(h), Some(m)) if (0..24).contains(&h) && (0..60).contains(&m) => {
            Time::new(h, m, 0, 0).ok()
        }
        _ => {
            l.err(
                &s.span(),
                format!(
                    "{v:?} is not a time of day \"HH:MM\" (00:00 to 23:59{})",
                    if allow_24 { ", or 24:00" } else { "" }
                ),
            );
            None
        }
    }
}

fn check_window(l: &mut Loader<'_>, w: &Spanned<RawWindow>) -> Option<TimeWindow> {
    let span = w.span();
    let w = w.get_ref();
    let zone = match TimeZone::get(w.zone.get_ref()) {
        Ok(z) => Some(z),
        Err(e) => {
            l.err(
                &w.zone.span(),
                format!("unknown time zone {:?}: {e}", w.zone.get_ref()),
            );
            None
        }
    };
    let mut days = Vec::new();
    if l.list_len(&w.days.span(), w.days.get_ref(), "days", true) {
        for d in w.days.get_ref() {
            match parse_weekday(d.get_ref()) {
                Some(wd) if days.contains(&wd) => {
                    l.err(&d.span(), format!("day {:?} is listed twice", d.get_ref()))
                }
                Some(wd) => days.push(wd),
                None => l.err(
                    &d.span(),
                    format!(
                        "{:?} is not a day: use mon, tue, wed, thu, fri, sat or sun",
                        d.get_ref()
                    ),
                ),
            }
        }
    }
    let from = parse_clock(l, &w.from, false);
    let until = parse_clock(l, &w.until, true);
    if let (Some(f), Some(u)) = (from, until)
        && f >= u
    {
        l.err(
            &span,
            "`from` must be earlier than `until` (write an overnight window as two windows)",
        );
        return None;
    }
    if days.is_empty() {
        return None;
    }
    Some(TimeWindow {
        zone_name: w.zone.get_ref().clone(),
        zone: zone?,
        days,
        from: from?,
        until: until?,
    })
}

fn check_rules(
    l: &mut Loader<'_>,
    raw: Vec<(Range<usize>, RawRule)>,
    officers: &BTreeMap<String, Officer>,
    keys: &BTreeMap<String, KeyEntry>,
    symbols: &Symbols,
    books: &BTreeMap<String, AddressBook>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (index, (span, r)) in raw.into_iter().enumerate() {
        let mut ok = true;
        let name = l.id(&r.name, "rule name");
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            l.err(&r.name.span(), format!("rule name {n:?} is used twice"));
            ok = false;
        }
        let chain = match &r.chain {
            Some(c) => match l.chain(c) {
                Some(c) => Some(c),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let mut rule_keys = None;
        if let Some(list) = &r.keys {
            if l.list_len(&r.name.span(), list, "keys", true) {
                let mut v = Vec::new();
                for k in list {
                    match keys.get(k.get_ref()) {
                        None => {
                            if !l.declared_keys.contains(k.get_ref()) {
                                l.err(&k.span(), format!("unknown signing key {:?}", k.get_ref()));
                            }
                            ok = false;
                        }
                        Some(key) if chain.is_some_and(|c| c != key.chain) => {
                            l.err(
                                &k.span(),
                                format!(
                                    "key {:?} is a {} key but the rule is for chain {}",
                                    k.get_ref(),
                                    key.chain,
                                    chain.map_or("", |c| c.as_str())
                                ),
                            );
                            ok = false;
                        }
                        Some(_) => v.push(k.get_ref().clone()),
                    }
                }
                rule_keys = Some(v);
            } else {
                ok = false;
            }
        }
        let asset = match &r.asset {
            None => None,
            Some(a) => match chain {
                None => {
                    l.err(
                        &a.span(),
                        "`asset` needs `chain` in the same rule (symbols are per chain)",
                    );
                    ok = false;
                    None
                }
                Some(c) => {
                    let native = kinko_intent::native_asset(c);
                    if a.get_ref() == &native.display_symbol() {
                        Some((
                            AssetId::Native(c),
                            a.get_ref().clone(),
                            native.decimals().unwrap_or(0),
                        ))
                    } else if let Some((contract, dec)) = symbols.get(&(c, a.get_ref().clone())) {
                        Some((
                            AssetId::Token(c, contract.clone()),
                            a.get_ref().clone(),
                            *dec,
                        ))
                    } else {
                        l.err(&a.span(), format!("unknown asset {:?} on {c}: use the native symbol or a symbol from [[tokens]]", a.get_ref()));
                        ok = false;
                        None
                    }
                }
            },
        };
        let mut kinds = None;
        if let Some(list) = &r.kinds {
            if l.list_len(&r.name.span(), list, "kinds", true) {
                let mut v = Vec::new();
                for k in list {
                    let kind = match k.get_ref().as_str() {
                        "transfer" => Some(IntentKind::Transfer),
                        "token_transfer" => Some(IntentKind::TokenTransfer),
                        "token_approve" => Some(IntentKind::TokenApprove),
                        "contract_call" => Some(IntentKind::ContractCall),
                        "safe_delegate_call" => Some(IntentKind::SafeDelegateCall),
                        "safe_self_call" => Some(IntentKind::SafeSelfCall),
                        _ => None,
                    };
                    match kind {
                        Some(kd) => v.push(kd),
                        None => {
                            l.err(&k.span(), format!("unknown intent kind {:?}: expected transfer, token_transfer, token_approve, contract_call, safe_delegate_call or safe_self_call", k.get_ref()));
                            ok = false;
                        }
                    }
                }
                kinds = Some(v);
            } else {
                ok = false;
            }
        }
        let destination_book = match &r.destination_book {
            None => None,
            Some(b) => match books.get(b.get_ref()) {
                None => {
                    if !l.declared_books.contains(b.get_ref()) {
                        l.err(&b.span(), format!("unknown address book {:?}", b.get_ref()));
                    }
                    ok = false;
                    None
                }
                Some(book) if chain.is_some_and(|c| c != book.chain) => {
                    l.err(
                        &b.span(),
                        format!(
                            "address book {:?} is for {} but the rule is for another chain",
                            b.get_ref(),
                            book.chain
                        ),
                    );
                    ok = false;
                    None
                }
                Some(book) => Some(book.name.clone()),
            },
        };
        let mut amount = |l: &mut Loader<'_>,
                          s: &Option<Spanned<String>>,
                          what: &str|
         -> Option<Amount> {
            let s = s.as_ref()?;
            let Some((_, sym, dec)) = &asset else {
                l.err(&s.span(), format!("`{what}` needs `asset` in the same rule (amounts are in whole units of the asset)"));
                ok = false;
                return None;
            };
            match Amount::parse_units(s.get_ref(), *dec) {
                Ok(a) => Some(a),
                Err(e) => {
                    l.err(&s.span(), format!("{what}: {e} ({sym} has {dec} decimals)"));
                    ok = false;
                    None
                }
            }
        };
        let min_amount = amount(l, &r.min_amount, "min_amount");
        let max_amount = amount(l, &r.max_amount, "max_amount");
        if let (Some(lo), Some(hi), Some(s)) = (min_amount, max_amount, &r.min_amount)
            && lo > hi
        {
            l.err(
                &s.span(),
                "min_amount is larger than max_amount: the rule can never match",
            );
            ok = false;
        }
        let max_fee = match (&r.max_fee, chain) {
            (None, _) => None,
            (Some(s), None) => {
                l.err(
                    &s.span(),
                    "`max_fee` needs `chain` in the same rule (the fee is in whole units of the chain's native asset)",
                );
                ok = false;
                None
            }
            (Some(s), Some(c)) => {
                let native = kinko_intent::native_asset(c);
                let dec = native.decimals().unwrap_or(0);
                match Amount::parse_units(s.get_ref(), dec) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        l.err(
                            &s.span(),
                            format!(
                                "max_fee: {e} (the fee is in {}, which has {dec} decimals)",
                                native.display_symbol()
                            ),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let witnessed = match &r.witnessed {
            None => false,
            Some(w) if *w.get_ref() && r.deny.is_some() => {
                l.err(
                    &w.span(),
                    "`witnessed` holds back a signature until witnesses cosign; a deny rule signs nothing",
                );
                ok = false;
                false
            }
            Some(w) => *w.get_ref(),
        };
        let max_fee_bps = match &r.max_fee_bps {
            None => None,
            Some(b) if *b.get_ref() > MAX_FEE_BPS => {
                l.err(
                    &b.span(),
                    format!("max_fee_bps: at most {MAX_FEE_BPS} (100 % of the amount)"),
                );
                ok = false;
                None
            }
            Some(b) if !matches!(&asset, Some((AssetId::Native(_), _, _))) => {
                l.err(
                    &b.span(),
                    "`max_fee_bps` compares the fee with the amount, so it needs `asset` to be the chain's native asset (the fee's own asset); a token rule caps its fee with `max_fee` alone",
                );
                ok = false;
                None
            }
            Some(b) => Some(*b.get_ref()),
        };
        if r.approvals.is_some() && r.max_fee.is_none() {
            l.err(
                &r.name.span(),
                "a rule that allows signing needs `max_fee` (with `chain`): the most the transaction may pay in fees, in whole units of the chain's native asset",
            );
            ok = false;
        }
        let mut windows = Vec::new();
        if let Some(ws) = &r.windows {
            if ws.len() > MAX_LIST {
                l.err(&r.name.span(), format!("windows: at most {MAX_LIST}"));
                ok = false;
            }
            for w in ws {
                match check_window(l, w) {
                    Some(w) => windows.push(w),
                    None => ok = false,
                }
            }
        }
        let mut velocity = Vec::new();
        if let Some(vs) = &r.velocity {
            if vs.len() > MAX_LIST {
                l.err(&r.name.span(), format!("velocity: at most {MAX_LIST}"));
                ok = false;
            }
            for v in vs {
                match check_velocity(l, v, asset.as_ref().map(|(_, s, d)| (s.as_str(), *d))) {
                    Some(v) => velocity.push(v),
                    None => ok = false,
                }
            }
        }
        let action = match (&r.deny, &r.approvals) {
            (Some(reason), None) => l.text(reason, "deny reason").map(RuleAction::Deny),
            (None, Some(q)) => check_quorum(l, q, officers).map(RuleAction::RequireApprovals),
            (Some(d), Some(_)) => {
                l.err(
                    &d.span(),
                    "a rule has either `deny = \"reason\"` or `approvals = {…}`, not both",
                );
                None
            }
            (None, None) => {
                l.err(&r.name.span(), "the rule needs an action: `deny = \"reason\"` or `approvals = { count = …, roles = […], lifetime = \"…\" }`");
                None
            }
        };
        if let (true, Some(name), Some(action)) = (ok, name, action) {
            out.push(Rule {
                name,
                index,
                line: l.line(&span),
                keys: rule_keys,
                chain,
                asset,
                kinds,
                destination_book,
                min_amount,
                max_amount,
                max_fee,
                max_fee_bps,
                windows,
                velocity,
                action,
                witnessed,
            });
        }
    }
    out
}

fn check_velocity(
    l: &mut Loader<'_>,
    v: &Spanned<RawVelocity>,
    asset: Option<(&str, u8)>,
) -> Option<VelocityLimit> {
    let span = v.span();
    let v = v.get_ref();
    let window = l.duration(&v.window, "velocity window", false);
    let max_total = match (&v.max_total, asset) {
        (None, _) => None,
        (Some(s), None) => {
            l.err(&s.span(), "`max_total` needs `asset` in the same rule (amounts are in whole units of the asset)");
            return None;
        }
        (Some(s), Some((sym, dec))) => match Amount::parse_units(s.get_ref(), dec) {
            Ok(a) => Some(a),
            Err(e) => {
                l.err(
                    &s.span(),
                    format!("max_total: {e} ({sym} has {dec} decimals)"),
                );
                return None;
            }
        },
    };
    let max_count = v.max_count.as_ref().map(|c| *c.get_ref());
    if max_total.is_none() && max_count.is_none() {
        l.err(
            &span,
            "a velocity limit needs `max_total`, `max_count` or both",
        );
        return None;
    }
    Some(VelocityLimit {
        window: window?,
        max_total,
        max_count,
    })
}

fn check_governance(
    l: &mut Loader<'_>,
    g: Spanned<RawGovernance>,
    officers: &BTreeMap<String, Officer>,
) -> Option<Governance> {
    let g = g.into_inner();
    let install = g.install.get_ref();
    let iq = check_quorum(l, &install.quorum, officers);
    let time_lock = l.duration(&install.time_lock, "time_lock", true);
    let mut veto_roles = Vec::new();
    if let Some(vr) = &install.veto_roles {
        for r in vr {
            if officers.values().any(|o| o.roles.contains(r.get_ref())) {
                veto_roles.push(r.get_ref().clone());
            } else if !l.officers_incomplete {
                l.err(
                    &r.span(),
                    format!("no officer holds the role {:?}", r.get_ref()),
                );
            }
        }
    }
    let freeze = g.freeze.get_ref();
    let froles = check_roles(l, &freeze.roles, officers);
    let flife = l.duration(&freeze.lifetime, "lifetime", false);
    let unfreeze = g.unfreeze.get_ref();
    let uq = check_quorum(l, &unfreeze.quorum, officers);
    let delay = l.duration(&unfreeze.delay, "delay", true);
    Some(Governance {
        install: InstallGovernance {
            quorum: iq?,
            time_lock: time_lock?,
            veto_roles,
        },
        freeze: FreezeGovernance {
            roles: froles?,
            lifetime: flife?,
        },
        unfreeze: UnfreezeGovernance {
            quorum: uq?,
            delay: delay?,
        },
    })
}

/// `scheme://host[:port]` (no path, no user) → (scheme, host).
fn origin_parts(origin: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (port_ok && !host.is_empty() && !host.contains(['/', '@', '?', '#'])).then_some((scheme, host))
}

/// Base64url without padding, decoded (`None` if malformed).
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&full[..chunk.len() - 1]);
    }
    // Canonical: re-encoding gives the same text (no stray low bits).
    (crate::webauthn::base64url(&out) == s).then_some(out)
}
