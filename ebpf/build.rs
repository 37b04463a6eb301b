//! Copies the committed, prebuilt BPF object into OUT_DIR for `include_bytes!`.
//!
//! `cargo build` must not need clang: the object is built by `ebpf/build.sh` and
//! committed, and CI checks it is not stale (`ebpf/build.sh --check`). Nothing here
//! writes into the source tree or runs make.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

const OBJECT: &str = "smap.bpf.o";

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    let src = manifest_dir.join(OBJECT);
    println!("cargo::rerun-if-changed={OBJECT}");
    match fs::copy(&src, out_dir.join(OBJECT)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            println!("cargo::error=cannot copy {} to OUT_DIR: {e} (run ebpf/build.sh to build it)", src.display());
            ExitCode::FAILURE
        }
    }
}
