//! The Debian package, built by the project's own script from the binaries under test: what
//! it installs, that its unit is the tested one, that its checksums and SBOM describe its
//! binaries, and that its maintainer scripts never remove the store.

use std::path::Path;
use std::process::Command;

use sha2::Digest as _;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_debian_package_installs_the_tested_binaries_unit_and_docs() {
    let kinkod = kinko_tests::bin("kinkod");
    kinko_tests::bin("kinko");
    kinko_tests::bin("kinko-witness");
    kinko_tests::bin("kinko-release");
    let profile = kinkod
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap()
        .to_string();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let deb = run(Command::new(workspace.join("packaging/deb/build.sh"))
        .args(["--profile", &profile, "--no-build", "--out"])
        .arg(out.path())
        .env("DEB_COMPRESSION", "none"));
    let deb = Path::new(deb.trim());
    assert!(deb.exists(), "{}", deb.display());

    let field = |f: &str| run(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg(f));
    assert_eq!(field("Package").trim(), "kinko");
    assert_eq!(field("Version").trim(), env!("CARGO_PKG_VERSION"));
    let list = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    for path in [
        "./usr/bin/kinkod",
        "./usr/bin/kinko",
        "./usr/bin/kinko-witness",
        "./lib/systemd/system/kinkod.service",
        "./usr/share/doc/kinko/install.md",
        "./usr/share/doc/kinko/config.md",
        "./usr/share/doc/kinko/alerts/kinko.rules.yml",
        "./usr/share/kinko/examples/kinkod.toml",
        "./usr/share/kinko/examples/policy.toml",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{list}"
        );
    }
    // Owned by root, whoever built it.
    assert!(list.lines().all(|l| l.contains(" root/root ")), "{list}");

    let root = out.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root));
    assert_eq!(
        std::fs::read(root.join("lib/systemd/system/kinkod.service")).unwrap(),
        std::fs::read(workspace.join("packaging/systemd/kinkod.service")).unwrap(),
        "the packaged unit is not the tested one"
    );
    let version = run(Command::new(root.join("usr/bin/kinkod")).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // The example configuration names the unit's PIN credential and the state directory.
    let example =
        std::fs::read_to_string(root.join("usr/share/kinko/examples/kinkod.toml")).unwrap();
    assert!(
        example.contains(r#"pin = { credential = "hsm-pin" }"#),
        "{example}"
    );
    assert!(example.contains("/var/lib/kinko/kinko.db"), "{example}");
    assert!(!example.contains("/tmp"), "{example}");

    // SHA256SUMS and the SBOM describe the packaged binaries.
    let sums = std::fs::read_to_string(out.path().join("SHA256SUMS")).unwrap();
    let sbom: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            out.path()
                .join(format!("kinko-{}.cdx.json", env!("CARGO_PKG_VERSION"))),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    for b in ["kinkod", "kinko", "kinko-witness"] {
        let hash = hex::encode(sha2::Sha256::digest(
            std::fs::read(root.join("usr/bin").join(b)).unwrap(),
        ));
        assert!(sums.contains(&format!("{hash}  {b}\n")), "{b}: {sums}");
        let listed =
            sbom["components"].as_array().unwrap().iter().any(|c| {
                c["name"] == b && c["type"] == "file" && c["hashes"][0]["content"] == hash
            });
        assert!(listed, "{b} is not in the SBOM with its hash");
    }

    // The maintainer scripts: valid sh, a system user, and nothing that removes the store.
    let control = out.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    for script in ["postinst", "postrm"] {
        let path = control.join(script);
        run(Command::new("sh").arg("-n").arg(&path));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rm -r"), "{script} removes files:\n{text}");
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
}
