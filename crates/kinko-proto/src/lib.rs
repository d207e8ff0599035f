//! Kinko's gRPC API, package `kinko.v1`, generated from `proto/kinko/v1/kinko.proto`.
#![forbid(unsafe_code)]

pub mod validate;

/// Generated types and services of package `kinko.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("kinko.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kinko_descriptor.bin"));
