//! Witness policies in the [C2SP tlog-policy] format: which logs, which witnesses (with their
//! cosigner keys and, for the log, their `add-checkpoint` URLs), and the quorum of cosignatures
//! a checkpoint needs to count as witnessed.
//!
//! ```text
//! log kinko.example/log+1234abcd+AQ...           # optional: the logs this policy accepts
//! witness jvcea  jvcea.example/w+5678ef01+BA...  https://witness.jvcea.example/
//! witness peer-a peer-a.example/w+0a0b0c0d+BA... https://w.peer-a.example/
//! witness auditor auditor.example/w+11223344+BA...
//! group industry any jvcea peer-a
//! group both all industry auditor
//! quorum both
//! ```
//!
//! Groups are `all`, `any` or `k` of their members (witnesses or earlier groups); the quorum
//! names a witness, a group, or `none`. Names are defined before use, each at most once, and a
//! member appears at most once in a group. Two witnesses (or two logs) with the same public key
//! are refused.
//!
//! [C2SP tlog-policy]: https://c2sp.org/tlog-policy

use std::collections::HashMap;

use crate::Error;
use crate::cosignature::CosignerKey;
use crate::note::{Checkpoint, VerifierKey, open_note, split_note};

/// The most logs, witnesses and groups a policy may define (each).
pub const MAX_ENTRIES: usize = 64;

/// The largest policy file accepted.
pub const MAX_POLICY_LEN: usize = 64 * 1024;

/// A witness of the policy.
#[derive(Debug, Clone)]
pub struct Witness {
    /// Its name in the policy.
    pub name: String,
    /// Its cosigner key.
    pub key: CosignerKey,
    /// Its `add-checkpoint` URL prefix, if the policy gives one.
    pub url: Option<String>,
}

/// A log of the policy.
#[derive(Debug, Clone)]
pub struct Log {
    /// Its checkpoint key (the key name is the log's origin).
    pub key: VerifierKey,
    /// Its URL, if given.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone)]
struct Group {
    threshold: usize,
    members: Vec<Member>,
}

/// A parsed witness policy.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    logs: Vec<Log>,
    witnesses: Vec<Witness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
}

fn err(line: usize, why: impl std::fmt::Display) -> Error {
    Error::WitnessPolicy(format!("line {line}: {why}"))
}

impl WitnessPolicy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_POLICY_LEN {
            return Err(Error::WitnessPolicy("policy file too long".into()));
        }
        if text
            .bytes()
            .any(|b| b < 0x20 && b != b'\t' && b != b'\n' || b == 0x7f)
        {
            return Err(Error::WitnessPolicy(
                "control characters other than tab and newline".into(),
            ));
        }
        let mut p = WitnessPolicy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: None,
        };
        let mut names: HashMap<String, Member> = HashMap::new();
        let mut quorum_seen = false;
        for (i, raw) in text.split('\n').enumerate() {
            let n = i + 1;
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some((&kw, args)) = words.split_first() else {
                continue;
            };
            if kw.starts_with('#') {
                continue;
            }
            match kw {
                "log" => {
                    let (vkey, url) = match args {
                        [k] => (*k, None),
                        [k, u] => (*k, Some(u.to_string())),
                        _ => return Err(err(n, "expected `log <vkey> [<url>]`")),
                    };
                    let key = VerifierKey::parse(vkey).map_err(|e| err(n, e))?;
                    if p.logs
                        .iter()
                        .any(|l| l.key.public_key() == key.public_key())
                    {
                        return Err(err(n, "duplicate log key"));
                    }
                    if p.logs.len() == MAX_ENTRIES {
                        return Err(err(n, "too many logs"));
                    }
                    p.logs.push(Log { key, url });
                }
                "witness" => {
                    let (name, vkey, url) = match args {
                        [a, k] => (*a, *k, None),
                        [a, k, u] => (*a, *k, Some(u.to_string())),
                        _ => return Err(err(n, "expected `witness <name> <vkey> [<url>]`")),
                    };
                    define(&names, name, n)?;
                    let key = CosignerKey::parse(vkey).map_err(|e| err(n, e))?;
                    if p.witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(err(n, "duplicate witness key"));
                    }
                    if p.witnesses.len() == MAX_ENTRIES {
                        return Err(err(n, "too many witnesses"));
                    }
                    names.insert(name.to_string(), Member::Witness(p.witnesses.len()));
                    p.witnesses.push(Witness {
                        name: name.to_string(),
                        key,
                        url,
                    });
                }
                "group" => {
                    let [name, threshold, members @ ..] = args else {
                        return Err(err(n, "expected `group <name> <all|any|k> <name>...`"));
                    };
                    define(&names, name, n)?;
                    if members.is_empty() {
                        return Err(err(n, "a group needs at least one member"));
                    }
                    let mut list = Vec::with_capacity(members.len());
                    for m in members {
                        let member = *names
                            .get(*m)
                            .ok_or_else(|| err(n, format!("{m:?} is not defined above")))?;
                        if list.contains(&member) {
                            return Err(err(n, format!("{m:?} is listed twice")));
                        }
                        list.push(member);
                    }
                    let k = match *threshold {
                        "all" => list.len(),
                        "any" => 1,
                        digits => {
                            if digits.starts_with('0')
                                || !digits.bytes().all(|b| b.is_ascii_digit())
                            {
                                return Err(err(n, "the threshold must be all, any or a decimal"));
                            }
                            let k: usize = digits
                                .parse()
                                .map_err(|_| err(n, "threshold out of range"))?;
                            if k == 0 || k > list.len() {
                                return Err(err(
                                    n,
                                    "the threshold must be between 1 and the member count",
                                ));
                            }
                            k
                        }
                    };
                    if p.groups.len() == MAX_ENTRIES {
                        return Err(err(n, "too many groups"));
                    }
                    names.insert(name.to_string(), Member::Group(p.groups.len()));
                    p.groups.push(Group {
                        threshold: k,
                        members: list,
                    });
                }
                "quorum" => {
                    let [name] = args else {
                        return Err(err(n, "expected `quorum <name>`"));
                    };
                    if quorum_seen {
                        return Err(err(n, "a second quorum line"));
                    }
                    quorum_seen = true;
                    p.quorum = if *name == "none" {
                        None
                    } else {
                        Some(
                            *names
                                .get(*name)
                                .ok_or_else(|| err(n, format!("{name:?} is not defined above")))?,
                        )
                    };
                }
                other => return Err(err(n, format!("unknown keyword {other:?}"))),
            }
        }
        if !quorum_seen {
            return Err(Error::WitnessPolicy("no quorum line".into()));
        }
        Ok(p)
    }

    /// The logs the policy names (may be empty: the log is then known from context).
    pub fn logs(&self) -> &[Log] {
        &self.logs
    }

    /// The witnesses, in the order of the file.
    pub fn witnesses(&self) -> &[Witness] {
        &self.witnesses
    }

    /// Whether the policy requires no cosignature at all (`quorum none`).
    pub fn requires_nothing(&self) -> bool {
        self.quorum.is_none()
    }

    /// Whether the witnesses at the indices for which `cosigned` holds meet the quorum.
    pub fn quorum_met(&self, cosigned: impl Fn(usize) -> bool) -> bool {
        fn met(p: &WitnessPolicy, m: Member, cosigned: &dyn Fn(usize) -> bool) -> bool {
            match m {
                Member::Witness(i) => cosigned(i),
                Member::Group(g) => p.groups.get(g).is_some_and(|g| {
                    g.members.iter().filter(|m| met(p, **m, cosigned)).count() >= g.threshold
                }),
            }
        }
        self.quorum.is_none_or(|q| met(self, q, &cosigned))
    }

    /// The indices of the witnesses with a valid cosignature on the signed checkpoint `note`
    /// (a cosignature line of a policy witness that does not verify counts as none).
    pub fn cosigners(&self, note: &str) -> Vec<usize> {
        self.witnesses
            .iter()
            .enumerate()
            .filter(|(_, w)| w.key.verify_note(note).is_ok())
            .map(|(i, _)| i)
            .collect()
    }

    /// Verifies a signed checkpoint under the policy: signed by `log_key` (which must be one
    /// of the policy's logs, if it names any) and cosigned by a quorum of its witnesses.
    pub fn verify(&self, note: &str, log_key: &VerifierKey) -> Result<Checkpoint, Error> {
        if !self.logs.is_empty()
            && !self
                .logs
                .iter()
                .any(|l| l.key.to_string() == log_key.to_string())
        {
            return Err(Error::WitnessPolicy(format!(
                "the log key {log_key} is not one of the policy's logs"
            )));
        }
        let text = open_note(note, log_key)?;
        let cp = Checkpoint::parse_text(text)?;
        // A malformed note (one that does not split) was refused by `open_note` above.
        let _ = split_note(note)?;
        let signed = self.cosigners(note);
        if !self.quorum_met(|i| signed.contains(&i)) {
            let names: Vec<&str> = signed
                .iter()
                .filter_map(|i| self.witnesses.get(*i).map(|w| w.name.as_str()))
                .collect();
            return Err(Error::WitnessQuorum {
                size: cp.size,
                cosigned: if names.is_empty() {
                    "no witness".into()
                } else {
                    names.join(", ")
                },
            });
        }
        Ok(cp)
    }
}

fn define(names: &HashMap<String, Member>, name: &str, line: usize) -> Result<(), Error> {
    if name == "none" {
        return Err(err(line, "`none` is reserved"));
    }
    if names.contains_key(name) {
        return Err(err(line, format!("{name:?} is defined twice")));
    }
    Ok(())
}

#[cfg(test)]
#[path = "tlog_policy_tests.rs"]
mod tests;
