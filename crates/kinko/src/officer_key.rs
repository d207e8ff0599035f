//! Officer signing keys on disk: `kinko officer keygen`, and loading a key wherever an officer
//! signs (`--officer-key FILE`).
//!
//! # File format
//!
//! An officer key file is an [age](https://c2sp.org/age) file encrypted to one scrypt
//! passphrase recipient (the well-reviewed format of `age -p`, not home-made crypto). Its
//! plaintext is exactly
//!
//! ```text
//! "kinko/officer-key/v1\n" || the 32-byte Ed25519 seed (RFC 8032 private key)
//! ```
//!
//! so a file is self-describing, and any other age file is refused rather than misread as a key.
//! `age -d` opens it with the passphrase for recovery. The scrypt work factor is `log2 N = 18` by
//! default (age's baseline, about one second and 256 MiB), at most [`MAX_WORK_FACTOR`] is
//! accepted when decrypting, so a hostile file cannot make the CLI run for hours.
//!
//! The plain hex seed files `kinkod dev` writes are still accepted, with a warning: they are
//! unencrypted development keys.
//!
//! The seed lives in a [`Zeroizing`] buffer and the passphrase in a [`SecretString`]; neither
//! is ever printed.

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Args;
use ed25519_dalek::{SigningKey, VerifyingKey};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Domain tag that starts the plaintext of an officer key file.
pub(crate) const KEY_FILE_DOMAIN: &[u8] = b"kinko/officer-key/v1\n";
/// The plaintext length: the domain tag and the 32-byte seed.
const PLAINTEXT_LEN: usize = KEY_FILE_DOMAIN.len() + 32;
/// What every binary age file starts with (c2sp.org/age, "Header").
const AGE_MAGIC: &[u8] = b"age-encryption.org/";
/// What an ASCII-armored age file starts with.
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// The largest officer key file read (an encrypted key is about 200 bytes).
const MAX_KEY_FILE: u64 = 16 * 1024;
/// The largest passphrase file read.
const MAX_PASSPHRASE_FILE: u64 = 4096;
/// The scrypt work factor (log2 N) `kinko officer keygen` uses unless told otherwise.
pub(crate) const DEFAULT_WORK_FACTOR: u8 = 18;
/// The smallest work factor `kinko officer keygen` accepts on its command line.
pub(crate) const MIN_CLI_WORK_FACTOR: u8 = 18;
/// The largest scrypt work factor accepted (written or read): 2^22 × 1 KiB = 4 GiB of memory.
pub(crate) const MAX_WORK_FACTOR: u8 = 22;
/// The environment variable a passphrase may come from.
pub(crate) const PASSPHRASE_ENV: &str = "KINKO_OFFICER_PASSPHRASE";

/// Errors of officer key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum KeyError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output file exists: keygen never overwrites a key.
    #[error("{0}: exists already; refusing to overwrite an officer key")]
    Exists(PathBuf),
    /// A key or passphrase file can be read by its group or others.
    #[error("{0}: readable by others; chmod 600 it")]
    Permissions(PathBuf),
    /// A key or passphrase file is larger than any valid one.
    #[error("{0}: too large for an officer key or passphrase file")]
    TooLarge(PathBuf),
    /// The passphrase does not open the key file.
    #[error("{0}: wrong passphrase (or the file was altered); nothing was signed")]
    WrongPassphrase(PathBuf),
    /// The file asks for more scrypt work than [`MAX_WORK_FACTOR`].
    #[error(
        "{path}: the file needs scrypt work factor {required}, more than the {MAX_WORK_FACTOR} accepted"
    )]
    ExcessiveWork {
        /// The file.
        path: PathBuf,
        /// The work factor the file asks for.
        required: u8,
    },
    /// The file is neither a Kinko officer key file nor a development hex seed.
    #[error("{path}: not an officer key: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The two passphrases typed differ.
    #[error("the passphrases differ")]
    PassphraseMismatch,
    /// The passphrase is not UTF-8 text.
    #[error("the passphrase from {0} is not UTF-8 text")]
    PassphraseNotText(&'static str),
    /// No passphrase file, no environment variable, and the terminal prompt failed.
    #[error(
        "no passphrase: give --passphrase-file or set {PASSPHRASE_ENV}, or run on a terminal ({0})"
    )]
    NoTerminal(std::io::Error),
    /// The work factor is outside 1..=[`MAX_WORK_FACTOR`].
    #[error("scrypt work factor {0} is outside 1..={MAX_WORK_FACTOR}")]
    WorkFactor(u8),
    /// age could not encrypt.
    #[error("encrypting the key: {0}")]
    Encrypt(String),
    /// The system's random generator failed.
    #[error("the system random generator failed: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the passphrase of an officer key comes from.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct PassphraseArgs {
    /// A file holding the officer key's passphrase (mode 600; one trailing newline is ignored).
    /// Without it: the KINKO_OFFICER_PASSPHRASE environment variable, else a prompt on the
    /// terminal (no echo).
    #[arg(long)]
    pub(crate) passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    /// The passphrase: from the file, else the environment, else the terminal (asked twice
    /// when `confirm`).
    pub(crate) fn get(&self, confirm: bool) -> Result<SecretString, KeyError> {
        let pass = if let Some(path) = &self.passphrase_file {
            read_passphrase_file(path)?
        } else if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
            let s = v
                .into_string()
                .map_err(|_| KeyError::PassphraseNotText(PASSPHRASE_ENV))?;
            SecretString::from(s)
        } else {
            let first = SecretString::from(
                rpassword::prompt_password("officer key passphrase: ")
                    .map_err(KeyError::NoTerminal)?,
            );
            if confirm {
                let again = SecretString::from(
                    rpassword::prompt_password("the same passphrase again: ")
                        .map_err(KeyError::NoTerminal)?,
                );
                if first.expose_secret() != again.expose_secret() {
                    return Err(KeyError::PassphraseMismatch);
                }
            }
            first
        };
        if pass.expose_secret().is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        Ok(pass)
    }
}

/// Refuses files readable by group or others.
fn check_private(path: &Path) -> Result<std::fs::Metadata, KeyError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::Permissions(path.to_path_buf()));
    }
    Ok(meta)
}

/// Reads a small private file into a zeroized buffer.
fn read_private(path: &Path, limit: u64) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let meta = check_private(path)?;
    if meta.len() > limit {
        return Err(KeyError::TooLarge(path.to_path_buf()));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(
        usize::try_from(limit).unwrap_or(4096).saturating_add(1),
    ));
    std::fs::File::open(path)
        .map_err(io(path))?
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > limit {
        return Err(KeyError::TooLarge(path.to_path_buf()));
    }
    Ok(buf)
}

fn read_passphrase_file(path: &Path) -> Result<SecretString, KeyError> {
    let buf = read_private(path, MAX_PASSPHRASE_FILE)?;
    let text = std::str::from_utf8(&buf).map_err(|_| KeyError::PassphraseNotText("the file"))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Ok(SecretString::from(text))
}

/// Makes a new officer key and writes it, encrypted, to `out` (created with mode 600; an
/// existing file is never overwritten). Returns the public key for the policy.
pub(crate) fn keygen(
    out: &Path,
    passphrase: &SecretString,
    work_factor: u8,
) -> Result<VerifyingKey, KeyError> {
    if work_factor == 0 || work_factor > MAX_WORK_FACTOR {
        return Err(KeyError::WorkFactor(work_factor));
    }
    if passphrase.expose_secret().is_empty() {
        return Err(KeyError::EmptyPassphrase);
    }
    // Fail before the expensive part when the file exists.
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(KeyError::Exists(out.to_path_buf()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *seed).map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let mut plaintext = Zeroizing::new([0u8; PLAINTEXT_LEN]);
    let (tag, rest) = plaintext.split_at_mut(KEY_FILE_DOMAIN.len());
    tag.copy_from_slice(KEY_FILE_DOMAIN);
    rest.copy_from_slice(&*seed);
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    recipient.set_work_factor(work_factor);
    let ciphertext =
        age::encrypt(&recipient, &*plaintext).map_err(|e| KeyError::Encrypt(e.to_string()))?;
    write_new_private(out, &ciphertext)?;
    Ok(key.verifying_key())
}

/// Creates `path` with mode 600 (never replacing a file), writes, syncs the file and its
/// directory. A partly written file is removed.
pub(crate) fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_path_buf())
            } else {
                io(path)(e)
            }
        })?;
    let written = f.write_all(contents).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(io(path)(e));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// How a key file was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Encrypted with a passphrase (age, scrypt).
    Encrypted,
    /// A plain hex seed written by `kinkod dev`.
    DevelopmentHex,
}

/// Loads an officer key; `passphrase` is asked only for an encrypted file.
pub(crate) fn load(
    path: &Path,
    passphrase: impl FnOnce() -> Result<SecretString, KeyError>,
) -> Result<(SigningKey, Stored), KeyError> {
    let data = read_private(path, MAX_KEY_FILE)?;
    if data.starts_with(AGE_ARMOR) {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
            reason: "an ASCII-armored age file; officer keys are binary age files (age -d | age -p > FILE converts)",
        });
    }
    if !data.starts_with(AGE_MAGIC) {
        return load_hex(path, &data).map(|k| (k, Stored::DevelopmentHex));
    }
    let malformed = |reason| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let decryptor = age::Decryptor::new_buffered(&data[..])
        .map_err(|_| malformed("the age header does not parse"))?;
    if !decryptor.is_scrypt() {
        return Err(malformed(
            "the age file is not encrypted to a passphrase (scrypt)",
        ));
    }
    let mut identity = age::scrypt::Identity::new(passphrase()?);
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => KeyError::WrongPassphrase(path.to_path_buf()),
            age::DecryptError::ExcessiveWork { required, .. } => KeyError::ExcessiveWork {
                path: path.to_path_buf(),
                required,
            },
            _ => malformed("the age header is invalid or was altered"),
        })?;
    let mut plaintext = Zeroizing::new([0u8; PLAINTEXT_LEN]);
    reader
        .read_exact(&mut *plaintext)
        .map_err(|_| malformed("the encrypted contents are not an officer key, or were altered"))?;
    let mut extra = [0u8; 1];
    match reader.read(&mut extra) {
        Ok(0) => {}
        _ => {
            return Err(malformed(
                "the encrypted contents are longer than an officer key",
            ));
        }
    }
    let (tag, seed) = plaintext.split_at(KEY_FILE_DOMAIN.len());
    if tag != KEY_FILE_DOMAIN {
        return Err(malformed(
            "the encrypted contents do not start with kinko/officer-key/v1",
        ));
    }
    let mut seed_arr = Zeroizing::new([0u8; 32]);
    seed_arr.copy_from_slice(seed);
    Ok((SigningKey::from_bytes(&seed_arr), Stored::Encrypted))
}

fn load_hex(path: &Path, data: &[u8]) -> Result<SigningKey, KeyError> {
    let malformed = || KeyError::Malformed {
        path: path.to_path_buf(),
        reason: "neither an age-encrypted officer key nor a 64-hex-digit development seed",
    };
    let text = std::str::from_utf8(data).map_err(|_| malformed())?;
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut *seed).map_err(|_| malformed())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `--officer-key FILE` and its passphrase source, as every officer command takes them.
#[derive(Debug, Clone, Args)]
pub(crate) struct OfficerKeyArgs {
    /// The officer's key file: made by `kinko officer keygen` (age, passphrase-encrypted), or
    /// a development hex seed made by `kinkod dev` (accepted with a warning). Mode 600.
    #[arg(long)]
    pub(crate) officer_key: PathBuf,
    #[command(flatten)]
    pub(crate) passphrase: PassphraseArgs,
}

impl OfficerKeyArgs {
    /// Loads the key, warning on standard error about an unencrypted development key.
    pub(crate) fn load(&self) -> Result<SigningKey, String> {
        let (key, stored) =
            load(&self.officer_key, || self.passphrase.get(false)).map_err(|e| e.to_string())?;
        if stored == Stored::DevelopmentHex {
            eprintln!(
                "kinko: warning: {} is an unencrypted development key (kinkod dev); make real officer keys with `kinko officer keygen`",
                self.officer_key.display()
            );
        }
        Ok(key)
    }
}

/// `kinko officer …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum OfficerCommand {
    /// Make a new officer Ed25519 key, encrypted with a passphrase (age, scrypt).
    ///
    /// Writes FILE with mode 600 (never overwrites) and prints the public key, 64 hex digits,
    /// as the policy's [[officers]] public_key takes it.
    #[command(verbatim_doc_comment)]
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
        /// The scrypt work factor, log2 N (18 is about one second and 256 MiB).
        #[arg(long, default_value_t = DEFAULT_WORK_FACTOR,
              value_parser = clap::value_parser!(u8).range(i64::from(MIN_CLI_WORK_FACTOR)..=i64::from(MAX_WORK_FACTOR)))]
        work_factor: u8,
    },
    /// Print the public key of an officer key file (asks for its passphrase).
    PublicKey {
        #[command(flatten)]
        key: OfficerKeyArgs,
    },
}

/// Runs an officer key command.
pub(crate) fn run(cmd: OfficerCommand) -> Result<(), String> {
    match cmd {
        OfficerCommand::Keygen {
            out,
            passphrase,
            work_factor,
        } => {
            let pass = passphrase.get(true).map_err(|e| e.to_string())?;
            let vk = keygen(&out, &pass, work_factor).map_err(|e| e.to_string())?;
            let pk = hex::encode(vk.to_bytes());
            eprintln!(
                "kinko: wrote {} (age, passphrase-encrypted, mode 600). In the policy:\n  public_key = \"{pk}\"",
                out.display()
            );
            println!("{pk}");
            Ok(())
        }
        OfficerCommand::PublicKey { key } => {
            let k = key.load()?;
            println!("{}", hex::encode(k.verifying_key().to_bytes()));
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "officer_key_tests.rs"]
mod tests;
