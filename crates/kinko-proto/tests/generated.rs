//! `src/generated/` is exactly what protox and tonic-prost-build make of
//! `proto/kinko/v1/kinko.proto` today. A change to the proto file or to the generators fails
//! here until the generated code is renewed: `KINKO_REGENERATE=1 cargo test -p kinko-proto
//! --test generated` writes it, and the diff is reviewed like any other.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};

use prost::Message as _;

const FILES: [&str; 2] = ["kinko.v1.rs", "kinko_descriptor.bin"];

fn generate(out: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let fds = protox::compile([root.join("kinko/v1/kinko.proto")], [&root]).unwrap();
    std::fs::write(out.join("kinko_descriptor.bin"), fds.encode_to_vec()).unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out)
        .compile_fds(fds)
        .unwrap();
}

#[test]
fn the_generated_code_is_what_the_proto_file_gives() {
    let fresh = tempfile::tempdir().unwrap();
    generate(fresh.path());
    let kept = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/generated");
    if std::env::var("KINKO_REGENERATE").is_ok_and(|v| v == "1") {
        for f in FILES {
            std::fs::copy(fresh.path().join(f), kept.join(f)).unwrap();
        }
    }
    for f in FILES {
        let want = std::fs::read(fresh.path().join(f)).unwrap();
        let have = std::fs::read(kept.join(f)).unwrap_or_default();
        assert!(
            want == have,
            "crates/kinko-proto/src/generated/{f} is not what proto/ gives now; renew it with \
             KINKO_REGENERATE=1 cargo test -p kinko-proto --test generated, and review the diff"
        );
    }
}
