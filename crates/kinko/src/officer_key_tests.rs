#![allow(clippy::unwrap_used)]

use super::*;

/// A work factor small enough for tests (never for real keys: the CLI refuses below 18).
const TEST_WORK_FACTOR: u8 = 10;

fn pass(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn no_passphrase() -> Result<SecretString, KeyError> {
    panic!("the passphrase must not be asked for")
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn keygen_then_load_round_trips_and_the_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    let vk = keygen(&path, &pass("correct horse battery"), TEST_WORK_FACTOR).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let data = std::fs::read(&path).unwrap();
    assert!(data.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    let (key, stored) = load(&path, || Ok(pass("correct horse battery"))).unwrap();
    assert_eq!(stored, Stored::Encrypted);
    assert_eq!(key.verifying_key(), vk);
    // Neither the seed nor its hex is in the file.
    let seed = key.to_bytes();
    assert!(!data.windows(32).any(|w| w == seed));
    assert!(!String::from_utf8_lossy(&data).contains(&hex::encode(seed)));
    // The file opens with the age library alone (`age -d` recovers the seed).
    let plain = age::decrypt(
        &age::scrypt::Identity::new(pass("correct horse battery")),
        &data,
    )
    .unwrap();
    assert_eq!(&plain[..KEY_FILE_DOMAIN.len()], KEY_FILE_DOMAIN);
    assert_eq!(&plain[KEY_FILE_DOMAIN.len()..], &seed);
}

#[test]
fn a_wrong_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    keygen(&path, &pass("right"), TEST_WORK_FACTOR).unwrap();
    let err = load(&path, || Ok(pass("wrong"))).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase(_)), "{err}");
    assert!(err.to_string().contains("wrong passphrase"), "{err}");
    // An empty passphrase is never used.
    assert!(matches!(
        keygen(&dir.path().join("k2"), &pass(""), TEST_WORK_FACTOR),
        Err(KeyError::EmptyPassphrase)
    ));
}

#[test]
fn keygen_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let first = keygen(&path, &pass("one"), TEST_WORK_FACTOR).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = keygen(&path, &pass("two"), TEST_WORK_FACTOR).unwrap_err();
    assert!(matches!(err, KeyError::Exists(_)), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let (key, _) = load(&path, || Ok(pass("one"))).unwrap();
    assert_eq!(key.verifying_key(), first);
    // A dangling symlink is not followed either.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    assert!(matches!(
        keygen(&link, &pass("x"), TEST_WORK_FACTOR),
        Err(KeyError::Exists(_))
    ));
    assert!(!dir.path().join("elsewhere").exists());
}

#[test]
fn legacy_hex_development_keys_still_load_without_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.key");
    // RFC 8032 section 7.1, TEST 1: secret key and public key.
    write_mode(
        &path,
        b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\n",
        0o600,
    );
    let (key, stored) = load(&path, no_passphrase).unwrap();
    assert_eq!(stored, Stored::DevelopmentHex);
    assert_eq!(
        hex::encode(key.verifying_key().to_bytes()),
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    );
    write_mode(&path, b"not a key", 0o600);
    assert!(matches!(
        load(&path, no_passphrase),
        Err(KeyError::Malformed { .. })
    ));
}

#[test]
fn files_readable_by_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    write_mode(
        &key,
        b"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        0o640,
    );
    assert!(matches!(
        load(&key, no_passphrase),
        Err(KeyError::Permissions(_))
    ));
    let pf = dir.path().join("pass");
    write_mode(&pf, b"secret\n", 0o644);
    let args = PassphraseArgs {
        passphrase_file: Some(pf.clone()),
    };
    assert!(matches!(args.get(false), Err(KeyError::Permissions(_))));
    std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o600)).unwrap();
    // One trailing newline is not part of the passphrase.
    assert_eq!(args.get(false).unwrap().expose_secret(), "secret");
    write_mode(&pf, b"\n", 0o600);
    assert!(matches!(args.get(false), Err(KeyError::EmptyPassphrase)));
}

#[test]
fn other_age_files_are_not_officer_keys() {
    let dir = tempfile::tempdir().unwrap();
    // A passphrase-encrypted age file with other contents.
    let mut r = age::scrypt::Recipient::new(pass("p"));
    r.set_work_factor(TEST_WORK_FACTOR);
    let other = age::encrypt(&r, &[7u8; PLAINTEXT_LEN]).unwrap();
    let path = dir.path().join("other");
    write_mode(&path, &other, 0o600);
    let err = load(&path, || Ok(pass("p"))).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    // An age file for an X25519 recipient, not a passphrase.
    let id = age::x25519::Identity::generate();
    let x = age::encrypt(&id.to_public(), b"whatever").unwrap();
    write_mode(&path, &x, 0o600);
    let err = load(&path, no_passphrase).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    // A flipped ciphertext byte of a real key file.
    let real = dir.path().join("real");
    keygen(&real, &pass("p"), TEST_WORK_FACTOR).unwrap();
    let mut data = std::fs::read(&real).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    std::fs::remove_file(&real).unwrap();
    write_mode(&real, &data, 0o600);
    assert!(load(&real, || Ok(pass("p"))).is_err());
}

#[test]
fn work_factors_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for wf in [0, MAX_WORK_FACTOR + 1] {
        assert!(matches!(
            keygen(&dir.path().join("k"), &pass("p"), wf),
            Err(KeyError::WorkFactor(_))
        ));
    }
}
