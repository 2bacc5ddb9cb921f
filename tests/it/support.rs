//! Helpers shared by the plugin's integration tests. Fixtures and log capture come from the
//! workspace's `live_npc_dev` crate, which every crate's tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use live_npc_dev::{capture_logs, wav};

/// The target directory's profile folder (`target/debug`) of this test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/it-HASH -> target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Builds a program of the workspace with cargo if `cargo test` did not build it already.
fn built(path: PathBuf, cargo_args: &[&str]) -> PathBuf {
    if !path.exists() {
        build(cargo_args);
    }
    path
}

fn build(cargo_args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(cargo_args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {cargo_args:?} failed");
}

/// The `live-sim` program (package `live_npc_sim`; `CARGO_BIN_EXE_live-sim` exists only in that
/// package's own tests).
pub fn live_sim_exe() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            // Always through cargo (a no-op when fresh): a `live-sim` left from an older build
            // would not know the scenarios the tests give it.
            let name = format!("live-sim{}", std::env::consts::EXE_SUFFIX);
            let path = profile_dir().join(name);
            build(&["-p", "live_npc_sim", "--bin", "live-sim"]);
            path
        })
        .clone()
}

/// An example program of this package.
pub fn example(name: &str) -> PathBuf {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    built(profile_dir().join("examples").join(file), &["--example", name])
}
