//! `kinko-release`: release engineering for Kinko.
//!
//! ```text
//! kinko-release sbom --out kinko.cdx.json --binary target/release/kinkod ...
//! ```
//!
//! The SBOM (CycloneDX 1.5, JSON) lists every package the shipped binaries are built from —
//! the normal and build dependencies of `kinkod`, `kinko` and `kinko-witness` as Cargo
//! resolved them for this lock file (`cargo metadata --locked`), never dev-dependencies — each
//! with its version, package URL, license expression and the SHA-256 Cargo.lock pins for its
//! source archive, and the binaries themselves with their SHA-256. It is deterministic: the
//! same commit and binaries give the same file (the timestamp is `SOURCE_DATE_EPOCH`).

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The packages whose binaries ship.
const SHIPPED: [&str; 3] = ["kinkod", "kinko", "kinko-witness"];

#[derive(Debug, Parser)]
#[command(name = "kinko-release", version, about = "Kinko release engineering")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the CycloneDX SBOM of the shipped binaries.
    Sbom {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// A shipped binary to list with its SHA-256 (repeatable).
        #[arg(long)]
        binary: Vec<PathBuf>,
        /// The workspace's Cargo.toml (default: the current directory's).
        #[arg(long, default_value = "Cargo.toml")]
        manifest_path: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Sbom {
            out,
            binary,
            manifest_path,
        } => cargo_metadata(&manifest_path)
            .and_then(|meta| {
                let lock_path = manifest_path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("Cargo.lock");
                let lock = std::fs::read_to_string(&lock_path)
                    .map_err(|e| format!("{}: {e}", lock_path.display()))?;
                let tree = cargo_tree(&manifest_path)?;
                sbom(&meta, &tree, &lock, &binary, source_date_epoch())
            })
            .and_then(|bom| {
                let text = serde_json::to_string_pretty(&bom).map_err(|e| e.to_string())?;
                std::fs::write(&out, text + "\n").map_err(|e| format!("{}: {e}", out.display()))
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinko-release: {e}");
            ExitCode::FAILURE
        }
    }
}

fn source_date_epoch() -> i64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `cargo metadata --format-version 1 --locked` for the workspace.
fn cargo_metadata(manifest: &Path) -> Result<Value, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))
}

/// `cargo tree` of the shipped packages: normal and build dependencies, one per line with its
/// depth.
fn cargo_tree(manifest: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "tree",
        "--locked",
        "-e",
        "normal,build",
        "--prefix",
        "depth",
        "--format",
        "{p}",
    ]);
    for p in SHIPPED {
        cmd.args(["-p", p]);
    }
    let out = cmd
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("cargo tree: {e}"))
}

/// Cargo.lock's checksum for each registry package, by `name version`.
fn lock_checksums(lock: &str) -> Result<BTreeMap<String, String>, String> {
    let t: toml::Table = lock.parse().map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut out = BTreeMap::new();
    for p in t
        .get("package")
        .and_then(|p| p.as_array())
        .ok_or("Cargo.lock has no packages")?
    {
        if let (Some(n), Some(v), Some(c)) = (
            p.get("name").and_then(|x| x.as_str()),
            p.get("version").and_then(|x| x.as_str()),
            p.get("checksum").and_then(|x| x.as_str()),
        ) {
            out.insert(format!("{n} {v}"), c.to_string());
        }
    }
    Ok(out)
}

/// The SBOM document.
fn sbom(
    meta: &Value,
    tree: &str,
    lock: &str,
    binaries: &[PathBuf],
    epoch: i64,
) -> Result<Value, String> {
    let checksums = lock_checksums(lock)?;
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    // What `cargo build -p kinkod -p kinko -p kinko-witness` compiles: normal and build
    // dependencies with the features those packages enable (cargo tree resolves them as the
    // build does; the metadata's graph unifies the features of every workspace member, tests
    // included).
    let by_name_version: BTreeMap<(String, String), &str> = packages
        .iter()
        .map(|(id, p)| {
            (
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["version"].as_str().unwrap_or_default().to_string(),
                ),
                *id,
            )
        })
        .collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut parents: Vec<&str> = Vec::new();
    for line in tree.lines() {
        let depth_len = line.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(depth) = line[..depth_len].parse::<usize>() else {
            continue;
        };
        let mut words = line[depth_len..].split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let version = version.trim_start_matches('v');
        let id = *by_name_version
            .get(&(name.to_string(), version.to_string()))
            .ok_or_else(|| {
                format!("cargo tree names {name} {version}, which the metadata lacks")
            })?;
        seen.insert(id);
        parents.truncate(depth);
        if let Some(parent) = parents.last() {
            edges.entry(parent).or_default().insert(id);
        }
        parents.push(id);
    }
    for root in SHIPPED {
        if !seen.iter().any(|id| packages[id]["name"] == root) {
            return Err(format!("cargo tree lacks {root}"));
        }
    }
    let bom_ref = |p: &Value| -> String {
        format!(
            "pkg:cargo/{}@{}",
            p["name"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default()
        )
    };
    let mut components = Vec::new();
    for id in &seen {
        let p = packages
            .get(id)
            .ok_or_else(|| format!("{id}: no package"))?;
        let (name, version) = (
            p["name"].as_str().unwrap_or_default(),
            p["version"].as_str().unwrap_or_default(),
        );
        let mut c = json!({
            "type": "library",
            "bom-ref": bom_ref(p),
            "name": name,
            "version": version,
            "purl": bom_ref(p),
        });
        if let Some(l) = p["license"].as_str() {
            c["licenses"] = json!([{ "expression": l }]);
        }
        match (
            p["source"].as_str(),
            checksums.get(&format!("{name} {version}")),
        ) {
            (Some(src), Some(sum)) if src.starts_with("registry+") => {
                c["hashes"] = json!([{ "alg": "SHA-256", "content": sum }]);
            }
            (Some(src), _) if src.starts_with("registry+") => {
                return Err(format!("{name} {version}: no checksum in Cargo.lock"));
            }
            (None, _) => {
                // This workspace's own crates.
                c["type"] = json!(if SHIPPED.contains(&name) {
                    "application"
                } else {
                    "library"
                });
            }
            (Some(src), _) => c["externalReferences"] = json!([{ "type": "vcs", "url": src }]),
        }
        components.push(c);
    }
    for b in binaries {
        let bytes = std::fs::read(b).map_err(|e| format!("{}: {e}", b.display()))?;
        let name = b
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", b.display()))?;
        components.push(json!({
            "type": "file",
            "bom-ref": format!("file:{name}"),
            "name": name,
            "hashes": [{ "alg": "SHA-256", "content": hex::encode(Sha256::digest(&bytes)) }],
        }));
    }
    let dependencies: Vec<Value> = seen
        .iter()
        .map(|id| {
            let deps: Vec<String> = edges
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|to| packages.get(to).map(|p| bom_ref(p)))
                .collect();
            json!({ "ref": packages.get(id).map(|p| bom_ref(p)).unwrap_or_default(), "dependsOn": deps })
        })
        .collect();
    let version = packages
        .values()
        .find(|p| p["name"] == "kinkod")
        .and_then(|p| p["version"].as_str())
        .unwrap_or_default()
        .to_string();
    let timestamp = format_utc(epoch);
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": { "components": [{ "type": "application", "name": "kinko-release", "version": env!("CARGO_PKG_VERSION") }] },
            "component": { "type": "application", "bom-ref": format!("kinko@{version}"), "name": "kinko", "version": version },
        },
        "components": components,
        "dependencies": dependencies,
    });
    // A serial number derived from the content: the same inputs give the same document.
    let digest = Sha256::digest(bom.to_string().as_bytes());
    let h = hex::encode(&digest[..16]);
    bom["serialNumber"] = json!(format!(
        "urn:uuid:{}-{}-5{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ));
    Ok(bom)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (days from the civil calendar algorithm).
fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// The SBOM of this workspace: every registry package the shipped binaries use, with the
    /// checksum Cargo.lock pins, no dev-only package, and the same document twice.
    #[test]
    fn the_sbom_lists_what_the_binaries_are_built_from() {
        let root = workspace();
        let meta = cargo_metadata(&root.join("Cargo.toml")).unwrap();
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let bin = root.join("Cargo.toml"); // any file stands for a binary here
        let tree = cargo_tree(&root.join("Cargo.toml")).unwrap();
        let bom = sbom(
            &meta,
            &tree,
            &lock,
            std::slice::from_ref(&bin),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(bom["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        let comps = bom["components"].as_array().unwrap();
        let by_name = |n: &str| comps.iter().find(|c| c["name"] == n);
        let checksums = lock_checksums(&lock).unwrap();
        for name in [
            "cryptoki",
            "k256",
            "ed25519-dalek",
            "tonic",
            "rusqlite",
            "tokio-postgres",
        ] {
            let c = by_name(name).unwrap_or_else(|| panic!("{name} missing"));
            let key = format!("{name} {}", c["version"].as_str().unwrap());
            assert_eq!(c["hashes"][0]["content"], checksums[&key], "{name}");
            assert_eq!(c["purl"], format!("pkg:cargo/{key}").replace(' ', "@"));
        }
        // The workspace's tests and benchmark do not ship, nor their dev-only packages.
        for absent in ["kinko-tests", "kinko-bench", "proptest", "kinko-release"] {
            assert!(by_name(absent).is_none(), "{absent} is not shipped");
        }
        assert_eq!(by_name("kinkod").unwrap()["type"], "application");
        let file = by_name("Cargo.toml").unwrap();
        assert_eq!(
            file["hashes"][0]["content"],
            hex::encode(Sha256::digest(std::fs::read(&bin).unwrap()))
        );
        let again = sbom(&meta, &tree, &lock, &[bin], 1_700_000_000).unwrap();
        assert_eq!(bom, again);
        assert!(
            bom["serialNumber"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:")
        );
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_796_600_000), "2026-12-06T23:33:20Z");
    }
}
