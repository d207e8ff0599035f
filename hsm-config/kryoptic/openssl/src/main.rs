//! Nothing: the build script is the point.
fn main() {}
