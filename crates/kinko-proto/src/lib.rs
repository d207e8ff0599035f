//! Kinko's gRPC API, package `kinko.v1`, generated from `proto/kinko/v1/kinko.proto`.
//!
//! The generated code is kept in `src/generated/` rather than made by a build script: code
//! included from Cargo's `OUT_DIR` carries that directory's absolute path into the binary
//! (the panic locations of the generated async blocks), and the directory's name depends on
//! the build flags, so no `--remap-path-prefix` could make two builds in different places
//! identical (docs/supply-chain.md). `tests/generated.rs` regenerates it with protox (no
//! system protoc) and fails when it differs; `KINKO_REGENERATE=1` writes the new version.
#![forbid(unsafe_code)]

pub mod validate;

/// Generated types and services of package `kinko.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    include!("generated/kinko.v1.rs");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/kinko_descriptor.bin");
