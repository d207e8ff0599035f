//! docs/install.md, run as written: every ```` ```sh ```` block in order, as one bash script
//! (`set -euo pipefail`), on a fresh SoftHSM2 token in a temporary directory, with kinkod
//! started where the page's marker says. The production path — init, the token and its PIN,
//! a CA and pinned certificates, officers' own keys, the key ceremony, check-config, a first
//! signed withdrawal and the auditor's verification — works without `kinkod dev`, and a
//! command changed in the page is a command changed in the test.

use std::path::Path;
use std::process::{Command, Stdio};

use kinko_tests as support;

const MARKER: &str = "<!-- install-test: kinkod starts here -->";

/// The page's tested blocks before and after the marker.
fn tested_blocks(page: &str) -> (String, String) {
    let (before, after) = page
        .split_once(MARKER)
        .expect("docs/install.md lost its start marker");
    let blocks = |text: &str| {
        let mut out = String::new();
        let mut inside = false;
        for line in text.lines() {
            if !inside && line.trim_end() == "```sh" {
                inside = true;
            } else if inside && line.trim_end() == "```" {
                inside = false;
                out.push('\n');
            } else if inside {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(!inside, "an unterminated ```sh block in docs/install.md");
        out
    };
    (blocks(before), blocks(after))
}

/// Kills the kinkod the script started, whatever happens.
struct KillPidFile(std::path::PathBuf);

impl Drop for KillPidFile {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn the_install_guide_runs_as_written_to_a_first_signed_withdrawal() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/install.md"))
            .unwrap();
    let (setup, first_use) = tested_blocks(&page);
    // The steps that matter are in the tested part, not only in untested blocks.
    for step in [
        "kinkod init",
        "softhsm2-util --init-token",
        "create-key --log-key",
        "create-key \\\n  --name eth-cold-1",
        "kinko officer keygen",
        "kinko requester keygen",
        "check-config",
    ] {
        assert!(
            setup.contains(step),
            "docs/install.md no longer runs {step:?}"
        );
    }
    for step in [
        "kinko request submit",
        "kinko approve",
        "kinko audit verify",
    ] {
        assert!(
            first_use.contains(step),
            "docs/install.md no longer runs {step:?}"
        );
    }

    let kinkod = support::bin("kinkod");
    let kinko = support::bin("kinko");
    let bin_dir = kinkod.parent().unwrap();
    assert_eq!(kinko.parent().unwrap(), bin_dir);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let port = support::free_port();
    let pid_file = root.join("kinkod.pid");
    let _kill = KillPidFile(pid_file.clone());
    let log = root.join("kinkod.log");
    // What the page's untested "shell for the set-up" block sets, pointed at the temporary
    // directory; `as_kinko` runs as the test's user.
    let prelude = format!(
        r#"set -euo pipefail
export ETC="{root}/etc" STATE="{root}/var-lib-kinko" WORK="{root}/setup"
export HOST=localhost PORT={port}
export MODULE="{module}" TOKEN=kinko
export PATH="{bin}:$PATH" KINKO_OFFICER_PASSPHRASE="a passphrase for the test"
mkdir -p "$ETC"
as_kinko() {{ env CREDENTIALS_DIRECTORY="$ETC/credentials" SOFTHSM2_CONF="$ETC/softhsm2.conf" "$@"; }}
"#,
        root = root.display(),
        module = kinko_hsm::testing::module_path().display(),
        bin = bin_dir.display(),
    );
    // Where the page has systemd start kinkod: started with the unit's settings, and waited
    // for until it listens. (Its output goes to a file: a pipe it held would keep the script's
    // output open.)
    let start = format!(
        r#"
CREDENTIALS_DIRECTORY="$ETC/credentials" SOFTHSM2_CONF="$ETC/softhsm2.conf" \
  RUST_LOG=info kinkod --config "$ETC/kinkod.toml" > "{log}" 2>&1 &
echo $! > "{pid}"
for _ in $(seq 1 600); do grep -q "kinkod: listening on" "{log}" && break; sleep 0.1; done
grep -q "kinkod: listening on" "{log}" || {{ cat "{log}" >&2; exit 1; }}
"#,
        log = log.display(),
        pid = pid_file.display(),
    );
    let script = format!("{prelude}\n{setup}\n{start}\n{first_use}");
    std::fs::write(root.join("install.sh"), &script).unwrap();
    let out = Command::new("bash")
        .arg(root.join("install.sh"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "docs/install.md failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- kinkod\n{daemon_log}",
        out.status
    );
    // check-config passed, every line ok or warn.
    assert!(
        stdout.contains("kinkod check-config:") && stdout.contains("passed"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    // The withdrawal was signed with the ceremony's key, and the auditor's copy verified.
    assert!(stdout.contains("SIGNED"), "{stdout}");
    assert!(stdout.contains("signed transaction 0x02"), "{stdout}");
    let vkey = std::fs::read_to_string(root.join("etc/audit-log.vkey")).unwrap();
    assert!(
        daemon_log.contains(&format!("kinkod: audit log key {}", vkey.trim())),
        "kinkod did not use the ceremony's log key: {daemon_log}"
    );
    // Nothing of dev's: no development CA, no plain-file officer keys.
    assert!(!daemon_log.contains("NOT FOR PRODUCTION"), "{daemon_log}");
    // The config and the PIN stayed as the page left them: the PIN readable by its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(root.join("etc/credentials/hsm-pin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "hsm-pin mode {mode:o}");
}
