//! The `kinko` binary's offline commands, run as a user runs them: officer key files and
//! policy checks. (The commands that talk to kinkod are tested against a real daemon in
//! tests/e2e/cli.rs.)

#![allow(clippy::unwrap_used, missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// RFC 8032 section 7.1, TEST 1: secret key and public key.
const RFC8032_SK: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PK: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kinko(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kinko"))
        .args(args)
        .env_remove("KINKO_OFFICER_PASSPHRASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn officer_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    private(&pass, b"it is a secret\n");

    // A development hex seed: loads, with a warning on standard error.
    let dev = dir.path().join("dev.key");
    private(&dev, RFC8032_SK.as_bytes());
    let r = kinko(&["officer", "public-key", "--officer-key", s(&dev)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), RFC8032_PK);
    assert!(
        r.stderr.contains("unencrypted development key"),
        "{}",
        r.stderr
    );

    // A passphrase-encrypted key file (the format `kinko officer keygen` writes; made here with
    // the age library and a low work factor so the test is fast).
    let mut plain = b"kinko/officer-key/v1\n".to_vec();
    plain.extend_from_slice(&hex::decode(RFC8032_SK).unwrap());
    let mut r = age::scrypt::Recipient::new(secrecy::SecretString::from("it is a secret"));
    r.set_work_factor(10);
    let enc = dir.path().join("officer.key");
    private(&enc, &age::encrypt(&r, &plain).unwrap());
    let r = kinko(&[
        "officer",
        "public-key",
        "--officer-key",
        s(&enc),
        "--passphrase-file",
        s(&pass),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), RFC8032_PK);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    // The wrong passphrase, from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_kinko"))
        .args(["officer", "public-key", "--officer-key", s(&enc)])
        .env("KINKO_OFFICER_PASSPHRASE", "not it")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());
    // No passphrase source and no terminal: refused, not hung.
    let r = kinko(&["officer", "public-key", "--officer-key", s(&enc)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no passphrase"), "{}", r.stderr);
    // A key file others can read is refused.
    std::fs::set_permissions(&enc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = kinko(&[
        "officer",
        "public-key",
        "--officer-key",
        s(&enc),
        "--passphrase-file",
        s(&pass),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);

    // keygen never overwrites, and refuses work factors below 18.
    let r = kinko(&[
        "officer",
        "keygen",
        "--out",
        s(&dev),
        "--passphrase-file",
        s(&pass),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("refusing to overwrite"), "{}", r.stderr);
    assert_eq!(std::fs::read(&dev).unwrap(), RFC8032_SK.as_bytes());
    let r = kinko(&[
        "officer",
        "keygen",
        "--out",
        s(&dir.path().join("weak.key")),
        "--passphrase-file",
        s(&pass),
        "--work-factor",
        "10",
    ]);
    assert_eq!(r.code, 2, "a usage error");
    assert!(!dir.path().join("weak.key").exists());
}

#[test]
fn policy_check_exit_codes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy/example.toml");
    let r = kinko(&["policy", "check", s(&example)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hash = kinko_policy::PolicyHash::of_file(&std::fs::read(&example).unwrap());
    assert!(
        r.stdout.starts_with(&format!("policy {hash}\n")),
        "{}",
        r.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "version = 1\nsurprise = true\n").unwrap();
    let r = kinko(&["policy", "check", s(&bad)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    let r = kinko(&["policy", "check", s(&dir.path().join("missing.toml"))]);
    assert_eq!(r.code, 1);
}
