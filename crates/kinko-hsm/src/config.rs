//! HSM configuration: which module, which token (by label), where the PIN comes from.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::HsmError;

/// Default number of sessions in the pool.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// Largest accepted pool size; tokens limit sessions and more than this buys nothing.
pub const MAX_POOL_SIZE: usize = 256;

/// Where the user PIN is read from. Never a command-line argument (visible in `ps`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored). Refused when others may read it.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// A systemd credential: the file of this name in `$CREDENTIALS_DIRECTORY`, which systemd
    /// fills from `LoadCredential=` (or `LoadCredentialEncrypted=`) for this service only.
    Credential(String),
}

/// How to reach the token. `Debug` is safe: the PIN itself is never part of the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Label of the token to use. Slot ids change between boots; labels do not.
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Number of sessions to keep open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

impl PinSource {
    /// Reads the PIN into a zeroizing secret.
    pub fn load(&self) -> Result<SecretString, HsmError> {
        let raw = match self {
            PinSource::File(path) => read_pin_file(path)?,
            PinSource::Credential(name) => {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(HsmError::PinSource(format!(
                        "credential {name:?} is not a credential name"
                    )));
                }
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    HsmError::PinSource(format!(
                        "pin = {{ credential = {name:?} }} needs CREDENTIALS_DIRECTORY: run kinkod under systemd with LoadCredential={name}:FILE"
                    ))
                })?;
                read_pin_file_with(&Path::new(&dir).join(name), CREDENTIAL_MODE_MASK)?
            }
            PinSource::Env(var) => Zeroizing::new(std::env::var(var).map_err(|_| {
                HsmError::PinSource(format!(
                    "environment variable {var} is not set or not UTF-8"
                ))
            })?),
        };
        let pin = raw.trim_end_matches(['\n', '\r']);
        if pin.is_empty() {
            return Err(HsmError::PinSource("the PIN is empty".into()));
        }
        Ok(SecretString::from(pin.to_string()))
    }
}

/// Group or other bits refused on a PIN file.
const PIN_MODE_MASK: u32 = 0o077;
/// In `$CREDENTIALS_DIRECTORY` (systemd's private, read-only mount for this service), systemd
/// 254 and later make a credential group-readable with an ACL for the service's user: the
/// group read bit is allowed there, nothing else.
const CREDENTIAL_MODE_MASK: u32 = 0o037;

fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, HsmError> {
    read_pin_file_with(path, PIN_MODE_MASK)
}

fn read_pin_file_with(path: &Path, refused_bits: u32) -> Result<Zeroizing<String>, HsmError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| HsmError::PinSource(format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(HsmError::PinSource(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode();
    // Only the owner: a PIN readable by a group is readable by everyone in it.
    if mode & refused_bits != 0 {
        return Err(HsmError::PinSource(format!(
            "{} is accessible to users other than its owner (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        )));
    }
    let s = std::fs::read_to_string(path)
        .map_err(|e| HsmError::PinSource(format!("{}: {e}", path.display())))?;
    Ok(Zeroizing::new(s))
}

/// Checks a key or token label: 1..=32 bytes of printable ASCII.
pub(crate) fn check_label(label: &str) -> Result<(), HsmError> {
    if label.is_empty() || label.len() > 32 || !label.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(HsmError::InvalidLabel(label.to_string()));
    }
    Ok(())
}
