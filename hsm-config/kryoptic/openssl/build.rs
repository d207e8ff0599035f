//! Builds OpenSSL with openssl-src and records where it installed it.
fn main() {
    let artifacts = openssl_src::Build::new().build();
    let install = artifacts
        .lib_dir()
        .parent()
        .expect("an install directory")
        .to_path_buf();
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("openssl-install-dir"), install.display().to_string())
        .expect("write the install directory");
}
