//! The witness's configuration file (`witness.toml`) and key file.
//!
//! ```toml
//! name = "witness.example.org/kinko"   # the cosigner name in its key and cosignatures
//! listen = "0.0.0.0:7380"              # where POST /add-checkpoint is served
//! key_file = "witness.key"             # the Ed25519 seed, 64 hex digits, mode 0600
//! state = "witness.db"                 # SQLite: the latest checkpoint cosigned per log
//!
//! [[logs]]                             # every log this witness cosigns for
//! vkey = "kinko.example.org/log+8f3a1c2d+AQ..."   # its checkpoint key; origin = the key name
//! ```
//!
//! Relative paths are relative to the configuration file's directory.

use std::path::{Path, PathBuf};

use kinko_audit::note::{SoftwareSigner, VerifierKey};
use kinko_audit::witness::KnownLog;
use zeroize::Zeroizing;

/// A log the witness cosigns for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The log's checkpoint verifier key (`name+id+base64`).
    pub vkey: String,
    /// The checkpoint origin, if it is not the key name.
    #[serde(default)]
    pub origin: Option<String>,
}

/// `witness.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The cosigner name.
    pub name: String,
    /// The listening address.
    pub listen: String,
    /// The seed file.
    pub key_file: PathBuf,
    /// The state database.
    pub state: PathBuf,
    /// The logs.
    #[serde(default)]
    pub logs: Vec<LogEntry>,
}

impl Config {
    /// Reads `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut c: Config =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut c.key_file, &mut c.state] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(c)
    }

    /// The logs as the witness knows them (origin and key), checked.
    pub fn known_logs(&self) -> Result<Vec<KnownLog>, String> {
        let mut logs: Vec<KnownLog> = Vec::new();
        for l in &self.logs {
            let key = VerifierKey::parse(&l.vkey).map_err(|e| format!("log {}: {e}", l.vkey))?;
            let origin = l.origin.clone().unwrap_or_else(|| key.name().to_string());
            if logs.iter().any(|k| k.origin == origin) {
                return Err(format!("log origin {origin:?} is listed twice"));
            }
            logs.push(KnownLog { origin, key });
        }
        Ok(logs)
    }
}

/// Reads the seed file: 64 hex digits; refused if others may read it.
pub fn read_key(path: &Path) -> Result<SoftwareSigner, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{shown}: readable by group or others (mode {:o}); chmod 600 it",
            meta.permissions().mode() & 0o777
        ));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut_slice())
        .map_err(|_| format!("{shown}: not 64 hex digits"))?;
    Ok(SoftwareSigner::from_seed(&seed))
}

/// Writes a new random seed to `path` (mode 0600, refusing to overwrite).
pub fn new_key(path: &Path) -> Result<SoftwareSigner, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|e| format!("randomness: {e}"))?;
    let text = Zeroizing::new(hex::encode(seed.as_slice()) + "\n");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(SoftwareSigner::from_seed(&seed))
}
